"""The brokers that carry the chunks: RabbitMQ (first-class), Redis Streams, NATS JetStream.

The queue only has to deliver every chunk at least once, again after a worker crash (the ledger,
not the queue, guarantees that no message is sent twice). ``create_broker`` picks the broker by
the URL's scheme; for RabbitMQ it builds an ``AioPikaBroker`` with:

- a **quorum** queue (RabbitMQ returns a dead worker's unacked chunks to the queue and counts the
  deliveries);
- an explicit ``x-delivery-limit``, because RabbitMQ 3.10 has none by default, so that a chunk
  that keeps killing its worker stops after a few tries...
- ...and then goes to a **dead-letter queue** instead of disappearing (the sweeper finds its
  rows later: they are still in the ledger);
- the task is acknowledged when it has *executed* (``ack_type=when_executed``), not when received.

Every broker made here has the ``send_chunk`` task registered (``messaging_scale._chunks``).
``queued_chunks`` reads how many chunks wait on a broker's queue (the sweeper asks).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

from aio_pika import ExchangeType
from taskiq import AsyncBroker
from taskiq_aio_pika import AioPikaBroker, Exchange, Queue, QueueType

from messaging_core.errors import ConfigurationError
from messaging_scale._chunks import register_tasks
from messaging_scale._settings import TaskiqSettings
from messaging_scale._urls import split_options

__all__ = [
    "BROKER_SCHEMES",
    "broker_from_settings",
    "create_broker",
    "nats_broker",
    "queued_chunks",
    "rabbitmq_broker",
    "redis_stream_broker",
]

log = logging.getLogger(__name__)

BROKER_SCHEMES = ("amqp", "amqps", "redis", "rediss", "nats", "tls")
"""URL schemes ``create_broker`` accepts: RabbitMQ (the default and first-class), Redis Streams, NATS JetStream."""

REDIS_STREAM_OPTIONS = frozenset({"idle_timeout", "lock_timeout", "maxlen"})
NATS_OPTIONS = frozenset({"ack_wait"})


def create_broker(
    url: str,
    *,
    queue: str = "messaging.send",
    dead_letter_queue: str | None = None,
    exchange: str = "messaging",
    delivery_limit: int = 5,
    qos: int = 4,
) -> AsyncBroker:
    """The broker named by ``url``'s scheme, ``send_chunk`` registered.

    - ``amqp://`` (RabbitMQ, the first-class broker): see ``rabbitmq_broker``.
    - ``redis://`` (Redis Streams, ``pluggable-messaging-scale[redis]``): see ``redis_stream_broker``.
    - ``nats://`` (NATS JetStream, ``pluggable-messaging-scale[nats]``): see ``nats_broker``.
    """
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss"):
        return redis_stream_broker(url, queue=queue, qos=qos)
    if scheme in ("nats", "tls"):
        return nats_broker(url, queue=queue, delivery_limit=delivery_limit, qos=qos)
    return rabbitmq_broker(
        url, queue=queue, dead_letter_queue=dead_letter_queue, exchange=exchange, delivery_limit=delivery_limit, qos=qos
    )


def broker_from_settings(settings: TaskiqSettings) -> AsyncBroker:
    """``create_broker`` with the ``[dispatcher]`` table's broker URL, queue names, delivery limit and prefetch."""
    return create_broker(
        settings.broker,
        queue=settings.queue,
        dead_letter_queue=settings.dead_letter_queue,
        exchange=settings.exchange,
        delivery_limit=settings.delivery_limit,
        qos=settings.qos,
    )


def redis_stream_broker(url: str, *, queue: str, qos: int = 4) -> AsyncBroker:
    """A taskiq-redis ``RedisStreamBroker`` on the stream ``queue``, with the settings its caveats require.

    A chunk a worker took and did not acknowledge is claimed by another worker (``XAUTOCLAIM``)
    once it has been idle ``idle_timeout`` seconds (URL option, default 600): that must exceed the
    longest chunk, or a slow chunk runs twice (harmless to the ledger, wasteful).
    ``lock_timeout`` (default 30 s) frees the reclaim lock of a worker killed while holding it
    (taskiq-redis#131); ``maxlen`` (default 100,000) trims the stream, which acknowledgements do
    not shorten. Redis Streams have no delivery limit: a chunk that kills its worker comes back
    until the sweeper's rows settle.

    ``redis://host:6379/0?idle_timeout=600&lock_timeout=30&maxlen=100000``
    """
    try:
        from taskiq_redis import RedisStreamBroker
    except ImportError as err:  # pragma: no cover - the extra is installed in the tests
        raise ConfigurationError("a redis:// broker needs pluggable-messaging-scale[redis] (taskiq-redis)") from err
    address, options = split_options(url, REDIS_STREAM_OPTIONS)
    broker = RedisStreamBroker(
        address,
        queue_name=queue,
        consumer_group_name=f"{queue}.workers",
        consumer_id="0",  # a group made after the first chunks still reads them
        idle_timeout=round(float(options.get("idle_timeout", 600)) * 1000),
        unacknowledged_lock_timeout=float(options.get("lock_timeout", 30)),
        maxlen=int(options.get("maxlen", 100_000)),
        xread_count=qos,
    )
    register_tasks(broker)
    return broker


