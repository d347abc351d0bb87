"""The echo connector keeps the promises of every connector (messaging_core's conformance kit)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from messaging_core import ChannelConnector, ChannelRegistry, Endpoint, Message, TextContent
from messaging_core.testing import ConnectorConformance

from messaging_echo import plugin
from messaging_echo.connector import MESSAGES_PATH, build_payload

TOKEN = "echo-test-token-0123456789"


class FakeEchoService:
    """The echo service on loopback: keeps what it accepts and answers with it."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_post(MESSAGES_PATH, self.create)

    async def create(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": "unauthorized"}, status=401)
        body = await request.json()
        if body["to"] == "nobody":
            return web.json_response({"error": "no such user"}, status=404)
        self.messages.append(body)
        return web.json_response({"id": f"E{len(self.messages):06d}", **body}, status=201)


def message_to(user: str, text: str = "Hello") -> Message:
    return Message(uuid.uuid4().hex, None, Endpoint.user(user), TextContent(text))


class TestEchoConnector(ConnectorConformance):
    sensitive_values = (TOKEN,)

    @pytest.fixture
    async def connector_factory(self, aiohttp_server: Any) -> Callable[..., Any]:
        self.service = FakeEchoService()
        server = await aiohttp_server(self.service.app)
        registry = ChannelRegistry(plugins=[plugin])

        async def factory(variant: str | None = None, /, **overrides: Any) -> ChannelConnector:
            parameters = {"Token": TOKEN, "BaseUrl": str(server.make_url("/")), **overrides}
            return registry.create_connector({"channel": "echo", "schema": variant, "parameters": parameters})

        return factory

    def valid_message(self) -> Message:
        return message_to("alice")

    def invalid_message(self) -> Message:
        # Too long, and an e-mail receiver on a channel of user ids: refused before any request.
        return Message(uuid.uuid4().hex, None, Endpoint.email("a@example.com"), TextContent("x" * 281))

    def failing_message(self) -> Message:
        return message_to("nobody")

    def sent_count(self, connector: ChannelConnector) -> int:
        return len(self.service.messages)  # proves, on the service's side, that nothing was sent


def test_the_payload_is_built_without_a_network() -> None:
    assert build_payload(message_to("bob", "Hi")) == {"to": "bob", "text": "Hi"}
