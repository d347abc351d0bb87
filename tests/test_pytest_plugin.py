"""The pytest plugin (entry point ``pytest11``): its fixtures, and that it stays cheap to import."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

import pytest

from messaging_core import ChannelConnector, ChannelRegistry, ConnectorState, MessageBuilder
from messaging_core.testing import HookRecorder


def test_the_plugin_is_declared_as_an_entry_point() -> None:
    plugins = {ep.name: ep.value for ep in metadata.entry_points(group="pytest11")}
    assert plugins["messaging_core"] == "messaging_core.testing.pytest_plugin"


def test_importing_the_plugin_imports_nothing_beyond_the_core() -> None:
    # pytest and pytest-asyncio are loaded in any pytest run; the core package is what the entry
    # point's parent package costs. The plugin itself must add no more than its own two modules
    # (the conformance suite is imported on first use only).
    code = (
        "import sys, pytest, pytest_asyncio, messaging_core\n"
        "before = set(sys.modules)\n"
        "import messaging_core.testing.pytest_plugin\n"
        "print(__import__('json').dumps(sorted(set(sys.modules) - before)))\n"
    )
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert json.loads(output) == ["messaging_core.testing", "messaging_core.testing.pytest_plugin"]


def test_testing_names_load_on_first_use() -> None:
    import messaging_core.testing as testing

    assert set(testing.__all__) <= set(dir(testing))
    assert testing.HookRecorder is HookRecorder
    with pytest.raises(AttributeError, match="NoSuchHelper"):
        testing.NoSuchHelper  # noqa: B018 - the attribute access is the test


def test_messaging_registry_has_the_builtins_only(messaging_registry: ChannelRegistry) -> None:
    assert [c.name for c in messaging_registry.channels()] == ["memory"]
    assert messaging_registry.host.plugin_names() == ["environment", "memory", "dispatchers"]
    assert messaging_registry.load_errors == []


async def test_memory_connector_is_ready_private_and_observed(
    memory_connector: ChannelConnector, messaging_hooks: HookRecorder
) -> None:
    assert memory_connector.state is ConnectorState.READY
    assert memory_connector.parameters["Mailbox"].startswith("test-")
    message = MessageBuilder().with_phone_receiver("+15550000002").with_text_content("hi").build()
    assert (await memory_connector.send_message(message)).is_success
    assert [m.id for m, _ in messaging_hooks.sent(memory_connector)] == [message.id]
    assert messaging_hooks.transitions(memory_connector)[-1] == (ConnectorState.INITIALIZING, ConnectorState.READY)
    assert memory_connector.mailbox.sent == [message]  # type: ignore[attr-defined]
