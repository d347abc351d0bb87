"""``InProcessDispatcher`` campaigns against the Twilio emulator, and dispatchers chosen by configuration.

The emulator counts what Twilio would have created, so "exactly once" is checked where it matters:
one emulated message per receiver. In-doubt faults (the request reached Twilio, the answer did not
come back) are settled by the emulator's real status callbacks, which carry our message id, through
a webhook endpoint into the dispatcher.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from messaging_core import (
    ChannelConnector,
    ChannelRegistry,
    ConfigurationError,
    ConnectorErrorCodes,
    ConnectorResult,
    Endpoint,
    FailureOutcome,
    Message,
    PluginError,
    PluginHost,
    TextContent,
    WebhookRequest,
    hookimpl,
    load_config,
)
from messaging_core.campaigns import (
    CampaignHandle,
    Dispatcher,
    DispatcherRegistration,
    DispatcherSettings,
    InProcessCampaign,
    InProcessDispatcher,
    MemoryLedger,
    MemoryRateLimiter,
    SendLedger,
    SendState,
    StoreRegistration,
)
from messaging_core.config import parse_config
from messaging_core.webhooks import WebhookService
from messaging_twilio_sms import TwilioChannelSchemas, TwilioSmsConnector
from messaging_twilio_sms.emulator import TwilioEmulator

SENDER = "+15005550006"  # Twilio's test sender that always passes


def sms(index: int, text: str = "Campaign message") -> Message:
    return Message(uuid.uuid4().hex, Endpoint.phone(SENDER), Endpoint.phone(f"+1555{index:07d}"), TextContent(text))


class Harness:
    """An emulator, a webhook endpoint for its status callbacks, and a Twilio connector using both."""

    def __init__(self, emulator: TwilioEmulator) -> None:
        self.emulator = emulator
        self.host = PluginHost()
        self.connector: ChannelConnector | None = None
        self.service: WebhookService | None = None
        self.webhooks: list[ConnectorResult[Any]] = []
        self._runner: web.AppRunner | None = None
        self.base = ""

    async def _status(self, request: web.Request) -> web.Response:
        assert self.connector is not None
        source = await WebhookRequest.from_aiohttp_request(request, url=str(request.url))
        self.webhooks.append(await self.connector.receive_message_status(source))  # parsed, for the tests
        if self.service is None:
            return web.Response(status=204 if self.webhooks[-1].is_success else 400)
        answer = await self.service.handle("sms", "status", source)  # records, settles, dispatches
        return web.Response(status=answer.status)

    async def start(self, connector_class: type[TwilioSmsConnector] = TwilioSmsConnector, **parameters: Any) -> None:
        app = web.Application()
        app.router.add_post("/status", self._status)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        settings = {
            "ApiBaseUrl": self.emulator.base_url,
            "AccountSid": self.emulator.account_sid,
            "AuthToken": self.emulator.auth_token,
            "StatusCallback": f"{self.base}/status",
            **parameters,
        }
        self.connector = connector_class(TwilioChannelSchemas.TWILIO_SMS, settings, plugins=self.host)
        assert (await self.connector.initialize()).is_success

    async def stop(self) -> None:
        if self.connector is not None:
            await self.connector.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()

    def dispatcher(self, **options: Any) -> InProcessDispatcher:
        assert self.connector is not None
        dispatcher = InProcessDispatcher(self.connector, **options)
        # Status callbacks of this process settle the dispatcher's sends in doubt: the webhook
        # service records them through it (the one way to settle sends in doubt from webhooks).
        self.service = WebhookService({"sms": self.connector}, pipeline=dispatcher)
        return dispatcher

    def created_per_receiver(self) -> Counter[str]:
        return Counter(m.to for m in self.emulator.messages.values() if m.direction == "outbound-api")


@pytest.fixture
async def harness_factory() -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    started: list[tuple[TwilioEmulator, Harness]] = []

    async def factory(
        *,
        auto_advance: bool = True,
        latency: float = 0.0,
        connector_class: type[TwilioSmsConnector] = TwilioSmsConnector,
        request_timeout: float = 0.25,
    ) -> Harness:
        emulator = TwilioEmulator(status_interval=0.01, auto_advance=auto_advance, latency=latency, fault_delay=1.0)
        await emulator.start()
        harness = Harness(emulator)
        started.append((emulator, harness))
        # Short by default: the fault tests time requests out (fault_delay 1 s).
        await harness.start(connector_class, RequestTimeout=request_timeout)
        return harness

    yield factory
    for emulator, harness in started:
        await harness.stop()
        await emulator.stop()


async def _wait(handle: InProcessCampaign, within: float = 10.0) -> dict[str, int]:
    async with asyncio.timeout(within):
        progress = await handle.wait()
    return {state: n for state, n in progress.counts.items() if n}


async def _until(condition: Callable[[], bool], within: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, f"still not true after {within} s"
        await asyncio.sleep(0.005)


async def _ledger_counts(ledger: SendLedger, campaign_id: str) -> dict[str, int]:
    counts: Counter[str] = Counter()
    async for entry in ledger.results(campaign_id):
        counts[entry.state.value] += 1
    return dict(counts)


# -- campaigns ------------------------------------------------------------------------------------------------


async def test_a_campaign_creates_every_message_exactly_once(
    harness_factory: Callable[..., Awaitable[Harness]],
) -> None:
    # No fault here: a generous timeout, so that a loaded machine is slow, not wrong (with the
    # default 0.25 s, a run beside other heavy processes timed a request out and held it in doubt).
    harness = await harness_factory(request_timeout=5.0)
    dispatcher = harness.dispatcher(concurrency=16)
    messages = [sms(i) for i in range(120)]
    handle = await dispatcher.submit(messages, campaign_id="spring-sale")
    assert isinstance(handle, InProcessCampaign)
    assert isinstance(handle, CampaignHandle)
    assert handle.campaign_id == "spring-sale"
    assert dispatcher.campaign("spring-sale") is handle
    assert await _wait(handle) == {"accepted": 120}
    assert dispatcher.campaign("spring-sale") is None, "finished campaigns are not kept"
    assert harness.created_per_receiver() == Counter({m.receiver.address: 1 for m in messages if m.receiver})
    assert harness.emulator.create_requests == 120
    assert await _ledger_counts(dispatcher.ledger, "spring-sale") == {"accepted": 120}
    results = [(mid, result) async for mid, result in handle.results()]
    assert [mid for mid, _ in results] == [m.id for m in messages], "results come in input order"
    sids = {r.value.remote_message_id for _, r in results if r.value is not None}
    assert sids == set(harness.emulator.messages)
    # The emulator's status callbacks (with our ids) reach the status store through the webhook.
    await _until(lambda: len(harness.webhooks) >= 120)
    assert all(r.is_success for r in harness.webhooks)
    assert await dispatcher.status_store.get(messages[0].id) is not None


async def test_results_stream_while_the_campaign_runs(harness_factory: Callable[..., Awaitable[Harness]]) -> None:
    # No fault here: a generous timeout, so that a loaded machine is slow, not wrong.
    harness = await harness_factory(latency=0.01, request_timeout=10.0)
    dispatcher = harness.dispatcher(concurrency=4)
    first_result = asyncio.Event()
    produced = 0

    async def produce() -> AsyncIterator[Message]:
        # The second half is produced only once a result has come out: if results waited for the
        # whole campaign, this would never finish (no timing involved, only the order of events).
        nonlocal produced
        for i in range(600):
            if i == 300:
                await first_result.wait()
            produced += 1
            yield sms(i)

    handle = await dispatcher.submit(produce())
    produced_at_first = None
    count = 0
    async with asyncio.timeout(20):
        async for _, result in handle.results():
            if produced_at_first is None:
                produced_at_first = produced
                first_result.set()
            assert result.is_success, result.error
            count += 1
    assert count == 600
    assert produced_at_first is not None
    assert produced_at_first <= 300, "the first result came before the input was read to its end"
    assert harness.created_per_receiver().most_common(1)[0][1] == 1


async def test_cancel_stops_the_campaign_and_cancelled_messages_never_reach_twilio(
    harness_factory: Callable[..., Awaitable[Harness]],
) -> None:
    harness = await harness_factory(latency=0.02)
    dispatcher = harness.dispatcher(concurrency=2)
    messages = [sms(i) for i in range(40)]
    handle = await dispatcher.submit(messages)
    await _until(lambda: harness.emulator.create_requests >= 4)
    await handle.cancel()
    counts = await _wait(handle)
    assert set(counts) == {"accepted", "cancelled"}
    assert counts["accepted"] + counts["cancelled"] == 40
    assert counts["accepted"] < 20
    assert counts["accepted"] == harness.emulator.create_requests == len(harness.emulator.messages)
    final = {entry.message_id async for entry in dispatcher.ledger.results(handle.campaign_id) if entry.state.is_final}
    by_id = {m.id: m for m in messages}
    sent_to = set(harness.created_per_receiver())
    for message_id, result in [(mid, r) async for mid, r in handle.results()]:
        receiver = by_id[message_id].receiver
        assert receiver is not None
        if result.is_success:
            assert receiver.address in sent_to
        else:
            assert result.error_code == ConnectorErrorCodes.NOT_ATTEMPTED
            assert receiver.address not in sent_to, "a cancelled message reached the emulator"
    assert len(final) == 40
    assert await _ledger_counts(dispatcher.ledger, handle.campaign_id) == counts


async def test_pause_holds_new_sends_and_resume_finishes(harness_factory: Callable[..., Awaitable[Harness]]) -> None:
    harness = await harness_factory(latency=0.02)
    dispatcher = harness.dispatcher(concurrency=2)
    messages = [sms(i) for i in range(20)]
    handle = await dispatcher.submit(messages)
    await _until(lambda: harness.emulator.create_requests >= 2)
    await handle.pause()
    assert handle.is_paused
    await asyncio.sleep(0.1)  # the two sends in flight finish
    paused_at = harness.emulator.create_requests
    await asyncio.sleep(0.2)
    assert harness.emulator.create_requests == paused_at, "a send started while paused"
    assert paused_at < 20
    progress = await handle.progress()
    assert progress.count(SendState.PENDING) == 20 - paused_at
    await handle.resume()
    assert await _wait(handle) == {"accepted": 20}
    assert harness.created_per_receiver() == Counter({m.receiver.address: 1 for m in messages if m.receiver})


async def test_resubmitting_a_finished_campaign_sends_nothing(
    harness_factory: Callable[..., Awaitable[Harness]],
) -> None:
    harness = await harness_factory()
    dispatcher = harness.dispatcher(concurrency=8)
    messages = [sms(i) for i in range(30)]
    await _wait(await dispatcher.submit(messages, campaign_id="again"))
    others = [sms(i) for i in range(100, 110)]
    running = await dispatcher.submit(others, campaign_id="twice")
    with pytest.raises(ValueError, match="already running"):
        await dispatcher.submit(others, campaign_id="twice")
    assert await _wait(running) == {"accepted": 10}
    assert await _wait(await dispatcher.submit(messages, campaign_id="again")) == {"accepted": 30}
    assert harness.emulator.create_requests == 40, "ids already in the ledger are never sent again"


# -- messages in doubt ----------------------------------------------------------------------------------------

IN_DOUBT_FAULTS = ("reset_after_create", "truncated_json", "timeout")


async def _campaign_with_in_doubt_faults(harness: Harness, dispatcher: InProcessDispatcher) -> list[Message]:
    messages = [sms(i) for i in range(12)]
    for fault, message in zip(IN_DOUBT_FAULTS, messages[3:6], strict=True):
        assert message.receiver is not None
        harness.emulator.inject(fault, match_to=message.receiver.address)
    handle = await dispatcher.submit(messages, campaign_id="in-doubt")
    assert await _wait(handle) == {"accepted": 9, "unknown": 3}
    results = dict([(mid, r) async for mid, r in handle.results()])
    for message in messages[3:6]:
        error = results[message.id].error
        assert error is not None
        assert error.code == ConnectorErrorCodes.OUTCOME_UNKNOWN
        assert error.outcome is FailureOutcome.MAY_HAVE_BEEN_SENT
    return messages


async def test_in_doubt_messages_are_held_then_settled_by_status_callbacks(
    harness_factory: Callable[..., Awaitable[Harness]],
) -> None:
    harness = await harness_factory(auto_advance=False)  # no callback until the test moves a message
    dispatcher = harness.dispatcher(concurrency=4, in_doubt="hold")
    messages = await _campaign_with_in_doubt_faults(harness, dispatcher)
    # Twilio did create all twelve; the ledger knows it for nine.
    assert harness.created_per_receiver() == Counter({m.receiver.address: 1 for m in messages if m.receiver})
    for sid in list(harness.emulator.messages):
        await harness.emulator.advance(sid)  # queued -> sent, with a signed callback carrying MessageId
    await _until(lambda: len(harness.webhooks) == 12)
    assert all(r.is_success for r in harness.webhooks)
    progress = await dispatcher.ledger.progress("in-doubt")
    assert progress.counts == {"accepted": 12}
    sid_of = {m.to: sid for sid, m in harness.emulator.messages.items()}
    for message in messages[3:6]:
        entry = await dispatcher.ledger.get(message.id)
        assert entry is not None
        assert message.receiver is not None
        assert (entry.provider_id, entry.reconciled) == (sid_of[message.receiver.address], True)
    # Running the campaign again resends nothing: zero duplicates.
    assert await _wait(await dispatcher.submit(messages, campaign_id="in-doubt")) == {"accepted": 12}
    assert harness.emulator.create_requests == 12
    assert max(harness.created_per_receiver().values()) == 1


async def test_control_a_blind_resend_of_in_doubt_messages_duplicates(
    harness_factory: Callable[..., Awaitable[Harness]],
) -> None:
    # Proves the checks above can see duplicates: treat "unknown" as "absent" and send again.
    harness = await harness_factory(auto_advance=False)
    dispatcher = harness.dispatcher(concurrency=4, in_doubt="hold")
    messages = await _campaign_with_in_doubt_faults(harness, dispatcher)
    for message in messages[3:6]:
        assert await dispatcher.ledger.resolve(message.id, provider_id=None)  # the blind verdict
    assert await _wait(await dispatcher.submit(messages, campaign_id="in-doubt")) == {"accepted": 12}
    duplicated = {to: n for to, n in harness.created_per_receiver().items() if n > 1}
    assert duplicated == {m.receiver.address: 2 for m in messages[3:6] if m.receiver}


class ProbingTwilioConnector(TwilioSmsConnector):
    """A Twilio connector with a reconciliation probe (here: reading the emulator's message log)."""

    emulator: TwilioEmulator

    async def find_sent(self, message: Message, since: datetime) -> list[str] | None:
        assert message.receiver is not None
        return [
            sid
            for sid, created in self.emulator.messages.items()
            if created.to == message.receiver.address
            and created.body == message.texts()[0]
            and created.date_created >= since.timestamp()
        ]


async def test_probe_then_resend_settles_without_duplicates(harness_factory: Callable[..., Awaitable[Harness]]) -> None:
    harness = await harness_factory(auto_advance=False, connector_class=ProbingTwilioConnector)
    assert isinstance(harness.connector, ProbingTwilioConnector)
    harness.connector.emulator = harness.emulator
    # A short lease and quiet period: "absent" is concluded a second after the call, not minutes.
    dispatcher = harness.dispatcher(
        concurrency=4, in_doubt="probe_then_resend", probe_grace=0.05, lease=1.0, request_timeout=0.5, absent_after=0.2
    )
    messages = [sms(i) for i in range(6)]
    created_but_lost, never_created = messages[1], messages[2]
    assert created_but_lost.receiver is not None
    assert never_created.receiver is not None
    harness.emulator.inject("reset_after_create", match_to=created_but_lost.receiver.address)
    harness.emulator.inject("reset_before", match_to=never_created.receiver.address)
    handle = await dispatcher.submit(messages)
    assert await _wait(handle) == {"accepted": 6}
    assert harness.created_per_receiver() == Counter({m.receiver.address: 1 for m in messages if m.receiver})
    assert harness.emulator.create_requests == 7, "the message proven absent was sent a second time"
    for message in (created_but_lost, never_created):
        entry = await dispatcher.ledger.get(message.id)
        assert entry is not None
        assert entry.reconciled


# -- dispatchers chosen by configuration ------------------------------------------------------------------------


def test_the_builtin_kind_and_stores_are_registered() -> None:
    registry = ChannelRegistry()
    assert set(registry.dispatchers()) == {"inprocess"}
    assert set(registry.store_schemes()) == {"memory"}


async def test_without_a_table_the_dispatcher_is_inprocess_in_memory(memory_connector: ChannelConnector) -> None:
    dispatcher = ChannelRegistry().create_dispatcher(None, memory_connector)
    assert isinstance(dispatcher, InProcessDispatcher)
    assert isinstance(dispatcher, Dispatcher)
    assert isinstance(dispatcher.ledger, MemoryLedger)
    assert dispatcher.limiter is None
    messages = [Message(uuid.uuid4().hex, None, Endpoint.phone("+15550000001"), TextContent("hi"))]
    assert await _wait(await dispatcher.submit(messages)) == {"accepted": 1}


async def test_a_config_file_chooses_and_tunes_the_dispatcher(
    memory_connector: ChannelConnector, tmp_path: Path
) -> None:
    path = tmp_path / "messaging.toml"
    path.write_text(
        '[connectors.m]\nchannel = "memory"\n\n'
        '[dispatcher]\nkind = "inprocess"\nledger = "memory"\nlimiter = "memory://"\n'
        'concurrency = 4\nmessages_per_second = 20\nin_doubt = "${POLICY}"\nmax_attempts = 2\n',
        encoding="utf-8",
    )
    config = load_config(path, environ={"POLICY": "probe_then_resend"})
    dispatcher = ChannelRegistry().create_dispatcher(config, memory_connector)
    assert isinstance(dispatcher, InProcessDispatcher)
    assert dispatcher.concurrency == 4
    assert isinstance(dispatcher.limiter, MemoryRateLimiter)
    assert (dispatcher.pipeline.in_doubt, dispatcher.pipeline.max_attempts) == ("probe_then_resend", 2)


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (
            {"kind": "taskiq", "broker": "amqp://guest:guest@localhost/"},
            r"unknown kind 'taskiq' \(installed: inprocess\)",
        ),
        (
            {"kind": "inprocess", "ledger": "postgresql://app:s3cret@db/app"},
            r"no installed plugin provides a ledger for 'postgresql'",
        ),
        ({"kind": "inprocess", "broker": "amqp://localhost/"}, "has no broker"),
        ({"kind": "inprocess", "workers": 4}, r"unknown option\(s\) \['workers'\]"),
        ({"ledger": "memory"}, "'kind' is required"),
    ],
)
def test_configuration_errors_are_clear(
    memory_connector: ChannelConnector, table: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem) as caught:
        ChannelRegistry().create_dispatcher(table, memory_connector)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    "table",
    [
        {"kind": "inprocess", "in_doubt": "maybe"},
        {"kind": "inprocess", "ledger": "not a url"},
        {"kind": "inprocess", "concurrency": 0},
        {"kind": ""},
    ],
)
def test_the_config_schema_checks_the_dispatcher_table(table: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match=r"\$\.dispatcher"):
        parse_config({"connectors": {"m": {"channel": "memory"}}, "dispatcher": table}, environ={})


