"""Taskiq pieces of the distributed dispatcher: the RabbitMQ broker, the ``send_chunk`` task, the sweeper.

The broker carries chunks of message ids, not messages: the ledger holds the messages, and the
ledger, not the queue, guarantees that no message is sent twice. The queue only has to deliver
every chunk at least once, again after a worker crash. ``create_broker`` builds an
``AioPikaBroker`` for that:

- a **quorum** queue (RabbitMQ returns a dead worker's unacked chunks to the queue and counts the
  deliveries);
- an explicit ``x-delivery-limit``, because RabbitMQ 3.10 has none by default, so that a chunk
  that keeps killing its worker stops after a few tries...
- ...and then goes to a **dead-letter queue** instead of disappearing (the sweeper finds its
  rows later: they are still in the ledger);
- the task is acknowledged when it has *executed* (``ack_type=when_executed``), not when received.

A worker process installs a ``ChunkSender`` in the broker's state at start-up
(``install_sender``); ``send_chunk`` hands each chunk to it. ``ChunkKicker`` publishes chunks
(the dispatcher's ``submit``, a campaign's ``resume``, the sweeper), and ``Sweeper`` re-kicks
the rows that need work but that nobody touched for a while.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Sequence
from typing import Any

from aio_pika import ExchangeType
from taskiq import AsyncBroker, AsyncTaskiqDecoratedTask, Context, TaskiqDepends
from taskiq_aio_pika import AioPikaBroker, Exchange, Queue, QueueType

from messaging_core.errors import ConfigurationError
from messaging_core.pipeline import SendState
from messaging_core.sending import SendAttempt, SendPipeline
from messaging_scale._ledger import OpenMessage, PostgresLedger
from messaging_scale._limiter import RedisGcraLimiter
from messaging_scale._settings import TaskiqSettings
from messaging_scale._urls import split_options

__all__ = [
    "BROKER_SCHEMES",
    "MAX_REQUEUES",
    "SEND_CHUNK_TASK",
    "ChunkKicker",
    "ChunkSender",
    "Sweeper",
    "broker_from_settings",
    "create_broker",
    "install_sender",
    "nats_broker",
    "queued_chunks",
    "rabbitmq_broker",
    "redis_stream_broker",
    "register_tasks",
]

SEND_CHUNK_TASK = "messaging.send_chunk"
"""The task's name on the broker."""

MAX_REQUEUES = 10
"""Copies of a chunk published after errors before it is left to the sweeper."""

_STATE_KEY = "messaging_chunk_sender"
_REQUEUE_LABEL = "X-Taskiq-requeue"  # set by taskiq's Context.requeue

log = logging.getLogger(__name__)

PipelineFor = Callable[[str | None], Awaitable[SendPipeline]]
"""The pipeline of a campaign's connector, by the connector's name (None: not registered)."""


