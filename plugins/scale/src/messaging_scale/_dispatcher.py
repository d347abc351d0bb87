"""``TaskiqDispatcher``: campaigns sent by worker processes on other machines.

``submit`` copies the messages into the PostgreSQL ledger (``COPY``), records which connector
sends the campaign, and publishes chunks of message ids to the RabbitMQ queue; it returns once
every message is in the ledger and every chunk is on the queue. Workers (``messaging worker``)
take the chunks and run each message through the send pipeline. The handle it returns
(``TaskiqCampaign``) reads everything from the ledger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from messaging_core.campaigns import DispatcherSettings, InDoubtPolicy, Submission, add_messages, attach_provider_ids
from messaging_core.errors import ConfigurationError
from messaging_core.message import Message, MessageStream, iterate_messages, new_message_id
from messaging_core.schema import Capability
from messaging_scale._brokers import broker_from_settings
from messaging_scale._campaign import TaskiqCampaign
from messaging_scale._chunks import ChunkKicker
from messaging_scale._ledger import PostgresLedger
from messaging_scale._settings import TaskiqSettings

if TYPE_CHECKING:
    from taskiq import AsyncBroker

    from messaging_core.connector import ChannelConnector

__all__ = ["TaskiqDispatcher", "create_taskiq_dispatcher"]


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
        attach_provider_ids(connector, ledger)  # status by our id from any process, after restarts
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
        flags), never resends what was sent. The handle's ``submission`` says how many ids were
        new and which campaigns already held the others.
        """
        if options:
            raise TypeError(f"submit() got unknown options {sorted(options)}")
        self.connector.require(Capability.BULK_MESSAGING)
        campaign_id = campaign_id or new_message_id()
        await self.ledger.register_campaign(campaign_id, self.connector.name)
        batch: list[Message] = []
        submission = Submission()
        index = 0
        async for message in iterate_messages(messages):
            if not isinstance(message, Message):
                raise TypeError(f"campaign item {index} is a {type(message).__name__}, not a Message")
            index += 1
            batch.append(message)
            if len(batch) >= self.copy_size:
                submission = submission.plus(await self._load(campaign_id, batch))
                batch = []
        submission = submission.plus(await self._load(campaign_id, batch))
        handle = self.campaign(campaign_id)
        handle.submission = submission
        return handle

    async def _load(self, campaign_id: str, batch: list[Message]) -> Submission:
        if not batch:
            return Submission()
        submission = await add_messages(self.ledger, self.connector, campaign_id, batch)
        ids = list(dict.fromkeys(m.id for m in batch))
        open_ids = set(await self.ledger.open_ids(ids))
        await self.kicker.kick([message_id for message_id in ids if message_id in open_ids])
        return submission

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
