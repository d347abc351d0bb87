"""The connector lifecycle: a state machine with async methods, and the provider seam.

::

    UNINITIALIZED ──initialize()──▶ INITIALIZING ──ok──▶ READY ──shutdown()──▶ SHUTTING_DOWN ──▶ SHUTDOWN
                                         │                                              ▲
                                         └──failed──▶ ERROR ──initialize() (retry)──────┤
                                                        └──────────shutdown()───────────┘

Only READY is operational; ``get_health()`` is always allowed. A shut-down connector cannot be
initialized again (create a new one). Every public operation checks, in this order: capability
(``CapabilityNotSupportedError``), state (``ConnectorStateError``), input validation against the
schema (a failed result with ``MESSAGE_VALIDATION_FAILED`` listing every issue) — all before any I/O.

Providers subclass ``ChannelConnector`` and implement the small protected methods
(``_initialize``, ``_validate``, ``_send_message``, ``_get_message_status``, ``_receive_messages``,
``_receive_message_status``, ``_test_connection``, ``_check_health``, ``_shutdown``). They may
also override, never call, the public hooks of the provider seam grouped under "override, don't
call" below: what the send pipeline asks (``rate_limit_key``, ``send_cost``, ``send_timeout``,
``find_sent``), the batch defaults (``batch_concurrency``, ``batch_rate``), the webhook policy
(``webhook_response``, ``webhook_idempotency_key``) and ``preview_message``.

Sending has one seam, ``attempt(message)``: validation and the provider call, no capability check
and no hook. ``send_message`` is capability check + ``attempt`` + ``message_sent``; ``send_batch``
and ``send_stream`` pace and run ``attempt`` on a pool of workers; the campaign pipeline
(``messaging_core.campaigns``, which this module does not import) claims, calls ``attempt``
within its lease, records, then fires ``message_sent`` itself.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import enum
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol, TypeVar, final

from messaging_core import converters, telemetry
from messaging_core._batching import drive, not_attempted
from messaging_core._ratelimit import MemoryRateLimiter
from messaging_core.errors import CapabilityNotSupportedError, ConfigurationError, ConnectorStateError
from messaging_core.message import Content, Message, MessageBatch, MessageStream, new_message_id
from messaging_core.plugins import PluginHost
from messaging_core.results import (
    BatchSendResult,
    ConnectorErrorCodes,
    ConnectorHealth,
    ConnectorResult,
    FailureOutcome,
    ReceiveResult,
    SendResult,
    StatusUpdate,
    StatusUpdatesResult,
    utc_now,
)
from messaging_core.schema import Capability, ChannelSchema
from messaging_core.settings import ConnectionSettings
from messaging_core.validation import ValidationIssue, validator_for
from messaging_core.webhook_request import WebhookRequest

__all__ = ["BatchProgress", "ChannelConnector", "ConnectorState", "ProviderIdLookup"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class ConnectorState(enum.Enum):
    """Where a connector is in its life."""

    UNINITIALIZED = "uninitialized"
    """Created; settings not checked yet, no resources held."""
    INITIALIZING = "initializing"
    """``initialize()`` is running."""
    READY = "ready"
    """Operational: the only state in which messages move."""
    ERROR = "error"
    """Initialization failed; ``initialize()`` may be retried."""
    SHUTTING_DOWN = "shutting_down"
    """``shutdown()`` is releasing resources."""
    SHUTDOWN = "shutdown"
    """Resources released; final."""


_TRANSITIONS: dict[ConnectorState, frozenset[ConnectorState]] = {
    ConnectorState.UNINITIALIZED: frozenset({ConnectorState.INITIALIZING, ConnectorState.SHUTTING_DOWN}),
    ConnectorState.INITIALIZING: frozenset({ConnectorState.READY, ConnectorState.ERROR}),
    ConnectorState.READY: frozenset({ConnectorState.SHUTTING_DOWN}),
    ConnectorState.ERROR: frozenset({ConnectorState.INITIALIZING, ConnectorState.SHUTTING_DOWN}),
    ConnectorState.SHUTTING_DOWN: frozenset({ConnectorState.SHUTDOWN}),
    ConnectorState.SHUTDOWN: frozenset(),
}


class BatchProgress:
    """Counters of a running batch, passed to ``on_progress`` after every message."""

    __slots__ = ("done", "failed", "succeeded", "total")

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.done = 0
        self.succeeded = 0
        self.failed = 0

    def __repr__(self) -> str:
        return f"BatchProgress(done={self.done}, total={self.total}, succeeded={self.succeeded}, failed={self.failed})"


ProgressCallback = Callable[[BatchProgress], Any]


_SEND_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("send_deadline", default=None)
"""The deadline of the ``attempt`` running in this task (see ``ChannelConnector._deadline_passed``)."""

_BATCH_PACE_KEY = "batch"
"""The rate-limit key of a batch's own limiter: ``messages_per_second`` paces the whole batch."""


