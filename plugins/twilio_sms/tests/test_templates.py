"""Content templates: ``TemplateContent("HX…", {...})`` → ``ContentSid`` + ``ContentVariables``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest

from messaging_core import Capability, Message, MultipartContent, TemplateContent, TextContent
from messaging_twilio_sms import TwilioChannelSchemas, TwilioSmsConnector
from messaging_twilio_sms.emulator import TwilioEmulator

Maker = Callable[..., Awaitable[TwilioSmsConnector]]
Sms = Callable[..., Message]
CONTENT_SID = "HX" + "ab" * 16


async def test_a_template_is_sent_as_content_sid_and_variables(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms
) -> None:
    connector = await make_connector()
    assert Capability.TEMPLATES in connector.schema.capabilities
    message = attrs.evolve(sms(), content=TemplateContent(CONTENT_SID, {"1": "Ada", "2": "vendredi à 10 h"}))
    sent = await connector.send_message(message)
    assert sent.is_success, sent.error
    assert sent.value is not None
    stored = emulator.messages[sent.value.remote_message_id]
    assert stored.params["ContentSid"] == CONTENT_SID
    assert json.loads(stored.params["ContentVariables"]) == {"1": "Ada", "2": "vendredi à 10 h"}
    assert "Body" not in stored.params
    assert stored.body == f"{CONTENT_SID} 1=Ada 2=vendredi à 10 h"  # the emulator's plain rendering


async def test_a_template_without_variables_sends_no_content_variables(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms
) -> None:
    connector = await make_connector(TwilioChannelSchemas.SIMPLE_SMS)
    sent = await connector.send_message(attrs.evolve(sms(), content=TemplateContent(CONTENT_SID)))
    assert sent.is_success, sent.error
    assert sent.value is not None
    assert "ContentVariables" not in emulator.messages[sent.value.remote_message_id].params


@pytest.mark.parametrize(
    ("content", "path"),
    [
        (TemplateContent("HX123"), "$.content.template_id"),
        (TemplateContent("MG" + "ab" * 16), "$.content.template_id"),
        (TemplateContent(CONTENT_SID, {"1": 5}), "$.content.parameters.1"),
        (MultipartContent((TextContent("hi"), TemplateContent(CONTENT_SID))), "$.content.parts[1]"),
    ],
    ids=["short", "not-hx", "number-variable", "with-text"],
)
async def test_a_bad_template_is_refused_before_any_request(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, content: Any, path: str
) -> None:
    connector = await make_connector()
    result = await connector.send_message(attrs.evolve(sms(), content=content))
    assert result.error is not None
    assert [i.path for i in result.error.issues] == [path]
    assert emulator.create_requests == 0


async def test_a_template_cannot_be_probed_so_it_is_held(make_connector: Maker, sms: Sms) -> None:
    """Twilio's list shows no template variables: a template send in doubt is held, never matched or resent."""
    connector = await make_connector()
    message = attrs.evolve(sms(), content=TemplateContent(CONTENT_SID, {"1": "Ada"}))
    assert await connector.find_sent(message, datetime.now(UTC)) is None
