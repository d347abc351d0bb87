"""The taskiq dispatcher's parts in one process: settings, registration, campaign control, sweeper, cap.

The campaigns on real worker processes, with kills and crashes, are in ``test_campaigns.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from taskiq.api import run_receiver_task

from messaging_core import ChannelConnector, ChannelRegistry, ConfigurationError, Endpoint, Message, TextContent
from messaging_core.campaigns import Claim, DispatcherSettings, SendPipeline, SendState
from messaging_scale import (
    ChunkKicker,
    ChunkSender,
    PostgresLedger,
    RedisConcurrencyLimit,
    RedisGcraLimiter,
    Sweeper,
    TaskiqCampaign,
    TaskiqDispatcher,
    TaskiqSettings,
    create_broker,
    install_sender,
    queued_chunks,
)

SENDER = "+15550001111"


def _messages(n: int, prefix: str | None = None) -> list[Message]:
    prefix = prefix or uuid.uuid4().hex[:8]
    return [
        Message(f"{prefix}-{i:04d}", Endpoint.phone(SENDER), Endpoint.phone(f"+1555000{i:04d}"), TextContent("hi"))
        for i in range(n)
    ]


def _table(**changes: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "kind": "taskiq",
        "broker": "amqp://guest:guest@127.0.0.1:5672/",
        "ledger": "postgresql://127.0.0.1/app?schema=campaigns",
        "limiter": "redis://127.0.0.1:6379/0",
        "messages_per_second": 10,
    }
    table.update(changes)
    return {key: value for key, value in table.items() if value is not None}


# -- settings and registration (no services) -------------------------------------------------------------


def test_settings_report_every_problem_at_once() -> None:
    table = _table(
        ledger="memory", limiter=None, chunk_size=0, lease="long", in_doubt="resend", colour="blue", rates={"+1": -1}
    )
    with pytest.raises(ConfigurationError) as caught:
        TaskiqSettings.from_dispatcher(DispatcherSettings.from_mapping(table))
    text = str(caught.value)
    for expected in ("'ledger' must be a postgresql://", "'chunk_size'", "'lease'", "'in_doubt'", "colour", "'rates'"):
        assert expected in text
    assert "messages_per_second' needs a shared 'limiter'" in text
    assert "7 problem(s)" in text


def test_settings_defaults_and_pipeline_options() -> None:
    settings = TaskiqSettings.from_dispatcher(
        DispatcherSettings.from_mapping(_table(lease=60, in_doubt="probe_then_resend", rates={"+1500": 100}))
    )
    assert (settings.queue, settings.chunk_size, settings.qos, settings.delivery_limit) == ("messaging.send", 500, 4, 5)
    assert settings.rates == {"+1500": 100.0}
    assert settings.pipeline_options() == {
        "in_doubt": "probe_then_resend",
        "lease": 60.0,
        "max_attempts": 5,
        "backoff": 1.0,
        "max_backoff": 300.0,
        "probe_grace": 5.0,
        "absent_after": 300.0,
        "defer_beyond": 30.0,  # max_inline_wait: a pace slot further away is deferred in the ledger
    }
    assert settings.defer_lead() == 20.0  # due again between a sweep (10 s) and the inline limit (30 s) ahead
    assert "amqp" not in repr(settings)  # URLs (and their passwords) stay out of repr


def test_settings_name_the_brokers_they_accept() -> None:
    with pytest.raises(ConfigurationError, match=r"'broker' must be an amqp:// \(RabbitMQ\), redis://"):
        TaskiqSettings.from_dispatcher(DispatcherSettings.from_mapping(_table(broker="http://127.0.0.1:5672/")))
    for url in ("amqp://guest:guest@127.0.0.1/", "redis://127.0.0.1:6379/1?idle_timeout=60", "nats://127.0.0.1:4222"):
        assert TaskiqSettings.from_dispatcher(DispatcherSettings.from_mapping(_table(broker=url))).broker == url


def test_settings_check_how_the_times_fit_together() -> None:
    table = _table(max_inline_wait=5, sweep_interval=10, lease=10, request_timeout=15)
    with pytest.raises(ConfigurationError) as caught:
        TaskiqSettings.from_dispatcher(DispatcherSettings.from_mapping(table))
    text = str(caught.value)
    assert "'max_inline_wait' (5 s) must exceed 'sweep_interval' (10 s)" in text
    assert "'lease' (10 s) must exceed 'request_timeout' (15 s)" in text
    assert "2 problem(s)" in text


async def test_registry_builds_the_taskiq_kind(memory_connector: ChannelConnector) -> None:
    registry = ChannelRegistry.discover()
    assert "taskiq" in registry.dispatchers()
    dispatcher = registry.create_dispatcher(_table(chunk_size=100), memory_connector)
    assert isinstance(dispatcher, TaskiqDispatcher)
    assert isinstance(dispatcher.ledger, PostgresLedger)
    assert dispatcher.ledger.schema == "campaigns"
    assert dispatcher.kicker.chunk_size == 100
    await dispatcher.close()  # nothing was opened: no service needed
    with pytest.raises(ConfigurationError, match="'broker' is required"):
        registry.create_dispatcher(_table(broker=None), memory_connector)


# -- campaign control in the ledger ----------------------------------------------------------------------


@pytest.mark.services
async def test_campaign_control_in_the_ledger(ledger: PostgresLedger, pg_pool: Any, pg_schema: str) -> None:
    messages = _messages(6, "cc")
    await ledger.register_campaign("cc", "sms")
    assert await ledger.add("cc", [(m, SENDER, 1) for m in messages]) == 6
    with pytest.raises(ValueError, match="sent by connector 'sms'"):
        await ledger.register_campaign("cc", "other")
    info = await ledger.campaign("cc")
    assert info is not None
    assert (info.connector, info.paused, info.cancelled) == ("sms", False, False)
    assert await ledger.campaign("nope") is None
    assert not await ledger.set_campaign_flags("nope", paused=True)

    assert isinstance(await ledger.claim(messages[0].id, lease=30, request_timeout=5), Claim)
    assert await ledger.resolve(messages[1].id, provider_id="SM1")  # final
    assert await ledger.set_campaign_flags("cc", paused=True)
    wanted = [messages[5].id, messages[1].id, "missing", messages[0].id, messages[5].id]
    found = await ledger.open_messages(wanted)
    # In the chunk's order, once each, final and unknown ids left out, with the campaign's flags.
    assert [item.message.id for item in found] == [messages[5].id, messages[0].id]
    assert found[0].message == messages[5]
    assert {(item.campaign_id, item.connector, item.paused, item.cancelled) for item in found} == {
        ("cc", "sms", True, False)
    }
    assert sorted(await ledger.open_ids(wanted)) == sorted([messages[0].id, messages[5].id])

    page = await ledger.open_page("cc", limit=3)
    assert [message_id for _, message_id in page] == [messages[0].id, messages[2].id, messages[3].id]
    rest = await ledger.open_page("cc", after=page[-1][0])
    assert [message_id for _, message_id in rest] == [messages[4].id, messages[5].id]

    # Register again (a resubmission) clears the flags.
    await ledger.register_campaign("cc", "sms")
    info = await ledger.campaign("cc")
    assert info is not None
    assert not info.paused


@pytest.mark.services
async def test_handle_pauses_resumes_and_cancels_through_the_ledger(ledger: PostgresLedger) -> None:
    """What ``messaging campaign pause/resume/cancel`` calls: the handle alone, no dispatcher, no kicker."""
    messages = _messages(5, "hc")
    await ledger.register_campaign("hc", "sms")
    await ledger.add("hc", [(m, SENDER, 1) for m in messages])
    handle = TaskiqCampaign("hc", ledger=ledger)
    info = await handle.info()
    assert info is not None
    assert (info.connector, info.paused, info.cancelled) == ("sms", False, False)
    assert await TaskiqCampaign("nope", ledger=ledger).info() is None

    await handle.pause()
    assert (info := await handle.info()) is not None
    assert info.paused
    await handle.resume()  # no kicker: the sweeper publishes the rows
    assert (info := await handle.info()) is not None
    assert not info.paused

    assert isinstance(await ledger.claim(messages[0].id, lease=30, request_timeout=5), Claim)
    assert await handle.cancel_and_count() == 4  # the claimed one keeps its outcome
    assert (await handle.progress()).counts == {"cancelled": 4, "submitting": 1}
    assert (info := await handle.info()) is not None
    assert info.cancelled
    assert await handle.cancel_and_count() == 0


@pytest.mark.services
async def test_one_process_wins_each_turn(ledger: PostgresLedger) -> None:
    wins = await asyncio.gather(*(ledger.take_turn("job", 5.0) for _ in range(10)))
    assert sum(wins) == 1
    assert not await ledger.take_turn("job", 5.0)
    assert await ledger.take_turn("other job", 5.0)
    assert await ledger.take_turn("short", 0.05)
    await asyncio.sleep(0.2)
    assert await ledger.take_turn("short", 0.05)


@pytest.mark.services
async def test_stale_rows_and_held_messages(ledger: PostgresLedger, pg_pool: Any, pg_schema: str) -> None:
    m = _messages(5, "st")
    await ledger.register_campaign("st", "sms")
    await ledger.add("st", [(message, SENDER, 1) for message in m])
    assert isinstance(await ledger.claim(m[0].id, lease=0.01, request_timeout=0.001), Claim)  # lease gone soon
    assert isinstance(await ledger.claim(m[1].id, lease=60, request_timeout=5), Claim)  # lease live
    doubtful = await ledger.claim(m[2].id, lease=0.01, request_timeout=0.001)
    assert isinstance(doubtful, Claim)
    await asyncio.sleep(0.05)
    assert await ledger.mark_unknown(m[2].id, doubtful.fence)
    # m[3], m[4]: PENDING, never tried.
    assert set(await ledger.stale(stale_after=0, unknown=False, unclaimed=False)) == {m[0].id}
    assert set(await ledger.stale(stale_after=0, unknown=True, unclaimed=True)) == {m[0].id, m[2].id, m[3].id, m[4].id}
    assert await ledger.stale(stale_after=60, unknown=True, unclaimed=True) == []
    await ledger.set_campaign_flags("st", paused=True)
    assert await ledger.stale(stale_after=0, unknown=True, unclaimed=True) == []  # paused: left alone
    held = await ledger.held(campaign_id="st")
    assert [entry.message_id for entry in held] == [m[2].id]
    assert held[0].state is SendState.UNKNOWN


@pytest.mark.services
async def test_deferred_rows_wake_once_when_due(ledger: PostgresLedger) -> None:
    m = _messages(3, "df")
    await ledger.register_campaign("df", "sms")
    await ledger.add("df", [(message, SENDER, 1) for message in m])
    assert await ledger.defer([m[0].id], 0.3) == 1
    assert await ledger.defer([m[1].id], 30) == 1
    assert not isinstance(await ledger.claim(m[0].id, lease=30, request_timeout=5), Claim), "not due yet"
    assert await ledger.wake_deferred() == []
    await asyncio.sleep(0.4)
    assert await ledger.wake_deferred(again_after=0.3) == [m[0].id]
    assert await ledger.wake_deferred(again_after=0.3) == [], "handed out once per defer"
    await asyncio.sleep(0.35)
    # Not claimed since: its publication may have been lost, so it is handed out again.
    assert await ledger.wake_deferred(again_after=0.3) == [m[0].id]
    assert isinstance(await ledger.claim(m[0].id, lease=30, request_timeout=5), Claim)
    await asyncio.sleep(0.35)
    assert await ledger.wake_deferred(again_after=0.3) == [], "a claimed row is no longer deferred"
    assert await ledger.defer([m[0].id], 0) == 0, "only PENDING rows are deferred"
    # A paused campaign's deferred rows wait for resume.
    assert await ledger.defer([m[2].id], 0) == 1
    await ledger.set_campaign_flags("df", paused=True)
    assert await ledger.wake_deferred() == []
    await ledger.set_campaign_flags("df", paused=False)
    assert await ledger.wake_deferred() == [m[2].id]


@pytest.mark.services
async def test_a_stale_row_is_kicked_once_per_stale_after(ledger: PostgresLedger) -> None:
    """A row that stays in need of work (held in doubt, say) does not come back at every sweep."""
    m = _messages(1, "sk")
    await ledger.add("sk", [(m[0], SENDER, 1)])
    await asyncio.sleep(0.35)
    assert await ledger.stale(stale_after=0.3, unknown=True, unclaimed=True) == [m[0].id]
    assert await ledger.stale(stale_after=0.3, unknown=True, unclaimed=True) == []
    await asyncio.sleep(0.35)
    assert await ledger.stale(stale_after=0.3, unknown=True, unclaimed=True) == [m[0].id]


# -- the sweeper and the chunk task, in process ----------------------------------------------------------


@contextlib.asynccontextmanager
async def _receiver(broker: Any) -> AsyncIterator[None]:
    broker.is_worker_process = True
    await broker.startup()
    task = asyncio.create_task(run_receiver_task(broker))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await broker.shutdown()


@pytest.mark.services
async def test_sweeper_rekicks_rows_whose_chunks_were_lost(
    amqp_names: tuple[str, str], memory_connector: ChannelConnector, ledger: PostgresLedger
) -> None:
    """A submitter that died between COPY and publishing: the sweeper finds the rows."""
    url, name = amqp_names
    messages = _messages(30)
    await ledger.register_campaign("lost", memory_connector.name)
    await ledger.add("lost", [(m, SENDER, 1) for m in messages])  # and no chunk published
    broker = create_broker(url, queue=name, exchange=name)
    pipeline = SendPipeline(memory_connector, ledger=ledger)
    install_sender(broker, ChunkSender(ledger, pipeline, concurrency=10))
    kicker = ChunkKicker(broker, chunk_size=7)
    sweeper = Sweeper(ledger, kicker, queue=name, interval=30.0, stale_after=0.0)
    async with _receiver(broker):
        assert await queued_chunks(broker, name) == 0
        assert await sweeper.sweep() == 30
        assert await sweeper.sweep() == 0  # not its turn yet
        async with asyncio.timeout(20):
            progress = await TaskiqCampaign("lost", ledger=ledger, poll_interval=0.05).wait()
    assert progress.counts == {"accepted": 30}
    sent: list[Message] = memory_connector.mailbox.sent  # type: ignore[attr-defined]
    assert sorted(m.id for m in sent) == sorted(m.id for m in messages)


@pytest.mark.services
async def test_a_slow_senders_messages_wait_in_the_ledger_not_in_the_chunk(
    amqp_names: tuple[str, str],
    memory_connector: ChannelConnector,
    ledger: PostgresLedger,
    redis_client: Any,
    redis_prefix: str,
) -> None:
    """Six messages at 2 per second: the slots more than 1 s away are deferred, and woken by the sweeper.

    The chunk is done in about a second (not held for the schedule's 2.5 s), every message is
    sent at its slot, and each slot was booked once (the schedule ends where six slots end).
    """
    url, name = amqp_names
    messages = _messages(6, "slow")
    await ledger.register_campaign("slow", memory_connector.name)
    await ledger.add("slow", [(m, SENDER, 1) for m in messages])
    limiter = RedisGcraLimiter(redis_client, rate=2.0, prefix=redis_prefix)
    pipeline = SendPipeline(memory_connector, ledger=ledger, limiter=limiter, defer_beyond=1.0)
    sender = ChunkSender(ledger, pipeline, max_inline_wait=1.0, defer_lead=0.6)
    started = time.monotonic()
    outcome = await sender.send([m.id for m in messages])
    held_for = time.monotonic() - started
    # The passes reserve in whatever order they reach the limiter: three slots within 1 s, three beyond.
    assert sorted(outcome.values()) == ["accepted"] * 3 + ["deferred"] * 3
    assert held_for < 1.5
    broker = create_broker(url, queue=name, exchange=name)
    install_sender(broker, sender)
    sweeper = Sweeper(ledger, ChunkKicker(broker, chunk_size=10), queue=name, interval=0.2, stale_after=300.0)
    async with _receiver(broker):
        sweeping = asyncio.create_task(sweeper.run())
        try:
            async with asyncio.timeout(20):
                progress = await TaskiqCampaign("slow", ledger=ledger, poll_interval=0.05).wait()
        finally:
            sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeping
    assert progress.counts == {"accepted": 6}
    assert time.monotonic() - started >= 2.5 - 0.1  # the pace held: six slots at 2/s
    rows = {entry.message_id: entry async for entry in ledger.results("slow")}
    assert {entry.attempts for entry in rows.values()} == {1}
    # One slot per message: the sender's schedule ends three seconds after the start, not later.
    wait = await limiter.reserve(SENDER)
    assert wait is not None
    assert wait <= started + 3.0 - time.monotonic() + 0.3, f"slots were booked twice: {wait:.2f} s to wait"


@pytest.mark.services
async def test_a_pause_stops_messages_already_waiting_for_their_pace(
    memory_connector: ChannelConnector, ledger: PostgresLedger, redis_client: Any, redis_prefix: str
) -> None:
    """Paused while three messages wait for their slots: none of them is sent once its slot comes."""
    messages = _messages(4, "pw")
    await ledger.register_campaign("pw", memory_connector.name)
    await ledger.add("pw", [(m, SENDER, 1) for m in messages])
    limiter = RedisGcraLimiter(redis_client, rate=4.0, prefix=redis_prefix)
    pipeline = SendPipeline(memory_connector, ledger=ledger, limiter=limiter)
    sender = ChunkSender(ledger, pipeline, flags_ttl=0.05)
    sending = asyncio.create_task(sender.send([m.id for m in messages]))
    await asyncio.sleep(0.1)  # the first is sent, the others wait 0.25, 0.5 and 0.75 s
    assert await ledger.set_campaign_flags("pw", paused=True)
    async with asyncio.timeout(5):
        outcome = await sending
    assert outcome == {messages[0].id: "accepted"} | {m.id: "paused" for m in messages[1:]}
    sent: list[Message] = memory_connector.mailbox.sent  # type: ignore[attr-defined]
    assert [m.id for m in sent] == [messages[0].id]
    assert (await ledger.progress("pw")).counts == {"accepted": 1, "pending": 3}


@pytest.mark.services
async def test_sweeper_leaves_queued_chunks_alone(amqp_names: tuple[str, str], ledger: PostgresLedger) -> None:
    """Never-tried rows are not kicked again while chunks wait in the queue (they may be theirs)."""
    url, name = amqp_names
    messages = _messages(10)
    await ledger.add("queued", [(m, SENDER, 1) for m in messages])
    broker = create_broker(url, queue=name, exchange=name)
    kicker = ChunkKicker(broker, chunk_size=5)
    try:
        assert await kicker.kick([m.id for m in messages]) == 2
        assert await queued_chunks(broker, name) == 2
        sweeper = Sweeper(ledger, kicker, queue=name, interval=0.01, stale_after=0.0)
        assert await sweeper.sweep() == 0
        assert await queued_chunks(broker, name) == 2
    finally:
        await kicker.close()


@pytest.mark.services
async def test_dispatcher_submit_and_handle_in_one_process(
    amqp_names: tuple[str, str], memory_connector: ChannelConnector, ledger: PostgresLedger
) -> None:
    url, name = amqp_names
    messages = _messages(120)
    broker = create_broker(url, queue=name, exchange=name)
    pipeline = SendPipeline(memory_connector, ledger=ledger)
    install_sender(broker, ChunkSender(ledger, pipeline, concurrency=20))
    dispatcher = TaskiqDispatcher(memory_connector, ledger=ledger, broker=broker, chunk_size=25, poll_interval=0.05)
    async with _receiver(broker):
        handle = await dispatcher.submit(iter(messages), campaign_id="one")
        async with asyncio.timeout(20):
            progress = await handle.wait()
        assert progress.counts == {"accepted": 120}
        results = [item async for item in handle.results()]
        assert [message_id for message_id, _ in results] == [m.id for m in messages]
        assert all(result.is_success for _, result in results)
        # Again: nothing new in the ledger, nothing published, nothing sent twice.
        again = await dispatcher.submit(messages, campaign_id="one")
        assert (await again.progress()).counts == {"accepted": 120}
        with pytest.raises(TypeError, match="not a Message"):
            await dispatcher.submit(["+1555"], campaign_id="bad")  # type: ignore[list-item]
        with pytest.raises(ValueError, match="sent by connector"):
            await TaskiqDispatcher(_Renamed(memory_connector), ledger=ledger, broker=broker, chunk_size=25).submit(
                messages[:1], campaign_id="one"
            )
    sent: list[Message] = memory_connector.mailbox.sent  # type: ignore[attr-defined]
    assert len(sent) == 120


class _Renamed:
    """A connector seen under another name (a second configuration's connector)."""

    def __init__(self, connector: ChannelConnector) -> None:
        self._connector = connector
        self.name = "another"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connector, name)


# -- the account-wide cap around the provider call -------------------------------------------------------


@pytest.mark.services
async def test_call_slot_caps_provider_calls_across_pipelines(
    messaging_registry: ChannelRegistry, ledger: PostgresLedger, redis_client: Any, redis_prefix: str
) -> None:
    """Two pipelines (two workers) share a cap of 3 calls in flight; 24 sends of 50 ms take ≥ 8 rounds."""
    connector = messaging_registry.create_connector(
        {"channel": "memory", "parameters": {"Mailbox": uuid.uuid4().hex, "Latency": 0.05}}, name="slow"
    )
    messages = _messages(24)
    await ledger.add("cap", [(m, SENDER, 1) for m in messages])
    inside = 0
    most = 0

    @contextlib.asynccontextmanager
    async def slot() -> AsyncIterator[None]:
        nonlocal inside, most
        async with RedisConcurrencyLimit(redis_client, key="AC1", limit=3, prefix=redis_prefix).slot():
            inside += 1
            most = max(most, inside)
            try:
                yield
            finally:
                inside -= 1

    async with connector:
        pipelines = [SendPipeline(connector, ledger=ledger, call_slot=slot) for _ in range(2)]
        started = time.monotonic()
        attempts = await asyncio.gather(*(pipelines[i % 2].process(m) for i, m in enumerate(messages)))
        elapsed = time.monotonic() - started
    assert {attempt.state for attempt in attempts} == {SendState.ACCEPTED}
    assert most == 3
    assert elapsed >= 8 * 0.05


@pytest.mark.services
async def test_a_failing_message_fails_the_chunk_after_the_others_are_sent(
    memory_connector: ChannelConnector, ledger: PostgresLedger
) -> None:
    """The chunk is requeued (the task raises) only once every other message of it has settled."""
    good, bad = _messages(5, "good"), _messages(2, "bad")
    await ledger.register_campaign("good", "memory")
    await ledger.register_campaign("bad", "missing")
    await ledger.add("good", [(m, SENDER, 1) for m in good])
    await ledger.add("bad", [(m, SENDER, 1) for m in bad])
    pipeline = SendPipeline(memory_connector, ledger=ledger)

    async def pipelines(name: str | None) -> SendPipeline:
        if name != "memory":
            raise ConfigurationError(f"no connector {name!r}")
        return pipeline

    sender = ChunkSender(ledger, pipelines)
    # A connector the worker lacks fails (pauses) its campaign, not the chunk (#12).
    states = await sender.send([bad[0].id, *(m.id for m in good), bad[1].id])
    assert {states[m.id] for m in bad} == {"paused"}
    assert (await ledger.progress("good")).counts == {"accepted": 5}
    assert (await ledger.progress("bad")).counts == {"pending": 2}
    # Paused: left PENDING and reported; the chunk itself succeeds.
    await ledger.set_campaign_flags("bad", paused=True)
    assert await ChunkSender(ledger, pipelines).send([m.id for m in bad]) == {m.id: "paused" for m in bad}
