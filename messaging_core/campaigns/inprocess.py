"""Dispatchers: who runs a campaign's messages through the send pipeline, and with which stores.

``InProcessDispatcher`` (kind ``inprocess``, the default) runs the pipeline in asyncio tasks of
this process, under a concurrency bound: what ``send_batch`` does, plus a ledger, retries,
reconciliation, pause and cancel. Plugins contribute other kinds (workers on a broker) and
stores reachable by URL through the ``register_dispatchers`` hook; the ``[dispatcher]`` table of
a configuration file picks them (``ChannelRegistry.create_dispatcher``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from messaging_core._batching import drive, not_attempted
from messaging_core._ratelimit import MemoryRateLimiter
from messaging_core.campaigns.memory import MemoryLedger, MemoryStatusStore
from messaging_core.campaigns.pipeline import SendAttempt, SendPipeline, add_messages
from messaging_core.campaigns.protocols import (
    CampaignProgress,
    InDoubtPolicy,
    RateLimiter,
    SendLedger,
    SendState,
    StatusStore,
    Submission,
    attach_provider_ids,
)
from messaging_core.campaigns.registrations import DispatcherRegistration, DispatcherSettings, StoreRegistration
from messaging_core.errors import ConfigurationError
from messaging_core.message import Message, MessageStream, iterate_messages, new_message_id
from messaging_core.results import ConnectorResult, SendResult, StatusUpdate
from messaging_core.schema import Capability

if TYPE_CHECKING:
    from messaging_core.connector import ChannelConnector

__all__ = ["INPROCESS", "MEMORY_STORES", "InProcessCampaign", "InProcessDispatcher"]

log = logging.getLogger(__name__)


# -- the in-process dispatcher -----------------------------------------------------------------------------


class InProcessCampaign:
    """A campaign running in this process (the ``CampaignHandle`` of ``InProcessDispatcher``).

    ``results()`` yields in input order, each message once it is settled. ``submission`` counts
    the ids read so far that were new to the ledger and those it already held (by campaign);
    ``submitted()`` waits until the whole input has been read.
    """

    def __init__(self, dispatcher: InProcessDispatcher, campaign_id: str) -> None:
        self.campaign_id = campaign_id
        self.submission = Submission()
        """Ids new to the ledger and ids already there, for the input read so far."""
        self._loaded = asyncio.Event()
        self._dispatcher = dispatcher
        self._ids: list[str] = []
        """Message ids in input order, each once."""
        self._seen: set[str] = set()
        self._working: set[str] = set()
        self._cancel = asyncio.Event()
        self._running = asyncio.Event()
        self._running.set()
        self._changed = asyncio.Event()
        self._finished = False
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        state = "finished" if self._finished else "cancelled" if self._cancel.is_set() else "running"
        return f"<InProcessCampaign {self.campaign_id!r} {len(self._ids)} message(s) {state}>"

    @property
    def is_paused(self) -> bool:
        return not self._running.is_set()

    @property
    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    async def progress(self) -> CampaignProgress:
        return await self._dispatcher.ledger.progress(self.campaign_id)

    async def results(self) -> AsyncIterator[tuple[str, ConnectorResult[SendResult]]]:
        """``(message_id, result)`` in input order, each once it is settled (see ``CampaignHandle.results``)."""
        ledger = self._dispatcher.ledger
        index = 0
        while True:
            changed = self._changed
            if index >= len(self._ids):
                if self._finished:
                    return
                await changed.wait()
                continue
            message_id = self._ids[index]
            entry = await ledger.get(message_id)
            assert entry is not None, f"{message_id} left the ledger"
            settled = entry.state.is_final or (entry.state is SendState.UNKNOWN and message_id not in self._working)
            if not (settled or self._finished):
                await changed.wait()
                continue
            yield message_id, entry.to_result() or not_attempted("the campaign ended")
            index += 1

    async def submitted(self) -> Submission:
        """Once the whole input is in the ledger (or the campaign ended): how many ids were new, how many were there."""
        await self._loaded.wait()
        return self.submission

    async def wait(self) -> CampaignProgress:
        assert self._task is not None
        await asyncio.shield(self._task)
        return await self.progress()

    async def cancel(self) -> None:
        await self._dispatcher.ledger.cancel(self.campaign_id)
        self._cancel.set()
        self._running.set()  # paused workers must wake up to see the cancellation
        self._notify()

    async def pause(self) -> None:
        if not self._cancel.is_set():
            self._running.clear()

    async def resume(self) -> None:
        self._running.set()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


class InProcessDispatcher:
    """Runs campaigns in this process: ``SendPipeline`` in asyncio tasks, ``concurrency`` at a time.

    :param connector: a READY connector with ``BULK_MESSAGING``.
    :param ledger: default ``MemoryLedger()`` (one per dispatcher).
    :param limiter: default: ``MemoryRateLimiter(messages_per_second)`` when a pace is given,
        else none. Messages are paced per sender (``connector.rate_limit_key``).
    :param status_store: default ``MemoryStatusStore()``; ``status_received`` writes to it.
    :param concurrency: provider calls in flight at once (default: the connector's batch concurrency).
    :param messages_per_second: the pace of each sender with the default limiter.
    :param in_doubt: ``"hold"`` or ``"probe_then_resend"`` (see ``SendPipeline``).
    :param pipeline_options: more ``SendPipeline`` options (``lease``, ``max_attempts``,
        ``backoff``, ``probe_grace``, ``absent_after``, ``request_timeout``, ``max_wait``).

    To let status callbacks settle messages in doubt, give the dispatcher to the webhook host as
    its ``pipeline`` (``WebhookHost(..., pipeline=dispatcher)``, ``create_webhook_app(...,
    pipeline=dispatcher)`` or ``WebhookService(..., pipeline=dispatcher)``): each verified callback
    then goes through ``status_received``.
    """

    kind = "inprocess"
    chunk_size = 256
    """Messages read from the input and added to the ledger at a time."""

    def __init__(
        self,
        connector: ChannelConnector,
        *,
        ledger: SendLedger | None = None,
        limiter: RateLimiter | None = None,
        status_store: StatusStore | None = None,
        concurrency: int | None = None,
        messages_per_second: float | None = None,
        in_doubt: InDoubtPolicy = "hold",
        **pipeline_options: Any,
    ) -> None:
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        if limiter is None and messages_per_second:
            limiter = MemoryRateLimiter(messages_per_second)
        self.connector = connector
        self.ledger: SendLedger = ledger if ledger is not None else MemoryLedger()
        attach_provider_ids(connector, self.ledger)  # status by our id, from the ledger
        self.limiter = limiter
        self.status_store: StatusStore = status_store if status_store is not None else MemoryStatusStore()
        self.concurrency = concurrency
        self.pipeline = SendPipeline(
            connector,
            ledger=self.ledger,
            limiter=limiter,
            status_store=self.status_store,
            in_doubt=in_doubt,
            cancel_reason="campaign cancelled",
            **pipeline_options,
        )
        self._campaigns: dict[str, InProcessCampaign] = {}

    def __repr__(self) -> str:
        return f"<InProcessDispatcher {self.connector.name!r} campaigns={len(self._campaigns)}>"

    async def submit(
        self, messages: MessageStream, *, campaign_id: str | None = None, **options: Any
    ) -> InProcessCampaign:
        """Start a campaign and return its handle at once.

        Messages are read lazily, ``chunk_size`` at a time, added to the ledger (ids already
        there are left alone: submitting a campaign again resumes it, never resends what was
        sent), then sent. The handle's ``submission`` (``await handle.submitted()`` for the
        whole input) says how many ids were new and which campaigns already held the others.
        ``concurrency`` may be overridden per campaign.
        """
        unknown = set(options) - {"concurrency"}
        if unknown:
            raise TypeError(f"submit() got unknown options {sorted(unknown)}")
        self.connector.require(Capability.BULK_MESSAGING)
        campaign_id = campaign_id or new_message_id()
        if campaign_id in self._campaigns:
            raise ValueError(f"campaign {campaign_id!r} is already running")
        width = max(1, options.get("concurrency") or self.concurrency or self.connector.batch_concurrency())
        handle = InProcessCampaign(self, campaign_id)
        self._campaigns[campaign_id] = handle
        handle._task = asyncio.create_task(self._run(handle, messages, width), name=f"campaign {campaign_id}")
        return handle

    def campaign(self, campaign_id: str) -> InProcessCampaign | None:
        """The handle of a campaign running on this dispatcher (finished ones are forgotten)."""
        return self._campaigns.get(campaign_id)

    async def status_received(self, update: StatusUpdate, *, idempotency_key: str | None = None) -> bool:
        """A delivery status arrived (a webhook): record it, settle the message if it was in doubt."""
        changed = await self.pipeline.status_received(update, idempotency_key=idempotency_key)
        if changed:
            for handle in self._campaigns.values():
                handle._notify()
        return changed

    async def _run(self, handle: InProcessCampaign, messages: MessageStream, width: int) -> None:
        connector, ledger = self.connector, self.ledger

        async def added() -> AsyncIterator[Message]:
            chunk: list[Message] = []
            index = 0

            async def flush() -> list[Message]:
                added = await add_messages(ledger, connector, handle.campaign_id, chunk)
                handle.submission = handle.submission.plus(added)
                for message in chunk:
                    if message.id not in handle._seen:
                        handle._seen.add(message.id)
                        handle._ids.append(message.id)
                handle._notify()
                flushed = chunk.copy()
                chunk.clear()
                return flushed

            async for message in iterate_messages(messages):
                if handle._cancel.is_set():
                    break
                if not isinstance(message, Message):
                    raise TypeError(f"campaign item {index} is a {type(message).__name__}, not a Message")
                index += 1
                chunk.append(message)
                if len(chunk) >= self.chunk_size:
                    for ready in await flush():
                        yield ready
            for ready in await flush():
                yield ready
            handle._loaded.set()

        async def one(index: int, message: Message) -> None:
            handle._working.add(message.id)
            try:
                attempt: SendAttempt = await self.pipeline.run(message, cancel=handle._cancel, running=handle._running)
                if attempt.state is SendState.UNKNOWN:
                    log.info("campaign %s: message %s is in doubt (held)", handle.campaign_id, message.id)
            finally:
                handle._working.discard(message.id)
                handle._notify()

        try:
            await drive(added(), one, width)
        finally:
            if handle._cancel.is_set():
                # Rows a slow ledger added while the cancellation ran are cancelled too.
                await ledger.cancel(handle.campaign_id)
            handle._finished = True
            handle._loaded.set()
            handle._notify()
            if self._campaigns.get(handle.campaign_id) is handle:
                del self._campaigns[handle.campaign_id]


# -- the built-in kind and stores ---------------------------------------------------------------------------

_INPROCESS_OPTIONS = frozenset(
    {
        "concurrency",
        "messages_per_second",
        "in_doubt",
        "lease",
        "max_attempts",
        "backoff",
        "probe_grace",
        "absent_after",
        "request_timeout",
        "max_wait",
    }
)


def create_inprocess(connector: ChannelConnector, settings: DispatcherSettings) -> InProcessDispatcher:
    """The ``inprocess`` kind: an ``InProcessDispatcher`` with the stores the table names."""
    if settings.broker is not None:
        raise ConfigurationError("[dispatcher]: the inprocess dispatcher has no broker; remove 'broker'")
    unknown = set(settings.options) - _INPROCESS_OPTIONS
    if unknown:
        raise ConfigurationError(
            f"[dispatcher]: unknown option(s) {sorted(unknown)} for kind 'inprocess' "
            f"(known: {', '.join(sorted(_INPROCESS_OPTIONS))})"
        )
    options = dict(settings.options)
    rate = options.pop("messages_per_second", None)
    limiter = settings.create_limiter() if settings.limiter is not None or rate else None
    return InProcessDispatcher(
        connector,
        ledger=settings.create_ledger(),
        limiter=limiter,
        status_store=settings.create_status_store(),
        **options,
    )


MEMORY_STORES = StoreRegistration(
    "memory",
    ledger=lambda url, options: MemoryLedger(),
    limiter=lambda url, options: MemoryRateLimiter(options.get("messages_per_second")),
    status_store=lambda url, options: MemoryStatusStore(),
    description="in this process's memory (lost when it ends)",
)
INPROCESS = DispatcherRegistration(
    "inprocess", create_inprocess, "asyncio tasks in this process (the default; send_batch's pipeline)"
)
