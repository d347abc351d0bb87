"""The Twilio emulator over real loopback HTTP: resource shapes, Twilio's rules, lifecycle, webhooks, faults.

Every JSON answer is validated against the schemas of Twilio's own OpenAPI file (read from the shared
copy, never vendored), translated from OpenAPI 3.0 to JSON Schema 2020-12 by :func:`to_json_schema`.
Error answers, for which the OpenAPI file has no schema, are checked against the documented error
shape (facts §4).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import signal
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from datetime import time as dt_time
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import pytest
from aiohttp import web
from jsonschema import Draft202012Validator

# twilio-python ships no type information (no py.typed, no stubs).
from twilio.base.exceptions import TwilioRestException  # type: ignore[import-untyped]
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]
from twilio.rest import Client  # type: ignore[import-untyped]

from messaging_twilio_sms.emulator import (
    DEFAULT_FAILED_NUMBERS,
    DEFAULT_UNDELIVERED_NUMBERS,
    FAULTS,
    HELD_FAULTS,
    POST_CREATE_FAULTS,
    TwilioEmulator,
    main,
)
from messaging_twilio_sms.segments import count_segments
from messaging_twilio_sms.webhooks import SIGNATURE_HEADER, compute_signature

# ----------------------------------------------------------------------------------------------------------
# Twilio's OpenAPI file as JSON Schema
# ----------------------------------------------------------------------------------------------------------


def _repo_root() -> Path:
    """The directory whose pyproject.toml names the distribution `pluggable-messaging`."""
    for parent in Path(__file__).resolve().parents:
        pyproject = parent / "pyproject.toml"
        if pyproject.is_file():
            project = tomllib.loads(pyproject.read_text()).get("project", {})
            if project.get("name") == "pluggable-messaging":
                return parent
    raise RuntimeError("repository root (pyproject.toml of pluggable-messaging) not found")


OAI_PATH = _repo_root() / ".." / "shared" / "twilio-oai" / "twilio_api_v2010.json"
MESSAGES_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
MEDIA_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages/{MessageSid}/Media.json"
_OAI_ONLY_KEYS = frozenset({"nullable", "example", "examples", "discriminator", "xml", "externalDocs"})

# Twilio's REST error object (facts §4 "Shape"); the OpenAPI file defines none for the 2010 API.
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
PAGING_KEYS = {"end", "first_page_uri", "next_page_uri", "page", "page_size", "previous_page_uri", "start", "uri"}


@functools.cache
def oai() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(OAI_PATH.read_text(encoding="utf-8"))
    return spec


def to_json_schema(node: Any, components: Mapping[str, Any]) -> Any:
    """Translate an OpenAPI 3.0 schema into JSON Schema 2020-12.

    Inlines `#/components/schemas/...` references and turns `nullable: true` into a type union with
    "null" (adding None to an `enum`); OpenAPI-only and `x-` keys are dropped.
    """
    if isinstance(node, list):
        return [to_json_schema(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if ref is not None:
        # OpenAPI 3.0 ignores the siblings of a $ref.
        return to_json_schema(components[ref.removeprefix("#/components/schemas/")], components)
    schema: dict[str, Any] = {}
    for key, value in node.items():
        if key in _OAI_ONLY_KEYS or key.startswith("x-"):
            continue
        if key == "properties":
            schema[key] = {name: to_json_schema(sub, components) for name, sub in value.items()}
        else:
            schema[key] = to_json_schema(value, components)
    if node.get("nullable"):
        if "type" in schema:
            schema["type"] = [schema["type"], "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    return schema


def _compile(schema: dict[str, Any]) -> Draft202012Validator:
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)  # no format_checker: OAI formats like phone-number are Twilio's own


@functools.cache
def component_validator(name: str) -> Draft202012Validator:
    components = oai()["components"]["schemas"]
    return _compile(to_json_schema(components[name], components))


@functools.cache
def list_validator(path: str) -> Draft202012Validator:
    operation = oai()["paths"][path]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    return _compile(to_json_schema(schema, oai()["components"]["schemas"]))


@functools.cache
def create_message_params() -> frozenset[str]:
    body = oai()["paths"][MESSAGES_PATH]["post"]["requestBody"]
    return frozenset(body["content"]["application/x-www-form-urlencoded"]["schema"]["properties"])


def assert_valid(validator: Draft202012Validator, instance: Any) -> None:
    errors = [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(instance)]
    assert not errors, errors


def assert_message(resource: Any) -> None:
    """A Message JSON: valid against `api.v2010.account.message` and carrying exactly its properties.

    (The schema has 20 properties; the facts file's "19" miscounts its own 20-row table.)
    """
    assert_valid(component_validator("api.v2010.account.message"), resource)
    properties = oai()["components"]["schemas"]["api.v2010.account.message"]["properties"]
    assert set(resource) == set(properties)


def assert_error(payload: Any, status: int, code: int, message: str | None = None) -> None:
    assert_valid(_compile(ERROR_SCHEMA), payload)
    assert payload["status"] == status
    assert payload["code"] == code
    assert payload["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    if message is not None:
        assert payload["message"] == message


RFC2822_GMT = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000$")

# ----------------------------------------------------------------------------------------------------------
# A small REST client and a webhook receiver
# ----------------------------------------------------------------------------------------------------------

Form = Mapping[str, str] | Iterable[tuple[str, str]]


class Api:
    """Just enough of a Twilio REST client (aiohttp) to drive the emulator from tests."""

    def __init__(self, emulator: TwilioEmulator, *, username: str | None = None, password: str | None = None):
        self.emulator = emulator
        credentials = aiohttp.encode_basic_auth(username or emulator.account_sid, password or emulator.auth_token)
        self._session = aiohttp.ClientSession(headers={"Authorization": credentials})

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._session.close()

    @property
    def account(self) -> str:
        return f"{self.emulator.base_url}/2010-04-01/Accounts/{self.emulator.account_sid}"

    async def request(
        self, method: str, url: str, *, form: Form | None = None, time_limit: float = 5.0
    ) -> tuple[int, Mapping[str, str], bytes]:
        if not url.startswith("http"):
            url = self.emulator.base_url + url if url.startswith("/2010") else self.account + url
        data = list(form.items()) if isinstance(form, Mapping) else form
        async with self._session.request(
            method, url, data=data, timeout=aiohttp.ClientTimeout(total=time_limit)
        ) as response:
            return response.status, response.headers, await response.read()

    async def call(self, method: str, url: str, form: Form | None = None) -> tuple[int, Any]:
        status, _, body = await self.request(method, url, form=form)
        return status, json.loads(body) if body else None

    async def create(self, form: Form, **kwargs: Any) -> tuple[int, Any]:
        pairs = list(form.items()) if isinstance(form, Mapping) else list(form)
        # Only parameters the CreateMessage operation defines (OAI requestBody).
        assert {key for key, _ in pairs} <= create_message_params()
        return await self.call("POST", "/Messages.json", pairs)


def sms(to: str = "+15551230001", body: str = "Hello from the emulator", **extra: str) -> dict[str, str]:
    return {"To": to, "From": "+15005550006", "Body": body, **extra}


class WebhookReceiver:
    """An aiohttp server on loopback that records every webhook request it receives."""

    def __init__(self, reply: str = "", content_type: str = "text/plain") -> None:
        self.requests: list[dict[str, Any]] = []
        self._reply, self._content_type = reply, content_type
        self._runner: web.AppRunner | None = None
        self.base = ""

    async def _handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.requests.append(
            {
                "url": str(request.url),
                "path_qs": request.path_qs,
                "raw_path": request.raw_path,  # the request line's target, as the emulator wrote it
                "form": {key: str(value) for key, value in form.items()},
                "headers": dict(request.headers),
            }
        )
        return web.Response(text=self._reply, content_type=self._content_type)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
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

    async def wait_for(self, count: int, within: float = 3.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"got {len(self.requests)} webhook requests, wanted {count}"
            await asyncio.sleep(0.005)
        return self.requests


@pytest.fixture
async def api(emulator: TwilioEmulator) -> AsyncIterator[Api]:
    async with Api(emulator) as client:
        yield client


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    server = WebhookReceiver(reply="<Response/>", content_type="text/xml")
    await server.start()
    yield server
    await server.stop()


def assert_signed(emulator: TwilioEmulator, url: str, received: dict[str, Any]) -> None:
    """The X-Twilio-Signature matches ours and twilio-python's own validator."""
    signature = received["headers"][SIGNATURE_HEADER]
    assert signature == compute_signature(emulator.auth_token, url, received["form"])
    assert RequestValidator(emulator.auth_token).validate(url, received["form"], signature)


async def wait_until(predicate: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def lifecycle_tasks() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("twilio-emulator-")]


# ----------------------------------------------------------------------------------------------------------
# Resources
# ----------------------------------------------------------------------------------------------------------


async def test_create_answers_201_with_the_oai_message(emulator: TwilioEmulator, api: Api) -> None:
    status, message = await api.create(sms(body="Hi there"))

    assert status == 201
    assert_message(message)
    sid = message["sid"]
    assert re.fullmatch(r"SM[0-9a-f]{32}", sid)
    assert message["status"] == "queued"
    assert message["direction"] == "outbound-api"
    assert (message["to"], message["from"], message["body"]) == ("+15551230001", "+15005550006", "Hi there")
    assert (message["num_segments"], message["num_media"]) == ("1", "0")
    assert message["messaging_service_sid"] is None
    assert (message["price"], message["price_unit"], message["api_version"]) == (None, "USD", "2010-04-01")
    assert (message["error_code"], message["error_message"], message["date_sent"]) == (None, None, None)
    assert RFC2822_GMT.match(message["date_created"])
    assert RFC2822_GMT.match(message["date_updated"])
    uri = f"/2010-04-01/Accounts/{emulator.account_sid}/Messages/{sid}"
    assert message["uri"] == uri + ".json"
    assert message["subresource_uris"] == {"media": uri + "/Media.json", "feedback": uri + "/Feedback.json"}
    assert emulator.messages[sid].params == sms(body="Hi there")


async def test_num_segments_follows_count_segments(api: Api) -> None:
    long_gsm = "x" * 161
    fancy = "\u201cquoted\u201d \u2014 text " * 5  # curly quotes and an em dash: UCS-2 unless smart-encoded

    _, plain = await api.create(sms(body=long_gsm))
    _, ucs2 = await api.create(sms(body=fancy))
    _, smart = await api.create(sms(body=fancy, SmartEncoded="true"))

    assert plain["num_segments"] == str(count_segments(long_gsm).segments) == "2"
    assert ucs2["num_segments"] == str(count_segments(fancy).segments) == "2"
    assert smart["num_segments"] == str(count_segments(fancy, smart_encoded=True).segments) == "1"
    assert smart["body"] == count_segments(fancy, smart_encoded=True).text


async def test_media_message_lists_its_media(emulator: TwilioEmulator, api: Api) -> None:
    urls = ["https://example.com/cat.jpg", "https://example.com/dog.png"]
    status, message = await api.create(
        [("To", "+15551230001"), ("From", "+15005550006")] + [("MediaUrl", u) for u in urls]
    )

    assert status == 201
    assert_message(message)
    assert message["sid"].startswith("MM")
    assert message["num_media"] == "2"
    assert emulator.messages[message["sid"]].params["MediaUrl"] == urls  # repeated keys kept as a list

    status, page = await api.call("GET", message["subresource_uris"]["media"])
    assert status == 200
    assert_valid(list_validator(MEDIA_PATH), page)
    assert set(page) == PAGING_KEYS | {"media_list"}
    assert [media["content_type"] for media in page["media_list"]] == ["image/jpeg", "image/png"]
    for media in page["media_list"]:
        assert_valid(component_validator("api.v2010.account.message.media"), media)
        assert media["parent_sid"] == message["sid"]
        status, fetched = await api.call("GET", media["uri"])
        assert (status, fetched) == (200, media)


async def test_media_can_be_deleted(emulator: TwilioEmulator, api: Api) -> None:
    urls = [f"https://example.com/{n}.jpg" for n in range(4)]
    _, message = await api.create([("To", "+15551230001"), ("From", "+15005550006")] + [("MediaUrl", u) for u in urls])
    _, page = await api.call("GET", message["subresource_uris"]["media"] + "?PageSize=2")
    doomed = page["media_list"][1]

    status, _, body = await api.request("DELETE", doomed["uri"])

    assert (status, body) == (204, b"")  # OAI DeleteMedia
    assert_error((await api.call("GET", doomed["uri"]))[1], 404, 20404)
    assert_error((await api.call("DELETE", doomed["uri"]))[1], 404, 20404)
    # The page token still leads on from where the deleted item stood.
    _, rest = await api.call("GET", page["next_page_uri"])
    assert [m["content_type"] for m in rest["media_list"]] == ["image/jpeg"] * 2
    listed = [m["sid"] for m in page["media_list"][:1] + rest["media_list"]]
    assert doomed["sid"] not in listed
    assert len(listed) == 3
    _, fetched = await api.call("GET", f"/Messages/{message['sid']}.json")
    assert fetched["num_media"] == "3"
    assert [m.deleted for m in emulator.messages[message["sid"]].media] == [False, True, False, False]


async def test_fetch_update_delete(emulator: TwilioEmulator, api: Api) -> None:
    _, created = await api.create(sms(body="secret"))
    sid = created["sid"]

    status, fetched = await api.call("GET", f"/Messages/{sid}.json")
    assert status == 200
    assert_message(fetched)
    assert fetched["sid"] == sid

    status, redacted = await api.call("POST", f"/Messages/{sid}.json", {"Body": ""})
    assert status == 200
    assert_message(redacted)
    assert redacted["body"] == ""

    status, refused = await api.call("POST", f"/Messages/{sid}.json", {"Body": "new text"})
    assert status == 400
    assert_error(refused, 400, 60200)

    status, _ = await api.call("DELETE", f"/Messages/{sid}.json")
    assert status == 204
    status, gone = await api.call("GET", f"/Messages/{sid}.json")
    assert_error(gone, 404, 20404)
    assert emulator.messages[sid].deleted  # still on record as created once


async def test_scheduled_message_can_be_canceled_once(api: Api) -> None:
    send_at = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    service = "MG" + "a" * 32
    form = {"To": "+15551230001", "MessagingServiceSid": service, "Body": "later", "ScheduleType": "fixed"}

    status, scheduled = await api.create({**form, "SendAt": send_at})
    assert status == 201
    assert_message(scheduled)
    assert (scheduled["status"], scheduled["date_sent"], scheduled["from"]) == ("scheduled", None, None)

    status, canceled = await api.call("POST", f"/Messages/{scheduled['sid']}.json", {"Status": "canceled"})
    assert (status, canceled["status"]) == (200, "canceled")
    assert_message(canceled)
    status, again = await api.call("POST", f"/Messages/{scheduled['sid']}.json", {"Status": "canceled"})
    assert_error(again, 400, 30409)

    status, error = await api.create(form)
    assert_error(error, 400, 35111)
    without_service = {"To": "+15551230001", "From": "+15005550006", "Body": "later", "ScheduleType": "fixed"}
    status, error = await api.create({**without_service, "SendAt": send_at})
    assert_error(error, 400, 35118)


async def test_fetch_account(emulator: TwilioEmulator, api: Api) -> None:
    status, account = await api.call("GET", f"/2010-04-01/Accounts/{emulator.account_sid}.json")

    assert status == 200
    assert_valid(component_validator("api.v2010.account"), account)
    assert (account["sid"], account["status"]) == (emulator.account_sid, "active")


async def test_unknown_resources_are_twilio_404s(api: Api) -> None:
    for path in ("/Messages/SM" + "0" * 32 + ".json", "/Messages/SM" + "0" * 32 + "/Media.json", "/Messages"):
        status, payload = await api.call("GET", path)
        assert status == 404, path
        assert_error(payload, 404, 20404)


# ----------------------------------------------------------------------------------------------------------
# Authentication
# ----------------------------------------------------------------------------------------------------------

AUTHENTICATE = {
    "code": 20003,
    "message": "Authenticate",
    "more_info": "https://www.twilio.com/docs/errors/20003",
    "status": 401,
}


async def test_requests_without_credentials_are_refused(emulator: TwilioEmulator) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{emulator.base_url}/2010-04-01/Accounts/{emulator.account_sid}/Messages.json") as response,
    ):
        assert response.status == 401
        assert await response.json() == AUTHENTICATE


