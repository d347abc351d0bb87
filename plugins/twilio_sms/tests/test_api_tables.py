"""Pure tests of the Twilio tables and builders: schemas, statuses, errors, request building (no network)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from messaging_core import (
    Capability,
    ChannelRegistry,
    ConnectionSettings,
    ContentType,
    FailureOutcome,
    Message,
    MessageStatus,
    MultipartContent,
    ParameterSpec,
    TemplateContent,
    TextContent,
)
from messaging_core.validation import validator_for
from messaging_twilio_sms import STATUS_TABLE, TwilioChannelSchemas, TwilioErrorCodes, TwilioSettings, _api, map_status

SID = "SM" + "a" * 32
ACCOUNT = "AC" + "b" * 32
SERVICE = "MG" + "c" * 32

# -- schemas -----------------------------------------------------------------------------------------

MASTER = TwilioChannelSchemas.TWILIO_SMS
VARIANT_NAMES = ("TwilioSms", "SimpleSms", "NotificationSms", "BulkSms")


def _parameter(schema: Any, name: str) -> ParameterSpec:
    spec = schema.parameter_spec(name)
    assert spec is not None, f"{name} missing"
    return spec


def test_master_schema_identity_and_capabilities() -> None:
    assert (MASTER.provider, MASTER.channel_type, MASTER.version) == ("twilio", "sms", "1.0.0")
    assert MASTER.display_name == "Twilio SMS Connector"
    assert MASTER.capabilities == (
        Capability.SEND_MESSAGES
        | Capability.RECEIVE_MESSAGES
        | Capability.MESSAGE_STATUS_QUERY
        | Capability.HANDLE_MESSAGE_STATE
        | Capability.BULK_MESSAGING
        | Capability.HEALTH_CHECK
        | Capability.MEDIA_ATTACHMENTS
        | Capability.SCHEDULED_SENDING
        | Capability.TEMPLATES
    )
    assert (MASTER.max_text_length, MASTER.max_media) == (1600, 10)


def test_master_schema_parameters() -> None:
    account = _parameter(MASTER, "AccountSid")
    assert account.required
    assert account.pattern == r"^AC[0-9a-fA-F]{32}$"
    assert not account.sensitive
    token = _parameter(MASTER, "AuthToken")
    assert not token.required  # an API key may stand in for it where no webhook is checked (settings_problem)
    assert token.sensitive
    validity = _parameter(MASTER, "ValidityPeriod")
    assert (validity.data_type, validity.default, validity.minimum, validity.maximum) == ("integer", 14400, 1, 36000)
    assert _parameter(MASTER, "MaxPrice").data_type == "number"
    assert _parameter(MASTER, "MessagingServiceSid").pattern == r"^MG[0-9a-fA-F]{32}$"
    assert _parameter(MASTER, "ApiBaseUrl").default == "https://api.twilio.com"
    assert _parameter(MASTER, "ApiKeySecret").sensitive
    assert MASTER.sensitive_parameters == {"AuthToken", "ApiKeySecret"}


# (URL, accepted as StatusCallback, accepted as WebhookUrl): Twilio refuses a StatusCallback it
# cannot use with error 21609 on every send, so the schema must refuse it first.
URL_CASES = [
    ("https://hooks.example.com/twilio/status", True, True),
    ("https://hooks.example.com/twilio_status?tenant_id=7", True, True),  # underscores after the host are fine
    ("http://127.0.0.1:8080", True, True),
    ("HTTPS://Hooks.Example.com/s#part", True, True),
    ("https://user:p%40ss@hooks.example.com/s", True, True),  # credentials Twilio sends as basic auth
    ("https://hooks.example.com/s?q=a%20b&name=%C3%A9&it's=(ok)", True, True),
    ("http://[::1]:8080/status", True, True),
    ("https://hooks.example.com:65535/s", True, True),
    ("https://my_hooks.example.com/status", False, True),  # Twilio refuses underscores in a callback's host
    ("https://hooks example.com/status", False, False),
    ("https://hooks.example.com/a b", False, False),
    ("https://hooks.example.com/caf\u00e9", False, False),  # raw non-ASCII: must be percent-encoded
    ('https://hooks.example.com/"quoted"', False, False),
    ("https://hooks.example.com/<tag>", False, False),
    ("https://hooks.example.com/100%", False, False),
    ("https://hooks.example.com/%zz", False, False),
    ("https://hooks.example.com/%2", False, False),
    ("https://hooks.example.com/status\n", False, False),
    ("https://hooks.example.com:65536/s", False, False),
    ("https://-hooks.example.com/", False, False),
    ("https://hooks..example.com/", False, False),
    ("https://" + "a" * 64 + ".example.com/", False, False),  # a DNS label has at most 63 characters
    ("https://[1.2.3.4]/s", False, False),
    ("https:///status", False, False),
    ("ftp://hooks.example.com/status", False, False),
    ("hooks.example.com/status", False, False),
    ("https://hooks.example.com/" + "a" * 4000, False, True),  # a StatusCallback has at most 4000 characters
]


def _schema_accepts(url: str) -> tuple[bool, bool]:
    """Whether the master schema accepts ``url`` as (StatusCallback, WebhookUrl)."""
    settings = ConnectionSettings(
        {"AccountSid": ACCOUNT, "AuthToken": "token", "StatusCallback": url, "WebhookUrl": url}
    )
    refused = {issue.path for issue in settings.issues(MASTER)}
    return "$.StatusCallback" not in refused, "$.WebhookUrl" not in refused


def _emulator_accepts(url: str) -> tuple[bool, bool]:
    """Whether the emulator accepts ``url`` as (StatusCallback, webhook URL)."""
    # Its rules are called directly: its public paths would send a webhook to these hosts.
    from messaging_twilio_sms.emulator._rules import status_callback_problem, url_problem

    return status_callback_problem(url) is None, url_problem(url) is None


@pytest.mark.parametrize(("url", "callback_ok", "webhook_ok"), URL_CASES)
def test_url_patterns_agree_with_the_emulators_21609_check(url: str, callback_ok: bool, webhook_ok: bool) -> None:
    assert _emulator_accepts(url) == (callback_ok, webhook_ok)
    assert _schema_accepts(url) == (callback_ok, webhook_ok)


_URL_PIECES = st.sampled_from(["a", "_", "-", ".", ":", "/", "?", "#", "@", "%", "%2F", "%zz", "8", " ", "\u00e9", '"'])


@given(
    st.sampled_from(["http", "https", "HTTP", "ftp", ""]),
    st.lists(_URL_PIECES, max_size=6).map("".join),
    st.one_of(st.lists(_URL_PIECES, max_size=6).map("".join), st.ip_addresses(v=6).map(lambda ip: f"[{ip}]")),
    st.sampled_from(["", ":", ":80", ":65536", ":x"]),
    st.lists(_URL_PIECES, max_size=8).map("".join),
)
def test_url_patterns_agree_with_the_emulator_on_generated_urls(
    scheme: str, user: str, host: str, port: str, rest: str
) -> None:
    # Brackets only around real IPv6 addresses: the schema checks a literal by its characters only.
    url = f"{scheme}://{user + '@' if user else ''}{host}{port}{'/' + rest if rest else ''}"
    assert _schema_accepts(url) == _emulator_accepts(url)


_OUR_OWN_PROPERTIES = {"ProvideCallback", "AttemptLimits", "ExtraFields"}
"""Properties that are not a create field of their own name (the seed's, and the escape hatch)."""


def _create_fields(oai: dict[str, Any]) -> dict[str, Any]:
    operation = oai["paths"]["/2010-04-01/Accounts/{AccountSid}/Messages.json"]["post"]
    fields: dict[str, Any] = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"][
        "properties"
    ]
    return {
        name: oai["components"]["schemas"][f["$ref"].rsplit("/", 1)[1]] if "$ref" in f else f
        for name, f in fields.items()
    }


