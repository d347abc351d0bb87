"""docs/webhooks.md: the "your own web framework" example runs as written, and fails closed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from messaging_core import ChannelRegistry, Message, hookimpl

DOC = Path(__file__).resolve().parents[1] / "docs" / "webhooks.md"
ACCOUNT = "AC" + "d" * 32
TOKEN = "e" * 32


def _framework_example() -> str:
    section = DOC.read_text(encoding="utf-8").split("## From your own web framework", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the section has a Python example"
    return match.group(1)


class Received:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    @hookimpl
    def message_received(self, connector: Any, message: Message) -> None:
        self.messages.append(message)


@pytest.fixture
async def example() -> AsyncIterator[tuple[dict[str, Any], Received]]:
    registry = ChannelRegistry.discover()
    received = Received()
    registry.host.register(received)
    sms = registry.create_connector(
        {"channel": "twilio_sms", "parameters": {"AccountSid": ACCOUNT, "AuthToken": TOKEN}}, name="sms"
    )
    async with sms:
        namespace: dict[str, Any] = {"connectors": {"sms": sms}}
        exec(compile(_framework_example(), str(DOC), "exec"), namespace)
        yield namespace, received


async def test_the_example_dispatches_a_signed_webhook_and_refuses_a_forged_one(
    example: tuple[dict[str, Any], Received],
) -> None:
    namespace, received = example
    on_webhook = namespace["on_webhook"]
    fields = {"MessageSid": "SM" + "1" * 32, "AccountSid": ACCOUNT, "From": "+15557654321", "To": "+15005550006"}
    path_qs = "/twilio/sms?tenant=1"
    signature = RequestValidator(TOKEN).compute_signature("https://hooks.example.com" + path_qs, fields)
    form = "application/x-www-form-urlencoded"
    body = urlencode(fields).encode()

    status, content_type, answer = await on_webhook(
        "sms", "messages", body, path_qs, {"X-Twilio-Signature": signature}, form
    )
    assert (status, content_type) == (200, "text/xml")
    assert answer.endswith(b"<Response/>")
    assert [m.id for m in received.messages] == [fields["MessageSid"]]

    forged = urlencode({**fields, "MessageSid": "SM" + "2" * 32}).encode()
    status, _, _ = await on_webhook("sms", "messages", forged, path_qs, {"X-Twilio-Signature": signature}, form)
    assert status == 403
    json_forgery = b'{"MessageSid": "SM3", "From": "+1", "To": "+2"}'
    unsigned = RequestValidator(TOKEN).compute_signature("https://hooks.example.com" + path_qs, {})
    status, _, _ = await on_webhook(
        "sms", "messages", json_forgery, path_qs, {"X-Twilio-Signature": unsigned}, "application/json"
    )
    assert status == 403
    assert len(received.messages) == 1
