"""Self-metrics pushed as OTLP metrics to a real recording OTLP downstream (gRPC and HTTP)."""

from __future__ import annotations

from typing import Any

from tests.emit.conftest import GrpcServer, HttpServer, fast_config, wait_until
from via_otlp.telemetry.config import MetricsConfig
from via_otlp.telemetry.otlp import MetricsPusher, encode

STATUS: dict[str, Any] = {
    "version": "1.2.3",
    "queue": {"depth": 7, "capacity": 100},
    "intake": {"records": {"grpc": {"accepted": 20, "queue_full": 5}}, "records_consumed": 13},
    "latency": {
        "bounds": [0.1, 1.0],
        "stages": {"detect": {"buckets": [1, 3], "count": 4, "sum": 2.5}},
    },
}


def metrics_by_name(request: Any) -> dict[str, Any]:
    (rm,) = request.resource_metrics
    (sm,) = rm.scope_metrics
    return {m.name: m for m in sm.metrics}


def test_encoding_follows_the_otlp_data_model() -> None:
    req = encode(STATUS, start_ns=10, now_ns=20, instance_id="h:1")
    attrs = {kv.key: kv.value.string_value for kv in req.resource_metrics[0].resource.attributes}
    assert attrs == {
        "service.name": "via-otlp",
        "service.version": "0.1.0",
        "service.instance.id": "h:1",
    }
    m = metrics_by_name(req)
    accepted = m["via_otlp.receiver.accepted_log_records"]
    assert accepted.unit == "{records}" and accepted.sum.is_monotonic
    assert accepted.sum.aggregation_temporality == 2  # cumulative
    points = {
        tuple((a.key, a.value.string_value) for a in p.attributes): p
        for p in accepted.sum.data_points
    }
    assert points[(("transport", "grpc"),)].as_double == 20
    assert points[(("transport", "grpc"),)].start_time_unix_nano == 10
    assert m["via_otlp.queue.size"].gauge.data_points[0].as_double == 7
    h = m["via_otlp.stage.duration"].histogram
    (p,) = h.data_points
    # OTLP buckets count per bucket, not cumulatively: (≤0.1) 1, (0.1, 1] 2, (1, +Inf) 1
    assert list(p.explicit_bounds) == [0.1, 1.0] and list(p.bucket_counts) == [1, 2, 1]
    assert p.count == 4 and p.sum == 2.5 and h.aggregation_temporality == 2


async def test_pushes_on_an_interval_and_at_shutdown_over_grpc(grpc_server: GrpcServer) -> None:
    status = dict(STATUS)
    pusher = MetricsPusher(MetricsConfig(otlp=True, interval=0.1), fast_config(grpc_server.endpoint),
                           lambda: status)  # fmt: skip
    await pusher.start()
    await wait_until(lambda: len(grpc_server.rec.metrics) >= 2)
    status["queue"] = {"depth": 99, "capacity": 100}
    n = len(grpc_server.rec.metrics)
    await pusher.shutdown()
    assert len(grpc_server.rec.metrics) == n + 1  # the final push carries the last values
    last = metrics_by_name(grpc_server.rec.metrics[-1])
    assert last["via_otlp.queue.size"].gauge.data_points[0].as_double == 99
    await pusher.shutdown()  # idempotent


async def test_push_over_http_and_a_failed_push_is_counted(http_server: HttpServer) -> None:
    pusher = MetricsPusher(MetricsConfig(otlp=True, interval=3600),
                           fast_config(http_server.endpoint, protocol="http"), lambda: STATUS)  # fmt: skip
    await pusher.start()
    assert await pusher.push()
    assert "via_otlp.receiver.accepted_log_records" in metrics_by_name(http_server.rec.metrics[0])
    http_server.rec.fail_next(http_status=500)
    assert not await pusher.push()
    assert pusher.failed == 1 and "500" in pusher.last_error
    await pusher.shutdown()
    assert pusher.pushed == 2


async def test_off_without_an_endpoint() -> None:
    pusher = MetricsPusher(MetricsConfig(otlp=True), fast_config(""), lambda: STATUS)
    await pusher.start()
    assert not pusher.enabled and not await pusher.push()
    await pusher.shutdown()
