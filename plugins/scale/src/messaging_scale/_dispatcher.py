"""``TaskiqDispatcher``: campaigns sent by worker processes on other machines.

``submit`` copies the messages into the PostgreSQL ledger (``COPY``), records which connector
sends the campaign, and publishes chunks of message ids to the RabbitMQ queue; it returns once
every message is in the ledger and every chunk is on the queue. Workers (``messaging worker``)
take the chunks and run each message through the send pipeline. The campaign handle reads
everything from the ledger, so any process that reaches the database (the CLI on another
machine) can follow, pause, resume or cancel a campaign.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from messaging_core.dispatcher import DispatcherSettings
from messaging_core.errors import ConfigurationError
from messaging_core.message import Message, MessageStream, iterate_messages, new_message_id
from messaging_core.pipeline import CampaignProgress, InDoubtPolicy, LedgerEntry, SendState
from messaging_core.results import ConnectorResult, SendResult
from messaging_core.schema import Capability
from messaging_core.sending import not_attempted
from messaging_scale._ledger import PostgresLedger
from messaging_scale._settings import TaskiqSettings
from messaging_scale.taskiq import ChunkKicker, broker_from_settings

if TYPE_CHECKING:
    from taskiq import AsyncBroker

    from messaging_core.connector import ChannelConnector

__all__ = ["TaskiqCampaign", "TaskiqDispatcher", "create_taskiq_dispatcher"]


class TaskiqCampaign:
    """A campaign sent by workers (the ``CampaignHandle`` of ``TaskiqDispatcher``), read from the ledger.

    :param campaign_id: the campaign.
    :param ledger: the ledger the workers use.
    :param kicker: publishes chunks again on ``resume``.
    :param in_doubt: the workers' policy: with ``hold``, an UNKNOWN message is settled (held for
        a callback or an operator); with ``probe_then_resend`` workers reconcile it, and ``wait``
        waits for that unless the number of UNKNOWN messages has not moved for ``settle_time``.
    :param poll_interval: seconds between two reads of the counters while waiting.
    """

    def __init__(
        self,
        campaign_id: str,
        *,
        ledger: PostgresLedger,
        kicker: ChunkKicker | None = None,
        in_doubt: InDoubtPolicy = "hold",
        poll_interval: float = 0.5,
        settle_time: float = 30.0,
    ) -> None:
        self.campaign_id = campaign_id
        self.ledger = ledger
        self._kicker = kicker
        self.in_doubt: InDoubtPolicy = in_doubt
        self.poll_interval = poll_interval
        self.settle_time = settle_time
        self._unknown: tuple[int, float] = (-1, 0.0)
        """The last UNKNOWN count seen, and since when (``time.monotonic``)."""

    def __repr__(self) -> str:
        return f"<TaskiqCampaign {self.campaign_id!r} in_doubt={self.in_doubt!r}>"

    async def progress(self) -> CampaignProgress:
        """Counts by ledger state, from the counters the transitions keep (no scan of the rows)."""
        return await self.ledger.progress(self.campaign_id)

    def is_settled(self, progress: CampaignProgress) -> bool:
        """Whether no message is left to work on: each final, or held in doubt.

        A paused campaign is not settled while it has PENDING messages.
        """
        if progress.count(SendState.PENDING) or progress.count(SendState.SUBMITTING):
            return False
        unknown = progress.count(SendState.UNKNOWN)
        if unknown == 0 or self.in_doubt == "hold":
            return True
        now = time.monotonic()
        if unknown != self._unknown[0]:
            self._unknown = (unknown, now)
        # Workers reconcile these; the ones left after settle_time are held (several candidates,
        # or a provider that cannot tell).
        return now - self._unknown[1] >= self.settle_time

    async def wait(self) -> CampaignProgress:
        """Until no message is left to work on (bound it with ``asyncio.timeout``)."""
        while True:
            progress = await self.progress()
            if self.is_settled(progress):
                return progress
            await asyncio.sleep(self.poll_interval)

    async def results(self) -> AsyncIterator[tuple[str, ConnectorResult[SendResult]]]:
        """``(message_id, result)`` in input order, each once it is settled (see ``CampaignHandle.results``)."""
        async for entry in self.ledger.results(self.campaign_id):
            current: LedgerEntry | None = entry
            while current is not None and not self._entry_settled(current):
                if self.is_settled(await self.progress()):
                    break
                await asyncio.sleep(self.poll_interval)
                current = await self.ledger.get(entry.message_id)
            final = current or entry
            yield final.message_id, final.to_result() or not_attempted("the campaign ended")

    def _entry_settled(self, entry: LedgerEntry) -> bool:
        return entry.state.is_final or (entry.state is SendState.UNKNOWN and self.in_doubt == "hold")

    async def cancel(self) -> None:
        """PENDING messages become CANCELLED; workers cancel the ones that come back to PENDING."""
        await self.ledger.set_campaign_flags(self.campaign_id, cancelled=True)
        await self.ledger.cancel(self.campaign_id)

    async def pause(self) -> None:
        """Workers start no new provider call for this campaign (calls in flight finish)."""
        await self.ledger.set_campaign_flags(self.campaign_id, paused=True)

    async def resume(self) -> None:
        """Clear the pause and publish the campaign's PENDING messages again."""
        await self.ledger.set_campaign_flags(self.campaign_id, paused=False)
        if self._kicker is None:
            return  # the sweeper picks them up
        after = 0
        while page := await self.ledger.open_page(self.campaign_id, after=after):
            await self._kicker.kick([message_id for _, message_id in page])
            after = page[-1][0]


