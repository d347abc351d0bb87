"""``initialize()`` and ``send_message()`` of the Twilio connector, against the local emulator."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
from aioresponses import aioresponses

from messaging_core import (
    ConnectorErrorCodes,
    ConnectorState,
    Endpoint,
    EndpointType,
    FailureOutcome,
    Message,
    MessageStatus,
    MultipartContent,
    SendResult,
    TextContent,
)
from messaging_twilio_sms import TwilioChannelSchemas, TwilioErrorCodes, TwilioSmsConnector
from messaging_twilio_sms.emulator import TwilioEmulator

Maker = Callable[..., Awaitable[TwilioSmsConnector]]
Sms = Callable[..., Message]
SERVICE = "MG" + "0123456789abcdef" * 2
ACCOUNT = "AC" + "0123456789abcdef" * 2


def _ok(result: Any) -> SendResult:
    assert result.is_success, result.error
    value: SendResult = result.value
    return value


# -- initialize ----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_twilio_env")
@pytest.mark.parametrize("missing", ["AccountSid", "AuthToken"])
async def test_missing_credentials(make_connector: Maker, missing: str) -> None:
    connector = await make_connector(initialize=False, **{missing: None})
    result = await connector.initialize()
    assert result.error_code == ConnectorErrorCodes.MISSING_CREDENTIALS
    assert result.error is not None
    assert [issue.path for issue in result.error.issues] == [f"$.{missing}"]
    assert connector.state is ConnectorState.ERROR


@pytest.mark.usefixtures("no_twilio_env")
async def test_api_key_without_secret_is_missing_credentials(make_connector: Maker) -> None:
    connector = await make_connector(initialize=False, ApiKeySid="SK" + "1" * 32)
    result = await connector.initialize()
    assert result.error_code == ConnectorErrorCodes.MISSING_CREDENTIALS


@pytest.mark.parametrize(
    ("settings", "paths"),
    [
        ({"AccountSid": "AC123"}, ["$.AccountSid"]),
        ({"ValidityPeriod": "14400"}, ["$.ValidityPeriod"]),
        ({"ValidityPeriod": 0}, ["$.ValidityPeriod"]),
        ({"ValidityPeriod": 36001}, ["$.ValidityPeriod"]),
        ({"MessagingServiceSid": "MGnope"}, ["$.MessagingServiceSid"]),
        ({"ApiBaseUrl": "ftp://api.example.com"}, ["$.ApiBaseUrl"]),
        (
            {"AccountSid": "XX" + "0" * 32, "ValidityPeriod": "14400", "MaxConcurrency": 0, "Bogus": 1},
            ["$.AccountSid", "$.ValidityPeriod", "$.MaxConcurrency", "$.Bogus"],
        ),
    ],
)
async def test_invalid_settings_list_every_issue(
    make_connector: Maker, settings: dict[str, Any], paths: list[str]
) -> None:
    connector = await make_connector(initialize=False, **settings)
    result = await connector.initialize()
    assert result.error_code == ConnectorErrorCodes.INVALID_CONNECTION_SETTINGS
    assert result.error is not None
    assert sorted(issue.path for issue in result.error.issues) == sorted(paths)
    for path in paths:
        assert path in result.error.message


async def test_initialize_makes_no_network_call(mock_http: aioresponses, sms: Sms) -> None:
    connector = TwilioSmsConnector(
        TwilioChannelSchemas.TWILIO_SMS,
        {"AccountSid": ACCOUNT, "AuthToken": "a-token-for-nobody", "ApiBaseUrl": "https://api.twilio.example"},
    )
    # No routes: any request would fail, and would be recorded.
    result = await connector.initialize()
    assert result.is_success, result.error
    assert connector.state is ConnectorState.READY
    assert mock_http.requests == {}
    # The same mock does see the first real request (so it would have seen one during initialize).
    await connector.send_message(sms())
    assert len(mock_http.requests) == 1
    await connector.shutdown()


async def test_api_key_authenticates(emulator: TwilioEmulator, sms: Sms) -> None:
    key, secret = "SK" + "2" * 32, "api-key-secret-value"
    async with TwilioEmulator(api_key_sid=key, api_key_secret=secret, auto_advance=False) as emu:
        connector = TwilioSmsConnector(
            TwilioChannelSchemas.TWILIO_SMS,
            {
                "ApiBaseUrl": emu.base_url,
                "AccountSid": emu.account_sid,
                "AuthToken": "not-the-api-password",  # still needed: it signs webhooks
                "ApiKeySid": key,
                "ApiKeySecret": secret,
            },
        )
        async with connector:
            sent = _ok(await connector.send_message(sms()))
        assert list(emu.messages) == [sent.remote_message_id]


@pytest.mark.usefixtures("no_twilio_env")
async def test_an_api_key_alone_sends_where_no_webhook_is_checked(sms: Sms) -> None:
    """Send-only (SimpleSms) with an API key: the Auth Token, which only signs webhooks, is not needed."""
    key, secret = "SK" + "3" * 32, "api-key-secret-value"
    async with TwilioEmulator(api_key_sid=key, api_key_secret=secret, auto_advance=False) as emu:
        settings = {"ApiBaseUrl": emu.base_url, "AccountSid": emu.account_sid, "ApiKeySid": key, "ApiKeySecret": secret}
        async with TwilioSmsConnector(TwilioChannelSchemas.SIMPLE_SMS, settings) as connector:
            sent = _ok(await connector.send_message(sms()))
        assert list(emu.messages) == [sent.remote_message_id]
        # A connector that receives webhooks cannot check their signatures without it: said at initialize.
        receiving = TwilioSmsConnector(TwilioChannelSchemas.TWILIO_SMS, settings)
        refused = await receiving.initialize()
        assert refused.error_code == ConnectorErrorCodes.MISSING_CREDENTIALS
        assert refused.error is not None
        assert [i.path for i in refused.error.issues] == ["$.AuthToken"]
        assert "webhook signatures" in refused.error.message
        assert secret not in refused.error.message
        # ... unless signatures are off (then such a connector refuses nothing, as documented).
        unchecked = TwilioSmsConnector(TwilioChannelSchemas.TWILIO_SMS, {**settings, "ValidateSignatures": False})
        assert (await unchecked.initialize()).is_success
        await unchecked.shutdown()


@pytest.mark.usefixtures("no_twilio_env")
@pytest.mark.parametrize(
    ("given", "url"),
    [
        ({"Region": "ie1"}, "https://api.dublin.ie1.twilio.com"),
        ({"Region": "au1"}, "https://api.sydney.au1.twilio.com"),
        ({"Region": "jp1"}, "https://api.tokyo.jp1.twilio.com"),
        ({"Region": "ie1", "Edge": "frankfurt"}, "https://api.frankfurt.ie1.twilio.com"),
        ({"Edge": "singapore"}, "https://api.singapore.us1.twilio.com"),
        ({}, "https://api.twilio.com"),
    ],
)
def test_region_and_edge_make_the_api_host(given: dict[str, str], url: str, sms: Sms) -> None:
    """``api.{edge}.{region}.twilio.com``: the old ``api.{region}.twilio.com`` hosts stopped on 2026-04-28."""
    connector = TwilioSmsConnector(
        TwilioChannelSchemas.TWILIO_SMS, {"AccountSid": "AC" + "0" * 32, "AuthToken": "t", **given}
    )
    assert connector.resolve_settings().is_success
    preview = connector.preview_message(sms())
    assert preview["url"] == f"{url}/2010-04-01/Accounts/{'AC' + '0' * 32}/Messages.json"


@pytest.mark.usefixtures("no_twilio_env")
@pytest.mark.parametrize(
    ("given", "path", "code"),
    [
        ({"Region": "ie1", "ApiBaseUrl": "http://127.0.0.1:9"}, "$.ApiBaseUrl", "NOT_ALLOWED"),
        ({"Region": "de1"}, "$.Edge", "REQUIRED"),
        ({"ApiKeySecret": "s"}, "$.ApiKeySid", "REQUIRED"),
    ],
)
async def test_settings_that_do_not_go_together_fail_initialize(given: dict[str, str], path: str, code: str) -> None:
    connector = TwilioSmsConnector(
        TwilioChannelSchemas.TWILIO_SMS, {"AccountSid": "AC" + "0" * 32, "AuthToken": "t", **given}
    )
    result = await connector.initialize()
    assert result.error is not None
    assert [(i.path, i.code) for i in result.error.issues] == [(path, code)]
    assert connector.state is ConnectorState.ERROR


@pytest.mark.parametrize("edge", ["dublin ", "mars"])
def test_an_unknown_edge_or_region_is_a_settings_issue(edge: str) -> None:
    connector = TwilioSmsConnector(
        TwilioChannelSchemas.TWILIO_SMS,
        {"AccountSid": "AC" + "0" * 32, "AuthToken": "t", "Edge": edge, "Region": "IE1"},
    )
    result = connector.resolve_settings()
    assert result.error is not None
    assert {i.path for i in result.error.issues} == {"$.Edge", "$.Region"}


# -- a successful send -----------------------------------------------------------------------------------


async def test_send_returns_the_sid_and_the_mapped_status(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms
) -> None:
    connector = await make_connector()
    message = sms(text="Hello there")
    sent = _ok(await connector.send_message(message))
    assert sent.message_id == message.id
    assert sent.remote_message_id in emulator.messages
    assert sent.remote_message_id.startswith("SM")
    assert sent.status is MessageStatus.QUEUED
    data = sent.additional_data
    assert data["raw_status"] == "queued"
    assert (data["encoding"], data["segments"], data["num_segments"], data["num_media"]) == ("GSM-7", 1, 1, 0)
    assert {"price", "price_unit", "messaging_service_sid"} <= set(data)
    assert data["price_unit"] == "USD"
    stored = emulator.messages[sent.remote_message_id]
    assert stored.params == {
        "To": "+15551230001",
        "From": "+15005550006",
        "Body": "Hello there",
        "ValidityPeriod": "14400",
    }


async def test_segments_and_encoding_of_long_unicode_text(make_connector: Maker, sms: Sms) -> None:
    connector = await make_connector()
    sent = _ok(await connector.send_message(sms(text="\u00e7a va \u2603 " * 20)))  # a snowman: UCS-2
    assert sent.additional_data["encoding"] == "UCS-2"
    assert sent.additional_data["segments"] == 3  # 160 UCS-2 characters, 67 per segment
    assert sent.additional_data["num_segments"] == 3


async def test_text_and_media_make_an_mms(emulator: TwilioEmulator, make_connector: Maker, sms: Sms) -> None:
    connector = await make_connector()
    urls = ["https://cdn.example.com/a.png", "https://cdn.example.com/b.jpg"]
    sent = _ok(await connector.send_message(sms(text="two pictures", media=urls)))
    assert sent.remote_message_id.startswith("MM")
    assert sent.additional_data["num_media"] == 2
    params = emulator.messages[sent.remote_message_id].params
    assert params["MediaUrl"] == urls
    assert params["Body"] == "two pictures"


async def test_ten_media_are_accepted(emulator: TwilioEmulator, make_connector: Maker, sms: Sms) -> None:
    connector = await make_connector()
    urls = [f"https://cdn.example.com/{i}.png" for i in range(10)]
    sent = _ok(await connector.send_message(sms(text=None, media=urls)))
    assert emulator.messages[sent.remote_message_id].params["MediaUrl"] == urls
    assert "Body" not in emulator.messages[sent.remote_message_id].params


# -- properties on the wire ------------------------------------------------------------------------------


async def test_every_property_reaches_the_api(emulator: TwilioEmulator, make_connector: Maker, sms: Sms) -> None:
    connector = await make_connector(StatusCallback="https://hooks.example.com/twilio/status?tenant=7")
    emulator.auto_advance = False  # no callbacks to that made-up host
    message = sms(
        ValidityPeriod=600,
        MaxPrice=0.00075,
        ProvideCallback=True,
        AttemptLimits=4,
        SmartEncoded=True,
        PersistentAction=["geo:37.787890,-122.391664|375 Beale St", "mailto:help@example.com"],
        ShortenUrls=True,
        SendAsMms=True,
        RiskCheck="disable",
        ApplicationSid="AP" + "b" * 32,
        FallbackFrom="+14155550123",
        ContentRetention="discard",
        AddressRetention="obfuscate",
        ExtraFields="TrafficType=free",
    )
    sent = _ok(await connector.send_message(message))
    params = emulator.messages[sent.remote_message_id].params
    assert params["ValidityPeriod"] == "600"
    assert params["MaxPrice"] == "0.00075"
    assert params["Attempt"] == "1"  # Twilio's meaning: attempts so far, this one included
    assert params["SmartEncoded"] == "true"
    assert params["PersistentAction"] == ["geo:37.787890,-122.391664|375 Beale St", "mailto:help@example.com"]
    assert params["StatusCallback"] == f"https://hooks.example.com/twilio/status?tenant=7&MessageId={message.id}"
    assert (params["ShortenUrls"], params["SendAsMms"], params["RiskCheck"]) == ("true", "true", "disable")
    assert (params["ApplicationSid"], params["FallbackFrom"]) == ("AP" + "b" * 32, "+14155550123")
    assert (params["ContentRetention"], params["AddressRetention"], params["TrafficType"]) == (
        "discard",
        "obfuscate",
        "free",
    )
    assert not {"AttemptLimits", "ProvideCallback", "ExtraFields"} & set(params)


async def test_a_message_may_name_its_own_status_callback(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms
) -> None:
    """Also on SimpleSms, which has no StatusCallback setting: ProvideCallback then needs the property."""
    emulator.auto_advance = False
    connector = await make_connector(TwilioChannelSchemas.SIMPLE_SMS)
    message = sms(ProvideCallback=True, StatusCallback="https://hooks.example.com/mine")
    sent = _ok(await connector.send_message(message))
    params = emulator.messages[sent.remote_message_id].params
    assert params["StatusCallback"] == f"https://hooks.example.com/mine?MessageId={message.id}"
    refused = await connector.send_message(sms(ProvideCallback=True))
    assert refused.error is not None
    assert [(i.path, i.code) for i in refused.error.issues] == [("$.properties.ProvideCallback", "REQUIRED")]
    assert "StatusCallback property or setting" in refused.error.issues[0].message
    assert emulator.create_requests == 1


@pytest.mark.parametrize(
    ("extra", "path", "code"),
    [
        ("Body=hi", "$.properties.ExtraFields", "NOT_ALLOWED"),
        (["TrafficType=free", "Nope=1"], "$.properties.ExtraFields[1]", "UNKNOWN_FIELD"),
        ("lowercase=1", "$.properties.ExtraFields", "INVALID_FORMAT"),
    ],
)
async def test_extra_fields_take_only_create_fields_the_plugin_does_not_model(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, extra: Any, path: str, code: str
) -> None:
    connector = await make_connector()
    result = await connector.send_message(sms(ExtraFields=extra))
    assert result.error is not None
    assert [(i.path, i.code) for i in result.error.issues] == [(path, code)]
    assert emulator.create_requests == 0


async def test_max_price_is_sent_with_one_warning_that_it_is_obsolete(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, caplog: pytest.LogCaptureFixture
) -> None:
    connector = await make_connector()
    with caplog.at_level("WARNING", logger="messaging_twilio_sms.connector"):
        for _ in range(3):
            _ok(await connector.send_message(sms(MaxPrice=0.5)))
    warnings = [r for r in caplog.records if "MaxPrice is obsolete" in r.getMessage()]
    assert len(warnings) == 1
    assert len(emulator.messages) == 3


async def test_provide_callback_false_sends_no_status_callback(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms
) -> None:
    connector = await make_connector(StatusCallback="https://hooks.example.com/status")
    emulator.auto_advance = False
    sent = _ok(await connector.send_message(sms(ProvideCallback=False, SmartEncoded=False)))
    params = emulator.messages[sent.remote_message_id].params
    assert "StatusCallback" not in params
    assert params["SmartEncoded"] == "false"


async def test_settings_supply_defaults_for_validity_and_price(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms
) -> None:
    connector = await make_connector(ValidityPeriod=60, MaxPrice=2)
    sent = _ok(await connector.send_message(sms()))
    params = emulator.messages[sent.remote_message_id].params
    assert (params["ValidityPeriod"], params["MaxPrice"]) == ("60", "2")


@pytest.mark.parametrize(
    "properties",
    [
        {"ValidityPeriod": 0},
        {"ValidityPeriod": 36001},
        {"ValidityPeriod": "600"},
        {"AttemptLimits": 0},
        {"SmartEncoded": "yes"},
        {"PersistentAction": 7},
        {"PersistentAction": [""]},
        {"RiskCheck": "off"},
        {"ApplicationSid": "AP123"},
        {"FallbackFrom": "4155550100"},
        {"ContentRetention": "keep"},
        {"StatusCallback": "https://bad_host.example.com/s"},
        {"MaxPrice": -1},
        {"Unknown": 1},
    ],
)
async def test_invalid_properties_fail_before_io(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, properties: dict[str, Any]
) -> None:
    connector = await make_connector()
    result = await connector.send_message(sms(**properties))
    assert result.error_code == ConnectorErrorCodes.MESSAGE_VALIDATION_FAILED
    assert result.error is not None
    assert result.error.issues
    assert all(issue.path.startswith("$.properties") for issue in result.error.issues)
    assert emulator.create_requests == 0


# -- checks before any I/O -----------------------------------------------------------------------------


@pytest.mark.parametrize("receiver", ["5551230001", "+0551230001", "+1555123000123456", "tel:+15551230001", ""])
async def test_receiver_must_be_e164(emulator: TwilioEmulator, make_connector: Maker, sms: Sms, receiver: str) -> None:
    connector = await make_connector()
    result = await connector.send_message(sms(to=receiver))
    assert result.error_code == ConnectorErrorCodes.INVALID_RECIPIENT
    assert emulator.create_requests == 0


async def test_receiver_is_required(emulator: TwilioEmulator, make_connector: Maker, sms: Sms) -> None:
    connector = await make_connector()
    result = await connector.send_message(attrs.evolve(sms(), receiver=None))
    assert result.error_code == ConnectorErrorCodes.INVALID_RECIPIENT
    assert emulator.create_requests == 0


async def test_receiver_must_be_a_phone(emulator: TwilioEmulator, make_connector: Maker, sms: Sms) -> None:
    connector = await make_connector()
    result = await connector.send_message(attrs.evolve(sms(), receiver=Endpoint.email("a@example.com")))
    assert result.error_code == ConnectorErrorCodes.INVALID_RECIPIENT
    assert emulator.create_requests == 0


@pytest.mark.parametrize("sender", ["15005550006", "+05005550006", "+1500555000612345678", "+1 415"])
async def test_a_phone_sender_must_be_e164(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, sender: str
) -> None:
    connector = await make_connector()
    result = await connector.send_message(sms(sender=sender))
    assert result.error_code == ConnectorErrorCodes.INVALID_SENDER
    assert emulator.create_requests == 0


@pytest.mark.parametrize(
    ("sender", "messages"),
    [
        ("Acme Alerts!", ["may hold only letters A-Z and a-z, digits, spaces and + - & _ (an alphanumeric sender ID)",
                          "must have at most 11 characters"]),
        ("Acme!", ["may hold only letters A-Z and a-z, digits, spaces and + - & _ (an alphanumeric sender ID)"]),
        ("AcmeAlertsXY", ["must have at most 11 characters"]),
        ("123456", ["must contain at least one letter (an alphanumeric sender ID of digits only is refused)"]),
    ],
)  # fmt: skip
async def test_an_alphanumeric_sender_breaking_a_rule_is_told_which(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, sender: str, messages: list[str]
) -> None:
    connector = await make_connector()
    result = await connector.send_message(attrs.evolve(sms(), sender=Endpoint(EndpointType.LABEL, sender)))
    assert result.error_code == ConnectorErrorCodes.INVALID_SENDER
    assert result.error is not None
    assert sorted(i.message for i in result.error.issues) == sorted(messages)
    assert {i.path for i in result.error.issues} == {"$.sender.address"}
    assert emulator.create_requests == 0


@pytest.mark.parametrize(
    "sender",
    [Endpoint(EndpointType.LABEL, "AcmeAlerts"), Endpoint(EndpointType.LABEL, "Acme & Co_1"),
     Endpoint(EndpointType.SHORT_CODE, "12345"), Endpoint(EndpointType.SHORT_CODE, "898211")],
    ids=str,
)  # fmt: skip
async def test_alphanumeric_and_short_code_senders_are_sent_as_from(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, sender: Endpoint
) -> None:
    connector = await make_connector()
    sent = _ok(await connector.send_message(attrs.evolve(sms(), sender=sender)))
    assert emulator.messages[sent.remote_message_id].params["From"] == sender.address


@pytest.mark.parametrize(
    "receiver", [Endpoint(EndpointType.LABEL, "AcmeAlerts"), Endpoint(EndpointType.SHORT_CODE, "12345")], ids=str
)
async def test_nobody_sends_to_an_alphanumeric_sender_or_a_short_code(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, receiver: Endpoint
) -> None:
    connector = await make_connector()
    result = await connector.send_message(attrs.evolve(sms(), receiver=receiver))
    assert result.error_code == ConnectorErrorCodes.INVALID_RECIPIENT
    assert emulator.create_requests == 0


@pytest.mark.parametrize("bad", ["12a45", "12", "123456789"])
async def test_a_short_code_is_3_to_8_digits(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, bad: str
) -> None:
    connector = await make_connector()
    result = await connector.send_message(attrs.evolve(sms(), sender=Endpoint(EndpointType.SHORT_CODE, bad)))
    assert result.error is not None
    assert [i.message for i in result.error.issues] == ["must be 3 to 8 digits (a short code)"]
    assert emulator.create_requests == 0


async def test_sender_is_required_without_a_messaging_service(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms
) -> None:
    connector = await make_connector()
    result = await connector.send_message(sms(sender=None))
    assert result.error_code == ConnectorErrorCodes.INVALID_SENDER
    assert emulator.create_requests == 0


@pytest.mark.parametrize("sender", [None, "+15005550006"])
async def test_a_messaging_service_sends_the_sender_too_when_one_is_named(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, sender: str | None
) -> None:
    connector = await make_connector(MessagingServiceSid=SERVICE)
    sent = _ok(await connector.send_message(sms(sender=sender)))
    params = emulator.messages[sent.remote_message_id].params
    assert params["MessagingServiceSid"] == SERVICE
    assert params.get("From") == sender  # none: the service picks a number from its pool
    assert sent.status is MessageStatus.QUEUED  # Twilio's "accepted"
    assert sent.additional_data["raw_status"] == "accepted"
    assert sent.additional_data["messaging_service_sid"] == SERVICE


async def test_body_of_1600_characters_is_sent(emulator: TwilioEmulator, make_connector: Maker, sms: Sms) -> None:
    connector = await make_connector()
    sent = _ok(await connector.send_message(sms(text="x" * 1600)))
    assert emulator.messages[sent.remote_message_id].params["Body"] == "x" * 1600
    assert sent.additional_data["segments"] == 11


@pytest.mark.parametrize(
    "content",
    [
        TextContent("x" * 1601),
        # Each part is short enough; joined (with a newline) the body is not.
        MultipartContent((TextContent("x" * 800), TextContent("y" * 800))),
        # 801 emoji: 801 characters, 1,602 UTF-16 code units (Twilio counts those).
        TextContent("\U0001f600" * 801),
    ],
    ids=["1601", "joined-parts", "utf16"],
)
async def test_body_over_1600_fails_validation_before_io(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, content: Any
) -> None:
    connector = await make_connector()
    result = await connector.send_message(attrs.evolve(sms(), content=content))
    assert result.error_code == ConnectorErrorCodes.MESSAGE_VALIDATION_FAILED
    assert result.error is not None
    assert result.error.issues
    assert emulator.create_requests == 0


async def test_eleven_media_fail_before_io(emulator: TwilioEmulator, make_connector: Maker, sms: Sms) -> None:
    connector = await make_connector()
    result = await connector.send_message(sms(media=[f"https://cdn.example.com/{i}.png" for i in range(11)]))
    assert result.error_code == ConnectorErrorCodes.MESSAGE_VALIDATION_FAILED
    assert emulator.create_requests == 0


@pytest.mark.parametrize("url", ["ftp://cdn.example.com/a.png", "file:///etc/passwd", "cdn.example.com/a.png", ""])
async def test_non_http_media_url_fails(emulator: TwilioEmulator, make_connector: Maker, sms: Sms, url: str) -> None:
    connector = await make_connector()
    result = await connector.send_message(sms(media=[url]))
    assert result.error_code == ConnectorErrorCodes.MESSAGE_VALIDATION_FAILED
    assert emulator.create_requests == 0


# -- variants -----------------------------------------------------------------------------------------------


async def test_simple_sms_sends_mms_and_needs_a_sender(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms
) -> None:
    connector = await make_connector(TwilioChannelSchemas.SIMPLE_SMS)
    no_sender = await connector.send_message(sms(sender=None))
    assert no_sender.error_code == ConnectorErrorCodes.INVALID_SENDER
    assert emulator.create_requests == 0
    sent = _ok(await connector.send_message(sms(text="Look", media=["https://cdn.example.com/a.png"])))
    assert emulator.messages[sent.remote_message_id].params["MediaUrl"] == ["https://cdn.example.com/a.png"]
    assert len(emulator.messages) == 1


async def test_simple_sms_refuses_the_messaging_service_setting(make_connector: Maker) -> None:
    connector = await make_connector(TwilioChannelSchemas.SIMPLE_SMS, initialize=False, MessagingServiceSid=SERVICE)
    result = await connector.initialize()
    assert result.error_code == ConnectorErrorCodes.INVALID_CONNECTION_SETTINGS


async def test_bulk_sms_requires_a_messaging_service(emulator: TwilioEmulator, make_connector: Maker, sms: Sms) -> None:
    without = await make_connector(TwilioChannelSchemas.BULK_SMS, initialize=False)
    result = await without.initialize()
    assert result.error_code == ConnectorErrorCodes.INVALID_CONNECTION_SETTINGS
    assert result.error is not None
    assert [i.path for i in result.error.issues] == ["$.MessagingServiceSid"]

    bulk = await make_connector(TwilioChannelSchemas.BULK_SMS, MessagingServiceSid=SERVICE)
    sent = _ok(await bulk.send_message(sms(sender=None)))
    assert emulator.messages[sent.remote_message_id].params["MessagingServiceSid"] == SERVICE


# -- odds and ends ------------------------------------------------------------------------------------------


async def test_preview_shows_the_request_without_sending(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms
) -> None:
    connector = await make_connector()
    preview = connector.preview_message(sms(text="Hi \u2603"))
    assert preview["method"] == "POST"
    assert preview["url"] == f"{emulator.base_url}/2010-04-01/Accounts/{emulator.account_sid}/Messages.json"
    assert ["Body", "Hi \u2603"] in preview["form"]
    assert (preview["encoding"], preview["segments"]) == ("UCS-2", 1)
    assert emulator.auth_token not in repr(preview)
    assert emulator.create_requests == 0


async def test_send_uses_the_shared_session_and_leaves_it_open(emulator: TwilioEmulator, sms: Sms) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        connector = TwilioSmsConnector(
            TwilioChannelSchemas.TWILIO_SMS,
            {"ApiBaseUrl": emulator.base_url, "AccountSid": emulator.account_sid, "AuthToken": emulator.auth_token},
            session=session,
        )
        async with connector:
            _ok(await connector.send_message(sms()))
        assert not session.closed
    assert len(emulator.messages) == 1


async def test_shared_session_still_gets_the_request_timeout(emulator: TwilioEmulator, sms: Sms) -> None:
    """RequestTimeout applies per request, even on a session whose own timeout is longer."""
    import aiohttp

    emulator.inject("timeout")
    emulator.fault_delay = 0.6
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        connector = TwilioSmsConnector(
            TwilioChannelSchemas.TWILIO_SMS,
            {
                "ApiBaseUrl": emulator.base_url,
                "AccountSid": emulator.account_sid,
                "AuthToken": emulator.auth_token,
                "RequestTimeout": 0.2,
            },
            session=session,
        )
        async with connector:
            result = await connector.send_message(sms())
    assert result.error_code == TwilioErrorCodes.NETWORK_ERROR
    assert result.error is not None
    assert result.error.outcome is FailureOutcome.MAY_HAVE_BEEN_SENT


async def test_sending_after_shutdown_raises(make_connector: Maker, sms: Sms) -> None:
    from messaging_core import ConnectorStateError

    connector = await make_connector()
    await connector.shutdown()
    with pytest.raises(ConnectorStateError):
        await connector.send_message(sms())
