"""`via-otlp ctl` against `via-otlp serve`: readable tables, `--json` for scripts, one-line errors."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ServerProcess, free_port
from tests.control.conftest import (
    CALLEE,
    CALLEE_ERROR,
    CALLER,
    HISTORY_TEMPLATE,
    SERVICE,
    TOKEN,
    ctl,
    the_incident,
)

pytestmark = pytest.mark.slow


def ok(*args: str, server: ServerProcess) -> str:
    out = ctl(*args, target=server.control_target)
    assert out.returncode == 0, f"ctl {' '.join(args)}: {out.stderr}"
    return out.stdout


def test_status_table_and_json(control_server: ServerProcess) -> None:
    text = ok("status", server=control_server)
    assert "serving" in text and "registry" in text and "patches in force" in text
    data = json.loads(ok("status", "--json", server=control_server))
    assert data["state"] == "serving" and int(data["intake"]["records_accepted"]) >= 56


def test_profiles_profile_and_templates(control_server: ServerProcess) -> None:
    table = ok("profiles", "--source", SERVICE, server=control_server).splitlines()
    assert table[0].split()[:3] == ["RHYTHM", "HASH", "SOURCE"]
    rows = [r for r in table[1:] if r.strip()]
    assert len(rows) == 2 and all(SERVICE in r for r in rows)
    # the columns line up: every row has its source where the header has SOURCE
    column = table[0].index("SOURCE")
    assert all(r[column:].startswith(SERVICE) for r in rows)

    data = json.loads(ok("profiles", "--order", "recency", "--json", server=control_server))
    hashes = [p["rhythm_hash"] for p in data["profiles"]]
    assert len(hashes) >= 2
    limited = ctl("profiles", "--limit", "1", target=control_server.control_target)
    assert len(limited.stdout.strip().splitlines()) == 2 and "--limit" in limited.stderr

    info = next(
        p
        for p in data["profiles"]
        if p["template"] == HISTORY_TEMPLATE and p["source"]["key"] == SERVICE
    )
    detail = ok("profile", info["rhythm_hash"], server=control_server)
    assert HISTORY_TEMPLATE in detail and "baseline" in detail and "learning" in detail
    # the recent buckets: a sparkline, then the last few as a table
    spark = next(line for line in detail.splitlines() if line.startswith("recent"))
    assert set(spark.split()[1]) <= set("▁▂▃▄▅▆▇█") and "buckets, oldest first" in spark
    lines = detail.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("BUCKET START"))
    assert lines[at].split() == ["BUCKET", "START", "COUNT", "EXPECTED", "DISTINCT"]
    assert len(lines[at + 1 :]) == 10
    short = ok("profile", info["rhythm_hash"], "--buckets", "0", server=control_server)
    assert "recent" in short and "BUCKET START" not in short
    as_json = json.loads(ok("profile", info["rhythm_hash"], "--json", server=control_server))
    assert as_json["profile"]["rhythm_hash"] == info["rhythm_hash"]

    templates = ok("templates", "--source", SERVICE, server=control_server)
    assert HISTORY_TEMPLATE in templates and info["rhythm_hash"] in templates


def test_anomalies(control_server: ServerProcess) -> None:
    text = ok("anomalies", "--kind", "novelty", "--since", "1h", server=control_server)
    assert "novelty" in text and "open" in text and SERVICE in text
    data = json.loads(
        ok("anomalies", "--source", SERVICE, "--state", "open", "--json", server=control_server)
    )
    assert data["anomalies"][0]["kind"] == "ANOMALY_KIND_NOVELTY"
    none = ctl("anomalies", "--kind", "spike", target=control_server.control_target)
    assert none.returncode == 0 and "(no anomalies)" in none.stderr


def test_patch_add_list_rm(control_server: ServerProcess) -> None:
    added = json.loads(ok(
        "patch", "add", "--rule", "MUTE", "--source", "cli-*", "--template", "*timeout*",
        "--ttl", "2h", "--reason", "INC-42", "--json", server=control_server,
    ))["patch"]  # fmt: skip
    pid = added["id"]
    assert added["rule"] == "PATCH_RULE_MUTE" and added["in_force"] and added["author"]
    table = ok("patch", "list", server=control_server)
    row = next(line for line in table.splitlines() if line.startswith(pid))
    assert "MUTE" in row and "cli-*" in row and "INC-42" in row and "never" not in row
    threshold = ok(
        "patch", "add", "--rule", "threshold", "--rhythm-hash", "00000000000000aa",
        "--threshold", "90", "--id", "cli-threshold", server=control_server,
    )  # fmt: skip
    assert "cli-threshold" in threshold and "THRESHOLD" in threshold and "90" in threshold
    out = ok("patch", "rm", pid, "cli-threshold", server=control_server)
    assert out.splitlines() == [f"removed patch {pid}", "removed patch cli-threshold"]
    listed = json.loads(ok("patch", "list", "--all", "--json", server=control_server))
    assert pid not in {p["id"] for p in listed["patches"]}

    missing = ctl("patch", "rm", pid, target=control_server.control_target)
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"via-otlp ctl: NOT_FOUND: no patch with id '{pid}'"
    bad = ctl(
        "patch", "add", "--rule", "drop", "--template", "re:(", target=control_server.control_target
    )
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    assert "INVALID_ARGUMENT" in bad.stderr and "regular expression" in bad.stderr
    usage = ctl("patch", "add", "--rule", "drop", "--source", "x", "--ttl", "soon",
                target=control_server.control_target)  # fmt: skip
    assert usage.returncode == 2 and "--ttl" in usage.stderr


def test_schema(control_server: ServerProcess) -> None:
    listing = ok("schema", server=control_server)
    assert listing.splitlines()[0].split()[:2] == ["SOURCE", "KEYS"] and SERVICE in listing
    detail = ok("schema", SERVICE, server=control_server)
    assert "user.id" in detail and "string 100%" in detail
    data = json.loads(ok("schema", SERVICE, "--json", server=control_server))
    assert data["schema"]["source"]["key"] == SERVICE


def test_environment_gives_target_and_token(control_server: ServerProcess) -> None:
    env = {"VIA_CONTROL_ENDPOINT": control_server.control_target, "VIA_CONTROL_TOKEN": TOKEN}
    out = ctl("status", "--json", target=control_server.control_target, token=None, env=env)
    assert out.returncode == 0, out.stderr
    # flags before the subcommand work too
    out = ctl("--json", "status", target=control_server.control_target)
    assert out.returncode == 0 and json.loads(out.stdout)["state"] == "serving"


def test_unreachable_or_refused_is_one_line(control_server: ServerProcess) -> None:
    refused = ctl("status", target=control_server.control_target, token=None)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "refused" in refused.stderr
    assert "VIA_CONTROL_TOKEN" in refused.stderr
    wrong = ctl("status", target=control_server.control_target, token="nope")
    assert wrong.returncode == 1 and "refused" in wrong.stderr
    nobody = f"127.0.0.1:{free_port()}"
    down = ctl("status", target=nobody)
    assert down.returncode == 1 and down.stderr.count("\n") == 1
    assert f"cannot reach the control API at {nobody}" in down.stderr


def test_incidents_and_one_incident_with_its_graph(control_server: ServerProcess) -> None:
    inc = the_incident(control_server.control_target)
    assert inc is not None
    table = ok("incidents", "--since", "1h", server=control_server).splitlines()
    assert table[0].split()[:4] == ["ID", "STARTED", "STATE", "SCORE"]
    row = next(r for r in table if r.startswith(inc["id"]))
    assert "open" in row and "1 trace" in row and CALLEE in row and CALLER in row
    assert len([r for r in table[1:] if r.strip()]) == 2  # and checkout's own incident
    only = ok("incidents", "--source", SERVICE, "--state", "open", server=control_server)
    assert inc["id"] not in only and SERVICE in only
    data = json.loads(ok("incidents", "--source", CALLEE, "--json", server=control_server))
    assert [i["id"] for i in data["incidents"]] == [inc["id"]]
    none = ctl("incidents", "--state", "resolved", target=control_server.control_target)
    assert none.returncode == 0 and "(no incidents)" in none.stderr

    detail = ok("incident", inc["id"], server=control_server)
    lines = detail.splitlines()
    assert lines[0].split() == ["incident", inc["id"]]
    assert "graph     2 episodes, 1 trace links" in detail
    root = next(m for m in inc["members"] if m["episode_id"] == inc["root_episode_id"])
    other = next(m for m in inc["members"] if m["episode_id"] != inc["root_episode_id"])
    tree = lines[lines.index("") + 1 :]
    assert tree[0].startswith(f"{root['episode_id']}  {root['source']['key']}  novelty  open")
    assert tree[1].startswith("└─ trace 0.9") and tree[1].split(" ── ")[1].startswith(
        f"{other['episode_id']}  {other['source']['key']}"
    )
    as_json = json.loads(ok("incident", inc["id"], "--json", server=control_server))
    assert len(as_json["incident"]["links"]) == 1
    missing = ctl("incident", "0000000000000000", target=control_server.control_target)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


def test_similar_by_text_and_by_episode(control_server: ServerProcess) -> None:
    inc = the_incident(control_server.control_target)
    assert inc is not None
    text = ok("similar", CALLEE_ERROR, "--limit", "2", server=control_server).splitlines()
    assert text[0].split()[:3] == ["SIMILARITY", "STARTED", "KIND"]
    assert CALLEE in text[1] and inc["id"] in text[1]
    assert len([r for r in text[1 : text.index("")] if r.strip()]) == 2
    assert any(r.startswith("SIMILARITY  INCIDENT") for r in text)
    callee = next(m for m in inc["members"] if m["source"]["key"] == CALLEE)
    data = json.loads(
        ok("similar", "--episode", callee["episode_id"], "--json", server=control_server)
    )
    assert data["episodes"] and inc["id"] not in {e["incident_id"] for e in data["episodes"]}
    same = json.loads(ok("similar", "--episode", callee["episode_id"], "--same-incident",
                         "--json", server=control_server))  # fmt: skip
    assert CALLER in {e["source"] for e in same["episodes"]}
    usage = ctl("similar", target=control_server.control_target)
    assert usage.returncode == 2 and "TEXT or --episode" in usage.stderr
    missing = ctl("similar", "--episode", "nope", target=control_server.control_target)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
