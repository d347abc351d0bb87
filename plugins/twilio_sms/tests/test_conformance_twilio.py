"""The Twilio connector passes the core's conformance suite, against the local emulator."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import pytest

from messaging_core import (
    ChannelConnector,
    ConnectionSettings,
    Endpoint,
    Message,
    SendResult,
    TextContent,
    WebhookRequest,
)
from messaging_core.testing import ConnectorConformance
from messaging_twilio_sms import TwilioSmsConnector
from messaging_twilio_sms.emulator import TwilioEmulator
from messaging_twilio_sms.webhooks import SIGNATURE_HEADER, compute_signature

SERVICE_SID = "MG" + "0123456789abcdef" * 2


class TestTwilioSmsConnector(ConnectorConformance):
    sensitive_values = ()  # set per test: the emulator makes up its auth token when it starts
    emulator: TwilioEmulator

    @pytest.fixture
    async def connector_factory(self, emulator: TwilioEmulator) -> Callable[..., Awaitable[ChannelConnector]]:
        self.emulator = emulator
        basic = base64.b64encode(f"{emulator.account_sid}:{emulator.auth_token}".encode()).decode()
        self.sensitive_values = (emulator.auth_token, basic)

        async def factory(variant: str | None = None, /, **overrides: Any) -> ChannelConnector:
            schema = TwilioSmsConnector.schema_variants[variant or "TwilioSms"]
            parameters: dict[str, Any] = {
                "ApiBaseUrl": emulator.base_url,
                "AccountSid": emulator.account_sid,
                "AuthToken": emulator.auth_token,
            }
            service = schema.parameter_spec("MessagingServiceSid")
            if service is not None and service.required:  # BulkSms sends through a Messaging Service
                parameters["MessagingServiceSid"] = SERVICE_SID
            parameters.update(overrides)
            return TwilioSmsConnector(schema, ConnectionSettings(parameters), name="twilio-under-test")

        return factory

    def valid_message(self) -> Message:
        return Message(
            id=uuid.uuid4().hex,
            sender=Endpoint.phone("+15005550006"),
            receiver=Endpoint.phone("+15551230001"),
            content=TextContent("conformance"),
            properties={"ValidityPeriod": 600},
        )

    def invalid_message(self) -> Message:
        # A receiver that is not E.164 and a property Twilio's schema does not know: no I/O.
        return Message(
            id=uuid.uuid4().hex,
            sender=Endpoint.phone("+15005550006"),
            receiver=Endpoint.phone("555-0100"),
            content=TextContent("conformance"),
            properties={"NotATwilioProperty": 1},
        )

    def failing_message(self) -> Message:
        # Twilio's test number for an invalid 'To' (21211): valid for the schema, refused by the API.
        return Message(
            uuid.uuid4().hex, Endpoint.phone("+15005550006"), Endpoint.phone("+15005550001"), TextContent("x")
        )

    def _signed(self, fields: dict[str, str], url: str, token: str | None = None) -> WebhookRequest:
        signature = compute_signature(token or self.emulator.auth_token, url, fields)
        return WebhookRequest.from_form(urlencode(fields), url=url, headers={SIGNATURE_HEADER: signature})

    def _inbound_fields(self) -> dict[str, str]:
        return {
            "MessageSid": "SM" + uuid.uuid4().hex,
            "AccountSid": self.emulator.account_sid,
            "From": "+15551230001",
            "To": "+15005550006",
            "Body": "conformance inbound",
            "NumMedia": "0",
        }

    def inbound_webhook(self, connector: ChannelConnector) -> WebhookRequest:
        return self._signed(self._inbound_fields(), "https://hooks.example.com/twilio/sms")

    def forged_webhook(self, connector: ChannelConnector) -> WebhookRequest:
        return self._signed(self._inbound_fields(), "https://hooks.example.com/twilio/sms", token="not-the-auth-token")

    def status_webhook(self, connector: ChannelConnector, sent: SendResult) -> WebhookRequest:
        assert sent.remote_message_id is not None
        fields = {
            "MessageSid": sent.remote_message_id,
            "AccountSid": self.emulator.account_sid,
            "MessageStatus": "delivered",
        }
        return self._signed(fields, f"https://hooks.example.com/twilio/status?MessageId={sent.message_id}")

    def sent_count(self, connector: ChannelConnector) -> int:
        return len(self.emulator.messages)

    async def count_remote_messages(self, connector: ChannelConnector) -> int:
        return self.emulator.create_requests
