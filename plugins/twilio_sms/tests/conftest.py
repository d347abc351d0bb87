"""Fixtures shared by the Twilio SMS plugin tests.

Tests run with ``--import-mode=importlib``: test modules cannot import this file, so everything
shared reaches them through fixtures (``make_connector``, ``sms``, ``webhook_server``...).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import os
import time
import tomllib
import types
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aioresponses import aioresponses

from messaging_core import (
    ChannelConnector,
    ChannelSchema,
    ConnectorResult,
    Endpoint,
    MediaContent,
    Message,
    MultipartContent,
    PluginHost,
    TextContent,
    WebhookRequest,
)
from messaging_core.webhooks import WebhookKind, WebhookService
from messaging_twilio_sms import TwilioChannelSchemas, TwilioSmsConnector
from messaging_twilio_sms.emulator import TwilioEmulator

VALID_FROM = "+15005550006"
"""Twilio's test-credential sender that always passes (facts §4 magic numbers)."""
RECEIVER = "+15551230001"
SERVICE_SID = "MG" + "0123456789abcdef" * 2


@pytest.fixture
async def emulator() -> AsyncIterator[TwilioEmulator]:
    """A started Twilio emulator on loopback with a fast status lifecycle (10 ms per step)."""
    async with TwilioEmulator(status_interval=0.01) as emu:
        yield emu


# -- Twilio's OpenAPI file ---------------------------------------------------------------------------


def _repo_root() -> Path:
    """The directory whose pyproject.toml names the distribution `pluggable-messaging`."""
    for parent in Path(__file__).resolve().parents:
        pyproject = parent / "pyproject.toml"
        if pyproject.is_file():
            project = tomllib.loads(pyproject.read_text()).get("project", {})
            if project.get("name") == "pluggable-messaging":
                return parent
    raise RuntimeError("repository root (pyproject.toml of pluggable-messaging) not found")


@functools.cache
def _load_oai() -> dict[str, Any]:
    path = _repo_root().parent / "shared" / "twilio-oai" / "twilio_api_v2010.json"
    spec: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return spec


@pytest.fixture(scope="session")
def oai() -> dict[str, Any]:
    """Twilio's OpenAPI document of the 2010-04-01 API (the shared copy, never vendored)."""
    return _load_oai()


# -- messages ----------------------------------------------------------------------------------------


def _sms(
    to: str = RECEIVER,
    text: str | None = "Hello from the tests",
    *,
    sender: str | None = VALID_FROM,
    media: tuple[str, ...] | list[str] = (),
    message_id: str | None = None,
    **properties: Any,
) -> Message:
    parts: list[Any] = [] if text is None else [TextContent(text)]
    parts += [MediaContent(url) for url in media]
    content = parts[0] if len(parts) == 1 else MultipartContent(tuple(parts))
    return Message(
        id=message_id or uuid.uuid4().hex,
        sender=None if sender is None else Endpoint.phone(sender),
        receiver=Endpoint.phone(to),
        content=content,
        properties=properties,
    )


@pytest.fixture
def sms() -> Callable[..., Message]:
    """``sms(to=..., text=..., sender=..., media=[...], message_id=..., **properties)``: a Message."""
    return _sms


# -- connectors --------------------------------------------------------------------------------------

ConnectorMaker = Callable[..., Awaitable[TwilioSmsConnector]]


@pytest.fixture
async def make_connector(emulator: TwilioEmulator) -> AsyncIterator[ConnectorMaker]:
    """``await make_connector(schema=TWILIO_SMS, *, initialize=True, plugins=None, **parameters)``.

    Builds a ``TwilioSmsConnector`` pointed at the emulator (ApiBaseUrl, AccountSid, AuthToken);
    keyword parameters add or replace settings, ``None`` removes one. Every connector made is shut
    down after the test.
    """
    made: list[ChannelConnector] = []

    async def make(
        schema: ChannelSchema = TwilioChannelSchemas.TWILIO_SMS,
        *,
        initialize: bool = True,
        plugins: PluginHost | None = None,
        **parameters: Any,
    ) -> TwilioSmsConnector:
        settings: dict[str, Any] = {
            "ApiBaseUrl": emulator.base_url,
            "AccountSid": emulator.account_sid,
            "AuthToken": emulator.auth_token,
        }
        settings.update(parameters)
        settings = {key: value for key, value in settings.items() if value is not None}
        connector = TwilioSmsConnector(schema, settings, plugins=plugins)
        made.append(connector)
        if initialize:
            result = await connector.initialize()
            assert result.is_success, result.error
        return connector

    try:
        yield make
    finally:
        for connector in made:
            await connector.shutdown()


