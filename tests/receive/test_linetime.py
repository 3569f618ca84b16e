"""Timestamps of raw log lines (replay --format text)."""

from __future__ import annotations

import calendar

import pytest

from via_otlp.receive.linetime import LineTimes

NOW = calendar.timegm((2024, 5, 2, 0, 0, 0)) * 10**9
T = calendar.timegm((2024, 5, 1, 12, 0, 1)) * 10**9  # 2024-05-01 12:00:01 UTC


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("2024-05-01T12:00:01Z GET /", T),
        ("2024-05-01T12:00:01.250Z x", T + 250_000_000),
        ("2024-05-01 12:00:01,5 INFO x", T + 500_000_000),
        ("2024-05-01T14:00:01+02:00 x", T),
        ("2024-05-01 07:00:01 -0500 x", T),
        ("<34>1 2024-05-01T12:00:01Z host app - - x", T),  # RFC 5424
        ("[2024-05-01 12:00:01] x", T),
        ("Wed May  1 12:00:01 2024 kernel: x", T),  # ctime
        ("[Wed May 01 12:00:01.123456 2024] [error] x", T + 123_456_000),  # Apache error log
        ("May  1 12:00:01 web sshd[42]: x", T),  # BSD syslog, year of the reader
        ("<13>May  1 12:00:01 web x", T),
        ('10.0.0.1 - - [01/May/2024:14:00:01 +0200] "GET / HTTP/1.1" 200', T),  # common log format
        ("1714564801 x", T),
        ("1714564801.75 x", T + 750_000_000),
        ("1714564801000 x", T),  # milliseconds
        ("plain words", None),
        ("12345 requests", None),  # a number, not a time
        ("2024-13-01T00:00:00Z x", None),  # no 13th month
        ("2024-02-30 00:00:00 x", None),
        ("Foo  1 12:00:01 x", None),
    ],
)
def test_formats(line: str, expected: int | None) -> None:
    assert LineTimes(NOW).time_of(line) == expected


def test_syslog_lines_from_last_december_read_in_january() -> None:
    jan = calendar.timegm((2025, 1, 1, 0, 10, 0)) * 10**9
    assert (
        LineTimes(jan).time_of("Dec 31 23:59:00 h x")
        == calendar.timegm((2024, 12, 31, 23, 59, 0)) * 10**9
    )


def test_the_format_that_matched_is_tried_first() -> None:
    p = LineTimes(NOW)
    assert p.time_of("May  1 12:00:01 web x") == T
    assert p._parsers[0] == p._syslog
    assert p.time_of("2024-05-01T12:00:01Z x") == T  # still finds the others
