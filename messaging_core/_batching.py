"""The worker pool of batch sends and campaigns: bounded concurrency over a (possibly async) stream.

Low level on purpose: ``ChannelConnector.send_batch`` and the campaign pipeline both run on it,
and it knows neither (no connector, no ledger).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator

from messaging_core.message import Message, MessageBatch, MessageStream
from messaging_core.results import ConnectorErrorCodes, ConnectorResult, SendResult

__all__ = ["drive", "not_attempted"]


def not_attempted(reason: str) -> ConnectorResult[SendResult]:
    """The result of a message that was not sent (and may safely be sent again)."""
    return ConnectorResult.failure(
        ConnectorErrorCodes.NOT_ATTEMPTED, f"{reason} before this message was sent", retryable=True
    )


async def drive(messages: MessageStream, handle: Callable[[int, Message], Awaitable[None]], width: int) -> None:
    """Run ``handle(index, message)`` for every message with ``width`` workers; the first error aborts.

    Reads the input lazily (an async generator is advanced by one worker at a time), so a
    streamed input keeps memory flat.
    """
    total = len(messages) if isinstance(messages, MessageBatch | list | tuple) else None
    source = _MessageFeed(messages)
    shared = source.sync_items()

    async def sync_worker(items: Iterator[tuple[int, Message]]) -> None:
        # One shared iterator: under asyncio each next() hands one message to one worker, no lock.
        for index, message in items:
            await handle(index, message)

    async def async_worker() -> None:
        while (item := await source.next()) is not None:
            await handle(*item)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(width, total) if total else width):
                group.create_task(sync_worker(shared) if shared is not None else async_worker())
    except BaseExceptionGroup as group_error:
        # Surface the first real error (a TypeError for a non-Message item, a cancellation).
        raise group_error.exceptions[0] from None
    finally:
        await source.aclose()


class _MessageFeed:
    """Hands out ``(index, message)`` to concurrent workers from a sync or async iterable."""

    def __init__(self, messages: MessageStream) -> None:
        self._index = 0
        self._sync: Iterator[Message] | None = None
        self._async: AsyncIterator[Message] | None = None
        self._lock = asyncio.Lock()
        if isinstance(messages, MessageBatch):
            self._sync = iter(messages.messages)
        elif isinstance(messages, AsyncIterable):
            self._async = aiter(messages)
        elif isinstance(messages, Iterable):
            self._sync = iter(messages)
        else:
            raise TypeError(
                f"send_batch takes a MessageBatch or an iterable of messages, not {type(messages).__name__}"
            )

    def sync_items(self) -> Iterator[tuple[int, Message]] | None:
        """``(index, message)`` pairs of a sync input (None for an async one)."""
        return None if self._sync is None else enumerate(self._sync)

    async def next(self) -> tuple[int, Message] | None:
        if self._sync is not None:
            message = next(self._sync, None)  # atomic under asyncio: no lock needed
        else:
            assert self._async is not None
            async with self._lock:  # an async generator cannot be advanced by two tasks at once
                try:
                    message = await anext(self._async)
                except StopAsyncIteration:
                    message = None
        if message is None:
            return None
        index = self._index
        self._index += 1
        return index, message

    async def aclose(self) -> None:
        close = getattr(self._async, "aclose", None)
        if close is not None:
            await close()
