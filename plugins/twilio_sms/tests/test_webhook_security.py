"""Signature checks fail closed on every public entry point (issue: webhooks fail closed everywhere).

Every forged, tampered or unsigned webhook below goes through each way a user can hand a webhook
to a Twilio connector:

- ``connector.receive_messages(source)`` and ``receive_message_status(source)`` (verify + parse),
  for every ``WebhookRequest`` constructor (``from_form``, ``from_form_data``, ``from_json``, the
  raw constructor, ``from_aiohttp_request``);
- ``WebhookService.handle`` (what a framework integration calls), with those same requests;
- the webhook host's two routes, with the default memory store, a status store, and a pipeline;
- ``messaging serve`` (``tests/test_cli_subprocess.py``).

Each must be refused with the core's refusal code and dispatch nothing. The accepted cases are
signed with Twilio's own ``twilio.request_validator.RequestValidator`` (the official package, a
test-only dependency), never with this project's signer, so that a bug shared by our signer and
our checker cannot hide.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from messaging_core import ConnectorErrorCodes, PluginHost, WebhookRefusedError, WebhookRequest, WebhookSettings
from messaging_core.campaigns import InProcessDispatcher, MemoryLedger, MemoryStatusStore
from messaging_core.testing import HookRecorder
from messaging_core.webhooks import WebhookService, create_webhook_app
from messaging_twilio_sms import TwilioChannelSchemas, TwilioSmsConnector
from messaging_twilio_sms.emulator import TwilioEmulator
from messaging_twilio_sms.webhooks import SIGNATURE_HEADER, body_sha256

ACCOUNT = "AC" + "a1" * 16
TOKEN = "12345678901234567890123456789012"
OTHER_TOKEN = "9" * 32
PUBLIC = "https://hooks.example.com/twilio/sms?tenant=7"
INBOUND = {
    "MessageSid": "SM" + "1" * 32,
    "AccountSid": ACCOUNT,
    "From": "+15557654321",
    "To": "+15005550006",
    "Body": "Hello back",
    "NumMedia": "0",
}
STATUS = {"MessageSid": "SM" + "2" * 32, "AccountSid": ACCOUNT, "MessageStatus": "delivered", "To": "+15557654321"}

Maker = Callable[..., Awaitable[TwilioSmsConnector]]


@pytest.fixture
async def emulator() -> AsyncIterator[TwilioEmulator]:
    """The emulator under a fixed account, so that hand-built webhooks name the connector's account."""
    async with TwilioEmulator(status_interval=0.01, account_sid=ACCOUNT, auth_token=TOKEN) as emu:
        yield emu


def official(url: str, params: dict[str, str] | None = None, token: str = TOKEN) -> str:
    """The signature Twilio sends, computed by Twilio's own Python validator."""
    signature: str = RequestValidator(token).compute_signature(url, params or {})
    return signature


def _signed_json_url(body: bytes, url: str = PUBLIC) -> str:
    return f"{url}&bodySHA256={body_sha256(body)}"


# -- the forged, tampered and unsigned inputs --------------------------------------------------------------

Source = Callable[[dict[str, str], str], WebhookRequest]
"""Builds a source for one webhook's fields (inbound or status), to be received at a public URL."""


def _form(fields: dict[str, str], *, url: str | None, signature: str | None = None) -> WebhookRequest:
    headers = {} if signature is None else {SIGNATURE_HEADER: signature}
    return WebhookRequest.from_form(urlencode(fields), url=url, headers=headers)


def _json(fields: dict[str, str], url: str, *, signed_body: bytes | None = None, token: str = TOKEN) -> WebhookRequest:
    """A JSON webhook whose URL carries the hash of ``signed_body`` (the real body unless given)."""
    body = json.dumps(fields).encode()
    signed_url = _signed_json_url(signed_body if signed_body is not None else body, url)
    return WebhookRequest.from_json(body, url=signed_url, headers={SIGNATURE_HEADER: official(signed_url, token=token)})


def _signed_json_url(body: bytes, url: str) -> str:
    return f"{url}&bodySHA256={body_sha256(body)}"


def _without(fields: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in fields.items() if k != name}


FOREIGN = "AC" + "0" * 32