def test_create_fields_are_twilios(oai: dict[str, Any]) -> None:
    assert set(_create_fields(oai)) == _api.CREATE_FIELDS
    assert _api.MODELLED_FIELDS <= _api.CREATE_FIELDS


def test_each_property_named_after_a_create_field_has_its_type(oai: dict[str, Any]) -> None:
    """A property sent under its own name takes exactly what Twilio's field takes (type, values, pattern)."""
    fields = _create_fields(oai)
    checked = set()
    for spec in MASTER.properties:
        if spec.name in _OUR_OWN_PROPERTIES:
            continue
        field = fields[spec.name]
        oai_type = field["items"]["type"] if field["type"] == "array" else field["type"]
        assert (spec.data_type.value, spec.repeated) == (oai_type, field["type"] == "array"), spec.name
        assert spec.allowed_values == (tuple(field["enum"]) if "enum" in field else None), spec.name
        if "pattern" in field:
            assert spec.pattern == field["pattern"], spec.name
        checked.add(spec.name)
    assert checked == {
        "ValidityPeriod", "MaxPrice", "StatusCallback", "SmartEncoded", "PersistentAction", "ShortenUrls",
        "SendAsMms", "RiskCheck", "ApplicationSid", "FallbackFrom", "ContentRetention", "AddressRetention", "SendAt",
    }  # fmt: skip