@pytest.mark.parametrize(
    ("username", "password"),
    [(None, "0" * 32), ("AC" + "1" * 32, None)],
    ids=["wrong-token", "other-account-credentials"],
)
async def test_wrong_credentials_are_refused(
    emulator: TwilioEmulator, username: str | None, password: str | None
) -> None:
    async with Api(emulator, username=username, password=password) as client:
        status, payload = await client.create(sms())
    assert (status, payload) == (401, AUTHENTICATE)
    assert not emulator.messages


async def test_another_accounts_path_is_not_found(emulator: TwilioEmulator, api: Api) -> None:
    _, payload = await api.call("GET", "/2010-04-01/Accounts/AC" + "2" * 32 + "/Messages.json")
    assert_error(payload, 404, 20404)


async def test_api_key_pair_is_accepted_when_configured() -> None:
    key, secret = "SK" + "3" * 32, "key-secret"
    async with TwilioEmulator(api_key_sid=key, api_key_secret=secret, auto_advance=False) as emu:
        async with Api(emu, username=key, password=secret) as client:
            status, _ = await client.create(sms())
        async with Api(emu, username=key, password="wrong") as client:
            refused, _ = await client.create(sms())
    assert (status, refused) == (201, 401)


# ----------------------------------------------------------------------------------------------------------
# Validation and test numbers
# ----------------------------------------------------------------------------------------------------------

