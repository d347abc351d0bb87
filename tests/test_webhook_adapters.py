"""The web framework adapters (``messaging_core.webhooks.asgi``, ``.django``, ``.flask``) fail closed like the host.

Each adapter is driven by its framework's own test client (Starlette's ``TestClient``, which runs
the app's lifespan, and httpx2's ``ASGITransport``; Django's ``Client``; Flask's ``test_client``),
over Twilio SMS connectors created from a configuration file. Accepted requests are signed with
Twilio's own ``RequestValidator`` (the official package), never with this project's signer.

For each framework: a signed inbound SMS is dispatched to ``message_received`` and answered with
the connector's TwiML; a signed status callback is recorded and dispatched; a forged or missing
signature is answered 403 and nothing is dispatched; behind a proxy the signature is checked
against the public URL (the configured one, or forwarded headers only when trusted); a prefix the
routes are mounted under is part of the signed URL; an unknown connector is a 404; a body over the
limit a 413; and the service's answer is relayed as it is (status, content type, headers, body).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx2
import pytest
from attrs import frozen
from django.test import Client as DjangoClient
from django.urls import include, path
from fastapi import FastAPI
from flask import Flask
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from messaging_core import ChannelConnector, ChannelRegistry, Message, StatusUpdate, hookimpl, load_config
from messaging_core.webhooks import ThreadedWebhookService, WebhookAnswer, WebhookKind, WebhookRequest, WebhookService
from messaging_core.webhooks.asgi import create_webhook_asgi_app, create_webhook_router
from messaging_core.webhooks.django import webhook_urlpatterns
from messaging_core.webhooks.flask import create_webhook_blueprint

ACCOUNT = "AC" + "f0" * 16
TOKEN = "0f" * 16
PUBLIC = "https://hooks.example.com"
INTERNAL = "http://internal:8000"
"""Where a reverse proxy forwards the provider's requests: not the URL the provider signed."""
INBOUND = {
    "MessageSid": "SM" + "1" * 32,
    "AccountSid": ACCOUNT,
    "From": "+15557654321",
    "To": "+15005550006",
    "Body": "Hello back",
    "NumMedia": "0",
}
STATUS = {"MessageSid": "SM" + "2" * 32, "AccountSid": ACCOUNT, "MessageStatus": "delivered", "To": "+15557654321"}
FORM = "application/x-www-form-urlencoded"


def official(url: str, fields: dict[str, str]) -> str:
    """The signature Twilio sends, computed by Twilio's own Python validator."""
    signature: str = RequestValidator(TOKEN).compute_signature(url, fields)
    return signature


class Recorder:
    """An observer plugin: what was dispatched (from the service's loop thread for the sync adapters)."""

    def __init__(self) -> None:
        self.received: list[Message] = []
        self.statuses: list[StatusUpdate] = []

    @hookimpl
    def message_received(self, connector: ChannelConnector, message: Message) -> None:
        self.received.append(message)

    @hookimpl
    def message_status_changed(self, connector: ChannelConnector, update: StatusUpdate) -> None:
        self.statuses.append(update)

    @property
    def dispatches(self) -> int:
        return len(self.received) + len(self.statuses)


@frozen
class Answer:
    status: int
    content_type: str | None
    body: bytes
    headers: list[tuple[str, str]]

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


Post = Callable[[str, bytes, dict[str, str]], Answer]
"""Posts ``body`` to an absolute URL (scheme and host as the framework will see them) with headers."""


@pytest.fixture
def config_file(twilio_config: Callable[..., Path]) -> Callable[..., Path]:
    """Writes the configuration: the ``sms`` connector of ``ACCOUNT``, and the ``[webhooks]`` lines given."""
    return lambda webhooks="": twilio_config(ACCOUNT, TOKEN, webhooks)


# -- one client per framework ----------------------------------------------------------------------------


def _split(url: str) -> tuple[str, str, str]:
    """(scheme, host, path and query) of an absolute URL."""
    scheme, _, rest = url.partition("://")
    host, _, path_qs = rest.partition("/")
    return scheme, host, "/" + path_qs


@contextlib.asynccontextmanager
async def _opened(service: WebhookService) -> AsyncIterator[None]:
    """A lifespan that opens the service's connectors: what an application does when it mounts the routes."""
    await service.initialize_connectors()
    try:
        yield
    finally:
        await service.shutdown_connectors()


@contextlib.contextmanager
def _starlette(service: WebhookService, prefix: str) -> Iterator[Post]:
    app = create_webhook_asgi_app(service, manage_lifecycle=not prefix)
    if prefix:  # a mounted app's lifespan is not run: the parent opens the connectors
        app = Starlette(routes=[Mount(prefix, app=app)], lifespan=lambda _: _opened(service))
    with TestClient(app) as client:
        yield lambda url, body, headers: _of_httpx(client.post(url, content=body, headers=headers))


