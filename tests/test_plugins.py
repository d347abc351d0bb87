"""The plugin host: observers, sync-only hooks, entry-point discovery, blocking, load errors."""

from __future__ import annotations

import asyncio
import logging
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest

from messaging_core import (
    ChannelConnector,
    ChannelRegistry,
    ConnectorResult,
    ConnectorState,
    EmulatorRegistration,
    Endpoint,
    IssueCodes,
    Message,
    MessageBuilder,
    MessageStatus,
    PluginError,
    PluginHost,
    SendResult,
    StatusUpdate,
    TextContent,
    ValidationIssue,
    WebhookRequest,
    hookimpl,
)
from messaging_core.converters import unstructure
from messaging_core.testing import HookRecorder
from messaging_core.webhooks import WebhookService


def _message(receiver: str = "+15550000002") -> Message:
    return MessageBuilder().with_phone_receiver(receiver).with_text_content("hi").build()


def _memory(registry: ChannelRegistry) -> ChannelConnector:
    return registry.create_connector(
        {"channel": "memory", "parameters": {"Mailbox": f"plugins-{uuid.uuid4().hex}"}}, name="mem"
    )


# -- observers ---------------------------------------------------------------------------------------


class RaisingObserver:
    @hookimpl
    def message_sent(self, connector: ChannelConnector, message: Message, result: ConnectorResult[SendResult]) -> None:
        raise RuntimeError("observer bug")

    @hookimpl
    def connector_state_changed(
        self, connector: ChannelConnector, previous: ConnectorState, current: ConnectorState
    ) -> None:
        raise ValueError("another observer bug")


class AsyncObserver:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.states: list[ConnectorState] = []

    @hookimpl
    async def message_sent(
        self, connector: ChannelConnector, message: Message, result: ConnectorResult[SendResult]
    ) -> None:
        await asyncio.sleep(0)
        self.sent.append(message.id)

    @hookimpl
    async def connector_state_changed(
        self, connector: ChannelConnector, previous: ConnectorState, current: ConnectorState
    ) -> None:
        await asyncio.sleep(0)
        self.states.append(current)


async def test_an_observer_that_raises_is_logged_and_never_breaks_a_send(caplog: pytest.LogCaptureFixture) -> None:
    recorder = HookRecorder()
    registry = ChannelRegistry(plugins=[RaisingObserver(), recorder])
    connector = _memory(registry)
    with caplog.at_level(logging.ERROR, logger="messaging_core.plugins"):
        async with connector:
            result = await connector.send_message(_message())
            batch = await connector.send_batch([_message(), _message()])
    assert result.is_success
    assert batch.is_complete_success
    assert len(recorder.sent(connector)) == 3  # the other observers still ran
    failures = [r for r in caplog.records if "failed (ignored)" in r.getMessage()]
    assert any(".message_sent failed" in r.getMessage() and r.exc_info for r in failures)
    assert any(".connector_state_changed failed" in r.getMessage() for r in failures)
    assert connector.state is ConnectorState.SHUTDOWN


async def test_async_observers_are_awaited() -> None:
    observer = AsyncObserver()
    connector = _memory(ChannelRegistry(plugins=[observer]))
    async with connector:
        message = _message()
        await connector.send_message(message)
        assert observer.sent == [message.id]  # awaited before send_message returned
    assert observer.states == [
        ConnectorState.INITIALIZING,
        ConnectorState.READY,
        ConnectorState.SHUTTING_DOWN,
        ConnectorState.SHUTDOWN,
    ]


async def test_status_and_inbound_observers(messaging_registry: ChannelRegistry, messaging_hooks: HookRecorder) -> None:
    connector = _memory(messaging_registry)
    async with connector:
        sent = await connector.send_message(_message())
        await connector.drain()  # type: ignore[attr-defined] - the memory connector's own helper
        updates = [c.arguments["update"] for c in messaging_hooks.named("message_status_changed")]
        assert [u.status.value for u in updates] == ["sent", "delivered"]
        assert all(
            isinstance(u, StatusUpdate) and u.remote_message_id == sent.unwrap().remote_message_id for u in updates
        )

        inbound = Message("in-1", Endpoint.phone("+15550000009"), Endpoint.phone("+15550000001"), TextContent("yo"))
        received = await connector.receive_messages(WebhookRequest.from_json(unstructure(inbound)))
        assert received.unwrap().messages == (inbound,)
        assert messaging_hooks.named("message_received") == []  # parsing never dispatches

        # The webhook service verifies, records and dispatches: once per message.
        service = WebhookService({"memory": connector})
        for _ in range(2):
            answer = await service.handle("memory", "messages", WebhookRequest.from_json(unstructure(inbound)))
            assert answer.status == 200
        assert [c.arguments["message"] for c in messaging_hooks.named("message_received")] == [inbound]

        callback = StatusUpdate("m-9", sent.unwrap().status)
        status = await connector.receive_message_status(WebhookRequest.from_json(unstructure(callback)))
        assert status.unwrap() == callback
        answer = await service.handle("memory", "status", WebhookRequest.from_json(unstructure(callback)))
        assert answer.status == 204
        assert messaging_hooks.named("message_status_changed")[-1].arguments["update"] == callback


