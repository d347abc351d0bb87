"""``Coalescer``: concurrent calls that arrive together go to the database (or Redis) as one.

A worker has up to a hundred passes in flight, and a chunk starts them together: their claims,
then their records, arrive within a millisecond of each other. Sent one by one, each is a round
trip and a commit; coalesced, a whole chunk's claims are one statement and one commit. Every
caller still waits for its own answer, and gets it only once the batch holding it is done (for a
ledger write: committed), so nothing a caller does after the answer (a provider call after a
claim, an acknowledgement after a record) runs ahead of the database.

The ledger's claims and records (``PostgresLedger``) and the status store's updates
(``PostgresStatusStore``) go through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from attrs import frozen

__all__ = ["Coalescer"]

T = TypeVar("T")
R = TypeVar("R")


@frozen
class _Waiting(Generic[T, R]):
    item: T
    answer: asyncio.Future[R]


class Coalescer(Generic[T, R]):
    """Gathers the items of concurrent ``submit`` calls into batches for one ``flush`` each.

    When no batch is in flight, the items go at the next turn of the event loop, together with
    whatever else arrived in this one (a chunk's passes resume together): an item alone waits
    for nothing, so a latency-bound caller (a few sends in flight) pays no extra time. While a
    batch is in flight, new items wait for it to finish and then go together, but never more
    than ``wait`` seconds (then a second batch goes alongside); a batch also leaves as soon as
    it holds ``size`` items. Under load, batches grow to what arrives during one round trip.

    :param flush: ``async (items) -> answers``: one answer per item, in order; an answer that is
        an ``Exception`` is raised to that item's caller alone. When ``flush`` itself raises,
        every caller of the batch gets the error.
    :param size: the most items in one batch (at least 1).
    :param wait: the longest an item waits behind a batch in flight, seconds.
    """

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[Sequence[R | Exception]]],
        *,
        size: int,
        wait: float,
    ) -> None:
        if size < 1:
            raise ValueError(f"batch_size must be at least 1, not {size}")
        if wait < 0:
            raise ValueError(f"batch_wait must not be negative, not {wait}")
        self._flush = flush
        self.size = size
        self.wait = wait
        self._waiting: list[_Waiting[T, R]] = []
        self._timer: asyncio.Handle | None = None
        self._batches: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        """``item``'s answer, once the batch holding it is done."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[R] = loop.create_future()
        self._waiting.append(_Waiting(item, answer))
        if len(self._waiting) >= self.size:
            self._send()
        elif self._timer is None:
            self._timer = loop.call_later(self.wait, self._send) if self._batches else loop.call_soon(self._send)
        return await answer

    async def close(self) -> None:
        """Send what is waiting and wait for every batch in flight."""
        self._send()
        if self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._waiting:
            return
        batch, self._waiting = self._waiting, []
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._batches.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        """A batch is done: the items that waited behind it go now."""
        self._batches.discard(task)
        if self._waiting and not self._batches:
            self._send()

    async def _run(self, batch: list[_Waiting[T, R]]) -> None:
        try:
            answers = await self._flush([waiting.item for waiting in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} items got {len(answers)} answers")
        except asyncio.CancelledError:  # this task itself was cancelled (the loop is closing)
            for waiting in batch:
                waiting.answer.cancel()
            raise
        except Exception as err:
            for waiting in batch:
                _settle(waiting.answer, error=err)
            return
        for waiting, answer in zip(batch, answers, strict=True):
            if isinstance(answer, Exception):
                _settle(waiting.answer, error=answer)
            else:
                _settle(waiting.answer, answer)


def _settle(answer: asyncio.Future[R], result: R | None = None, *, error: Exception | None = None) -> None:
    """Give a waiting caller its answer, unless it stopped waiting (cancelled: its item may still be written)."""
    if answer.done():
        return
    if error is not None:
        answer.set_exception(error)
    else:
        answer.set_result(result)  # type: ignore[arg-type]
