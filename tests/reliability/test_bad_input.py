"""Bad messages get a clear error naming what is wrong and where — and nothing is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from messaging_core import (
    Capability,
    ConnectorErrorCodes,
    Endpoint,
    MediaContent,
    Message,
    MessageBuilder,
    MultipartContent,
    TextContent,
)
from messaging_twilio_sms import TwilioChannelSchemas, TwilioSmsConnector
from messaging_twilio_sms.emulator import TwilioEmulator

SENDER = Endpoint.phone("+15005550006")
RECEIVER = Endpoint.phone("+15551230001")


def message(
    content: Any = None,
    *,
    sender: Endpoint | None = SENDER,
    receiver: Endpoint | None = RECEIVER,
    properties: dict[str, Any] | None = None,
) -> Message:
    return Message("m-1", sender, receiver, content if content is not None else TextContent("hello"), properties or {})


CASES = [
    (
        "receiver not E.164",
        message(receiver=Endpoint.phone("5551230001")),
        ConnectorErrorCodes.INVALID_RECIPIENT,
        "$.receiver.address",
    ),
    (
        "receiver with letters",
        message(receiver=Endpoint.phone("+1555CALLNOW")),
        ConnectorErrorCodes.INVALID_RECIPIENT,
        "$.receiver.address",
    ),
    (
        "sender not E.164",
        message(sender=Endpoint.phone("0044 20 7946 0000")),
        ConnectorErrorCodes.INVALID_SENDER,
        "$.sender.address",
    ),
    ("empty body, no media", message(TextContent("")), "MESSAGE_VALIDATION_FAILED", "$.content.text"),
    ("1,601-character body", message(TextContent("x" * 1601)), "MESSAGE_VALIDATION_FAILED", "$.content.text"),
    (
        "11 media URLs",
        message(MultipartContent([MediaContent(f"https://x.io/{i}.png") for i in range(11)])),
        "MESSAGE_VALIDATION_FAILED",
        "$.content.parts",
    ),
    ("non-http media URL", message(MediaContent("ftp://x.io/a.png")), "MESSAGE_VALIDATION_FAILED", "$.content.url"),
    (
        "unknown property (strict)",
        message(properties={"ValidityPeriodd": 60}),
        "MESSAGE_VALIDATION_FAILED",
        "$.properties.ValidityPeriodd",
    ),
    (
        "property of the wrong type",
        message(properties={"ValidityPeriod": "60"}),
        "MESSAGE_VALIDATION_FAILED",
        "$.properties.ValidityPeriod",
    ),
    (
        "bool where an integer goes",
        message(properties={"AttemptLimits": True}),
        "MESSAGE_VALIDATION_FAILED",
        "$.properties.AttemptLimits",
    ),
    (
        "property out of range",
        message(properties={"ValidityPeriod": 36001}),
        "MESSAGE_VALIDATION_FAILED",
        "$.properties.ValidityPeriod",
    ),
]


@pytest.fixture
async def emulator() -> AsyncIterator[TwilioEmulator]:
    async with TwilioEmulator(auto_advance=False) as emu:
        yield emu


def connector_for(emu: TwilioEmulator, schema: Any = TwilioChannelSchemas.TWILIO_SMS) -> TwilioSmsConnector:
    return TwilioSmsConnector(
        schema, {"AccountSid": emu.account_sid, "AuthToken": emu.auth_token, "ApiBaseUrl": emu.base_url}
    )


@pytest.mark.parametrize(("label", "bad", "code", "path"), CASES, ids=[c[0] for c in CASES])
async def test_bad_message_is_refused_before_any_request(
    emulator: TwilioEmulator, label: str, bad: Message, code: str, path: str
) -> None:
    async with connector_for(emulator) as sms:
        result = await sms.send_message(bad)
    assert not result.is_success
    assert result.error is not None
    assert result.error.code == code, result.error
    assert any(issue.path.startswith(path) for issue in result.error.issues), result.error.issues
    assert path.split(".")[-1] in result.error.message  # the summary names where
    assert emulator.create_requests == 0, f"{label}: a request reached the provider"


async def test_a_property_the_variant_removed_is_refused(emulator: TwilioEmulator) -> None:
    # SimpleSms has no status callbacks: ProvideCallback is not one of its properties.
    async with connector_for(emulator, TwilioChannelSchemas.SIMPLE_SMS) as sms:
        result = await sms.send_message(message(properties={"ProvideCallback": True}))
    assert result.error is not None
    assert [i.path for i in result.error.issues] == ["$.properties.ProvideCallback"]
    assert emulator.create_requests == 0


async def test_all_problems_are_reported_at_once(emulator: TwilioEmulator) -> None:
    bad = message(TextContent("x" * 1601), receiver=Endpoint.phone("123"), properties={"Nope": 1, "MaxPrice": "1"})
    async with connector_for(emulator) as sms:
        result = await sms.send_message(bad)
    assert result.error is not None
    paths = {issue.path for issue in result.error.issues}
    assert paths == {"$.content.text", "$.receiver.address", "$.properties.Nope", "$.properties.MaxPrice"}
    assert emulator.create_requests == 0


async def test_media_on_a_text_only_variant_is_refused(emulator: TwilioEmulator) -> None:
    mms = MessageBuilder().with_sender(SENDER).with_receiver(RECEIVER).with_text_content("hi")
    mms.with_media_content("https://x.io/a.png", "image/png")
    text_only = TwilioChannelSchemas.SIMPLE_SMS.derive(
        "Text-only SMS", remove_capabilities=Capability.MEDIA_ATTACHMENTS, remove_content_types=["media", "multipart"]
    )
    async with connector_for(emulator, text_only) as sms:
        result = await sms.send_message(mms.build())
    assert result.error_code == "MESSAGE_VALIDATION_FAILED"
    assert emulator.create_requests == 0
