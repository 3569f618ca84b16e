"""Where the service is in its life: the `state` of `/status`, `ctl status` and the
`via_otlp.state` self-metric.

Kept apart from `app.py` so that readers of the status (telemetry, control) know the states
without importing the whole application.
"""

from __future__ import annotations

import enum


class AppState(enum.StrEnum):
    """`new` until `start`; `serving` once intake is open; `draining` from the first step of
    shutdown (health NOT_SERVING, intake closed) until everything is flushed; then `stopped`."""

    NEW = "new"
    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"
    STOPPED = "stopped"
