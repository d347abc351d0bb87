"""The webhook host (``messaging_core.web``) with real Twilio connectors and a real Twilio emulator.

Every request here crosses a real loopback socket: the host is served by an ``AppRunner`` on a
pre-bound port (so the connectors' ``StatusCallback`` can point at it before they are created),
the emulator posts its own signed status callbacks and inbound messages, and the other requests
are signed with the emulator's auth token by ``compute_signature``. Observers are plugin objects
registered on the registry's host before the connectors are built.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from messaging_core import (
    ChannelConnector,
    ChannelRegistry,
    Message,
    MessageBuilder,
    MessageStatus,
    StatusUpdate,
    WebhookSettings,
    hookimpl,
)
from messaging_core.webhooks import WebhookService, WebhookStats, create_webhook_app, public_url_of
from messaging_core.webhooks.app import STATS_KEY
from messaging_twilio_sms import TwilioSmsConnector
from messaging_twilio_sms.emulator import TwilioEmulator
from messaging_twilio_sms.webhooks import SIGNATURE_HEADER, body_sha256, compute_signature

SENDER = "+15005550006"
RECEIVER = "+15551230001"
TOKEN_HEADER = "I-Twilio-Idempotency-Token"
ACCOUNT = "AC" + "c" * 32
"""The emulator's account: hand-built webhooks name it, as Twilio's do (others are refused)."""
SID_A = "SM" + "a" * 32
SID_B = "SM" + "b" * 32
DEADLINE = 5.0


# -- fixtures and helpers --------------------------------------------------------------------------


class Recorder:
    """An observer plugin: records dispatches; can be told to fail or to be slow."""

    def __init__(self) -> None:
        self.received: list[Message] = []
        self.statuses: list[StatusUpdate] = []
        self.fail_next = 0
        self.delay = 0.0

    async def _maybe_fail(self) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("observer boom")

    @hookimpl
    async def message_received(self, connector: ChannelConnector, message: Message) -> None:
        await self._maybe_fail()
        self.received.append(message)

    @hookimpl
    async def message_status_changed(self, connector: ChannelConnector, update: StatusUpdate) -> None:
        await self._maybe_fail()
        self.statuses.append(update)

    def statuses_of(self, sid: str) -> list[MessageStatus]:
        return [u.status for u in self.statuses if u.remote_message_id == sid]

    @property
    def dispatches(self) -> int:
        return len(self.received) + len(self.statuses)


class Host:
    """A running webhook host: base URL, app, connectors, observer, and a client to post with."""

    def __init__(
        self,
        base: str,
        app: web.Application,
        connectors: dict[str, ChannelConnector],
        recorder: Recorder,
        session: aiohttp.ClientSession,
        emulator: TwilioEmulator,
    ) -> None:
        self.base = base
        self.app = app
        self.connectors = connectors
        self.recorder = recorder
        self.session = session
        self.emulator = emulator

    @property
    def stats(self) -> WebhookStats:
        return self.app[STATS_KEY]

    def url(self, path: str) -> str:
        return self.base + path

    async def post(
        self,
        path: str,
        body: bytes | str,
        *,
        content_type: str | None = "application/x-www-form-urlencoded",
        headers: Iterable[tuple[str, str]] = (),
    ) -> tuple[int, str, str | None]:
        """POST raw bytes; returns (status, text, content type)."""
        all_headers = list(headers)
        if content_type is not None:
            all_headers.append(("Content-Type", content_type))
        data = body.encode() if isinstance(body, str) else body
        async with self.session.post(self.url(path), data=data, headers=all_headers) as response:
            return response.status, await response.text(errors="replace"), response.headers.get("Content-Type")

    async def post_signed(
        self,
        path: str,
        params: Mapping[str, str],
        *,
        token: str | None = None,
        signed_url: str | None = None,
        idempotency: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> tuple[int, str, str | None]:
        """POST a form signed as Twilio signs it (for ``signed_url``, by default the URL posted to)."""
        signature = compute_signature(token or self.emulator.auth_token, signed_url or self.url(path), dict(params))
        extra = [(SIGNATURE_HEADER, signature), (TOKEN_HEADER, idempotency or str(uuid.uuid4())), *headers]
        return await self.post(path, urlencode(params), headers=extra)


HostFactory = Callable[..., Awaitable[Host]]


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
async def emulator() -> AsyncIterator[TwilioEmulator]:
    async with TwilioEmulator(status_interval=0.01, account_sid=ACCOUNT) as emu:
        yield emu


@pytest.fixture
async def make_host(emulator: TwilioEmulator) -> AsyncIterator[HostFactory]:
    """Builds and serves a webhook host for connector ``sms`` (plus ``extra`` connector specs)."""
    cleanups: list[Callable[[], Awaitable[Any]]] = []

    async def make(
        *,
        webhook_settings: WebhookSettings | None = None,
        parameters: Mapping[str, Any] | None = None,
        extra: Mapping[str, Mapping[str, Any]] | None = None,
        initialize: Iterable[str] | None = None,
        dedup_size: int = 100_000,
        plugins: Iterable[object] = (),
    ) -> Host:
        sock = _bound_socket()
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        registry = ChannelRegistry.discover()
        recorder = Recorder()
        registry.host.register(recorder, name=f"recorder-{uuid.uuid4().hex}")  # before the connectors
        for plugin in plugins:
            registry.host.register(plugin, name=f"plugin-{uuid.uuid4().hex}")
        sms_parameters = {
            "AccountSid": emulator.account_sid,
            "AuthToken": emulator.auth_token,
            "ApiBaseUrl": emulator.base_url,
            "StatusCallback": f"{base}/webhooks/sms/status",
            **(parameters or {}),
        }
        specs = {"sms": {"channel": "twilio_sms", "schema": "TwilioSms", "parameters": sms_parameters}}
        specs.update(extra or {})
        connectors = {name: registry.create_connector(spec, name=name) for name, spec in specs.items()}
        for name in specs if initialize is None else initialize:
            (await connectors[name].initialize()).unwrap()
        for connector in connectors.values():
            cleanups.append(connector.shutdown)
        app = create_webhook_app(connectors, settings=webhook_settings, dedup_size=dedup_size)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        cleanups.append(runner.cleanup)
        await web.SockSite(runner, sock).start()
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEADLINE))
        cleanups.append(session.close)
        return Host(base, app, connectors, recorder, session, emulator)

    yield make
    for cleanup in reversed(cleanups):
        await cleanup()


@pytest.fixture
async def host(make_host: HostFactory) -> Host:
    """A host with the defaults (hypothesis runs all its examples against the same one)."""
    return await make_host()


async def eventually(predicate: Callable[[], bool], seconds: float = DEADLINE) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def inbound_form(sid: str = SID_A, body: str = "hello", **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": ACCOUNT,
        "From": RECEIVER,
        "To": SENDER,
        "Body": body,
        "NumMedia": "0",
        **extra,
    }


def status_form(status: str, sid: str = SID_A, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "AccountSid": ACCOUNT,
        "MessageStatus": status,
        "SmsStatus": status,
        "To": RECEIVER,
        **extra,
    }


def text_message(receiver: str = RECEIVER, text: str = "hello from the tests") -> Message:
    return MessageBuilder().with_phone_sender(SENDER).with_phone_receiver(receiver).with_text_content(text).build()


# -- the happy paths, driven by the emulator ---------------------------------------------------------


async def test_connectors_are_the_twilio_plugins(make_host: HostFactory) -> None:
    host = await make_host()
    assert isinstance(host.connectors["sms"], TwilioSmsConnector)


async def test_inbound_message_from_the_emulator_is_dispatched_and_answered_with_empty_twiml(
    make_host: HostFactory, emulator: TwilioEmulator
) -> None:
    host = await make_host()
    status, text = await emulator.simulate_inbound(RECEIVER, SENDER, "Hi there", url=host.url("/webhooks/sms/messages"))
    assert status == 200
    assert text.endswith("<Response/>")
    assert emulator.callback_log[-1].status == 200
    [message] = host.recorder.received
    assert message.sender is not None
    assert message.sender.address == RECEIVER
    assert message.receiver is not None
    assert message.receiver.address == SENDER
    assert message.texts() == ["Hi there"]
    # The provider's raw fields are kept.
    assert message.properties["AccountSid"] == emulator.account_sid
    assert host.stats.dispatched == 1
    assert host.stats.forbidden == 0


async def test_inbound_answer_is_text_xml(make_host: HostFactory) -> None:
    host = await make_host()
    status, text, content_type = await host.post_signed("/webhooks/sms/messages", inbound_form())
    assert status == 200
    assert content_type is not None
    assert content_type.startswith("text/xml")
    assert "<Response/>" in text


async def test_inbound_mms_keeps_media(make_host: HostFactory, emulator: TwilioEmulator) -> None:
    host = await make_host()
    status, _ = await emulator.simulate_inbound(
        RECEIVER, SENDER, "look", ["https://example.com/a.png"], url=host.url("/webhooks/sms/messages")
    )
    assert status == 200
    [message] = host.recorder.received
    assert message.texts() == ["look"]
    assert "https://example.com/a.png" in json.dumps(message.properties)


async def test_status_callbacks_of_a_real_send_are_verified_and_dispatched_in_order(
    make_host: HostFactory, emulator: TwilioEmulator
) -> None:
    host = await make_host()
    message = text_message()
    result = await host.connectors["sms"].send_message(message)
    assert result.is_success, result.error_message
    assert result.value is not None
    sid = result.value.remote_message_id
    assert sid is not None
    assert await eventually(lambda: MessageStatus.DELIVERED in host.recorder.statuses_of(sid))
    seen = host.recorder.statuses_of(sid)
    ranks = [s.rank for s in seen]
    assert ranks == sorted(set(ranks))  # strictly forward
    # Our own message id comes back through the StatusCallback query.
    assert all(u.message_id == message.id for u in host.recorder.statuses)
    callbacks = [r for r in emulator.callback_log if r.message_sid == sid]
    assert callbacks
    assert all(r.status == 204 for r in callbacks)
    assert host.stats.forbidden == 0
    assert host.stats.rejected == 0


async def test_undelivered_status_carries_the_error_code(make_host: HostFactory) -> None:
    host = await make_host()
    result = await host.connectors["sms"].send_message(text_message("+15559990001"))
    assert result.value is not None
    assert result.value.remote_message_id is not None
    sid = result.value.remote_message_id
    assert await eventually(lambda: MessageStatus.DELIVERY_FAILED in host.recorder.statuses_of(sid))
    final = host.recorder.statuses[-1]
    assert final.raw_status == "undelivered"
    assert final.additional_data["error_code"] == 30003


# -- signatures ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["messages", "status"])
@pytest.mark.parametrize(
    "signature_headers",
    [
        pytest.param([], id="missing"),
        pytest.param([(SIGNATURE_HEADER, "")], id="empty"),
        pytest.param([(SIGNATURE_HEADER, "bm90IGEgc2lnbmF0dXJl")], id="wrong"),
        pytest.param([(SIGNATURE_HEADER, "ä€ not ascii")], id="not-ascii"),
        pytest.param([(SIGNATURE_HEADER, "x"), (SIGNATURE_HEADER, "y")], id="duplicated"),
    ],
)
async def test_bad_signature_is_forbidden_and_nothing_is_dispatched(
    make_host: HostFactory, kind: str, signature_headers: list[tuple[str, str]]
) -> None:
    host = await make_host()
    form = inbound_form() if kind == "messages" else status_form("delivered")
    status, text, _ = await host.post(f"/webhooks/sms/{kind}", urlencode(form), headers=signature_headers)
    assert status == 403
    assert "signature" in text
    assert host.recorder.dispatches == 0
    assert host.stats.forbidden == 1


async def test_signature_with_another_token_is_forbidden(make_host: HostFactory) -> None:
    host = await make_host()
    status, _, _ = await host.post_signed("/webhooks/sms/messages", inbound_form(), token=uuid.uuid4().hex)
    assert status == 403
    assert host.recorder.dispatches == 0


async def test_tampered_body_is_forbidden(make_host: HostFactory, emulator: TwilioEmulator) -> None:
    host = await make_host()
    url = host.url("/webhooks/sms/messages")
    signature = compute_signature(emulator.auth_token, url, inbound_form(body="pay 1 USD"))
    status, _, _ = await host.post(
        "/webhooks/sms/messages", urlencode(inbound_form(body="pay 1000 USD")), headers=[(SIGNATURE_HEADER, signature)]
    )
    assert status == 403
    assert host.recorder.dispatches == 0


# -- malformed and unsupported payloads ---------------------------------------------------------------


async def test_signed_form_without_required_fields_is_a_400_with_a_reason(make_host: HostFactory) -> None:
    host = await make_host()
    form = inbound_form()
    del form["MessageSid"]
    status, text, _ = await host.post_signed("/webhooks/sms/messages", form)
    assert status == 400
    assert "MessageSid" in text
    assert len(text) < 300
    status, text, _ = await host.post_signed("/webhooks/sms/status", {"MessageSid": SID_A})
    assert status == 400
    assert "MessageStatus" in text
    assert host.recorder.dispatches == 0
    assert host.stats.rejected == 2


async def test_unsupported_content_type_is_a_400(make_host: HostFactory, emulator: TwilioEmulator) -> None:
    host = await make_host()
    path = f"/webhooks/sms/messages?bodySHA256={body_sha256(b'MessageSid=x')}"
    signature = compute_signature(emulator.auth_token, host.url(path))  # the URL alone: not a form
    status, text, _ = await host.post(
        path, b"MessageSid=x", content_type="text/plain", headers=[(SIGNATURE_HEADER, signature)]
    )
    assert status == 400
    assert "content type" in text
    assert host.recorder.dispatches == 0


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"{not json", "not valid JSON"), (b"[1, 2]", "not an object"), (b'{"Body": "hi"}', "MessageSid")],
)
async def test_signed_json_that_is_malformed_is_a_400(
    make_host: HostFactory, emulator: TwilioEmulator, body: bytes, reason: str
) -> None:
    host = await make_host()
    path = f"/webhooks/sms/messages?bodySHA256={body_sha256(body)}"
    signature = compute_signature(emulator.auth_token, host.url(path))
    status, text, _ = await host.post(
        path, body, content_type="application/json", headers=[(SIGNATURE_HEADER, signature)]
    )
    assert status == 400
    assert reason in text
    assert host.recorder.dispatches == 0


async def test_signed_json_inbound_is_accepted(make_host: HostFactory, emulator: TwilioEmulator) -> None:
    host = await make_host()
    body = json.dumps(inbound_form(body="json hello")).encode()
    path = f"/webhooks/sms/messages?bodySHA256={body_sha256(body)}"
    signature = compute_signature(emulator.auth_token, host.url(path))
    status, _, _ = await host.post(path, body, content_type="application/json", headers=[(SIGNATURE_HEADER, signature)])
    assert status == 200
    assert [m.texts() for m in host.recorder.received] == [["json hello"]]


def credentials(emulator: TwilioEmulator) -> dict[str, str]:
    return {"AccountSid": emulator.account_sid, "AuthToken": emulator.auth_token, "ApiBaseUrl": emulator.base_url}


async def test_unknown_connector_and_missing_capability_are_404(
    make_host: HostFactory, emulator: TwilioEmulator
) -> None:
    spec = {"channel": "twilio_sms", "schema": "SimpleSms", "parameters": credentials(emulator)}
    host = await make_host(extra={"simple": spec})
    status, _, _ = await host.post_signed("/webhooks/nope/messages", inbound_form())
    assert status == 404
    # SimpleSms neither receives messages nor handles status callbacks.
    for kind in ("messages", "status"):
        status, _, _ = await host.post_signed(f"/webhooks/simple/{kind}", inbound_form())
        assert status == 404
    assert host.recorder.dispatches == 0


async def test_get_on_a_webhook_is_405(make_host: HostFactory) -> None:
    host = await make_host()
    async with host.session.get(host.url("/webhooks/sms/messages")) as response:
        assert response.status == 405


# -- observers that fail: 500, and the provider's retry dispatches -----------------------------------


async def test_failing_message_observer_gives_500_and_the_retry_dispatches(
    make_host: HostFactory, caplog: pytest.LogCaptureFixture
) -> None:
    host = await make_host()
    host.recorder.fail_next = 1
    token = str(uuid.uuid4())
    with caplog.at_level(logging.ERROR, logger="messaging_core.web"):
        status, _, _ = await host.post_signed("/webhooks/sms/messages", inbound_form(), idempotency=token)
    assert status == 500
    assert "message_received observer failed" in caplog.text
    assert "Traceback" in caplog.text or "observer boom" in caplog.text
    assert host.recorder.received == []
    # Twilio retries with the same idempotency token.
    status, text, _ = await host.post_signed("/webhooks/sms/messages", inbound_form(), idempotency=token)
    assert status == 200
    assert "<Response/>" in text
    assert len(host.recorder.received) == 1
    status, _, _ = await host.post_signed("/webhooks/sms/messages", inbound_form(), idempotency=token)
    assert status == 200
    assert len(host.recorder.received) == 1
    assert host.stats.errors == 1
    assert host.stats.duplicates == 1


async def test_failing_status_observer_gives_500_and_the_retry_dispatches(make_host: HostFactory) -> None:
    host = await make_host()
    host.recorder.fail_next = 1
    token = str(uuid.uuid4())
    status, _, _ = await host.post_signed("/webhooks/sms/status", status_form("sent"), idempotency=token)
    assert status == 500
    assert host.recorder.statuses == []
    status, _, _ = await host.post_signed("/webhooks/sms/status", status_form("sent"), idempotency=token)
    assert status == 204
    assert host.recorder.statuses_of(SID_A) == [MessageStatus.SENT]
    # The failed attempt did not leave "sent" recorded as the reconciled status twice over.
    status, _, _ = await host.post_signed("/webhooks/sms/status", status_form("delivered"))
    assert status == 204
    assert host.recorder.statuses_of(SID_A) == [MessageStatus.SENT, MessageStatus.DELIVERED]


async def test_observer_slower_than_the_request_timeout_is_retried(make_host: HostFactory) -> None:
    host = await make_host(webhook_settings=WebhookSettings(request_timeout=0.1))
    host.recorder.delay = 0.5
    token = str(uuid.uuid4())
    started = time.monotonic()
    status, _, _ = await host.post_signed("/webhooks/sms/status", status_form("sent"), idempotency=token)
    assert status == 503  # the provider retries on 5xx
    assert time.monotonic() - started < 0.45
    assert host.recorder.statuses == []
    host.recorder.delay = 0.0
    status, _, _ = await host.post_signed("/webhooks/sms/status", status_form("sent"), idempotency=token)
    assert status == 204
    assert host.recorder.statuses_of(SID_A) == [MessageStatus.SENT]

    host.recorder.delay = 0.5
    status, _, _ = await host.post_signed("/webhooks/sms/messages", inbound_form(), idempotency=token + "-in")
    assert status == 503
    host.recorder.delay = 0.0
    status, _, _ = await host.post_signed("/webhooks/sms/messages", inbound_form(), idempotency=token + "-in")
    assert status == 200
    assert len(host.recorder.received) == 1


# -- duplicates and ordering -----------------------------------------------------------------------------


async def test_redelivery_with_the_same_idempotency_token_is_dispatched_once(make_host: HostFactory) -> None:
    host = await make_host()
    token = str(uuid.uuid4())
    answers = [
        (await host.post_signed("/webhooks/sms/status", status_form("sent"), idempotency=token))[0] for _ in range(3)
    ]
    assert answers == [204, 204, 204]
    assert host.recorder.statuses_of(SID_A) == [MessageStatus.SENT]
    assert host.stats.not_applied == 2  # the status store saw the token before


async def test_same_inbound_message_with_new_tokens_is_dispatched_once(make_host: HostFactory) -> None:
    host = await make_host()
    answers = [(await host.post_signed("/webhooks/sms/messages", inbound_form()))[0] for _ in range(3)]
    assert answers == [200, 200, 200]
    assert len(host.recorder.received) == 1
    # Another message is another dispatch.
    assert (await host.post_signed("/webhooks/sms/messages", inbound_form(SID_B)))[0] == 200
    assert [m.id for m in host.recorder.received] == [SID_A, SID_B]


async def test_same_message_and_status_with_new_tokens_is_dispatched_once(make_host: HostFactory) -> None:
    host = await make_host()
    for _ in range(3):
        assert (await host.post_signed("/webhooks/sms/status", status_form("delivered")))[0] == 204
    assert host.recorder.statuses_of(SID_A) == [MessageStatus.DELIVERED]
    # The same status of another message is not a duplicate.
    assert (await host.post_signed("/webhooks/sms/status", status_form("delivered", SID_B)))[0] == 204
    assert host.recorder.statuses_of(SID_B) == [MessageStatus.DELIVERED]


async def test_concurrent_redeliveries_are_dispatched_once(make_host: HostFactory) -> None:
    host = await make_host()
    host.recorder.delay = 0.05  # hold the first dispatch while the copies arrive
    token = str(uuid.uuid4())
    answers = await asyncio.gather(
        *(host.post_signed("/webhooks/sms/status", status_form("sent"), idempotency=token) for _ in range(5)),
        *(host.post_signed("/webhooks/sms/messages", inbound_form()) for _ in range(5)),
    )
    assert sorted(a[0] for a in answers) == [200] * 5 + [204] * 5
    assert host.recorder.statuses_of(SID_A) == [MessageStatus.SENT]
    assert len(host.recorder.received) == 1


async def test_out_of_order_status_never_moves_backwards(make_host: HostFactory) -> None:
    host = await make_host()
    for raw in ("delivered", "sent", "queued", "sending"):
        assert (await host.post_signed("/webhooks/sms/status", status_form(raw)))[0] == 204
    assert host.recorder.statuses_of(SID_A) == [MessageStatus.DELIVERED]
    assert host.stats.not_applied == 3
    # Forward progress after a final status is still possible where the channel allows it.
    assert (await host.post_signed("/webhooks/sms/status", status_form("read")))[0] == 204
    assert host.recorder.statuses_of(SID_A) == [MessageStatus.DELIVERED, MessageStatus.READ]


async def test_in_order_statuses_are_all_dispatched(make_host: HostFactory) -> None:
    host = await make_host()
    for raw in ("queued", "sending", "sent", "delivered"):
        assert (await host.post_signed("/webhooks/sms/status", status_form(raw)))[0] == 204
    assert host.recorder.statuses_of(SID_A) == [
        MessageStatus.QUEUED,
        MessageStatus.ROUTED,
        MessageStatus.SENT,
        MessageStatus.DELIVERED,
    ]
    assert host.stats.not_applied == 0


async def test_dedup_memory_is_bounded(make_host: HostFactory) -> None:
    # Each inbound delivery remembers two keys (its idempotency token and its MessageSid): room for two.
    host = await make_host(dedup_size=4)
    for sid in (SID_A, SID_B, "SM" + "c" * 32):
        assert (await host.post_signed("/webhooks/sms/messages", inbound_form(sid)))[0] == 200
    # SID_A was forgotten (oldest first): a redelivery now dispatches again, SID_C's does not.
    await host.post_signed("/webhooks/sms/messages", inbound_form(SID_A))
    await host.post_signed("/webhooks/sms/messages", inbound_form("SM" + "c" * 32))
    assert [m.id for m in host.recorder.received] == [SID_A, SID_B, "SM" + "c" * 32, SID_A]


# -- public URL behind a proxy -------------------------------------------------------------------------


async def test_configured_public_url_is_what_signatures_are_checked_against(make_host: HostFactory) -> None:
    public = "https://hooks.example.com"
    host = await make_host(webhook_settings=WebhookSettings(public_url=public + "/"))
    path = "/webhooks/sms/messages"
    status, _, _ = await host.post_signed(path, inbound_form(), signed_url=public + path)
    assert status == 200
    # Signed for the URL the host happens to listen on: not what the provider called.
    status, _, _ = await host.post_signed(path, inbound_form(SID_B))
    assert status == 403
    assert [m.id for m in host.recorder.received] == [SID_A]


async def test_untrusted_forwarded_headers_are_ignored(make_host: HostFactory) -> None:
    host = await make_host()  # trust_forwarded_headers is off by default
    path = "/webhooks/sms/messages"
    forged = [("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "hooks.example.com")]
    status, _, _ = await host.post_signed(
        path, inbound_form(), signed_url="https://hooks.example.com" + path, headers=forged
    )
    assert status == 403
    assert host.recorder.dispatches == 0


async def test_trusted_forwarded_headers_give_the_public_url(make_host: HostFactory) -> None:
    host = await make_host(webhook_settings=WebhookSettings(trust_forwarded_headers=True))
    path = "/webhooks/sms/messages"
    forwarded = [("X-Forwarded-Proto", "https, http"), ("X-Forwarded-Host", "hooks.example.com, proxy.internal")]
    status, _, _ = await host.post_signed(
        path, inbound_form(), signed_url="https://hooks.example.com" + path, headers=forwarded
    )
    assert status == 200
    assert len(host.recorder.received) == 1


def test_public_url_of_prefers_configuration_over_forwarded_headers() -> None:
    from aiohttp.test_utils import make_mocked_request

    request = make_mocked_request(
        "POST",
        "/webhooks/sms/status?MessageId=m1",
        headers={"Host": "127.0.0.1:8080", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
    )
    configured = WebhookSettings(public_url="https://hooks.example.com/", trust_forwarded_headers=True)
    assert public_url_of(request, configured) == "https://hooks.example.com/webhooks/sms/status?MessageId=m1"
    assert public_url_of(request, WebhookSettings()) == "http://127.0.0.1:8080/webhooks/sms/status?MessageId=m1"
    trusted = WebhookSettings(trust_forwarded_headers=True)
    assert public_url_of(request, trusted) == "https://evil.example/webhooks/sms/status?MessageId=m1"


# -- limits -------------------------------------------------------------------------------------------------


async def test_body_larger_than_the_limit_is_413(make_host: HostFactory) -> None:
    host = await make_host(webhook_settings=WebhookSettings(max_body_bytes=1024))
    form = inbound_form(body="x" * 2048)
    status, _, _ = await host.post_signed("/webhooks/sms/messages", form)
    assert status == 413
    assert host.recorder.dispatches == 0
    # Below the limit, the same host accepts.
    status, _, _ = await host.post_signed("/webhooks/sms/messages", inbound_form(body="x" * 100))
    assert status == 200


async def test_a_body_that_never_arrives_times_out(make_host: HostFactory) -> None:
    host = await make_host(webhook_settings=WebhookSettings(request_timeout=0.2))
    port = int(host.base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /webhooks/sms/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nMessageSid="
        )
        await writer.drain()
        started = time.monotonic()
        status_line = await asyncio.wait_for(reader.readline(), DEADLINE)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert status_line.startswith(b"HTTP/1.1 503")
    assert time.monotonic() - started < 2.0
    assert host.recorder.dispatches == 0


# -- health -------------------------------------------------------------------------------------------------


def count_health_checks(connector: Any) -> list[int]:
    """Count the provider health checks of ``connector`` (one element per ``get_health`` call)."""
    calls: list[int] = []
    real = connector.get_health

    async def counted() -> Any:
        calls.append(1)
        return await real()

    connector.get_health = counted
    return calls


async def test_healthz_is_liveness_and_calls_no_provider(make_host: HostFactory, emulator: TwilioEmulator) -> None:
    host = await make_host()
    checks = count_health_checks(host.connectors["sms"])
    await emulator.stop()  # a provider that is down does not make the process dead
    for _ in range(3):
        async with host.session.get(host.url("/healthz")) as response:
            assert response.status == 200
            report = await response.json()
    assert report["alive"] is True
    assert "dispatched" in report["webhooks"]
    assert "connectors" not in report
    assert checks == []


async def test_readyz_reports_every_connector(make_host: HostFactory) -> None:
    host = await make_host()
    async with host.session.get(host.url("/readyz")) as response:
        assert response.status == 200
        report = await response.json()
    assert report["ready"] is True
    assert set(report["connectors"]) == {"sms"}
    assert report["connectors"]["sms"]["state"] == "ready"
    assert report["connectors"]["sms"]["healthy"] is True


async def test_readyz_is_cached_for_the_configured_seconds(make_host: HostFactory) -> None:
    host = await make_host(webhook_settings=WebhookSettings(readiness_cache_seconds=60))
    checks = count_health_checks(host.connectors["sms"])
    # Concurrent probes share one check; later ones within the window reuse it.
    statuses = await asyncio.gather(*(_get_status(host, "/readyz") for _ in range(5)))
    statuses.append(await _get_status(host, "/readyz"))
    assert statuses == [200] * 6
    assert len(checks) == 1


async def test_readyz_checks_again_after_the_cache_expires(make_host: HostFactory, emulator: TwilioEmulator) -> None:
    host = await make_host(webhook_settings=WebhookSettings(readiness_cache_seconds=0))
    checks = count_health_checks(host.connectors["sms"])
    assert await _get_status(host, "/readyz") == 200
    await emulator.stop()
    assert await _get_status(host, "/readyz") == 503
    assert len(checks) == 2


async def _get_status(host: Host, path: str) -> int:
    async with host.session.get(host.url(path)) as response:
        await response.read()
        return response.status


async def test_readyz_is_503_when_one_connector_is_unhealthy(make_host: HostFactory, emulator: TwilioEmulator) -> None:
    spare = {"channel": "twilio_sms", "schema": "TwilioSms", "parameters": credentials(emulator)}
    host = await make_host(extra={"spare": spare}, initialize=["sms"])
    async with host.session.get(host.url("/readyz")) as response:
        assert response.status == 503
        report = await response.json()
    assert report["ready"] is False
    assert report["connectors"]["sms"]["healthy"] is True
    assert report["connectors"]["spare"]["healthy"] is False
    assert any("uninitialized" in issue for issue in report["connectors"]["spare"]["issues"])
    # A connector that is not ready does not take webhooks either.
    status, _, _ = await host.post_signed("/webhooks/spare/messages", inbound_form())
    assert status == 503


async def test_readyz_is_503_when_the_provider_is_unreachable(make_host: HostFactory, emulator: TwilioEmulator) -> None:
    host = await make_host()
    await emulator.stop()
    async with host.session.get(host.url("/readyz")) as response:
        assert response.status == 503
        report = await response.json()
    assert report["connectors"]["sms"]["state"] == "ready"
    assert report["connectors"]["sms"]["issues"]


async def test_readyz_answers_within_the_request_timeout_when_the_provider_hangs(
    make_host: HostFactory, emulator: TwilioEmulator
) -> None:
    host = await make_host(webhook_settings=WebhookSettings(request_timeout=0.2))
    emulator.latency = 0.6  # every API answer, the health check's account fetch included
    started = time.monotonic()
    async with host.session.get(host.url("/readyz")) as response:
        assert response.status == 503
        report = await response.json()
    assert time.monotonic() - started < 0.5
    assert report["connectors"]["sms"]["state"] == "ready"
    assert report["connectors"]["sms"]["issues"] == ["health check took longer than 0.2 s"]


# -- lifecycle ------------------------------------------------------------------------------------------------


async def test_managed_lifecycle_initializes_and_shuts_down(emulator: TwilioEmulator) -> None:
    registry = ChannelRegistry.discover()
    connector = registry.create_connector({"channel": "twilio_sms", "parameters": credentials(emulator)}, name="sms")
    app = create_webhook_app({"sms": connector}, manage_lifecycle=True)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        assert connector.is_ready
    finally:
        await runner.cleanup()
    assert connector.state.value == "shutdown"


async def test_route_name_may_differ_from_the_connector_name(emulator: TwilioEmulator) -> None:
    """A mapping key is the route: a connector created without that name still works."""
    connector = TwilioSmsConnector(TwilioSmsConnector.master_schema, credentials(emulator))
    assert connector.name != "hooks"
    app = create_webhook_app({"hooks": connector}, manage_lifecycle=True)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = _bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/webhooks/hooks/messages"
    await web.SockSite(runner, sock).start()
    try:
        status, _ = await emulator.simulate_inbound(RECEIVER, SENDER, "hi", url=url)
        assert status == 200
        assert app[STATS_KEY].dispatched == 1
    finally:
        await runner.cleanup()


# -- never a 500 for bad input ---------------------------------------------------------------------------------

_CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=latin-1",
        "application/json",
        "text/plain",
        "multipart/form-data; boundary=zzz",
        "text/xml",
        "application/octet-stream",
    ]
)
_HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
_SIGNATURE_HEADERS = st.lists(_HEADER_TEXT, max_size=3).map(lambda values: [(SIGNATURE_HEADER, v) for v in values])
_FORMS = st.dictionaries(st.text(max_size=12), st.text(max_size=30), max_size=8)
_FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_FUZZ
@given(
    kind=st.sampled_from(["messages", "status"]),
    body=st.one_of(st.binary(max_size=300), _FORMS.map(lambda form: urlencode(form).encode())),
    content_type=_CONTENT_TYPES,
    signatures=_SIGNATURE_HEADERS,
    query=st.sampled_from(["", "?bodySHA256=00", "?MessageId=x&MessageId=y", "?%ff%fe=%00"]),
)
async def test_random_unsigned_requests_are_refused_without_dispatch(
    host: Host,
    kind: str,
    body: bytes,
    content_type: str | None,
    signatures: list[tuple[str, str]],
    query: str,
) -> None:
    status, _, _ = await host.post(f"/webhooks/sms/{kind}{query}", body, content_type=content_type, headers=signatures)
    assert status in {400, 403}
    assert host.recorder.dispatches == 0


_REQUIRED = {"messages": ("MessageSid", "From", "To"), "status": ("MessageSid", "MessageStatus")}


@_FUZZ
@given(kind=st.sampled_from(["messages", "status"]), form=_FORMS, data=st.data())
async def test_random_signed_forms_missing_required_fields_are_400_without_dispatch(
    host: Host, kind: str, form: dict[str, str], data: st.DataObject
) -> None:
    required = _REQUIRED[kind]
    # Some of the required fields, never all of them (a complete form is a real webhook).
    present = data.draw(st.lists(st.sampled_from(required), unique=True, max_size=len(required) - 1))
    fields = {k: v for k, v in form.items() if k not in required and k != "SmsStatus"}
    fields.update({name: data.draw(st.text(min_size=1, max_size=20)) for name in present})
    status, text, _ = await host.post_signed(f"/webhooks/sms/{kind}", fields)
    assert status == 400, text
    assert host.recorder.dispatches == 0


@_FUZZ
@given(
    kind=st.sampled_from(["messages", "status"]),
    body=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
            max_leaves=8,
        ).map(lambda value: json.dumps(value).encode()),
    ),
)
async def test_random_signed_json_is_400_without_dispatch(host: Host, kind: str, body: bytes) -> None:
    required = (b"MessageSid", b"From", b"To") if kind == "messages" else (b"MessageSid", b"Status")
    assume(not all(name in body for name in required))  # a complete object is a real webhook
    path = f"/webhooks/sms/{kind}?bodySHA256={body_sha256(body)}"
    signature = compute_signature(host.emulator.auth_token, host.url(path))
    status, text, _ = await host.post(
        path, body, content_type="application/json", headers=[(SIGNATURE_HEADER, signature)]
    )
    assert status == 400, text
    assert host.recorder.dispatches == 0


def test_routes_follow_the_connectors_capabilities(emulator: TwilioEmulator) -> None:
    registry = ChannelRegistry.discover()
    specs = {
        "full": {"channel": "twilio_sms", "schema": "TwilioSms", "parameters": credentials(emulator)},
        "notify": {"channel": "twilio_sms", "schema": "NotificationSms", "parameters": credentials(emulator)},
    }
    service = WebhookService({name: registry.create_connector(spec, name=name) for name, spec in specs.items()})
    assert service.routes() == {"full": ("messages", "status"), "notify": ()}


# -- replies in the webhook's response (reply_to_message) --------------------------------------------------


class Replier:
    """A ``reply_to_message`` plugin: answers with ``answer`` (or raises it when it is an exception)."""

    def __init__(self, answer: object) -> None:
        self.answer = answer
        self.calls: list[str] = []

    @hookimpl
    async def reply_to_message(self, connector: ChannelConnector, message: Message) -> object:
        self.calls.append(message.id)
        if isinstance(self.answer, Exception):
            answer, self.answer = self.answer, None
            raise answer
        return self.answer


async def test_a_reply_hook_answers_an_inbound_sms_with_twiml(make_host: HostFactory) -> None:
    from messaging_core import MediaContent, MultipartContent, TextContent

    reply = MultipartContent(
        (TextContent("Thanks <3 & see you"), MediaContent("https://cdn.example.com/a.png?x=1&y=2"))
    )
    replier = Replier(reply)
    host = await make_host(plugins=[replier])
    status, text = await host.emulator.simulate_inbound(
        RECEIVER, SENDER, "HOURS", url=host.url("/webhooks/sms/messages")
    )
    assert status == 200
    assert text == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Message><Body>Thanks &lt;3 &amp; see you</Body>'
        "<Media>https://cdn.example.com/a.png?x=1&amp;y=2</Media></Message></Response>"
    )
    assert len(host.recorder.received) == 1  # message_received ran first
    assert replier.calls == [host.recorder.received[0].id]


async def test_a_reply_hook_may_answer_plain_text_or_nothing(make_host: HostFactory) -> None:
    replier = Replier("We're open 9-17")
    host = await make_host(plugins=[replier])
    status, text, _ = await host.post_signed("/webhooks/sms/messages", inbound_form())
    assert (status, text.endswith("<Response><Message><Body>We're open 9-17</Body></Message></Response>")) == (
        200,
        True,
    )
    replier.answer = None
    status, text, _ = await host.post_signed("/webhooks/sms/messages", inbound_form(sid=SID_B))
    assert (status, "<Response/>" in text) == (200, True)


async def test_a_failing_reply_hook_gives_500_and_the_retry_replies(
    make_host: HostFactory, caplog: pytest.LogCaptureFixture
) -> None:
    replier = Replier(RuntimeError("reply boom"))
    host = await make_host(plugins=[replier])
    token = str(uuid.uuid4())
    with caplog.at_level(logging.ERROR, logger="messaging_core"):
        status, _, _ = await host.post_signed("/webhooks/sms/messages", inbound_form(), idempotency=token)
    assert status == 500
    assert "the reply_to_message hook failed" in caplog.text
    replier.answer = "ok now"
    status, text, _ = await host.post_signed("/webhooks/sms/messages", inbound_form(), idempotency=token)
    assert status == 200
    assert "<Body>ok now</Body>" in text
    assert len(host.recorder.received) == 2  # at least once: the retry was dispatched again


async def test_a_reply_of_the_wrong_type_is_a_500_naming_the_plugin(
    make_host: HostFactory, caplog: pytest.LogCaptureFixture
) -> None:
    host = await make_host(plugins=[Replier(42)])
    with caplog.at_level(logging.ERROR, logger="messaging_core"):
        status, _, _ = await host.post_signed("/webhooks/sms/messages", inbound_form())
    assert status == 500
    assert "reply_to_message returned int" in caplog.text


async def test_a_channel_that_cannot_reply_answers_as_usual_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """The memory channel has no ``webhook_reply``: its usual answer, and a warning naming the connector."""
    from messaging_core import WebhookRequest

    registry = ChannelRegistry.discover()
    registry.host.register(Replier("hello back"), name=f"replier-{uuid.uuid4().hex}")
    connector = registry.create_connector({"channel": "memory"}, name="mem")
    (await connector.initialize()).unwrap()
    try:
        from messaging_core import Endpoint

        builder = MessageBuilder().with_sender(Endpoint.phone(SENDER)).with_receiver(Endpoint.phone(RECEIVER))
        payload = builder.with_text_content("hi").build()
        from messaging_core.converters import dumps

        request = WebhookRequest.from_json(dumps(payload), url="http://127.0.0.1/webhooks/mem/messages")
        with caplog.at_level(logging.WARNING, logger="messaging_core"):
            answer = await WebhookService({"mem": connector}).handle("mem", "messages", request)
        assert (answer.status, answer.body) == (200, b"")
        assert "connector mem cannot reply in a webhook's response" in caplog.text
    finally:
        await connector.shutdown()
