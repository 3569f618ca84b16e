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