REFUSED: dict[str, tuple[Source, str]] = {
    # The first four have no URL: only the library path can be handed such a source (a host knows its URL).
    "form without a URL (a framework integration that forgot url=)": (
        lambda f, u: _form(f, url=None, signature=official(u, f)),
        ConnectorErrorCodes.INVALID_SIGNATURE,
    ),
    "form_data without a URL": (
        lambda f, u: WebhookRequest.from_form_data(f, headers={SIGNATURE_HEADER: official(u, f)}),
        ConnectorErrorCodes.INVALID_SIGNATURE,
    ),
    "form_data without a URL or a signature": (
        lambda f, u: WebhookRequest.from_form_data(f),
        ConnectorErrorCodes.INVALID_SIGNATURE,
    ),
    "JSON without a URL": (
        lambda f, u: WebhookRequest.from_json(f, headers={SIGNATURE_HEADER: official(u)}),
        ConnectorErrorCodes.INVALID_SIGNATURE,
    ),
    "form without a signature header": (lambda f, u: _form(f, url=u), ConnectorErrorCodes.INVALID_SIGNATURE),
    "form with an empty signature": (
        lambda f, u: _form(f, url=u, signature=""),
        ConnectorErrorCodes.INVALID_SIGNATURE,
    ),
    "form with a made-up signature": (
        lambda f, u: _form(f, url=u, signature="RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        ConnectorErrorCodes.INVALID_SIGNATURE,
    ),
    "form signed with another token": (
        lambda f, u: _form(f, url=u, signature=official(u, f, OTHER_TOKEN)),
        ConnectorErrorCodes.INVALID_SIGNATURE,
    ),
    "form with a field changed after signing": (
        lambda f, u: _form({**f, "To": "+15550000000"}, url=u, signature=official(u, f)),
        ConnectorErrorCodes.INVALID_SIGNATURE,
    ),
    "form with a field added after signing": (
        lambda f, u: _form({**f, "Injected": "1"}, url=u, signature=official(u, f)),
        ConnectorErrorCodes.INVALID_SIGNATURE,
    ),
    "form with a field removed after signing": (
        lambda f, u: _form(_without(f, "To"), url=u, signature=official(u, f)),
        ConnectorErrorCodes.INVALID_SIGNATURE,
    ),
    "form signed for another URL": (
        lambda f, u: _form(f, url=u, signature=official(u.replace("tenant=7", "tenant=8"), f)),
        ConnectorErrorCodes.INVALID_SIGNATURE,
    ),
    "form signed with the query moved into the fields": (
        lambda f, u: _form({**f, "tenant": "7"}, url=u.split("?")[0], signature=official(u, f)),
        ConnectorErrorCodes.INVALID_SIGNATURE,
    ),
    "JSON signed over the bare URL, without bodySHA256": (
        lambda f, u: WebhookRequest.from_json(f, url=u, headers={SIGNATURE_HEADER: official(u)}),
        ConnectorErrorCodes.INVALID_SIGNATURE,
    ),
    "JSON whose body does not match its bodySHA256": (
        lambda f, u: _json({**f, "To": "+15550000000"}, u, signed_body=json.dumps(f).encode()),
        ConnectorErrorCodes.INVALID_SIGNATURE,
    ),
    "JSON with a right bodySHA256, signed with another token": (
        lambda f, u: _json(f, u, token=OTHER_TOKEN),
        ConnectorErrorCodes.INVALID_SIGNATURE,
    ),
    "a body of another type signed over the bare URL": (
        lambda f, u: WebhookRequest("text/plain", urlencode(f).encode(), u, {SIGNATURE_HEADER: official(u)}),
        ConnectorErrorCodes.INVALID_SIGNATURE,
    ),
    "a correctly signed form from another account": (
        lambda f, u: _form({**f, "AccountSid": FOREIGN}, url=u, signature=official(u, {**f, "AccountSid": FOREIGN})),
        ConnectorErrorCodes.UNEXPECTED_ACCOUNT,
    ),
    "a correctly signed JSON webhook from another account": (
        lambda f, u: _json({**f, "AccountSid": FOREIGN}, u),
        ConnectorErrorCodes.UNEXPECTED_ACCOUNT,
    ),
    "a correctly signed form without an AccountSid": (
        lambda f, u: _form(_without(f, "AccountSid"), url=u, signature=official(u, _without(f, "AccountSid"))),
        ConnectorErrorCodes.UNEXPECTED_ACCOUNT,
    ),
}


# -- accepted inputs, signed by Twilio's own validator -------------------------------------------------------


def _accepted_port_added(fields: dict[str, str], url: str) -> WebhookRequest:
    # Twilio sometimes signs with the default port; the request URL carries none.
    return _form(fields, url=url, signature=official(url.replace(".com/", ".com:443/"), fields))


def _accepted_whatwg_escaped(fields: dict[str, str], url: str) -> WebhookRequest:
    # twilio-node signs the WHATWG form of a query holding an apostrophe: It%27s.
    url += "&note=It's"
    return _form(fields, url=url, signature=official(url.replace("'", "%27"), fields))


ACCEPTED: dict[str, Source] = {
    "form": lambda f, u: _form(f, url=u, signature=official(u, f)),
    "form_data": lambda f, u: WebhookRequest.from_form_data(f, url=u, headers={SIGNATURE_HEADER: official(u, f)}),
    "form signed with the default port": _accepted_port_added,
    "form signed over the WHATWG-escaped query": _accepted_whatwg_escaped,
    "JSON with bodySHA256": lambda f, u: _json(f, u),
}


def test_the_oracle_agrees_on_the_accepted_and_the_forged_forms() -> None:
    """Twilio's validator itself accepts each accepted form and refuses the tampered ones we test."""
    validator = RequestValidator(TOKEN)
    signed = _form(INBOUND, url=PUBLIC, signature=official(PUBLIC, INBOUND))
    assert validator.validate(PUBLIC, INBOUND, signed.header(SIGNATURE_HEADER))
    assert validator.validate(PUBLIC, INBOUND, _accepted_port_added(INBOUND, PUBLIC).header(SIGNATURE_HEADER))
    assert not validator.validate(PUBLIC, {**INBOUND, "To": "+15550000000"}, signed.header(SIGNATURE_HEADER))
    body = json.dumps(INBOUND)
    url = _signed_json_url(body.encode(), PUBLIC)
    assert validator.validate(url, body, official(url))
    assert not validator.validate(url, body.replace("Hello", "Hallo"), official(url))


# -- entry point 1: the connector's receive methods ------------------------------------------------------------


async def _observed(make_connector: Maker, **parameters: Any) -> tuple[TwilioSmsConnector, HookRecorder]:
    recorder = HookRecorder()
    connector = await make_connector(plugins=PluginHost([recorder]), **parameters)
    return connector, recorder


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_receive_methods_refuse(make_connector: Maker, case: str) -> None:
    """The connector's verify + parse step answers the refusal (it never dispatches anything)."""
    build, code = REFUSED[case]
    connector, recorder = await _observed(make_connector)
    inbound = await connector.receive_messages(build(INBOUND, PUBLIC))
    status = await connector.receive_message_status(build(STATUS, PUBLIC))
    for result in (inbound, status):
        assert result.value is None
        assert result.error_code == code, result.error
        with pytest.raises(WebhookRefusedError):
            result.unwrap()
    assert recorder.named("message_received") + recorder.named("message_status_changed") == []


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_the_webhook_service_answers_403_and_dispatches_nothing(make_connector: Maker, case: str) -> None:
    """What a framework integration calls with the request it built: refused, nothing recorded or dispatched."""
    build, _ = REFUSED[case]
    connector, recorder = await _observed(make_connector)
    service = WebhookService({"sms": connector})
    for kind, fields in (("messages", INBOUND), ("status", STATUS)):
        answer = await service.handle("sms", kind, build(fields, PUBLIC))  # type: ignore[arg-type]
        assert answer.status == 403, (kind, answer)
        assert answer.body in (b"invalid signature\n", b"unexpected account\n")
    assert recorder.named("message_received") + recorder.named("message_status_changed") == []
    assert service.stats.forbidden == 2
    assert await service.status_store.get(STATUS["MessageSid"]) is None  # nothing recorded


@pytest.mark.parametrize("case", sorted(ACCEPTED))
async def test_officially_signed_webhooks_are_accepted_and_dispatched(make_connector: Maker, case: str) -> None:
    connector, recorder = await _observed(make_connector)
    inbound = await connector.receive_messages(ACCEPTED[case](INBOUND, PUBLIC))
    assert inbound.is_success, inbound.error
    status = await connector.receive_message_status(ACCEPTED[case](STATUS, PUBLIC))
    assert status.is_success, status.error
    service = WebhookService({"sms": connector})
    assert (await service.handle("sms", "messages", ACCEPTED[case](INBOUND, PUBLIC))).status == 200
    assert (await service.handle("sms", "status", ACCEPTED[case](STATUS, PUBLIC))).status == 204
    assert len(recorder.named("message_received")) == 1
    assert len(recorder.named("message_status_changed")) == 1


async def test_the_refusal_says_what_to_pass(make_connector: Maker) -> None:
    connector = await make_connector()
    no_url = await connector.receive_messages(WebhookRequest.from_form_data(INBOUND))
    assert no_url.error is not None
    assert "pass the public URL" in no_url.error.message
    no_header = await connector.receive_messages(_form(INBOUND, url=PUBLIC))
    assert no_header.error is not None
    assert SIGNATURE_HEADER in no_header.error.message
    bare_json = await connector.receive_messages(
        WebhookRequest.from_json(INBOUND, url=PUBLIC, headers={SIGNATURE_HEADER: official(PUBLIC)})
    )
    assert bare_json.error is not None
    assert "bodySHA256" in bare_json.error.message
    assert TOKEN not in repr(bare_json) + repr(no_header) + repr(no_url)


async def test_subaccounts_are_accepted_when_configured(make_connector: Maker) -> None:
    sub = "AC" + "5" * 32
    fields = {**INBOUND, "AccountSid": sub}
    source = _form(fields, url=PUBLIC, signature=official(PUBLIC, fields))
    refused = await (await make_connector()).receive_messages(source)
    assert refused.error_code == ConnectorErrorCodes.UNEXPECTED_ACCOUNT
    accepted = await (await make_connector(SubaccountSids=[sub])).receive_messages(source)
    assert accepted.is_success, accepted.error


async def test_the_account_is_checked_even_with_signatures_off(make_connector: Maker) -> None:
    connector = await make_connector(ValidateSignatures=False)
    assert (await connector.receive_messages(WebhookRequest.from_form_data(INBOUND))).is_success
    foreign = {**INBOUND, "AccountSid": FOREIGN}
    refused = await connector.receive_messages(WebhookRequest.from_form_data(foreign))
    assert refused.error_code == ConnectorErrorCodes.UNEXPECTED_ACCOUNT


async def test_turning_validation_off_is_logged_once_with_the_connector_name(
    make_connector: Maker, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="messaging_twilio_sms"):
        connector = TwilioSmsConnector(
            TwilioChannelSchemas.TWILIO_SMS,
            {"AccountSid": ACCOUNT, "AuthToken": TOKEN, "ValidateSignatures": False},
            name="inbound-dev",
        )
        assert (await connector.initialize()).is_success
        await connector.receive_messages(WebhookRequest.from_form_data(INBOUND))
        await connector.receive_messages(WebhookRequest.from_form_data(INBOUND))
        await connector.shutdown()
        await make_connector()  # signatures on: no warning
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "inbound-dev" in warnings[0]
    assert "ValidateSignatures" in warnings[0]
    assert TOKEN not in warnings[0]


# -- entry point 2: the webhook host's routes ------------------------------------------------------------------

HOST_BASE = "https://hooks.example.com"
"""The host's configured ``public_url``: what Twilio called, and so what it signed."""


def _host_app(mode: str, connector: TwilioSmsConnector) -> web.Application:
    settings = WebhookSettings(public_url=HOST_BASE)
    if mode == "memory store":
        return create_webhook_app({"sms": connector}, settings=settings)
    if mode == "status store":
        return create_webhook_app({"sms": connector}, settings=settings, status_store=MemoryStatusStore())
    pipeline = InProcessDispatcher(connector, ledger=MemoryLedger(), status_store=MemoryStatusStore())
    return create_webhook_app({"sms": connector}, settings=settings, pipeline=pipeline)


async def _post(client: TestClient[Any, Any], source: WebhookRequest) -> int:
    """Post ``source`` to the host at the path and query of the public URL it was built for."""
    assert source.url is not None
    path_qs = source.url.removeprefix(HOST_BASE)
    headers = {**source.headers, "Content-Type": source.content_type}
    async with client.post(path_qs, data=source.body, headers=headers) as response:
        return response.status


ROUTES = (("/webhooks/sms/messages", INBOUND, 200), ("/webhooks/sms/status", STATUS, 204))


@pytest.mark.parametrize("mode", ["memory store", "status store", "pipeline"])
async def test_host_routes_refuse_with_403_and_dispatch_nothing(make_connector: Maker, mode: str) -> None:
    connector, recorder = await _observed(make_connector)
    async with TestClient(TestServer(_host_app(mode, connector))) as client:
        for case, (build, _) in REFUSED.items():
            for path, fields, _ok in ROUTES:
                source = build(fields, f"{HOST_BASE}{path}?tenant=7")
                if source.url is None:
                    continue  # a host always knows the URL: these are the library path's cases
                assert await _post(client, source) == 403, (case, path)
        assert recorder.named("message_received") == []
        assert recorder.named("message_status_changed") == []

        # The same host accepts what Twilio signs: the 403s above are the forgeries', not the setup's.
        for path, fields, ok in ROUTES:
            for index, (case, build_accepted) in enumerate(ACCEPTED.items()):
                # A new message each time, so that deduplication does not hide a refusal.
                sid = fields["MessageSid"][:-2] + f"{index:02d}"
                assert (
                    await _post(client, build_accepted({**fields, "MessageSid": sid}, f"{HOST_BASE}{path}?tenant=7"))
                    == ok
                ), (case, path)
    assert len(recorder.named("message_received")) == len(ACCEPTED)
    assert len(recorder.named("message_status_changed")) == len(ACCEPTED)
