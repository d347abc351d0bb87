"""The ``Coalescer`` behind the ledger's, the status store's and the limiter's batches, on its own (no services).

What it promises: items that arrive in one turn of the event loop go as one batch at once; an
item alone waits for nothing; items that arrive while a batch is in flight wait for it (at most
``wait``) and then go together; a full batch leaves at once; each caller gets its own answer or
error, only once its batch is done; ``close`` sends what waits and waits for what is in flight.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from messaging_scale._coalesce import Coalescer


async def turns(n: int = 3) -> None:
    """Let the event loop go round ``n`` times (no clock involved)."""
    for _ in range(n):
        await asyncio.sleep(0)


class Flusher:
    """A flush that records its batches and can be held open."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.entered = asyncio.Event()

    async def __call__(self, items: list[int]) -> list[int | Exception]:
        self.batches.append(items)
        self.entered.set()
        await self.hold.wait()
        return [ValueError(f"odd {i}") if i < 0 else i * 10 for i in items]


async def test_items_of_one_turn_go_as_one_batch_and_an_item_alone_waits_for_nothing() -> None:
    flush = Flusher()
    coalescer: Coalescer[int, int] = Coalescer(flush, size=100, wait=30.0)
    assert await asyncio.gather(*(coalescer.submit(i) for i in range(5))) == [0, 10, 20, 30, 40]
    assert flush.batches == [[0, 1, 2, 3, 4]]
    started = time.monotonic()
    assert await coalescer.submit(7) == 70
    assert time.monotonic() - started < 1.0  # not the 30 s wait
    assert flush.batches[-1] == [7]


async def test_items_arriving_during_a_batch_wait_for_it_then_go_together() -> None:
    flush = Flusher()
    flush.hold.clear()
    coalescer: Coalescer[int, int] = Coalescer(flush, size=100, wait=30.0)
    first = asyncio.create_task(coalescer.submit(1))
    await flush.entered.wait()
    later = [asyncio.create_task(coalescer.submit(i)) for i in (2, 3)]
    await asyncio.sleep(0.05)
    assert flush.batches == [[1]]  # 2 and 3 wait behind the batch in flight
    assert not any(task.done() for task in [first, *later])
    flush.hold.set()
    assert await first == 10
    assert [await task for task in later] == [20, 30]
    assert flush.batches == [[1], [2, 3]]


async def test_a_slow_batch_holds_the_next_items_at_most_wait_and_a_full_batch_leaves_at_once() -> None:
    flush = Flusher()
    flush.hold.clear()
    coalescer: Coalescer[int, int] = Coalescer(flush, size=3, wait=0.05)
    first = asyncio.create_task(coalescer.submit(1))
    await flush.entered.wait()
    waiting = asyncio.create_task(coalescer.submit(2))
    await asyncio.sleep(0.2)
    assert flush.batches == [[1], [2]]  # sent alongside after ``wait``, the first still in flight
    full = [asyncio.create_task(coalescer.submit(i)) for i in (4, 5, 6)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert flush.batches[-1] == [4, 5, 6]  # full: it did not wait
    flush.hold.set()
    assert [await t for t in [first, waiting, *full]] == [10, 20, 40, 50, 60]


async def test_answers_and_errors_reach_their_own_callers() -> None:
    coalescer: Coalescer[int, int] = Coalescer(Flusher(), size=10, wait=1.0)
    answers = await asyncio.gather(*(coalescer.submit(i) for i in (1, -2, 3)), return_exceptions=True)
    assert answers[0] == 10
    assert isinstance(answers[1], ValueError)
    assert str(answers[1]) == "odd -2"
    assert answers[2] == 30

    async def broken(items: list[int]) -> list[int | Exception]:
        raise ConnectionResetError("the connection dropped")

    failing: Coalescer[int, int] = Coalescer(broken, size=10, wait=1.0)
    errors = await asyncio.gather(*(failing.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(error, ConnectionResetError) for error in errors)

    async def short(items: list[int]) -> list[int | Exception]:
        return [1]

    wrong: Coalescer[int, int] = Coalescer(short, size=10, wait=1.0)
    mismatched = await asyncio.gather(*(wrong.submit(i) for i in range(2)), return_exceptions=True)
    assert all(isinstance(error, RuntimeError) and "2 items got 1 answers" in str(error) for error in mismatched)


async def test_close_sends_what_waits_and_waits_for_what_is_in_flight() -> None:
    flush = Flusher()
    flush.hold.clear()
    coalescer: Coalescer[int, int] = Coalescer(flush, size=100, wait=30.0)
    first = asyncio.create_task(coalescer.submit(1))
    await flush.entered.wait()
    second = asyncio.create_task(coalescer.submit(2))
    await asyncio.sleep(0)
    closing = asyncio.create_task(coalescer.close())
    await asyncio.sleep(0.05)
    assert flush.batches == [[1], [2]]
    assert not closing.done()
    flush.hold.set()
    await asyncio.wait_for(closing, 5)
    assert (first.result(), second.result()) == (10, 20)


def test_settings_are_checked() -> None:
    async def flush(items: list[int]) -> list[int | Exception]:
        return list(items)

    with pytest.raises(ValueError, match="batch_size must be at least 1, not 0"):
        Coalescer(flush, size=0, wait=0.0)
    with pytest.raises(ValueError, match="batch_wait must not be negative, not -1"):
        Coalescer(flush, size=1, wait=-1)


async def test_items_behind_two_batches_in_flight_wait_for_both() -> None:
    """The end of one batch sends the waiting items only when no other batch is still in flight."""
    holds: list[asyncio.Event] = []
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> list[int | Exception]:
        hold = asyncio.Event()
        holds.append(hold)
        batches.append(items)
        await hold.wait()
        return list(items)

    coalescer: Coalescer[int, int] = Coalescer(flush, size=100, wait=0.05)
    first = asyncio.create_task(coalescer.submit(1))
    await turns()
    second = asyncio.create_task(coalescer.submit(2))
    await asyncio.sleep(0.15)  # past ``wait``: a second batch goes alongside the first
    assert batches == [[1], [2]]
    third = asyncio.create_task(coalescer.submit(3))
    await turns()
    holds[0].set()  # the first is done; the second is still in flight
    assert await first == 1
    await turns()
    assert batches == [[1], [2]]  # 3 still waits (for the second, or its own ``wait``)
    holds[1].set()
    assert await second == 2
    await turns()
    assert batches == [[1], [2], [3]]
    holds[2].set()
    assert await third == 3


def test_a_wait_of_zero_is_allowed() -> None:
    async def flush(items: list[int]) -> list[int | Exception]:
        return list(items)

    assert Coalescer(flush, size=1, wait=0).wait == 0