@pytest.fixture(scope="module")
def registry() -> ChannelRegistry:
    return ChannelRegistry.discover(blocked=[])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("TwilioSms", TwilioChannelSchemas.TWILIO_SMS),
        ("SimpleSms", TwilioChannelSchemas.SIMPLE_SMS),
        ("NotificationSms", TwilioChannelSchemas.NOTIFICATION_SMS),
        ("BulkSms", TwilioChannelSchemas.BULK_SMS),
    ],
)
def test_variants_by_name_are_restrictions_of_the_master(registry: ChannelRegistry, name: str, expected: Any) -> None:
    schema = registry.schema("twilio_sms", name)
    assert schema == expected
    assert schema.validate_as_restriction_of(TwilioChannelSchemas.TWILIO_SMS) == []
    assert schema.logical_identity == "twilio/sms/1.0.0"


def test_simple_sms_removes_what_the_seed_says_and_keeps_media() -> None:
    """The seed: SimpleSms removes three capabilities and three parameters; media and callbacks stay."""
    simple = TwilioChannelSchemas.SIMPLE_SMS
    # Scheduling needs a Messaging Service: it goes with MessagingServiceSid.
    assert MASTER.capabilities & ~simple.capabilities == (
        Capability.RECEIVE_MESSAGES
        | Capability.HANDLE_MESSAGE_STATE
        | Capability.BULK_MESSAGING
        | Capability.SCHEDULED_SENDING
    )
    assert Capability.MEDIA_ATTACHMENTS in simple.capabilities
    assert {ContentType.MEDIA, ContentType.MULTIPART} <= simple.content_types
    names = {p.name for p in simple.parameters}
    # SubaccountSids (ours, not the seed's) only widens which webhooks are accepted: gone with receiving.
    assert {p.name for p in MASTER.parameters} - names == {
        "WebhookUrl", "StatusCallback", "MessagingServiceSid", "SubaccountSids"
    }  # fmt: skip
    assert {p.name for p in MASTER.properties} - {p.name for p in simple.properties} == {"SendAt"}
    phone = simple.endpoint_spec("phone")
    assert phone is not None
    assert phone.required


def test_notification_sms_keeps_status_query_and_callback() -> None:
    notification = TwilioChannelSchemas.NOTIFICATION_SMS
    assert Capability.RECEIVE_MESSAGES not in notification.capabilities
    assert Capability.HANDLE_MESSAGE_STATE not in notification.capabilities
    assert Capability.MESSAGE_STATUS_QUERY in notification.capabilities
    assert notification.parameter_spec("StatusCallback") is not None
    assert notification.parameter_spec("WebhookUrl") is None


def test_bulk_sms_requires_a_messaging_service_not_a_sender() -> None:
    bulk = TwilioChannelSchemas.BULK_SMS
    assert _parameter(bulk, "MessagingServiceSid").required
    assert not _parameter(MASTER, "MessagingServiceSid").required
    phone = bulk.endpoint_spec("phone")
    assert phone is not None
    assert not phone.required
    assert Capability.BULK_MESSAGING in bulk.capabilities
    assert Capability.RECEIVE_MESSAGES not in bulk.capabilities


