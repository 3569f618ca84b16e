"""The write-behind buffer shared by the registry writer and the vector store, on its own."""

from __future__ import annotations

import pytest

from via_otlp.backoff import Backoff
from via_otlp.writebehind import WriteBehind


class Upstream:
    """Records the batches it is given; fails the next `outages` calls with a retryable error
    and any batch holding a value in `poison` with a permanent one."""

    def __init__(self, outages: int = 0, poison: frozenset[int] = frozenset()) -> None:
        self.outages = outages
        self.poison = poison
        self.batches: list[list[int]] = []
        self.calls = 0

    async def write(self, batch: list[int]) -> None:
        self.calls += 1
        if self.outages:
            self.outages -= 1
            raise ConnectionError("refused")
        if self.poison & set(batch):
            raise ValueError("cannot store this")
        self.batches.append(list(batch))


def buffer(up: Upstream, capacity: int = 100, batch_size: int = 4) -> WriteBehind[int]:
    return WriteBehind(
        up.write,
        retryable=lambda exc: isinstance(exc, ConnectionError),
        capacity=capacity,
        batch_size=batch_size,
        interval=0.01,
        backoff=Backoff.capped(0.001, 0.002),
        upstream="the fake",
        what="fake writes",
        task_name="test-writer",
    )


def test_a_full_buffer_refuses_and_counts() -> None:
    b = buffer(Upstream(), capacity=3)
    assert [b.add(i) for i in range(5)] == [True, True, True, False, False]
    assert (b.buffered, b.dropped) == (3, 2)


async def test_an_outage_keeps_the_batch_and_writes_it_once_the_upstream_is_back() -> None:
    up = Upstream(outages=3)
    b = buffer(up)
    for i in range(10):
        b.add(i)
    b.start()
    try:
        assert await b.flush(30)
        assert [x for batch in up.batches for x in batch] == list(range(10))
        assert up.calls == 3 + 3  # three refusals of the first batch, then three batches
        assert (b.failed, b.dropped, b.degraded) == (0, 0, False)
        assert b.last_error == "ConnectionError: refused"
    finally:
        assert await b.shutdown(5) == 0


async def test_a_permanent_error_drops_that_batch_only() -> None:
    up = Upstream(poison=frozenset({5}))
    b = buffer(up, batch_size=4)
    for i in range(10):
        b.add(i)
    b.start()
    try:
        assert await b.flush(30)
        assert up.batches == [[0, 1, 2, 3], [8, 9]]
        assert b.failed == 4 and b.last_error == "ValueError: cannot store this"
    finally:
        await b.shutdown(5)


async def test_shutdown_during_an_outage_leaves_the_rest_to_the_owner() -> None:
    up = Upstream(outages=10**9)
    b = buffer(up)
    for i in range(6):
        b.add(i)
    b.start()
    assert not await b.flush(0.05)
    assert await b.shutdown(0.5) == 6
    assert b.degraded and b.buffered == 6
    assert not b.add(99)  # closed
    assert b.discard() == 6 and (b.buffered, b.dropped) == (0, 7)


@pytest.mark.parametrize("started", [False, True])
async def test_shutdown_is_idempotent(started: bool) -> None:
    b = buffer(Upstream())
    if started:
        b.start()
    assert await b.shutdown(1) == 0
    assert await b.shutdown(1) == 0
