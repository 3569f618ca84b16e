"""The timestamp a raw log line carries, so a replayed plain-text file keeps its own time.

Recognised at the start of a line (after an optional syslog ``<PRI>`` and an opening ``[``):

- ISO 8601 / RFC 3339: ``2024-05-01T12:00:01.123Z``, ``2024-05-01 12:00:01,123 +0200``
  (RFC 5424 syslog ``<34>1 2024-05-01T12:00:01Z host ...`` too);
- ctime: ``Wed May  1 12:00:01 2024`` (Apache's ``[Wed May 01 12:00:01.123456 2024]``);
- BSD syslog (RFC 3164): ``May  1 12:00:01 host ...`` — it has no year: the reader's year, or
  the year before when that would put the line more than a day in the future;
- epoch seconds or milliseconds: ``1714564801 ...``, ``1714564801.5 ...``, ``1714564801123 ...``;

and anywhere in the first 200 characters, the common log format's ``[10/Oct/2000:13:55:36 -0700]``.
A time without a zone is UTC. Each match is a compiled pattern tried at a fixed place (no
search over the line but the bracketed CLF one); the pattern that matched last is tried first,
since a file keeps one format.

>>> p = LineTimes(now_ns=1_714_600_000 * 10**9)
>>> p.time_of("2024-05-01T12:00:01.5Z GET /")
1714564801500000000
>>> p.time_of("May  1 12:00:01 web sshd[42]: accepted") == 1714564801 * 10**9
True
>>> p.time_of("no time here") is None
True
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable

_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
)}  # fmt: skip
_MON = r"(?P<mon>[A-Za-z]{3})"
_HMS = r"(?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)(?:[.,](?P<frac>\d{1,9}))?"
_ZONE = r"\s?(?P<tz>Z|z|[+-]\d\d:?\d\d|UTC|GMT)?"
_PREFIX = r"(?:<\d{1,3}>(?:1 )?)?\[?"
_DAY_NS = 86_400 * 10**9
_EPOCH_MIN, _EPOCH_MAX = 946_684_800, 4_102_444_800  # 2000 .. 2100, to tell epochs from numbers

_ISO = re.compile(
    _PREFIX + r"(?P<y>\d{4})-(?P<mo>\d\d)-(?P<d>\d\d)[T ]" + _HMS + _ZONE + r"(?![\w:])"
)
_CTIME = re.compile(
    _PREFIX + r"[A-Za-z]{3},? " + _MON + r" +(?P<d>\d{1,2}) " + _HMS + r" (?P<y>\d{4})\b"
)
_SYSLOG = re.compile(_PREFIX + _MON + r" +(?P<d>\d{1,2}) " + _HMS + r"\b")
_CLF = re.compile(r"\[(?P<d>\d\d)/" + _MON + r"/(?P<y>\d{4}):" + _HMS + r" (?P<tz>[+-]\d{4})\]")
_EPOCH = re.compile(r"(?P<sec>\d{10})(?:(?P<ms>\d{3})|\.(?P<frac>\d{1,9}))?(?![\d.])")


def _zone_seconds(tz: str | None) -> int:
    if not tz or tz in ("Z", "z", "UTC", "GMT"):
        return 0
    sign = -1 if tz[0] == "-" else 1
    digits = tz[1:].replace(":", "")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:4]) * 60)


def _frac_ns(frac: str | None) -> int:
    return int(frac.ljust(9, "0")) if frac else 0


class LineTimes:
    """Finds line timestamps; counts the lines that had none. `now_ns`: the reader's clock
    (for the syslog year)."""

    def __init__(self, now_ns: int | None = None) -> None:
        self.now_ns = time.time_ns() if now_ns is None else now_ns
        self._year = time.gmtime(self.now_ns // 10**9).tm_year
        self._days: dict[tuple[int, int, int], int] = {}
        self._parsers: list[Callable[[str], int | None]] = [
            self._iso, self._ctime, self._syslog, self._epoch, self._clf,
        ]  # fmt: skip

    def time_of(self, line: str) -> int | None:
        """Nanoseconds since the epoch of the line's own timestamp, or None."""
        parsers = self._parsers
        for i, parse in enumerate(parsers):
            try:
                t = parse(line)
            except (ValueError, KeyError, OverflowError):
                t = None
            if t is not None:
                if i:
                    parsers.insert(0, parsers.pop(i))  # this file's format: first from now on
                return t
        return None

    def _day(self, y: int, mo: int, d: int) -> int:
        key = (y, mo, d)
        day = self._days.get(key)
        if day is None:
            if not (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1]):
                raise ValueError("no such day")
            day = calendar.timegm((y, mo, d, 0, 0, 0))
            if len(self._days) > 4096:
                self._days.clear()
            self._days[key] = day
        return day

    def _at(self, m: re.Match[str], y: int, mo: int, tz: str | None) -> int | None:
        h, mi, s = int(m["h"]), int(m["mi"]), int(m["s"])
        if h > 23 or mi > 59 or s > 60:
            return None
        seconds = self._day(y, mo, int(m["d"])) + h * 3600 + mi * 60 + s - _zone_seconds(tz)
        if seconds < 0:
            return None
        return seconds * 10**9 + _frac_ns(m["frac"])

    def _iso(self, line: str) -> int | None:
        m = _ISO.match(line)
        return self._at(m, int(m["y"]), int(m["mo"]), m["tz"]) if m else None

    def _ctime(self, line: str) -> int | None:
        m = _CTIME.match(line)
        return self._at(m, int(m["y"]), _MONTHS[m["mon"].lower()], None) if m else None

    def _syslog(self, line: str) -> int | None:
        m = _SYSLOG.match(line)
        if not m:
            return None
        mo = _MONTHS[m["mon"].lower()]
        t = self._at(m, self._year, mo, None)
        if t is not None and t > self.now_ns + _DAY_NS:
            t = self._at(m, self._year - 1, mo, None)  # December's lines read in January
        return t

    def _clf(self, line: str) -> int | None:
        m = _CLF.search(line, 0, 200)
        return self._at(m, int(m["y"]), _MONTHS[m["mon"].lower()], m["tz"]) if m else None

    def _epoch(self, line: str) -> int | None:
        m = _EPOCH.match(line)
        if not m:
            return None
        sec = int(m["sec"])
        if not _EPOCH_MIN <= sec < _EPOCH_MAX:
            return None
        if m["ms"]:
            return sec * 10**9 + int(m["ms"]) * 10**6
        return sec * 10**9 + _frac_ns(m["frac"])
