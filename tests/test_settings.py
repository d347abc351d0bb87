"""Connection settings: redaction, defaults, ``${VAR}`` interpolation and the environment plugin."""

from __future__ import annotations

import logging
import types

import attrs
import pytest

from messaging_core import (
    ChannelRegistry,
    ConfigurationError,
    ConnectionSettings,
    ConnectorErrorCodes,
    ConnectorState,
)
from messaging_core.config import ConnectorSpec
from messaging_core.default_plugins.memory import MemoryConnector
from messaging_core.settings import interpolate_env

SECRET = "acme-secret-token-42"


# -- ConnectionSettings ------------------------------------------------------------------------------


def test_settings_are_a_read_only_mapping() -> None:
    settings = ConnectionSettings({"A": 1}).add_parameter("B", "x")
    assert dict(settings) == {"A": 1, "B": "x"}
    assert len(settings) == 2
    assert settings["B"] == "x"
    assert "A" in settings
    assert settings == {"A": 1, "B": "x"}
    assert settings == ConnectionSettings({"A": 1, "B": "x"})
    assert settings != {"A": 1}
    with pytest.raises(TypeError):
        hash(settings)


def test_repr_and_str_hide_sensitive_values() -> None:
    settings = ConnectionSettings({"AccountId": "AC0123abcd"}, sensitive=frozenset({"Key"}))
    settings.add_parameter("Key", "k-123456789").add_parameter("Pin", "9876543210", sensitive=True)
    settings.add_parameter("ApiSecret", "s-123456789").add_parameter("password", "p-123456789")
    for text in (repr(settings), str(settings), f"{settings}"):
        for secret in ("k-123456789", "9876543210", "s-123456789", "p-123456789"):
            assert secret not in text
        assert "AC0123abcd" in text  # not sensitive: useful when debugging
    assert settings.redacted() == {
        "AccountId": "AC0123abcd",
        "Key": "***",
        "Pin": "***",
        "ApiSecret": "***",
        "password": "***",
    }


def test_redacted_with_a_schema_hides_its_sensitive_parameters(acme: types.SimpleNamespace) -> None:
    settings = ConnectionSettings({"AuthToken": SECRET, "Region": "ie1"})
    assert settings.redacted(acme.schema) == {"AuthToken": "***", "Region": "ie1"}


def test_connector_settings_hide_schema_secrets_whatever_the_caller_passed(acme: types.SimpleNamespace) -> None:
    # A ConnectionSettings built without marking AuthToken sensitive, and a plain mapping.
    for given in (ConnectionSettings(acme.settings), dict(acme.settings)):
        connector = acme.connector_class(acme.schema, given)
        assert SECRET not in repr(connector.settings)
        assert SECRET not in repr(connector)
        assert connector.settings["AuthToken"] == SECRET


def test_resolved_applies_defaults_without_overriding(acme: types.SimpleNamespace) -> None:
    settings = ConnectionSettings({**acme.settings, "Region": "ie1"})
    assert settings.resolved(acme.schema) == {
        **acme.settings,
        "Region": "ie1",
        "ValidityPeriod": 3600,
        "Sandbox": False,
    }
    assert "ValidityPeriod" not in settings  # resolved() returns new values; the settings stay as given


def test_resolved_asks_the_resolver_for_every_parameter(acme: types.SimpleNamespace) -> None:
    asked: list[tuple[str, object]] = []

    def resolve(schema: object, name: str, value: object) -> object:
        asked.append((name, value))
        return "AC99999999" if name == "AccountId" else None

    values = ConnectionSettings({"AccountId": "${X}"}).resolved(acme.schema, resolve)
    assert [name for name, _ in asked] == ["AccountId", "AuthToken", "ValidityPeriod", "Region", "Sandbox"]
    assert asked[0] == ("AccountId", "${X}")
    assert values["AccountId"] == "AC99999999"
    assert "AuthToken" not in values


def test_an_unresolved_reference_is_an_error_not_a_value(acme: types.SimpleNamespace) -> None:
    """Without an environment plugin (a connector built without a registry) ``${X}`` is refused, not sent."""
    with pytest.raises(ConfigurationError, match=r"AuthToken: \$\{SECRET_TOKEN\} was not resolved"):
        ConnectionSettings({"AccountId": "AC1", "AuthToken": "${SECRET_TOKEN}"}).resolved(acme.schema)


async def test_a_connector_without_a_registry_refuses_an_unresolved_reference() -> None:
    connector = MemoryConnector(ChannelRegistry().schema("memory"), {"Mailbox": "${MAILBOX_NAME}"})
    result = await connector.initialize()
    assert result.error_code == ConnectorErrorCodes.INVALID_CONNECTION_SETTINGS
    assert "MAILBOX_NAME" in (result.error_message or "")


# -- ${VAR} interpolation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${TOKEN}", "t0k"),
        ("Bearer ${TOKEN}!", "Bearer t0k!"),
        ("${MISSING:-fallback}", "fallback"),
        ("${MISSING:-}", ""),
        ("${TOKEN:-unused}", "t0k"),
        ("${EMPTY:-unused}", ""),  # set but empty is set
        ("no reference", "no reference"),
        ("$TOKEN and {TOKEN}", "$TOKEN and {TOKEN}"),
    ],
)
def test_interpolation(text: str, expected: str) -> None:
    assert interpolate_env(text, {"TOKEN": "t0k", "EMPTY": ""}) == expected


