"""`--live`: the same scenario sent to a running server over OTLP/gRPC scores as offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import free_port, start_server
from via_otlp.simulate.run import run_live_sync
from via_otlp.simulate.scenario import load_scenario

SMALL = Path(__file__).parent / "data" / "small.json5"


@pytest.mark.slow
def test_live_against_a_server(tmp_path: Path) -> None:
    collect = f"127.0.0.1:{free_port()}"
    srv = start_server(
        tmp_path,
        {
            "receive": {"max_future_skew": "1d"},
            "emit": {"endpoint": f"http://{collect}", "batch": {"interval": "200ms"}},
            "registry": {"enabled": False},
        },
    )
    try:
        sc = load_scenario(SMALL)

        def drained(sent: int) -> bool:
            """Every record processed and every anomaly found so far delivered (a loaded
            machine may take longer than any fixed settle time)."""
            st = srv.status()
            return bool(
                st["intake"]["records_consumed"] >= sent
                and st["emit"]["sent"] >= st["events"]["emitted"]
            )

        (result,) = run_live_sync(
            [sc], srv.grpc_target, collect, sc.bucket_ns, settle=3.0, drained=drained
        )
    finally:
        assert srv.stop() == 0, srv.log()
    assert result.mode == "live"
    assert result.records > 5_000
    assert result.score.overall.recall == 1.0, (result.detections, srv.log()[-3000:])
    assert result.score.overall.false_positives == 0, result.detections