VALIDATION_CASES = [
    pytest.param({"From": "+15005550006", "Body": "x"}, 21604, None, id="missing-To"),
    pytest.param({"To": "+15551230001", "Body": "x"}, 21603, None, id="no-From-no-service"),
    pytest.param({"To": "+15551230001", "From": "+15005550006"}, 21619, None, id="no-body-no-media"),
    pytest.param(sms(to="5551234"), 21211, "The 'To' number 5551234 is not a valid phone number.", id="To-not-E164"),
    pytest.param(sms(body="x" * 1601), 21617, None, id="body-over-1600"),
    pytest.param(sms(body="\U0001f600" * 801), 21617, None, id="body-over-1600-utf16-units"),
    pytest.param(
        [*sms().items(), *[("MediaUrl", f"https://e.com/{i}.jpg") for i in range(11)]], 21623, None, id="11-media"
    ),
    pytest.param({**sms(), "MediaUrl": "ftp://example.com/a.jpg"}, 21620, None, id="media-not-http"),
    pytest.param({**sms(), "ValidityPeriod": "0"}, 60200, None, id="validity-0"),
    pytest.param({**sms(), "ValidityPeriod": "36001"}, 60200, None, id="validity-36001"),
    pytest.param({**sms(), "MessagingServiceSid": "MG123"}, 21705, None, id="bad-service-sid"),
    pytest.param({**sms(), "MediaUrl": "https://example.com/a cat.jpg"}, 21620, None, id="media-not-encoded"),
    # StatusCallback rules from Twilio's error page "21609: Invalid 'StatusCallback'".
    pytest.param({**sms(), "StatusCallback": "not a url"}, 21609, None, id="callback-not-a-url"),
    pytest.param({**sms(), "StatusCallback": "https://my_host.example.com/cb"}, 21609, None, id="callback-underscore"),
    pytest.param({**sms(), "StatusCallback": "https://ex\u00e4mple.com/cb"}, 21609, None, id="callback-raw-non-ascii"),
    pytest.param({**sms(), "StatusCallback": "https://example.com/\u00e9t\u00e9"}, 21609, None, id="callback-raw-path"),
    pytest.param({**sms(), "StatusCallback": "https://example.com/a b"}, 21609, None, id="callback-raw-space"),
    pytest.param({**sms(), "StatusCallback": "https://example.com/a%zz"}, 21609, None, id="callback-bad-percent"),
    pytest.param({**sms(), "StatusCallback": "ftp://example.com/cb"}, 21609, None, id="callback-not-http"),
    pytest.param({**sms(), "StatusCallback": "https:///cb"}, 21609, None, id="callback-no-host"),
    pytest.param({**sms(), "StatusCallback": "https://example.com:99999/"}, 21609, None, id="callback-bad-port"),
    pytest.param(
        {**sms(), "StatusCallback": "https://example.com/" + "a" * 3981}, 21609, None, id="callback-over-4000"
    ),
]


