"""Self-metrics: the status → metric mapping, the Prometheus text, and `/metrics` of a real server."""

from __future__ import annotations

import gzip
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import CLIENT_TIMEOUT, ServerProcess, start_server
from via_otlp.telemetry.metrics import Histogram, Kind, families
from via_otlp.telemetry.prometheus import render
from via_otlp.telemetry.timing import BOUNDS, Stage, StageTimings, merge

STATUS: dict[str, Any] = {
    "version": "9.9.9",
    "state": "serving",
    "uptime_seconds": 12.5,
    "queue": {"depth": 7, "capacity": 100, "body_bytes": 300},
    "intake": {
        "requests": {"grpc": {"accepted": 2, "queue_full": 1}},
        "records": {"grpc": {"accepted": 20, "queue_full": 5}},
        "records_accepted": 20,
        "records_consumed": 13,
        "records_dropped_by_patch": 4,
        "records_missing_timestamp": 3,
        "invalid_utf8_requests": 0,
    },
    "events": {"emitted": 3, "suppressed": 1, "by_kind": {"spike/open": 2, "spike/resolved": 1}},
    "detect": {
        "profiles": 5,
        "profiles_learning": 2,
        "episodes_opened": 2,
        "watermark_ns": 2 * 10**18,
    },
    "registry": {"state": "degraded", "writer": {"buffered": 4, "written": 9, "dropped": 1}},
    "emit": {"state": "retrying", "queued": 3, "sent": 10, "retries": 4, "dropped_queue_full": 2},
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_families_follow_the_naming_rules() -> None:
    fams = families(STATUS)
    names = [f.name for f in fams]
    assert len(names) == len(set(names))
    for f in fams:
        assert f.name.startswith("via_otlp."), f.name
        assert f.name == f.name.lower() and " " not in f.name
        if f.unit == "s":
            assert f.prometheus_name.endswith("_seconds")
    text = render(lambda: STATUS).decode()
    got = samples(text)
    assert got[("via_otlp_receiver_accepted_log_records_total", (("transport", "grpc"),))] == 20
    # transports without traffic have their series at 0
    assert got[("via_otlp_receiver_accepted_log_records_total", (("transport", "http"),))] == 0
    assert got[("via_otlp_receiver_refused_log_records_total",
                (("reason", "queue_full"), ("transport", "grpc")))] == 5  # fmt: skip
    assert got[("via_otlp_processor_dropped_log_records_total", (("reason", "patch"),))] == 4
    assert (
        got[("via_otlp_anomalies_emitted_total", (("kind", "spike"), ("state", "resolved")))] == 1
    )
    assert got[("via_otlp_registry_state", (("state", "degraded"),))] == 1
    assert got[("via_otlp_registry_state", (("state", "ok"),))] == 0
    assert got[("via_otlp_exporter_dropped_events_total", (("reason", "queue_full"),))] == 2
    assert got[("via_otlp_detect_watermark_seconds", ())] == 2e9
    assert got[("via_otlp_build_info", (("version", "9.9.9"),))] == 1


def test_missing_sections_give_no_series_not_an_error() -> None:
    assert families({}) == []
    assert [f.name for f in families({"queue": {"depth": 1}})] == ["via_otlp.queue.size"]


def test_stage_histogram_is_cumulative_and_merges() -> None:
    t = StageTimings()
    for s in (0.0001, 0.003, 0.003, 20.0):
        t.observe(Stage.DETECT, s)
    snap = t.snapshot()
    h = snap["stages"]["detect"]
    assert h["count"] == 4 and h["buckets"][0] == 1 and h["buckets"][-1] == 3  # 20 s is past +Inf
    assert h["buckets"] == sorted(h["buckets"])
    both = merge([snap, snap])
    assert both["stages"]["detect"]["count"] == 8
    assert both["stages"]["detect"]["buckets"] == [2 * x for x in h["buckets"]]
    status = {"latency": snap}
    (fam,) = families(status)
    assert fam.kind is Kind.HISTOGRAM
    point = dict((dict(lbl)["stage"], v) for lbl, v in fam.points)["detect"]
    assert isinstance(point, Histogram) and point.bounds == BOUNDS
    got = samples(render(lambda: status).decode())
    assert (
        got[("via_otlp_stage_duration_seconds_bucket", (("le", "+Inf"), ("stage", "detect")))] == 4
    )
    assert (
        got[("via_otlp_stage_duration_seconds_bucket", (("le", "0.005"), ("stage", "detect")))] == 3
    )


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(
        tmp_path_factory.mktemp("metrics"),
        {"registry": {"enabled": False}, "correlate": {"enabled": False}},
    )
    yield server
    assert server.stop() == 0, server.log()


def otlp_request(n: int, service: str) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    kv = rl.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    sl = rl.scope_logs.add()
    for i in range(n):
        sl.log_records.add().body.string_value = f"user {i} logged in"
    return req


def fetch(url: str, data: bytes | None = None, **headers: str) -> tuple[int, bytes, str]:
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=CLIENT_TIMEOUT) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), ""


@pytest.mark.slow
def test_metrics_endpoint_counts_each_transport(srv: ServerProcess) -> None:
    body = otlp_request(3, "web").SerializeToString()
    assert fetch(f"{srv.http_url}/v1/logs", gzip.compress(body),
                 **{"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})[0] == 200  # fmt: skip
    lines = [json.dumps({"service": "api", "body": f"job {i} done"}) for i in range(2)]
    code, answer, _ = fetch(f"{srv.http_url}/v1/ingest", "\n".join([*lines, "{not json"]).encode())
    assert code == 200
    assert json.loads(answer)["accepted"] == 2
    with grpc.insecure_channel(srv.grpc_target) as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            request_serializer=lambda m: m.SerializeToString(), response_deserializer=bytes,
        )  # fmt: skip
        export(otlp_request(4, "db"), timeout=CLIENT_TIMEOUT)
    srv.wait_for(lambda s: s["intake"]["records_consumed"] == 9, what="9 records consumed")

    code, text, content_type = fetch(f"{srv.http_url}/metrics")
    assert code == 200 and content_type.startswith("text/plain; version=")
    got = samples(text.decode())
    accepted = "via_otlp_receiver_accepted_log_records_total"
    assert got[(accepted, (("transport", "grpc"),))] == 4
    assert got[(accepted, (("transport", "http"),))] == 3
    assert got[(accepted, (("transport", "ndjson"),))] == 2
    assert got[("via_otlp_receiver_refused_log_records_total",
                (("reason", "invalid"), ("transport", "ndjson")))] == 1  # fmt: skip
    assert got[("via_otlp_pipeline_consumed_log_records_total", ())] == 9
    assert got[("via_otlp_detect_profiles", ())] == 3  # three services, one pattern each
    assert got[("via_otlp_patterns_sources", ())] == 3
    # three batches went through every stage (normalise, patterns, queue, detect)
    for stage in ("normalise", "patterns", "queue", "detect"):
        assert got[("via_otlp_stage_duration_seconds_count", (("stage", stage),))] == 3, stage
    assert got[("via_otlp_registry_state", (("state", "disabled"),))] == 1
    assert got[("via_otlp_state", (("state", "serving"),))] == 1


@pytest.mark.slow
def test_metrics_can_be_turned_off(tmp_path) -> None:
    server = start_server(tmp_path, {"registry": {"enabled": False}, "correlate": {"enabled": False},
                                     "telemetry": {"metrics": {"prometheus": False}}})  # fmt: skip
    try:
        assert fetch(f"{server.http_url}/metrics")[0] == 404
    finally:
        assert server.stop() == 0, server.log()
