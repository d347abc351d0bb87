"""Echo: a channel for a tiny HTTP service that accepts a message and answers with it."""

from __future__ import annotations

from typing import Any, ClassVar

import aiohttp
from messaging_core import (
    Capability,
    ChannelConnector,
    ChannelSchema,
    ConnectorErrorCodes,
    ConnectorResult,
    EndpointSpec,
    FailureOutcome,
    Message,
    MessageStatus,
    ParameterSpec,
    SendResult,
)

MESSAGES_PATH = "/v1/messages"

ECHO = ChannelSchema(
    provider="echo",
    channel_type="chat",
    version="1.0.0",
    display_name="Echo",
    capabilities=Capability.SEND_MESSAGES | Capability.BULK_MESSAGING,
    parameters=[
        ParameterSpec("Token", required=True, sensitive=True, min_length=12),
        ParameterSpec("BaseUrl", required=True, pattern="^https?://"),
        ParameterSpec("Timeout", "number", default=5, minimum=1, maximum=30),
    ],
    content_types=["text"],
    endpoints=[EndpointSpec("user_id", address_pattern="^[a-z][a-z0-9_]{0,31}$")],
    max_text_length=280,
)

ECHO_SINGLE = ECHO.derive("Echo (one message at a time)", remove_capabilities=Capability.BULK_MESSAGING)

# Answers of the echo service that are not a plain refusal: (code, retryable).
_HTTP_ERRORS = {
    401: (ConnectorErrorCodes.AUTHENTICATION_FAILED, False),
    429: (ConnectorErrorCodes.RATE_LIMITED, True),
    503: (ConnectorErrorCodes.TEMPORARY_FAILURE, True),
}


def build_payload(message: Message) -> dict[str, Any]:
    """The echo service's request body for a validated message (pure: tested without a network)."""
    assert message.receiver is not None  # the schema requires a receiver
    return {"to": message.receiver.address, "text": message.texts()[0]}


class EchoConnector(ChannelConnector):
    """Sends messages to the echo service; one HTTP session per connector."""

    channel_name: ClassVar[str] = "echo"
    master_schema: ClassVar[ChannelSchema] = ECHO
    schema_variants: ClassVar[dict[str, ChannelSchema]] = {"Echo": ECHO, "Single": ECHO_SINGLE}
    credential_parameters: ClassVar[frozenset[str]] = frozenset({"Token"})

    _session: aiohttp.ClientSession | None = None

    async def _initialize(self) -> ConnectorResult[bool]:
        self._session = aiohttp.ClientSession(
            base_url=self.parameters["BaseUrl"],
            headers={"Authorization": f"Bearer {self.parameters['Token']}"},
            timeout=aiohttp.ClientTimeout(total=self.parameters["Timeout"]),
        )
        return ConnectorResult.success(True)

    def preview_message(self, message: Message) -> dict[str, Any]:
        # A dry run never initializes: build from the resolved parameters, and leave the token out.
        url = self.parameters["BaseUrl"].rstrip("/") + MESSAGES_PATH
        return {"method": "POST", "url": url, "json": build_payload(message)}

    async def _send_message(self, message: Message) -> ConnectorResult[SendResult]:
        assert self._session is not None  # READY implies initialized
        try:
            async with self._session.post(MESSAGES_PATH, json=build_payload(message)) as response:
                body = await response.json()
        except aiohttp.ClientConnectorError:
            return ConnectorResult.failure(
                ConnectorErrorCodes.NETWORK_ERROR, "cannot reach the echo service", retryable=True
            )
        except (aiohttp.ClientError, TimeoutError) as err:
            # The request may have been sent: do not let a retry duplicate the message.
            return ConnectorResult.failure(
                ConnectorErrorCodes.OUTCOME_UNKNOWN,
                f"no answer ({type(err).__name__})",
                outcome=FailureOutcome.MAY_HAVE_BEEN_SENT,
            )
        if response.status >= 400:
            code, retryable = _HTTP_ERRORS.get(response.status, (ConnectorErrorCodes.SEND_MESSAGE_ERROR, False))
            return ConnectorResult.failure(
                code, body.get("error", "refused"), retryable=retryable, details={"http_status": response.status}
            )
        # The service answers with the message itself: it is delivered once the answer arrives.
        return ConnectorResult.success(SendResult(message.id, body["id"], MessageStatus.DELIVERED))

    async def _shutdown(self) -> None:
        # Called after a failed initialize too: the session may never have been opened.
        if self._session is not None:
            await self._session.close()