@pytest.mark.parametrize(("form", "code", "message"), VALIDATION_CASES)
async def test_invalid_creates_get_twilio_errors(
    emulator: TwilioEmulator, api: Api, form: Form, code: int, message: str | None
) -> None:
    status, payload = await api.create(form)

    assert status == 400
    assert_error(payload, 400, code, message)
    assert not emulator.messages


@pytest.mark.parametrize(
    "form",
    [
        sms(to="whatsapp:+15551230001"),
        sms(body="x" * 1600),
        {**sms(), "ValidityPeriod": "36000"},
        {"To": "+15551230001", "From": "+15005550006", "MediaUrl": "http://example.com/a.gif"},
        {"To": "+15551230001", "From": "+15005550006", "ContentSid": "HX" + "4" * 32},
        sms(body="from any sender") | {"From": "+15557654321"},
        sms(StatusCallback="https://user:secret@hooks.example.com:8443/status?to=%2B1555&x=a%2Fb#frag"),
        sms(StatusCallback="http://[::1]:8080/status"),
        sms(StatusCallback="https://example.com/" + "a" * 3980),
    ],
    ids=[
        "whatsapp-To",
        "body-1600",
        "validity-36000",
        "media-only",
        "content-template",
        "any-From",
        "callback-full-url",
        "callback-ipv6",
        "callback-4000",
    ],
)
async def test_valid_edge_cases_are_created(api: Api, form: Form) -> None:
    status, message = await api.create(form)
    assert status == 201, message
    assert_message(message)


MAGIC_CASES = [
    # From numbers
    (
        {"From": "+15005550001"},
        400,
        21212,
        "The 'From' number +15005550001 is not a valid phone number, shortcode, or alphanumeric sender ID.",
    ),
    (
        {"From": "+15005550007"},
        400,
        21606,
        "The From phone number +15005550007 is not a valid, SMS-capable inbound phone number or short code "
        "for your account.",
    ),
    ({"From": "+15005550008"}, 429, 21611, "SMS queue is full."),
    # To numbers
    ({"To": "+15005550001"}, 400, 21211, "The 'To' number +15005550001 is not a valid phone number."),
    (
        {"To": "+15005550002"},
        400,
        21612,
        "The 'To' phone number: +15005550002, is not currently reachable using the 'From' phone number: "
        "+15005550006 via SMS.",
    ),
    (
        {"To": "+15005550003"},
        400,
        21408,
        "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: +15005550003.",
    ),
    ({"To": "+15005550004"}, 400, 21610, "The message From/To pair violates a blacklist rule."),
    ({"To": "+15005550009"}, 400, 21614, "To number: +15005550009, is not a mobile number"),
]


@pytest.mark.parametrize(("override", "status", "code", "message"), MAGIC_CASES, ids=lambda v: str(v))
async def test_test_credential_magic_numbers(
    emulator: TwilioEmulator, api: Api, override: dict[str, str], status: int, code: int, message: str
) -> None:
    got_status, payload = await api.create(sms() | override)

    assert got_status == status
    assert_error(payload, status, code, message)
    assert not emulator.messages


# ----------------------------------------------------------------------------------------------------------
# Listing
# ----------------------------------------------------------------------------------------------------------


async def test_paging_through_seven_messages(api: Api) -> None:
    created = [(await api.create(sms(body=f"message {n}")))[1]["sid"] for n in range(7)]
    await api.create(sms(to="+15551230009"))  # filtered out below

    pages: list[dict[str, Any]] = []
    url = "/Messages.json?To=%2B15551230001&PageSize=3"
    while url:
        status, page = await api.call("GET", url)
        assert status == 200
        assert_valid(list_validator(MESSAGES_PATH), page)
        assert set(page) == PAGING_KEYS | {"messages"}  # one record key, as twilio-python's Page needs
        for message in page["messages"]:
            assert_message(message)
        pages.append(page)
        url = page["next_page_uri"]

    assert [len(page["messages"]) for page in pages] == [3, 3, 1]
    assert [page["page"] for page in pages] == [0, 1, 2]
    assert [(page["start"], page["end"]) for page in pages] == [(0, 2), (3, 5), (6, 6)]
    listed = [message["sid"] for page in pages for message in page["messages"]]
    assert listed == created[::-1]  # newest first, each exactly once
    assert pages[0]["previous_page_uri"] is None
    assert pages[0]["first_page_uri"].endswith("Messages.json?To=%2B15551230001&PageSize=3&Page=0")

    _, back = await api.call("GET", pages[1]["previous_page_uri"])
    assert [m["sid"] for m in back["messages"]] == [m["sid"] for m in pages[0]["messages"]]