async def test_strict_notifications_let_observer_errors_propagate() -> None:
    class Failing:
        @hookimpl
        async def message_received(self, connector: ChannelConnector, message: Message) -> None:
            raise OSError("database down")

        @hookimpl
        def message_status_changed(self, connector: ChannelConnector, update: StatusUpdate) -> None:
            raise OSError("database down")

    registry = ChannelRegistry()
    registry.host.register(Failing(), name="failing")
    connector = _memory(registry)
    async with connector:
        with pytest.raises(OSError, match="database down") as raised:
            await registry.host.notify_strict("message_received", {"connector": connector, "message": _message()})
        assert raised.value.__notes__ == ["raised by the message_received hook of plugin 'failing'"]
        update = StatusUpdate("m", MessageStatus.SENT)
        with pytest.raises(OSError, match="database down"):
            await registry.host.notify_strict("message_status_changed", {"connector": connector, "update": update})
        # The webhook service turns it into a 500, so that the provider retries.
        service = WebhookService({"memory": connector})
        answer = await service.handle("memory", "messages", WebhookRequest.from_json(unstructure(_message())))
        assert answer.status == 500


def test_has_observers(plugin_host: PluginHost) -> None:
    assert not plugin_host.has_observers("message_sent")
    plugin_host.register(HookRecorder())
    assert plugin_host.has_observers("message_sent")


# -- sync-only hooks ---------------------------------------------------------------------------------


class AsyncResolver:
    @hookimpl
    async def resolve_parameter(self, schema: Any, parameter: str, value: Any) -> Any:
        return "never"


async def test_an_async_resolve_parameter_is_refused_at_registration(recwarn: pytest.WarningsRecorder) -> None:
    registry = ChannelRegistry()
    with pytest.raises(PluginError, match="plugin 'async-resolver' implements 'resolve_parameter' with async def"):
        registry.host.register(AsyncResolver(), name="async-resolver")
    assert "async-resolver" not in registry.host.plugin_names()
    assert not [w for w in recwarn if "never awaited" in str(w.message)]  # nothing was called


def test_resolve_parameter_stops_at_the_first_answer(messaging_registry: ChannelRegistry) -> None:
    calls: list[str] = []

    class First:
        @hookimpl(tryfirst=True)
        def resolve_parameter(self, schema: Any, parameter: str, value: Any) -> Any:
            calls.append("first")
            return "vault-value" if parameter == "Mailbox" else None

    class Second:
        @hookimpl
        def resolve_parameter(self, schema: Any, parameter: str, value: Any) -> Any:
            calls.append("second")
            return "second-value"

    host = PluginHost([Second(), First()])
    assert host.resolve_parameter(messaging_registry.schema("memory"), "Mailbox", None) == "vault-value"
    assert calls == ["first"]
    assert host.resolve_parameter(messaging_registry.schema("memory"), "Latency", None) == "second-value"


async def test_policy_plugins_add_issues_before_any_io() -> None:
    class QuietHours:
        @hookimpl
        def validate_message(self, connector: ChannelConnector, message: Message) -> list[ValidationIssue] | None:
            if message.receiver is not None and message.receiver.address.endswith("13"):
                return [ValidationIssue("$.receiver.address", "is on the opt-out list", IssueCodes.POLICY)]
            return None

    class AsyncPolicy:
        @hookimpl
        async def validate_message(self, connector: ChannelConnector, message: Message) -> None:
            return None

    connector = _memory(ChannelRegistry(plugins=[QuietHours()]))
    async with connector:
        refused = await connector.send_message(_message("+15550000013"))
        assert refused.error_code == "INVALID_RECIPIENT"
        assert refused.error is not None
        assert refused.error.issues[0].code == IssueCodes.POLICY
        assert (await connector.send_message(_message())).is_success
        assert [m.receiver.address for m in connector.mailbox.sent] == ["+15550000002"]  # type: ignore[attr-defined]

    with pytest.raises(PluginError, match="implements 'validate_message' with async def"):
        ChannelRegistry(plugins=[AsyncPolicy()])


def test_async_contribution_hooks_are_rejected_naming_the_plugin() -> None:
    class AsyncRegistrar:
        @hookimpl
        async def register_connectors(self, register: Callable[[type[ChannelConnector]], None]) -> None:
            return None

    host = PluginHost([])
    with pytest.raises(PluginError, match="plugin 'async-registrar' implements 'register_connectors' with async def"):
        host.register(AsyncRegistrar(), name="async-registrar")
    assert host.register_connectors() == []