@contextlib.contextmanager
def _fastapi(service: WebhookService, prefix: str) -> Iterator[Post]:
    app = FastAPI(lifespan=lambda _: _opened(service))
    app.include_router(create_webhook_router(service), prefix=prefix)
    with TestClient(app) as client:
        yield lambda url, body, headers: _of_httpx(client.post(url, content=body, headers=headers))


def _of_httpx(response: httpx2.Response) -> Answer:
    return Answer(
        response.status_code, response.headers.get("content-type"), response.content, response.headers.multi_items()
    )


@contextlib.contextmanager
def _flask(service: ThreadedWebhookService, prefix: str) -> Iterator[Post]:
    app = Flask("webhook_adapter_test")
    app.register_blueprint(create_webhook_blueprint(service, url_prefix=prefix or None))
    client = app.test_client()

    def post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
        response = client.post(url, data=body, headers=headers)
        return Answer(response.status_code, response.headers.get("Content-Type"), response.data, list(response.headers))

    yield post


@contextlib.contextmanager
def _django(service: ThreadedWebhookService, prefix: str, *, urls: Callable[[list[Any]], Any]) -> Iterator[Post]:
    urlpatterns = [path(prefix.strip("/") + "/" if prefix else "", include(webhook_urlpatterns(service)))]
    client = DjangoClient(enforce_csrf_checks=True)  # the views must not need a CSRF token

    def post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
        scheme, host, path_qs = _split(url)
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), FORM)
        response = client.post(
            path_qs, data=body, content_type=content_type, secure=scheme == "https", headers={"Host": host, **headers}
        )
        return Answer(response.status_code, response.get("Content-Type"), response.content, list(response.items()))

    with urls(urlpatterns):
        yield post


ASYNC_FRAMEWORKS = {"starlette": _starlette, "fastapi": _fastapi}
SYNC_FRAMEWORKS = ("flask", "django")
SyncFramework = Callable[[ThreadedWebhookService, str], contextlib.AbstractContextManager[Post]]


