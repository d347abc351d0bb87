"""Webhooks: inbound messages and status callbacks, signature checks, proxies, odd payloads.

The emulator posts real, signed webhooks to a small aiohttp app (``webhook_server``) that builds
``WebhookRequest.from_aiohttp_request`` and hands it to the connector, as the web host does.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messaging_core import (
    CapabilityNotSupportedError,
    MediaContent,
    Message,
    MessageStatus,
    MultipartContent,
    PluginHost,
    StatusUpdate,
    TextContent,
    WebhookRequest,
)
from messaging_core.testing import HookRecorder
from messaging_twilio_sms import OptOutType, TwilioChannelSchemas, TwilioErrorCodes, TwilioSmsConnector
from messaging_twilio_sms.emulator import TwilioEmulator
from messaging_twilio_sms.webhooks import SIGNATURE_HEADER, body_sha256, compute_signature, twiml_reply

Maker = Callable[..., Awaitable[TwilioSmsConnector]]
Sms = Callable[..., Message]
PUBLIC_URL = "https://hooks.example.com/twilio/sms?tenant=7"
ACCOUNT = "AC" + "2" * 32
INBOUND: dict[str, str] = {
    "MessageSid": "SM" + "1" * 32,
    "AccountSid": ACCOUNT,
    "From": "+15557654321",
    "To": "+15005550006",
    "Body": "Hello back",
    "NumMedia": "0",
    "SmsStatus": "received",
}


@pytest.fixture
async def emulator() -> AsyncIterator[TwilioEmulator]:
    """The emulator under the account the hand-built webhooks name (connectors accept their own account only)."""
    async with TwilioEmulator(status_interval=0.01, account_sid=ACCOUNT) as emu:
        yield emu


async def _observed_connector(make_connector: Maker, **parameters: Any) -> tuple[TwilioSmsConnector, HookRecorder]:
    recorder = HookRecorder()
    connector = await make_connector(plugins=PluginHost([recorder]), **parameters)
    return connector, recorder


def _signed_form(token: str, fields: dict[str, str], url: str = PUBLIC_URL) -> WebhookRequest:
    signature = compute_signature(token, url, fields)
    return WebhookRequest.from_form(urlencode(fields), url=url, headers={SIGNATURE_HEADER: signature})


# -- inbound messages through the emulator -----------------------------------------------------------------


async def test_inbound_mms_becomes_one_message(
    emulator: TwilioEmulator, make_connector: Maker, webhook_server: Any
) -> None:
    connector, recorder = await _observed_connector(make_connector)
    webhook_server.connector = connector
    media = ["https://demo.twilio.com/owl.png", "https://demo.twilio.com/logo.gif"]
    status, text = await emulator.simulate_inbound(
        "+15557654321", "+15005550006", "Look at these", media, url=webhook_server.url("/sms")
    )
    assert status == 200
    assert "<Response/>" in text  # empty TwiML: no automatic reply

    ((kind, result),) = webhook_server.results
    assert kind == "sms"
    assert result.is_success, result.error
    (message,) = result.value.messages
    (sid,) = emulator.messages
    assert result.value.batch_id == sid
    assert message.id == sid
    assert (message.sender.address, message.receiver.address) == ("+15557654321", "+15005550006")
    assert message.content == MultipartContent(
        (
            TextContent("Look at these"),
            MediaContent(media[0], "image/png"),
            MediaContent(media[1], "image/gif"),
        )
    )
    props = message.properties
    assert not {"MessageSid", "From", "To", "Body"} & set(props)
    assert props["NumMedia"] == "2"
    assert (props["MediaUrl0"], props["MediaContentType1"]) == (media[0], "image/gif")
    assert props["AccountSid"] == emulator.account_sid
    assert props["SmsStatus"] == "received"
    assert props["ToCity"] == ""  # empty geo fields are kept as sent
    assert [call.arguments["message"] for call in recorder.named("message_received")] == [message]


async def test_inbound_text_only(emulator: TwilioEmulator, make_connector: Maker, webhook_server: Any) -> None:
    webhook_server.connector = await make_connector()
    await emulator.simulate_inbound("+15557654321", "+15005550006", "STOP", url=webhook_server.url("/sms"))
    ((_, result),) = webhook_server.results
    assert result.value.messages[0].content == TextContent("STOP")


async def test_inbound_media_only(emulator: TwilioEmulator, make_connector: Maker, webhook_server: Any) -> None:
    webhook_server.connector = await make_connector()
    await emulator.simulate_inbound(
        "+15557654321", "+15005550006", "", ["https://demo.twilio.com/a.jpg"], url=webhook_server.url("/sms")
    )
    ((_, result),) = webhook_server.results
    assert result.value.messages[0].content == MediaContent("https://demo.twilio.com/a.jpg", "image/jpeg")


async def test_inbound_with_the_wrong_token_is_refused(
    emulator: TwilioEmulator, make_connector: Maker, webhook_server: Any
) -> None:
    connector, recorder = await _observed_connector(make_connector, AuthToken="9" * 32)
    webhook_server.connector = connector
    status, _ = await emulator.simulate_inbound("+15557654321", "+15005550006", "hi", url=webhook_server.url("/sms"))
    assert status == 403
    ((_, result),) = webhook_server.results
    assert result.error_code == TwilioErrorCodes.INVALID_SIGNATURE
    assert result.value is None
    assert recorder.named("message_received") == []


async def test_behind_a_proxy_the_configured_url_is_checked(
    emulator: TwilioEmulator, make_connector: Maker, webhook_server: Any
) -> None:
    """Twilio signed the public URL; the app sees another host. ``WebhookUrl`` names the public one."""
    public = webhook_server.url("/sms")
    webhook_server.source_url = lambda url: url.replace(webhook_server.base, "http://backend.internal:8080")
    webhook_server.connector = await make_connector(WebhookUrl=public)
    await emulator.simulate_inbound("+15557654321", "+15005550006", "via proxy", url=public)
    assert webhook_server.sources[0].url.startswith("http://backend.internal:8080/")
    assert webhook_server.results[0][1].is_success, webhook_server.results[0][1].error

    # Without WebhookUrl the connector checks the URL it saw, which Twilio did not sign.
    webhook_server.connector = await make_connector()
    status, _ = await emulator.simulate_inbound("+15557654321", "+15005550006", "via proxy", url=public)
    assert status == 403
    assert webhook_server.results[1][1].error_code == TwilioErrorCodes.INVALID_SIGNATURE


# -- signatures (sources built by hand) --------------------------------------------------------------------


async def test_missing_or_wrong_signature_dispatches_nothing(make_connector: Maker, emulator: TwilioEmulator) -> None:
    connector, recorder = await _observed_connector(make_connector)
    unsigned = WebhookRequest.from_form(urlencode(INBOUND), url=PUBLIC_URL, headers={"User-Agent": "TwilioProxy/1.1"})
    wrong = WebhookRequest.from_form(urlencode(INBOUND), url=PUBLIC_URL, headers={SIGNATURE_HEADER: "AAAA"})
    tampered_fields = {**INBOUND, "Body": "Send me money"}
    tampered = WebhookRequest.from_form(
        urlencode(tampered_fields),
        url=PUBLIC_URL,
        headers={SIGNATURE_HEADER: compute_signature(emulator.auth_token, PUBLIC_URL, INBOUND)},
    )
    for source in (unsigned, wrong, tampered):
        result = await connector.receive_messages(source)
        assert result.error_code == TwilioErrorCodes.INVALID_SIGNATURE
        assert result.value is None
    assert recorder.named("message_received") == []

    signed = await connector.receive_messages(_signed_form(emulator.auth_token, INBOUND))
    assert signed.is_success, signed.error
    assert recorder.named("message_received") == []  # parsing dispatches nothing: the webhook service does


async def test_validation_can_be_turned_off(make_connector: Maker) -> None:
    connector = await make_connector(ValidateSignatures=False)
    result = await connector.receive_messages(WebhookRequest.from_form(urlencode(INBOUND), url=PUBLIC_URL))
    assert result.is_success, result.error


async def test_signed_json_body_with_body_sha256(make_connector: Maker, emulator: TwilioEmulator) -> None:
    connector = await make_connector()
    body = json.dumps({**INBOUND, "NumMedia": 1, "MediaUrl0": "https://demo.twilio.com/owl.png"}).encode()
    url = f"{PUBLIC_URL}&bodySHA256={body_sha256(body)}"
    headers = {SIGNATURE_HEADER: compute_signature(emulator.auth_token, url)}
    result = await connector.receive_messages(WebhookRequest.from_json(body, url=url, headers=headers))
    assert result.is_success, result.error
    (message,) = result.value.messages
    assert message.content == MultipartContent(
        (TextContent("Hello back"), MediaContent("https://demo.twilio.com/owl.png"))
    )
    assert message.properties["NumMedia"] == "1"

    altered = body.replace(b"Hello back", b"Hello evil")
    refused = await connector.receive_messages(WebhookRequest.from_json(altered, url=url, headers=headers))
    assert refused.error_code == TwilioErrorCodes.INVALID_SIGNATURE


async def test_json_webhook_over_http(emulator: TwilioEmulator, make_connector: Maker, webhook_server: Any) -> None:
    """A JSON webhook as Twilio sends one: ``bodySHA256`` in the URL, the signature over the URL alone."""
    connector, recorder = await _observed_connector(make_connector)
    webhook_server.connector = connector
    body = json.dumps(INBOUND).encode()
    url = webhook_server.url(f"/sms?bodySHA256={body_sha256(body)}")
    headers = {SIGNATURE_HEADER: compute_signature(emulator.auth_token, url), "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
        assert response.status == 200
    ((_, result),) = webhook_server.results
    assert result.is_success, result.error
    assert result.value.messages[0].id == INBOUND["MessageSid"]
    assert len(recorder.named("message_received")) == 1


# -- payload shapes --------------------------------------------------------------------------------------------


async def test_unknown_fields_are_accepted_and_kept(make_connector: Maker, emulator: TwilioEmulator) -> None:
    connector = await make_connector()
    fields = {**INBOUND, "BrandNewTwilioField": "surprise", "ProfileName": "Ada", "ReferralNumMedia": "0"}
    result = await connector.receive_messages(_signed_form(emulator.auth_token, fields))
    assert result.is_success, result.error
    properties = result.value.messages[0].properties
    assert properties["BrandNewTwilioField"] == "surprise"
    assert properties["ProfileName"] == "Ada"


async def test_json_media_without_num_media(make_connector: Maker) -> None:
    connector = await make_connector(ValidateSignatures=False)
    fields = {k: v for k, v in INBOUND.items() if k != "NumMedia"}
    fields |= {"Body": "", "MediaUrl0": "https://demo.twilio.com/a.png", "MediaContentType0": "image/png"}
    result = await connector.receive_messages(WebhookRequest.from_json(fields))
    assert result.is_success, result.error
    assert result.value.messages[0].content == MediaContent("https://demo.twilio.com/a.png", "image/png")


@pytest.mark.parametrize("missing", ["MessageSid", "From", "To"])
async def test_missing_required_fields(make_connector: Maker, emulator: TwilioEmulator, missing: str) -> None:
    connector, recorder = await _observed_connector(make_connector)
    fields = {k: v for k, v in INBOUND.items() if k != missing}
    result = await connector.receive_messages(_signed_form(emulator.auth_token, fields))
    assert result.error_code == TwilioErrorCodes.INVALID_WEBHOOK_DATA
    assert result.error is not None
    assert missing in result.error.message
    body = json.dumps(fields).encode()
    url = f"{PUBLIC_URL}&bodySHA256={body_sha256(body)}"
    headers = {SIGNATURE_HEADER: compute_signature(emulator.auth_token, url)}
    json_result = await connector.receive_messages(WebhookRequest.from_json(body, url=url, headers=headers))
    assert json_result.error_code == TwilioErrorCodes.INVALID_WEBHOOK_DATA
    assert recorder.named("message_received") == []


@pytest.mark.parametrize(
    ("source", "code", "message"),
    [
        (
            WebhookRequest("text/plain", b"MessageSid=SM1"),
            TwilioErrorCodes.UNSUPPORTED_CONTENT_TYPE,
            "unsupported content type 'text/plain'; Twilio sends application/x-www-form-urlencoded",
        ),
        (
            WebhookRequest("application/xml", b"<Sms/>"),
            TwilioErrorCodes.UNSUPPORTED_CONTENT_TYPE,
            "unsupported content type 'application/xml'; Twilio sends application/x-www-form-urlencoded",
        ),
        (WebhookRequest.from_json(b"{not json"), TwilioErrorCodes.INVALID_WEBHOOK_DATA, "body is not valid JSON"),
        (WebhookRequest.from_json(b"[1, 2]"), TwilioErrorCodes.INVALID_WEBHOOK_DATA, "JSON body is not an object"),
        (
            WebhookRequest.from_form(urlencode({**INBOUND, "NumMedia": "two"})),
            TwilioErrorCodes.INVALID_WEBHOOK_DATA,
            "NumMedia is not a number",
        ),
        (
            WebhookRequest.from_form_data({"Body": "hi", "To": "+15005550006"}),
            TwilioErrorCodes.INVALID_WEBHOOK_DATA,
            "missing field(s) MessageSid, From",
        ),
    ],
)
async def test_unusable_payloads(make_connector: Maker, source: WebhookRequest, code: str, message: str) -> None:
    connector = await make_connector(ValidateSignatures=False)  # parsing is the subject, not signatures
    result = await connector.receive_messages(source)
    assert result.error_code == code
    assert result.error is not None
    assert result.error.message == message


async def test_unsupported_content_type_with_a_valid_signature(make_connector: Maker, emulator: TwilioEmulator) -> None:
    connector = await make_connector()
    url = f"{PUBLIC_URL}&bodySHA256={body_sha256(b'hello')}"
    headers = {SIGNATURE_HEADER: compute_signature(emulator.auth_token, url)}
    source = WebhookRequest("text/plain", b"hello", url, headers)
    result = await connector.receive_messages(source)
    assert result.error_code == TwilioErrorCodes.UNSUPPORTED_CONTENT_TYPE


_field_names = st.sampled_from(
    ["MessageSid", "From", "To", "Body", "NumMedia", "MediaUrl0", "MediaContentType0", "MediaUrl9", "X"]
)
_field_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fields=st.dictionaries(_field_names | st.text(min_size=1, max_size=8), _field_values, max_size=10),
    account=st.sampled_from([ACCOUNT, None, "AC" + "0" * 32]),
)
async def test_fuzzed_inbound_webhooks_never_raise(
    make_connector: Maker, fields: dict[str, str], account: str | None
) -> None:
    if account is not None:
        fields["AccountSid"] = account
    connector = await make_connector(ValidateSignatures=False)
    result = await connector.receive_messages(WebhookRequest.from_form_data(fields))
    required = all(fields.get(name) for name in ("MessageSid", "From", "To"))
    numeric = _is_int(fields.get("NumMedia") or "0")
    if required and numeric and fields.get("AccountSid") != ACCOUNT:
        assert result.error_code == TwilioErrorCodes.UNEXPECTED_ACCOUNT
    elif required and numeric:
        assert result.is_success, result.error
        (message,) = result.value.messages
        assert message.id == fields["MessageSid"]
        assert set(message.properties) == set(fields) - {"MessageSid", "From", "To", "Body"}
    else:
        assert result.error_code == TwilioErrorCodes.INVALID_WEBHOOK_DATA


async def test_json_nulls_are_empty_fields_not_the_text_none(make_connector: Maker) -> None:
    """A JSON webhook's ``null`` is an absent value, as Twilio's forms send an empty one: never ``"None"``."""
    connector = await make_connector(ValidateSignatures=False)
    body = {**INBOUND, "Body": None, "NumMedia": None, "ToCity": None, "MediaUrl0": "https://demo.twilio.com/a.png"}
    result = await connector.receive_messages(WebhookRequest.from_json(body))
    assert result.is_success, result.error
    (message,) = result.value.messages
    assert message.content == MediaContent("https://demo.twilio.com/a.png")  # no text part for a null Body
    assert (message.properties["NumMedia"], message.properties["ToCity"]) == ("", "")
    assert "None" not in message.properties.values()

    missing = await connector.receive_messages(WebhookRequest.from_json({**INBOUND, "From": None}))
    assert missing.error_code == TwilioErrorCodes.INVALID_WEBHOOK_DATA
    assert missing.error is not None
    assert "From" in missing.error.message


async def test_inbound_without_body_or_media_is_an_empty_text(make_connector: Maker) -> None:
    connector = await make_connector(ValidateSignatures=False)
    for fields in ({**INBOUND, "Body": ""}, {k: v for k, v in INBOUND.items() if k not in ("Body", "NumMedia")}):
        result = await connector.receive_messages(WebhookRequest.from_form_data(fields))
        assert result.is_success, result.error
        assert result.value.messages[0].content == TextContent("")


# -- status callbacks ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "statuses", "error_code"),
    [
        ("+15551230001", ["sending", "sent", "delivered"], None),
        ("+15559990001", ["sending", "sent", "undelivered"], 30003),
        ("+15559990002", ["sending", "failed"], 30008),
    ],
)
async def test_status_callbacks_become_status_updates(
    emulator: TwilioEmulator,
    make_connector: Maker,
    webhook_server: Any,
    sms: Sms,
    to: str,
    statuses: list[str],
    error_code: int | None,
) -> None:
    connector, recorder = await _observed_connector(make_connector, StatusCallback=webhook_server.url("/status"))
    webhook_server.connector = connector
    message = sms(to=to)
    sent = await connector.send_message(message)
    assert sent.value is not None, sent.error
    sid = sent.value.remote_message_id

    results = await webhook_server.wait_for("status", len(statuses))
    assert all(result.is_success for result in results), [r.error for r in results]
    updates = [result.value for result in results]
    assert [u.raw_status for u in updates] == statuses
    assert all(u.message_id == message.id for u in updates)  # from MessageId in the callback URL
    assert all(u.remote_message_id == sid for u in updates)
    final = updates[-1]
    assert final.status.is_final
    if error_code is None:
        assert final.status is MessageStatus.DELIVERED
        assert "error_code" not in final.additional_data
    else:
        assert final.status.is_failure
        assert final.additional_data["error_code"] == error_code
        assert final.additional_data["ErrorCode"] == str(error_code)
    if statuses[-1] in ("delivered", "undelivered"):
        assert re.fullmatch(r"\d{10}", final.additional_data["raw_dlr_done_date"])
    else:
        assert "raw_dlr_done_date" not in final.additional_data

    def key(update: StatusUpdate) -> tuple[object, ...]:  # parsed again by the service: another timestamp
        return (update.message_id, update.status, update.raw_status, update.remote_message_id)

    assert [key(c.arguments["update"]) for c in recorder.named("message_status_changed")] == list(map(key, updates))
    assert all(record.status == 204 for record in emulator.callback_log)


async def test_status_callbacks_behind_a_proxy(
    emulator: TwilioEmulator, make_connector: Maker, webhook_server: Any, sms: Sms
) -> None:
    webhook_server.source_url = lambda url: url.replace(webhook_server.base, "http://backend.internal:8080")
    connector = await make_connector(StatusCallback=webhook_server.url("/status?tenant_id=7"))
    webhook_server.connector = connector
    message = sms()
    await connector.send_message(message)
    results = await webhook_server.wait_for("status", 3)
    assert webhook_server.sources[0].url.startswith("http://backend.internal:8080/status?tenant_id=7&MessageId=")
    assert all(result.is_success for result in results), [r.error for r in results]
    assert {result.value.message_id for result in results} == {message.id}


async def test_status_callback_idempotency_token(
    emulator: TwilioEmulator, make_connector: Maker, webhook_server: Any, sms: Sms
) -> None:
    connector = await make_connector(StatusCallback=webhook_server.url("/status"))
    webhook_server.connector = connector
    await connector.send_message(sms())
    await webhook_server.wait_for("status", 1)
    assert connector.webhook_idempotency_key(webhook_server.sources[0]) == emulator.callback_log[0].idempotency_token


async def test_status_callback_without_our_id_uses_the_sid(make_connector: Maker, emulator: TwilioEmulator) -> None:
    connector = await make_connector()
    fields = {"MessageSid": "SM" + "3" * 32, "SmsStatus": "sent", "AccountSid": ACCOUNT}
    result = await connector.receive_message_status(_signed_form(emulator.auth_token, fields))
    assert result.value is not None, result.error
    assert result.value.message_id == fields["MessageSid"]
    assert (result.value.status, result.value.raw_status) == (MessageStatus.SENT, "sent")


async def test_message_status_takes_precedence_over_sms_status(make_connector: Maker) -> None:
    """Twilio sends both; ``SmsStatus`` is the deprecated one and can lag behind (``sent`` for ``delivered``)."""
    connector = await make_connector(ValidateSignatures=False)
    fields = {"MessageSid": "SM" + "3" * 32, "MessageStatus": "delivered", "SmsStatus": "sent", "AccountSid": ACCOUNT}
    result = await connector.receive_message_status(WebhookRequest.from_form_data(fields))
    assert result.value is not None, result.error
    assert (result.value.status, result.value.raw_status) == (MessageStatus.DELIVERED, "delivered")
    # The other fields are kept raw; the sid and the status are the update's own fields.
    assert result.value.additional_data == {"SmsStatus": "sent", "AccountSid": ACCOUNT}


@pytest.mark.parametrize(
    ("raw", "error_code"),
    [
        ("30003", 30003),
        ("abc", "abc"),
        ("3000x", "3000x"),
        ("\u00b2", "\u00b2"),  # a superscript two: str.isdigit() says yes, int() says no
        ("\u0663\u0660", "\u0663\u0660"),  # Arabic-Indic digits: int() reads them, Twilio never sends them
        (" 30003", " 30003"),
    ],
)
async def test_a_status_callback_keeps_an_error_code_that_is_not_a_number(
    make_connector: Maker, raw: str, error_code: int | str
) -> None:
    connector = await make_connector(ValidateSignatures=False)
    fields = {"MessageSid": "SM" + "3" * 32, "MessageStatus": "undelivered", "ErrorCode": raw, "AccountSid": ACCOUNT}
    result = await connector.receive_message_status(WebhookRequest.from_form_data(fields))
    assert result.value is not None, result.error
    assert result.value.additional_data["error_code"] == error_code
    assert type(result.value.additional_data["error_code"]) is type(error_code)
    assert result.value.additional_data["ErrorCode"] == raw
    assert ("delivery_error" in result.value.additional_data) is (error_code == 30003)


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({"MessageStatus": "sent", "AccountSid": ACCOUNT}, "MessageSid"),
        ({"MessageSid": "SM" + "3" * 32, "AccountSid": ACCOUNT}, "MessageStatus"),
    ],
)
async def test_status_callback_missing_fields(
    make_connector: Maker, emulator: TwilioEmulator, fields: dict[str, str], missing: str
) -> None:
    connector = await make_connector()
    result = await connector.receive_message_status(_signed_form(emulator.auth_token, fields))
    assert result.error_code == TwilioErrorCodes.INVALID_WEBHOOK_DATA
    assert result.error is not None
    assert result.error.message == f"missing field(s) {missing}"


async def test_status_callback_with_a_bad_signature(make_connector: Maker) -> None:
    recorder = HookRecorder()
    connector = await make_connector(plugins=PluginHost([recorder]))
    fields = {"MessageSid": "SM" + "3" * 32, "MessageStatus": "delivered"}
    source = WebhookRequest.from_form(urlencode(fields), url=PUBLIC_URL, headers={SIGNATURE_HEADER: "bad"})
    result = await connector.receive_message_status(source)
    assert result.error_code == TwilioErrorCodes.INVALID_SIGNATURE
    assert recorder.named("message_status_changed") == []


async def test_variants_without_webhooks_refuse_them(make_connector: Maker) -> None:
    connector = await make_connector(TwilioChannelSchemas.NOTIFICATION_SMS)
    with pytest.raises(CapabilityNotSupportedError):
        await connector.receive_messages(WebhookRequest.from_json(INBOUND))
    with pytest.raises(CapabilityNotSupportedError):
        await connector.receive_message_status(WebhookRequest.from_json(INBOUND))


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (TextContent("Thanks <3 & bye"), "<Body>Thanks &lt;3 &amp; bye</Body>"),
        (
            MultipartContent(
                (
                    TextContent("a"),
                    MediaContent("https://x.example/a.png?s=1&t=2"),
                    TextContent("b"),
                    MediaContent("https://x.example/b.gif"),
                )
            ),
            "<Body>a\nb</Body><Media>https://x.example/a.png?s=1&amp;t=2</Media><Media>https://x.example/b.gif</Media>",
        ),
        (MediaContent("https://x.example/a.png"), "<Media>https://x.example/a.png</Media>"),
    ],
)
def test_twiml_reply(reply: TextContent | MediaContent | MultipartContent, message: str) -> None:
    expected = f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{message}</Message></Response>'
    assert twiml_reply(reply) == expected.encode()


def test_webhook_responses() -> None:
    connector = TwilioSmsConnector(TwilioChannelSchemas.TWILIO_SMS, {})
    status, content_type, body = connector.webhook_response("messages")
    assert (status, content_type) == (200, "text/xml")
    assert body.endswith(b"<Response/>")
    assert connector.webhook_response("status") == (204, None, b"")


# -- opt-out ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "kind"), [("STOP", "STOP"), (" unsubscribe ", "STOP"), ("start", "START"), ("HELP", "HELP")]
)
async def test_advanced_opt_out_is_surfaced_as_a_typed_property(
    emulator: TwilioEmulator, make_connector: Maker, webhook_server: Any, body: str, kind: str
) -> None:
    emulator.messaging_service_sid = "MG" + "1" * 32  # Advanced Opt-Out lives on a Messaging Service
    webhook_server.connector = await make_connector()
    await emulator.simulate_inbound("+15557654321", "+15005550006", body, url=webhook_server.url("/sms"))
    ((_, result),) = webhook_server.results
    (message,) = result.value.messages
    assert message.properties["OptOutType"] is OptOutType(kind)


async def test_a_plain_message_has_no_opt_out_type(
    emulator: TwilioEmulator, make_connector: Maker, webhook_server: Any
) -> None:
    emulator.messaging_service_sid = "MG" + "1" * 32
    webhook_server.connector = await make_connector()
    await emulator.simulate_inbound("+15557654321", "+15005550006", "stop it please", url=webhook_server.url("/sms"))
    ((_, result),) = webhook_server.results
    assert "OptOutType" not in result.value.messages[0].properties


async def test_after_stop_a_send_fails_as_unsubscribed_and_start_lifts_it(
    emulator: TwilioEmulator, make_connector: Maker, webhook_server: Any, sms: Any
) -> None:
    connector = await make_connector()
    webhook_server.connector = connector
    await emulator.simulate_inbound("+15557654321", "+15005550006", "STOP", url=webhook_server.url("/sms"))
    refused = await connector.send_message(sms(to="+15557654321"))
    assert refused.error is not None
    assert (refused.error.code, refused.error.retryable) == (TwilioErrorCodes.RECIPIENT_UNSUBSCRIBED, False)
    assert refused.error.details["twilio_code"] == 21610
    await emulator.simulate_inbound("+15557654321", "+15005550006", "START", url=webhook_server.url("/sms"))
    assert (await connector.send_message(sms(to="+15557654321"))).is_success
