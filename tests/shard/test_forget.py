"""A shard forgets every part of a source that moved to another instance, and exports one
source without walking the others."""

from __future__ import annotations

import time

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from via_otlp.config import Config
from via_otlp.pipeline import Pipeline
from via_otlp.shard import handoff


def request(services: list[str]) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    now = time.time_ns()
    for name in services:
        rl = req.resource_logs.add()
        rl.resource.attributes.add(key="service.name").value.string_value = name
        sl = rl.scope_logs.add()
        for i in range(40):
            lr = sl.log_records.add()
            lr.time_unix_nano = now + i
            lr.body.string_value = f"order {i} of {name} shipped"
            lr.attributes.add(key="http.status_code").value.int_value = 200
    return req


def fed(services: list[str]) -> Pipeline:
    config = Config()
    pipeline = Pipeline(config)
    for batch, _ in pipeline.intake.normaliser.batches(request(services), time.time_ns()):
        pipeline.consume(pipeline.intake.process(batch))
    return pipeline


def test_forget_drops_profiles_miner_models_and_schemas() -> None:
    pipeline = fed(["cart", "billing"])
    assert sorted(handoff.source_keys(pipeline)) == ["billing", "cart"]
    assert "billing" in pipeline.schemas.sources()
    handoff.forget_sources(pipeline, ["billing"])
    assert handoff.source_keys(pipeline) == ["cart"]
    assert pipeline.patterns.export_sources(["billing"])["sources"] == {}
    assert pipeline.schemas.sources() == ["cart"]


def test_one_source_moves_with_its_template_ids_and_schema() -> None:
    old = fed(["cart", "billing"])
    tree = handoff.export_sources(old, ["billing"])
    assert [s["source"]["key"] for s in tree["schemas"]] == ["billing"]
    assert list(tree["patterns"]["sources"]) == ["billing"]
    new = Pipeline(Config())
    handoff.import_sources(new, tree)
    assert handoff.source_keys(new) == ["billing"]
    ids = {t.template_id for t in old.patterns.templates() if t.source_key == "billing"}
    assert ids and ids == {t.template_id for t in new.patterns.templates()}
