"""The channel registry: channels, variants, registration checks, connector creation."""

from __future__ import annotations

import re
import types
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
import pytest

from messaging_core import (
    Capability,
    ChannelConnector,
    ChannelRegistry,
    ChannelSchema,
    ConfigurationError,
    ConnectorSpec,
    ConnectorState,
    PluginError,
    PluginHost,
    hookimpl,
)


def _registering(*classes: Any) -> object:
    class Plugin:
        @hookimpl
        def register_connectors(self, register: Callable[[type[ChannelConnector]], None]) -> None:
            for cls in classes:
                register(cls)

    return Plugin()


def _registry_with(name: str, *classes: Any) -> ChannelRegistry:
    registry = ChannelRegistry()
    registry.host.register(_registering(*classes), name=name)
    return registry


# -- listing -------------------------------------------------------------------------------------------


def test_channels_are_listed_with_their_plugin_and_variants(acme_registry: ChannelRegistry) -> None:
    channels = acme_registry.channels()
    assert [c.name for c in channels] == ["acme_sms", "memory"]
    acme, memory = channels
    assert memory.plugin == "memory"
    assert list(memory.variants) == ["Memory"]
    assert memory.master_variant == "Memory"
    assert acme.capabilities == acme.master_schema.capabilities
    assert list(acme.variants) == ["Full", "TextOnly"]
    assert acme.master_variant == "Full"
    assert Capability.MEDIA_ATTACHMENTS not in acme.variants["TextOnly"].capabilities


def test_a_class_without_variants_gets_a_default_one(acme: types.SimpleNamespace) -> None:
    class Plain(acme.connector_class):  # type: ignore[misc,name-defined]
        channel_name: ClassVar[str] = "plain"
        schema_variants: ClassVar[dict[str, ChannelSchema]] = {}

    info = _registry_with("plain-plugin", Plain).channel("plain")
    assert info.variants == {"default": acme.schema}
    assert info.master_variant == "default"


def test_schema_by_channel_and_variant(acme_registry: ChannelRegistry, acme: types.SimpleNamespace) -> None:
    assert acme_registry.schema("acme_sms") is acme.schema
    assert acme_registry.schema("acme_sms", "Full") is acme.schema
    assert acme_registry.schema("acme_sms", "TextOnly") is acme.text_only


def test_unknown_channel_names_the_installed_ones(acme_registry: ChannelRegistry) -> None:
    with pytest.raises(ConfigurationError) as raised:
        acme_registry.schema("twillio_sms")
    assert str(raised.value) == "unknown channel 'twillio_sms' (installed: acme_sms, memory)"
    with pytest.raises(ConfigurationError, match=r"installed: none"):
        ChannelRegistry(builtins=False).channel("memory")


def test_unknown_variant_names_the_known_ones(acme_registry: ChannelRegistry) -> None:
    with pytest.raises(ConfigurationError) as raised:
        acme_registry.schema("acme_sms", "SimpleSms")
    assert str(raised.value) == "channel 'acme_sms' has no schema variant 'SimpleSms' (variants: Full, TextOnly)"


# -- registration checks -------------------------------------------------------------------------------


def test_a_variant_that_is_not_a_restriction_names_the_plugin(acme: types.SimpleNamespace) -> None:
    looser = attrs.evolve(
        acme.schema,
        display_name="Looser",
        capabilities=acme.schema.capabilities | Capability.TEMPLATES,
        max_text_length=1600,
    )

    class Loose(acme.connector_class):  # type: ignore[misc,name-defined]
        channel_name: ClassVar[str] = "loose"
        schema_variants: ClassVar[dict[str, ChannelSchema]] = {"Full": acme.schema, "Looser": looser}

    registry = _registry_with("acme-loose-plugin", Loose)
    assert [c.name for c in registry.channels()] == ["memory"]  # the others still work
    (failure,) = registry.load_errors
    assert failure.name == "acme-loose-plugin"
    assert failure.error.startswith("channel 'loose': ")
    assert "variant 'Looser': capabilities not in the base: ['TEMPLATES']" in failure.error
    assert "variant 'Looser': max_text_length higher than the base's 160" in failure.error
    with pytest.raises(ConfigurationError, match=r"unknown channel 'loose'.*acme-loose-plugin"):
        registry.channel("loose")
    strict = ChannelRegistry(host=PluginHost(strict=True))
    strict.host.register(_registering(Loose), name="acme-loose-plugin")
    with pytest.raises(PluginError, match="plugin 'acme-loose-plugin'"):
        strict.channels()


def test_duplicate_channel_names_name_both_plugins(acme: types.SimpleNamespace) -> None:
    registry = ChannelRegistry()
    registry.host.register(acme.plugin(), name="acme")
    registry.host.register(_registering(acme.connector_class), name="acme-copy")
    assert [c.name for c in registry.channels()] == ["memory"]  # neither is acme_sms: which one is meant?
    assert sorted((f.name, f.error) for f in registry.load_errors) == [
        ("acme", "channel 'acme_sms' is registered by more than one plugin"),
        ("acme-copy", "channel 'acme_sms' is registered by more than one plugin"),
    ]