@pytest.fixture(params=sorted([*ASYNC_FRAMEWORKS, *SYNC_FRAMEWORKS]))
def framework(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def sync_frameworks(request: pytest.FixtureRequest, framework: str) -> dict[str, SyncFramework]:
    """The synchronous adapters' clients; Django's serves its URL patterns through the ``django_urls`` fixture."""
    if framework != "django":
        return {"flask": _flask}
    return {"django": functools.partial(_django, urls=request.getfixturevalue("django_urls"))}


Serve = Callable[..., contextlib.AbstractContextManager[Post]]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def serve(
    framework: str, sync_frameworks: dict[str, SyncFramework], config_file: Callable[..., Path], recorder: Recorder
) -> Serve:
    """Serves the ``sms`` connector of a configuration (with the ``[webhooks]`` lines given) with ``framework``."""

    @contextlib.contextmanager
    def start(webhooks: str = "", prefix: str = "") -> Iterator[Post]:
        registry = ChannelRegistry.discover()
        registry.host.register(recorder)
        config = config_file(webhooks)
        if framework in ASYNC_FRAMEWORKS:
            loaded = load_config(config)
            service = WebhookService(registry.create_connectors(loaded), settings=loaded.webhooks)
            with ASYNC_FRAMEWORKS[framework](service, prefix) as post:
                yield post
        else:
            with (
                ThreadedWebhookService.from_config(config, registry=registry) as threaded,
                sync_frameworks[framework](threaded, prefix) as post,
            ):
                yield post

    return start


def _form_post(post: Post, url: str, fields: dict[str, str], *, signed_for: str | None, **headers: str) -> Answer:
    if signed_for is not None:
        headers["X-Twilio-Signature"] = official(signed_for, fields)
    return post(url, urlencode(fields).encode(), {"Content-Type": FORM, **headers})


# -- the cases ---------------------------------------------------------------------------------------------


def test_a_signed_inbound_sms_is_dispatched_and_answered_with_the_connectors_twiml(
    serve: Serve, recorder: Recorder
) -> None:
    url = f"{PUBLIC}/webhooks/sms/messages?tenant=7"
    with serve() as post:
        answer = _form_post(post, url, INBOUND, signed_for=url)
    assert (answer.status, answer.content_type) == (200, "text/xml")
    assert answer.body.endswith(b"<Response/>")
    assert [(m.id, m.texts()) for m in recorder.received] == [(INBOUND["MessageSid"], ["Hello back"])]


def test_a_signed_status_callback_is_recorded_and_dispatched(serve: Serve, recorder: Recorder) -> None:
    url = f"{PUBLIC}/webhooks/sms/status"
    with serve() as post:
        answer = _form_post(post, url, STATUS, signed_for=url)
        replay = _form_post(post, url, STATUS, signed_for=url)
    assert (answer.status, answer.body) == (204, b"")
    assert answer.content_type is None
    assert [(u.remote_message_id, u.status.value) for u in recorder.statuses] == [(STATUS["MessageSid"], "delivered")]
    assert replay.status == 204, "a replay is acknowledged (the store has it) and not dispatched again"
    assert len(recorder.statuses) == 1


@pytest.mark.parametrize(
    ("case", "signed_for", "fields"),
    [
        ("forged: signed for another URL", f"{PUBLIC}/webhooks/sms/messages?tenant=8", INBOUND),
        ("forged: a field changed after signing", f"{PUBLIC}/webhooks/sms/messages?tenant=7", INBOUND),
        ("unsigned", None, INBOUND),
    ],
)
def test_a_forged_or_unsigned_webhook_is_refused_and_nothing_is_dispatched(
    serve: Serve, recorder: Recorder, case: str, signed_for: str | None, fields: dict[str, str]
) -> None:
    url = f"{PUBLIC}/webhooks/sms/messages?tenant=7"
    sent = {**fields, "Body": "Send me your password"} if "changed" in case else fields
    with serve() as post:
        headers = {} if signed_for is None else {"X-Twilio-Signature": official(signed_for, fields)}
        answer = post(url, urlencode(sent).encode(), {"Content-Type": FORM, **headers})
        status = _form_post(post, f"{PUBLIC}/webhooks/sms/status", STATUS, signed_for=None)
    assert (answer.status, answer.body) == (403, b"invalid signature\n"), case
    assert status.status == 403
    assert recorder.dispatches == 0


def test_behind_a_proxy_the_signature_is_checked_against_the_configured_public_url(
    serve: Serve, recorder: Recorder
) -> None:
    public = f"{PUBLIC}/webhooks/sms/messages?tenant=7"
    with serve(f'public_url = "{PUBLIC}/"') as post:
        answer = _form_post(post, f"{INTERNAL}/webhooks/sms/messages?tenant=7", INBOUND, signed_for=public)
    assert answer.status == 200
    assert len(recorder.received) == 1


def test_forwarded_headers_give_the_public_url_only_when_trusted(serve: Serve, recorder: Recorder) -> None:
    internal = f"{INTERNAL}/webhooks/sms/messages?tenant=7"
    public = f"{PUBLIC}/webhooks/sms/messages?tenant=7"
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.example.com"}
    with serve() as post:
        untrusted = _form_post(post, internal, INBOUND, signed_for=public, **forwarded)
    with serve("trust_forwarded_headers = true") as post:
        trusted = _form_post(post, internal, INBOUND, signed_for=public, **forwarded)
    assert untrusted.status == 403, "forwarded headers anyone can send are ignored unless trusted"
    assert trusted.status == 200
    assert len(recorder.received) == 1


def test_the_prefix_the_routes_are_mounted_under_is_part_of_the_signed_url(serve: Serve, recorder: Recorder) -> None:
    url = f"{PUBLIC}/hooks/webhooks/sms/messages"
    with serve(prefix="/hooks") as post:
        answer = _form_post(post, url, INBOUND, signed_for=url)
        unprefixed = _form_post(post, url, INBOUND, signed_for=f"{PUBLIC}/webhooks/sms/messages")
    assert answer.status == 200
    assert unprefixed.status == 403
    assert len(recorder.received) == 1


def test_an_unknown_connector_is_a_404_and_too_large_a_body_a_413(serve: Serve, recorder: Recorder) -> None:
    url = f"{PUBLIC}/webhooks/nope/messages"
    sms = f"{PUBLIC}/webhooks/sms/messages"
    long = {**INBOUND, "Body": "x" * 1100}
    with serve("max_body_bytes = 1024") as post:
        unknown = _form_post(post, url, INBOUND, signed_for=url)
        large = _form_post(post, sms, long, signed_for=sms)
    assert (unknown.status, unknown.body) == (404, b"no messages webhook for 'nope'\n")
    assert large.status == 413
    assert recorder.dispatches == 0


# -- the answer is relayed as it is -------------------------------------------------------------------------

RELAYED = WebhookAnswer(
    202, "application/vnd.example+json", b'{"reply": "hi"}', headers=(("X-Reply", "1"), ("X-Reply", "2"))
)


class _Answering(WebhookService):
    """A service whose every webhook gets ``RELAYED``: the adapters must not know what a connector answers."""

    async def handle(self, name: str, kind: WebhookKind, request: WebhookRequest) -> WebhookAnswer:
        return RELAYED


def test_each_adapter_relays_the_services_answer_status_content_type_headers_and_body(
    framework: str, sync_frameworks: dict[str, SyncFramework], config_file: Callable[..., Path]
) -> None:
    config = load_config(config_file())
    connectors = ChannelRegistry.discover().create_connectors(config)
    url = f"{PUBLIC}/webhooks/sms/messages"
    with contextlib.ExitStack() as stack:
        if framework in ASYNC_FRAMEWORKS:
            post = stack.enter_context(ASYNC_FRAMEWORKS[framework](_Answering(connectors), ""))
        else:
            threaded = stack.enter_context(ThreadedWebhookService(_Answering(connectors), manage_lifecycle=False))
            post = stack.enter_context(sync_frameworks[framework](threaded, ""))
        answer = post(url, b"x=1", {"Content-Type": FORM})
    assert (answer.status, answer.content_type, answer.body) == (202, RELAYED.content_type, RELAYED.body)
    # Django keeps one value per header name: repeated ones are joined, as HTTP allows.
    assert answer.all("X-Reply") == (["1, 2"] if framework == "django" else ["1", "2"])


# -- event loops ---------------------------------------------------------------------------------------------


async def test_the_asgi_router_runs_on_the_servers_own_loop(
    config_file: Callable[..., Path], recorder: Recorder
) -> None:
    """httpx2's ASGITransport calls the app on this test's loop, where the connectors were initialized."""
    registry = ChannelRegistry.discover()
    registry.host.register(recorder)
    config = load_config(config_file())
    service = WebhookService(registry.create_connectors(config), settings=config.webhooks)
    app = FastAPI()
    app.include_router(create_webhook_router(service))
    url = f"{PUBLIC}/webhooks/sms/messages"
    async with _opened(service), httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)) as client:
        signed = await client.post(
            url,
            content=urlencode(INBOUND),
            headers={"Content-Type": FORM, "X-Twilio-Signature": official(url, INBOUND)},
        )
        forged = await client.post(url, content=urlencode(INBOUND), headers={"Content-Type": FORM})
    assert (signed.status_code, forged.status_code) == (200, 403)
    assert len(recorder.received) == 1


