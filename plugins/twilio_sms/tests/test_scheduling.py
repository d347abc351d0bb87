"""Scheduled sends (``SendAt``) and cancelling them, against the emulator with a clock the test moves.

Twilio: ``ScheduleType=fixed`` with ``SendAt`` in UTC (``YYYY-MM-DDTHH:MM:SSZ``), more than 300 s and
at most 35 days ahead, through a Messaging Service; ``Status=canceled`` cancels it. The connector
checks all of it before any request; the emulator enforces the same rules and sends nothing until
its clock reaches ``SendAt``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from messaging_core import Capability, ConnectorErrorCodes, Message, MessageStatus
from messaging_twilio_sms import TwilioChannelSchemas, TwilioErrorCodes, TwilioSmsConnector
from messaging_twilio_sms.emulator import TwilioEmulator

Maker = Callable[..., Awaitable[TwilioSmsConnector]]
Sms = Callable[..., Message]
SERVICE = "MG" + "5" * 32


def _at(seconds: float, tz: timezone = UTC) -> str:
    return datetime.fromtimestamp(time.time() + seconds, tz).isoformat()


async def test_a_scheduled_send_is_sent_in_utc_and_waits_for_its_time(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms
) -> None:
    emulator.status_interval = 0.01
    connector = await make_connector(MessagingServiceSid=SERVICE)
    when = datetime.now(timezone(timedelta(hours=2))) + timedelta(hours=1)  # given with an offset
    sent = await connector.send_message(sms(SendAt=when.isoformat()))
    assert sent.is_success, sent.error
    assert sent.value is not None
    assert sent.value.status is MessageStatus.SCHEDULED
    stored = emulator.messages[sent.value.remote_message_id]
    assert stored.params["ScheduleType"] == "fixed"
    assert stored.params["SendAt"] == when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    await asyncio.sleep(0.1)  # ten status intervals: nothing moves before SendAt
    assert stored.status == "scheduled"
    real = time.time
    emulator.wall_clock = lambda: real() + 3601  # an hour later at the emulator
    await emulator.wait_for_status(stored.sid, "delivered", timeout=5)


async def test_a_scheduled_message_is_cancelled_by_our_id_or_its_sid(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms
) -> None:
    connector = await make_connector(MessagingServiceSid=SERVICE)
    first, second = sms(SendAt=_at(3600)), sms(SendAt=_at(7200))
    for message in (first, second):
        assert (await connector.send_message(message)).is_success
    by_id = await connector.cancel_scheduled(first.id)
    assert by_id.is_success, by_id.error
    assert by_id.value is not None
    assert (by_id.value.message_id, by_id.value.status) == (first.id, MessageStatus.CANCELLED)
    sid = next(s for s, m in emulator.messages.items() if m.status == "scheduled")
    by_sid = await connector.cancel_scheduled(sid)
    assert by_sid.is_success, by_sid.error
    assert {m.status for m in emulator.messages.values()} == {"canceled"}
    again = await connector.cancel_scheduled(first.id)  # no longer scheduled
    assert again.error_code == TwilioErrorCodes.NOT_CANCELLABLE
    assert again.error is not None
    assert again.error.details["twilio_code"] == 30409
    unknown = await connector.cancel_scheduled("never-sent")
    assert unknown.error_code == ConnectorErrorCodes.NOT_CANCELLABLE


@pytest.mark.parametrize(
    ("send_at", "fragment"),
    [
        (lambda: _at(299), "more than 300 seconds ahead"),
        (lambda: _at(-60), "more than 300 seconds ahead"),
        (lambda: _at(35 * 86400 + 60), "at most 35 days ahead"),
        (lambda: "2026-02-30T10:00:00Z", "is not a real date and time"),
    ],
    ids=["too-soon", "past", "too-far", "no-such-day"],
)
async def test_a_send_time_outside_twilios_window_is_refused_before_any_request(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, send_at: Callable[[], str], fragment: str
) -> None:
    connector = await make_connector(MessagingServiceSid=SERVICE)
    result = await connector.send_message(sms(SendAt=send_at()))
    assert result.error is not None
    assert [i.path for i in result.error.issues] == ["$.properties.SendAt"]
    assert fragment in result.error.issues[0].message
    assert emulator.create_requests == 0


@pytest.mark.parametrize("value", ["2026-12-05T10:00:00", "tomorrow", "2026-12-05 10:00:00Z", ""])
async def test_a_send_time_without_an_offset_is_refused(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, value: str
) -> None:
    connector = await make_connector(MessagingServiceSid=SERVICE)
    result = await connector.send_message(sms(SendAt=value))
    assert result.error is not None
    assert {(i.path, i.code) for i in result.error.issues} == {("$.properties.SendAt", "INVALID_FORMAT")}
    assert emulator.create_requests == 0


async def test_scheduling_needs_a_messaging_service(emulator: TwilioEmulator, make_connector: Maker, sms: Sms) -> None:
    connector = await make_connector()
    result = await connector.send_message(sms(SendAt=_at(3600)))
    assert result.error is not None
    assert [(i.path, i.code) for i in result.error.issues] == [("$.properties.SendAt", "REQUIRED")]
    assert "35118" in result.error.issues[0].message
    assert emulator.create_requests == 0


async def test_the_emulator_enforces_the_same_window(emulator: TwilioEmulator, make_connector: Maker, sms: Sms) -> None:
    """A connector whose clock is wrong (here: 10 minutes fast) is caught by the emulator's own check."""
    connector = await make_connector(MessagingServiceSid=SERVICE)
    real = time.time
    connector.clock = lambda: real() - 600
    result = await connector.send_message(sms(SendAt=_at(200)))
    assert result.error is not None
    assert result.error.details["twilio_code"] == 35114
    assert emulator.messages == {}


async def test_simple_sms_cannot_schedule(make_connector: Maker, sms: Sms) -> None:
    connector = await make_connector(TwilioChannelSchemas.SIMPLE_SMS)
    assert Capability.SCHEDULED_SENDING not in connector.schema.capabilities
    result = await connector.send_message(sms(SendAt=_at(3600)))
    assert result.error is not None
    assert [(i.path, i.code) for i in result.error.issues] == [("$.properties.SendAt", "UNKNOWN_FIELD")]
    with pytest.raises(Exception, match="SCHEDULED_SENDING"):
        await connector.cancel_scheduled("x")


async def test_the_window_is_more_than_300_seconds_and_at_most_35_days(make_connector: Maker, sms: Sms) -> None:
    """Twilio's own bounds, to the second: 300 s ahead is refused (35114), 35 days ahead is taken."""
    connector = await make_connector(MessagingServiceSid=SERVICE)
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    connector.clock = now.timestamp

    def problems(value: datetime | str) -> list[str]:
        send_at = value if isinstance(value, str) else value.strftime("%Y-%m-%dT%H:%M:%SZ")
        return [issue.message for issue in connector.validate_message(sms(SendAt=send_at))]

    assert problems(now + timedelta(seconds=300)) == [
        "must be more than 300 seconds ahead (Twilio refuses it: 35114/35115)"
    ]
    assert problems(now + timedelta(seconds=301)) == []
    assert problems(now + timedelta(days=35)) == []
    assert problems(now + timedelta(days=35, seconds=1)) == [
        "must be at most 35 days ahead (Twilio refuses it: 35114/35115)"
    ]
    assert problems("2026-12-32T10:00:00Z") == ["is not a real date and time"]