async def test_page_tokens_survive_deletes(api: Api) -> None:
    created = [(await api.create(sms(body=f"message {n}")))[1]["sid"] for n in range(7)]
    newest_first = created[::-1]

    async def sids(url: str) -> list[str]:
        status, page = await api.call("GET", url)
        assert status == 200, page
        assert_valid(list_validator(MESSAGES_PATH), page)
        return [message["sid"] for message in page["messages"]]

    async def delete(sids: list[str]) -> None:
        for sid in sids:
            assert (await api.call("DELETE", f"/Messages/{sid}.json"))[0] == 204

    _, first_page = await api.call("GET", "/Messages.json?PageSize=3")
    _, second_page = await api.call("GET", first_page["next_page_uri"])
    assert [m["sid"] for m in second_page["messages"]] == newest_first[3:6]

    # The next-page token names the last record of its page, the previous-page token the first one.
    await delete(newest_first[:3])
    assert await sids(first_page["next_page_uri"]) == newest_first[3:6]
    assert await sids(second_page["previous_page_uri"]) == []
    await delete(newest_first[3:6])
    assert await sids(second_page["next_page_uri"]) == newest_first[6:]


@pytest.mark.parametrize("token", ["PAnot-ours", "PX12", "PA", "PA" + "1" * 19])
async def test_unreadable_page_tokens_are_refused(api: Api, token: str) -> None:
    await api.create(sms())
    status, error = await api.call("GET", f"/Messages.json?PageSize=1&Page=1&PageToken={token}")
    assert status == 400
    assert_error(error, 400, 60200)


async def test_list_filters_by_from_and_date_sent(emulator: TwilioEmulator, api: Api) -> None:
    _, first = await api.create(sms())
    _, other = await api.create(sms() | {"From": "+15557654321"})
    await emulator.wait_for_status(first["sid"], "sent")
    await emulator.wait_for_status(other["sid"], "sent")
    _, fetched = await api.call("GET", f"/Messages/{first['sid']}.json")
    day = parsedate_to_datetime(fetched["date_sent"]).date()

    async def sids(query: str) -> list[str]:
        status, page = await api.call("GET", "/Messages.json?" + query)
        assert status == 200, page
        return [message["sid"] for message in page["messages"]]

    both = [other["sid"], first["sid"]]
    assert await sids("From=%2B15557654321") == [other["sid"]]
    assert await sids(f"DateSent={day}") == both
    assert await sids(f"DateSent%3C={day - timedelta(days=1)}") == []
    assert await sids(f"DateSent%3E={day + timedelta(days=1)}") == []
    assert await sids(f"DateSent>={day}&DateSent<={day}") == both
    # A timestamp stands for its whole GMT day, whatever its time (twilio-python sends dates this way).
    assert await sids(f"DateSent={day}T00:00:00Z") == both
    assert await sids(f"DateSent={day}T23:59:59Z") == both
    assert await sids(f"DateSent%3E={day}T23:59:59Z") == both
    assert await sids(f"DateSent%3C={day}T00:00:00Z") == both
    assert await sids(f"DateSent%3C={day - timedelta(days=1)}T23:59:59Z") == []
    assert await sids(f"DateSent={quote(format_datetime(datetime.combine(day, dt_time(12), UTC)))}") == both
    us_evening = datetime.combine(day - timedelta(days=1), dt_time(20), timezone(timedelta(hours=-7)))  # GMT: day
    assert await sids("DateSent=" + quote(us_evening.strftime("%m/%d/%Y %H:%M:%S MST"))) == both
    _, error = await api.call("GET", "/Messages.json?DateSent=yesterday")
    assert_error(error, 400, 60200)
    _, error = await api.call("GET", "/Messages.json?PageSize=1001")
    assert_error(error, 400, 60200)


def _date_filter_examples() -> list[Any]:
    """Every example value the OAI file gives for a date filter of ListMessage or ListMedia."""
    cases = []
    for path in (MESSAGES_PATH, MEDIA_PATH):
        for parameter in oai()["paths"][path]["get"]["parameters"]:
            if parameter["name"].startswith(("DateSent", "DateCreated")):
                for name, example in parameter.get("examples", {}).items():
                    cases.append(
                        pytest.param(path, parameter["name"], example["value"], id=f"{parameter['name']}-{name}")
                    )
    return cases


@pytest.mark.parametrize(("path", "key", "value"), _date_filter_examples())
async def test_date_filters_take_the_oai_example_values(api: Api, path: str, key: str, value: str) -> None:
    _, created = await api.create([*sms().items(), ("MediaUrl", "https://example.com/a.jpg")])
    url = path.replace("{AccountSid}", api.emulator.account_sid).replace("{MessageSid}", created["sid"])

    status, page = await api.call("GET", f"{url}?{urlencode({key: value})}")

    assert status == 200, page
    assert_valid(list_validator(path), page)
    assert urlencode({key: value}) in page["uri"]  # echoed in the page URIs, as in the OAI examples


async def test_media_date_created_filters(api: Api) -> None:
    _, created = await api.create([*sms().items(), ("MediaUrl", "https://example.com/a.jpg")])
    media_uri = created["subresource_uris"]["media"]
    day = parsedate_to_datetime(created["date_created"]).date()

    async def count(query: str) -> int:
        status, page = await api.call("GET", f"{media_uri}?{query}")
        assert status == 200, page
        return len(page["media_list"])

    assert await count(f"DateCreated={day}") == 1
    assert await count(f"DateCreated%3E={day + timedelta(days=1)}") == 0
    assert await count(f"DateCreated%3C={day - timedelta(days=1)}") == 0
    _, error = await api.call("GET", f"{media_uri}?DateCreated=soon")
    assert_error(error, 400, 60200)


# ----------------------------------------------------------------------------------------------------------
# Lifecycle and status callbacks
# ----------------------------------------------------------------------------------------------------------

CALLBACK_FIELDS = {"AccountSid", "From", "To", "MessageSid", "SmsSid", "MessageStatus", "SmsStatus", "ApiVersion"}


async def test_lifecycle_to_delivered_posts_signed_callbacks(
    emulator: TwilioEmulator, api: Api, receiver: WebhookReceiver
) -> None:
    callback = receiver.url("/status?tenant=acme")  # the query string is part of what is signed
    _, created = await api.create(sms(StatusCallback=callback))
    sid = created["sid"]

    await emulator.wait_for_status(sid, "delivered")
    received = await receiver.wait_for(3)

    # No callback for the initial `queued` (facts §3), one per later change, in order.
    assert [r["form"]["MessageStatus"] for r in received] == ["sending", "sent", "delivered"]
    for request in received:
        form = request["form"]
        assert request["path_qs"] == "/status?tenant=acme"
        assert_signed(emulator, callback, request)
        assert request["headers"]["User-Agent"] == "TwilioProxy/1.1"
        assert set(form) >= CALLBACK_FIELDS
        assert form["MessageSid"] == form["SmsSid"] == sid
        assert form["SmsStatus"] == form["MessageStatus"]
        assert (form["AccountSid"], form["To"], form["ApiVersion"]) == (
            emulator.account_sid,
            "+15551230001",
            "2010-04-01",
        )
        assert "ErrorCode" not in form
        assert "MessagingServiceSid" not in form
    assert re.fullmatch(r"\d{10}", received[-1]["form"]["RawDlrDoneDate"])
    assert "RawDlrDoneDate" not in received[0]["form"]
    tokens = {r["headers"]["I-Twilio-Idempotency-Token"] for r in received}
    assert len(tokens) == 3
    await wait_until(lambda: len(emulator.callback_log) == 3)
    assert [(entry.kind, entry.status) for entry in emulator.callback_log] == [("status", 200)] * 3

    _, delivered = await api.call("GET", f"/Messages/{sid}.json")
    assert_message(delivered)
    assert (delivered["status"], delivered["price"]) == ("delivered", "-0.00790")
    assert RFC2822_GMT.match(delivered["date_sent"])