class TaskiqDispatcher:
    """Sends campaigns through workers: rows into PostgreSQL, chunks of ids onto RabbitMQ.

    Usually built from a configuration (``[dispatcher] kind = "taskiq"``, see
    ``create_taskiq_dispatcher``); workers read the same file (``messaging worker``) and create
    the connector by its name.

    :param connector: a READY connector with ``BULK_MESSAGING``; its ``rate_limit_key`` and
        ``send_cost`` are stored with each row, its name with the campaign.
    :param ledger: the PostgreSQL ledger the workers use.
    :param broker: the broker of ``create_broker`` (same queue as the workers).
    :param chunk_size: message ids per task.
    :param copy_size: rows per ``COPY``.
    :param in_doubt, poll_interval, settle_time: for the campaign handles (``TaskiqCampaign``).
    """

    kind = "taskiq"

    def __init__(
        self,
        connector: ChannelConnector,
        *,
        ledger: PostgresLedger,
        broker: AsyncBroker,
        chunk_size: int = 500,
        copy_size: int = 10_000,
        in_doubt: InDoubtPolicy = "hold",
        poll_interval: float = 0.5,
        settle_time: float = 30.0,
    ) -> None:
        if copy_size < 1:
            raise ValueError("copy_size must be at least 1")
        self.connector = connector
        self.ledger = ledger
        self.kicker = ChunkKicker(broker, chunk_size=chunk_size)
        self.copy_size = max(copy_size, chunk_size)
        self.in_doubt: InDoubtPolicy = in_doubt
        self.poll_interval = poll_interval
        self.settle_time = settle_time

    def __repr__(self) -> str:
        return f"<TaskiqDispatcher {self.connector.name!r} ledger={self.ledger!r}>"

    async def submit(
        self, messages: MessageStream, *, campaign_id: str | None = None, **options: Any
    ) -> TaskiqCampaign:
        """Load the campaign into the ledger and publish its chunks; returns when both are done.

        Ids already in the ledger are left alone, and only messages that still need work are
        published: submitting a campaign again resumes it (and clears its pause and cancel
        flags), never resends what was sent.
        """
        if options:
            raise TypeError(f"submit() got unknown options {sorted(options)}")
        self.connector._require(Capability.BULK_MESSAGING)
        campaign_id = campaign_id or new_message_id()
        await self.ledger.register_campaign(campaign_id, self.connector.name)
        batch: list[Message] = []
        index = 0
        async for message in iterate_messages(messages):
            if not isinstance(message, Message):
                raise TypeError(f"campaign item {index} is a {type(message).__name__}, not a Message")
            index += 1
            batch.append(message)
            if len(batch) >= self.copy_size:
                await self._load(campaign_id, batch)
                batch = []
        await self._load(campaign_id, batch)
        return self.campaign(campaign_id)

    async def _load(self, campaign_id: str, batch: list[Message]) -> None:
        if not batch:
            return
        connector = self.connector
        entries = [(m, connector.rate_limit_key(m), connector.send_cost(m)) for m in batch]
        await self.ledger.add(campaign_id, entries)
        ids = list(dict.fromkeys(m.id for m in batch))
        open_ids = set(await self.ledger.open_ids(ids))
        await self.kicker.kick([message_id for message_id in ids if message_id in open_ids])

    def campaign(self, campaign_id: str) -> TaskiqCampaign:
        """The handle of a campaign in the ledger (submitted by this process or any other)."""
        return TaskiqCampaign(
            campaign_id,
            ledger=self.ledger,
            kicker=self.kicker,
            in_doubt=self.in_doubt,
            poll_interval=self.poll_interval,
            settle_time=self.settle_time,
        )

    async def close(self) -> None:
        """Shut the broker connection down, and the ledger's pool if it made one (``from_url``)."""
        await self.kicker.close()
        await self.ledger.close()


def create_taskiq_dispatcher(connector: ChannelConnector, settings: DispatcherSettings) -> TaskiqDispatcher:
    """The ``taskiq`` kind: a ``TaskiqDispatcher`` on the table's broker and ledger."""
    options = TaskiqSettings.from_dispatcher(settings)
    ledger = settings.create_ledger()
    if not isinstance(ledger, PostgresLedger):
        raise ConfigurationError('[dispatcher] kind = "taskiq" needs a postgresql:// ledger')
    broker = broker_from_settings(options)
    return TaskiqDispatcher(
        connector,
        ledger=ledger,
        broker=broker,
        chunk_size=options.chunk_size,
        in_doubt=options.in_doubt,
        poll_interval=options.poll_interval,
        settle_time=options.settle_time(),
    )
