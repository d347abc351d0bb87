"""The built-in memory connector passes the conformance suite plugin authors run.

The memory channel has no credentials; a private mailbox name plays the part of a secret here
(whoever knows it reads the messages), marked sensitive in the settings the factory builds.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from messaging_core import (
    ChannelConnector,
    ChannelRegistry,
    ConnectionSettings,
    Endpoint,
    Message,
    MessageStatus,
    SendResult,
    StatusUpdate,
    TextContent,
    WebhookRequest,
    converters,
)
from messaging_core.testing import ConnectorConformance

REFUSED_RECEIVER = "+15550009999"


class TestMemoryConnector(ConnectorConformance):
    sensitive_values = ()  # set per test: the mailbox name is generated in connector_factory

    @pytest.fixture
    async def connector_factory(
        self, messaging_registry: ChannelRegistry
    ) -> Callable[..., Awaitable[ChannelConnector]]:
        mailbox = f"private-mailbox-{uuid.uuid4().hex}"
        self.sensitive_values = (mailbox,)

        async def factory(variant: str | None = None, /, **overrides: Any) -> ChannelConnector:
            info = messaging_registry.channel("memory")
            schema = messaging_registry.schema("memory", variant)
            settings = ConnectionSettings({"FailAddresses": [REFUSED_RECEIVER], **overrides})
            settings.add_parameter("Mailbox", mailbox, sensitive=True)
            return info.connector_class(schema, settings, plugins=messaging_registry.host, name="memory-under-test")

        return factory

    def valid_message(self) -> Message:
        return Message(
            id=uuid.uuid4().hex,
            sender=Endpoint.phone("+15550001111"),
            receiver=Endpoint.phone("+15550002222"),
            content=TextContent("hello"),
            properties={"Tag": "conformance"},
        )

    def invalid_message(self) -> Message:
        # No receiver, and a property the strict schema does not know: two issues, no I/O.
        return Message(
            id=uuid.uuid4().hex,
            sender=Endpoint.phone("+15550001111"),
            receiver=None,
            content=TextContent("hello"),
            properties={"NotAProperty": 1},
        )

    def failing_message(self) -> Message:
        return Message(uuid.uuid4().hex, None, Endpoint.phone(REFUSED_RECEIVER), TextContent("refused"))

    # The memory channel's webhooks are its own JSON (a Message, a StatusUpdate), unsigned.
    webhooks_signed = False

    def inbound_webhook(self, connector: ChannelConnector) -> WebhookRequest:
        return WebhookRequest.from_json(converters.dumps(self.valid_message()))

    def forged_webhook(self, connector: ChannelConnector) -> WebhookRequest:
        return WebhookRequest.from_json({"not": "a message"})

    def status_webhook(self, connector: ChannelConnector, sent: SendResult) -> WebhookRequest:
        update = StatusUpdate(sent.message_id, MessageStatus.DELIVERED, remote_message_id=sent.remote_message_id)
        return WebhookRequest.from_json(converters.dumps(update))

    def sent_count(self, connector: ChannelConnector) -> int:
        sent: list[Message] = connector.mailbox.sent  # type: ignore[attr-defined]
        return len(sent)

    async def count_remote_messages(self, connector: ChannelConnector) -> int:
        health = await connector.get_health()
        count: int = health.metrics["sent"]
        return count
