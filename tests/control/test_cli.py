"""`via-otlp ctl` against `via-otlp serve`: readable tables, `--json` for scripts, one-line errors."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ServerProcess, free_port
from tests.control.conftest import HISTORY_TEMPLATE, SERVICE, TOKEN, ctl

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

    info = next(p for p in data["profiles"] if p["template"] == HISTORY_TEMPLATE)
    detail = ok("profile", info["rhythm_hash"], server=control_server)
    assert HISTORY_TEMPLATE in detail and "baseline" in detail and "learning" in detail
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
