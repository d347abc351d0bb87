"""Contract tests: the official ``twilio`` client drives the emulator, every answer is checked against Twilio's spec.

Both clients of twilio-python take part: the synchronous one (``twilio.rest.Client`` over requests,
run in a worker thread, or against a :class:`ThreadedTwilioEmulator`) and the asynchronous one
(``AsyncTwilioHttpClient`` and the ``*_async`` methods). Their HTTP client is subclassed so that every
answer the emulator gives, errors included, is validated by ``openapi-core`` against Twilio's OpenAPI
description (read from the shared copy, never vendored) before the client sees it.

The description is used as published, with two additions made in memory:

- every operation gets Twilio's REST error object (facts §4: ``code``, ``message``, ``more_info``,
  ``status``) as its ``default`` response, because the file describes no error answers;
- objects must carry exactly the properties the file lists (openapi-core's ``forbid`` and
  ``required`` policies), except those it types ``format: uri-map`` without listing any
  (``subresource_uris``), which stay free-form maps, as in the file's own examples.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from openapi_core import Config, OpenAPI
from openapi_core.exceptions import OpenAPIError
from openapi_core.templating.paths.finders import APICallPathFinder
from openapi_core.testing import MockRequest, MockResponse
from pytest_aiohttp import AiohttpServer

# twilio-python ships no type information (no py.typed, no stubs).
from twilio.base.exceptions import TwilioRestException  # type: ignore[import-untyped]
from twilio.http.async_http_client import AsyncTwilioHttpClient  # type: ignore[import-untyped]
from twilio.http.http_client import TwilioHttpClient  # type: ignore[import-untyped]
from twilio.http.response import Response  # type: ignore[import-untyped]
from twilio.rest import Client  # type: ignore[import-untyped]

from messaging_twilio_sms.emulator import ThreadedTwilioEmulator, TwilioEmulator

# twilio-python 9.13's async client still hands aiohttp a BasicAuth (`auth=`), which aiohttp 3.14 deprecates.
pytestmark = [
    pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning"),
]

TWILIO_API = "https://api.twilio.com"
"""The OpenAPI file's server: requests are matched against it, whatever port the emulator has."""
CLIENT_TIMEOUT = 10.0
"""Seconds one HTTP request of the official client may take (its default is none)."""
SENDER, RECEIVER, OTHER_RECEIVER = "+15005550006", "+15551230001", "+15551230002"
SERVICE_SID = "MG" + "5" * 32

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code", "message", "more_info", "status"],
    "properties": {
        "code": {"type": "integer"},
        "message": {"type": "string"},
        "more_info": {"type": "string", "pattern": r"^https://www\.twilio\.com/docs/errors/\d+$"},
        "status": {"type": "integer"},
    },
    "additionalProperties": False,
}
"""Twilio's REST error object (facts §4 "Shape")."""

Checked = tuple[str, int]
"""`(operationId, HTTP status)` of one answer that passed the contract."""

# ----------------------------------------------------------------------------------------------------------
# The contract
# ----------------------------------------------------------------------------------------------------------