def test_a_hook_with_wrong_arguments_is_refused_at_registration() -> None:
    class Wrong:
        @hookimpl
        def message_sent(self, connector: Any, msg: Any) -> None: ...

    with pytest.raises(PluginError, match="plugin 'wrong' is invalid"):
        PluginHost().register(Wrong(), name="wrong")


def test_register_commands_and_emulators() -> None:
    @click.group()
    def cli() -> None: ...

    class Tools:
        @hookimpl
        def register_commands(self, cli: click.Group) -> None:
            @cli.command("acme-ping")
            def ping() -> None:
                click.echo("pong")

        @hookimpl
        def register_emulators(self, register: Callable[[EmulatorRegistration], None]) -> None:
            register(EmulatorRegistration("acme_sms", start=lambda **_: None, description="fake acme"))  # type: ignore[arg-type,return-value]

    registry = ChannelRegistry(plugins=[Tools()])
    registry.host.register_commands(cli)
    assert "acme-ping" in cli.commands
    emulators = registry.emulators()
    assert list(emulators) == ["acme_sms"]
    assert emulators["acme_sms"].description == "fake acme"


def test_a_failing_contribution_hook_is_a_plugin_error_naming_the_plugin() -> None:
    class Broken:
        @hookimpl
        def register_emulators(self, register: Callable[[EmulatorRegistration], None]) -> None:
            raise KeyError("oops")

    host = PluginHost()
    host.register(Broken(), name="broken-tools")
    assert host.register_emulators() == []  # the others' emulators would still be there
    assert host.register_emulators() == []
    assert [str(f) for f in host.load_errors] == ["plugin 'broken-tools': failed in register_emulators: 'oops'"]
    strict = PluginHost(strict=True)
    strict.register(Broken(), name="broken-tools")
    with pytest.raises(PluginError, match="plugin 'broken-tools': failed in register_emulators"):
        strict.register_emulators()


def test_builtins_can_be_left_out() -> None:
    assert [c.name for c in ChannelRegistry().channels()] == ["memory"]
    assert ChannelRegistry(builtins=False).channels() == []
    assert PluginHost().plugin_names() == []  # the registry chooses the built-ins, not the host


# -- entry points: a real distribution on sys.path ---------------------------------------------------