@pytest.mark.parametrize(
    ("to", "final", "code", "statuses"),
    [
        ("+15559990001", "undelivered", 30003, ["sending", "sent", "undelivered"]),
        ("+15559990002", "failed", 30008, ["sending", "failed"]),
    ],
)
async def test_designated_numbers_end_undelivered_or_failed(
    emulator: TwilioEmulator,
    api: Api,
    receiver: WebhookReceiver,
    to: str,
    final: str,
    code: int,
    statuses: list[str],
) -> None:
    assert to in DEFAULT_UNDELIVERED_NUMBERS | DEFAULT_FAILED_NUMBERS
    callback = receiver.url("/status")
    _, created = await api.create(sms(to=to, StatusCallback=callback))

    await emulator.wait_for_status(created["sid"], final)
    received = await receiver.wait_for(len(statuses))

    assert [r["form"]["MessageStatus"] for r in received] == statuses
    assert received[-1]["form"]["ErrorCode"] == str(code)
    assert all("ErrorCode" not in r["form"] for r in received[:-1])
    assert_signed(emulator, callback, received[-1])
    _, message = await api.call("GET", f"/Messages/{created['sid']}.json")
    assert_message(message)
    assert (message["status"], message["error_code"]) == (final, code)
    assert message["error_message"]


async def test_messaging_service_send_goes_accepted_then_queued(
    emulator: TwilioEmulator, api: Api, receiver: WebhookReceiver
) -> None:
    service = "MG" + "b" * 32
    form = {"To": "+15551230001", "MessagingServiceSid": service, "Body": "via service"}
    _, created = await api.create(form | {"StatusCallback": receiver.url("/status")})

    assert_message(created)
    assert (created["status"], created["from"], created["num_segments"]) == ("accepted", None, "0")
    assert created["messaging_service_sid"] == service

    await emulator.wait_for_status(created["sid"], "delivered")
    received = await receiver.wait_for(4)
    assert [r["form"]["MessageStatus"] for r in received] == ["queued", "sending", "sent", "delivered"]
    assert {r["form"]["MessagingServiceSid"] for r in received} == {service}
    _, message = await api.call("GET", f"/Messages/{created['sid']}.json")
    assert (message["from"], message["num_segments"]) == (emulator.service_sender, "1")


async def test_manual_advance_and_set_status(receiver: WebhookReceiver) -> None:
    async with TwilioEmulator(auto_advance=False) as emu, Api(emu) as client:
        _, first = await client.create(sms(StatusCallback=receiver.url("/a")))
        _, second = await client.create(sms(StatusCallback=receiver.url("/b")))
        await asyncio.sleep(0.05)
        assert emu.messages[first["sid"]].status == "queued"
        with pytest.raises(TimeoutError):
            await emu.wait_for_status(first["sid"], "sent", timeout=0.05)

        steps = [await emu.advance(first["sid"]) for _ in range(4)]
        assert steps == ["sending", "sent", "delivered", None]
        message = await emu.set_status(second["sid"], "undelivered", error_code=30005)
        assert message.error_code == 30005
        with pytest.raises(ValueError):
            await emu.set_status(second["sid"], "lost")

        received = await receiver.wait_for(4)
        assert [(r["path_qs"], r["form"]["MessageStatus"]) for r in received] == [
            ("/a", "sending"),
            ("/a", "sent"),
            ("/a", "delivered"),
            ("/b", "undelivered"),
        ]
        assert received[-1]["form"]["ErrorCode"] == "30005"
        assert (await emu.wait_for_status(first["sid"], "sent")).status == "delivered"  # reached earlier


async def test_callback_failures_are_logged_not_fatal(emulator: TwilioEmulator, api: Api) -> None:
    receiver = WebhookReceiver()
    await receiver.start()
    dead_url = receiver.url("/status")
    await receiver.stop()  # nothing listens there any more

    _, created = await api.create(sms(StatusCallback=dead_url))
    await emulator.wait_for_status(created["sid"], "delivered")
    await wait_until(lambda: len(emulator.callback_log) == 3)

    assert [(entry.url, entry.status) for entry in emulator.callback_log] == [(dead_url, None)] * 3
    assert all(entry.error for entry in emulator.callback_log)
    assert (await api.create(sms()))[0] == 201


# ----------------------------------------------------------------------------------------------------------
# Inbound messages
# ----------------------------------------------------------------------------------------------------------


