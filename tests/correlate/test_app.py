"""The app wires correlate in when `correlate.enabled`: admitted events are correlated, the
status shows the stage, and the correlator's state is saved with the rest."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import CLIENT_TIMEOUT
from tests.correlate.conftest import ev, src, tid
from via_otlp.app import COORDINATOR_FILE, App
from via_otlp.config import parse_config


async def test_app_correlates_admitted_events(tmp_path: Path) -> None:
    config = parse_config(
        json.dumps(
            {
                "receive": {
                    "grpc": {"endpoint": "127.0.0.1:0"},
                    "http": {"endpoint": "127.0.0.1:0"},
                },
                "registry": {"enabled": False},
                "control": {"enabled": False, "endpoint": "127.0.0.1:0"},
                "correlate": {"enabled": True, "resolve_cooldown": "1h"},
                "state": {"data_dir": str(tmp_path)},
            }
        )
    )
    app = App(config)
    assert app.correlation is not None
    await app.start()
    try:
        app.pipeline.dispatch(
            [
                ev("a", src("db", "data"), traces=(tid(1),)),
                ev("b", src("checkout", "shop"), t=10, traces=(tid(1),)),
            ]
        )
        assert await app.correlation.flush(CLIENT_TIMEOUT)
        status = app.status()["correlate"]
        assert status["correlator"]["open_incidents"] == 1 and status["events_processed"] == 2
        assert status["store"]["state"] == "ok"
    finally:
        await app.shutdown()
    saved = json.loads((tmp_path / COORDINATOR_FILE).read_text())  # shards keep the rest
    assert len(saved["correlate"]["open"]) == 1
    again = App(config)
    await again.start()
    try:
        assert again.correlation is not None and again.correlation.correlator.incident_of("b")
    finally:
        await again.shutdown()