class FakeDispatcher:
    """A dispatcher kind contributed by a plugin (what a Taskiq one would look like from here)."""

    def __init__(self, connector: ChannelConnector, settings: DispatcherSettings) -> None:
        self.connector = connector
        self.settings = settings
        self.ledger = settings.create_ledger()

    async def submit(self, messages: Any, *, campaign_id: str | None = None, **options: Any) -> Any:
        raise NotImplementedError


class FakeLedger(MemoryLedger):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url


class ScalePlugin:
    @hookimpl
    def register_dispatchers(self, register: Callable[[DispatcherRegistration | StoreRegistration], None]) -> None:
        register(DispatcherRegistration("fake", FakeDispatcher, "workers elsewhere"))
        register(StoreRegistration("fakedb", ledger=lambda url, options: FakeLedger(url)))


def test_plugins_contribute_kinds_and_stores_through_register_dispatchers(memory_connector: ChannelConnector) -> None:
    registry = ChannelRegistry(plugins=[ScalePlugin()])
    assert set(registry.dispatchers()) == {"inprocess", "fake"}
    assert set(registry.store_schemes()) == {"memory", "fakedb"}
    config = parse_config(
        {
            "connectors": {"m": {"channel": "memory"}},
            "dispatcher": {
                "kind": "fake",
                "ledger": "fakedb://app:${DB_PASSWORD}@db/app",
                "broker": "amqp://${BROKER_HOST}/",
                "chunk": 500,
            },
        },
        environ={"DB_PASSWORD": "s3cret", "BROKER_HOST": "rabbit"},
    )
    dispatcher = registry.create_dispatcher(config, memory_connector)
    assert isinstance(dispatcher, FakeDispatcher)
    settings = dispatcher.settings
    assert (settings.kind, settings.broker, settings.options) == ("fake", "amqp://rabbit/", {"chunk": 500})
    assert isinstance(dispatcher.ledger, FakeLedger)
    assert dispatcher.ledger.url == "fakedb://app:s3cret@db/app"
    assert "s3cret" not in repr(settings)
    assert "fakedb://app:***@db/app" in repr(settings)
    # The inprocess kind can use a plugin's ledger too.
    inprocess = registry.create_dispatcher({"kind": "inprocess", "ledger": "fakedb://h/x"}, memory_connector)
    assert isinstance(inprocess, InProcessDispatcher)
    assert isinstance(inprocess.ledger, FakeLedger)


