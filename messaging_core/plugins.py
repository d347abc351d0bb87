"""The plugin host: owns the pluggy ``PluginManager``; one typed method per hook.

Nothing else in the framework touches the plugin manager. There is no global one: each
``ChannelRegistry`` (and each test) builds its own host, and the registry, not the host, chooses
the built-in plugins (``PluginHost()`` has none).

How hooks are called, and why not through ``pm.hook.<name>(...)``
-------------------------------------------------------------------

The host calls each implementation itself, in pluggy's order, instead of handing the call to
pluggy's caller. pluggy's caller runs every implementation in one go: the first exception stops
the others and arrives without the name of the plugin that raised it, and ``async def``
implementations come back as bare coroutines in a list that drops the ``None`` results, so they can
no longer be matched to a plugin either. The host's promises need both:

- observer hooks isolate failures: an observer that raises (at call or when awaited) is logged with
  its plugin's name and the next observer still runs; ``notify_strict`` lets the first failure
  propagate instead (the webhook host answers 500 so the provider retries), and the exception
  carries a note naming the plugin;
- ``async def`` observers are awaited one after the other, in order, before the method returns;
- contribution hooks are synchronous: an awaitable returned by one is closed and refused with a
  ``PluginError`` naming the plugin, as is any failure of a ``register_*`` hook;
- each registration is attributed to the plugin that made it (a channel registered twice names
  both plugins).

What pluggy promises is kept: specs and argument checks at registration (``PluginError`` naming
the plugin), arguments passed by name, ``firstresult``, and the call order of
``HookCaller.get_hookimpls()`` reversed: ``tryfirst`` first, ``trylast`` last, otherwise the last
registered first. Two things pluggy would otherwise let slip are refused at registration with a
``PluginError`` naming the plugin and the hook, so no plugin is accepted whose hooks would never
run:

- **hook wrappers** (``wrapper=True``, ``hookwrapper=True``). Their protocol belongs to pluggy's
  caller, which the host does not use; and a wrapper is a generator, so it could not surround the
  ``async def`` observers anyway (those finish after pluggy's call has returned).
- **unknown hooks** (``mesage_sent``): ``PluginManager.check_pending()`` runs at every
  registration, so after the built-ins and each entry point too. An entry point refused this way is
  recorded in ``load_errors`` like any plugin that fails to load.

Set ``MESSAGING_TRACE_HOOKS=1`` to log every hook call, which implementations it reaches and what
each returned (logger ``messaging_core.plugins``, level INFO). pluggy's own tracing
(``pm.enable_tracing()``) would stay silent: it only sees calls made through ``pm.hook``.
"""

from __future__ import annotations

import inspect
import logging
import os
import reprlib
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from messaging_core import hookspecs
from messaging_core.errors import PluginError
from messaging_core.message import MediaContent, MultipartContent, TextContent

if TYPE_CHECKING:
    import click

    from messaging_core.campaigns.registrations import DispatcherRegistration, StoreRegistration
    from messaging_core.connector import ChannelConnector, ConnectorState
    from messaging_core.emulation import EmulatorRegistration
    from messaging_core.message import Content, Message
    from messaging_core.results import ConnectorResult, SendResult, StatusUpdate
    from messaging_core.schema import ChannelSchema
    from messaging_core.validation import ValidationIssue

__all__ = ["BLOCK_PLUGINS_ENV", "TRACE_HOOKS_ENV", "PluginHost", "PluginLoadFailure"]

log = logging.getLogger(__name__)

BLOCK_PLUGINS_ENV = "MESSAGING_BLOCK_PLUGINS"
"""Comma-separated entry-point names that ``discover()`` must not load."""

TRACE_HOOKS_ENV = "MESSAGING_TRACE_HOOKS"
"""Set to ``1`` (when the host is built) to log every hook call and its results."""


@attrs.frozen
class PluginLoadFailure:
    """A plugin that failed to load or to register something, and why (reported, never fatal for the others)."""

    name: str
    error: str
    distribution: str | None = None
    """The installed distribution the plugin's entry point came from (None for a plugin registered in code)."""

    def __str__(self) -> str:
        origin = f" (from {self.distribution})" if self.distribution else ""
        return f"plugin {self.name!r}{origin}: {self.error}"