def nats_broker(url: str, *, queue: str, delivery_limit: int = 5, qos: int = 4) -> AsyncBroker:
    """A taskiq-nats ``PullBasedJetStreamBroker``: stream and durable consumer named after ``queue``.

    The stream keeps a chunk until it is acknowledged (work-queue retention). A chunk not
    acknowledged within ``ack_wait`` seconds (URL option, default 600) is delivered again, also
    while its first worker still runs it (taskiq-nats has no progress signal yet,
    taskiq-nats#27): it must exceed the longest chunk. ``delivery_limit`` becomes the consumer's
    ``max_deliver``.

    ``nats://host:4222?ack_wait=600``
    """
    try:
        from nats.js.api import ConsumerConfig, RetentionPolicy, StreamConfig
    except ImportError as err:  # pragma: no cover - the extra is installed in the tests
        raise ConfigurationError("a nats:// broker needs pluggable-messaging-scale[nats] (taskiq-nats)") from err
    address, options = split_options(url, NATS_OPTIONS)
    name = queue.replace(".", "_")  # stream and consumer names allow no dots
    broker: AsyncBroker = _nats_broker_class()(
        servers=[address],
        subject=queue,
        stream_name=name,
        durable=f"{name}_workers",
        stream_config=StreamConfig(name=name, subjects=[queue], retention=RetentionPolicy.WORK_QUEUE),
        consumer_config=ConsumerConfig(
            durable_name=f"{name}_workers",
            ack_wait=float(options.get("ack_wait", 600)),
            max_deliver=delivery_limit,
        ),
        pull_consume_batch=qos,
        pull_consume_timeout=1.0,
    )
    register_tasks(broker)
    return broker


def _nats_broker_class() -> Any:
    from nats.errors import TimeoutError as NatsTimeoutError
    from taskiq import AckableMessage
    from taskiq_nats import PullBasedJetStreamBroker

    class PullJetStreamBroker(PullBasedJetStreamBroker):
        """taskiq-nats' pull broker, surviving an empty fetch.

        nats-py 2.16 ends an empty ``fetch`` with the built-in ``TimeoutError``, which taskiq-nats
        0.7 does not catch (it catches nats' own): an idle worker process would crash and be
        restarted over and over.
        """

        async def listen(self) -> AsyncGenerator[AckableMessage, None]:
            while True:
                try:
                    fetched = await self.consumer.fetch(
                        batch=self.pull_consume_batch, timeout=self.pull_consume_timeout
                    )
                except (NatsTimeoutError, TimeoutError):
                    continue
                for message in fetched:
                    yield AckableMessage(data=message.data, ack=message.ack)

    return PullJetStreamBroker


def rabbitmq_broker(
    url: str,
    *,
    queue: str = "messaging.send",
    dead_letter_queue: str | None = None,
    exchange: str = "messaging",
    delivery_limit: int = 5,
    qos: int = 4,
) -> AioPikaBroker:
    """An ``AioPikaBroker`` on a quorum queue with a dead-letter queue and a delivery limit, tasks registered.

    :param url: ``amqp://user:password@host:5672/vhost``.
    :param queue: the work queue (tests use ``t-<uuid>``).
    :param dead_letter_queue: where chunks go after ``delivery_limit`` deliveries (default ``<queue>.dead``).
    :param exchange: the direct exchange the tasks are published to.
    :param delivery_limit: deliveries of one chunk before it is dead-lettered (``x-delivery-limit``).
    :param qos: chunks a worker process holds unacknowledged. A few are enough: the process's
        ``ChunkSender`` concurrency bounds the sends, and chunks prefetched by one process are
        chunks the others cannot take.
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


async def queued_chunks(broker: AsyncBroker, queue: str) -> int | None:
    """Chunks waiting in ``queue`` (ready, not yet delivered to a worker), or None when the broker cannot tell.

    RabbitMQ: the queue's ready messages. Redis Streams: the consumer group's lag. NATS: the
    consumer's pending count.
    """
    kind = type(broker).__name__
    if kind == "RedisStreamBroker":
        return await _redis_stream_lag(broker, queue)
    if kind == "PullJetStreamBroker":
        return await _nats_pending(broker)
    connection = getattr(broker, "write_conn", None)
    if connection is None:
        return None
    try:
        # A channel of its own: a failed passive declare closes the channel it ran on.
        async with asyncio.timeout(10):
            channel = await connection.channel()
            try:
                declared = await channel.declare_queue(queue, passive=True)
                count = declared.declaration_result.message_count
            finally:
                await channel.close()
    except Exception:
        log.warning("cannot read the depth of queue %s", queue, exc_info=True)
        return None
    return int(count)


async def _redis_stream_lag(broker: Any, queue: str) -> int | None:
    from redis.asyncio import Redis

    try:
        async with asyncio.timeout(10), Redis(connection_pool=broker.connection_pool) as client:
            groups = await client.xinfo_groups(queue)
    except Exception:
        log.warning("cannot read the lag of stream %s", queue, exc_info=True)
        return None
    for group in groups:
        name = group.get("name")
        if name in (broker.consumer_group_name, broker.consumer_group_name.encode()):
            lag = group.get("lag")
            return int(lag) if lag is not None else None
    return 0  # no group yet: nothing was delivered, and the stream is read from its start


async def _nats_pending(broker: Any) -> int | None:
    try:
        async with asyncio.timeout(10):
            info = await broker.consumer.consumer_info()
    except Exception:
        log.warning("cannot read the pending count of the NATS consumer", exc_info=True)
        return None
    return int(info.num_pending)