def with_errors_and_open_maps(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the OpenAPI description with the two additions of the module docstring."""
    copy: dict[str, Any] = json.loads(json.dumps(spec))
    copy["components"]["schemas"]["twilio.error"] = ERROR_SCHEMA
    default = {
        "description": "Twilio's REST error object",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/twilio.error"}}},
    }
    for operations in copy["paths"].values():
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].setdefault("default", default)

    def open_maps(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                open_maps(item)
        elif isinstance(node, dict):
            if node.get("format") == "uri-map" and "additionalProperties" not in node:
                node["additionalProperties"] = True
            for value in node.values():
                open_maps(value)

    open_maps(copy["components"]["schemas"])
    return copy


class Contract:
    """Twilio's OpenAPI description, validating answers with openapi-core."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        config = Config(additional_properties_default_policy="forbid", response_properties_default_policy="required")
        self._openapi = OpenAPI.from_dict(with_errors_and_open_maps(spec), config=config)
        self._paths = APICallPathFinder(self._openapi.spec)

    def check(self, method: str, url: str, response: Response) -> Checked:
        """Validate one answer to `method url`; return its operationId and status.

        :raises AssertionError: naming the request and what in the answer is off the description.
        """
        path = urlsplit(url).path
        answer = MockResponse(
            response.text.encode(),
            status_code=response.status_code,
            headers=dict(response.headers),
            content_type=response.headers.get("Content-Type", ""),
        )
        try:
            self._openapi.validate_response(MockRequest(TWILIO_API, method, path), answer)
        except OpenAPIError as err:
            raise AssertionError(
                f"{method} {path} answered {response.status_code}, off the OpenAPI description: {err.__cause__ or err}"
            ) from err
        if response.status_code >= 400:
            status = json.loads(response.text)["status"]
            assert status == response.status_code, f"{method} {path}: the error body says status {status}"
        operation = self._paths.find(method.lower(), TWILIO_API + path).operation
        return operation["operationId"], response.status_code


@pytest.fixture(scope="session")
def contract(oai: dict[str, Any]) -> Contract:
    """The contract, built once: openapi-core checks the 1.8 MB description when it loads it (about 1 s)."""
    return Contract(oai)


class CheckedHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """twilio-python's synchronous HTTP client, checking every answer against the contract."""

    def __init__(self, contract: Contract) -> None:
        super().__init__(timeout=CLIENT_TIMEOUT)
        self.contract = contract
        self.checked: list[Checked] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        response = super().request(method, url, *args, **kwargs)
        self.checked.append(self.contract.check(method, url, response))
        return response


class CheckedAsyncHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """twilio-python's asynchronous HTTP client, checking every answer against the contract."""

    def __init__(self, contract: Contract) -> None:
        super().__init__(timeout=CLIENT_TIMEOUT)
        self.contract = contract
        self.checked: list[Checked] = []

    async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        response = await super().request(method, url, *args, **kwargs)
        self.checked.append(self.contract.check(method, url, response))
        return response


# ----------------------------------------------------------------------------------------------------------
# The official client, sync or async, behind one awaitable call
# ----------------------------------------------------------------------------------------------------------


class Official:
    """One official client pointed at the emulator; ``await official(resource, "fetch")`` calls it.

    The synchronous client runs each call in a worker thread (it would block the loop the emulator
    serves from); the asynchronous one calls the ``<action>_async`` method.
    """

    def __init__(self, kind: str, client: Any, http: CheckedHttpClient | CheckedAsyncHttpClient) -> None:
        self.kind = kind
        self.client = client
        self.http = http

    @property
    def checked(self) -> list[Checked]:
        """Every answer this client received, each validated against the contract."""
        return self.http.checked

    async def __call__(self, resource: Any, action: str, **kwargs: Any) -> Any:
        if self.kind == "sync":
            return await asyncio.to_thread(getattr(resource, action), **kwargs)
        return await getattr(resource, f"{action}_async")(**kwargs)


@asynccontextmanager
async def official_client(
    kind: str, emulator: TwilioEmulator, contract: Contract, *, auth_token: str | None = None
) -> AsyncIterator[Official]:
    """An :class:`Official` client of `kind` ("sync" or "async") for the emulator, closed afterwards."""
    http = CheckedHttpClient(contract) if kind == "sync" else CheckedAsyncHttpClient(contract)
    client = Client(emulator.account_sid, auth_token or emulator.auth_token, http_client=http)
    client.api.base_url = emulator.base_url  # instead of https://api.twilio.com
    try:
        yield Official(kind, client, http)
    finally:
        if kind == "sync":
            http.session.close()
        else:
            await http.close()


@pytest.fixture(params=["sync", "async"])
async def official(
    request: pytest.FixtureRequest, emulator: TwilioEmulator, contract: Contract
) -> AsyncIterator[Official]:
    """The official client, once synchronous and once asynchronous, against the `emulator` fixture."""
    async with official_client(request.param, emulator, contract) as client:
        yield client


@pytest.fixture
async def callbacks(aiohttp_server: AiohttpServer) -> tuple[str, asyncio.Queue[str]]:
    """A loopback status callback URL answering 200, and the `MessageStatus` of each callback it got."""
    received: asyncio.Queue[str] = asyncio.Queue()

    async def status_callback(request: web.Request) -> web.Response:
        received.put_nowait(str((await request.post())["MessageStatus"]))
        return web.Response(text="")

    app = web.Application()
    app.router.add_post("/status", status_callback)
    server = await aiohttp_server(app)
    return str(server.make_url("/status?tenant=contract")), received


async def rest_error(call: Awaitable[Any]) -> tuple[int, int]:
    """Await a call that must fail; return the HTTP status and Twilio code the client raised."""
    with pytest.raises(TwilioRestException) as raised:
        await call
    return raised.value.status, raised.value.code


# ----------------------------------------------------------------------------------------------------------
# The contract itself can fail
# ----------------------------------------------------------------------------------------------------------

MESSAGE_URL = f"{TWILIO_API}/2010-04-01/Accounts/AC{'a' * 32}/Messages/SM{'b' * 32}.json"
VALID_MESSAGE = {
    "account_sid": "AC" + "a" * 32,
    "api_version": "2010-04-01",
    "body": "hi",
    "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
    "date_sent": None,
    "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000",
    "direction": "outbound-api",
    "error_code": None,
    "error_message": None,
    "from": SENDER,
    "messaging_service_sid": None,
    "num_media": "0",
    "num_segments": "1",
    "price": None,
    "price_unit": "USD",
    "sid": "SM" + "b" * 32,
    "status": "queued",
    "subresource_uris": {"media": "/2010-04-01/Accounts/AC.../Media.json", "feedback": "/2010-04-01/.../Feedback.json"},
    "to": RECEIVER,
    "uri": "/2010-04-01/Accounts/AC.../Messages/SM....json",
}
VALID_ERROR = {
    "code": 20404,
    "message": "Not found",
    "more_info": "https://www.twilio.com/docs/errors/20404",
    "status": 404,
}


def _answer(status: int, payload: Any) -> Response:
    return Response(status, json.dumps(payload), {"Content-Type": "application/json; charset=utf-8"})


def test_the_contract_passes_answers_shaped_like_the_spec(contract: Contract) -> None:
    assert contract.check("GET", MESSAGE_URL, _answer(200, VALID_MESSAGE)) == ("FetchMessage", 200)
    assert contract.check("GET", MESSAGE_URL, _answer(404, VALID_ERROR)) == ("FetchMessage", 404)
    assert contract.check("DELETE", MESSAGE_URL, Response(204, "", {})) == ("DeleteMessage", 204)


@pytest.mark.parametrize(
    ("status", "payload"),
    [
        (200, VALID_MESSAGE | {"status": "lost"}),
        (200, VALID_MESSAGE | {"num_segments": 1}),  # a string in the 2010 API
        (200, VALID_MESSAGE | {"tags": {}}),  # not a documented property
        (200, {key: value for key, value in VALID_MESSAGE.items() if key != "price"}),
        (201, VALID_MESSAGE),  # a fetch answers 200: a 201 is read as an error object
        (404, {key: value for key, value in VALID_ERROR.items() if key != "more_info"}),
        (404, VALID_ERROR | {"more_info": "https://example.com/errors/20404"}),
        (404, VALID_ERROR | {"status": 400}),
        (404, VALID_ERROR | {"details": {}}),
    ],
    ids=[
        "unknown-status",
        "integer-num_segments",
        "extra-property",
        "missing-property",
        "wrong-success-status",
        "error-without-more_info",
        "error-more_info-elsewhere",
        "error-status-mismatch",
        "error-extra-property",
    ],
)
def test_the_contract_catches_answers_off_the_spec(contract: Contract, status: int, payload: Any) -> None:
    with pytest.raises(AssertionError):
        contract.check("GET", MESSAGE_URL, _answer(status, payload))


# ----------------------------------------------------------------------------------------------------------
# The emulator through the official client
# ----------------------------------------------------------------------------------------------------------


async def test_create_kinds_and_their_errors(
    official: Official, emulator: TwilioEmulator, contract: Contract, callbacks: tuple[str, asyncio.Queue[str]]
) -> None:
    callback_url, statuses = callbacks
    messages = official.client.messages

    text = await official(messages, "create", to=RECEIVER, from_=SENDER, body="Hello")
    media = await official(
        messages, "create", to=RECEIVER, from_=SENDER, body="A cat", media_url=["https://example.com/cat.jpg"]
    )
    service = await official(messages, "create", to=RECEIVER, messaging_service_sid=SERVICE_SID, body="Via service")
    tracked = await official(
        messages, "create", to=RECEIVER, from_=SENDER, body="Tracked", status_callback=callback_url
    )

    assert (text.sid[:2], text.status, text.num_segments, text.num_media) == ("SM", "queued", "1", "0")
    assert (media.sid[:2], media.num_media) == ("MM", "1")
    assert (service.status, service.from_, service.messaging_service_sid) == ("accepted", None, SERVICE_SID)
    assert emulator.messages[tracked.sid].status_callback == callback_url
    assert [await asyncio.wait_for(statuses.get(), 5) for _ in range(3)] == ["sending", "sent", "delivered"]

    assert await rest_error(official(messages, "create", to="5551234", from_=SENDER, body="x")) == (400, 21211)
    for bad_callback in ("not a url", "https://my_host.example.com/status", "https://ex\u00e4mple.com/status"):
        refused = official(messages, "create", to=RECEIVER, from_=SENDER, body="x", status_callback=bad_callback)
        assert await rest_error(refused) == (400, 21609)
    async with official_client(official.kind, emulator, contract, auth_token="0" * 32) as intruder:
        refused = intruder(intruder.client.messages, "create", to=RECEIVER, from_=SENDER, body="x")
        assert await rest_error(refused) == (401, 20003)
        assert intruder.checked == [("CreateMessage", 401)]

    assert official.checked == [("CreateMessage", 201)] * 4 + [("CreateMessage", 400)] * 4
    assert len(emulator.messages) == 4


async def test_fetch_update_delete_and_media(official: Official, emulator: TwilioEmulator) -> None:
    messages = official.client.messages
    created = await official(
        messages,
        "create",
        to=RECEIVER,
        from_=SENDER,
        body="Secret",
        media_url=["https://example.com/a.jpg", "https://example.com/b.png"],
    )
    message = messages(created.sid)

    fetched = await official(message, "fetch")
    redacted = await official(message, "update", body="")
    media = await official(message.media, "list")
    fetched_media = await official(message.media(media[0].sid), "fetch")
    assert await official(media[0], "delete") is True
    remaining = await official(message.media, "list")
    assert await official(message, "delete") is True
    assert await rest_error(official(message, "fetch")) == (404, 20404)
    account = await official(official.client.api.accounts(emulator.account_sid), "fetch")

    assert (fetched.sid, fetched.body, redacted.body) == (created.sid, "Secret", "")
    assert [item.content_type for item in media] == ["image/jpeg", "image/png"]
    assert fetched_media.parent_sid == created.sid
    assert [item.sid for item in remaining] == [media[1].sid]
    assert (account.sid, account.status) == (emulator.account_sid, "active")
    assert official.checked == [
        ("CreateMessage", 201),
        ("FetchMessage", 200),
        ("UpdateMessage", 200),
        ("ListMedia", 200),
        ("FetchMedia", 200),
        ("DeleteMedia", 204),
        ("ListMedia", 200),
        ("DeleteMessage", 204),
        ("FetchMessage", 404),
        ("FetchAccount", 200),
    ]


async def test_list_pages_and_filters(official: Official, emulator: TwilioEmulator) -> None:
    messages = official.client.messages
    to_first = [(await official(messages, "create", to=RECEIVER, from_=SENDER, body=f"m{n}")).sid for n in range(5)]
    other = (await official(messages, "create", to=OTHER_RECEIVER, from_="+15557654321", body="other")).sid
    for sid in [*to_first, other]:
        await emulator.wait_for_status(sid, "sent")
    sent = emulator.messages[other].date_sent
    assert sent is not None
    today = datetime.fromtimestamp(sent, UTC)  # the day it was sent, even if the test crosses midnight
    official.checked.clear()

    async def sids(**filters: Any) -> list[str]:
        return [message.sid for message in await official(messages, "list", page_size=2, **filters)]

    assert await sids() == [other, *to_first[::-1]]
    assert official.checked == [("ListMessage", 200)] * 3  # 6 messages, 2 a page
    assert await sids(to=RECEIVER) == to_first[::-1]
    assert await sids(from_="+15557654321") == [other]
    # twilio-python sends dates as `YYYY-MM-DDT00:00:00Z`; Twilio matches the whole day.
    assert await sids(to=OTHER_RECEIVER, date_sent=today.date()) == [other]
    assert await sids(to=OTHER_RECEIVER, date_sent_after=today - timedelta(days=1)) == [other]
    assert await sids(to=OTHER_RECEIVER, date_sent_before=today - timedelta(days=1)) == []
    assert await sids(to=OTHER_RECEIVER, date_sent_after=today + timedelta(days=1)) == []
    # The spec's own example value of `DateSent>`.
    assert await sids(to=OTHER_RECEIVER, date_sent_after="06/11/2019 22:05:25 MST") == [other]
    assert {status for _, status in official.checked} == {200}


async def test_streaming_while_deleting_async(emulator: TwilioEmulator, contract: Contract) -> None:
    async with official_client("async", emulator, contract) as official:
        messages = official.client.messages
        for n in range(10):
            await messages.create_async(to=RECEIVER, from_=SENDER, body=f"message {n}")

        async for message in await messages.stream_async(page_size=3):
            await message.delete_async()

        assert await messages.list_async() == []
    assert Counter(official.checked) == {
        ("CreateMessage", 201): 10,
        ("DeleteMessage", 204): 10,
        ("ListMessage", 200): 5,
    }


@pytest.fixture
def threaded(contract: Contract) -> Iterator[tuple[ThreadedTwilioEmulator, Any, CheckedHttpClient]]:
    """A :class:`ThreadedTwilioEmulator` (frozen statuses) and a checked sync client pointed at it."""
    with ThreadedTwilioEmulator(auto_advance=False) as running:
        http = CheckedHttpClient(contract)
        client = Client(running.emulator.account_sid, running.emulator.auth_token, http_client=http)
        client.api.base_url = running.emulator.base_url
        try:
            yield running, client, http
        finally:
            http.session.close()


def test_streaming_while_deleting_deletes_every_message(
    threaded: tuple[ThreadedTwilioEmulator, Any, CheckedHttpClient],
) -> None:
    """The loop of issue #11, which left 4 of 10 messages when page tokens were lost to deletes."""
    running, client, http = threaded
    for n in range(10):
        client.messages.create(to=RECEIVER, from_=SENDER, body=f"message {n}")

    for m in client.messages.stream(page_size=3):
        m.delete()

    assert client.messages.list() == []
    assert [message.deleted for message in running.messages()] == [True] * 10
    # 4 pages (3, 3, 3, 1 messages) and the final list.
    assert Counter(http.checked) == {("CreateMessage", 201): 10, ("DeleteMessage", 204): 10, ("ListMessage", 200): 5}


def test_sync_client_against_the_threaded_emulator(
    threaded: tuple[ThreadedTwilioEmulator, Any, CheckedHttpClient],
) -> None:
    running, client, http = threaded
    created = client.messages.create(to=RECEIVER, from_=SENDER, body="x", media_url=["https://example.com/a.gif"])
    (media,) = client.messages(created.sid).media.list()

    assert media.delete() is True
    assert client.messages(created.sid).fetch().num_media == "0"
    with pytest.raises(TwilioRestException) as raised:
        client.messages.create(to=RECEIVER, from_=SENDER, body="x", status_callback="https://a_b.example.com/s")
    assert (raised.value.status, raised.value.code) == (400, 21609)
    assert [sid for sid, _ in http.checked] == [
        "CreateMessage",
        "ListMedia",
        "DeleteMedia",
        "FetchMessage",
        "CreateMessage",
    ]
    assert running.create_requests() == 2
