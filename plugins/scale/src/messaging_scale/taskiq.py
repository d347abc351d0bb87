"""Taskiq pieces of the distributed dispatcher: the RabbitMQ broker and the ``send_chunk`` task.

The broker carries chunks of message ids, not messages: the ledger holds the messages, and the
ledger, not the queue, guarantees that no message is sent twice. The queue only has to deliver
every chunk at least once, again after a worker crash. ``create_broker`` builds an
``AioPikaBroker`` for that:

- a **quorum** queue (RabbitMQ returns a dead worker's unacked chunks to the queue and counts the
  deliveries);
- an explicit ``x-delivery-limit``, because RabbitMQ 3.10 has none by default, so that a chunk
  that keeps killing its worker stops after a few tries...
- ...and then goes to a **dead-letter queue** instead of disappearing;
- the task is acknowledged when it has *executed* (``ack_type=when_executed``), not when received.

A worker process installs a ``ChunkSender`` (the send pipeline and its ledger) in the broker's
state at start-up (``install_sender``); ``send_chunk`` hands each chunk to it.

Not here yet (next step): the ``TaskiqDispatcher`` (submit, campaign handles), the sweeper that
re-kicks due and expired rows, the ``messaging worker`` command.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import Any

from aio_pika import ExchangeType
from taskiq import AsyncBroker, AsyncTaskiqDecoratedTask, Context, TaskiqDepends
from taskiq_aio_pika import AioPikaBroker, Exchange, Queue, QueueType

from messaging_core.pipeline import SendLedger
from messaging_core.sending import SendPipeline

__all__ = [
    "MAX_REQUEUES",
    "SEND_CHUNK_TASK",
    "ChunkSender",
    "create_broker",
    "install_sender",
    "register_tasks",
]

SEND_CHUNK_TASK = "messaging.send_chunk"
"""The task's name on the broker."""

MAX_REQUEUES = 10
"""Copies of a chunk published after errors before it is left to the sweeper."""

_STATE_KEY = "messaging_chunk_sender"
_REQUEUE_LABEL = "X-Taskiq-requeue"  # set by taskiq's Context.requeue

log = logging.getLogger(__name__)


class ChunkSender:
    """Runs a chunk of message ids through the send pipeline: the body of ``send_chunk``.

    Each message goes through ``SendPipeline.run`` (pace, claim, send, fenced record, retries and
    reconciliation by the pipeline's policy), ``concurrency`` messages at a time. Ids already
    final are skipped by the claim itself, so a redelivered chunk sends nothing twice.

    :param pipeline: the send pipeline (connector, ledger, limiter, status store).
    :param concurrency: messages of one chunk in flight at once.
    """

    def __init__(self, pipeline: SendPipeline, *, concurrency: int = 50) -> None:
        if pipeline.ledger is None:
            raise ValueError("a distributed worker needs a ledger: it is what prevents double sends")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.pipeline = pipeline
        self.ledger: SendLedger = pipeline.ledger
        self.concurrency = concurrency

    async def send(self, ids: Sequence[str]) -> dict[str, str]:
        """Send the messages of a chunk; returns each id's ledger state afterwards (``missing``: not in the ledger)."""
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(message_id: str) -> tuple[str, str]:
            async with semaphore:
                message = await self.ledger.load(message_id)
                if message is None:
                    return message_id, "missing"
                attempt = await self.pipeline.run(message)
                return message_id, attempt.state.value

        results = await asyncio.gather(*(one(message_id) for message_id in dict.fromkeys(ids)))
        return dict(results)


def create_broker(
    url: str,
    *,
    queue: str = "messaging.send",
    dead_letter_queue: str | None = None,
    exchange: str = "messaging",
    delivery_limit: int = 5,
    qos: int = 64,
) -> AioPikaBroker:
    """An ``AioPikaBroker`` on a quorum queue with a dead-letter queue and a delivery limit, tasks registered.

    :param url: ``amqp://user:password@host:5672/vhost``.
    :param queue: the work queue (tests use ``t-<uuid>``).
    :param dead_letter_queue: where chunks go after ``delivery_limit`` deliveries (default ``<queue>.dead``).
    :param exchange: the direct exchange the tasks are published to.
    :param delivery_limit: deliveries of one chunk before it is dead-lettered (``x-delivery-limit``).
    :param qos: chunks a worker process prefetches.
    """
    if delivery_limit < 1:
        raise ValueError("delivery_limit must be at least 1")
    broker = AioPikaBroker(
        url,
        qos=qos,
        exchange=Exchange(name=exchange, type=ExchangeType.DIRECT),
        task_queues=[Queue(name=queue, type=QueueType.QUORUM, arguments={"x-delivery-limit": delivery_limit})],
        dead_letter_queue=Queue(name=dead_letter_queue or f"{queue}.dead", type=QueueType.QUORUM),
    )
    register_tasks(broker)
    return broker


async def _send_chunk(ids: list[str], context: Context = TaskiqDepends()) -> dict[str, str]:  # noqa: B008 - taskiq's injection
    try:
        sender: ChunkSender | None = getattr(context.state, _STATE_KEY, None)
        if sender is None:
            raise RuntimeError("this worker has no ChunkSender: call install_sender() at worker start-up")
        return await sender.send(ids)
    except Exception:
        # Taskiq acknowledges a task that raised, which would drop the chunk from the queue. An
        # infrastructure failure (the database restarting) must not lose it: publish a copy
        # first (``requeue`` raises NoResultError; the original is then acknowledged). The copies
        # are capped; the ledger's rows stay for the sweeper either way.
        if int(context.message.labels.get(_REQUEUE_LABEL, 0)) < MAX_REQUEUES:
            log.exception("send_chunk: %d message(s) requeued after an error", len(ids))
            await context.requeue()
        raise


def register_tasks(
    broker: AsyncBroker,
) -> AsyncTaskiqDecoratedTask[[list[str], Context], Coroutine[Any, Any, dict[str, str]]]:
    """Register ``send_chunk`` on ``broker`` (acknowledged once executed); returns the task."""
    return broker.register_task(_send_chunk, task_name=SEND_CHUNK_TASK, ack_type="when_executed")


def install_sender(broker: AsyncBroker, sender: ChunkSender) -> None:
    """Make ``sender`` run the chunks this process receives (call it at worker start-up)."""
    setattr(broker.state, _STATE_KEY, sender)
