"""The rhythm hash: xxh64 over (source identity, severity, template id) as 16 hex digits.

A rhythm hash names one pattern of one service at one severity; every baseline, episode and
patch hangs on it, so it must be stable across restarts and across instances.

>>> rhythm_hash("shop/checkout/prod", "ERROR", "T1")
'895bb00eb4ca5e29'
"""

from __future__ import annotations

import xxhash

_SEP = "\x1f"  # unit separator: cannot appear in a template id or severity word


def rhythm_hash(source_key: str, severity: str, template_id: str) -> str:
    """Fixed-width lower-hex xxh64 of the three parts joined by a separator."""
    return xxhash.xxh64_hexdigest(f"{source_key}{_SEP}{severity}{_SEP}{template_id}".encode())
