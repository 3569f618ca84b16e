"""Made tests/data/state/state-v1.json with via-otlp at 3e14a7d (state v1, before the source-key
change): run from a checkout of that commit, `python make_state_v1.py state-v1.json`."""

import sys
from pathlib import Path

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from via_otlp.app import Pipeline
from via_otlp.config import Config
from via_otlp.state import STATE_VERSION, save_state

assert STATE_VERSION == 1


def request(res, t0, n):
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    for k, v in res.items():
        rl.resource.attributes.append(KeyValue(key=k, value=AnyValue(string_value=v)))
    sl = rl.scope_logs.add()
    for i in range(n):
        lr = sl.log_records.add()
        lr.time_unix_nano = t0 + i * 1_000_000_000
        lr.severity_text = "ERROR" if i % 5 == 0 else "INFO"
        lr.body.string_value = (
            f"order {i} paid by user{i % 7}" if i % 5 else f"payment declined for order {i}"
        )
    return req


cfg = Config()
p = Pipeline(cfg)
t0 = 1_767_225_600_000_000_000
for minute in range(30):
    for res in (
        {"service.namespace": "shop", "service.name": "checkout"},
        {"service.name": "shop", "deployment.environment.name": "checkout"},
        {"service.name": "billing"},
        {"service.name": "api", "deployment.environment.name": "prod"},
        {"service.namespace": "shop", "service.name": "web", "deployment.environment.name": "prod"},
    ):
        batch = p.intake.prepare_request(
            request(res, t0 + minute * 60_000_000_000, 20), t0 + minute * 60_000_000_000
        )
        p.consume(p.intake.process(batch))
save_state(Path(sys.argv[1]), p.snapshot())