def test_missing_variable_names_the_variable_and_where() -> None:
    with pytest.raises(ConfigurationError) as raised:
        interpolate_env("${ACME_NOPE}", {}, where="$.connectors.sms.parameters.AuthToken")
    assert str(raised.value) == "$.connectors.sms.parameters.AuthToken: environment variable ACME_NOPE is not set"


def test_interpolation_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESSAGING_TEST_VALUE", "from-env")
    assert interpolate_env("${MESSAGING_TEST_VALUE}") == "from-env"


# -- the environment plugin ----------------------------------------------------------------------------


async def test_environment_plugin_fills_missing_parameters(
    acme_registry: ChannelRegistry, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("ACME_ACCOUNT_ID", "AC0123abcd")
    clean_env.setenv("ACME_AUTH_TOKEN", SECRET)
    clean_env.setenv("ACME_VALIDITY_PERIOD", "14400")
    clean_env.setenv("ACME_SANDBOX", "true")
    connector = acme_registry.create_connector({"channel": "acme_sms"})
    result = await connector.initialize()
    assert result.is_success, result.error
    assert connector.parameters == {
        "AccountId": "AC0123abcd",
        "AuthToken": SECRET,
        "ValidityPeriod": 14400,  # environment text converted to the parameter's type
        "Region": "us1",
        "Sandbox": True,
    }
    await connector.shutdown()


async def test_given_values_win_over_the_environment(
    acme_registry: ChannelRegistry, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("ACME_ACCOUNT_ID", "AC0000ffff")
    clean_env.setenv("ACME_AUTH_TOKEN", "from-the-environment")
    clean_env.setenv("ACME_REGION", "ie1")
    connector = acme_registry.create_connector(
        {"channel": "acme_sms", "parameters": {"AccountId": "AC0123abcd", "AuthToken": "${ACME_AUTH_TOKEN}"}}
    )
    async with connector:
        assert connector.parameters["AccountId"] == "AC0123abcd"
        assert connector.parameters["AuthToken"] == "from-the-environment"  # ${VAR} expanded
        assert connector.parameters["Region"] == "ie1"


async def test_environment_text_that_does_not_fit_the_type_is_reported(
    acme_registry: ChannelRegistry, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("ACME_VALIDITY_PERIOD", "four hours")
    with pytest.raises(ConfigurationError) as raised:
        acme_registry.create_connector({"channel": "acme_sms", "parameters": dict(ACME_OK)})
    assert [(i.path, i.code) for i in raised.value.issues] == [("$.parameters.ValidityPeriod", "INVALID_TYPE")]
    assert "four hours" not in str(raised.value)
    # The settings never named ValidityPeriod: the problem says where the value came from.
    assert "(not in the settings: from environment variable ACME_VALIDITY_PERIOD)" in raised.value.issues[0].message

    info = acme_registry.channel("acme_sms")
    connector = info.connector_class(info.master_schema, dict(ACME_OK), plugins=acme_registry.host)
    result = await connector.initialize()
    assert result.error_code == ConnectorErrorCodes.INVALID_CONNECTION_SETTINGS
    assert result.error is not None
    assert [(i.path, i.code) for i in result.error.issues] == [("$.ValidityPeriod", "INVALID_TYPE")]
    assert "four hours" not in result.error.message
    assert "from environment variable ACME_VALIDITY_PERIOD" in result.error.message

    written = acme_registry.spec_issues(
        ConnectorSpec.from_mapping("sms", {"channel": "acme_sms", "parameters": {**ACME_OK, "ValidityPeriod": "x"}})
    )
    assert [i.message for i in written] == ["must be of type integer (got string)"]  # given in the settings


ACME_OK = {"AccountId": "AC0123abcd", "AuthToken": SECRET}


async def test_missing_credentials_are_reported_as_such(
    acme_registry: ChannelRegistry, clean_env: pytest.MonkeyPatch
) -> None:
    info = acme_registry.channel("acme_sms")
    connector = info.connector_class(info.master_schema, {}, plugins=acme_registry.host)
    result = await connector.initialize()
    assert result.error_code == ConnectorErrorCodes.MISSING_CREDENTIALS
    assert result.error is not None
    assert {i.path for i in result.error.issues} == {"$.AccountId", "$.AuthToken"}
    assert connector.state is ConnectorState.ERROR


async def test_a_reference_to_a_missing_variable_fails_initialize(
    acme: types.SimpleNamespace, clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    connector = acme.connector_class(
        acme.schema, {"AccountId": "AC0123abcd", "AuthToken": "${ACME_UNSET_TOKEN}"}, plugins=ChannelRegistry().host
    )
    with caplog.at_level(logging.DEBUG):
        result = await connector.initialize()
    assert result.error_code == ConnectorErrorCodes.INVALID_CONNECTION_SETTINGS
    assert result.error_message == "parameter AuthToken: environment variable ACME_UNSET_TOKEN is not set"
    assert connector.state is ConnectorState.ERROR


@pytest.mark.parametrize(
    ("parameter", "variable"),
    [
        ("AuthToken", "TWILIO_AUTH_TOKEN"),
        ("AccountSid", "TWILIO_ACCOUNT_SID"),
        ("APIKeySid", "TWILIO_API_KEY_SID"),
        ("messaging-service", "TWILIO_MESSAGING_SERVICE"),
    ],
)
def test_environment_variable_names(acme: types.SimpleNamespace, parameter: str, variable: str) -> None:
    from messaging_core.default_plugins.environment import environment_variable

    assert environment_variable(attrs.evolve(acme.schema, provider="twilio"), parameter) == variable
