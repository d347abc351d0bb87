"""The connector conformance suite: the promises every ``ChannelConnector`` keeps.

Inherit ``ConnectorConformance`` in a test module of your plugin and provide a connector factory
and two messages; the inherited tests check the lifecycle, capability gating, validation before
any I/O, batch accounting and secrets redaction. See ``docs/writing-a-plugin.md``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Literal, Protocol, TypeVar, cast

import attrs
import pytest

from messaging_core import (
    BatchProgress,
    BatchSendResult,
    Capability,
    CapabilityNotSupportedError,
    ChannelConnector,
    ConfigurationError,
    ConnectorErrorCodes,
    ConnectorHealth,
    ConnectorResult,
    ConnectorState,
    ConnectorStateError,
    Message,
    MessageBatch,
    SendResult,
    ValidationIssue,
)
from messaging_core.testing._recorder import HookRecorder, find_secrets
from messaging_core.webhook_request import WebhookRequest
from messaging_core.webhooks import WebhookService

__all__ = ["VALIDATION_ERROR_CODES", "ConnectorConformance", "ConnectorFactory"]

F = TypeVar("F", bound=Callable[..., Any])

try:  # async fixtures and tests that also run in pytest-asyncio's strict mode
    import pytest_asyncio

    _FIXTURE: Callable[[Any], Any] = pytest_asyncio.fixture
    _ASYNCIO_MARK: pytest.MarkDecorator | None = pytest.mark.asyncio
except ImportError:  # pragma: no cover - another async plugin (anyio, auto mode) runs them
    _FIXTURE = pytest.fixture
    _ASYNCIO_MARK = None


def _async_fixture(function: F) -> F:
    """An async fixture, for pytest-asyncio in auto and strict mode alike."""
    return cast(F, _FIXTURE(function))


def _asyncio(function: F) -> F:
    """Mark an async test for pytest-asyncio (needed in strict mode, harmless in auto mode)."""
    return function if _ASYNCIO_MARK is None else cast(F, _ASYNCIO_MARK(function))


def _state(connector: ChannelConnector) -> ConnectorState:
    # A call, so that type checkers do not keep a narrowed state across awaits.
    return connector.state


VALIDATION_ERROR_CODES = frozenset(
    {
        ConnectorErrorCodes.MESSAGE_VALIDATION_FAILED,
        ConnectorErrorCodes.INVALID_RECIPIENT,
        ConnectorErrorCodes.INVALID_SENDER,
    }
)
"""The codes of a message refused before any I/O."""


class ConnectorFactory(Protocol):
    """``await factory(variant, **parameter_overrides)``: a new, uninitialized connector.

    ``variant`` names one of the connector class's ``schema_variants`` (None: the master schema);
    the overrides replace or add connection parameters.
    """

    def __call__(self, variant: str | None = None, /, **overrides: Any) -> Awaitable[ChannelConnector]: ...


Operation = Callable[[ChannelConnector], Awaitable[Any]]


class _SendSpy:
    """Counts calls of a connector's provider seam (``_send_message``): every send that reached I/O."""

    def __init__(self, connector: ChannelConnector) -> None:
        self.messages: list[Message] = []
        original = connector._send_message

        async def spy(message: Message) -> ConnectorResult[SendResult]:
            self.messages.append(message)
            return await original(message)

        # An instance attribute shadows the method for this connector only.
        setattr(connector, "_send_message", spy)  # noqa: B010 - mypy refuses assigning to a method

    @property
    def count(self) -> int:
        return len(self.messages)


def _with_id(message: Message, message_id: str) -> Message:
    return attrs.evolve(message, id=message_id)


async def _assert_raises(
    expected: type[Exception], name: str, operation: Operation, connector: ChannelConnector
) -> None:
    """``operation(connector)`` raises ``expected``; the failure names the operation and the state."""
    where = f"{name}() on a {connector.state.value} connector ({connector.schema.display_name!r})"
    try:
        await operation(connector)
    except expected:
        return
    except Exception as err:
        raise AssertionError(f"{where} raised {type(err).__name__}, not {expected.__name__}") from err
    raise AssertionError(f"{where} did not raise {expected.__name__}")