def test_variants_table_lists_every_schema_once() -> None:
    assert tuple(TwilioChannelSchemas.VARIANTS) == VARIANT_NAMES
    assert len({s.display_name for s in TwilioChannelSchemas.VARIANTS.values()}) == 4


# -- statuses ----------------------------------------------------------------------------------------


def test_status_table_covers_the_oai_status_enum(oai: dict[str, Any]) -> None:
    enum = oai["components"]["schemas"]["message_enum_status"]["enum"]
    assert set(enum) == set(STATUS_TABLE)
    assert all(isinstance(STATUS_TABLE[word], MessageStatus) for word in enum)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("accepted", MessageStatus.QUEUED),
        ("scheduled", MessageStatus.SCHEDULED),
        ("queued", MessageStatus.QUEUED),
        ("sending", MessageStatus.ROUTED),
        ("sent", MessageStatus.SENT),
        ("delivered", MessageStatus.DELIVERED),
        ("undelivered", MessageStatus.DELIVERY_FAILED),
        ("failed", MessageStatus.ROUTE_FAILED),
        ("receiving", MessageStatus.QUEUED),
        ("received", MessageStatus.RECEIVED),
        ("read", MessageStatus.READ),
        ("canceled", MessageStatus.CANCELLED),
        ("partially_delivered", MessageStatus.SENT),
    ],
)
def test_map_status(raw: str, expected: MessageStatus) -> None:
    assert map_status(raw) is expected


@pytest.mark.parametrize("raw", [None, "", "teleported", "DELIVERED"])
def test_unknown_statuses_map_to_unknown(raw: str | None) -> None:
    assert map_status(raw) is MessageStatus.UNKNOWN


def test_final_twilio_statuses_are_final_core_statuses() -> None:
    for raw in ("delivered", "undelivered", "failed", "canceled", "read", "received"):
        assert map_status(raw).is_final, raw
    for raw in ("accepted", "scheduled", "queued", "sending", "sent", "receiving", "partially_delivered"):
        assert not map_status(raw).is_final, raw
    assert {raw for raw, status in STATUS_TABLE.items() if status.is_failure} == {"undelivered", "failed", "canceled"}


# -- errors ------------------------------------------------------------------------------------------


def _twilio_error(status: int, code: int | None, message: str = "boom", **extra: Any) -> bytes:
    payload: dict[str, Any] = {"message": message, "status": status, **extra}
    if code is not None:
        payload["code"] = code
        payload["more_info"] = f"https://www.twilio.com/docs/errors/{code}"
    return json.dumps(payload).encode()