async def test_simulate_inbound_posts_a_signed_webhook(emulator: TwilioEmulator, api: Api) -> None:
    twiml = "<Response><Message>pong</Message></Response>"
    receiver = WebhookReceiver(reply=twiml, content_type="text/xml")
    await receiver.start()
    try:
        emulator.sms_url = receiver.url("/sms")
        emulator.messaging_service_sid = "MG" + "c" * 32
        media = ["https://example.com/a.jpg", "https://example.com/b.png"]

        status, text = await emulator.simulate_inbound("+15557770000", "+15005550006", "ping", media)
        await emulator.simulate_inbound("+15557770000", "+15005550006", "no media", url=receiver.url("/other"))
        received = await receiver.wait_for(2)
    finally:
        await receiver.stop()

    assert (status, text) == (200, twiml)
    request = received[0]
    form = request["form"]
    assert_signed(emulator, receiver.url("/sms"), request)
    sid = form["MessageSid"]
    assert re.fullmatch(r"MM[0-9a-f]{32}", sid)
    assert form["SmsSid"] == form["SmsMessageSid"] == sid
    assert form["AccountSid"] == emulator.account_sid
    assert form["MessagingServiceSid"] == emulator.messaging_service_sid
    assert (form["From"], form["To"], form["Body"]) == ("+15557770000", "+15005550006", "ping")
    assert (form["NumMedia"], form["NumSegments"], form["SmsStatus"]) == ("2", "1", "received")
    assert form["ApiVersion"] == "2010-04-01"
    # Media keys are zero-based.
    assert (form["MediaUrl0"], form["MediaContentType0"]) == (media[0], "image/jpeg")
    assert (form["MediaUrl1"], form["MediaContentType1"]) == (media[1], "image/png")
    assert "MediaUrl2" not in form
    assert form["ToCity"] == ""  # geo keys are present even when empty
    assert form["FromCountry"] == "US"
    assert received[1]["path_qs"] == "/other"
    assert received[1]["form"]["MessageSid"].startswith("SM")
    assert received[1]["form"]["NumMedia"] == "0"

    _, inbound = await api.call("GET", f"/Messages/{sid}.json")
    assert_message(inbound)
    assert (inbound["direction"], inbound["status"], inbound["num_media"]) == ("inbound", "received", "2")
    _, page = await api.call("GET", "/Messages.json?From=%2B15557770000")
    assert [m["sid"] for m in page["messages"]] == [received[1]["form"]["MessageSid"], sid]
    assert [entry.kind for entry in emulator.callback_log] == ["inbound", "inbound"]


async def test_simulate_inbound_needs_a_reachable_url(emulator: TwilioEmulator) -> None:
    with pytest.raises(ValueError):
        await emulator.simulate_inbound("+15557770000", "+15005550006", "hi")
    receiver = WebhookReceiver()
    await receiver.start()
    dead_url = receiver.url("/sms")
    await receiver.stop()
    with pytest.raises(ConnectionError):
        await emulator.simulate_inbound("+15557770000", "+15005550006", "hi", url=dead_url)
    assert emulator.callback_log[-1].status is None


async def test_callbacks_request_the_url_exactly_as_given(
    emulator: TwilioEmulator, api: Api, receiver: WebhookReceiver
) -> None:
    callback = receiver.url("/st%C3%A9tus/a%2Fb?to=%2B1555&note=caf%C3%A9+ol%C3%A9")
    _, created = await api.create(sms(StatusCallback=callback))
    await emulator.wait_for_status(created["sid"], "delivered")

    received = await receiver.wait_for(3)
    assert {r["raw_path"] for r in received} == {"/st%C3%A9tus/a%2Fb?to=%2B1555&note=caf%C3%A9+ol%C3%A9"}
    assert_signed(emulator, callback, received[0])


@pytest.mark.parametrize("path", ["/sms here", "/sms/\u00e9", "/a%zz", "/ok\r\nX-Injected: 1"])
async def test_simulate_inbound_refuses_urls_it_cannot_request_as_written(
    emulator: TwilioEmulator, receiver: WebhookReceiver, path: str
) -> None:
    with pytest.raises(ValueError, match="not usable"):
        await emulator.simulate_inbound("+15557770000", "+15005550006", "hi", url=receiver.url(path))
    emulator.sms_url = receiver.url(path)
    with pytest.raises(ValueError, match="not usable"):
        await emulator.simulate_inbound("+15557770000", "+15005550006", "hi")

    assert (emulator.messages, emulator.callback_log, receiver.requests) == ({}, [], [])


# ----------------------------------------------------------------------------------------------------------
# Fault injection
# ----------------------------------------------------------------------------------------------------------

JSON_FAULTS = {
    "429": (429, 20429),
    "429_retry_after": (429, 20429),
    "21611": (429, 21611),
    "500": (500, 20500),
    "500_after_create": (500, 20500),
    "502": (502, 20500),
    "503": (503, 20503),
}


@pytest.mark.parametrize("fault", sorted(FAULTS - HELD_FAULTS))  # held ones: test_emulator_faults.py
async def test_injected_fault_shapes(emulator: TwilioEmulator, api: Api, fault: str) -> None:
    emulator.inject(fault)
    try:
        status, headers, body = await api.request("POST", "/Messages.json", form=sms())
    except aiohttp.ClientError:
        status = None

    created = list(emulator.messages.values())
    assert len(created) == (1 if fault in POST_CREATE_FAULTS else 0)
    assert emulator.create_requests == 1
    if fault in ("reset_before", "reset_after_create"):
        assert status is None  # the connection was dropped without an answer
    elif fault in JSON_FAULTS:
        expected_status, code = JSON_FAULTS[fault]
        assert status == expected_status
        assert_error(json.loads(body), expected_status, code)
        assert headers.get("Retry-After") == ("1" if fault == "429_retry_after" else None)
    elif fault == "html_error":
        assert (status, headers["Content-Type"].split(";")[0]) == (502, "text/html")
        assert body.startswith(b"<html>")
    else:
        assert status == 201
        if fault == "no_sid":
            payload = json.loads(body)
            assert "sid" not in payload
            assert_valid(component_validator("api.v2010.account.message"), payload)
        else:
            with pytest.raises(ValueError):
                json.loads(body)
            if fault == "truncated_json":
                assert body.startswith(b'{"account_sid": "' + emulator.account_sid.encode())

    # The fault was used up: the next create is normal.
    assert (await api.create(sms()))[0] == 201


async def test_faults_match_recipient_and_count(emulator: TwilioEmulator, api: Api) -> None:
    emulator.inject("503", count=2, match_to="+15550000002")

    statuses = [(await api.create(sms(to=to)))[0] for to in ("+15550000001", "+15550000002", "+15550000002")]
    statuses.append((await api.create(sms(to="+15550000002")))[0])

    assert statuses == [201, 503, 503, 201]
    with pytest.raises(ValueError):
        emulator.inject("teapot")
    with pytest.raises(ValueError):
        emulator.inject("500", count=0)


async def test_rate_limit_every_nth_create(emulator: TwilioEmulator, api: Api) -> None:
    emulator.rate_limit_every = 3

    results = [await api.create(sms()) for _ in range(6)]

    assert [status for status, _ in results] == [201, 201, 429, 201, 201, 429]
    assert_error(results[2][1], 429, 20429)
    assert (len(emulator.messages), emulator.create_requests) == (4, 6)


async def test_latency_delays_every_answer(emulator: TwilioEmulator, api: Api) -> None:
    emulator.latency = 0.1
    started = time.monotonic()
    status, _ = await api.call("GET", "/Messages.json")
    assert status == 200
    assert time.monotonic() - started >= 0.1


# ----------------------------------------------------------------------------------------------------------
# Modes, shutdown, state
# ----------------------------------------------------------------------------------------------------------


