"""Secrets never leave through status, logs or `config check`: one helper, tested here."""

from __future__ import annotations

import pytest

from via_otlp.redact import REDACTED, redact_config, redact_text, redact_url
from via_otlp.registry._db import as_upstream, redact_dsn


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://via:s3cret@db:5432/via", "postgresql://via:***@db:5432/via"),
        ("postgresql://via@db/via?password=s3cret", "postgresql://via@db/via?password=***"),
        (
            "postgres://db/via?sslmode=require&PassWord=s3cret&application_name=x",
            "postgres://db/via?sslmode=require&PassWord=***&application_name=x",
        ),
        (
            "postgresql://db/via?sslpassword=k&host=/tmp",
            "postgresql://db/via?sslpassword=***&host=/tmp",
        ),
        ("https://qdrant:6333/?api_key=abc", "https://qdrant:6333/?api_key=***"),
        ("postgresql://u:p%40ss@[::1]:5432/d", "postgresql://u:***@[::1]:5432/d"),
        ("postgresql://postgres@/postgres?host=%2Ftmp%2Fx&port=5432", None),
        ("collector:4327", None),
        ("", None),
    ],
)
def test_redact_url(url: str, expected: str | None) -> None:
    assert redact_url(url) == (url if expected is None else expected)
    assert redact_dsn(url) == redact_url(url)


def test_redact_text_hides_passwords_inside_messages() -> None:
    text = (
        "connect to postgresql://via:hunter2@db/via failed; "
        "dsn host=db password=hunter2 user=via; url http://x/?token=hunter2&a=1"
    )
    out = redact_text(text)
    assert "hunter2" not in out
    assert "postgresql://via:***@db/via" in out
    assert "host=db password=*** user=via" in out
    assert "token=***&a=1" in out


def test_redact_text_keeps_ordinary_text() -> None:
    text = "tokens=3 passwordless login; key=value; http://host:4318/v1/logs"
    assert redact_text(text) == text


def test_upstream_errors_from_postgres_carry_no_password() -> None:
    exc = OSError("could not connect: postgresql://via:hunter2@db:5432/via?password=hunter2")
    assert "hunter2" not in str(as_upstream(exc, "connect"))


def test_redact_config_hides_every_secret_and_keeps_the_rest() -> None:
    plain = {
        "receive": {"auth": {"bearer_token": ["old", "new", ""]}},
        "control": {"token": "s3cret", "endpoint": "0.0.0.0:4320"},
        "emit": {"headers": {"authorization": "Bearer x", "x-scope": "tenant"}, "endpoint": ""},
        "registry": {"dsn": "postgresql://via:pw@db/via"},
        "correlate": {"qdrant": {"api_key": "", "url": "http://q:6333"}},
    }
    out = redact_config(plain)
    assert out["receive"]["auth"]["bearer_token"] == [REDACTED, REDACTED, ""]
    assert out["control"] == {"token": REDACTED, "endpoint": "0.0.0.0:4320"}
    assert out["emit"]["headers"] == {"authorization": REDACTED, "x-scope": REDACTED}
    assert out["registry"]["dsn"] == "postgresql://via:***@db/via"
    assert out["correlate"]["qdrant"] == {"api_key": "", "url": "http://q:6333"}
    assert plain["control"]["token"] == "s3cret"  # the input is not changed