def _texts_of(where: str, value: Any) -> list[tuple[str, str]]:
    """Every rendering of a value a user may see: repr, str, and an error's message and issues."""
    texts = [(f"repr({where})", repr(value)), (f"str({where})", str(value))]
    if isinstance(value, ConnectorResult) and value.error is not None:
        texts.append((f"{where}.error.message", value.error.message))
        texts.extend((f"{where}.error.issues[{i}]", str(issue)) for i, issue in enumerate(value.error.issues))
        texts.append((f"{where}.unwrap() exception", str(value.error.exception())))
    return texts


class ConnectorConformance:
    """Base class of a connector's conformance tests (pytest style).

    Provide, in the subclass:

    - an async fixture ``connector_factory`` returning a ``ConnectorFactory``: an async callable
      ``(variant_name | None, **parameter_overrides)`` that builds a new, *uninitialized*
      connector whose ``initialize()`` succeeds (against an emulator, say);
    - ``valid_message()``: a message the connector sends successfully (it is sent several times,
      with fresh ids);
    - ``invalid_message()``: a message that must fail validation before any I/O;
    - ``sensitive_values``: the secrets the factory configures; they must never show in reprs,
      logs, error messages or results (sensitive parameters of the schema are added automatically).

    Optionally:

    - ``sent_count(connector)`` or ``async count_remote_messages(connector)``: how many messages
      the provider has accepted so far, to prove on the provider's side that nothing was sent;
      the suite always checks, in addition, that ``_send_message`` was never called;
    - ``failing_message()``: a valid message the provider refuses (exercises error paths).

    Connector classes must keep ``ChannelConnector``'s constructor ``(schema, settings, *,
    plugins, name)``: the suite builds connectors on derived schemas to check capability gating.
    A test that needs a capability the schema lacks is skipped, and says which; nothing else is
    skipped.
    """

    sensitive_values: tuple[str, ...] = ()
    """Values that must never appear in reprs, logs, errors or results (at least 6 characters).

    A class attribute, or set on ``self`` by the ``connector_factory`` fixture for generated ones.
    """

    # -- what the plugin author provides -----------------------------------------------------------

    @pytest.fixture
    def connector_factory(self) -> ConnectorFactory:
        pytest.fail(
            f"{type(self).__name__}: define an async fixture `connector_factory` returning "
            "an async callable (variant | None, **overrides) -> uninitialized ChannelConnector"
        )

    def valid_message(self) -> Message:
        """A message the connector sends successfully."""
        raise NotImplementedError(f"{type(self).__name__} must define valid_message()")

    def invalid_message(self) -> Message:
        """A message that fails validation before any I/O."""
        raise NotImplementedError(f"{type(self).__name__} must define invalid_message()")

    def failing_message(self) -> Message | None:
        """A valid message the provider refuses, or None."""
        return None

    def sent_count(self, connector: ChannelConnector) -> int | None:
        """How many messages the provider has accepted so far, or None when unknown."""
        return None

    async def count_remote_messages(self, connector: ChannelConnector) -> int | None:
        """Like ``sent_count``, for counts that need I/O (an emulator's API); None when unknown."""
        return None

    # Receiving: required of a connector whose master schema declares RECEIVE_MESSAGES or
    # HANDLE_MESSAGE_STATE (may be ``async def``).

    webhooks_signed: bool = True
    """Whether the provider signs its webhooks; then a refused one must be refused as forged."""

    def inbound_webhook(self, connector: ChannelConnector) -> WebhookRequest | Awaitable[WebhookRequest]:
        """A genuine inbound-message webhook for ``connector``, as the provider sends it (signed)."""
        raise NotImplementedError(
            f"{type(self).__name__}: the connector declares RECEIVE_MESSAGES: define inbound_webhook(connector) "
            "returning a WebhookRequest the provider would send (signed, with its public URL)"
        )

    def forged_webhook(self, connector: ChannelConnector) -> WebhookRequest | Awaitable[WebhookRequest]:
        """An inbound-message webhook the connector must refuse: a wrong signature (``webhooks_signed``),
        else a payload it cannot accept."""
        raise NotImplementedError(
            f"{type(self).__name__}: the connector declares RECEIVE_MESSAGES: define forged_webhook(connector) "
            "returning the same webhook with a wrong signature"
        )

    def status_webhook(
        self, connector: ChannelConnector, sent: SendResult
    ) -> WebhookRequest | Awaitable[WebhookRequest]:
        """A genuine status callback for the message ``sent`` (the result of sending ``valid_message()``)."""
        raise NotImplementedError(
            f"{type(self).__name__}: the connector declares HANDLE_MESSAGE_STATE: define "
            "status_webhook(connector, sent) returning the provider's status callback for that message"
        )

    # -- plumbing ------------------------------------------------------------------------------------

    @_async_fixture
    async def conformance_factory(self, connector_factory: ConnectorFactory) -> AsyncIterator[ConnectorFactory]:
        """``connector_factory``, checked, with every connector shut down after the test."""
        made: list[ChannelConnector] = []

        async def make(variant: str | None = None, /, **overrides: Any) -> ChannelConnector:
            connector = await connector_factory(variant, **overrides)
            assert isinstance(connector, ChannelConnector), "connector_factory must return a ChannelConnector"
            assert _state(connector) is ConnectorState.UNINITIALIZED, "connector_factory must not initialize"
            made.append(connector)
            return connector

        try:
            yield make
        finally:
            for connector in made:
                await connector.shutdown()

    async def _ready(self, make: ConnectorFactory, variant: str | None = None) -> ChannelConnector:
        connector = await make(variant)
        result = await connector.initialize()
        assert result.is_success, f"initialize() failed: {result.error}"
        return connector

    async def _provider_counts(self, connector: ChannelConnector) -> tuple[int | None, int | None]:
        return self.sent_count(connector), await self.count_remote_messages(connector)

    def _require_capability(self, connector: ChannelConnector, capability: Capability) -> None:
        if capability not in connector.schema.capabilities:
            pytest.skip(f"the schema {connector.schema.display_name!r} lacks {capability.name}")

    def _operations(self) -> dict[Capability, list[tuple[str, Operation]]]:
        """The operations each capability gates, with harmless arguments."""
        message = self.valid_message()

        async def first_of_stream(connector: ChannelConnector) -> Any:
            stream = cast("AsyncGenerator[Any, None]", connector.send_stream([message]))
            try:
                return await anext(stream)
            finally:
                await stream.aclose()

        return {
            Capability.SEND_MESSAGES: [("send_message", lambda c: c.send_message(message))],
            Capability.BULK_MESSAGING: [
                ("send_batch", lambda c: c.send_batch([message])),
                ("send_stream", first_of_stream),
            ],
            Capability.MESSAGE_STATUS_QUERY: [
                ("get_message_status", lambda c: c.get_message_status("conformance-unknown-id"))
            ],
            Capability.RECEIVE_MESSAGES: [
                ("receive_messages", lambda c: c.receive_messages(WebhookRequest.from_json({})))
            ],
            Capability.HANDLE_MESSAGE_STATE: [
                ("receive_message_status", lambda c: c.receive_message_status(WebhookRequest.from_json({})))
            ],
        }

    async def _assert_guarded(self, connector: ChannelConnector, *, supported_error: type[Exception]) -> None:
        """Every operation raises: ``CapabilityNotSupportedError`` when excluded, else ``supported_error``."""
        for capability, operations in self._operations().items():
            expected = supported_error if capability in connector.schema.capabilities else CapabilityNotSupportedError
            for name, operation in operations:
                await _assert_raises(expected, name, operation, connector)
        await _assert_raises(supported_error, "test_connection", lambda c: c.test_connection(), connector)

    def _variants(self, connector: ChannelConnector) -> list[str | None]:
        return [None, *type(connector).schema_variants]

    # -- lifecycle -----------------------------------------------------------------------------------

    @_asyncio
    async def test_lifecycle_reaches_ready_and_shutdown(self, conformance_factory: ConnectorFactory) -> None:
        connector = await conformance_factory()
        recorder = HookRecorder()
        connector.plugins.register(recorder)
        try:
            assert _state(connector) is ConnectorState.UNINITIALIZED
            result = await connector.initialize()
            assert result.is_success, f"initialize() failed: {result.error}"
            assert result.value is True
            assert _state(connector) is ConnectorState.READY
            assert connector.is_ready
            await connector.shutdown()
            assert _state(connector) is ConnectorState.SHUTDOWN
        finally:
            connector.plugins.unregister(recorder)
        assert recorder.transitions(connector) == [
            (ConnectorState.UNINITIALIZED, ConnectorState.INITIALIZING),
            (ConnectorState.INITIALIZING, ConnectorState.READY),
            (ConnectorState.READY, ConnectorState.SHUTTING_DOWN),
            (ConnectorState.SHUTTING_DOWN, ConnectorState.SHUTDOWN),
        ]

    @_asyncio
    async def test_second_initialize_reports_already_initialized(self, conformance_factory: ConnectorFactory) -> None:
        connector = await self._ready(conformance_factory)
        again = await connector.initialize()
        assert again.error_code == ConnectorErrorCodes.ALREADY_INITIALIZED
        assert _state(connector) is ConnectorState.READY

    @_asyncio
    async def test_operations_before_initialize_raise(self, conformance_factory: ConnectorFactory) -> None:
        connector = await conformance_factory()
        await self._assert_guarded(connector, supported_error=ConnectorStateError)
        if Capability.SEND_MESSAGES in connector.schema.capabilities:
            # State is checked before the message is validated.
            with pytest.raises(ConnectorStateError):
                await connector.send_message(self.invalid_message())
        assert _state(connector) is ConnectorState.UNINITIALIZED

    @_asyncio
    async def test_shutdown_is_idempotent_and_final(self, conformance_factory: ConnectorFactory) -> None:
        connector = await self._ready(conformance_factory)
        await connector.shutdown()
        await connector.shutdown()
        assert _state(connector) is ConnectorState.SHUTDOWN
        await self._assert_guarded(connector, supported_error=ConnectorStateError)
        with pytest.raises(ConnectorStateError):
            await connector.initialize()
        assert _state(connector) is ConnectorState.SHUTDOWN

    @_asyncio
    async def test_shutdown_without_initialize(
        self, conformance_factory: ConnectorFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        connector = await conformance_factory()
        with caplog.at_level(logging.ERROR):
            await connector.shutdown()
        assert _state(connector) is ConnectorState.SHUTDOWN
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "shutdown() logged errors"
        with pytest.raises(ConnectorStateError):
            await connector.initialize()

    @_asyncio
    async def test_failed_initialize_enters_error_and_recovers(
        self, conformance_factory: ConnectorFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        connector = await conformance_factory()

        async def failing_initialize() -> ConnectorResult[bool]:
            raise RuntimeError("conformance: simulated initialization failure")

        setattr(connector, "_initialize", failing_initialize)  # noqa: B010 - shadow the method
        result = await connector.initialize()
        assert result.error_code == ConnectorErrorCodes.INITIALIZATION_ERROR
        assert _state(connector) is ConnectorState.ERROR
        await self._assert_guarded(connector, supported_error=ConnectorStateError)
        health = await connector.get_health()
        assert (health.state, health.is_healthy) == (ConnectorState.ERROR.value, False)

        delattr(connector, "_initialize")  # a retry from ERROR is allowed
        retried = await connector.initialize()
        assert retried.is_success, f"initialize() after a failed one failed: {retried.error}"
        assert _state(connector) is ConnectorState.READY

        other = await conformance_factory()
        setattr(other, "_initialize", failing_initialize)  # noqa: B010 - shadow the method
        await other.initialize()
        caplog.clear()
        await other.shutdown()  # _shutdown must cope with an _initialize that never completed
        assert _state(other) is ConnectorState.SHUTDOWN
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "shutdown() after ERROR logged errors"

    @_asyncio
    async def test_async_with_initializes_and_shuts_down(self, conformance_factory: ConnectorFactory) -> None:
        connector = await conformance_factory()
        async with connector as entered:
            assert entered is connector
            assert _state(connector) is ConnectorState.READY
        assert _state(connector) is ConnectorState.SHUTDOWN

        failing = await conformance_factory()
        with pytest.raises(KeyError):
            async with failing:
                raise KeyError("raised inside the block")
        assert _state(failing) is ConnectorState.SHUTDOWN

    @_asyncio
    async def test_get_health_in_every_state(self, conformance_factory: ConnectorFactory) -> None:
        connector = await conformance_factory()
        seen: list[ConnectorHealth] = [await connector.get_health()]
        await connector.initialize()
        seen.append(await connector.get_health())
        await connector.shutdown()
        seen.append(await connector.get_health())
        assert [h.state for h in seen] == ["uninitialized", "ready", "shutdown"]
        assert [h.is_healthy for h in seen] == [False, True, False], [h.issues for h in seen]

    # -- capabilities --------------------------------------------------------------------------------

    @_asyncio
    async def test_variants_gate_excluded_capabilities(self, conformance_factory: ConnectorFactory) -> None:
        probe = await conformance_factory()
        for variant in self._variants(probe):
            connector = await conformance_factory(variant)
            # Capability is checked before state: excluded operations raise even before initialize.
            await self._assert_guarded(connector, supported_error=ConnectorStateError)
            result = await connector.initialize()
            assert result.is_success, f"variant {variant!r}: initialize() failed: {result.error}"
            for capability, operations in self._operations().items():
                if capability not in connector.schema.capabilities:
                    for name, operation in operations:
                        await _assert_raises(CapabilityNotSupportedError, name, operation, connector)

    @_asyncio
    async def test_derived_schemas_gate_each_removed_capability(self, conformance_factory: ConnectorFactory) -> None:
        base = await conformance_factory()
        checked = []
        for capability, operations in self._operations().items():
            if capability not in base.schema.capabilities:
                continue
            schema = base.schema.derive(f"without {capability.name}", remove_capabilities=capability)
            connector = type(base)(schema, base.settings, plugins=base.plugins, name=base.name)
            try:
                result = await connector.initialize()
                assert result.is_success, f"initialize() without {capability.name} failed: {result.error}"
                for name, operation in operations:
                    await _assert_raises(CapabilityNotSupportedError, name, operation, connector)
                    checked.append(name)
            finally:
                await connector.shutdown()
        excluded = {c for c in self._operations() if c not in base.schema.capabilities}
        assert checked or excluded == set(self._operations()), "no gated operation was checked"

    @_asyncio
    async def test_supported_operations_return_results(self, conformance_factory: ConnectorFactory) -> None:
        connector = await self._ready(conformance_factory)
        for capability, operations in self._operations().items():
            if capability not in connector.schema.capabilities:
                continue
            for name, operation in operations:
                outcome = await operation(connector)
                if isinstance(outcome, BatchSendResult):
                    assert len(outcome.results) == 1, name
                    continue
                if isinstance(outcome, tuple):  # send_stream yields (message, result)
                    outcome = outcome[1]
                assert isinstance(outcome, ConnectorResult), f"{name} returned {type(outcome).__name__}"
        assert isinstance(await connector.test_connection(), ConnectorResult)

    @_asyncio
    async def test_declared_capabilities_are_implemented(self, conformance_factory: ConnectorFactory) -> None:
        """A capability the master schema declares has its provider method, not the base stub.

        The base ``_get_message_status``/``_receive_messages``/``_receive_message_status``/``_cancel_scheduled`` raise
        ``NotImplementedError``, which reaches callers only as a failed result at run time.
        """
        seams = {
            Capability.MESSAGE_STATUS_QUERY: "_get_message_status",
            Capability.RECEIVE_MESSAGES: "_receive_messages",
            Capability.HANDLE_MESSAGE_STATE: "_receive_message_status",
            Capability.SCHEDULED_SENDING: "_cancel_scheduled",
        }
        cls = type(await conformance_factory())
        missing = [
            f"{capability.name} needs {method}()"
            for capability, method in seams.items()
            if capability in cls.master_schema.capabilities
            and getattr(cls, method) is getattr(ChannelConnector, method)
        ]
        assert not missing, f"{cls.__name__} declares capabilities it does not implement: {'; '.join(missing)}"

    # -- validation before I/O -----------------------------------------------------------------------

    @_asyncio
    async def test_valid_message_is_sent(self, conformance_factory: ConnectorFactory) -> None:
        connector = await self._ready(conformance_factory)
        self._require_capability(connector, Capability.SEND_MESSAGES)
        message = self.valid_message()
        assert connector.validate_message(message) == [], "valid_message() does not validate"
        spy = _SendSpy(connector)
        before = await self._provider_counts(connector)
        result = await connector.send_message(message)
        assert result.is_success, f"valid_message() was not sent: {result.error}"
        assert result.value is not None
        assert result.value.message_id == message.id
        assert spy.count == 1
        after = await self._provider_counts(connector)
        for counted_before, counted_after in zip(before, after, strict=True):
            if counted_before is not None:
                assert counted_after == counted_before + 1, "the provider-side count did not grow by one"

    @_asyncio
    async def test_invalid_message_fails_before_any_io(self, conformance_factory: ConnectorFactory) -> None:
        connector = await self._ready(conformance_factory)
        self._require_capability(connector, Capability.SEND_MESSAGES)
        message = self.invalid_message()
        issues = connector.validate_message(message)
        assert issues, "invalid_message() validates"
        assert all(isinstance(i, ValidationIssue) and i.path.startswith("$") for i in issues)
        spy = _SendSpy(connector)
        before = await self._provider_counts(connector)
        result = await connector.send_message(message)
        assert not result.is_success
        assert result.error_code in VALIDATION_ERROR_CODES
        assert result.error is not None
        assert list(result.error.issues) == issues
        assert spy.count == 0, "the provider was called for an invalid message"
        assert await self._provider_counts(connector) == before, "the provider-side count changed"

    @_asyncio
    async def test_wrong_argument_types_raise(self, conformance_factory: ConnectorFactory) -> None:
        connector = await self._ready(conformance_factory)
        self._require_capability(connector, Capability.SEND_MESSAGES)
        spy = _SendSpy(connector)
        with pytest.raises(TypeError):
            await connector.send_message("not a message")  # type: ignore[arg-type]
        assert spy.count == 0

    # -- receiving -----------------------------------------------------------------------------------

    async def _webhook(self, built: WebhookRequest | Awaitable[WebhookRequest]) -> WebhookRequest:
        request = await built if inspect.isawaitable(built) else built
        assert isinstance(request, WebhookRequest), f"expected a WebhookRequest, got {type(request).__name__}"
        return request

    async def _served(
        self, connector: ChannelConnector, kind: Literal["messages", "status"], request: WebhookRequest
    ) -> tuple[int, HookRecorder]:
        """What the core's webhook service answers for ``request``, and what it dispatched meanwhile."""
        recorder = HookRecorder()
        connector.plugins.register(recorder, name=f"conformance-recorder-{id(recorder)}")
        try:
            answer = await WebhookService({"under-test": connector}).handle("under-test", kind, request)
        finally:
            connector.plugins.unregister(recorder)
        return answer.status, recorder

    @_asyncio
    async def test_a_genuine_inbound_webhook_becomes_messages(self, conformance_factory: ConnectorFactory) -> None:
        connector = await self._ready(conformance_factory)
        self._require_capability(connector, Capability.RECEIVE_MESSAGES)
        result = await connector.receive_messages(await self._webhook(self.inbound_webhook(connector)))
        assert result.is_success, f"inbound_webhook() was refused: {result.error}"
        assert result.value is not None
        assert result.value.messages, "inbound_webhook() gave no message"
        assert all(isinstance(m, Message) for m in result.value.messages)
        status, recorder = await self._served(
            connector, "messages", await self._webhook(self.inbound_webhook(connector))
        )
        assert 200 <= status < 300, f"the webhook service answered {status}"
        assert len(recorder.named("message_received")) == len(result.value.messages)

    @_asyncio
    async def test_a_forged_inbound_webhook_is_refused(self, conformance_factory: ConnectorFactory) -> None:
        connector = await self._ready(conformance_factory)
        self._require_capability(connector, Capability.RECEIVE_MESSAGES)
        result = await connector.receive_messages(await self._webhook(self.forged_webhook(connector)))
        assert not result.is_success, "forged_webhook() was accepted"
        refusals = {ConnectorErrorCodes.INVALID_SIGNATURE, ConnectorErrorCodes.UNEXPECTED_ACCOUNT}
        if self.webhooks_signed:
            assert result.error_code in refusals, (
                f"a forged webhook must be refused with the core's INVALID_SIGNATURE (or UNEXPECTED_ACCOUNT), "
                f"not {result.error_code}: the webhook service answers 403 only for those"
            )
        status, recorder = await self._served(
            connector, "messages", await self._webhook(self.forged_webhook(connector))
        )
        assert status == 403 if self.webhooks_signed else 400 <= status < 500, f"the webhook service answered {status}"
        assert recorder.calls == [], "a refused webhook was dispatched"

    @_asyncio
    async def test_a_status_callback_becomes_an_update(self, conformance_factory: ConnectorFactory) -> None:
        connector = await self._ready(conformance_factory)
        self._require_capability(connector, Capability.HANDLE_MESSAGE_STATE)
        self._require_capability(connector, Capability.SEND_MESSAGES)
        message = self.valid_message()
        sent = await connector.send_message(message)
        assert sent.is_success, f"valid_message() was not sent: {sent.error}"
        assert sent.value is not None
        result = await connector.receive_message_status(await self._webhook(self.status_webhook(connector, sent.value)))
        assert result.is_success, f"status_webhook() was refused: {result.error}"
        assert result.value is not None
        assert message.id == result.value.message_id or (
            sent.value.remote_message_id is not None and result.value.remote_message_id == sent.value.remote_message_id
        ), "the update names neither the message's id nor its provider id"
        status, recorder = await self._served(
            connector, "status", await self._webhook(self.status_webhook(connector, sent.value))
        )
        assert 200 <= status < 300, f"the webhook service answered {status}"
        assert len(recorder.named("message_status_changed")) == 1

    # -- batches -------------------------------------------------------------------------------------

    def _mixed(self, count: int) -> list[Message]:
        valid, invalid = self.valid_message(), self.invalid_message()
        return [
            _with_id(valid if i % 2 == 0 else invalid, f"conformance-{i}-{'valid' if i % 2 == 0 else 'invalid'}")
            for i in range(count)
        ]

    @_asyncio
    async def test_batch_gives_one_result_per_message_in_order(self, conformance_factory: ConnectorFactory) -> None:
        connector = await self._ready(conformance_factory)
        self._require_capability(connector, Capability.BULK_MESSAGING)
        messages = self._mixed(7)
        spy = _SendSpy(connector)
        batch = MessageBatch(messages)
        result = await connector.send_batch(batch, concurrency=3)
        assert result.batch_id == batch.id
        assert list(result.results) == [m.id for m in messages]
        for message in messages:
            outcome = result.results[message.id]
            if message.id.endswith("-valid"):
                assert outcome.is_success, f"{message.id}: {outcome.error}"
                assert outcome.value is not None
                assert outcome.value.message_id == message.id
            else:
                assert outcome.error_code in VALIDATION_ERROR_CODES, message.id
        assert sorted(m.id for m in spy.messages) == sorted(m.id for m in messages if m.id.endswith("-valid"))

    @_asyncio
    async def test_cancelled_batch_accounts_for_every_message(self, conformance_factory: ConnectorFactory) -> None:
        connector = await self._ready(conformance_factory)
        self._require_capability(connector, Capability.BULK_MESSAGING)
        valid = self.valid_message()
        messages = [_with_id(valid, f"conformance-cancel-{i}") for i in range(6)]
        spy = _SendSpy(connector)
        cancel = asyncio.Event()

        def on_progress(progress: BatchProgress) -> None:
            if progress.done == 2:
                cancel.set()

        result = await connector.send_batch(messages, concurrency=1, on_progress=on_progress, cancel=cancel)
        assert list(result.results) == [m.id for m in messages]
        codes = [r.error_code for r in result.results.values()]
        assert codes == [None, None] + [ConnectorErrorCodes.NOT_ATTEMPTED] * 4
        assert all(r.error is not None and r.error.retryable for r in list(result.results.values())[2:])
        assert [m.id for m in spy.messages] == [m.id for m in messages[:2]]

    @_asyncio
    async def test_stream_yields_every_message_once(self, conformance_factory: ConnectorFactory) -> None:
        connector = await self._ready(conformance_factory)
        self._require_capability(connector, Capability.BULK_MESSAGING)
        messages = self._mixed(5)
        seen = [(m.id, r.is_success) async for m, r in connector.send_stream(iter(messages), concurrency=2)]
        assert sorted(seen) == sorted((m.id, m.id.endswith("-valid")) for m in messages)

    # -- secrets -------------------------------------------------------------------------------------

    def _secrets(self, connector: ChannelConnector) -> list[str]:
        """``sensitive_values`` and the values of the schema's sensitive parameters (once resolved)."""
        found = list(self.sensitive_values)
        for name in sorted(connector.schema.sensitive_parameters):
            for value in (connector.settings.get(name), connector.parameters.get(name)):
                if isinstance(value, str) and "${" not in value:
                    found.append(value)
        return [s for s in found if s]

    @_asyncio
    async def test_secrets_never_show(
        self, conformance_factory: ConnectorFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        connector = await conformance_factory()
        texts: list[tuple[str, str]] = [
            *_texts_of("connector", connector),
            *_texts_of("connector.settings", connector.settings),
        ]
        texts += _texts_of("initialize()", await connector.initialize())
        secrets = self._secrets(connector)
        assert secrets, (
            "nothing to check: no sensitive parameter is set and sensitive_values is empty; declare the "
            "values that must stay secret (a channel without credentials can mark a setting sensitive)"
        )
        texts += _texts_of("second initialize()", await connector.initialize())
        texts += _texts_of("connector (ready)", connector)
        texts += _texts_of("test_connection()", await connector.test_connection())
        texts += _texts_of("get_health()", await connector.get_health())
        capabilities = connector.schema.capabilities
        if Capability.SEND_MESSAGES in capabilities:
            texts += _texts_of("send_message(valid)", await connector.send_message(self.valid_message()))
            texts += _texts_of("send_message(invalid)", await connector.send_message(self.invalid_message()))
            failing = self.failing_message()
            if failing is not None:
                outcome = await connector.send_message(failing)
                assert not outcome.is_success, "failing_message() was sent successfully"
                texts += _texts_of("send_message(failing)", outcome)
        if Capability.BULK_MESSAGING in capabilities:
            batch = await connector.send_batch(self._mixed(2))
            texts += [item for mid, r in batch.results.items() for item in _texts_of(f"batch[{mid}]", r)]
        await connector.shutdown()
        with pytest.raises(ConnectorStateError) as raised:
            await connector.test_connection()
        texts += _texts_of("error after shutdown", raised.value)
        if connector.schema.strict:  # settings that fail validation: the issues must not echo values
            try:
                bad = await conformance_factory(None, ConformanceUnknownParameter="x")
            except ConfigurationError as err:  # a factory built on a registry checks settings up front
                texts += _texts_of("connector_factory() with invalid settings", err)
            else:
                texts += _texts_of("initialize() with invalid settings", await bad.initialize())
                texts += _texts_of("connector.settings (invalid)", bad.settings)
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        texts += [(f"log record {r.name}:{r.lineno}", formatter.format(r)) for r in caplog.records]
        leaks = find_secrets(texts, secrets)
        assert not leaks, f"sensitive values leaked: {leaks}"
