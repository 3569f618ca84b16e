"""The pure patch matcher: selectors, rules, expiry, and dropping records from a batch."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from via_otlp.errors import InputError
from via_otlp.model import EpisodeState, LogBatch, Source
from via_otlp.registry.config import RegistryConfig
from via_otlp.registry.patches import Patch, PatchRule, PatchSet
from via_otlp.registry.store import Registry

from .conftest import make_event

NOW = 1_700_000_000_000_000_000
S = 1_000_000_000


def test_selector_fields_all_must_match() -> None:
    p = Patch(PatchRule.DROP, rhythm_hash="h1", source="shop/*", template="GET /health*")
    ps = PatchSet([p])
    assert ps.is_dropped("shop/cart", "h1", "GET /health ok", NOW)
    assert not ps.is_dropped("shop/cart", "h2", "GET /health ok", NOW)
    assert not ps.is_dropped("bank/ledger", "h1", "GET /health ok", NOW)
    assert not ps.is_dropped("shop/cart", "h1", "POST /pay", NOW)


def test_glob_is_anchored_and_regex_is_searched() -> None:
    glob = PatchSet([Patch(PatchRule.DROP, template="timeout*")])
    assert glob.is_dropped("s", "h", "timeout after <*> ms", NOW)
    assert not glob.is_dropped("s", "h", "read timeout after <*> ms", NOW)
    regex = PatchSet([Patch(PatchRule.DROP, template=r"re:time(out|d out)")])
    assert regex.is_dropped("s", "h", "read timed out", NOW)
    assert not regex.is_dropped("s", "h", "all good", NOW)


def test_expiry_and_inactive_stop_a_patch() -> None:
    p = Patch(PatchRule.DROP, rhythm_hash="h", expires_ns=NOW + 10 * S)
    ps = PatchSet([p, Patch(PatchRule.DROP, rhythm_hash="x", active=False)])
    assert ps.is_dropped("s", "h", "t", NOW)
    assert not ps.is_dropped("s", "h", "t", NOW + 10 * S)
    assert not ps.is_dropped("s", "x", "t", NOW)
    assert [q.rhythm_hash for q in ps.active(NOW)] == ["h"]


def test_mute_and_threshold_rules() -> None:
    event = make_event(rhythm_hash="h1", score=5.0)
    ps = PatchSet(
        [
            Patch(PatchRule.MUTE, rhythm_hash="h1"),
            Patch(PatchRule.THRESHOLD, source=event.source.key, threshold=4.0),
            Patch(PatchRule.THRESHOLD, rhythm_hash="h1", threshold=6.0),
        ]
    )
    assert ps.is_muted(event, NOW)
    assert not ps.is_dropped(event.source.key, "h1", event.template, NOW)
    assert ps.threshold_for(event.source.key, "h1", event.template, NOW) == 6.0  # the largest
    assert ps.threshold_for("other", "h2", "", NOW) is None
    assert ps.is_below_threshold(event, NOW)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rule": PatchRule.DROP},  # selects nothing
        {"rule": PatchRule.THRESHOLD, "rhythm_hash": "h"},  # no threshold
        {"rule": PatchRule.THRESHOLD, "rhythm_hash": "h", "threshold": -1.0},
        {"rule": PatchRule.MUTE, "rhythm_hash": "h", "threshold": 3.0},
        {"rule": PatchRule.DROP, "template": "re:("},
        {"rule": "DROP", "rhythm_hash": "h"},
        {"rule": PatchRule.DROP, "rhythm_hash": "h", "expires_ns": -5},
    ],
)
def test_invalid_patches_are_input_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(InputError):
        Patch(**kwargs)  # type: ignore[arg-type]


def _batch() -> LogBatch:
    sources = [Source("shop/cart", ()), Source("bank/ledger", ())]
    return LogBatch(
        sources=sources,
        source_index=[0, 1, 0, 0, 1],
        severity=["INFO"] * 5,
        body=["a", "b", "c", "d", "e"],
        time_ns=[NOW] * 5,
        trace_id=[""] * 5,
        span_id=[""] * 5,
        unique_id=[""] * 5,
        event_name=[""] * 5,
        template_hint=[""] * 5,
        template_id=["t1", "t1", "t2", "t1", "t2"],
        template=["health ok", "health ok", "pay <*>", "health ok", "pay <*>"],
        rhythm_hash=["h1", "h9", "h2", "h1", "h8"],
    )


def test_apply_drops_filters_records_and_counts() -> None:
    ps = PatchSet([Patch(PatchRule.DROP, source="shop/*", template="health*")])
    assert ps.drop_mask(_batch(), NOW) == [True, False, False, True, False]
    kept, dropped = ps.apply_drops(_batch(), NOW)
    assert dropped == 2
    assert kept.body == ["b", "c", "e"]


def test_no_drop_patch_returns_the_same_batch() -> None:
    batch = _batch()
    kept, dropped = PatchSet([Patch(PatchRule.MUTE, rhythm_hash="h1")]).apply_drops(batch, NOW)
    assert kept is batch and dropped == 0


def test_drop_by_source_before_patterns_ran() -> None:
    batch = _batch()
    batch.rhythm_hash, batch.template, batch.template_id = [], [], []
    ps = PatchSet([Patch(PatchRule.DROP, source="bank/*")])
    assert ps.drop_mask(batch, NOW) == [False, True, False, False, True]


# --- ALLOW and BLOCK -------------------------------------------------------------------------


def _event_for(source_key: str, template: str, score: float = 50.0) -> object:
    from dataclasses import replace

    event = make_event()
    return replace(event, source=Source(source_key, (("service.name", source_key),)),
                   template=template, score=score)  # fmt: skip


def test_allow_wins_over_drop_mute_and_threshold() -> None:
    patches = PatchSet([
        Patch(PatchRule.DROP, source="shop/*", id="d"),
        Patch(PatchRule.MUTE, source="shop/*", id="m"),
        Patch(PatchRule.THRESHOLD, source="shop/*", threshold=99, id="t"),
        Patch(PatchRule.ALLOW, source="shop/*", template="payment *", id="a"),
    ])  # fmt: skip
    assert patches.is_dropped("shop/cart", "h", "cart updated")
    assert not patches.is_dropped("shop/pay", "h", "payment <*> failed")
    assert patches.is_muted(_event_for("shop/cart", "cart updated"))
    assert not patches.is_muted(_event_for("shop/pay", "payment <*> failed"))
    assert patches.is_below_threshold(_event_for("shop/cart", "cart updated", 50))
    assert not patches.is_below_threshold(_event_for("shop/pay", "payment <*> failed", 50))
    # an inactive ALLOW keeps nothing
    off = PatchSet([Patch(PatchRule.DROP, source="x", id="d"),
                    Patch(PatchRule.ALLOW, source="x", id="a", active=False)])  # fmt: skip
    assert off.is_dropped("x", "h", "t")


def test_block_drops_before_templating_by_source_and_body() -> None:
    sources = [Source("a", (("service.name", "a"),)), Source("b", (("service.name", "b"),))]
    batch = LogBatch(
        sources=sources, source_index=[0, 0, 1, 0], severity=["INFO"] * 4,
        body=["GET /health 200", "GET /cart 200", "GET /health 200", "GET /health 500"],
        time_ns=[1, 2, 3, 4], trace_id=[""] * 4, unique_id=[""] * 4, template_hint=[""] * 4,
    )  # fmt: skip
    patches = PatchSet([
        Patch(PatchRule.BLOCK, source="a", template="GET /health *", id="b"),
        Patch(PatchRule.ALLOW, template="* 500", id="a"),
    ])  # fmt: skip
    kept, blocked = patches.apply_blocks(batch)
    assert blocked == 1
    assert kept.body == ["GET /cart 200", "GET /health 200", "GET /health 500"]
    assert kept.source_index == [0, 1, 0] and kept.time_ns == [2, 3, 4]
    assert PatchSet().apply_blocks(batch) == (batch, 0)


def test_block_cannot_select_by_rhythm_hash() -> None:
    with pytest.raises(InputError, match="before they have one"):
        Patch(PatchRule.BLOCK, rhythm_hash="0123456789abcdef")


def test_a_held_opening_keeps_its_updates_and_resolution_held(tmp_path: Path) -> None:
    """A MUTE patch held an episode's opening back: its escalations (UPDATED) and its
    resolution stay held too, and an episode no patch selects is emitted in full."""
    store = Registry(RegistryConfig(), tmp_path)
    store._patch_store = SimpleNamespace(
        current=PatchSet([Patch(PatchRule.MUTE, rhythm_hash="h1")])
    )  # type: ignore[assignment]
    for rh, want in (("h1", [False, False, False]), ("h2", [True, True, True])):
        opening = make_event(f"ep-{rh}", rhythm_hash=rh, score=60.0)
        update = make_event(f"ep-{rh}", rhythm_hash=rh, score=72.0, state=EpisodeState.UPDATED)
        resolved = make_event(f"ep-{rh}", rhythm_hash=rh, score=60.0, state=EpisodeState.RESOLVED)
        assert [store.admit_anomaly(e, NOW) for e in (opening, update, resolved)] == want
    assert not store._held_open
