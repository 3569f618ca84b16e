"""via-otlp: learns the rhythm of every log pattern of every service and reports when it breaks."""

import os

__version__ = "0.1.0"

# gRPC's fork handlers, on by default, run in every child forked while gRPC's threads are busy
# and can crash it before it execs (pg_ctl started as an unprivileged user from root: Python
# forks instead of vforking when it changes user) or leave a forked shard's copy of gRPC broken.
# No child of ours uses gRPC, so the handlers only add risk. Set before grpc is first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
