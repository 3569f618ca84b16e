"""Pure translation and paging (convert.py), and the control config."""

from __future__ import annotations

import pytest

from via_otlp.config import DEFAULT_CONFIG_PATH, load_config, parse_config
from via_otlp.control import convert
from via_otlp.control.cli import sparkline
from via_otlp.control.gen.via.v1 import control_pb2 as pb2
from via_otlp.detect.profile import ProfileState, ProfileSummary, RecentBucket
from via_otlp.errors import ConfigError, InputError
from via_otlp.model import Source
from via_otlp.paging import encode_token
from via_otlp.registry.patches import Patch, PatchRule

NOW = 1_800_000_000 * 10**9


def summary(rh: str, source: str, mean: float, last_seen: int) -> ProfileSummary:
    src = Source(source, (("service.name", source),))
    return ProfileSummary(
        rhythm_hash=rh, source=src, source_key=source, template_id="t1", template="x <*>",
        severity="INFO", first_seen_ns=0, last_seen_ns=last_seen, total_count=10, buckets_seen=3,
        baseline_mean=mean, baseline_std=1.0, distinct_mean=0.0, bucket_seconds=10.0,
        state=ProfileState.ACTIVE,
    )  # fmt: skip


PROFILES = [
    summary(f"{i:016x}", "shop/cart" if i % 2 else "bank/ledger", float(i % 4), i * 7 % 11)
    for i in range(25)
]


def test_recent_buckets_convert_in_order_and_draw_as_a_sparkline() -> None:
    buckets = [RecentBucket(NOW + i * 10**10, c, 2.5, c // 2) for i, c in enumerate([0, 3, 12])]
    got = convert.recent_to_proto(buckets)
    assert [(b.start_unix_nano, b.count, b.expected, b.distinct) for b in got] == [
        (NOW, 0.0, 2.5, 0.0), (NOW + 10**10, 3.0, 2.5, 1.0), (NOW + 2 * 10**10, 12.0, 2.5, 6.0)
    ]  # fmt: skip
    assert sparkline([b.count for b in got]) == "▁▄█"
    assert sparkline([0, 0]) == "▁▁" and sparkline([]) == ""
    assert sparkline([1, 1000]) == "▂█"  # anything above 0 shows above the floor


@pytest.mark.parametrize("order", [0, pb2.PROFILE_ORDER_RATE, pb2.PROFILE_ORDER_RECENCY])
def test_paging_shows_every_profile_once_in_order(order: int) -> None:
    seen: list[str] = []
    token = ""
    while True:
        page = convert.page_profiles(PROFILES, "", order, 4, token)
        assert page.total == 25
        seen += [p.rhythm_hash for p in page.items]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(p.rhythm_hash for p in PROFILES)
    assert len(seen) == len(set(seen))
    key = convert.profile_sort_key(order)
    by_hash = {p.rhythm_hash: p for p in PROFILES}
    assert [key(by_hash[h]) for h in seen] == sorted(key(p) for p in PROFILES)


def test_source_filter_is_a_glob_or_exact_key() -> None:
    assert convert.page_profiles(PROFILES, "shop/*", 0, 100, "").total == 12
    assert convert.page_profiles(PROFILES, "bank/ledger", 0, 100, "").total == 13
    assert convert.page_profiles(PROFILES, "bank", 0, 100, "").total == 0


def test_rate_order_puts_the_busiest_first() -> None:
    page = convert.page_profiles(PROFILES, "", pb2.PROFILE_ORDER_RATE, 3, "")
    assert [p.baseline_mean for p in page.items] == [3.0, 3.0, 3.0]
    pb = convert.profile_to_proto(page.items[0])
    assert pb.rate_per_minute == pytest.approx(3.0 * 6)
    assert pb.state == pb2.PROFILE_STATE_ACTIVE


@pytest.mark.parametrize("token", ["zzz", "e30", encode_token("templates:", ["a"])])
def test_bad_page_tokens_are_input_errors(token: str) -> None:
    with pytest.raises(InputError, match="page_token"):
        convert.page_profiles(PROFILES, "", 0, 5, token)


def test_a_token_is_bound_to_its_filter_and_order() -> None:
    token = convert.page_profiles(PROFILES, "", pb2.PROFILE_ORDER_RATE, 5, "").next_page_token
    with pytest.raises(InputError):
        convert.page_profiles(PROFILES, "", pb2.PROFILE_ORDER_RECENCY, 5, token)
    with pytest.raises(InputError):
        convert.page_profiles(PROFILES, "shop/*", pb2.PROFILE_ORDER_RATE, 5, token)


def test_page_size_defaults_and_clamps() -> None:
    assert convert.page_size(0, 100, 1000) == 100
    assert convert.page_size(5000, 100, 1000) == 1000
    assert convert.page_size(7, 100, 1000) == 7


def test_patch_round_trip_and_defaults() -> None:
    p = Patch(PatchRule.THRESHOLD, rhythm_hash="00ab", threshold=90.0, id="p", expires_ns=NOW + 1)
    pb = convert.patch_to_proto(p, NOW)
    assert pb.rule == pb2.PATCH_RULE_THRESHOLD and pb.threshold == 90.0 and pb.in_force
    assert not convert.patch_to_proto(p, NOW + 2).in_force  # expired
    assert convert.patch_from_proto(pb, NOW) == p
    new = convert.patch_from_proto(
        pb2.Patch(rule=pb2.PATCH_RULE_DROP, source="x"), NOW, ttl_seconds=60
    )
    assert new.active, "an unset `active` means active"
    assert new.id and new.expires_ns == NOW + 60 * 10**9


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (pb2.Patch(source="x"), "rule must be MUTE, DROP, THRESHOLD, ALLOW or BLOCK"),
        (pb2.Patch(rule=pb2.PATCH_RULE_MUTE), "must select something"),
        (pb2.Patch(rule=pb2.PATCH_RULE_MUTE, template="re:(("), "not a valid regular expression"),
        (pb2.Patch(rule=pb2.PATCH_RULE_THRESHOLD, source="x"), "needs a threshold > 0"),
        (pb2.Patch(rule=pb2.PATCH_RULE_MUTE, source="x", threshold=3), "only THRESHOLD patches"),
    ],
)
def test_bad_patches_are_input_errors(patch: pb2.Patch, message: str) -> None:
    with pytest.raises(InputError, match=message):
        convert.patch_from_proto(patch, NOW)


