"""How long the HTTP intake reads on after answering a request whose body it has not read.

The 408 of a stalled body closes its connection at once (tests/e2e/test_limits.py); the other
early answers (413 by Content-Length, 401, 415) let aiohttp read the rest for a while, so that a
client still sending reads the answer rather than a reset, but no longer than a stalled body is
allowed."""

from __future__ import annotations

from via_otlp.receive.config import HttpConfig
from via_otlp.receive.http_server import LINGERING_TIME, lingering_time


def test_lingering_is_bounded_by_the_body_read_timeout() -> None:
    assert lingering_time(HttpConfig(body_read_timeout=1.0)) == 1.0
    assert lingering_time(HttpConfig()) == LINGERING_TIME  # 30 s allowed: aiohttp's default 10 s
