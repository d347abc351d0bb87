"""Chunks of message ids: the ``send_chunk`` task, its ``ChunkSender`` and the ``ChunkKicker`` publishing it.

The broker carries chunks of message ids, not messages: the ledger holds the messages, and the
ledger, not the queue, guarantees that no message is sent twice. The queue only has to deliver
every chunk at least once, again after a worker crash (the brokers: ``messaging_scale._brokers``).

A worker process installs a ``ChunkSender`` in the broker's state at start-up
(``install_sender``); ``send_chunk`` hands each chunk to it. ``ChunkKicker`` publishes chunks
(the dispatcher's ``submit``, a campaign's ``resume``, the sweeper).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from taskiq import AsyncBroker, AsyncTaskiqDecoratedTask, Context, TaskiqDepends

from messaging_core import telemetry
from messaging_core.campaigns import SendAttempt, SendPipeline, SendState
from messaging_core.errors import ConfigurationError
from messaging_scale._ledger import OpenMessage, PostgresLedger
from messaging_scale._limiter import RedisGcraLimiter

__all__ = [
    "MAX_REQUEUES",
    "SEND_CHUNK_TASK",
    "ChunkKicker",
    "ChunkSender",
    "install_sender",
    "register_tasks",
]

SEND_CHUNK_TASK = "messaging.send_chunk"
"""The task's name on the broker."""

MAX_REQUEUES = 10
"""Copies of a chunk published after errors before it is left to the sweeper."""

WORKER_ERROR = "WORKER_ERROR"
"""Error code of a message FAILED because its passes raised the same error ``max_attempts`` times
before any provider call (its row cannot be read, the connector raises on it); the row keeps the error."""

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
    - a message whose pass raises (its row cannot be read, the connector raises on it before any
      provider call) fails the chunk after the others are done, so that it is tried again, and
      is FAILED with the error (``WORKER_ERROR``) once it raised the same way ``max_attempts``
      times in a row: one poison row never holds its chunk or its campaign forever;
    - a campaign naming a connector this worker cannot open (``ConfigurationError``: not in its
      file) is failed as a whole: paused, with the reason (``PostgresLedger.fail_campaign``),
      which its handle and ``messaging campaign progress`` report; resume it once fixed;
    - an answer that says the sender is throttled (``Failure.throttled``: Twilio's 21611,
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
    :param max_attempts: failures in a row of a row that cannot be read before it is FAILED (a
        message that can be read uses its pipeline's ``max_attempts``).
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
        max_attempts: int = 5,
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
        self.max_attempts = max_attempts
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
        items, unreadable = await self.ledger.open_chunk(ids)
        poisoned: dict[str, str] = {}
        for message_id, error in unreadable.items():
            log.error("send %s: %s", message_id, error)
            failed = await self.ledger.note_failure(
                message_id, error, give_up_after=self.max_attempts, error_code=WORKER_ERROR
            )
            poisoned[message_id] = SendState.FAILED.value if failed else "error"
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
        if "error" in poisoned.values():
            raise RuntimeError(f"{len(poisoned)} message(s) of the chunk cannot be read from the ledger (tried again)")
        states = {item.message.id: str(state) for item, state in zip(items, outcomes, strict=True)}
        return {**states, **poisoned}

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
                try:
                    pipeline = await self._pipeline(item.connector)
                except ConfigurationError as err:
                    return await self._fail_campaign(item, err)
            # The semaphore bounds whole passes, pace wait included: the reservations then go to
            # Redis a bounded number at a time, without queueing for a connection between the
            # slot and the provider call (which would bunch sends), and a pace wait is bounded by
            # max_inline_wait (longer ones are deferred), so no campaign holds the slots for long.
            try:
                async with self._semaphore:
                    attempt = await pipeline.process(message, admit=lambda: self._admitted(item.campaign_id))
            except Exception as err:
                error = f"{type(err).__name__}: {err}"
                if not await self.ledger.note_failure(
                    message.id, error, give_up_after=pipeline.max_attempts, error_code=WORKER_ERROR
                ):
                    raise
                log.error("send %s: FAILED after %d passes raising %s", message.id, pipeline.max_attempts, error)
                return SendState.FAILED.value
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
                quiet = reconciled.retry_after if reconciled is not None else None
                if reconciled is not None and reconciled.state is SendState.UNKNOWN and quiet is not None:
                    # Nothing found yet, and the quiet period before "absent" is not over: probe again
                    # then if that is soon; otherwise the sweeper kicks the row again later.
                    if quiet > self.max_inline_wait:
                        return reconciled.state.value
                    await asyncio.sleep(quiet)
                    continue
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

    async def _fail_campaign(self, item: OpenMessage, err: ConfigurationError) -> str:
        """This worker cannot send the campaign at all: stop it for every worker, saying why."""
        reason = f"no worker can send it: {err}"
        log.error("campaign %s: %s; paused until resumed", item.campaign_id, reason)
        if not await self.ledger.fail_campaign(item.campaign_id, reason):
            raise err  # not a registered campaign: nothing to pause, the chunk fails as before
        _, _, cancelled = self._flags.get(item.campaign_id, (-math.inf, False, False))
        self._remember_flags(item.campaign_id, True, cancelled)
        return "paused"

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
    return error is not None and error.throttled


async def _send_chunk(ids: list[str], context: Context = TaskiqDepends()) -> dict[str, str]:  # noqa: B008 - taskiq's injection
    try:
        sender: ChunkSender | None = getattr(context.state, _STATE_KEY, None)
        if sender is None:
            raise RuntimeError("this worker has no ChunkSender: call install_sender() at worker start-up")
        with telemetry.campaign_chunk(len(ids)):
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