def test_enum_filters() -> None:
    assert convert.kind_from_proto(0) is None
    assert convert.kind_from_proto(pb2.ANOMALY_KIND_SPIKE).value == "spike"  # type: ignore[union-attr]
    assert convert.state_from_proto(pb2.EPISODE_STATE_RESOLVED).value == "resolved"  # type: ignore[union-attr]
    with pytest.raises(InputError):
        convert.kind_from_proto(99)


# -- config ----------------------------------------------------------------------------------


def test_control_config_defaults_to_loopback_without_token() -> None:
    config = load_config(DEFAULT_CONFIG_PATH, environ={})
    assert config.control.endpoint == "127.0.0.1:4320"
    assert config.control.token == ""
    env = {"VIA_CONTROL_TOKEN": "abc", "VIA_CONTROL_ENDPOINT": "0.0.0.0:9999"}
    config = load_config(DEFAULT_CONFIG_PATH, environ=env)
    assert (config.control.token, config.control.endpoint) == ("abc", "0.0.0.0:9999")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{control: {endpoint: '4320'}}", "control.endpoint: must be HOST:PORT"),
        ("{control: {endpoint: 'h:99999'}}", "control.endpoint: must be HOST:PORT"),
        ("{control: {max_page_size: 0}}", "control.max_page_size: must be >= 1"),
        ("{control: {default_page_size: 50, max_page_size: 10}}", "control.default_page_size"),
        ("{control: {token: ' padded '}}", "control.token"),
        ("{control: {tokn: 'x'}}", "control.tokn: unknown key"),
    ],
)
def test_control_config_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text, environ={})


def test_pattern_stage_lists_templates_without_creating_models() -> None:
    from via_otlp.model import LogBatch
    from via_otlp.patterns import PatternStage

    stage = PatternStage()
    src = Source("shop/cart", (("service.name", "cart"),))
    stage.apply(
        LogBatch(sources=[src], source_index=[0, 0], severity=["INFO"] * 2,
                 body=["user 1 logged in", "user 2 logged in"])
    )  # fmt: skip
    (info,) = stage.templates()
    assert (info.source_key, info.template, info.count) == ("shop/cart", "user <*> logged in", 2)
    page = convert.page_templates(stage.templates(), "bank/*", 10, "")
    assert page.total == 0 and stage.stats().sources == 1


