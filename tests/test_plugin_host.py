"""The host keeps pluggy's promises: call order, no wrapper or misspelled hook accepted in silence, tracing.

Every hook is called here through its typed ``PluginHost`` method; the table below must name them all.
"""

from __future__ import annotations

import ast
import inspect
import logging
import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest

from messaging_core import (
    ChannelRegistry,
    ConnectorResult,
    ConnectorState,
    MessageBuilder,
    MessageStatus,
    PluginError,
    PluginHost,
    SendResult,
    StatusUpdate,
    hookimpl,
    hookspecs,
)

ROOT = Path(__file__).resolve().parent.parent

_REGISTRY = ChannelRegistry()
_SCHEMA = _REGISTRY.schema("memory")
_CONNECTOR = _REGISTRY.create_connector({"channel": "memory"})
_MESSAGE = MessageBuilder().with_id("m-1").with_phone_receiver("+15550000002").with_text_content("hi").build()


@click.group()
def _cli() -> None: ...


HOST_CALLS: dict[str, Callable[[PluginHost], Any]] = {
    "register_connectors": lambda host: host.register_connectors(),
    "resolve_parameter": lambda host: host.resolve_parameter(_SCHEMA, "Mailbox", None),
    "validate_message": lambda host: host.validate_message(_CONNECTOR, _MESSAGE),
    "connector_state_changed": lambda host: host.connector_state_changed(
        _CONNECTOR, ConnectorState.UNINITIALIZED, ConnectorState.INITIALIZING
    ),
    "message_sent": lambda host: host.message_sent(
        _CONNECTOR, _MESSAGE, ConnectorResult.success(SendResult("m-1", "R-1", MessageStatus.QUEUED))
    ),
    "message_status_changed": lambda host: host.message_status_changed(
        _CONNECTOR, StatusUpdate("m-1", MessageStatus.SENT)
    ),
    "message_received": lambda host: host.message_received(_CONNECTOR, _MESSAGE),
    "reply_to_message": lambda host: host.reply_to_message(_CONNECTOR, _MESSAGE),
    "register_commands": lambda host: host.register_commands(_cli),
    "register_emulators": lambda host: host.register_emulators(),
    "register_dispatchers": lambda host: host.register_dispatchers(),
}
"""How each hook is called through the host (the hook's own typed method)."""


async def _call(host: PluginHost, hook: str) -> None:
    result = HOST_CALLS[hook](host)
    if inspect.isawaitable(result):
        await result


def _spy(label: str, calls: list[str], **order: bool) -> object:
    """A plugin implementing every hook with ``order`` (``tryfirst``/``trylast``), recording ``label``.

    Its observers are ``async def`` (the host awaits them in turn), its contribution hooks plain.
    """

    def record() -> None:
        calls.append(label)

    async def record_async() -> None:
        calls.append(label)

    def implementation(hook: str) -> Callable[[], Any]:
        return record_async if inspect.iscoroutinefunction(getattr(PluginHost, hook)) else record

    marker = hookimpl(**order)
    return types.SimpleNamespace(**{hook: marker(implementation(hook)) for hook in HOST_CALLS})


def _hook_names() -> set[str]:
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return {name for name, function in vars(hookspecs).items() if hasattr(function, marker)}


def test_every_hook_has_a_typed_host_method_called_here() -> None:
    assert set(HOST_CALLS) == _hook_names()
    assert all(callable(getattr(PluginHost, name, None)) for name in HOST_CALLS)


@pytest.mark.parametrize("hook", sorted(HOST_CALLS))
async def test_every_hook_is_called_through_the_host_in_pluggy_order(hook: str) -> None:
    calls: list[str] = []
    host = PluginHost()
    host.register(_spy("older", calls), name="older")
    host.register(_spy("last", calls, trylast=True), name="last")
    host.register(_spy("first", calls, tryfirst=True), name="first")
    host.register(_spy("newest", calls), name="newest")
    await _call(host, hook)
    assert calls == ["first", "newest", "older", "last"]


# -- refused at registration -------------------------------------------------------------------------


class Wrapper:
    @hookimpl(wrapper=True)
    def message_sent(self) -> Any:
        return (yield)


class OldStyleWrapper:
    @hookimpl(hookwrapper=True)
    def message_sent(self) -> Any:
        yield


