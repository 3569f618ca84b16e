"""Source keys are unambiguous, and state and registry rows of the old format move to them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from via_otlp.app import Pipeline
from via_otlp.config import Config
from via_otlp.model import DEFAULT_SOURCE_ATTRIBUTES, AnomalyKind, source_key
from via_otlp.patterns.rhythm import rhythm_hash
from via_otlp.receive.normalise import Normaliser
from via_otlp.state import STATE_VERSION, load_state, save_state

V1_STATE = Path(__file__).parent.parent / "data" / "state" / "state-v1.json"
T0 = 1_767_225_600_000_000_000
MINUTE = 60_000_000_000

values = st.text(alphabet=st.sampled_from("ab/@%-_.x"), max_size=4)
orders = st.sampled_from(
    [
        DEFAULT_SOURCE_ATTRIBUTES,
        ("service.name",),
        ("a", "b", "service.name"),
        ("service.name", "a", "b"),
        ("a", "service.name", "b", "c"),
    ]
)


@given(orders, st.data())
def test_distinct_identities_never_share_a_key(order: tuple[str, ...], data: st.DataObject) -> None:
    one = data.draw(st.tuples(*[values for _ in order]))
    two = data.draw(st.tuples(*[values for _ in order]))
    if one == two:
        return
    # Absent and empty are the same identity (intake never keeps an empty value).
    a = [(n, v) for n, v in zip(order, one, strict=True) if v]
    b = [(n, v) for n, v in zip(order, two, strict=True) if v]
    if a == b:
        return
    assert source_key(a, order) != source_key(b, order)


def test_the_reported_collision_is_gone() -> None:
    norm = Normaliser()
    a = norm.source_for({"service.namespace": "shop", "service.name": "checkout"})
    b = norm.source_for({"service.name": "shop", "deployment.environment.name": "checkout"})
    assert (a.key, b.key) == ("shop/checkout", "shop@checkout")


def _request(resource: dict[str, str], t0: int, n: int) -> ExportLogsServiceRequest:
    """The records the v1 state was made from (tests/data/state/make_state_v1.py)."""
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    for k, v in resource.items():
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


RESOURCES = (
    {"service.namespace": "shop", "service.name": "checkout"},
    {"service.name": "shop", "deployment.environment.name": "checkout"},
    {"service.name": "billing"},
    {"service.name": "api", "deployment.environment.name": "prod"},
    {"service.namespace": "shop", "service.name": "web", "deployment.environment.name": "prod"},
)


def test_a_version_1_document_takes_current_keys_and_rhythm_hashes(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    shutil.copy(V1_STATE, path)
    state = load_state(path)
    assert state is not None
    keys = {"shop/checkout", "billing", "api@prod", "shop/web@prod"}
    assert set(state["patterns"]["sources"]) == keys
    table = state["engine"]["table"]
    assert {key for key, _ in table["sources"]} == keys
    for _slot, rh, si, template_id, _template, severity in table["profiles"]:
        assert rh == rhythm_hash(table["sources"][si][0], severity, template_id)
    assert {key for key, _attrs, _t in state["engine"]["sources"]} == keys


def test_a_version_1_state_moves_to_current_keys_and_keeps_its_baselines(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    shutil.copy(V1_STATE, path)
    state = load_state(path)
    assert state is not None
    pipeline = Pipeline(Config())
    pipeline.restore(state)
    before = {p.rhythm_hash: p for p in pipeline.engine.profiles()}
    # The two identities that shared "shop/checkout" were mixed in v1: the profiles stay with
    # the identity recorded in them; the other starts as a source of its own.
    assert {p.source_key for p in before.values()} == {
        "shop/checkout",
        "billing",
        "api@prod",
        "shop/web@prod",
    }
    assert set(state["patterns"]["sources"]) == {
        "shop/checkout",
        "billing",
        "api@prod",
        "shop/web@prod",
    }
    events = []
    for minute in (30, 31):
        for res in RESOURCES:
            t = T0 + minute * MINUTE
            batch = pipeline.intake.prepare_request(_request(res, t, 20), t)
            batch = pipeline.intake.process(batch)
            events += pipeline.engine.observe(batch)
    after = {p.rhythm_hash: p for p in pipeline.engine.profiles()}
    # Re-keyed profiles are found again by the rhythm hashes intake computes now...
    grown = {p.source_key for rh, p in before.items() if after[rh].total_count > p.total_count}
    assert grown == {"shop/checkout", "billing", "api@prod", "shop/web@prod"}
    # ...so only the split identity makes profiles, and nothing is reported as new.
    new = {p.source_key for rh, p in after.items() if rh not in before}
    assert new == {"shop@checkout"}
    assert not [e for e in events if e.kind is AnomalyKind.NOVELTY]
    # Saved again, the state carries the current version.
    save_state(path, pipeline.snapshot())
    assert json.loads(path.read_text())["version"] == STATE_VERSION