class ProviderIdLookup(Protocol):
    """Where a connector finds the provider's id of a message it sent, by our id, across processes.

    A persistent send ledger is one (``campaigns.LedgerProviderIds``): a campaign's dispatcher
    attaches it to its connector, and ``messaging status`` attaches the configured ledger.
    """

    async def provider_id(self, message_id: str) -> str | None:
        """The provider's id of the message ``message_id`` names, or None when unknown."""
        ...


class ChannelConnector(abc.ABC):
    """Base class of every connector: lifecycle, guards, validation, hooks, batch sending.

    Subclasses declare ``channel_name``, ``master_schema`` and ``schema_variants`` and implement
    the protected provider methods. Use a connector as an async context manager::

        async with registry.create_connector(spec) as connector:
            result = await connector.send_message(message)
    """

    channel_name: ClassVar[str]
    """The channel's registry name (``twilio_sms``)."""
    channel_aliases: ClassVar[tuple[str, ...]] = ()
    """Other names that mean this channel wherever a channel is named (configurations, ``messaging
    emulator twilio``): short or former names (``("twilio",)``). ``messaging channels`` shows them."""
    master_schema: ClassVar[ChannelSchema]
    """The full schema; every variant is a restriction of it."""
    schema_variants: ClassVar[Mapping[str, ChannelSchema]] = {}
    """Named variants (``{"SimpleSms": ...}``); the master schema is also listed under its own name."""
    default_batch_concurrency: ClassVar[int] = 16

    def __init__(
        self,
        schema: ChannelSchema,
        settings: ConnectionSettings | Mapping[str, Any] | None = None,
        *,
        plugins: PluginHost | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(schema, ChannelSchema):
            raise TypeError(f"schema must be a ChannelSchema, not {type(schema).__name__}")
        self.schema = schema
        if isinstance(settings, ConnectionSettings):
            # The schema knows which parameters are secrets even when the caller's settings do not.
            for secret in schema.sensitive_parameters & set(settings):
                settings.add_parameter(secret, settings[secret], sensitive=True)
            self.settings = settings
        else:
            self.settings = ConnectionSettings(settings, sensitive=schema.sensitive_parameters)
        self.name: str = name or str(getattr(self, "channel_name", type(self).__name__))
        self.plugins = plugins if plugins is not None else PluginHost()
        self.parameters: dict[str, Any] = {}
        """Resolved, validated parameter values (set by ``initialize``)."""
        self.provider_ids: ProviderIdLookup | None = None
        """Where ``get_message_status`` and the like find a provider id by our id when this process
        does not remember it (a send from another process, before a restart); None: only this one's."""
        self._state = ConnectorState.UNINITIALIZED
        self._started_at: float | None = None
        self._state_lock = asyncio.Lock()
        self._capability_bits = schema.capabilities.value
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # Compiled once: validation runs per message on the hot path.
        self._message_validator = validator_for(schema.message_json_schema())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.schema.display_name!r} {self._state.value}>"

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def state(self) -> ConnectorState:
        return self._state

    @property
    def is_ready(self) -> bool:
        return self._state is ConnectorState.READY

    async def _transition(self, new: ConnectorState) -> None:
        previous = self._state
        if new not in _TRANSITIONS[previous]:
            raise ConnectorStateError(f"{self.name}: cannot go from {previous.value} to {new.value}")
        self._state = new
        log.debug("connector %s: %s -> %s", self.name, previous.value, new.value)
        await self.plugins.connector_state_changed(self, previous, new)

    async def initialize(self) -> ConnectorResult[bool]:
        """Check the settings and acquire resources; no message moves before this succeeds.

        Returns a failed result (``MISSING_CREDENTIALS``, ``INVALID_CONNECTION_SETTINGS``,
        ``INITIALIZATION_ERROR``) rather than raising; raises ``ConnectorStateError`` when the
        connector was shut down.
        """
        async with self._state_lock:
            if self._state is ConnectorState.READY:
                return ConnectorResult.failure(
                    ConnectorErrorCodes.ALREADY_INITIALIZED, f"{self.name} is already initialized"
                )
            if self._state in (ConnectorState.SHUTTING_DOWN, ConnectorState.SHUTDOWN):
                raise ConnectorStateError(f"{self.name} was shut down; create a new connector")
            await self._transition(ConnectorState.INITIALIZING)
            try:
                result = self._resolve_settings()
            except BaseException:
                # A plugin error (an async resolve_parameter) raises, but never leaves INITIALIZING behind.
                await self._transition(ConnectorState.ERROR)
                raise
            if result.is_success:
                try:
                    result = await self._initialize()
                except asyncio.CancelledError:
                    await self._transition(ConnectorState.ERROR)
                    raise
                except Exception as err:
                    log.exception("connector %s: initialization failed", self.name)
                    result = ConnectorResult.failure(
                        ConnectorErrorCodes.INITIALIZATION_ERROR,
                        f"initialization failed: {type(err).__name__}: {err}",
                    )
            if result.is_success:
                self._started_at = time.monotonic()
                await self._transition(ConnectorState.READY)
            else:
                await self._transition(ConnectorState.ERROR)
            return result

    def resolve_settings(self) -> ConnectorResult[bool]:
        """Resolve and check the settings without acquiring anything (what ``initialize()`` does first).

        For dry runs (``messaging send --dry-run``): on success ``self.parameters`` holds the
        resolved values and ``preview_message`` can show the real request, with no session opened
        and no hook fired. Fails as ``initialize()`` would (``MISSING_CREDENTIALS``,
        ``INVALID_CONNECTION_SETTINGS``); raises ``ConnectorStateError`` once initialized or shut down.
        """
        if self._state not in (ConnectorState.UNINITIALIZED, ConnectorState.ERROR):
            state = self._state.value
            raise ConnectorStateError(f"{self.name} is {state}; resolve_settings() comes before initialize()")
        return self._resolve_settings()

    def _resolve_settings(self) -> ConnectorResult[bool]:
        try:
            resolved = self.settings.resolved(self.schema, self.plugins.resolve_parameter)
        except ConfigurationError as err:
            return ConnectorResult.failure(ConnectorErrorCodes.INVALID_CONNECTION_SETTINGS, str(err))
        issues = ConnectionSettings(resolved).issues(self.schema, given=self.settings)
        if issues:
            missing = [i for i in issues if i.code == "REQUIRED" and self._is_credential(i.path)]
            code = (
                ConnectorErrorCodes.MISSING_CREDENTIALS if missing else ConnectorErrorCodes.INVALID_CONNECTION_SETTINGS
            )
            what = "missing credentials" if missing else "invalid connection settings"
            return ConnectorResult.failure(code, f"{self.name}: {what}: " + "; ".join(map(str, issues)), issues=issues)
        self.parameters = resolved
        return ConnectorResult.success(True)

    def _is_credential(self, path: str) -> bool:
        name = path.rsplit(".", 1)[-1]
        spec = self.schema.parameter_spec(name)
        return spec is not None and (spec.sensitive or name in self.credential_parameters)

    shutdown_grace: ClassVar[float] = 30.0
    """Seconds ``shutdown()`` waits for sends in flight before releasing resources anyway."""
    credential_parameters: ClassVar[frozenset[str]] = frozenset()
    """Parameter names whose absence is reported as ``MISSING_CREDENTIALS``."""

    async def shutdown(self) -> None:
        """Release resources. Idempotent; the connector cannot be used afterwards."""
        async with self._state_lock:
            if self._state in (ConnectorState.SHUTDOWN, ConnectorState.SHUTTING_DOWN):
                return
            await self._transition(ConnectorState.SHUTTING_DOWN)
            try:
                # New sends are refused from here on; let those in flight finish with their true
                # outcome before the resources they use go away.
                if self._in_flight:
                    try:
                        await asyncio.wait_for(self._idle.wait(), self.shutdown_grace)
                    except TimeoutError:
                        log.warning(
                            "connector %s: %d send(s) still in flight after %.1f s; closing anyway",
                            self.name,
                            self._in_flight,
                            self.shutdown_grace,
                        )
                await self._shutdown()
            except Exception:
                log.exception("connector %s: error during shutdown (ignored)", self.name)
            finally:
                await self._transition(ConnectorState.SHUTDOWN)

    async def __aenter__(self) -> ChannelConnector:
        result = await self.initialize()
        if not result.is_success:
            await self.shutdown()
            result.unwrap()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    def require(self, capability: Capability) -> None:
        """Raise unless the schema has ``capability`` (``CapabilityNotSupportedError``) and the connector is ready.

        Every public operation calls it first; code that drives ``attempt`` itself (a dispatcher)
        calls it for the capability it relies on (``BULK_MESSAGING``) before any I/O.
        """
        # Integer test instead of Flag.__contains__: this runs on every send and every webhook.
        if capability.value & self._capability_bits != capability.value:
            raise CapabilityNotSupportedError(
                f"{self.name} ({self.schema.display_name}) does not support {capability.name}"
            )
        if self._state is not ConnectorState.READY:
            raise ConnectorStateError(f"{self.name} is {self._state.value}, not ready (call initialize())")

    # -- validation --------------------------------------------------------------------------------

    @final
    def validate_message(self, message: Message) -> list[ValidationIssue]:
        """Every problem of ``message`` for this connector: the schema's, the provider's, the plugins' policy.

        Providers add their own rules in ``_validate`` (called only when the schema's checks pass);
        this method is not overridden.
        """
        if not isinstance(message, Message):
            raise TypeError(f"expected a Message, not {type(message).__name__}")
        instance = converters.unstructure(message)
        if not self._message_validator.is_valid(instance):
            return self._message_validator.issues(instance)
        issues = self._validate(message)
        if not issues and self.plugins.has_observers("validate_message"):
            issues = self.plugins.validate_message(self, message)
        return issues

    def _validation_failure(self, issues: list[ValidationIssue]) -> ConnectorResult[Any]:
        # When every issue is about one endpoint, say so with the specific code (same issues listed).
        code = ConnectorErrorCodes.MESSAGE_VALIDATION_FAILED
        if all(i.path.startswith("$.receiver") for i in issues):
            code = ConnectorErrorCodes.INVALID_RECIPIENT
        elif all(i.path.startswith("$.sender") for i in issues):
            code = ConnectorErrorCodes.INVALID_SENDER
        summary = "; ".join(str(i) for i in issues[:5]) + (f"; and {len(issues) - 5} more" if len(issues) > 5 else "")
        return ConnectorResult.failure(code, f"message is invalid: {summary}", issues=issues)

    # -- sending -----------------------------------------------------------------------------------

    async def send_message(self, message: Message) -> ConnectorResult[SendResult]:
        """Validate and send one message; the outcome is a result, never an exception.

        Capability check, ``attempt``, then the ``message_sent`` hook.
        """
        self.require(Capability.SEND_MESSAGES)
        result = await self.attempt(message)
        await self._report_sent(message, result)
        return result

    async def attempt(self, message: Message, *, deadline: float | None = None) -> ConnectorResult[SendResult]:
        """Validate ``message`` and make the provider call: the send pipeline's seam.

        No capability check and no hook: the caller (``send_message``, a batch, the campaign
        pipeline) checks what it needs and fires ``message_sent`` once, after it has decided
        what the result means. Refuses (``NOT_ATTEMPTED``) once the connector is no longer
        ready; an unexpected error inside the provider's code is ``SEND_MESSAGE_ERROR``, and
        the message may have been sent.

        :param deadline: a ``time.monotonic()`` instant after which no request may be written
            (the campaign pipeline's claim): checked right before the provider call, and
            available to the provider through ``_deadline_passed()`` for a last check right
            before it writes (after its own queueing).
        """
        result = await self._validate_and_send(message, deadline)
        telemetry.send_attempted(self, result)
        return result

    async def _validate_and_send(self, message: Message, deadline: float | None) -> ConnectorResult[SendResult]:
        issues = self.validate_message(message)
        if issues:
            return self._validation_failure(issues)
        if self._state is not ConnectorState.READY:
            # A batch still running when shutdown() began: the message was not sent, and may be.
            return not_attempted(f"connector is {self._state.value}")
        if deadline is not None and time.monotonic() > deadline:
            return not_attempted("the claim's deadline passed")
        self._in_flight += 1
        self._idle.clear()
        token = _SEND_DEADLINE.set(deadline)
        try:
            return await telemetry.provider_call(self, self._send_message(message))
        except Exception as err:  # CancelledError is a BaseException: it propagates
            log.exception("connector %s: unexpected error while sending %s", self.name, message.id)
            return ConnectorResult.failure(
                ConnectorErrorCodes.SEND_MESSAGE_ERROR,
                f"unexpected {type(err).__name__} while sending; the message may or may not have been sent",
                outcome=FailureOutcome.MAY_HAVE_BEEN_SENT,
            )
        finally:
            _SEND_DEADLINE.reset(token)
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    def _deadline_passed(self) -> bool:
        """Whether the current ``attempt`` has a deadline that has passed: call it right before writing a request.

        A provider that queues a call (a concurrency limit, a retry after a backoff) checks here
        last, and reports ``not_attempted`` instead of writing: the campaign pipeline's guarantee
        that no request leaves after its claim's deadline then holds up to the write itself.
        """
        deadline = _SEND_DEADLINE.get()
        return deadline is not None and time.monotonic() > deadline

    async def _report_sent(self, message: Message, result: ConnectorResult[SendResult]) -> None:
        if self.plugins.has_observers("message_sent"):
            await self.plugins.message_sent(self, message, result)

    async def send_batch(
        self,
        batch: MessageStream,
        *,
        concurrency: int | None = None,
        messages_per_second: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: asyncio.Event | None = None,
    ) -> BatchSendResult:
        """Send many messages with bounded concurrency; one result per message, in input order.

        A message that fails (invalid, refused by the provider) never aborts the others. Setting
        ``cancel`` stops new sends: messages in flight finish and keep their true outcome, the
        rest get ``NOT_ATTEMPTED`` (safe to send again). Accepts a ``MessageBatch`` or any
        (async) iterable of messages; use ``send_stream`` to consume results as they come
        without keeping them all in memory.
        """
        self.require(Capability.BULK_MESSAGING)
        batch_id = batch.id if isinstance(batch, MessageBatch) else new_message_id()
        if isinstance(batch, MessageBatch):
            ids = [m.id for m in batch.messages]
            if len(set(ids)) != len(ids):
                raise ValueError(f"batch {batch_id}: message ids must be unique within a batch")
        indexed: list[tuple[int, str, ConnectorResult[SendResult]]] = []

        def collect(index: int, message: Message, result: ConnectorResult[SendResult]) -> None:
            indexed.append((index, message.id, result))

        await self._run_batch(batch, collect, concurrency, messages_per_second, on_progress, cancel)
        indexed.sort(key=lambda item: item[0])
        results: dict[str, ConnectorResult[SendResult]] = {}
        for _, message_id, result in indexed:
            if message_id in results:
                log.warning("batch %s: duplicate message id %s in stream; kept the first result", batch_id, message_id)
                continue
            results[message_id] = result
        return BatchSendResult(batch_id, results)

    async def send_stream(
        self,
        messages: MessageStream,
        *,
        concurrency: int | None = None,
        messages_per_second: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: asyncio.Event | None = None,
    ) -> AsyncIterator[tuple[Message, ConnectorResult[SendResult]]]:
        """Like ``send_batch`` but yields ``(message, result)`` as each completes; memory stays flat."""
        self.require(Capability.BULK_MESSAGING)
        width = concurrency or self.batch_concurrency()
        out: asyncio.Queue[tuple[Message, ConnectorResult[SendResult]] | None] = asyncio.Queue(maxsize=width * 2)

        async def sink(index: int, message: Message, result: ConnectorResult[SendResult]) -> None:
            await out.put((message, result))

        async def run() -> None:
            try:
                await self._run_batch(messages, sink, concurrency, messages_per_second, on_progress, cancel)
            finally:
                await out.put(None)

        runner = asyncio.create_task(run())
        try:
            while (item := await out.get()) is not None:
                yield item
            await runner
        finally:
            if not runner.done():
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)

    async def _run_batch(
        self,
        messages: MessageStream,
        sink: Callable[[int, Message, ConnectorResult[SendResult]], Awaitable[None] | None],
        concurrency: int | None,
        messages_per_second: float | None,
        on_progress: ProgressCallback | None,
        cancel: asyncio.Event | None,
    ) -> None:
        """The batch on ``width`` workers: pace (one schedule for the whole batch) → ``attempt`` → hook → sink.

        Nothing is recorded: a batch is fire-and-report. Campaigns, which keep a ledger and retry
        or reconcile, run ``messaging_core.campaigns.SendPipeline`` on the same ``attempt``.
        """
        width = max(1, concurrency or self.batch_concurrency())
        rate = messages_per_second if messages_per_second is not None else self.batch_rate()
        limiter = MemoryRateLimiter(rate) if rate else None
        total = len(messages) if isinstance(messages, MessageBatch | list | tuple) else None
        progress = BatchProgress(total)

        async def send(message: Message) -> ConnectorResult[SendResult]:
            if limiter is not None:
                wait = await limiter.reserve(_BATCH_PACE_KEY, self.send_cost(message))
                telemetry.paced(self, wait or 0.0)
                if wait:
                    await asyncio.sleep(wait)
            if cancel is not None and cancel.is_set():
                return not_attempted("batch cancelled")
            result = await self.attempt(message)
            await self._report_sent(message, result)
            return result

        async def one(index: int, message: Message) -> None:
            if cancel is not None and cancel.is_set():
                result = not_attempted("batch cancelled")
            elif not isinstance(message, Message):
                raise TypeError(f"batch item {index} is a {type(message).__name__}, not a Message")
            else:
                result = await send(message)
            pending = sink(index, message, result)
            if pending is not None:
                await pending
            progress.done += 1
            if result.error is None:
                progress.succeeded += 1
            else:
                progress.failed += 1
            if on_progress is not None:
                on_progress(progress)

        await drive(messages, one, width)

    # -- override, don't call: the provider seam ---------------------------------------------------
    #
    # Providers override these to describe themselves; the framework calls them.

    def batch_concurrency(self) -> int:
        """How many sends a batch keeps in flight by default (providers may read a setting)."""
        return self.default_batch_concurrency

    def batch_rate(self) -> float | None:
        """Default messages-per-second limit of a batch (None: unlimited)."""
        return None

    def preview_message(self, message: Message) -> dict[str, Any]:
        """What sending ``message`` would do, without doing it (``messaging send --dry-run``).

        Providers override it to show the request they would make (secrets left out).
        """
        return {"message": converters.unstructure(message)}

    def webhook_response(self, kind: str) -> tuple[int, str | None, bytes]:
        """What the webhook host answers after handling a webhook: ``(status, content type, body)``.

        ``kind`` is ``"messages"`` or ``"status"``. Providers override it when they expect a
        particular answer (Twilio: an empty TwiML document for inbound messages).
        """
        return (200, None, b"") if kind == "messages" else (204, None, b"")

    def opt_out_change(self, message: Message) -> bool | None:
        """Whether an inbound ``message`` opts its sender out (True: a STOP) or back in (False: a
        START) of everything sent to them, or None (neither, or the channel cannot tell).

        The webhook service updates the suppression list with it (``SuppressionList``).
        """
        return None

    def webhook_reply(self, reply: Content) -> tuple[int, str | None, bytes] | None:
        """The answer to an inbound-message webhook that carries ``reply`` back to the sender, or
        None when the channel cannot reply that way (the default: send a message instead).

        The webhook service calls it with what a ``reply_to_message`` hook returned.
        """
        return None

    def webhook_idempotency_key(self, source: WebhookRequest) -> str | None:
        """A key identifying redeliveries of the same webhook (a provider's idempotency header), or None."""
        return None

    def rate_limit_key(self, message: Message) -> str:
        """The key a shared rate limiter paces ``message`` under: its sender (default: the address).

        Providers refine it (a Messaging Service instead of the From number).
        """
        sender = message.sender
        return sender.address if sender is not None else self.name

    def send_cost(self, message: Message) -> int:
        """How many units of the provider's rate limit ``message`` uses (SMS: segments); default 1."""
        return 1

    def send_timeout(self) -> float | None:
        """The longest a provider call may take (the send pipeline's lease must exceed it); None: unknown."""
        return None

    async def find_sent(self, message: Message, since: datetime) -> list[str] | None:
        """Provider ids of messages created since ``since`` that could be ``message`` (reconciliation probe).

        Used for messages in doubt (``in_doubt = "probe_then_resend"``): one candidate proves
        the message was created; none (twice) allows a resend. Return None when the provider
        cannot tell (no list API, body not retained): the message is then held.
        """
        return None

    # -- status and inbound --------------------------------------------------------------------------

    async def get_message_status(self, message_id: str) -> ConnectorResult[StatusUpdatesResult]:
        """The provider's current status of a message (by our id or the provider's id)."""
        self.require(Capability.MESSAGE_STATUS_QUERY)
        if not isinstance(message_id, str) or not message_id:
            raise TypeError("message_id must be a non-empty string")
        try:
            return await self._get_message_status(message_id)
        except Exception as err:
            return self._unexpected(err, ConnectorErrorCodes.STATUS_QUERY_ERROR, "status query")

    async def cancel_scheduled(self, message_id: str) -> ConnectorResult[StatusUpdate]:
        """Cancel a scheduled message (by our id or the provider's) before its send time.

        Needs ``SCHEDULED_SENDING``. Answers the message's new status (``CANCELLED``), or
        ``NOT_CANCELLABLE`` when it is no longer scheduled.
        """
        self.require(Capability.SCHEDULED_SENDING)
        if not isinstance(message_id, str) or not message_id:
            raise TypeError("message_id must be a non-empty string")
        try:
            return await self._cancel_scheduled(message_id)
        except Exception as err:
            return self._unexpected(err, ConnectorErrorCodes.CANCEL_ERROR, "cancel")

    async def receive_messages(self, source: WebhookRequest) -> ConnectorResult[ReceiveResult]:
        """Verify and parse an inbound-message webhook; no hook fires.

        Pure with respect to hooks: recording and dispatching (``message_received``) are the
        webhook service's (``messaging_core.webhooks.WebhookService``), so that a refused,
        duplicate or failed webhook never reaches an observer. A connector that checks signatures
        answers a refusal (``INVALID_SIGNATURE``, ``UNEXPECTED_ACCOUNT``) whenever it cannot prove
        the request is the provider's.
        """
        self.require(Capability.RECEIVE_MESSAGES)
        if not isinstance(source, WebhookRequest):
            raise TypeError(f"expected a WebhookRequest, not {type(source).__name__}")
        try:
            return await self._receive_messages(source)
        except Exception as err:  # CancelledError is a BaseException: it propagates
            return self._unexpected(err, ConnectorErrorCodes.RECEIVE_ERROR, "receive")

    async def receive_message_status(self, source: WebhookRequest) -> ConnectorResult[StatusUpdate]:
        """Verify and parse a status callback; no hook fires (see ``receive_messages``)."""
        self.require(Capability.HANDLE_MESSAGE_STATE)
        if not isinstance(source, WebhookRequest):
            raise TypeError(f"expected a WebhookRequest, not {type(source).__name__}")
        try:
            return await self._receive_message_status(source)
        except Exception as err:
            return self._unexpected(err, ConnectorErrorCodes.RECEIVE_ERROR, "status callback")

    async def test_connection(self) -> ConnectorResult[bool]:
        """Check that the provider answers with these credentials."""
        if self._state is not ConnectorState.READY:
            raise ConnectorStateError(f"{self.name} is {self._state.value}, not ready (call initialize())")
        try:
            return await self._test_connection()
        except Exception as err:
            return self._unexpected(err, ConnectorErrorCodes.CONNECTION_TEST_FAILED, "connection test")

    async def get_health(self) -> ConnectorHealth:
        """State, uptime and (when supported and ready) the provider's own health check. Always allowed."""
        uptime = (
            timedelta(seconds=time.monotonic() - self._started_at)
            if self._started_at and self.is_ready
            else timedelta(0)
        )
        issues: list[str] = []
        metrics: dict[str, Any] = {}
        if not self.is_ready:
            issues.append(f"connector is {self._state.value}")
        elif Capability.HEALTH_CHECK in self.schema.capabilities:
            try:
                found_issues, found_metrics = await self._check_health()
                issues.extend(found_issues)
                metrics.update(found_metrics)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                issues.append(f"health check failed: {type(err).__name__}")
        return ConnectorHealth(
            state=self._state.value,
            is_healthy=self.is_ready and not issues,
            last_check=utc_now(),
            uptime=uptime,
            issues=tuple(issues),
            metrics=metrics,
        )

    def _unexpected(self, err: Exception, code: str, what: str) -> ConnectorResult[Any]:
        """A provider method raised (a bug, not an outcome): log it, answer with a failed result."""
        log.error("connector %s: unexpected error in %s", self.name, what, exc_info=err)
        return ConnectorResult.failure(code, f"unexpected {type(err).__name__} in {what}")

    # -- provider seam -------------------------------------------------------------------------------

    async def _initialize(self) -> ConnectorResult[bool]:
        """Acquire resources (sessions, pools). ``self.parameters`` holds the validated settings."""
        return ConnectorResult.success(True)

    def _validate(self, message: Message) -> list[ValidationIssue]:
        """The provider's own rules, beyond the schema's (called once the schema's checks pass).

        Rules that depend on the settings or span parts (a body limit over joined text parts).
        Runs before any I/O, also before ``initialize()`` (``self.parameters`` may be empty then).
        """
        return []

    @abc.abstractmethod
    async def _send_message(self, message: Message) -> ConnectorResult[SendResult]:
        """Send one validated message."""

    async def _get_message_status(self, message_id: str) -> ConnectorResult[StatusUpdatesResult]:
        raise NotImplementedError

    async def _receive_messages(self, source: WebhookRequest) -> ConnectorResult[ReceiveResult]:
        raise NotImplementedError

    async def _cancel_scheduled(self, message_id: str) -> ConnectorResult[StatusUpdate]:
        raise NotImplementedError

    async def _receive_message_status(self, source: WebhookRequest) -> ConnectorResult[StatusUpdate]:
        raise NotImplementedError

    async def _test_connection(self) -> ConnectorResult[bool]:
        return ConnectorResult.success(True)

    async def _check_health(self) -> tuple[list[str], dict[str, Any]]:
        """Provider health: (issues, metrics)."""
        return [], {}

    async def _shutdown(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release what ``_initialize`` acquired."""
