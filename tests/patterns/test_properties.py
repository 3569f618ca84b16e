"""Property tests: template ids are stable under generalisation and across snapshot/restore."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from via_otlp.patterns.config import PatternsConfig
from via_otlp.patterns.miner import SourceMiner

WORDS = ["open", "close", "read", "write", "sync", "flush", "retry", "drop"]
values = st.text(alphabet="abcdef0123456789", min_size=1, max_size=8)
line_shapes = st.lists(st.sampled_from(WORDS), min_size=2, max_size=5)


@settings(max_examples=60, deadline=None)
@given(shape=line_shapes, vals=st.lists(st.tuples(values, values), min_size=2, max_size=20))
def test_id_is_stable_when_the_template_generalises(
    shape: list[str], vals: list[tuple[str, str]]
) -> None:
    miner = SourceMiner(PatternsConfig())
    words = " ".join(shape)
    ids = {miner.add(f"{words} key={a} at /srv/{b}/x").resolve().id for a, b in vals}
    assert len(ids) == 1


@settings(max_examples=40, deadline=None)
@given(
    lines=st.lists(st.tuples(line_shapes, values), min_size=1, max_size=30),
    later=st.lists(st.tuples(line_shapes, values), min_size=1, max_size=30),
)
def test_ids_survive_snapshot_and_restore(
    lines: list[tuple[list[str], str]], later: list[tuple[list[str], str]]
) -> None:
    a = SourceMiner(PatternsConfig())
    for words, v in lines:
        a.add(" ".join(words) + f" id={v}")
    b = SourceMiner(PatternsConfig())
    b.load_state(json.loads(json.dumps(a.to_state())))
    for words, v in later:
        line = " ".join(words) + f" id={v}"
        assert a.add(line).id == b.add(line).id