ERROR_CASES = [
    # http, body, operation, code, retryable
    (400, _twilio_error(400, 21211), "send", TwilioErrorCodes.INVALID_RECIPIENT, False),
    (400, _twilio_error(400, 21408), "send", TwilioErrorCodes.INVALID_RECIPIENT, False),
    (400, _twilio_error(400, 21608), "send", TwilioErrorCodes.INVALID_RECIPIENT, False),
    (400, _twilio_error(400, 21612), "send", TwilioErrorCodes.INVALID_RECIPIENT, False),
    (400, _twilio_error(400, 21614), "send", TwilioErrorCodes.INVALID_RECIPIENT, False),
    (400, _twilio_error(400, 21610), "send", TwilioErrorCodes.RECIPIENT_UNSUBSCRIBED, False),
    (400, _twilio_error(400, 21212), "send", TwilioErrorCodes.INVALID_SENDER, False),
    (400, _twilio_error(400, 21606), "send", TwilioErrorCodes.INVALID_SENDER, False),
    (429, _twilio_error(429, 21611), "send", TwilioErrorCodes.RATE_LIMITED, True),
    (429, _twilio_error(429, 20429), "send", TwilioErrorCodes.RATE_LIMITED, True),
    (429, b"", "send", TwilioErrorCodes.RATE_LIMITED, True),
    (401, _twilio_error(401, 20003, "Authenticate"), "send", TwilioErrorCodes.AUTHENTICATION_FAILED, False),
    (401, b"", "send", TwilioErrorCodes.AUTHENTICATION_FAILED, False),
    # Twilio's code alone decides, whatever the HTTP status a proxy or an API version answers with.
    (403, _twilio_error(403, 20003, "Authenticate"), "send", TwilioErrorCodes.AUTHENTICATION_FAILED, False),
    (400, _twilio_error(400, 20003, "Authenticate"), "status", TwilioErrorCodes.AUTHENTICATION_FAILED, False),
    (400, _twilio_error(400, 21617), "send", TwilioErrorCodes.MESSAGE_VALIDATION_FAILED, False),
    (400, _twilio_error(400, 21623), "send", TwilioErrorCodes.MESSAGE_VALIDATION_FAILED, False),
    (500, _twilio_error(500, 20500), "send", TwilioErrorCodes.TEMPORARY_FAILURE, False),
    (503, b"<html><body>503 Service Unavailable</body></html>", "send", TwilioErrorCodes.TEMPORARY_FAILURE, False),
    (502, b"", "send", TwilioErrorCodes.TEMPORARY_FAILURE, False),
    (400, _twilio_error(400, None, "Something odd"), "send", TwilioErrorCodes.SEND_MESSAGE_FAILED, False),
    (404, _twilio_error(404, 20404), "send", TwilioErrorCodes.SEND_MESSAGE_FAILED, False),
    (404, _twilio_error(404, 20404), "status", TwilioErrorCodes.STATUS_QUERY_FAILED, False),
    (400, b"[1, 2, 3]", "send", TwilioErrorCodes.SEND_MESSAGE_FAILED, False),
    (400, _twilio_error(400, 21220), "cancel", TwilioErrorCodes.CANCEL_FAILED, False),
    (404, _twilio_error(404, 20404), "manage", TwilioErrorCodes.MESSAGE_NOT_FOUND, False),
    (400, _twilio_error(400, 20001), "manage", TwilioErrorCodes.REQUEST_FAILED, False),
    (400, b"\xff\xfe not utf-8", "send", TwilioErrorCodes.SEND_MESSAGE_FAILED, False),
]


@pytest.mark.parametrize(("http_status", "body", "operation", "code", "retryable"), ERROR_CASES)
def test_error_from_response(http_status: int, body: bytes, operation: str, code: str, retryable: bool) -> None:
    error = _api.error_from_response(http_status, body, operation=operation)
    assert error.code == code
    assert error.retryable is retryable
    assert error.details["http_status"] == http_status
    data = _api.parse_json_object(body)
    if data is not None and isinstance(data.get("code"), int):
        assert error.details["twilio_code"] == data["code"]
        assert error.details["more_info"] == data["more_info"]
        assert error.message == data["message"]
    else:
        assert "twilio_code" not in error.details
    if http_status < 500:  # only a 5xx leaves a create in doubt; the rest keep the code's own outcome
        assert error.outcome is (FailureOutcome.NOT_SENT if retryable else FailureOutcome.REJECTED)


def test_error_text_falls_back_to_the_http_status() -> None:
    error = _api.error_from_response(502, b"<html>Bad Gateway</html>")
    assert error.message == "HTTP 502 from Twilio"
    not_text = _api.error_from_response(400, b'{"code": 21211, "message": {"text": "Invalid To"}}')
    assert not_text.message == "HTTP 400 from Twilio", "a message that is not a string is not shown"
    assert error.outcome is FailureOutcome.MAY_HAVE_BEEN_SENT  # a 5xx to a create may have been processed


def test_server_errors_of_status_queries_are_not_in_doubt() -> None:
    assert _api.error_from_response(500, b"", operation="status").outcome is not FailureOutcome.MAY_HAVE_BEEN_SENT


def test_error_code_must_be_an_integer() -> None:
    for raw in ('"21211"', "true", "21211.5", "null"):
        error = _api.error_from_response(400, f'{{"code": {raw}, "message": "x"}}'.encode())
        assert error.code == TwilioErrorCodes.SEND_MESSAGE_FAILED, raw
        assert "twilio_code" not in error.details


