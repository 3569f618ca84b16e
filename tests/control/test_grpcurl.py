"""Every Control call through grpcurl against `via-otlp serve`, as README's recipes show it.

`test_readme_recipes_run` runs the recipes verbatim (only the address, the token and the example
rhythm hash are swapped in); the other tests check what the answers say.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess

import pytest

from tests.conftest import BIN, CLIENT_TIMEOUT, REPO, ServerProcess
from tests.control.conftest import (
    CALLEE,
    CALLEE_ERROR,
    CALLER,
    HISTORY_TEMPLATE,
    NOVEL_ERROR,
    SECOND,
    SERVICE,
    TOKEN,
    call,
    grpcurl,
    ingest,
    the_incident,
)

pytestmark = pytest.mark.slow

ALL_METHODS = {
    "GetStatus", "ListProfiles", "GetProfile", "ListTemplates", "ListAnomalies",
    "ListPatches", "UpsertPatch", "DeletePatch", "GetSchema", "ListSchemas",
    "ListIncidents", "GetIncident", "SearchSimilar",
}  # fmt: skip
README_HASH = "9f86d081884c7d65"
README_INCIDENT = "5f8d04b3216a2aa4"
README_EPISODE = "55db5abaf08779a5"


def readme_recipes() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Control API", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [c for c in block.replace("\\\n", " ").splitlines() if c.startswith("grpcurl ")]


def test_readme_recipes_run(control_server: ServerProcess) -> None:
    target = control_server.control_target
    profiles = call(target, "ListProfiles", {"source": SERVICE})["profiles"]
    incident = the_incident(target)
    assert incident is not None
    recipes = readme_recipes()
    called = set()
    for recipe in recipes:
        command = (
            recipe.replace('"$AUTH"', shlex.quote(f"authorization: Bearer {TOKEN}"))
            .replace("localhost:4320", target)
            .replace(README_HASH, profiles[0]["rhythm_hash"])
            .replace(README_INCIDENT, incident["id"])
            .replace(README_EPISODE, incident["root_episode_id"])
        )
        argv = shlex.split(command)
        argv[0] = str(BIN / "grpcurl")
        out = subprocess.run(argv, capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
        assert out.returncode == 0, f"README recipe failed: {recipe}\n{out.stderr}"
        method = argv[-1].rpartition("/")[2]
        called.add(method)
        if method == "ListProfiles":
            assert json.loads(out.stdout)["profiles"], out.stdout
        if method in ("ListIncidents", "SearchSimilar"):
            answer = json.loads(out.stdout)
            assert answer.get("incidents") or answer.get("episodes"), (recipe, out.stdout)
    assert called >= ALL_METHODS, f"README has no recipe for {ALL_METHODS - called}"


def test_reflection_is_open_and_calls_need_the_token(control_server: ServerProcess) -> None:
    target = control_server.control_target
    out = subprocess.run(
        [str(BIN / "grpcurl"), "-plaintext", target, "list"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert {"via.v1.Control", "grpc.reflection.v1alpha.ServerReflection"} <= set(out.stdout.split())
    described = subprocess.run(
        [str(BIN / "grpcurl"), "-plaintext", target, "describe", "via.v1.Patch"],
        capture_output=True,
        text=True,
    )
    assert "optional double threshold = 6;" in described.stdout, described.stderr
    for token in (None, "wrong"):
        out = grpcurl(target, "GetStatus", token=token)
        assert out.returncode != 0
        assert "Unauthenticated" in out.stderr and "bearer token" in out.stderr


def test_get_status(control_server: ServerProcess) -> None:
    s = call(control_server.control_target, "GetStatus")
    assert s["state"] == "serving" and s["version"]
    assert int(s["intake"]["records_accepted"]) >= 56
    (ndjson,) = s["intake"]["requests"]
    assert (ndjson["transport"], ndjson["outcome"]) == ("ndjson", "accepted")
    assert int(s["profiles"]["tracked"]) >= 2 and s["profiles"]["bucket_seconds"] == 1
    assert int(s["templates"]["templates"]) >= 2
    assert s["registry"]["state"] == "ok" and s["registry"]["patches_listening"]
    assert s["registry"]["embedded"] and s["registry"]["database"].startswith("postgresql://")
    assert s["emitter"]["state"] == "console"


def test_profiles_filter_order_page_and_get(control_server: ServerProcess) -> None:
    target = control_server.control_target
    ingest(control_server, [
        {"service": "other", "severity": "WARN", "body": f"cache miss {i}"} for i in range(3)
    ])  # fmt: skip
    everything = call(target, "ListProfiles", {"order_by": "PROFILE_ORDER_RECENCY"})
    assert int(everything["total_size"]) >= 3
    shown, token = [], ""
    while True:
        page = call(target, "ListProfiles", {"page_size": 1, "page_token": token})
        shown += [p["rhythm_hash"] for p in page["profiles"]]
        token = page.get("next_page_token", "")
        if not token:
            break
    assert sorted(shown) == sorted(p["rhythm_hash"] for p in everything["profiles"])
    mine = call(target, "ListProfiles", {"source": SERVICE, "order_by": "PROFILE_ORDER_RATE"})
    assert {p["source"]["key"] for p in mine["profiles"]} == {SERVICE}
    info, error = sorted(mine["profiles"], key=lambda p: p["severity"] == "ERROR")
    assert info["severity"] == "INFO" and error["severity"] == "ERROR"
    answer = call(target, "GetProfile", {"rhythm_hash": info["rhythm_hash"]})
    got = answer["profile"]
    assert got["template"] == HISTORY_TEMPLATE
    # Its recent buckets (1 s each): consecutive, and holding the history's records (one a
    # second from first_seen on) that fall among them; zero fields are left out of the JSON.
    recent = answer["recent_buckets"]
    starts = [int(b["start_unix_nano"]) for b in recent]
    assert 1 <= len(recent) <= 60 and starts == list(range(starts[0], starts[-1] + 1, SECOND))
    first = int(got["first_seen_unix_nano"])
    history = [(first + i * SECOND) // SECOND * SECOND for i in range(55)]
    assert sum(b.get("count", 0) for b in recent) == sum(
        starts[0] <= t <= starts[-1] for t in history
    )
    assert all(b.get("distinct", 0) <= b.get("count", 0) <= 1 for b in recent)
    assert any(b.get("expected", 0) > 0 for b in recent)
    assert int(got["total_count"]) == 55 and got["state"] == "PROFILE_STATE_LEARNING"
    assert int(got["last_seen_unix_nano"]) > int(got["first_seen_unix_nano"]) > 0
    assert got["bucket_seconds"] == 1 and "baseline_mean" in got

    missing = grpcurl(target, "GetProfile", {"rhythm_hash": "0000000000000000"})
    assert missing.returncode != 0 and "NotFound" in missing.stderr
    bad = grpcurl(target, "ListProfiles", {"page_token": "not-a-token"})
    assert bad.returncode != 0 and "InvalidArgument" in bad.stderr


def test_templates_with_their_rhythm_hashes(control_server: ServerProcess) -> None:
    target = control_server.control_target
    templates = call(target, "ListTemplates", {"source": SERVICE})["templates"]
    texts = {t["template"]: t for t in templates}
    assert HISTORY_TEMPLATE in texts
    t = texts[HISTORY_TEMPLATE]
    assert int(t["count"]) == 55 and t["source_key"] == SERVICE and len(t["rhythm_hashes"]) == 1


def test_anomalies_filtered(control_server: ServerProcess) -> None:
    target = control_server.control_target
    found = call(target, "ListAnomalies", {"kind": "ANOMALY_KIND_NOVELTY", "source": SERVICE})
    (a,) = found["anomalies"]
    assert a["kind"] == "ANOMALY_KIND_NOVELTY" and a["severity"] == "ERROR"
    assert a["source"]["key"] == SERVICE and not a.get("muted", False)
    assert a["template"].startswith("Disk <*> failing")
    assert a["events"][0]["state"] == "EPISODE_STATE_OPEN" and a["explanation"]
    assert int(a["started_unix_nano"]) > 0 and a["bucket_seconds"] == 1
    assert call(target, "ListAnomalies", {"kind": "ANOMALY_KIND_SPIKE"}) == {}
    assert call(target, "ListAnomalies", {"source": "nobody"}) == {}
    page = call(target, "ListAnomalies", {"page_size": 1})
    assert len(page["anomalies"]) == 1
    bad = grpcurl(target, "ListAnomalies", {"page_token": "%%%"})
    assert bad.returncode != 0 and "InvalidArgument" in bad.stderr


def test_patch_upsert_list_replace_delete(control_server: ServerProcess) -> None:
    target = control_server.control_target
    created = call(target, "UpsertPatch", {
        "patch": {"rule": "PATCH_RULE_THRESHOLD", "source": "shop/*", "threshold": 75,
                  "reason": "grpcurl test", "author": "tests"},
        "ttl_seconds": 3600,
    })["patch"]  # fmt: skip
    pid = created["id"]
    assert created["in_force"] and created["active"] and created["threshold"] == 75
    assert int(created["expires_unix_nano"]) > int(created["created_unix_nano"]) > 0
    listed = {p["id"]: p for p in call(target, "ListPatches")["patches"]}
    assert listed[pid]["rule"] == "PATCH_RULE_THRESHOLD"
    replaced = call(target, "UpsertPatch", {
        "patch": {"id": pid, "rule": "PATCH_RULE_MUTE", "source": "shop/*", "active": False},
    })["patch"]  # fmt: skip
    assert replaced["rule"] == "PATCH_RULE_MUTE" and not replaced.get("in_force", False)
    assert pid not in {p["id"] for p in call(target, "ListPatches").get("patches", [])}
    assert pid in {
        p["id"] for p in call(target, "ListPatches", {"include_inactive": True})["patches"]
    }
    assert call(target, "DeletePatch", {"id": pid}) == {}
    again = grpcurl(target, "DeletePatch", {"id": pid})
    assert again.returncode != 0 and "NotFound" in again.stderr
    for bad in (
        {"rule": "PATCH_RULE_DROP"},  # selects nothing
        {"rule": "PATCH_RULE_DROP", "template": "re:(unclosed"},
        {"rule": "PATCH_RULE_THRESHOLD", "source": "x"},  # no threshold
        {"source": "x"},  # no rule
    ):
        out = grpcurl(target, "UpsertPatch", {"patch": bad})
        assert out.returncode != 0 and "InvalidArgument" in out.stderr, (bad, out.stderr)


def test_schemas(control_server: ServerProcess) -> None:
    target = control_server.control_target
    schema = call(target, "GetSchema", {"source": SERVICE})["schema"]
    assert schema["source"]["key"] == SERVICE and int(schema["samples"]) >= 5
    keys = {(a["scope"], a["key"]): a for a in schema["attributes"]}
    assert keys[("log", "user.id")]["types"] == {"string": 1}
    assert int(schema["updated_unix_nano"]) >= int(schema["created_unix_nano"]) > 0
    listed = call(target, "ListSchemas")["schemas"]
    assert SERVICE in {s["source"]["key"] for s in listed}
    out = grpcurl(target, "GetSchema", {"source": "nobody"})
    assert out.returncode != 0 and "NotFound" in out.stderr
    out = grpcurl(target, "GetSchema", {})
    assert out.returncode != 0 and "InvalidArgument" in out.stderr
    out = grpcurl(target, "ListSchemas", {"page_token": convert_token_of_another_list()})
    assert out.returncode != 0 and "InvalidArgument" in out.stderr


def test_list_and_get_incident_with_its_graph(control_server: ServerProcess) -> None:
    target = control_server.control_target
    listed = call(target, "ListIncidents", {"source": CALLEE})["incidents"]
    (inc,) = listed
    # without include_graph: the counts, not the members and links
    assert inc["member_count"] == 2 and inc["trace_links"] >= 1
    assert "members" not in inc and "links" not in inc
    assert inc["state"] == "INCIDENT_STATE_OPEN" and not inc.get("merged_into")
    assert set(inc["sources"]) == {CALLER, CALLEE} and inc["title"].startswith("novelty in ")
    assert int(inc["started_unix_nano"]) > 0 and inc["score"] > 0

    got = call(target, "GetIncident", {"id": inc["id"]})["incident"]
    members = {m["source"]["key"]: m for m in got["members"]}
    assert set(members) == {CALLER, CALLEE}
    (root,) = [m for m in got["members"] if m.get("root")]
    assert root["episode_id"] == got["root_episode_id"]
    assert members[CALLEE]["template"].startswith("Payment gateway timeout")
    assert members[CALLER]["kind"] == "ANOMALY_KIND_NOVELTY"
    assert members[CALLER]["sample_trace_ids"] and set(members[CALLER]["sample_trace_ids"]) & set(
        members[CALLEE]["sample_trace_ids"]
    )
    (link,) = got["links"]
    assert link["type"] == "LINK_TYPE_TRACE" and link["confidence"] >= 0.9
    assert {link["episode_id"], link["linked_episode_id"]} == {
        members[CALLER]["episode_id"],
        members[CALLEE]["episode_id"],
    }
    # checkout's disk failure at the same moment is unrelated: an incident of its own
    everything = call(target, "ListIncidents", {"page_size": 1})
    assert len(everything["incidents"]) == 1 and everything["next_page_token"]
    rest = call(target, "ListIncidents", {"page_token": everything["next_page_token"]})
    ids = {everything["incidents"][0]["id"]} | {i["id"] for i in rest["incidents"]}
    assert inc["id"] in ids and len(ids) == 2
    alone = call(target, "ListIncidents", {"source": SERVICE})["incidents"]
    assert [i["sources"] for i in alone] == [[SERVICE]]
    assert call(target, "ListIncidents", {"state": "INCIDENT_STATE_RESOLVED"}) == {}

    missing = grpcurl(target, "GetIncident", {"id": "0000000000000000"})
    assert missing.returncode != 0 and "NotFound" in missing.stderr
    empty = grpcurl(target, "GetIncident", {})
    assert empty.returncode != 0 and "InvalidArgument" in empty.stderr
    bad = grpcurl(target, "ListIncidents", {"page_token": "%%%"})
    assert bad.returncode != 0 and "InvalidArgument" in bad.stderr


def test_search_similar_by_text_and_by_episode(control_server: ServerProcess) -> None:
    target = control_server.control_target
    inc = the_incident(target)
    assert inc is not None
    by_text = call(target, "SearchSimilar", {"text": CALLEE_ERROR, "limit": 3})
    top = by_text["episodes"][0]
    assert top["source"] == CALLEE and top["similarity"] > 0.5
    assert top["kind"] == "ANOMALY_KIND_NOVELTY" and top["incident_id"] == inc["id"]
    assert len(by_text["episodes"]) == 3
    assert by_text["incidents"][0]["incident_id"] == inc["id"]
    assert by_text["incidents"][0]["title"] == inc["title"]

    # by episode: its own incident is left out (the answer is "when did this happen before")
    callee = next(m for m in inc["members"] if m["source"]["key"] == CALLEE)
    before = call(target, "SearchSimilar", {"episode_id": callee["episode_id"]})
    assert {e["incident_id"] for e in before["episodes"]} == {
        i["incident_id"] for i in before["incidents"]
    }
    assert inc["id"] not in {e["incident_id"] for e in before["episodes"]}
    assert NOVEL_ERROR.split()[0] in before["episodes"][0]["template"]
    mine = call(
        target, "SearchSimilar", {"episode_id": callee["episode_id"], "include_same_incident": True}
    )
    assert CALLER in {e["source"] for e in mine["episodes"]}  # its own incident's other member
    assert callee["episode_id"] not in {e["episode_id"] for e in mine["episodes"]}

    for bad in ({}, {"text": "x", "episode_id": "y"}):
        out = grpcurl(target, "SearchSimilar", bad)
        assert out.returncode != 0 and "InvalidArgument" in out.stderr, out.stderr
    out = grpcurl(target, "SearchSimilar", {"episode_id": "0000000000000000"})
    assert out.returncode != 0 and "NotFound" in out.stderr, out.stderr


def convert_token_of_another_list() -> str:
    from via_otlp.paging import encode_token

    return encode_token("templates:", ["x"])


def test_no_other_recipe_names_a_missing_method() -> None:
    for recipe in readme_recipes():
        m = re.search(r"via\.v1\.Control/(\w+)", recipe)
        if m:
            assert m.group(1) in ALL_METHODS, recipe