async def test_fast_mode_skips_lifecycle_and_callbacks(receiver: WebhookReceiver) -> None:
    async with TwilioEmulator(fast=True) as emu, Api(emu) as client:
        results = [await client.create(sms(StatusCallback=receiver.url("/s"))) for _ in range(20)]
        assert not lifecycle_tasks()
        await asyncio.sleep(0.05)

    assert {status for status, _ in results} == {201}
    assert len(emu.messages) == 20
    assert {message.status for message in emu.messages.values()} == {"queued"}
    assert emu.callback_log == []
    assert receiver.requests == []


async def test_stop_cancels_pending_work_cleanly(receiver: WebhookReceiver) -> None:
    emu = TwilioEmulator(status_interval=30, fault_delay=30)
    await emu.start()
    api = Api(emu)
    try:
        for _ in range(3):
            await api.create(sms(StatusCallback=receiver.url("/s")))
        emu.inject("timeout")
        held = asyncio.create_task(api.request("POST", "/Messages.json", form=sms(), time_limit=60))
        await wait_until(lambda: len(emu.messages) == 4)  # the held request has created its message
        tasks = lifecycle_tasks()
        assert len(tasks) == 4

        started = time.monotonic()
        await emu.stop()

        assert time.monotonic() - started < 3
        assert all(task.done() for task in tasks)
        with pytest.raises(aiohttp.ClientError):
            await held
    finally:
        await api.__aexit__(None, None, None)
        await emu.stop()  # idempotent


async def test_app_can_be_served_by_an_external_runner(receiver: WebhookReceiver) -> None:
    emu = TwilioEmulator(status_interval=0.01)
    runner = web.AppRunner(emu.app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        emu.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
        async with Api(emu) as client:
            _, created = await client.create(sms(StatusCallback=receiver.url("/s")))
        await emu.wait_for_status(created["sid"], "delivered")
        await receiver.wait_for(3)
    finally:
        await runner.cleanup()
    assert not lifecycle_tasks()


async def test_reset_forgets_everything(emulator: TwilioEmulator, api: Api) -> None:
    await api.create(sms())
    emulator.inject("500")
    emulator.reset()

    assert (emulator.messages, emulator.callback_log, emulator.create_requests) == ({}, [], 0)
    assert (await api.create(sms()))[0] == 201


def test_repr_and_credentials() -> None:
    emu = TwilioEmulator()
    assert re.fullmatch(r"AC[0-9a-f]{32}", emu.account_sid)
    assert re.fullmatch(r"[0-9a-f]{32}", emu.auth_token)
    assert emu.auth_token not in repr(emu)
    assert emu.account_sid in repr(emu)
    with pytest.raises(RuntimeError):
        _ = emu.base_url
    with pytest.raises(ValueError):
        TwilioEmulator(account_sid="ACnot-hex")
    with pytest.raises(ValueError):
        TwilioEmulator(api_key_sid="SK123", api_key_secret="x")


# ----------------------------------------------------------------------------------------------------------
# Real clients
# ----------------------------------------------------------------------------------------------------------


async def test_official_twilio_client_round_trip(emulator: TwilioEmulator) -> None:
    client = Client(emulator.account_sid, emulator.auth_token)
    client.api.base_url = emulator.base_url
    try:
        created = await asyncio.to_thread(
            client.messages.create, to="+15551230001", from_="+15005550006", body="hello from twilio-python"
        )
        assert created.sid.startswith("SM")
        assert created.status == "queued"
        fetched = await asyncio.to_thread(client.messages(created.sid).fetch)
        assert fetched.status in {"queued", "sending", "sent", "delivered"}
        assert fetched.num_segments == "1"
        listed = await asyncio.to_thread(client.messages.list, limit=5)
        assert [message.sid for message in listed] == [created.sid]
        with pytest.raises(TwilioRestException) as raised:
            await asyncio.to_thread(client.messages.create, to="+15005550009", from_="+15005550006", body="x")
        assert (raised.value.status, raised.value.code) == (400, 21614)
    finally:
        client.http_client.session.close()


@contextlib.asynccontextmanager
async def command_line(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, aiohttp.ClientSession, str]]:
    """Run ``python -m messaging_twilio_sms.emulator *args``; yield it, a client with its credentials, its account URL.

    The process is killed on the way out unless the test stopped it.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "messaging_twilio_sms.emulator", "--port", "0", *args, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        lines = [(await asyncio.wait_for(process.stdout.readline(), 10)).decode() for _ in range(3)]
        base_url = lines[0].split()[-1]
        account_sid = lines[1].strip().split("=", 1)[1]
        auth_token = lines[2].strip().split("=", 1)[1]
        async with aiohttp.ClientSession(
            headers={"Authorization": aiohttp.encode_basic_auth(account_sid, auth_token)},
            timeout=aiohttp.ClientTimeout(total=10),
        ) as session:
            yield process, session, f"{base_url}/2010-04-01/Accounts/{account_sid}"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_command_line_serves_until_interrupted() -> None:
    async with command_line("--status-interval", "0.01") as (process, session, account):
        async with session.get(f"{account}.json") as response:
            assert response.status == 200
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 10) == 0


async def test_command_line_sets_the_list_lag_and_queues_faults() -> None:
    """What `TwilioEmulator(list_lag=..., fault_delay=...)` and `inject` do, for an emulator in its own process."""
    flags = ["--list-lag", "600", "--fault-delay", "0.1", "--fault", "timeout_before_create:2@+15550000002"]
    async with command_line(*flags) as (_, session, account):
        for _ in range(2):  # held 0.1 s, then dropped: nothing created
            with pytest.raises(aiohttp.ClientError):
                async with session.post(f"{account}/Messages.json", data=sms(to="+15550000002")):
                    pass
        async with session.post(f"{account}/Messages.json", data=sms(to="+15550000002")) as response:
            assert response.status == 201
            sid = (await response.json())["sid"]
        async with session.get(f"{account}/Messages.json") as response:
            assert (await response.json())["messages"] == []  # 600 s of lag
        async with session.get(f"{account}/Messages/{sid}.json") as response:
            assert response.status == 200


def test_command_line_rejects_bad_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--account-sid", "nope"]) == 2
    assert "account_sid" in capsys.readouterr().out


def test_command_line_rejects_unknown_faults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--fault", "teapot"]) == 2
    assert "unknown fault 'teapot'" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["--fault", "500:many"])
    assert exited.value.code == 2
    assert "is not NAME[:COUNT][@TO]" in capsys.readouterr().err
