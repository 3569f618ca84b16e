"""A registry DSN's password never shows: not in `/status`, not in `ctl status`, not in the log
(start-up, and the error of a failed start), whether it is in the userinfo or a `password=`
query parameter. The redaction itself is `via_otlp.redact` (unit-tested in tests/unit)."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BIN, CLIENT_TIMEOUT, free_port, start_server
from tests.registry.conftest import make_tempdir
from via_otlp.registry.embedded import EmbeddedPostgres

pytestmark = pytest.mark.slow

SECRETS = ("s3cret-user-pw", "s3cret-query-pw")


@pytest.fixture(scope="module")
def postgres() -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(make_tempdir("via-secrets-") / "pg", durable=False)
    server.start()
    yield server
    server.stop()


def with_passwords(dsn: str) -> str:
    """The embedded server trusts local connections, so any password connects."""
    parts = urllib.parse.urlsplit(dsn)
    netloc = parts.netloc.replace("postgres@", f"postgres:{SECRETS[0]}@")
    query = parts.query + f"&password={SECRETS[1]}&application_name=via-test"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} shows a password: {text[:2000]}"


def test_dsn_passwords_are_hidden_everywhere(tmp_path: Path, postgres: EmbeddedPostgres) -> None:
    token = "control-token-for-the-test"
    server = start_server(
        tmp_path,
        {
            "registry": {"dsn": with_passwords(postgres.dsn)},
            "control": {"token": token},
            "correlate": {"enabled": False},
        },
    )
    try:
        status = server.status()
        assert status["registry"]["state"] == "ok", status["registry"]
        assert "***" in status["registry"]["database"]
        assert_no_secret("/status", json.dumps(status))
        ctl = subprocess.run(
            [str(BIN / "via-otlp"), "ctl", "status", "--json", "--target", server.control_target,
             "--token", token],
            capture_output=True, text=True, timeout=CLIENT_TIMEOUT,
        )  # fmt: skip
        assert ctl.returncode == 0, ctl.stderr
        assert "***" in ctl.stdout
        assert_no_secret("ctl status", ctl.stdout)
        table = subprocess.run(
            [str(BIN / "via-otlp"), "ctl", "status", "--target", server.control_target,
             "--token", token],
            capture_output=True, text=True, timeout=CLIENT_TIMEOUT,
        )  # fmt: skip
        assert_no_secret("ctl status (table)", table.stdout + table.stderr)
    finally:
        assert server.stop() == 0, server.log()
    assert_no_secret("the server log", server.log())
    check = subprocess.run(
        [str(BIN / "via-otlp"), "config", "check", str(server.config_path)],
        capture_output=True, text=True, timeout=CLIENT_TIMEOUT,
    )  # fmt: skip
    assert check.returncode == 0 and "***" in check.stdout
    assert_no_secret("config check", check.stdout + check.stderr)


def test_a_failed_start_does_not_print_the_password(tmp_path: Path) -> None:
    dsn = (
        f"postgresql://via:{SECRETS[0]}@127.0.0.1:{free_port()}/via"
        f"?password={SECRETS[1]}&connect_timeout=2"
    )
    config = tmp_path / "via.json5"
    config.write_text(
        json.dumps(
            {
                "receive": {
                    "grpc": {"endpoint": f"127.0.0.1:{free_port()}"},
                    "http": {"endpoint": f"127.0.0.1:{free_port()}"},
                },
                "control": {"enabled": False},
                "correlate": {"enabled": False},
                "registry": {"dsn": dsn, "connect_timeout": "2s"},
                "state": {"data_dir": str(tmp_path / "data")},
            }
        )
    )
    out = subprocess.run(
        [str(BIN / "via-otlp"), "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=CLIENT_TIMEOUT,
    )  # fmt: skip
    assert out.returncode == 1
    assert "registry" in out.stderr.strip().splitlines()[-1]
    # The shards were starting beside the registry: they are stopped without a word of their own.
    assert "Traceback" not in out.stderr, out.stderr
    assert_no_secret("the start-up error", out.stdout + out.stderr)