def test_a_kind_registered_twice_names_both_plugins() -> None:
    class Again:
        @hookimpl
        def register_dispatchers(self, register: Callable[[Any], None]) -> None:
            register(DispatcherRegistration("inprocess", FakeDispatcher))

    registry = ChannelRegistry()
    registry.host.register(Again(), name="again")
    assert registry.dispatchers()["inprocess"] is not None
    (failure,) = registry.load_errors
    assert failure.name in ("again", "dispatchers")
    assert "dispatcher kind 'inprocess' is also registered by plugin" in failure.error


def test_register_dispatchers_must_be_synchronous_and_register_registrations() -> None:
    class Async:
        @hookimpl
        async def register_dispatchers(self, register: Callable[[Any], None]) -> None:
            register(DispatcherRegistration("late", FakeDispatcher))

    class Wrong:
        @hookimpl
        def register_dispatchers(self, register: Callable[[Any], None]) -> None:
            register("taskiq")

    with pytest.raises(PluginError, match="implements 'register_dispatchers' with async def"):
        ChannelRegistry(plugins=[Async()])
    registry = ChannelRegistry(plugins=[Wrong()])
    assert "inprocess" in registry.dispatchers()
    (failure,) = registry.load_errors
    assert "neither a DispatcherRegistration nor a StoreRegistration" in failure.error


async def test_submit_refuses_unknown_options(memory_connector: ChannelConnector) -> None:
    dispatcher = InProcessDispatcher(memory_connector)
    with pytest.raises(TypeError, match="unknown options"):
        await dispatcher.submit([], priority=1)


async def test_submit_reports_ids_already_in_the_ledger(memory_connector: ChannelConnector) -> None:
    dispatcher = InProcessDispatcher(memory_connector)

    def hello(ids: range) -> list[Message]:
        return [Message(f"reused-{i}", None, Endpoint.phone(f"+1555{i:07d}"), TextContent("hi")) for i in ids]

    first = await dispatcher.submit(hello(range(5)), campaign_id="first")
    assert (await first.submitted()).describe() == "5 new"
    await _wait(first)
    later = await dispatcher.submit(hello(range(3, 8)), campaign_id="later")
    submission = await later.submitted()
    assert (submission.new, dict(submission.existing)) == (3, {"first": 2})
    assert submission.describe() == "3 new, 2 already in the ledger (campaign first: 2)"
    await _wait(later)
    again = await dispatcher.submit(hello(range(3, 8)), campaign_id="later")
    assert (await again.submitted()).existing == {"first": 2, "later": 3}, "the same campaign again"
    assert (await again.wait()).total == 3