class ChunkSender:
    """Runs a chunk of message ids through the send pipeline: the body of ``send_chunk``.

    One query loads the chunk's messages that still need work (a redelivered or overlapping
    chunk skips the finished ones). Each then goes through ``SendPipeline.process`` pass after
    pass, as ``SendPipeline.run`` does (retries when due, reconciliation of messages in doubt by
    the pipeline's policy), with three additions for campaigns on many workers:

    - before every pass, the campaign's flags (read from the ledger at most once per
      ``flags_ttl`` seconds): a paused campaign's messages are left PENDING (``resume`` kicks
      them again), a cancelled one's are cancelled;
    - a pace slot or a retry further away than ``max_inline_wait`` is not slept through: the
      message is deferred in the ledger (``PostgresLedger.defer``, due ``defer_lead`` seconds
      before its slot, which stays booked under its id) and the sweeper publishes it again
      then, so that a chunk is never held unacknowledged for minutes;
    - the campaign's flags are checked again after the pace wait, right before the claim;
    - an answer that says the sender is throttled (``details["sender_throttled"]``: Twilio's 21611,
      a From number's full queue) halves the sender's pace for ``slow_down_for`` seconds on every
      worker (when the limiter is a ``RedisGcraLimiter``). An account's concurrency limit (20429)
      is not the sender's pace and leaves it alone.

    At most ``concurrency`` passes (pace wait, claim, provider call) run at once in the process,
    over all its chunks; a pace wait is at most ``max_inline_wait`` (longer ones are deferred),
    so a slow sender holds slots only that long. Each ledger operation takes one pooled
    connection and gives it back before the pace wait and the provider call.

    :param ledger: the PostgreSQL ledger.
    :param pipelines: the pipeline for every message, or ``async (connector_name) -> SendPipeline``
        (a worker serving campaigns of several connectors).
    :param concurrency: passes in flight at once in this process.
    """

    def __init__(
        self,
        ledger: PostgresLedger,
        pipelines: SendPipeline | PipelineFor,
        *,
        concurrency: int = 50,
        flags_ttl: float = 1.0,
        max_inline_wait: float = 30.0,
        defer_lead: float = 20.0,
        slow_down_for: float = 60.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if isinstance(pipelines, SendPipeline) and pipelines.ledger is None:
            raise ValueError("a distributed worker needs a ledger: it is what prevents double sends")
        self.ledger = ledger
        self._pipelines = pipelines
        self.concurrency = concurrency
        self.flags_ttl = flags_ttl
        self.max_inline_wait = max_inline_wait
        self.defer_lead = defer_lead
        self.slow_down_for = slow_down_for
        self._semaphore = asyncio.Semaphore(concurrency)
        self._flags: dict[str, tuple[float, bool, bool]] = {}
        """campaign id → (read at, paused, cancelled)."""
        self._cancelled_at: dict[str, float] = {}
        self._slowed_until: dict[str, float] = {}
        self._active: collections.Counter[str] = collections.Counter()
        """Passes running per campaign: the flags the poller keeps fresh."""
        self._poller: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<ChunkSender concurrency={self.concurrency} ledger={self.ledger!r}>"

    async def send(self, ids: Sequence[str]) -> dict[str, str]:
        """Work on the messages of a chunk; returns each worked id's ledger state afterwards.

        ``paused`` marks messages left PENDING because their campaign is paused. Ids already
        final (or not in the ledger) are not in the answer.
        """
        items = await self.ledger.open_messages(ids)
        for item in items:
            # Read with the chunk: fresher than the cache (a chunk published by ``resume``).
            self._remember_flags(item.campaign_id, item.paused, item.cancelled)
        # Every message runs to its end even if another one fails (cancelling a provider call in
        # flight would only put its message in doubt); the first error then fails the chunk.
        for item in items:
            self._active[item.campaign_id] += 1
        if items and (self._poller is None or self._poller.done()):
            self._poller = asyncio.create_task(self._poll_flags(), name="messaging campaign flags")
        try:
            outcomes = await asyncio.gather(*(self._work(item) for item in items), return_exceptions=True)
        finally:
            for item in items:
                self._active[item.campaign_id] -= 1
            self._active += collections.Counter()  # drop campaigns with no pass left
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return {item.message.id: str(state) for item, state in zip(items, outcomes, strict=True)}

    async def _pipeline(self, connector: str | None) -> SendPipeline:
        if isinstance(self._pipelines, SendPipeline):
            return self._pipelines
        return await self._pipelines(connector)

    async def _work(self, item: OpenMessage) -> str:
        pipeline: SendPipeline | None = None
        message = item.message
        while True:
            paused, cancelled = await self._campaign_flags(item.campaign_id)
            if cancelled:
                return await self._cancel(item)
            if paused:
                return "paused"
            if pipeline is None:  # after the flags: a paused campaign needs no connector
                pipeline = await self._pipeline(item.connector)
            # The semaphore bounds whole passes, pace wait included: the reservations then go to
            # Redis a bounded number at a time, without queueing for a connection between the
            # slot and the provider call (which would bunch sends), and a pace wait is bounded by
            # max_inline_wait (longer ones are deferred), so no campaign holds the slots for long.
            async with self._semaphore:
                attempt = await pipeline.process(message, admit=lambda: self._admitted(item.campaign_id))
            if attempt.deferred:
                # The slot is booked under the message id, further ahead than a chunk should be held:
                # the sweeper publishes the message again shortly before it.
                assert attempt.retry_after is not None
                await self.ledger.defer([message.id], attempt.retry_after - self.defer_lead)
                return "deferred"
            if attempt.state.is_final:
                return attempt.state.value
            if attempt.state is SendState.UNKNOWN:
                reconciled = await pipeline.reconcile(message)
                if reconciled is None or reconciled.state is not SendState.PENDING:
                    return (reconciled or attempt).state.value
                continue  # proven absent: send again
            if _sender_throttled(attempt):
                await self._slow_down(pipeline, item)
            delay = attempt.retry_after or 0.0
            if delay > self.max_inline_wait and attempt.state is SendState.PENDING:
                await self.ledger.defer([message.id], delay)  # the sweeper publishes it again when due
                return "deferred"
            if delay > self.max_inline_wait:
                return attempt.state.value  # another worker's lease: the sweeper settles it if it lapses
            await asyncio.sleep(delay)

    async def _admitted(self, campaign_id: str) -> bool:
        """Checked after the pace wait, before the claim: a campaign paused or cancelled meanwhile sends nothing.

        It reads the flags the poller keeps (at most ``flags_ttl`` old) and never waits for the
        database: a read there would sit between the pace slot and the provider call.
        """
        _, paused, cancelled = self._flags.get(campaign_id, (-math.inf, False, False))
        return not (paused or cancelled)

    async def _poll_flags(self) -> None:
        """Re-read the flags of the campaigns with passes running, every ``flags_ttl``, while there are any."""
        while self._active:
            for campaign_id in list(self._active):
                try:
                    await self._read_flags(campaign_id)
                except Exception:
                    log.warning("campaign %s: cannot read its flags; trying again", campaign_id, exc_info=True)
            await asyncio.sleep(self.flags_ttl)

    async def _campaign_flags(self, campaign_id: str) -> tuple[bool, bool]:
        read_at, paused, cancelled = self._flags.get(campaign_id, (-math.inf, False, False))
        if time.monotonic() - read_at > self.flags_ttl:
            return await self._read_flags(campaign_id)
        return paused, cancelled

    async def _read_flags(self, campaign_id: str) -> tuple[bool, bool]:
        """``(paused, cancelled)`` from the ledger, remembered (no campaign row: neither)."""
        info = await self.ledger.campaign(campaign_id)
        paused, cancelled = (info.paused, info.cancelled) if info is not None else (False, False)
        self._remember_flags(campaign_id, paused, cancelled)
        return paused, cancelled

    def _remember_flags(self, campaign_id: str, paused: bool, cancelled: bool) -> None:
        self._flags[campaign_id] = (time.monotonic(), paused, cancelled)

    async def _cancel(self, item: OpenMessage) -> str:
        # One campaign-wide cancel per second and process is enough: it covers every PENDING row.
        now = time.monotonic()
        if now - self._cancelled_at.get(item.campaign_id, -math.inf) > self.flags_ttl:
            self._cancelled_at[item.campaign_id] = now
            await self.ledger.cancel(item.campaign_id)
        entry = await self.ledger.get(item.message.id)
        return entry.state.value if entry is not None else "missing"

    async def _slow_down(self, pipeline: SendPipeline, item: OpenMessage) -> None:
        limiter = pipeline.limiter
        if not isinstance(limiter, RedisGcraLimiter):
            return
        key = pipeline.connector.rate_limit_key(item.message)
        now = time.monotonic()
        if self._slowed_until.get(key, -math.inf) > now:
            return
        self._slowed_until[key] = now + self.slow_down_for
        rate = limiter.rates.get(key, limiter.rate) / 2
        log.warning(
            "sender %s is rate limited by the provider: pace halved to %g/s for %g s", key, rate, self.slow_down_for
        )
        await limiter.set_rate(key, rate, duration=self.slow_down_for)


def _sender_throttled(attempt: SendAttempt) -> bool:
    error = attempt.result.error
    return error is not None and error.details.get("sender_throttled") is True


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


async def _send_chunk(ids: list[str], context: Context = TaskiqDepends()) -> dict[str, str]:  # noqa: B008 - taskiq's injection
    try:
        sender: ChunkSender | None = getattr(context.state, _STATE_KEY, None)
        if sender is None:
            raise RuntimeError("this worker has no ChunkSender: call install_sender() at worker start-up")
        return await sender.send(ids)
    except asyncio.CancelledError:
        # Cut short (a worker stopping past its --shutdown-timeout): Taskiq acknowledges a
        # cancelled task as well, so publish a copy first; the rest of the chunk then goes on
        # elsewhere instead of waiting for the sweeper. A copy costs nothing twice (the ledger).
        await _publish_copy(context, ids)
        raise
    except Exception:
        # Taskiq acknowledges a task that raised, which would drop the chunk from the queue. An
        # infrastructure failure (the database restarting) must not lose it: publish a copy
        # first (``requeue`` raises NoResultError; the original is then acknowledged). The copies
        # are capped; the ledger's rows stay for the sweeper either way.
        requeues = int(context.message.labels.get(_REQUEUE_LABEL, 0))
        if requeues < MAX_REQUEUES:
            # Back off first (the chunk stays unacknowledged meanwhile): a database restart takes
            # seconds, and copies republished at once would use up the cap in milliseconds.
            delay = requeue_delay(requeues)
            log.exception("send_chunk: %d message(s) requeued in %g s after an error", len(ids), delay)
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                await _publish_copy(context, ids)  # stopped while backing off: not lost to the ack
                raise
            await context.requeue()
        raise


async def _publish_copy(context: Context, ids: Sequence[str]) -> None:
    """Publish the chunk again (not counted as a requeue); logged, never raised."""
    try:
        async with asyncio.timeout(5):
            await context.broker.kick(context.broker.formatter.dumps(context.message))
        log.warning("send_chunk: cancelled; %d message id(s) published again", len(ids))
    except Exception:
        log.exception("send_chunk: cancelled and not published again; the sweeper will find its rows")


def requeue_delay(requeues: int) -> float:
    """Seconds before a failed chunk is published again: 0.5, 1, 2, … capped at 30 (2.5 min over 10 copies)."""
    return float(min(30.0, 0.5 * 2**requeues))


def register_tasks(
    broker: AsyncBroker,
) -> AsyncTaskiqDecoratedTask[[list[str], Context], Coroutine[Any, Any, dict[str, str]]]:
    """Register ``send_chunk`` on ``broker`` (acknowledged once executed); returns the task."""
    return broker.register_task(_send_chunk, task_name=SEND_CHUNK_TASK, ack_type="when_executed")


def install_sender(broker: AsyncBroker, sender: ChunkSender) -> None:
    """Make ``sender`` run the chunks this process receives (call it at worker start-up)."""
    setattr(broker.state, _STATE_KEY, sender)


class ChunkKicker:
    """Publishes message ids as ``send_chunk`` tasks, ``chunk_size`` ids per task.

    The broker is started on first use when it is not a worker's (a submitting process).
    """

    def __init__(self, broker: AsyncBroker, *, chunk_size: int = 500) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.broker = broker
        self.chunk_size = chunk_size
        self._started = False
        self._lock = asyncio.Lock()

    async def kick(self, ids: Sequence[str]) -> int:
        """Publish ``ids`` in chunks; returns the number of chunks."""
        if not ids:
            return 0
        await self.start()
        task = self.broker.find_task(SEND_CHUNK_TASK)
        if task is None:
            raise RuntimeError(f"the broker has no {SEND_CHUNK_TASK} task (use create_broker or register_tasks)")
        chunks = [list(ids[i : i + self.chunk_size]) for i in range(0, len(ids), self.chunk_size)]
        for chunk in chunks:
            await task.kiq(chunk)
        return len(chunks)

    async def start(self) -> None:
        """Start the broker (once), unless it is a worker's (the worker started it)."""
        # Read now, not at construction: a worker's broker is flagged when the worker starts it.
        if not self._started and not self.broker.is_worker_process:
            async with self._lock:
                if not self._started:
                    await self.broker.startup()
                    self._started = True

    async def close(self) -> None:
        """Shut the broker down if this kicker started it."""
        if self._started:
            self._started = False
            await self.broker.shutdown()


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


class Sweeper:
    """Re-kicks the rows that need work but nobody touched for ``stale_after`` seconds.

    Every worker process runs one (``run``); the ledger gives one turn per ``interval`` to
    whichever asks first, so a fleet sweeps once per interval. The usual paths need no sweeper
    (a dead worker's chunks come back from RabbitMQ); it catches what they miss: a dead-lettered
    chunk, a retry left for later, a chunk lost by a submitter that died between ``COPY`` and
    publishing, rows in doubt to reconcile with ``probe_then_resend``. Never-tried PENDING rows
    are re-kicked only while the work queue is empty (their chunks may still be queued).

    :param ledger: the PostgreSQL ledger.
    :param kicker: publishes the re-kicked ids.
    :param queue: the work queue's name (to read its depth).
    :param interval: seconds between sweeps of the fleet.
    :param stale_after: seconds without a change before a row needing work is re-kicked.
    :param reconcile: whether UNKNOWN rows are re-kicked (``in_doubt = "probe_then_resend"``).
    """

    name = "sweeper"

    def __init__(
        self,
        ledger: PostgresLedger,
        kicker: ChunkKicker,
        *,
        queue: str,
        interval: float = 10.0,
        stale_after: float = 300.0,
        reconcile: bool = False,
        batch: int = 5000,
    ) -> None:
        self.ledger = ledger
        self.kicker = kicker
        self.queue = queue
        self.interval = interval
        self.stale_after = stale_after
        self.reconcile = reconcile
        self.batch = batch

    async def sweep(self) -> int:
        """One sweep if it is this process's turn; returns how many ids were published again."""
        if not await self.ledger.take_turn(f"{self.name}:{self.queue}", self.interval):
            return 0
        woken = await self.ledger.wake_deferred(limit=self.batch, again_after=self.stale_after)
        if woken:
            chunks = await self.kicker.kick(woken)
            log.info("sweeper: %d deferred message(s) due, published in %d chunk(s)", len(woken), chunks)
        unclaimed = await queued_chunks(self.kicker.broker, self.queue) == 0
        ids = await self.ledger.stale(
            stale_after=self.stale_after, unknown=self.reconcile, unclaimed=unclaimed, limit=self.batch
        )
        if ids:
            chunks = await self.kicker.kick(ids)
            log.info("sweeper: %d message(s) kicked again in %d chunk(s)", len(ids), chunks)
        return len(woken) + len(ids)

    async def run(self) -> None:
        """Sweep every ``interval`` seconds until cancelled; errors are logged, never fatal."""
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("sweeper: the sweep failed; trying again in %g s", self.interval)
            await asyncio.sleep(self.interval)
