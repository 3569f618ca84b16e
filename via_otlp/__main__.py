"""`python -m via_otlp` is the `via-otlp` command."""

import sys

from via_otlp.cli import main

sys.exit(main())
