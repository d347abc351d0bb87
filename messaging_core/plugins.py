"""The plugin host: owns the pluggy ``PluginManager``; one typed method per hook.

Nothing else in the framework touches ``pm.hook``. There is no global plugin manager: each
``ChannelRegistry`` (and each test) builds its own host, and the registry, not the host, chooses
the built-in plugins (``PluginHost()`` has none).
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from messaging_core import hookspecs
from messaging_core.errors import PluginError

if TYPE_CHECKING:
    import click

    from messaging_core.campaigns.registrations import DispatcherRegistration, StoreRegistration
    from messaging_core.connector import ChannelConnector, ConnectorState
    from messaging_core.emulation import EmulatorRegistration
    from messaging_core.message import Message
    from messaging_core.results import ConnectorResult, SendResult, StatusUpdate
    from messaging_core.schema import ChannelSchema
    from messaging_core.validation import ValidationIssue

__all__ = ["BLOCK_PLUGINS_ENV", "PluginHost", "PluginLoadError"]

log = logging.getLogger(__name__)

BLOCK_PLUGINS_ENV = "MESSAGING_BLOCK_PLUGINS"
"""Comma-separated entry-point names that ``discover()`` must not load."""


@attrs.frozen
class PluginLoadError:
    """A plugin that could not be loaded, and why (reported, never fatal for the others)."""

    name: str
    error: str


class PluginHost:
    """Loads plugins and calls their hooks, one typed method per hook."""

    def __init__(self, plugins: Iterable[object] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.load_errors: list[PluginLoadError] = []
        self._implemented: dict[str, bool] = {}
        for plugin in plugins:
            self.register(plugin)

    def register(self, plugin: object, *, name: str | None = None) -> None:
        """Register a plugin object (a module or an instance with hookimpls); takes effect at once."""
        try:
            self.pm.register(plugin, name=name)
        except (ValueError, pluggy.PluginValidationError) as err:
            raise PluginError(f"plugin {name or plugin!r} is invalid: {err}") from err
        finally:
            self._implemented.clear()

    def unregister(self, plugin: object) -> None:
        """Remove a registered plugin object."""
        self.pm.unregister(plugin)
        self._implemented.clear()

    def load_entrypoints(self, *, blocked: Iterable[str] | None = None) -> None:
        """Load every plugin of the ``messaging_core`` entry-point group.

        A plugin that fails to import is recorded in ``load_errors`` by name and logged; the
        others still load. ``blocked`` (default: the ``MESSAGING_BLOCK_PLUGINS`` variable) names
        entry points to skip.
        """
        if blocked is None:
            blocked = [n.strip() for n in os.environ.get(BLOCK_PLUGINS_ENV, "").split(",") if n.strip()]
        skip = set(blocked)
        for entry_point in metadata.entry_points(group=hookspecs.PROJECT_NAME):
            if entry_point.name in skip:
                log.info("plugin %s blocked by %s", entry_point.name, BLOCK_PLUGINS_ENV)
                continue
            if self.pm.has_plugin(entry_point.name) or self.pm.is_blocked(entry_point.name):
                continue
            try:
                plugin = entry_point.load()
                self.register(plugin, name=entry_point.name)
            except Exception as err:  # a broken plugin must not take the others down
                dist = entry_point.dist.name if entry_point.dist else "?"
                message = f"{type(err).__name__}: {err}"
                log.error("plugin %s (from %s) failed to load: %s", entry_point.name, dist, message)
                self.load_errors.append(PluginLoadError(entry_point.name, message))

    def plugin_names(self) -> list[str]:
        """Names of the registered plugins, in registration order."""
        return [name for name, _ in self.pm.list_name_plugin()]

    def name_of(self, plugin: object) -> str:
        return self.pm.get_name(plugin) or repr(plugin)

    # -- contribution hooks ------------------------------------------------------------------------

    def register_connectors(self) -> list[tuple[str, type[ChannelConnector]]]:
        """Every connector class registered, with the name of the plugin that registered it."""
        found: list[tuple[str, type[ChannelConnector]]] = []
        for impl in reversed(self.pm.hook.register_connectors.get_hookimpls()):
            name = impl.plugin_name

            def register(cls: type[ChannelConnector], _plugin: str = name) -> None:
                found.append((_plugin, cls))

            try:
                self._call_sync(impl, {"register": register})
            except PluginError:
                raise
            except Exception as err:
                raise PluginError(f"plugin {name!r} failed in register_connectors: {err}") from err
        return found

    def register_dispatchers(self) -> list[tuple[str, DispatcherRegistration | StoreRegistration]]:
        """Every dispatcher kind and store scheme registered, with the name of the plugin that registered it."""
        found: list[tuple[str, DispatcherRegistration | StoreRegistration]] = []
        for impl in reversed(self.pm.hook.register_dispatchers.get_hookimpls()):
            name = impl.plugin_name

            def register(registration: DispatcherRegistration | StoreRegistration, _plugin: str = name) -> None:
                found.append((_plugin, registration))

            try:
                self._call_sync(impl, {"register": register})
            except PluginError:
                raise
            except Exception as err:
                raise PluginError(f"plugin {name!r} failed in register_dispatchers: {err}") from err
        return found

    def register_commands(self, cli: click.Group) -> None:
        self._call_all_sync("register_commands", {"cli": cli})

    def register_emulators(self) -> list[EmulatorRegistration]:
        found: list[EmulatorRegistration] = []
        self._call_all_sync("register_emulators", {"register": found.append})
        return found

    def resolve_parameter(self, schema: ChannelSchema, parameter: str, value: Any) -> Any:
        """The first non-None answer of the ``resolve_parameter`` hook."""
        result = self.pm.hook.resolve_parameter(schema=schema, parameter=parameter, value=value)
        if inspect.isawaitable(result):
            _close(result)
            raise PluginError(f"resolve_parameter must not be async (parameter {parameter!r})")
        return result

    def validate_message(self, connector: ChannelConnector, message: Message) -> list[ValidationIssue]:
        issues: list[ValidationIssue] = []
        for found in self.pm.hook.validate_message(connector=connector, message=message):
            if inspect.isawaitable(found):
                _close(found)
                raise PluginError("validate_message must not be async")
            issues.extend(found or ())
        return issues

    # -- observer hooks ----------------------------------------------------------------------------

    def has_observers(self, hook_name: str) -> bool:
        """Whether any plugin implements a hook (lets the hot path skip building calls).

        Cached per hook; registering or unregistering through this host clears the cache.
        """
        found = self._implemented.get(hook_name)
        if found is None:
            found = self._implemented[hook_name] = bool(getattr(self.pm.hook, hook_name).get_hookimpls())
        return found

    async def connector_state_changed(
        self, connector: ChannelConnector, previous: ConnectorState, current: ConnectorState
    ) -> None:
        await self._notify(
            "connector_state_changed", {"connector": connector, "previous": previous, "current": current}
        )

    async def message_sent(
        self, connector: ChannelConnector, message: Message, result: ConnectorResult[SendResult]
    ) -> None:
        await self._notify("message_sent", {"connector": connector, "message": message, "result": result})

    async def message_status_changed(self, connector: ChannelConnector, update: StatusUpdate) -> None:
        await self._notify("message_status_changed", {"connector": connector, "update": update})

    async def message_received(self, connector: ChannelConnector, message: Message) -> None:
        await self._notify("message_received", {"connector": connector, "message": message})

    async def notify_strict(self, hook_name: str, kwargs: dict[str, Any]) -> None:
        """Call an observer hook and let the first failure propagate (the webhook host answers 500
        then, so the provider retries)."""
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            result = impl.function(*[kwargs[arg] for arg in impl.argnames])
            if inspect.isawaitable(result):
                await result

    # -- plumbing ----------------------------------------------------------------------------------

    async def _notify(self, hook_name: str, kwargs: dict[str, Any]) -> None:
        """Call every implementation; await async ones; log and swallow failures."""
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            try:
                result = impl.function(*[kwargs[arg] for arg in impl.argnames])
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("observer %s.%s failed (ignored)", impl.plugin_name, hook_name)

    def _call_all_sync(self, hook_name: str, kwargs: dict[str, Any]) -> None:
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            try:
                self._call_sync(impl, kwargs)
            except PluginError:
                raise
            except Exception as err:
                raise PluginError(f"plugin {impl.plugin_name!r} failed in {hook_name}: {err}") from err

    @staticmethod
    def _call_sync(impl: pluggy.HookImpl, kwargs: dict[str, Any]) -> Any:
        result = impl.function(*[kwargs[arg] for arg in impl.argnames])
        if inspect.isawaitable(result):
            _close(result)
            raise PluginError(f"plugin {impl.plugin_name!r}: {impl.function.__name__} must not be async")
        return result


def _close(awaitable: Any) -> None:
    close: Callable[[], None] | None = getattr(awaitable, "close", None)
    if close is not None:
        close()
