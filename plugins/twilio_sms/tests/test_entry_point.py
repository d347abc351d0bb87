"""The installed distribution's entry point makes ``twilio_sms`` appear in ``ChannelRegistry.discover()``."""

from __future__ import annotations

from importlib import metadata

import pytest

from messaging_core import ChannelRegistry, ConfigurationError, ConnectorState
from messaging_twilio_sms import TwilioChannelSchemas, TwilioSmsConnector

VARIANTS = {"TwilioSms", "SimpleSms", "NotificationSms", "BulkSms"}


def test_the_distribution_declares_the_entry_point() -> None:
    (entry_point,) = [ep for ep in metadata.entry_points(group="messaging_core") if ep.name == "twilio_sms"]
    assert entry_point.value == "messaging_twilio_sms.plugin"
    assert entry_point.dist is not None
    assert entry_point.dist.name == "pluggable-messaging-twilio-sms"
    module = entry_point.load()
    assert hasattr(module, "register_connectors")
    assert hasattr(module, "register_emulators")


def test_discover_lists_the_channel_with_its_variants(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESSAGING_BLOCK_PLUGINS", raising=False)
    registry = ChannelRegistry.discover()
    assert [e for e in registry.load_errors if e.name == "twilio_sms"] == []
    assert "twilio_sms" in registry.host.plugin_names()
    info = registry.channel("twilio_sms")
    assert info.name == "twilio_sms"
    assert info.plugin == "twilio_sms"
    assert info.connector_class is TwilioSmsConnector
    assert info.master_schema is TwilioChannelSchemas.TWILIO_SMS
    assert set(info.variants) == VARIANTS
    assert info.master_variant == "TwilioSms"
    assert "twilio_sms" in [channel.name for channel in registry.channels()]
    assert "twilio_sms" in registry.emulators()


def test_blocked_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESSAGING_BLOCK_PLUGINS", "some_other_plugin, twilio_sms")
    registry = ChannelRegistry.discover()
    assert "twilio_sms" not in [channel.name for channel in registry.channels()]
    assert "twilio_sms" not in registry.host.plugin_names()
    assert "twilio_sms" not in registry.emulators()
    with pytest.raises(ConfigurationError, match="twilio_sms"):
        registry.channel("twilio_sms")
    # The built-in channel is unaffected.
    assert "memory" in [channel.name for channel in registry.channels()]


def test_blocked_by_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESSAGING_BLOCK_PLUGINS", raising=False)
    assert "twilio_sms" not in [c.name for c in ChannelRegistry.discover(blocked=["twilio_sms"]).channels()]


@pytest.mark.usefixtures("no_twilio_env")
async def test_registry_builds_a_connector_from_a_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESSAGING_BLOCK_PLUGINS", raising=False)
    registry = ChannelRegistry.discover()
    spec = {
        "channel": "twilio_sms",
        "schema": "BulkSms",
        "parameters": {
            "AccountSid": "AC" + "0" * 32,
            "AuthToken": "spec-auth-token",
            "MessagingServiceSid": "MG" + "0" * 32,
        },
    }
    connector = registry.create_connector(spec, name="campaigns")
    assert isinstance(connector, TwilioSmsConnector)
    assert connector.schema is TwilioChannelSchemas.BULK_SMS
    assert connector.name == "campaigns"
    async with connector:
        assert connector.state is ConnectorState.READY
    with pytest.raises(ConfigurationError, match="MessagingServiceSid"):
        registry.create_connector({**spec, "parameters": {k: v for k, v in spec["parameters"].items() if k[0] == "A"}})
