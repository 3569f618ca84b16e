"""Times as via-otlp keeps them (integer nanoseconds since the Unix epoch, UTC) and as text.

The one place that turns RFC 3339 / ISO 8601 text and `datetime` values (PostgreSQL's
``timestamptz``) into nanoseconds and back, in integer arithmetic so no value loses digits to
a float on the way.

>>> parse_rfc3339("2023-11-14T22:13:20.5Z")
1700000000500000000
>>> format_rfc3339(1_700_000_000_000_000_001)
'2023-11-14T22:13:20.000000001Z'
>>> ns_from_datetime(datetime_from_ns(1_700_000_000_123_456_000))
1700000000123456000
"""

from __future__ import annotations

import datetime as dt

NS_PER_SECOND = 1_000_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def ns_from_datetime(t: dt.datetime) -> int:
    """Nanoseconds since the epoch of `t` (a naive `t` is UTC); exact to its microsecond."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    d = t - _EPOCH
    return (d.days * 86_400 + d.seconds) * NS_PER_SECOND + d.microseconds * 1000


def datetime_from_ns(ns: int) -> dt.datetime:
    """The UTC `datetime` of `ns` (nanoseconds since the epoch), to the nearest microsecond."""
    return _EPOCH + dt.timedelta(microseconds=(ns + 500) // 1000)


def parse_rfc3339(text: str, *, naive_is_utc: bool = False) -> int:
    """Nanoseconds of an RFC 3339 / ISO 8601 time (``Z``, ``z`` or an offset; digits past the
    microsecond are dropped). A time without a zone is UTC when `naive_is_utc`, else an error.
    A `ValueError` says what was wrong, quoting `text`.

    >>> parse_rfc3339("2024-03-04T00:00:00", naive_is_utc=True)
    1709510400000000000
    >>> parse_rfc3339("2024-03-04T00:00:00")
    Traceback (most recent call last):
    ValueError: '2024-03-04T00:00:00' has no time zone (add Z or an offset)
    """
    try:
        t = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not RFC 3339") from None
    if t.tzinfo is None and not naive_is_utc:
        raise ValueError(f"{text!r} has no time zone (add Z or an offset)")
    return ns_from_datetime(t)


def format_rfc3339(ns: int) -> str:
    """RFC 3339 UTC with nanoseconds, e.g. ``2024-05-01T12:00:00.000000001Z``."""
    seconds, nanos = divmod(int(ns), NS_PER_SECOND)
    stamp = dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"