def test_incident_with_and_without_its_graph() -> None:
    from via_otlp.model import (
        AnomalyKind,
        EpisodeState,
        Incident,
        IncidentLink,
        IncidentMember,
        IncidentState,
        LinkType,
    )

    def member(eid: str, service: str) -> IncidentMember:
        return IncidentMember(
            eid, AnomalyKind.NOVELTY, EpisodeState.RESOLVED, Source(service, (("service.name", service),)),
            "rh-" + eid, "t", "boom <*>", "ERROR", 10, 20, 80.0, ("ab" * 16,),
        )  # fmt: skip

    inc = Incident(
        "i1", "novelty in db: boom <*>", IncidentState.RESOLVED, 10, 20, 30, 80.0, "e1",
        ("db", "api"), (member("e1", "db"), member("e2", "api")),
        (IncidentLink("e2", "e1", LinkType.TRACE, 0.95, 15),
         IncidentLink("e2", "e1", LinkType.TEMPORAL, 0.6, 15)),
        merged_into="i0",
    )  # fmt: skip
    full = convert.incident_to_proto(inc)
    assert full.state == pb2.INCIDENT_STATE_RESOLVED and full.merged_into == "i0"
    assert (full.member_count, full.trace_links, full.temporal_links, full.semantic_links) == (
        2, 1, 1, 0,
    )  # fmt: skip
    assert [m.root for m in full.members] == [True, False]
    assert full.members[1].source.key == "api" and list(full.members[1].sample_trace_ids)
    assert [(x.type, x.linked_episode_id) for x in full.links] == [
        (pb2.LINK_TYPE_TRACE, "e1"), (pb2.LINK_TYPE_TEMPORAL, "e1"),
    ]  # fmt: skip
    bare = convert.incident_to_proto(inc, graph=False)
    assert not bare.members and not bare.links and bare.member_count == 2
    assert convert.incident_state_from_proto(0) is None
    assert convert.incident_state_from_proto(pb2.INCIDENT_STATE_OPEN) is IncidentState.OPEN
    with pytest.raises(InputError):
        convert.incident_state_from_proto(7)


def test_get_status_and_the_status_page_show_one_reading(tmp_path) -> None:
    """GetStatus and /status are two forms of one `ServiceStatus`: every number they share agrees."""
    from dataclasses import replace

    from google.protobuf.json_format import MessageToDict

    from via_otlp.app import App
    from via_otlp.lifecycle import AppState

    config = parse_config(
        f"{{pipeline: {{in_process: true}}, registry: {{enabled: false}}, "
        f'state: {{data_dir: "{tmp_path}"}}}}'
    )
    s = App(config).read_status()
    s = replace(
        s, state=AppState.SERVING, uptime_seconds=1.5, queue_depth=7, rhythm_hashes=5,
        events_emitted=3, events_suppressed=2,
        engine=replace(s.engine, profiles=4, open_episodes=1, records=11),
        patterns=replace(s.patterns, templates=9, sources=2),
    )  # fmt: skip
    page = s.as_dict()
    pb = MessageToDict(
        convert.status_to_proto(s, config.detect.bucket), preserving_proto_field_name=True
    )
    assert (pb["state"], pb["uptime_seconds"], pb["version"]) == (
        page["state"], page["uptime_seconds"], page["version"]
    )  # fmt: skip
    assert int(pb["queue"]["depth"]) == page["queue"]["depth"] == 7
    assert int(pb["queue"]["capacity"]) == page["queue"]["capacity"]
    assert int(pb["rhythm_hashes"]) == page["rhythm_hashes"] == 5
    assert int(pb["events"]["emitted"]) == page["events"]["emitted"] == 3
    assert int(pb["events"]["suppressed"]) == page["events"]["suppressed"] == 2
    assert int(pb["profiles"]["tracked"]) == page["detect"]["profiles"] == 4
    assert int(pb["profiles"]["records"]) == page["detect"]["records"] == 11
    assert int(pb["templates"]["templates"]) == page["patterns"]["templates"] == 9
    assert pb["registry"]["state"] == page["registry"]["state"] == "disabled"
    assert pb["emitter"]["state"] == page["emit"]["state"]


def test_fill_takes_ns_for_unix_nano_enums_by_name_and_leaves_none_unset() -> None:
    import enum

    class Kind(enum.Enum):
        SPIKE = "spike"
        NOT_IN_PROTO = "later"

    pb = convert.fill(pb2.Patch, Patch(PatchRule.BLOCK, source="a/*", created_ns=5, id="p"),
                      in_force=True)  # fmt: skip
    assert (pb.rule, pb.created_unix_nano, pb.HasField("threshold")) == (
        pb2.PATCH_RULE_BLOCK, 5, False
    )  # fmt: skip
    desc = pb2.AnomalyKind.DESCRIPTOR
    assert convert.enum_to_proto(Kind.SPIKE, desc) == pb2.ANOMALY_KIND_SPIKE
    assert convert.enum_to_proto(Kind.NOT_IN_PROTO, desc) == pb2.ANOMALY_KIND_UNSPECIFIED
    with pytest.raises(TypeError, match=r"Patch\.in_force"):
        convert.fill(pb2.Patch, Patch(PatchRule.MUTE, source="a"))
