"""``send_batch()`` through the emulator: concurrency, pacing, order, partial failures, cancellation.

Timing is read from the creation times the emulator records (``date_created``), with margins
wide enough for a loaded machine; batches stay small.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from messaging_core import (
    BatchProgress,
    CapabilityNotSupportedError,
    ConnectorErrorCodes,
    Message,
    MessageBatch,
)
from messaging_twilio_sms import TwilioChannelSchemas, TwilioErrorCodes, TwilioSmsConnector
from messaging_twilio_sms.emulator import TwilioEmulator

Maker = Callable[..., Awaitable[TwilioSmsConnector]]
Sms = Callable[..., Message]
SERVICE = "MG" + "0123456789abcdef" * 2


def _receivers(count: int) -> list[str]:
    return [f"+1555123{i:04d}" for i in range(count)]


def _creation_times(emulator: TwilioEmulator) -> list[float]:
    return sorted(message.date_created for message in emulator.messages.values())


def _most_within(times: list[float], window: float) -> int:
    """The largest number of creations inside any time window of ``window`` seconds."""
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


# -- concurrency and pacing -----------------------------------------------------------------------------


async def test_concurrency_argument_bounds_requests_in_flight(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms
) -> None:
    emulator.latency = 0.1  # every request takes 100 ms: requests in flight together finish together
    connector = await make_connector()
    result = await connector.send_batch([sms(to=to) for to in _receivers(6)], concurrency=2)
    assert result.is_complete_success, result.counts()
    times = _creation_times(emulator)
    assert len(times) == 6
    # Each of the two slots creates at most one message per 100 ms: any 90 ms window holds two at most.
    assert _most_within(times, 0.09) <= 2
    assert times[-1] - times[0] >= 0.15

    emulator.reset()
    unbounded = await connector.send_batch([sms(to=to) for to in _receivers(6)], concurrency=6)
    assert unbounded.is_complete_success
    assert _most_within(_creation_times(emulator), 0.09) == 6  # one wave: the bound above was real


async def test_max_concurrency_setting_is_the_default_bound(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms
) -> None:
    emulator.latency = 0.1
    connector = await make_connector(MaxConcurrency=2)
    assert connector.batch_concurrency() == 2
    result = await connector.send_batch([sms(to=to) for to in _receivers(4)])
    assert result.is_complete_success
    assert _most_within(_creation_times(emulator), 0.09) <= 2


@pytest.mark.parametrize("where", ["setting", "argument"])
async def test_messages_per_second_paces_the_batch(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, where: str
) -> None:
    rate = 20.0  # one every 50 ms
    if where == "setting":
        connector = await make_connector(MessagesPerSecond=rate)
        result = await connector.send_batch([sms(to=to) for to in _receivers(5)], concurrency=5)
    else:
        connector = await make_connector()
        assert connector.batch_rate() is None
        result = await connector.send_batch(
            [sms(to=to) for to in _receivers(5)], concurrency=5, messages_per_second=rate
        )
    assert result.is_complete_success
    times = _creation_times(emulator)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 0.02, gaps  # 50 ms apart, less the jitter of a busy machine
    assert times[-1] - times[0] >= 0.15


# -- outcomes --------------------------------------------------------------------------------------------


async def test_partial_failures_never_abort_the_rest(emulator: TwilioEmulator, make_connector: Maker, sms: Sms) -> None:
    emulator.inject("500", match_to="+15551239999")
    connector = await make_connector()
    messages = [
        sms(to="+15551230001"),
        sms(to="+15005550001"),  # Twilio: 21211
        sms(to="+15551230002"),
        sms(to="12345"),  # not E.164: refused before any request
        sms(to="+15005550004"),  # Twilio: 21610 (unsubscribed)
        sms(to="+15551230003", sender="+15005550007"),  # Twilio: 21606
        sms(to="+15551239999"),  # injected 500
        sms(to="+15551230004"),
    ]
    batch = MessageBatch(messages)
    result = await connector.send_batch(batch, concurrency=3)
    assert result.batch_id == batch.id
    assert list(result.results) == [m.id for m in messages]
    codes = [r.error_code for r in result.results.values()]
    assert codes == [
        None,
        TwilioErrorCodes.INVALID_RECIPIENT,
        None,
        TwilioErrorCodes.INVALID_RECIPIENT,
        TwilioErrorCodes.RECIPIENT_UNSUBSCRIBED,
        TwilioErrorCodes.INVALID_SENDER,
        TwilioErrorCodes.TEMPORARY_FAILURE,
        None,
    ]
    sids = [r.value.remote_message_id for r in result.results.values() if r.value is not None]
    assert sorted(sids) == sorted(emulator.messages)
    assert [emulator.messages[sid].to for sid in sids] == ["+15551230001", "+15551230002", "+15551230004"]
    assert emulator.create_requests == 7  # the invalid one never left
    assert result.counts() == {
        "sent": 3,
        TwilioErrorCodes.INVALID_RECIPIENT: 2,
        TwilioErrorCodes.RECIPIENT_UNSUBSCRIBED: 1,
        TwilioErrorCodes.INVALID_SENDER: 1,
        TwilioErrorCodes.TEMPORARY_FAILURE: 1,
    }


async def test_async_generator_input(emulator: TwilioEmulator, make_connector: Maker, sms: Sms) -> None:
    produced: list[Message] = []

    async def messages() -> AsyncIterator[Message]:
        for to in _receivers(5):
            await asyncio.sleep(0)
            message = sms(to=to)
            produced.append(message)
            yield message

    connector = await make_connector()
    result = await connector.send_batch(messages(), concurrency=2)
    assert list(result.results) == [m.id for m in produced]
    assert result.is_complete_success
    assert len(emulator.messages) == 5
    assert [emulator.messages[r.value.remote_message_id].to for r in result.results.values() if r.value] == (
        _receivers(5)
    )


async def test_stream_yields_each_result_once(emulator: TwilioEmulator, make_connector: Maker, sms: Sms) -> None:
    connector = await make_connector()
    messages = [sms(to=to) for to in _receivers(3)] + [sms(to="+15005550002")]
    seen = {m.id: r async for m, r in connector.send_stream(iter(messages), concurrency=2)}
    assert set(seen) == {m.id for m in messages}
    assert seen[messages[-1].id].error_code == TwilioErrorCodes.INVALID_RECIPIENT
    assert sum(r.is_success for r in seen.values()) == len(emulator.messages) == 3


async def test_bulk_variant_sends_through_the_messaging_service(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms
) -> None:
    connector = await make_connector(TwilioChannelSchemas.BULK_SMS, MessagingServiceSid=SERVICE)
    result = await connector.send_batch([sms(to=to, sender=None) for to in _receivers(3)])
    assert result.is_complete_success
    for stored in emulator.messages.values():
        assert stored.params["MessagingServiceSid"] == SERVICE
        assert "From" not in stored.params


async def test_simple_variant_has_no_batch(make_connector: Maker, sms: Sms) -> None:
    connector = await make_connector(TwilioChannelSchemas.SIMPLE_SMS)
    with pytest.raises(CapabilityNotSupportedError):
        await connector.send_batch([sms()])


# -- cancellation ------------------------------------------------------------------------------------------


async def test_cancellation_leaves_a_truthful_result_for_every_message(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms
) -> None:
    emulator.latency = 0.02  # keeps requests in flight when the batch is cancelled
    connector = await make_connector()
    receivers = _receivers(12)
    receivers[1] = "+15005550003"  # refused by Twilio: a failure with a code
    messages = [sms(to=to) for to in receivers]
    cancel = asyncio.Event()
    progress_seen: list[int] = []

    def on_progress(progress: BatchProgress) -> None:
        progress_seen.append(progress.done)
        if progress.done == 3:
            cancel.set()

    result = await connector.send_batch(messages, concurrency=3, on_progress=on_progress, cancel=cancel)

    assert list(result.results) == [m.id for m in messages]
    assert progress_seen == list(range(1, 13))
    outcomes = list(result.results.values())
    sent = [r for r in outcomes if r.is_success]
    refused = [r for r in outcomes if r.error is not None and r.error_code != ConnectorErrorCodes.NOT_ATTEMPTED]
    skipped = [r for r in outcomes if r.error_code == ConnectorErrorCodes.NOT_ATTEMPTED]
    assert len(sent) + len(refused) + len(skipped) == 12
    assert skipped, "cancelling after three results left nothing unattempted"
    assert all(r.error is not None and r.error.retryable for r in skipped)
    assert [r.error_code for r in refused] == [TwilioErrorCodes.INVALID_RECIPIENT]
    # Every success names a message Twilio holds, and Twilio holds nothing else.
    assert len(sent) == len(emulator.messages)
    assert {r.value.remote_message_id for r in sent if r.value} == set(emulator.messages)
    # Nothing unattempted reached Twilio.
    attempted = {m.id for m, r in zip(messages, outcomes, strict=True) if r.error_code != "NOT_ATTEMPTED"}
    assert emulator.create_requests == len(attempted)
