"""A log line that can repeat without flooding: at most one per interval, with a count.

Whatever an attacker or a broken client can trigger per request or per connection (out of file
descriptors, a connection limit reached, an unexpected error) is logged through one of these,
so that the log stays small whatever the rate: the first occurrence is logged at once, later
ones at most once per `interval`, saying how many were not logged in between.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    """Log a recurring condition at most once per `interval` seconds, counting the rest.

    >>> import logging; lines = []
    >>> h = logging.Handler(); h.emit = lambda r: lines.append(r.getMessage())
    >>> logger = logging.getLogger("doctest.ratelog"); logger.addHandler(h)
    >>> t = [0.0]; once = RateLimitedLog(logger, interval=60, clock=lambda: t[0])
    >>> for t[0] in (0.0, 1.0, 2.0, 61.0): _ = once.warning("out of %s", "fds")
    >>> lines
    ['out of fds', 'out of fds (2 more since the last report)']
    >>> once.total
    4
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.total = 0
        self._clock = clock
        self._last = float("-inf")
        self._suppressed = 0

    def log(self, level: int, msg: str, *args: object, exc_info: object = None) -> bool:
        """Log now if the interval has passed since the last line, else count; True if logged."""
        self.total += 1
        now = self._clock()
        if now - self._last < self.interval:
            self._suppressed += 1
            return False
        if self._suppressed:
            msg = f"{msg} ({self._suppressed} more since the last report)"
        self._last, self._suppressed = now, 0
        self.logger.log(level, msg, *args, exc_info=exc_info)  # type: ignore[arg-type]
        return True

    def warning(self, msg: str, *args: object, exc_info: object = None) -> bool:
        return self.log(logging.WARNING, msg, *args, exc_info=exc_info)

    def error(self, msg: str, *args: object, exc_info: object = None) -> bool:
        return self.log(logging.ERROR, msg, *args, exc_info=exc_info)


class OneLineFilter(logging.Filter):
    """A library logger's recurring warning as one line without its traceback, at most once per
    `interval` per message (asyncpg logs a traceback each time its pool cannot reconnect, i.e.
    every second while the embedded PostgreSQL is down or restarting).

    >>> t = [0.0]; one_line = OneLineFilter(interval=60, clock=lambda: t[0])
    >>> refused = ConnectionRefusedError(111, "Connection refused")
    >>> def record() -> logging.LogRecord:
    ...     exc_info = (ConnectionRefusedError, refused, None)
    ...     return logging.LogRecord("x", logging.WARNING, "", 0, "pool %s", ("down",), exc_info)
    >>> shown = []
    >>> for t[0] in (0.0, 1.0, 61.0):
    ...     r = record()
    ...     if one_line.filter(r):
    ...         shown.append((r.getMessage(), r.exc_info))
    >>> shown
    [('pool down: [Errno 111] Connection refused', None), ('pool down: [Errno 111] Connection refused (1 more since the last report)', None)]
    """

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._last: dict[str, tuple[float, int]] = {}  # message -> (last logged, suppressed)

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)
        now = self._clock()
        last, suppressed = self._last.get(key, (float("-inf"), 0))
        if now - last < self.interval:
            self._last[key] = (last, suppressed + 1)
            return False
        self._last[key] = (now, 0)
        text = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            text = f"{text}: {exc}"
        if suppressed:
            text = f"{text} ({suppressed} more since the last report)"
        record.msg, record.args = text, None
        record.exc_info = record.exc_text = None
        return True


def quiet_library_logger(name: str, interval: float = 60.0) -> None:
    """Give logger `name` a `OneLineFilter` (once, however often this is called)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, OneLineFilter) for f in logger.filters):
        logger.addFilter(OneLineFilter(interval))