_SYNC_HOOKS = frozenset(
    {
        "register_connectors",
        "register_dispatchers",
        "register_commands",
        "register_emulators",
        "resolve_parameter",
        "validate_message",
    }
)
"""Hooks whose results are used at once: an ``async def`` implementation is refused at registration."""


class PluginHost:
    """Loads plugins and calls their hooks, one typed method per hook."""

    def __init__(self, plugins: Iterable[object] = (), *, strict: bool = False) -> None:
        """A host with ``plugins`` registered.

        :param strict: a plugin problem (an entry point that fails, a registration refused) raises
            ``PluginError`` instead of being recorded in ``load_errors`` (for CI).
        """
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._trace = os.environ.get(TRACE_HOOKS_ENV, "").strip() not in ("", "0")
        self.strict = strict
        self.load_errors: list[PluginLoadFailure] = []
        self._distributions: dict[str, str] = {}
        self._implemented: dict[str, bool] = {}
        for plugin in plugins:
            self.register(plugin)

    def register(self, plugin: object, *, name: str | None = None) -> None:
        """Register a plugin object (a module or an instance with hookimpls); takes effect at once.

        Raises ``PluginError`` naming the plugin when an implementation does not match its hook's
        arguments, names no hook (a misspelling), or is a hook wrapper.
        """
        label = repr(name or plugin)
        try:
            self._pm.register(plugin, name=name)
        except (ValueError, pluggy.PluginValidationError) as err:
            raise PluginError(f"plugin {label} is invalid: {err}") from err
        finally:
            self._implemented.clear()
        problem = self._refusal(plugin)
        if problem is not None:
            self.unregister(plugin)
            raise PluginError(f"plugin {label} {problem}")

    def unregister(self, plugin: object) -> None:
        """Remove a registered plugin object."""
        self._pm.unregister(plugin)
        self._implemented.clear()

    def load_entrypoints(self, *, blocked: Iterable[str] | None = None) -> None:
        """Load every plugin of the ``messaging_core`` entry-point group.

        A plugin that fails to import or is refused at registration is recorded in
        ``load_errors`` by name and logged; the others still load. ``blocked`` (default: the
        ``MESSAGING_BLOCK_PLUGINS`` variable) names entry points to skip.
        """
        if blocked is None:
            blocked = [n.strip() for n in os.environ.get(BLOCK_PLUGINS_ENV, "").split(",") if n.strip()]
        skip = set(blocked)
        for entry_point in metadata.entry_points(group=hookspecs.PROJECT_NAME):
            if entry_point.name in skip:
                log.info("plugin %s blocked by %s", entry_point.name, BLOCK_PLUGINS_ENV)
                continue
            if self._pm.has_plugin(entry_point.name) or self._pm.is_blocked(entry_point.name):
                continue
            dist = entry_point.dist.name if entry_point.dist else None
            if dist is not None:
                self._distributions[entry_point.name] = dist
            try:
                plugin = entry_point.load()
                self.register(plugin, name=entry_point.name)
                if not self._pm.get_hookcallers(plugin):
                    self.unregister(plugin)
                    raise PluginError(
                        f"entry point {entry_point.value!r} gives {type(plugin).__name__} {plugin!r:.80}, which "
                        "implements no hook: point it at the module holding the @hookimpl functions"
                    )
            except Exception as err:  # a broken plugin must not take the others down
                if isinstance(err, PluginError):
                    message = str(err).removeprefix(f"plugin {entry_point.name!r} ")
                else:
                    message = f"{type(err).__name__}: {err}"
                self.record_failure(entry_point.name, message)

    def record_failure(self, plugin: str, error: str) -> None:
        """Record a problem of one plugin (once), or raise it in strict mode; the others go on."""
        failure = PluginLoadFailure(plugin, error, self._distributions.get(plugin))
        if self.strict:
            raise PluginError(str(failure))
        if failure not in self.load_errors:
            log.error("%s", failure)
            self.load_errors.append(failure)

    def distribution_of(self, plugin: str) -> str | None:
        """The distribution an entry-point plugin came from, or None."""
        return self._distributions.get(plugin)

    def hooks_of(self, plugin: str) -> list[str]:
        """The hooks a registered plugin implements, sorted."""
        found = self._pm.get_plugin(plugin)
        return sorted(caller.name for caller in self._pm.get_hookcallers(found) or []) if found is not None else []

    def plugin_names(self) -> list[str]:
        """Names of the registered plugins, in registration order."""
        return [name for name, _ in self._pm.list_name_plugin()]

    def name_of(self, plugin: object) -> str:
        return self._pm.get_name(plugin) or repr(plugin)

    # -- contribution hooks ------------------------------------------------------------------------

    def register_connectors(self) -> list[tuple[str, type[ChannelConnector]]]:
        """Every connector class registered, with the name of the plugin that registered it."""
        return self._registrations("register_connectors")

    def register_dispatchers(self) -> list[tuple[str, DispatcherRegistration | StoreRegistration]]:
        """Every dispatcher kind and store scheme registered, with the name of the plugin that registered it."""
        return self._registrations("register_dispatchers")

    def register_commands(self, cli: click.Group) -> None:
        """Let plugins add commands; a plugin that fails is recorded, the others' commands stand."""
        for impl in self._implementations("register_commands"):
            try:
                self._contribute(impl, "register_commands", {"cli": cli})
            except PluginError as err:
                self.record_failure(impl.plugin_name, str(err).removeprefix(f"plugin {impl.plugin_name!r} "))

    def register_emulators(self) -> list[EmulatorRegistration]:
        return [registration for _, registration in self._registrations("register_emulators")]

    def resolve_parameter(self, schema: ChannelSchema, parameter: str, value: Any) -> Any:
        """The first non-None answer of the ``resolve_parameter`` hook."""
        kwargs = {"schema": schema, "parameter": parameter, "value": value}
        for impl in self._implementations("resolve_parameter"):
            result = self._call_sync(impl, "resolve_parameter", kwargs)
            if result is not None:
                return result
        return None

    def validate_message(self, connector: ChannelConnector, message: Message) -> list[ValidationIssue]:
        """Every issue found by every ``validate_message`` implementation."""
        issues: list[ValidationIssue] = []
        kwargs = {"connector": connector, "message": message}
        for impl in self._implementations("validate_message"):
            issues.extend(self._call_sync(impl, "validate_message", kwargs) or ())
        return issues

    # -- observer hooks ----------------------------------------------------------------------------

    def has_observers(self, hook_name: str) -> bool:
        """Whether any plugin implements a hook (lets the hot path skip building calls).

        Cached per hook; registering or unregistering through this host clears the cache.
        """
        found = self._implemented.get(hook_name)
        if found is None:
            found = self._implemented[hook_name] = bool(getattr(self._pm.hook, hook_name).get_hookimpls())
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

    async def reply_to_message(self, connector: ChannelConnector, message: Message) -> Content | None:
        """The first non-None answer of the ``reply_to_message`` hook (awaited when async), as content.

        A plain string becomes a ``TextContent``. A failure propagates with a note naming the plugin
        (the webhook host answers 500, as for a failing ``message_received``).
        """
        kwargs = {"connector": connector, "message": message}
        for impl in self._implementations("reply_to_message"):
            try:
                result = impl.function(*[kwargs[arg] for arg in impl.argnames])
                if inspect.isawaitable(result):
                    result = await result
            except Exception as err:
                err.add_note(f"raised by the reply_to_message hook of plugin {impl.plugin_name!r}")
                raise
            if self._trace:
                self._trace_result(impl, "reply_to_message", result)
            if result is None:
                continue
            if isinstance(result, str):
                return TextContent(result)
            if isinstance(result, (TextContent, MediaContent, MultipartContent)):
                return result
            raise PluginError(
                f"plugin {impl.plugin_name!r}: reply_to_message returned {type(result).__name__}; "
                "expected a str, TextContent, MediaContent, MultipartContent or None"
            )
        return None

    async def notify_strict(self, hook_name: str, kwargs: dict[str, Any]) -> None:
        """Call an observer hook and let the first failure propagate (the webhook host answers 500
        then, so the provider retries)."""
        await self._notify(hook_name, kwargs, strict=True)

    # -- plumbing ----------------------------------------------------------------------------------

    def _refusal(self, plugin: object) -> str | None:
        """Why a just-registered plugin cannot be kept (an unknown hook, a wrapper), or None."""
        callers = self._pm.get_hookcallers(plugin) or []
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError:
            unknown = sorted(caller.name for caller in callers if not caller.has_spec())
            return f"implements unknown hook {', '.join(map(repr, unknown))}: no such hookspec (a misspelling?)"
        wrappers = sorted(
            caller.name
            for caller in callers
            for impl in caller.get_hookimpls()
            if impl.plugin is plugin and (impl.wrapper or impl.hookwrapper)
        )
        asynchronous = sorted(
            caller.name
            for caller in callers
            for impl in caller.get_hookimpls()
            if impl.plugin is plugin and caller.name in _SYNC_HOOKS and inspect.iscoroutinefunction(impl.function)
        )
        if asynchronous:
            return (
                f"implements {', '.join(map(repr, asynchronous))} with async def: these hooks must be plain functions"
            )
        if wrappers:
            return (
                f"wraps hook {', '.join(map(repr, wrappers))}: hook wrappers (wrapper=True, hookwrapper=True) "
                "are not supported, the host calls each implementation itself; implement the hook plainly"
            )
        return None

    def _implementations(self, hook_name: str) -> list[pluggy.HookImpl]:
        """A hook's implementations in pluggy's call order: tryfirst first, trylast last, else newest first."""
        caller: pluggy.HookCaller = getattr(self._pm.hook, hook_name)
        found = caller.get_hookimpls()[::-1]
        if self._trace:
            log.info("hook %s: calling %s", hook_name, ", ".join(i.plugin_name for i in found) or "nothing")
        return found

    def _registrations(self, hook_name: str) -> list[tuple[str, Any]]:
        """Call a ``register_*`` hook: everything registered, with the name of the plugin that did.

        A plugin whose implementation fails contributes nothing to this call and is recorded in
        ``load_errors`` (strict mode: raises); the other plugins' registrations stand.
        """
        found: list[tuple[str, Any]] = []
        for impl in self._implementations(hook_name):
            mine: list[tuple[str, Any]] = []

            def register(registration: Any, _plugin: str = impl.plugin_name, _mine: list[Any] = mine) -> None:
                _mine.append((_plugin, registration))

            try:
                self._contribute(impl, hook_name, {"register": register})
            except PluginError as err:
                self.record_failure(impl.plugin_name, str(err).removeprefix(f"plugin {impl.plugin_name!r} "))
                continue
            found.extend(mine)
        return found

    def _contribute(self, impl: pluggy.HookImpl, hook_name: str, kwargs: Mapping[str, Any]) -> None:
        """Call a ``register_*`` implementation; any failure is a ``PluginError`` naming the plugin."""
        try:
            self._call_sync(impl, hook_name, kwargs)
        except PluginError:
            raise
        except Exception as err:
            raise PluginError(f"plugin {impl.plugin_name!r} failed in {hook_name}: {err}") from err

    def _call_sync(self, impl: pluggy.HookImpl, hook_name: str, kwargs: Mapping[str, Any]) -> Any:
        """Call a synchronous hook's implementation; an awaitable is closed and refused."""
        result = impl.function(*[kwargs[arg] for arg in impl.argnames])
        if inspect.isawaitable(result):
            _close(result)
            raise PluginError(f"plugin {impl.plugin_name!r}: {hook_name} must not be async")
        if self._trace:
            self._trace_result(impl, hook_name, result)
        return result

    async def _notify(self, hook_name: str, kwargs: Mapping[str, Any], *, strict: bool = False) -> None:
        """Call every observer in order and await async ones; log and go on when one fails, unless ``strict``."""
        for impl in self._implementations(hook_name):
            try:
                result = impl.function(*[kwargs[arg] for arg in impl.argnames])
                if inspect.isawaitable(result):
                    result = await result
            except Exception as err:
                if strict:
                    err.add_note(f"raised by the {hook_name} hook of plugin {impl.plugin_name!r}")
                    raise
                log.exception("observer %s.%s failed (ignored)", impl.plugin_name, hook_name)
            else:
                if self._trace:
                    self._trace_result(impl, hook_name, result)

    @staticmethod
    def _trace_result(impl: pluggy.HookImpl, hook_name: str, result: Any) -> None:
        # A resolved parameter may be a secret: the trace tells which plugin answered, not what.
        shown = "<a value>" if hook_name == "resolve_parameter" and result is not None else reprlib.repr(result)
        log.info("hook %s: %s returned %s", hook_name, impl.plugin_name, shown)


def _close(awaitable: Any) -> None:
    close: Callable[[], None] | None = getattr(awaitable, "close", None)
    if close is not None:
        close()