def test_error_details_object_is_kept_raw() -> None:
    body = _twilio_error(400, 21211, "Invalid 'To'", details={"field": "To", "reason": "not E.164"})
    error = _api.error_from_response(400, body)
    assert error.code == TwilioErrorCodes.INVALID_RECIPIENT
    assert error.details["twilio_details"] == {"field": "To", "reason": "not E.164"}


def test_retryable_errors_are_only_the_never_processed_ones() -> None:
    retryable = {
        http
        for http in range(400, 600)
        if _api.error_from_response(http, _twilio_error(http, None)).retryable
        or _api.error_from_response(http, b"").retryable
    }
    assert retryable == {429}


# -- Retry-After ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("3", 3.0), ("0", 0.0), (" 7 ", 7.0), ("3600", 60.0), ("soon", None), ("-5", None)],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert _api.retry_after_seconds(header) == expected


def test_retry_after_http_dates() -> None:
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = _api.retry_after_seconds(future)
    assert seconds is not None
    assert 25 <= seconds <= 30
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert _api.retry_after_seconds(past) == 0.0
    assert _api.retry_after_seconds(future, cap=10) == 10


# -- small helpers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+14155550100", "+14*******00"),
        ("+447700900123", "+44********23"),
        ("1234567", "12****7"),  # once shown in full
        ("+1234", "+***4"),
        ("7", "*"),
        ("", "-"),
        (None, "-"),
    ],
)
def test_mask_phone(number: str | None, masked: str) -> None:
    assert _api.mask_phone(number) == masked


@pytest.mark.parametrize("length", range(1, 17))
def test_mask_phone_shows_at_most_the_first_3_and_last_2_and_never_half(length: int) -> None:
    number = "+123456789012345"[:length]
    masked = _api.mask_phone(number)
    head = masked[: len(masked) - len(masked.lstrip("+0123456789"))]
    tail = masked[len(masked.rstrip("+0123456789")) :]
    assert masked == head + "*" * (length - len(head) - len(tail)) + tail
    assert number.startswith(head)
    assert number.endswith(tail)
    assert len(head) <= 3
    assert len(tail) <= 2
    assert len(head) + len(tail) <= length // 2  # at least half masked: never the whole number


def test_is_message_sid() -> None:
    assert _api.is_message_sid(SID)
    assert _api.is_message_sid("MM" + "0123456789ABCDEF" * 2)
    for other in ("SM123", "XX" + "a" * 32, "SM" + "g" * 32, "a" * 32, SID + "0"):
        assert not _api.is_message_sid(other), other


def test_paths() -> None:
    assert _api.account_path(ACCOUNT) == f"/2010-04-01/Accounts/{ACCOUNT}.json"
    assert _api.messages_path(ACCOUNT) == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert _api.message_path(ACCOUNT, SID) == f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{SID}.json"
    assert _api.message_path(ACCOUNT, "../x y").endswith("/Messages/..%2Fx%20y.json")  # never leaves the path


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/status", "https://hooks.example.com/status?tenant=a%20b&x=1", "http://h/p?"]
)
def test_with_message_id_appends_to_the_query(url: str) -> None:
    result = _api.with_message_id(url, "our id&1")
    parts, original = urlsplit(result), urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (original.scheme, original.netloc, original.path)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    assert pairs[-1] == ("MessageId", "our id&1")
    assert pairs[:-1] == parse_qsl(original.query, keep_blank_values=True)


def test_parse_twilio_date() -> None:
    parsed = _api.parse_twilio_date("Thu, 24 Aug 2023 05:01:45 +0000")
    assert parsed == datetime(2023, 8, 24, 5, 1, 45, tzinfo=UTC)
    assert _api.parse_twilio_date(None) is None
    assert _api.parse_twilio_date("yesterday") is None


def test_utf16_length_counts_emoji_twice() -> None:
    assert _api.utf16_length("abc") == 3
    assert _api.utf16_length("é") == 1
    assert _api.utf16_length("\U0001f600") == 2


# -- request building ----------------------------------------------------------------------------------

SETTINGS = TwilioSettings(account_sid=ACCOUNT, auth_token="token", validity_period=14400)