@pytest.fixture
def installed_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A distribution with four entry points in ``messaging_core``: good, broken on import, blocked, misspelled.

    Written to ``tmp_path`` as ``<name>.dist-info`` plus modules, and found by importlib.metadata
    through ``sys.path`` like any installed package.
    """
    suffix = uuid.uuid4().hex[:8]
    names = {
        "good": f"acme_good_{suffix}",
        "broken": f"acme_broken_{suffix}",
        "other": f"acme_other_{suffix}",
        "typo": f"acme_typo_{suffix}",
    }
    (tmp_path / f"{names['good']}.py").write_text(
        textwrap.dedent(
            """
            from messaging_core import hookimpl
            from messaging_core.testing import HookRecorder

            recorder = HookRecorder()

            @hookimpl
            def message_sent(connector, message, result):
                recorder.message_sent(connector, message, result)
            """
        )
    )
    (tmp_path / f"{names['broken']}.py").write_text("raise RuntimeError('acme plugin is broken on import')\n")
    (tmp_path / f"{names['other']}.py").write_text("from messaging_core import hookimpl\n")
    (tmp_path / f"{names['typo']}.py").write_text(
        "from messaging_core import hookimpl\n\n@hookimpl\ndef mesage_sent(message):\n    pass\n"
    )
    dist_info = tmp_path / f"acme_plugins_{suffix}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: acme-plugins-{suffix}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[messaging_core]\n" + "".join(f"{key}_{suffix} = {module}\n" for key, module in names.items())
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in names.values():
        monkeypatch.delitem(sys.modules, module, raising=False)
    # Entry-point names by role, and the module behind each under "<role>_module".
    return {**{key: f"{key}_{suffix}" for key in names}, **{f"{key}_module": m for key, m in names.items()}}


def test_discover_loads_entry_points_and_reports_broken_ones_by_name(
    installed_plugins: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="messaging_core.plugins"):
        registry = ChannelRegistry.discover()
    names = registry.host.plugin_names()
    assert installed_plugins["good"] in names
    assert installed_plugins["broken"] not in names
    errors = {e.name: e.error for e in registry.load_errors}
    assert errors[installed_plugins["broken"]] == "RuntimeError: acme plugin is broken on import"
    # An entry point that loads something with no hook implementations is a problem, not silence.
    assert installed_plugins["other"] not in names
    assert (
        "implements no hook: point it at the module holding the @hookimpl functions"
        in (errors[installed_plugins["other"]])
    )
    assert any(installed_plugins["broken"] in r.getMessage() for r in caplog.records)
    assert "memory" in [c.name for c in registry.channels()]  # the others still work


def test_a_misspelled_hook_in_an_entry_point_is_a_load_error_naming_plugin_and_hook(
    installed_plugins: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="messaging_core.plugins"):
        registry = ChannelRegistry.discover()
    typo = installed_plugins["typo"]
    assert typo not in registry.host.plugin_names()
    errors = {e.name: e.error for e in registry.load_errors}
    assert errors[typo] == "implements unknown hook 'mesage_sent': no such hookspec (a misspelling?)"
    assert any(typo in r.getMessage() and "mesage_sent" in r.getMessage() for r in caplog.records)
    assert installed_plugins["good"] in registry.host.plugin_names()  # the others still load


def test_block_plugins_variable(installed_plugins: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESSAGING_BLOCK_PLUGINS", f" {installed_plugins['broken']} , {installed_plugins['other']}")
    registry = ChannelRegistry.discover()
    names = registry.host.plugin_names()
    assert installed_plugins["good"] in names
    assert installed_plugins["other"] not in names
    assert installed_plugins["broken"] not in {e.name for e in registry.load_errors}


def test_blocked_argument_overrides_the_variable(
    installed_plugins: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESSAGING_BLOCK_PLUGINS", installed_plugins["good"])
    registry = ChannelRegistry.discover(blocked=[installed_plugins["broken"]])
    names = registry.host.plugin_names()
    assert installed_plugins["good"] in names
    assert installed_plugins["broken"] not in {e.name for e in registry.load_errors}


async def test_a_discovered_observer_sees_sends(installed_plugins: dict[str, str]) -> None:
    registry = ChannelRegistry.discover(blocked=[installed_plugins["broken"]])
    module = sys.modules[installed_plugins["good_module"]]
    connector = _memory(registry)
    async with connector:
        await connector.send_message(_message())
    assert len(module.recorder.sent(connector)) == 1


async def test_a_plugin_registered_after_the_connector_was_created_takes_effect() -> None:
    registry = ChannelRegistry()
    connector = registry.create_connector({"channel": "memory"})
    seen: list[str] = []

    class Late:
        @hookimpl
        def message_sent(self, message: Message) -> None:
            seen.append(message.id)

        @hookimpl
        def validate_message(self, message: Message) -> list[ValidationIssue]:
            return [ValidationIssue("$.properties", "blocked by policy", "POLICY")] if message.id == "blocked" else []

    async with connector:
        late = Late()
        registry.host.register(late)
        ok = MessageBuilder().with_id("ok").with_phone_receiver("+15551230001").with_text_content("x").build()
        blocked = MessageBuilder().with_id("blocked").with_phone_receiver("+15551230001").with_text_content("x").build()
        assert (await connector.send_message(ok)).is_success
        refused = await connector.send_message(blocked)
        registry.host.unregister(late)
        assert (await connector.send_message(ok)).is_success
    assert refused.error_code == "MESSAGE_VALIDATION_FAILED"
    assert seen == ["ok", "blocked"]  # the third send happened after unregistering


def test_messaging_plugins_lists_every_plugin_and_each_problem_once(installed_plugins: dict[str, str]) -> None:
    """Broken plugins installed beside the good ones: the CLI still works, and says once what is wrong."""
    from click.testing import CliRunner

    from messaging_core.cli import cli

    result = CliRunner().invoke(cli, ["plugins"], terminal_width=400)
    assert result.exit_code == 0, result.output
    table = result.stdout
    for name in ("environment", "memory", "twilio_sms", installed_plugins["good"]):
        assert name in table
    assert "message_sent" in table  # the good plugin's hook
    infos = {info.name: info for info in ChannelRegistry.discover().plugins()}
    broken = infos[installed_plugins["broken"]]
    assert broken.problems == ("RuntimeError: acme plugin is broken on import",)
    assert broken.distribution is not None
    assert broken.distribution.startswith("acme-plugins-")
    assert infos["twilio_sms"].channels == ("twilio_sms",)
    assert infos[installed_plugins["good"]].hooks == ("message_sent",)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == len({line for line in warnings}) == 3  # broken, other, typo: each once
    channels = CliRunner().invoke(cli, ["channels"], terminal_width=400)
    assert channels.exit_code == 0
    assert "twilio_sms" in channels.stdout  # one bad plugin never breaks the others


def test_strict_mode_turns_a_plugin_problem_into_an_error(
    installed_plugins: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESSAGING_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="acme plugin is broken on import"):
        ChannelRegistry.discover()
