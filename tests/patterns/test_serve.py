"""`via-otlp serve` with the lines that froze it (#11), and templates named by the sender.

Sent as NDJSON, the issue's two lines (100 block ids, then 9) used to stall the server for
minutes: health checks timed out and SIGTERM was ignored. Now they, and the rest of their class,
are templated while the server keeps answering, and it stops cleanly (the exit code is checked).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from benchmarks.synthetic_logs import adversarial_lines
from tests.conftest import CLIENT_TIMEOUT, ServerProcess, http_json, http_post, start_server
from tests.control.conftest import ctl

pytestmark = pytest.mark.slow

SERVICE = "datanode"
HINTED = "hinted"
HINT = "cache miss for key <*>"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # no registry and no correlation: templates need neither, and the server starts sooner
    server = start_server(
        tmp_path_factory.mktemp("serve"),
        {"registry": {"enabled": False}, "correlate": {"enabled": False}},
    )
    yield server
    assert server.stop() == 0, server.log()


def _issue_lines() -> list[str]:
    ids = [f"blk_{'-' if i % 2 else ''}{113716027091258125 + 7919 * i}" for i in range(100)]
    return [
        f"ask 10.0.0.1:50010 to delete {' '.join(ids)} now",
        f"ask 10.0.0.2:50010 to delete {' '.join(ids[:9])} now",
    ]


def test_the_issue_lines_are_templated_while_the_server_answers(srv: ServerProcess) -> None:
    lines = _issue_lines() + adversarial_lines(72)
    before = srv.status()["intake"]["records_consumed"]
    body = "\n".join(json.dumps({"service": SERVICE, "body": line}) for line in lines).encode()
    code, _ = http_post(f"{srv.http_url}/v1/ingest", body, "application/x-ndjson")
    assert code == 200
    assert http_json(f"{srv.http_url}/healthz")  # answered at once, mining or not
    srv.wait_for(
        lambda s: s["intake"]["records_consumed"] >= before + len(lines),
        what="the 74 lines to be consumed",
    )
    out = ctl(
        "templates", "--source", f"*{SERVICE}*", "--json", target=srv.control_target, token=None
    )
    assert out.returncode == 0, out.stderr
    texts = {t["template"] for t in json.loads(out.stdout)["templates"]}
    # the 9-id line's template, widened since by the class's shorter runs
    assert "ask <*> to delete <*> now" in texts


def test_templates_named_by_the_sender_are_listed(srv: ServerProcess) -> None:
    records = [
        {
            "service": HINTED,
            "body": f"cache miss for key k{i}",
            "attributes": {"log.record.template": HINT},
        }
        for i in range(5)
    ]
    body = "\n".join(json.dumps(r) for r in records).encode()
    assert http_post(f"{srv.http_url}/v1/ingest", body, "application/x-ndjson")[0] == 200
    deadline = time.monotonic() + CLIENT_TIMEOUT
    while True:
        out = ctl(
            "templates", "--source", f"*{HINTED}*", "--json", target=srv.control_target, token=None
        )
        assert out.returncode == 0, out.stderr
        listed = json.loads(out.stdout).get("templates", [])
        if listed or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [(t["template"], int(t["count"])) for t in listed] == [(HINT, 5)]
    assert listed[0]["template_id"].startswith("h")