@pytest.fixture
def backoff_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every positive ``asyncio.sleep`` delay, recorded instead of slept (the loop still yields).

    Use with an emulator that does not advance statuses on its own (``auto_advance = False``), so
    that only the connector's backoff sleeps are recorded.
    """
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float, result: Any = None) -> Any:
        if delay > 0:
            sleeps.append(delay)
        await real_sleep(0)
        return result

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    return sleeps


# -- a webhook endpoint ------------------------------------------------------------------------------


class WebhookServer:
    """A small aiohttp app on loopback that hands webhooks to a connector, as a web host would.

    ``POST /sms`` and ``POST /status`` build ``WebhookRequest.from_aiohttp_request``, keep what
    ``receive_messages`` / ``receive_message_status`` parse, and answer through a
    ``WebhookService`` (which records and dispatches the hooks); ``source_url`` (if set) rewrites the URL the
    source carries, as a proxy in front of the app would. Every result is kept in ``results``.
    """

    def __init__(self) -> None:
        self.connector: ChannelConnector | None = None
        self.source_url: Callable[[str], str] | None = None
        self.results: list[tuple[str, ConnectorResult[Any]]] = []
        self.sources: list[WebhookRequest] = []
        self._services: dict[int, WebhookService] = {}
        self.base = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        assert self.connector is not None, "set webhook_server.connector first"
        url = str(request.url) if self.source_url is None else self.source_url(str(request.url))
        source = await WebhookRequest.from_aiohttp_request(request, url=url)
        self.sources.append(source)
        kind = request.match_info["kind"]
        webhook: WebhookKind = "messages" if kind == "sms" else "status"
        if webhook == "messages":
            result: ConnectorResult[Any] = await self.connector.receive_messages(source)
        else:
            result = await self.connector.receive_message_status(source)
        self.results.append((kind, result))  # what the connector parsed, for the tests to inspect
        # Recording, dispatching and answering are the webhook service's, as in the web host.
        service = self._services.get(id(self.connector))
        if service is None:
            service = self._services[id(self.connector)] = WebhookService({"twilio": self.connector})
        answer = await service.handle("twilio", webhook, source)
        return web.Response(status=answer.status, body=answer.body, content_type=answer.content_type)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{kind:sms|status}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path_qs: str) -> str:
        return self.base + path_qs

    def of(self, kind: str) -> list[ConnectorResult[Any]]:
        return [result for k, result in self.results if k == kind]

    async def wait_for(self, kind: str, count: int, within: float = 3.0) -> list[ConnectorResult[Any]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(self.of(kind)) < count:
            assert loop.time() < deadline, f"got {len(self.of(kind))} {kind} webhooks, wanted {count}"
            await asyncio.sleep(0.005)
        return self.of(kind)


@pytest.fixture
async def webhook_server() -> AsyncIterator[WebhookServer]:
    """A started ``WebhookServer``; set its ``connector`` before webhooks arrive."""
    server = WebhookServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class _CompatClientResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds responses without ``stream_writer``, which aiohttp 3.14 requires."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", types.SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


@pytest.fixture
def mock_http(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    """An active ``aioresponses()`` (no routes unless the test adds them) that works on this aiohttp."""
    if "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters:
        monkeypatch.setattr("aioresponses.core.ClientResponse", _CompatClientResponse)
    with aioresponses() as mocked:
        yield mocked


@pytest.fixture
def local_time_nine_hours_ahead(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone at UTC+9, so a date taken in local time instead of UTC shows."""
    monkeypatch.setenv("TZ", "TEST-9")  # POSIX form: no tz database needed
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def no_twilio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``TWILIO_*`` variable the environment plugin could fill a missing parameter from."""
    for name in [n for n in os.environ if n.startswith("TWILIO_")]:
        monkeypatch.delenv(name)