async def test_a_sync_view_called_from_a_thread_whose_loop_is_running_still_answers(
    config_file: Callable[..., Path], recorder: Recorder
) -> None:
    """The Flask view runs inside this test's running loop: it waits on the service's own loop thread."""
    registry = ChannelRegistry.discover()
    registry.host.register(recorder)
    url = f"{PUBLIC}/webhooks/sms/messages"
    with (
        ThreadedWebhookService.from_config(config_file(), registry=registry) as threaded,
        _flask(threaded, "") as post,
    ):
        asyncio.get_running_loop()  # there is one, running, in this very thread
        answer = _form_post(post, url, INBOUND, signed_for=url)
    assert answer.status == 200
    assert len(recorder.received) == 1
    assert not threaded.running, "closing stops the loop thread"


def _answer_empty(threaded: ThreadedWebhookService) -> WebhookAnswer:
    return threaded.answer(
        "sms",
        "messages",
        content_length=0,
        read_body=lambda n: b"",
        content_type=FORM,
        scheme="https",
        host="hooks.example.com",
        path_qs="/webhooks/sms/messages",
        headers={},
    )


class _CallsBack:
    """An observer that calls the synchronous service from the service's own loop: it must not hang."""

    def __init__(self, threaded: ThreadedWebhookService) -> None:
        self.threaded = threaded
        self.errors: list[str] = []

    @hookimpl
    def message_received(self, connector: ChannelConnector, message: Message) -> None:
        try:
            _answer_empty(self.threaded)
        except RuntimeError as err:
            self.errors.append(str(err))
            raise


def test_the_service_refuses_to_work_unstarted_and_to_wait_on_its_own_loop(
    config_file: Callable[..., Path],
) -> None:
    registry = ChannelRegistry.discover()
    threaded = ThreadedWebhookService.from_config(config_file(), registry=registry)
    with pytest.raises(RuntimeError, match="not started: call start"):
        _answer_empty(threaded)
    observer = _CallsBack(threaded)
    registry.host.register(observer)
    url = f"{PUBLIC}/webhooks/sms/messages"
    with threaded, _flask(threaded, "") as post:
        answer = _form_post(post, url, INBOUND, signed_for=url)
    assert observer.errors == ["a view cannot wait on the webhook loop from the loop's own thread"]
    assert (answer.status, answer.body) == (500, b"observer failed\n"), "an error, not a deadlock"


def test_importing_the_core_imports_no_web_framework() -> None:
    """What the import-linter contracts promise, checked at run time: only an adapter module loads its framework."""
    frameworks = ("starlette", "fastapi", "django", "flask", "werkzeug")
    code = (
        "import sys, messaging_core, messaging_core.webhooks, messaging_core.cli, messaging_core.testing\n"
        f"print(sorted(m for m in {frameworks!r} if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
