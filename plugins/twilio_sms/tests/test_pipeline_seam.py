"""The Twilio connector's answers to the send pipeline: pace key, cost, timeout, reconciliation probe."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import attrs
import pytest

from messaging_core import Message, MessageBuilder
from messaging_twilio_sms import TwilioChannelSchemas, TwilioSmsConnector
from messaging_twilio_sms.emulator import TwilioEmulator

SERVICE = "MG" + "0123456789abcdef" * 2


@pytest.fixture
async def emu() -> AsyncIterator[TwilioEmulator]:
    async with TwilioEmulator(auto_advance=False) as emulator:
        yield emulator


def make(emu: TwilioEmulator, **extra: object) -> TwilioSmsConnector:
    settings = {"AccountSid": emu.account_sid, "AuthToken": emu.auth_token, "ApiBaseUrl": emu.base_url, **extra}
    return TwilioSmsConnector(TwilioChannelSchemas.TWILIO_SMS, settings)


def text(body: str, to: str = "+15551230001", sender: str | None = "+15005550006") -> Message:
    builder = MessageBuilder().with_phone_receiver(to).with_text_content(body)
    if sender:
        builder.with_phone_sender(sender)
    return builder.build()


async def test_rate_limit_key_is_the_sender_or_the_messaging_service(emu: TwilioEmulator) -> None:
    async with make(emu) as plain, make(emu, MessagingServiceSid=SERVICE) as pooled:
        message = text("hi")
        assert plain.rate_limit_key(message) == "+15005550006"
        assert pooled.rate_limit_key(message) == SERVICE


async def test_cost_is_the_segment_count_and_timeout_the_request_timeout(emu: TwilioEmulator) -> None:
    async with make(emu, RequestTimeout=7) as sms:
        assert sms.send_cost(text("x" * 160)) == 1
        assert sms.send_cost(text("x" * 161)) == 2
        assert sms.send_cost(text("ж" * 71)) == 2  # UCS-2: 70 per single segment
        assert sms.send_timeout() == 7.0


async def test_probe_finds_the_message_that_was_created(emu: TwilioEmulator) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    async with make(emu) as sms:
        sent = text("Your code is 1234")
        result = await sms.send_message(sent)
        assert result.value is not None
        found = await sms.find_sent(sent, since)
        assert found == [result.value.remote_message_id]
        # Same receiver, other body: not a candidate; a message never sent: no candidate.
        assert await sms.find_sent(text("Your code is 9999"), since) == []
        assert await sms.find_sent(text("Your code is 1234", to="+15551230002"), since) == []
        # Created before the claim: not this attempt.
        later = datetime.now(UTC) + timedelta(seconds=5)
        assert await sms.find_sent(sent, later) == []


async def test_probe_with_a_messaging_service_matches_on_the_service(emu: TwilioEmulator) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    async with make(emu, MessagingServiceSid=SERVICE) as sms:
        sent = text("Campaign", sender=None)
        result = await sms.send_message(sent)
        assert result.value is not None
        assert await sms.find_sent(sent, since) == [result.value.remote_message_id]


async def test_probe_that_cannot_read_the_list_says_so(emu: TwilioEmulator) -> None:
    async with make(emu, AuthToken="wrong-token") as sms:
        assert await sms.find_sent(text("hi"), datetime.now(UTC)) is None


async def test_a_body_twilio_transforms_cannot_be_told_apart(emu: TwilioEmulator) -> None:
    """SmartEncoded: Twilio stores the encoded body, so comparing bodies would call it absent (a resend)."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    async with make(emu) as sms:
        curly = attrs.evolve(text("“Smart” quotes — here"), properties={"SmartEncoded": True})
        assert (await sms.send_message(curly)).is_success
        assert (await sms.find_sent(curly, since)) is None, "cannot tell: held, never resent"
        plain = attrs.evolve(text("plain GSM text"), properties={"SmartEncoded": True})
        result = await sms.send_message(plain)
        assert result.value is not None
        assert await sms.find_sent(plain, since) == [result.value.remote_message_id]  # nothing to transform
        media_only = MessageBuilder().with_phone_receiver("+15551230001").with_phone_sender("+15005550006")
        assert await sms.find_sent(media_only.with_media_content("https://a.example/1.png").build(), since) is None


async def test_the_probe_reads_every_page(emu: TwilioEmulator) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    async with make(emu) as sms:
        first = text("the first of many")
        result = await sms.send_message(first)
        assert result.value is not None
        for index in range(120):  # newer messages to the same number push the first to page 3
            assert (await sms.send_message(text(f"later {index}"))).is_success
        assert await sms.find_sent(first, since) == [result.value.remote_message_id]


async def test_a_request_queued_past_the_deadline_is_not_written(emu: TwilioEmulator) -> None:
    """The campaign pipeline's deadline, checked by the connector after its own queue, right before the write."""
    emu.latency = 0.3
    async with make(emu, MaxConcurrency=1) as sms:
        busy = asyncio.create_task(sms.attempt(text("holds the only slot")))
        await asyncio.sleep(0.05)
        late = await sms.attempt(text("queued behind it"), deadline=time.monotonic() + 0.1)
        assert late.error_code == "NOT_ATTEMPTED"
        assert (await busy).is_success
    assert emu.create_requests == 1
