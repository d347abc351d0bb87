"""Channel aliases: other names of a channel (``channel_aliases``), wherever a channel is named.

Through the registry (lookups, configurations, the problems an ambiguous alias makes) and through
the CLI: ``messaging channels`` shows them, ``messaging emulator ALIAS`` runs the channel's emulator,
and a configuration naming an alias works in ``messaging demo``. The installed Twilio plugin
declares ``channel_aliases = ("twilio",)`` on ``TwilioSmsConnector``; ``messaging emulator twilio``
runs in ``test_cli_subprocess.py``.
"""

from __future__ import annotations

import io
import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from messaging_core import ChannelConnector, ChannelRegistry, ConfigurationError, hookimpl
from messaging_core.cli import cli
from messaging_core.cli.demo import run_demo
from messaging_twilio_sms import TwilioSmsConnector

REPO = Path(__file__).resolve().parent.parent


def _plugin(*classes: type[ChannelConnector]) -> types.SimpleNamespace:
    @hookimpl
    def register_connectors(register: Callable[[type[ChannelConnector]], None]) -> None:
        for cls in classes:
            register(cls)

    return types.SimpleNamespace(register_connectors=register_connectors)


def _channel(base: type[ChannelConnector], name: str, aliases: Any) -> type[ChannelConnector]:
    namespace: dict[str, Any] = {"channel_name": name, "channel_aliases": aliases}
    return type(f"{name.title()}Connector", (base,), namespace)


def test_an_alias_names_the_channel_in_lookups_and_configurations(acme: types.SimpleNamespace) -> None:
    cls = _channel(acme.connector_class, "acme_sms", ("acme", "acme_legacy"))
    registry = ChannelRegistry(plugins=[_plugin(cls)])
    info = registry.channel("acme")
    assert (info.name, info.aliases) == ("acme_sms", ("acme", "acme_legacy"))
    assert registry.channel_name("acme_legacy") == "acme_sms"
    assert registry.channel_name("nope") == "nope"
    assert registry.schema("acme", "TextOnly") == acme.text_only
    connector = registry.create_connector({"channel": "acme", "schema": "TextOnly", "parameters": acme.settings})
    assert (type(connector), connector.channel_name) == (cls, "acme_sms")
    assert [i.name for i in registry.channels()] == ["acme_sms", "memory"], "each channel listed once"
    assert registry.load_errors == []


def test_an_alias_that_could_mean_two_channels_is_dropped_and_reported(acme: types.SimpleNamespace) -> None:
    first = _channel(acme.connector_class, "acme_sms", ("acme", "memory"))
    second = _channel(acme.connector_class, "acme_mms", ("acme", "mms"))
    registry = ChannelRegistry(plugins=[_plugin(first), _plugin(second)])
    assert registry.channel("acme_sms").aliases == ()
    assert registry.channel("mms").name == "acme_mms"
    assert registry.channel_name("memory") == "memory", "an alias never hides another channel's name"
    with pytest.raises(ConfigurationError, match="unknown channel 'acme'"):
        registry.channel("acme")
    errors = sorted(failure.error for failure in registry.load_errors)
    assert errors == [
        "alias 'acme' is declared by more than one channel",
        "alias 'acme' is declared by more than one channel",
        "alias 'memory' of channel 'acme_sms' is the name of another channel",
    ]


@pytest.mark.parametrize("aliases", [["acme"], ("",), ("acme_sms",), (7,)])
def test_a_malformed_alias_declaration_is_the_plugins_problem(acme: types.SimpleNamespace, aliases: Any) -> None:
    registry = ChannelRegistry(plugins=[_plugin(_channel(acme.connector_class, "acme_sms", aliases))])
    with pytest.raises(ConfigurationError, match="unknown channel 'acme_sms'"):
        registry.channel("acme_sms")
    (failure,) = registry.load_errors
    assert "channel_aliases must be a tuple of non-empty names other than 'acme_sms'" in failure.error


# -- through the CLI, with the Twilio plugin's alias ---------------------------------------------------------


def test_the_twilio_plugin_declares_its_alias() -> None:
    assert TwilioSmsConnector.channel_aliases == ("twilio",)
    assert ChannelRegistry.discover().channel_name("twilio") == "twilio_sms"


def test_messaging_channels_shows_the_aliases() -> None:
    result = CliRunner().invoke(cli, ["channels"], env={"COLUMNS": "200"}, prog_name="messaging")
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.output.splitlines() if "twilio_sms" in line]
    assert re.search(r"twilio_sms\s+│\s+twilio\s+│", row), row
    header = next(line for line in result.output.splitlines() if "channel" in line and "plugin" in line)
    assert re.search(r"channel\s+┃\s+aliases\s+┃\s+plugin", header), header


async def test_the_demo_runs_a_configuration_that_names_the_alias(tmp_path: Path) -> None:
    config = tmp_path / "messaging.toml"
    text = (REPO / "examples" / "messaging.toml").read_text(encoding="utf-8")
    config.write_text(text.replace('channel = "twilio_sms"', 'channel = "twilio"'), encoding="utf-8")
    buffer = io.StringIO()
    ok = await run_demo(ChannelRegistry.discover(), config, console=Console(file=buffer, width=200), bulk=3)
    assert ok, buffer.getvalue()