@pytest.mark.parametrize(
    ("registered", "words"),
    [
        (object, "which is not a ChannelConnector subclass"),
        ("acme", "which is not a ChannelConnector subclass"),
    ],
)
def test_registering_something_else_names_the_plugin(registered: Any, words: str) -> None:
    registry = _registry_with("odd-plugin", registered)
    assert [c.name for c in registry.channels()] == ["memory"]
    (failure,) = registry.load_errors
    assert failure.name == "odd-plugin"
    assert re.fullmatch(rf"registered .* {words}", failure.error)


def test_class_attributes_are_checked(acme: types.SimpleNamespace) -> None:
    class Nameless(acme.connector_class):  # type: ignore[misc,name-defined]
        channel_name: ClassVar[str] = ""

    class Schemaless(acme.connector_class):  # type: ignore[misc,name-defined]
        channel_name: ClassVar[str] = "schemaless"
        master_schema = {"provider": "x"}

    for plugin, cls, error in (
        ("p1", Nameless, "Nameless.channel_name must be a non-empty string"),
        ("p2", Schemaless, "Schemaless.master_schema must be a ChannelSchema"),
    ):
        registry = _registry_with(plugin, cls)
        registry.channels()
        assert [(f.name, f.error) for f in registry.load_errors] == [(plugin, error)]


def test_a_register_connectors_that_raises_names_the_plugin() -> None:
    class Broken:
        @hookimpl
        def register_connectors(self, register: Callable[[type[ChannelConnector]], None]) -> None:
            raise ImportError("missing optional dependency")

    registry = ChannelRegistry()
    registry.host.register(Broken(), name="broken-plugin")
    assert [c.name for c in registry.channels()] == ["memory"]
    assert [(f.name, f.error) for f in registry.load_errors] == [
        ("broken-plugin", "failed in register_connectors: missing optional dependency")
    ]


# -- creating connectors -------------------------------------------------------------------------------


def test_create_connector_from_a_mapping(acme_registry: ChannelRegistry, acme: types.SimpleNamespace) -> None:
    connector = acme_registry.create_connector(
        {"channel": "acme_sms", "schema": "TextOnly", "parameters": acme.settings}, name="sms"
    )
    assert isinstance(connector, acme.connector_class)
    assert connector.schema is acme.text_only
    assert connector.name == "sms"
    assert connector.state is ConnectorState.UNINITIALIZED  # nothing connected yet
    assert connector.plugins is acme_registry.host
    assert "acme-secret-token-42" not in repr(connector.settings)
    assert acme_registry.create_connector({"channel": "memory"}).name == "memory"
    assert acme_registry.create_connector({"channel": "memory", "name": "inbox"}).name == "inbox"


def test_create_connector_from_a_spec(acme_registry: ChannelRegistry, acme: types.SimpleNamespace) -> None:
    spec = ConnectorSpec("primary", "acme_sms", "Full", acme.settings)
    connector = acme_registry.create_connector(spec)
    assert (connector.name, connector.schema) == ("primary", acme.schema)
    assert connector.settings == acme.settings


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"schema": "Full"}, "connector spec: 'channel' is required"),
        ({"channel": "memory", "paramters": {}}, "connector spec: unknown keys ['paramters']"),
    ],
)
def test_malformed_specs(acme_registry: ChannelRegistry, spec: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        acme_registry.create_connector(spec)
    assert str(raised.value) == words


def test_create_connector_lists_every_parameter_problem(acme_registry: ChannelRegistry) -> None:
    with pytest.raises(ConfigurationError) as raised:
        acme_registry.create_connector(
            {
                "channel": "acme_sms",
                "parameters": {"AccountId": "nope", "AuthToken": "short", "ValidityPeriod": "14400", "Colour": 1},
            },
            name="sms",
        )
    assert [(i.path, i.code) for i in raised.value.issues] == [
        ("$.parameters.AccountId", "INVALID_FORMAT"),
        ("$.parameters.AuthToken", "TOO_SHORT"),
        ("$.parameters.Colour", "UNKNOWN_FIELD"),
        ("$.parameters.ValidityPeriod", "INVALID_TYPE"),
    ]
    assert str(raised.value).startswith("connector 'sms': 4 problem(s)\n  - $.parameters.AccountId: ")
    assert "short" not in str(raised.value)


def test_unknown_channel_and_variant_in_a_spec(acme_registry: ChannelRegistry) -> None:
    issues = acme_registry.spec_issues(ConnectorSpec("x", "pigeon"), root="$.connectors.x")
    assert [(i.path, i.code) for i in issues] == [("$.connectors.x.channel", "NOT_ALLOWED")]
    assert "installed: acme_sms, memory" in issues[0].message
    issues = acme_registry.spec_issues(ConnectorSpec("x", "acme_sms", "Nope"))
    assert [(i.path, i.code) for i in issues] == [("$.schema", "NOT_ALLOWED")]
