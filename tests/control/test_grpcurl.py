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

from tests.conftest import BIN, REPO, ServerProcess
from tests.control.conftest import HISTORY_TEMPLATE, SERVICE, TOKEN, call, grpcurl, ingest

pytestmark = pytest.mark.slow

ALL_METHODS = {
    "GetStatus", "ListProfiles", "GetProfile", "ListTemplates", "ListAnomalies",
    "ListPatches", "UpsertPatch", "DeletePatch", "GetSchema", "ListSchemas",
}  # fmt: skip
README_HASH = "9f86d081884c7d65"


def readme_recipes() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Control API", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [c for c in block.replace("\\\n", " ").splitlines() if c.startswith("grpcurl ")]


def test_readme_recipes_run(control_server: ServerProcess) -> None:
    target = control_server.control_target
    profiles = call(target, "ListProfiles", {"source": SERVICE})["profiles"]
    recipes = readme_recipes()
    called = set()
    for recipe in recipes:
        command = (
            recipe.replace('"$AUTH"', shlex.quote(f"authorization: Bearer {TOKEN}"))
            .replace("localhost:4320", target)
            .replace(README_HASH, profiles[0]["rhythm_hash"])
        )
        argv = shlex.split(command)
        argv[0] = str(BIN / "grpcurl")
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, f"README recipe failed: {recipe}\n{out.stderr}"
        method = argv[-1].rpartition("/")[2]
        called.add(method)
        if method == "ListProfiles":
            assert json.loads(out.stdout)["profiles"], out.stdout
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
    got = call(target, "GetProfile", {"rhythm_hash": info["rhythm_hash"]})["profile"]
    assert got["template"] == HISTORY_TEMPLATE
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


def convert_token_of_another_list() -> str:
    from via_otlp.control.convert import encode_token

    return encode_token("templates:", ["x"])


def test_no_other_recipe_names_a_missing_method() -> None:
    for recipe in readme_recipes():
        m = re.search(r"via\.v1\.Control/(\w+)", recipe)
        if m:
            assert m.group(1) in ALL_METHODS, recipe