def test_form_of_a_plain_sms(sms: Callable[..., Message]) -> None:
    message = sms("+15551230001", "Hi")
    assert _api.build_message_form(message, SETTINGS) == [
        ("To", "+15551230001"),
        ("From", "+15005550006"),
        ("Body", "Hi"),
        ("ValidityPeriod", "14400"),
    ]


def test_form_of_an_mms_repeats_media_url(sms: Callable[..., Message]) -> None:
    message = sms(text="look", media=["https://a.example/1.png", "https://a.example/2.jpg"])
    form = _api.build_message_form(message, SETTINGS)
    assert [value for key, value in form if key == "MediaUrl"] == ["https://a.example/1.png", "https://a.example/2.jpg"]
    assert ("Body", "look") in form


def test_media_only_message_has_no_body(sms: Callable[..., Message]) -> None:
    form = _api.build_message_form(sms(text=None, media=["https://a.example/1.png"]), SETTINGS)
    assert "Body" not in dict(form)


def test_a_messaging_service_and_an_explicit_sender_are_both_sent(sms: Callable[..., Message]) -> None:
    """Twilio takes both (the From must be in the service's pool): a reply goes out from the number texted."""
    settings = attrs.evolve(SETTINGS, messaging_service_sid=SERVICE)
    form = dict(_api.build_message_form(sms(), settings))
    assert form["MessagingServiceSid"] == SERVICE
    assert form["From"] == sms().sender.address
    alone = dict(_api.build_message_form(sms(sender=None), settings))
    assert alone["MessagingServiceSid"] == SERVICE
    assert "From" not in alone  # the service picks a sender from its pool


def test_every_property_is_mapped(sms: Callable[..., Message]) -> None:
    settings = attrs.evolve(SETTINGS, status_callback="https://hooks.example.com/status?a=1")
    message = sms(
        ValidityPeriod=60,
        MaxPrice=0.00001,
        ProvideCallback=True,
        StatusCallback="https://other.example.com/cb",
        AttemptLimits=3,
        SmartEncoded=True,
        PersistentAction=["geo:37.78,-122.39", "mailto:a@example.com"],
        ShortenUrls=True,
        SendAsMms=False,
        RiskCheck="disable",
        ApplicationSid="AP" + "a" * 32,
        FallbackFrom="+14155550111",
        ContentRetention="discard",
        AddressRetention="obfuscate",
        ExtraFields=["TrafficType=free", "ProvideFeedback=true"],
        SendAt="2030-01-02T03:04:05.678+01:00",
    )
    form = _api.build_message_form(message, settings)
    single = dict(form)
    assert single["ValidityPeriod"] == "60"  # the property overrides the setting
    assert single["MaxPrice"] == "0.00001"  # decimal digits, never 1e-05
    assert "Attempt" not in single  # the connector adds it per request
    assert "AttemptLimits" not in single
    assert single["SmartEncoded"] == "true"
    assert [v for k, v in form if k == "PersistentAction"] == ["geo:37.78,-122.39", "mailto:a@example.com"]
    # The message's own callback URL wins over the setting's.
    assert single["StatusCallback"] == f"https://other.example.com/cb?MessageId={message.id}"
    assert "ProvideCallback" not in single
    assert (single["ShortenUrls"], single["SendAsMms"], single["RiskCheck"]) == ("true", "false", "disable")
    assert single["ApplicationSid"] == "AP" + "a" * 32
    assert single["FallbackFrom"] == "+14155550111"
    assert (single["ContentRetention"], single["AddressRetention"]) == ("discard", "obfuscate")
    assert (single["TrafficType"], single["ProvideFeedback"]) == ("free", "true")
    assert (single["ScheduleType"], single["SendAt"]) == ("fixed", "2030-01-02T02:04:05Z")  # UTC, whole seconds
    # Every schema property left a trace in the form, except the connector's own AttemptLimits.
    traced = {"ProvideCallback": "StatusCallback", "ExtraFields": "TrafficType"}
    for spec in MASTER.properties:
        if spec.name != "AttemptLimits":
            assert traced.get(spec.name, spec.name) in single, spec.name


