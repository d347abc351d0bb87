"""``TwilioSettings``: one typed field per parameter of the master schema, the secrets out of sight.

``initialize()`` structures it once from the validated parameters; before that the connector
answers from a best guess at the raw settings (``provisional_settings``).
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
from cattrs.errors import ClassValidationError

from messaging_core import ChannelRegistry, DataType, Message, MessageBuilder, ParameterSpec
from messaging_twilio_sms import TwilioChannelSchemas, TwilioSettings, TwilioSmsConnector
from messaging_twilio_sms.emulator import TwilioEmulator
from messaging_twilio_sms.settings import parameter_name, provisional_settings, structure_settings

Maker = Callable[..., Awaitable[TwilioSmsConnector]]

MASTER = TwilioChannelSchemas.TWILIO_SMS
ACCOUNT = "AC" + "1" * 32
SUBACCOUNT = "AC" + "3" * 32
SERVICE = "MG" + "2" * 32
FIELDS = {parameter_name(f.name): f for f in attrs.fields(TwilioSettings)}
_PYTHON_TYPES = {DataType.STRING: str, DataType.INTEGER: int, DataType.NUMBER: float, DataType.BOOLEAN: bool}


# -- the class and the schema cannot drift apart ---------------------------------------------------------


def test_every_parameter_of_the_master_schema_has_a_field_and_every_field_a_parameter() -> None:
    assert set(FIELDS) == {spec.name for spec in MASTER.parameters}


@pytest.mark.parametrize("spec", MASTER.parameters, ids=lambda spec: spec.name)
def test_each_field_has_its_parameters_type_default_and_secrecy(spec: ParameterSpec) -> None:
    field = FIELDS[spec.name]
    python_type: Any = _PYTHON_TYPES[spec.data_type]
    if spec.repeated:
        expected_type, expected_default = tuple[python_type, ...], ()
    elif spec.required:
        expected_type, expected_default = python_type, attrs.NOTHING
    elif spec.default is not None:
        expected_type, expected_default = python_type, spec.default
    else:
        expected_type, expected_default = python_type | None, None
    assert typing.get_type_hints(TwilioSettings)[field.name] == expected_type
    assert field.default == expected_default
    assert field.repr is not spec.sensitive


def test_repr_shows_no_secret() -> None:
    settings = TwilioSettings(
        account_sid=ACCOUNT, auth_token="the-auth-token", api_key_sid="SK" + "4" * 32, api_key_secret="the-key-secret"
    )
    for text in (repr(settings), str(settings)):
        assert "the-auth-token" not in text
        assert "the-key-secret" not in text
        assert ACCOUNT in text  # the rest is shown


def test_a_parameter_without_a_field_fails_loudly() -> None:
    with pytest.raises(ClassValidationError):
        structure_settings({"AccountSid": ACCOUNT, "AuthToken": "token", "NewTwilioParameter": 1})


# -- structured once, at initialize ----------------------------------------------------------------------


async def test_initialize_structures_the_validated_parameters_once(
    emulator: TwilioEmulator, make_connector: Maker
) -> None:
    connector = await make_connector(
        MessagingServiceSid=SERVICE, SubaccountSids=[SUBACCOUNT], MaxPrice=1, RequestTimeout=7
    )
    settings = connector.twilio_settings
    assert settings == TwilioSettings(
        account_sid=emulator.account_sid,
        auth_token=emulator.auth_token,
        api_base_url=emulator.base_url,
        messaging_service_sid=SERVICE,
        subaccount_sids=(SUBACCOUNT,),
        max_price=1.0,
        request_timeout=7.0,
    )
    assert connector.twilio_settings is settings


async def test_a_parameter_the_variant_lacks_keeps_its_default(make_connector: Maker) -> None:
    connector = await make_connector(TwilioChannelSchemas.SIMPLE_SMS)
    assert connector.twilio_settings.status_callback is None
    assert connector.twilio_settings.subaccount_sids == ()


# -- before initialize -----------------------------------------------------------------------------------


def _text(sender: str | None = None) -> Message:
    builder = MessageBuilder().with_phone_receiver("+15551230001").with_text_content("hi")
    if sender is not None:
        builder.with_phone_sender(sender)
    return builder.build()


def test_before_initialize_the_connector_answers_from_the_raw_settings() -> None:
    connector = TwilioSmsConnector(
        MASTER,
        {
            "MessagingServiceSid": SERVICE,
            "MaxConcurrency": 4,
            "RequestTimeout": 7,
            "MessagesPerSecond": 5,
            "StatusCallback": "https://hooks.example.com/status",
        },
    )
    message = _text()
    assert connector.validate_message(message) == []  # the Messaging Service stands in for the sender
    assert connector.batch_concurrency() == 4
    assert connector.batch_rate() == 5.0
    assert connector.send_timeout() == 7.0
    assert connector.rate_limit_key(message) == SERVICE
    assert connector.send_cost(message) == 1
    form = dict(connector.preview_message(message)["form"])
    assert form["MessagingServiceSid"] == SERVICE
    assert form["ValidityPeriod"] == "14400"  # the schema's default
    assert form["StatusCallback"] == f"https://hooks.example.com/status?MessageId={message.id}"


def test_before_initialize_defaults_stand_in_for_values_of_the_wrong_type() -> None:
    raw = {"MaxConcurrency": "${CONCURRENCY}", "RequestTimeout": "soon", "SubaccountSids": [7], "Unknown": 1}
    connector = TwilioSmsConnector(MASTER, raw)
    assert connector.batch_concurrency() == 32
    assert connector.send_timeout() == 15.0
    assert connector.batch_rate() is None
    assert connector.rate_limit_key(_text("+15005550006")) == "+15005550006"
    assert [issue.path for issue in connector.validate_message(_text())] == ["$.sender"]
    settings = connector.twilio_settings
    assert (settings.account_sid, settings.auth_token, settings.subaccount_sids) == ("", None, ())


def test_before_initialize_a_reference_counts_as_given() -> None:
    # Resolved at initialize; until then a Messaging Service is configured, so no sender is required.
    settings = provisional_settings({"MessagingServiceSid": "${TWILIO_MESSAGING_SERVICE_SID}"}, MASTER)
    assert settings.messaging_service_sid == "${TWILIO_MESSAGING_SERVICE_SID}"


@pytest.mark.usefixtures("no_twilio_env")
async def test_initialize_replaces_the_guess_with_the_resolved_settings(
    emulator: TwilioEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_MAX_CONCURRENCY", "4")
    monkeypatch.setenv("SERVICE_SID", SERVICE)
    parameters = {
        "AccountSid": emulator.account_sid,
        "AuthToken": emulator.auth_token,
        "ApiBaseUrl": emulator.base_url,
        "MessagingServiceSid": "${SERVICE_SID}",
    }
    registry = ChannelRegistry.discover(blocked=[])
    connector = registry.create_connector({"channel": "twilio_sms", "parameters": parameters})
    assert isinstance(connector, TwilioSmsConnector)
    assert connector.batch_concurrency() == 32  # the environment is read at initialize
    assert connector.twilio_settings.messaging_service_sid == "${SERVICE_SID}"
    async with connector:
        assert connector.batch_concurrency() == 4
        assert connector.rate_limit_key(_text()) == SERVICE