@pytest.mark.parametrize("plugin", [Wrapper(), OldStyleWrapper()], ids=["wrapper", "hookwrapper"])
def test_a_hook_wrapper_is_refused_at_registration_naming_plugin_and_hook(plugin: object) -> None:
    host = PluginHost()
    with pytest.raises(PluginError, match=r"plugin 'timing' wraps hook 'message_sent': hook wrappers .* not supported"):
        host.register(plugin, name="timing")
    assert host.plugin_names() == []
    assert not host.has_observers("message_sent")
    with pytest.raises(PluginError, match="wraps hook 'message_sent'"):
        ChannelRegistry(plugins=[plugin])


class Typo:
    @hookimpl
    def mesage_sent(self, message: Any) -> None: ...

    @hookimpl
    def message_received(self, message: Any) -> None: ...


def test_a_misspelled_hook_is_refused_at_registration_naming_plugin_and_hook() -> None:
    host = PluginHost()
    with pytest.raises(PluginError, match=r"plugin 'typo' implements unknown hook 'mesage_sent': no such hookspec"):
        host.register(Typo(), name="typo")
    assert host.plugin_names() == []  # its correctly spelled hook is not half-registered either
    assert not host.has_observers("message_received")
    with pytest.raises(PluginError, match="unknown hook 'mesage_sent'"):
        ChannelRegistry(plugins=[Typo()])


def test_an_optional_hook_for_a_later_version_is_accepted() -> None:
    class Ahead:
        @hookimpl(optionalhook=True)
        def message_expired(self, message: Any) -> None: ...

    host = PluginHost()
    host.register(Ahead(), name="ahead")
    assert host.plugin_names() == ["ahead"]


# -- tracing -----------------------------------------------------------------------------------------


class Resolver:
    @hookimpl
    def resolve_parameter(self, parameter: str) -> str | None:
        return "s3cret-token" if parameter == "Mailbox" else None

    @hookimpl
    async def message_sent(self, message: Any) -> str:
        return f"seen {message.id}"


async def test_the_trace_variable_logs_every_call_and_result_but_no_parameter_value(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MESSAGING_TRACE_HOOKS", "1")
    host = PluginHost()
    host.register(Resolver(), name="vault")
    with caplog.at_level(logging.INFO, logger="messaging_core.plugins"):
        assert host.resolve_parameter(_SCHEMA, "Mailbox", None) == "s3cret-token"
        await _call(host, "message_sent")
        await _call(host, "message_received")
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "hook resolve_parameter: calling vault",
        "hook resolve_parameter: vault returned <a value>",
        "hook message_sent: calling vault",
        "hook message_sent: vault returned 'seen m-1'",  # the awaited result
        "hook message_received: calling nothing",
    ]
    assert "s3cret" not in caplog.text


@pytest.mark.parametrize("value", ["", "0"])
async def test_tracing_is_off_unless_asked(
    value: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MESSAGING_TRACE_HOOKS", value)
    host = PluginHost([Resolver()])
    with caplog.at_level(logging.DEBUG, logger="messaging_core.plugins"):
        assert host.resolve_parameter(_SCHEMA, "Mailbox", None) == "s3cret-token"
        await _call(host, "message_sent")
    assert caplog.records == []


# -- layering ----------------------------------------------------------------------------------------


def test_a_bare_host_has_no_builtins_the_registry_chooses_them() -> None:
    assert PluginHost().plugin_names() == []
    assert ChannelRegistry().host.plugin_names() == ["environment", "memory", "dispatchers"]
    assert ChannelRegistry(builtins=False).host.plugin_names() == []
    imported = {
        node.module or ""
        for node in ast.walk(ast.parse((ROOT / "messaging_core" / "plugins.py").read_text("utf-8")))
        if isinstance(node, ast.ImportFrom)
    }
    assert not {module for module in imported if module.startswith("messaging_core.default_plugins")}


def test_only_the_host_touches_the_plugin_manager() -> None:
    sources = [*(ROOT / "messaging_core").rglob("*.py"), *(ROOT / "plugins").glob("*/src/**/*.py")]
    sources += [*(ROOT / "benchmarks").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]
    pattern = re.compile(r"PluginManager\(|\.pm\b|\._pm\b")
    touching = [
        str(path.relative_to(ROOT))
        for path in sources
        if path.name not in {"plugins.py", Path(__file__).name} and pattern.search(path.read_text("utf-8"))
    ]
    assert touching == []