def test_persistent_action_takes_one_string_or_a_list(sms: Callable[..., Message]) -> None:
    one = _api.build_message_form(sms(PersistentAction="geo:1,2"), SETTINGS)
    assert [v for k, v in one if k == "PersistentAction"] == ["geo:1,2"]
    validator = validator_for(MASTER.properties_json_schema())
    assert validator.issues({"PersistentAction": "geo:1,2"}) == []
    assert validator.issues({"PersistentAction": ["geo:1,2", "geo:3,4"]}) == []
    assert [i.code for i in validator.issues({"PersistentAction": 5})] != []


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.00001, "0.00001"), (0.25, "0.25"), (3, "3"), (2.0, "2"), (1e-7, "0.0000001"), (12345.678, "12345.678")],
)
def test_numbers_are_sent_as_plain_decimals(value: float, text: str) -> None:
    assert _api.decimal_text(value) == text


def test_extra_fields_split_at_the_first_equals_sign(sms: Callable[..., Message]) -> None:
    form = _api.build_message_form(sms(ExtraFields="Tags=a=b"), SETTINGS)
    assert form[-1] == ("Tags", "a=b")


def test_content_variables_are_compact_json_that_keeps_accents(sms: Callable[..., Message]) -> None:
    template = TemplateContent("HX" + "0" * 32, {"1": "Zoë", "2": "10 h"})
    form = dict(_api.build_message_form(attrs.evolve(sms(), content=template), SETTINGS))
    assert form["ContentVariables"] == '{"1":"Zoë","2":"10 h"}'


def test_send_at_is_sent_in_utc_whatever_the_local_time_zone(
    sms: Callable[..., Message], local_time_nine_hours_ahead: None
) -> None:
    form = dict(_api.build_message_form(sms(SendAt="2030-01-02T03:04:05+01:00"), SETTINGS))
    assert form["SendAt"] == "2030-01-02T02:04:05Z"
    assert (
        dict(_api.build_message_form(sms(SendAt="2030-01-02T03:04:05Z"), SETTINGS))["SendAt"] == "2030-01-02T03:04:05Z"
    )


def test_a_delivery_error_code_of_any_json_shape_is_no_known_error() -> None:
    for code in ("30003", 30003.0, [30003], {"code": 30003}, None):
        assert _api.delivery_error(code) == {}, code
    assert _api.delivery_error(30003) == {"delivery_error": "unreachable_handset", "delivery_error_permanent": False}


def test_provide_callback_false_sends_no_status_callback(sms: Callable[..., Message]) -> None:
    settings = attrs.evolve(SETTINGS, status_callback="https://hooks.example.com/status")
    assert "StatusCallback" not in dict(_api.build_message_form(sms(ProvideCallback=False), settings))
    assert "StatusCallback" in dict(_api.build_message_form(sms(ProvideCallback=True), settings))
    # Without a StatusCallback setting there is nothing to ask for.
    assert "StatusCallback" not in dict(_api.build_message_form(sms(ProvideCallback=True), SETTINGS))


def test_smart_encoded_false_and_whole_number_prices(sms: Callable[..., Message]) -> None:
    form = dict(_api.build_message_form(sms(SmartEncoded=False, MaxPrice=2.0), attrs.evolve(SETTINGS, max_price=0.5)))
    assert form["SmartEncoded"] == "false"
    assert form["MaxPrice"] == "2"
    assert dict(_api.build_message_form(sms(), attrs.evolve(SETTINGS, max_price=0.5)))["MaxPrice"] == "0.5"


def test_multipart_texts_are_joined_with_newlines(sms: Callable[..., Message]) -> None:
    message = sms(text="first")
    two = attrs.evolve(message, content=MultipartContent((TextContent("one"), TextContent("two"))))
    assert dict(_api.build_message_form(two, SETTINGS))["Body"] == "one\ntwo"
    assert _api.message_body(message) == "first"


@given(st.lists(st.tuples(st.sampled_from(["To", "From", "Body", "MediaUrl"]), st.text()), max_size=6))
def test_encode_form_is_exactly_urlencode(form: list[tuple[str, str]]) -> None:
    from urllib.parse import urlencode

    assert _api.encode_form(form) == urlencode(form).encode()
