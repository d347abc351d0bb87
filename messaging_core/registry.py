"""The channel registry: discovers plugins, lists channels, creates connectors from specs.

``ChannelRegistry.discover()`` loads every plugin of the ``messaging_core`` entry-point group (a
plugin that fails to import is reported by name in ``load_errors`` and the others still load);
``ChannelRegistry(plugins=[...])`` registers plugin objects directly (tests, embedding).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from attrs import evolve, field, frozen

from messaging_core import converters
from messaging_core.campaigns.protocols import Dispatcher, SendLedger, StatusStore
from messaging_core.campaigns.registrations import DispatcherRegistration, DispatcherSettings, StoreRegistration
from messaging_core.config import ConnectorSpec, MessagingConfig, config_error, config_json_schema, load_config
from messaging_core.connector import ChannelConnector
from messaging_core.default_plugins import dispatchers, environment, memory
from messaging_core.emulation import EmulatorRegistration
from messaging_core.errors import ConfigurationError, PluginError
from messaging_core.plugins import PluginHost, PluginLoadFailure
from messaging_core.schema import Capability, ChannelSchema
from messaging_core.settings import ConnectionSettings
from messaging_core.validation import IssueCodes, ValidationIssue

__all__ = ["STRICT_PLUGINS_ENV", "ChannelInfo", "ChannelRegistry", "PluginInfo"]

STRICT_PLUGINS_ENV = "MESSAGING_STRICT_PLUGINS"
"""Set to ``1`` to make any plugin problem an error (``ChannelRegistry.discover(strict=True)``), e.g. in CI."""


_BUILTIN_PLUGINS: tuple[tuple[str, object], ...] = (
    ("environment", environment),
    ("memory", memory),
    ("dispatchers", dispatchers),
)
"""The plugins every registry starts with (unless ``builtins=False``), by name, in order."""


@frozen
class ChannelInfo:
    """A registered channel."""

    name: str
    plugin: str
    connector_class: type[ChannelConnector] = field(repr=False)
    master_schema: ChannelSchema = field(repr=False)
    variants: Mapping[str, ChannelSchema] = field(repr=False)
    """Every schema by name, the master schema included."""
    aliases: tuple[str, ...] = ()
    """Other names of the channel (``channel_aliases``), those that name no other channel."""

    @property
    def capabilities(self) -> Capability:
        return self.master_schema.capabilities

    @property
    def master_variant(self) -> str:
        return next(name for name, schema in self.variants.items() if schema == self.master_schema)


class ChannelRegistry:
    """Channels contributed by plugins, and the factory of their connectors."""

    def __init__(
        self, plugins: Iterable[object] = (), *, host: PluginHost | None = None, builtins: bool = True
    ) -> None:
        """Register ``plugins`` on ``host``, or on a new host holding the built-in plugins (unless
        ``builtins=False``: then no channel, not even ``memory``, and no environment lookup)."""
        if host is None:
            host = PluginHost()
            for name, plugin in _BUILTIN_PLUGINS if builtins else ():
                host.register(plugin, name=name)
        self.host = host
        for plugin in plugins:
            host.register(plugin)
        self._channels: dict[str, ChannelInfo] | None = None
        self._aliases: dict[str, str] = {}
        self._dispatchers: tuple[dict[str, DispatcherRegistration], dict[str, StoreRegistration]] | None = None

    @classmethod
    def discover(
        cls,
        *,
        blocked: Iterable[str] | None = None,
        plugins: Iterable[object] = (),
        builtins: bool = True,
        strict: bool | None = None,
    ) -> ChannelRegistry:
        """A registry with every installed plugin (entry points of group ``messaging_core``).

        ``blocked`` names entry points to skip (default: ``$MESSAGING_BLOCK_PLUGINS``, comma-separated).
        A plugin that fails (to import, to register, a schema that is not a restriction, a channel
        another plugin also registers) is recorded in ``load_errors`` and left out, and the others
        work; ``strict`` (default: ``$MESSAGING_STRICT_PLUGINS`` set to 1) raises ``PluginError`` instead.
        """
        if strict is None:
            strict = os.environ.get(STRICT_PLUGINS_ENV, "").strip() not in ("", "0")
        registry = cls(plugins, builtins=builtins, host=PluginHost(strict=strict) if strict else None)
        if strict:
            for name, plugin in _BUILTIN_PLUGINS if builtins else ():
                registry.host.register(plugin, name=name)
        registry.host.load_entrypoints(blocked=blocked)
        return registry

    @property
    def load_errors(self) -> list[PluginLoadFailure]:
        """Plugins that failed to load, by name, with the error."""
        return list(self.host.load_errors)

    # -- channels ----------------------------------------------------------------------------------

    def _load(self) -> dict[str, ChannelInfo]:
        """The channels, each plugin's problems recorded against it (``load_errors``) and left out."""
        if self._channels is None:
            channels: dict[str, ChannelInfo] = {}
            twice: set[str] = set()
            for plugin, cls in self.host.register_connectors():
                try:
                    info = _check_registration(plugin, cls)
                except PluginError as err:
                    self.host.record_failure(plugin, str(err).removeprefix(f"plugin {plugin!r}").lstrip(", :"))
                    continue
                if info.name in channels or info.name in twice:
                    # Neither is the channel: which one a configuration means cannot be guessed.
                    first = channels.pop(info.name, None)
                    for who in [*([first.plugin] if first else []), plugin]:
                        self.host.record_failure(who, f"channel {info.name!r} is registered by more than one plugin")
                    twice.add(info.name)
                    continue
                channels[info.name] = info
            self._channels = self._with_aliases(channels)
        return self._channels

    def _with_aliases(self, channels: dict[str, ChannelInfo]) -> dict[str, ChannelInfo]:
        """Index the channels' aliases; an alias that could mean two channels is recorded and dropped."""
        claims: dict[str, list[ChannelInfo]] = {}
        for info in channels.values():
            for alias in info.aliases:
                claims.setdefault(alias, []).append(info)
        for alias, claimants in claims.items():
            if alias in channels:
                problem = f"alias {alias!r} of channel {claimants[0].name!r} is the name of another channel"
            elif len(claimants) > 1:
                problem = f"alias {alias!r} is declared by more than one channel"
            else:
                self._aliases[alias] = claimants[0].name
                continue
            for info in claimants:
                self.host.record_failure(info.plugin, problem)
        return {
            name: evolve(info, aliases=tuple(a for a in info.aliases if self._aliases.get(a) == name))
            for name, info in channels.items()
        }

    def channel_name(self, name: str) -> str:
        """The channel ``name`` means: ``name`` itself, or the channel it is an alias of (unknown names unchanged)."""
        self._load()
        return self._aliases.get(name, name)

    def channels(self) -> list[ChannelInfo]:
        """Every registered channel, sorted by name."""
        return sorted(self._load().values(), key=lambda info: info.name)

    def channel(self, name: str) -> ChannelInfo:
        """A channel by name or alias; ``ConfigurationError`` naming the known ones when unknown."""
        channels = self._load()
        name = self._aliases.get(name, name)
        if name not in channels:
            known = ", ".join(sorted(channels)) or "none"
            problems = "".join(f"; {failure}" for failure in self.load_errors)
            raise ConfigurationError(f"unknown channel {name!r} (installed: {known}){problems}")
        return channels[name]

    def schema(self, channel: str, variant: str | None = None) -> ChannelSchema:
        """The schema of ``channel`` named ``variant`` (default: the master schema)."""
        info = self.channel(channel)
        if variant is None:
            return info.master_schema
        if variant not in info.variants:
            raise ConfigurationError(
                f"channel {channel!r} has no schema variant {variant!r} (variants: {', '.join(info.variants)})"
            )
        return info.variants[variant]

    def plugins(self) -> list[PluginInfo]:
        """Every plugin: distribution and version, the hooks it implements, its channels, its problems."""
        channels: dict[str, list[str]] = {}
        for info in self._load().values():
            channels.setdefault(info.plugin, []).append(info.name)
        problems: dict[str, list[str]] = {}
        for failure in self.load_errors:
            problems.setdefault(failure.name, []).append(failure.error)
        names = [*self.host.plugin_names(), *(f.name for f in self.load_errors)]
        found = []
        for name in dict.fromkeys(names):
            distribution = self.host.distribution_of(name)
            found.append(
                PluginInfo(
                    name,
                    distribution,
                    _version(distribution),
                    tuple(self.host.hooks_of(name)),
                    tuple(sorted(channels.get(name, ()))),
                    tuple(problems.get(name, ())),
                )
            )
        return found

    def emulators(self) -> dict[str, EmulatorRegistration]:
        """Emulators contributed by plugins, by channel."""
        return {registration.channel: registration for registration in self.host.register_emulators()}

    # -- dispatchers -------------------------------------------------------------------------------

    def _load_dispatchers(self) -> tuple[dict[str, DispatcherRegistration], dict[str, StoreRegistration]]:
        if self._dispatchers is None:
            kinds: dict[str, tuple[str, DispatcherRegistration]] = {}
            schemes: dict[str, tuple[str, StoreRegistration]] = {}
            # Plugins are untyped input: whatever they registered is checked here.
            registered: list[tuple[str, object]] = list(self.host.register_dispatchers())
            for plugin, registration in registered:
                if isinstance(registration, DispatcherRegistration):
                    found: dict[str, Any] = kinds
                    name, what = registration.kind, "dispatcher kind"
                elif isinstance(registration, StoreRegistration):
                    found, name, what = schemes, registration.scheme.lower(), "store scheme"
                else:
                    self.host.record_failure(
                        plugin,
                        f"registered {registration!r:.80}, which is neither a DispatcherRegistration "
                        "nor a StoreRegistration",
                    )
                    continue
                if not name:
                    self.host.record_failure(plugin, f"registered a {what} without a name")
                    continue
                if name in found:
                    first = found[name][0]
                    self.host.record_failure(plugin, f"{what} {name!r} is also registered by plugin {first!r}")
                    continue
                found[name] = (plugin, registration)
            self._dispatchers = (
                {kind: registration for kind, (_, registration) in kinds.items()},
                {scheme: registration for scheme, (_, registration) in schemes.items()},
            )
        return self._dispatchers

    def dispatchers(self) -> dict[str, DispatcherRegistration]:
        """Dispatcher kinds contributed by plugins (``inprocess`` is built in), by kind."""
        return dict(self._load_dispatchers()[0])

    def store_schemes(self) -> dict[str, StoreRegistration]:
        """Stores reachable by URL contributed by plugins (``memory`` is built in), by URL scheme."""
        return dict(self._load_dispatchers()[1])

    def create_dispatcher(
        self, config: MessagingConfig | Mapping[str, Any] | None, connector: ChannelConnector
    ) -> Dispatcher:
        """The dispatcher a ``[dispatcher]`` table describes, sending through ``connector``.

        ``config`` is a loaded configuration (its ``dispatcher`` table), the table itself, or
        None; without a table the dispatcher is ``inprocess`` with memory stores. Raises
        ``ConfigurationError`` for an unknown kind (naming the installed ones), an unknown store
        scheme, or options the kind refuses.
        """
        table = config.dispatcher if isinstance(config, MessagingConfig) else config
        kinds, schemes = self._load_dispatchers()
        settings = DispatcherSettings.from_mapping(table or {"kind": "inprocess"}, schemes)
        registration = kinds.get(settings.kind)
        if registration is None:
            known = ", ".join(sorted(kinds)) or "none"
            raise ConfigurationError(
                f"[dispatcher]: unknown kind {settings.kind!r} (installed: {known}); "
                "is the plugin that provides it installed?"
            )
        return registration.create(connector, settings)

    # -- connectors --------------------------------------------------------------------------------

    def spec_issues(self, spec: ConnectorSpec, *, root: str = "$") -> list[ValidationIssue]:
        """Every problem of a connector spec: unknown channel or variant, parameter issues."""
        try:
            info = self.channel(spec.channel)
        except ConfigurationError as err:
            return [ValidationIssue(f"{root}.channel", str(err), IssueCodes.NOT_ALLOWED)]
        try:
            schema = self.schema(spec.channel, spec.schema)
        except ConfigurationError as err:
            return [ValidationIssue(f"{root}.schema", str(err), IssueCodes.NOT_ALLOWED)]
        del info
        settings = spec.settings(schema.sensitive_parameters)
        try:
            resolved = settings.resolved(schema, self.host.resolve_parameter)
        except ConfigurationError as err:
            return [ValidationIssue(f"{root}.parameters", str(err), "MISSING_ENV")]
        return ConnectionSettings(resolved).issues(schema, root=f"{root}.parameters", given=settings)

    def create_connector(self, spec: ConnectorSpec | Mapping[str, Any], *, name: str | None = None) -> ChannelConnector:
        """Build a connector from ``{"channel": ..., "schema": ..., "parameters": {...}}``.

        Raises ``ConfigurationError`` listing every problem (nothing is connected yet: call
        ``initialize()`` or use ``async with``).
        """
        if not isinstance(spec, ConnectorSpec):
            unknown = set(spec) - {"channel", "schema", "parameters", "name", "enabled", "environment_defaults"}
            if unknown or "channel" not in spec:
                problem = f"unknown keys {sorted(unknown)}" if unknown else "'channel' is required"
                raise ConfigurationError(f"connector spec: {problem}")
            spec = ConnectorSpec.from_mapping(name or str(spec.get("name") or spec["channel"]), spec)
        issues = self.spec_issues(spec)
        if issues:
            lines = "\n".join(f"  - {i}" for i in issues)
            raise ConfigurationError(f"connector {spec.name!r}: {len(issues)} problem(s)\n{lines}", issues=issues)
        info = self.channel(spec.channel)
        schema = self.schema(spec.channel, spec.schema)
        return info.connector_class(
            schema, spec.settings(schema.sensitive_parameters), plugins=self.host, name=spec.name
        )

    def check_config(self, config: MessagingConfig) -> list[ValidationIssue]:
        """Every channel-level problem of a loaded configuration (paths into the file)."""
        issues: list[ValidationIssue] = []
        for name, spec in config.connectors.items():
            issues.extend(self.spec_issues(spec, root=f"$.connectors.{name}"))
        return issues

    def check_config_file(self, path: str | os.PathLike[str]) -> tuple[MessagingConfig | None, list[ValidationIssue]]:
        """Every problem of a configuration file: its structure, unset variables and channel-level checks.

        Returns the loaded configuration (None when it has problems) and the problems, sorted by
        path. Loading stops at unset variables; to report the channel-level problems of the rest
        of the file too, it is loaded again with stand-ins for them (problems of those values are
        left out). Raises ``ConfigurationError`` only for a file that cannot be read at all.
        """
        try:
            loaded = load_config(path)
        except ConfigurationError as err:
            if not err.issues:
                raise  # unreadable, not TOML/YAML/JSON...: one line
            issues = list(err.issues)
        else:
            found = self.check_config(loaded)
            return (None if found else loaded), found
        unset = {issue.path for issue in issues if issue.code == "MISSING_ENV"}
        names = {m.group(1) for issue in issues if (m := _MISSING_VARIABLE.search(issue.message))}
        if len(unset) != len(issues) or not names:
            return None, issues  # structural problems: the channel checks need a well-formed file
        try:
            loaded = load_config(path, environ=_StandIns(names))
        except ConfigurationError:
            return None, issues

        def affected(issue_path: str) -> bool:
            return any(issue_path == p or issue_path.startswith((p + ".", p + "[")) for p in unset)

        issues += [issue for issue in self.check_config(loaded) if not affected(issue.path)]
        return None, sorted(issues, key=lambda issue: issue.path)

    def create_ledger(self, config: MessagingConfig) -> SendLedger | None:
        """The send ledger the ``[dispatcher]`` table names (``ledger = "postgresql://…"``), or None.

        ``messaging status`` attaches it to the connector, so that a status query by our id finds
        the provider id a campaign recorded, from any process.
        """
        table = dict(config.dispatcher or {})
        if table.get("ledger") in (None, "memory"):
            return None
        table.setdefault("kind", "inprocess")
        return DispatcherSettings.from_mapping(table, self.store_schemes()).create_ledger()

    def create_status_store(self, config: MessagingConfig, url: str | None = None) -> StatusStore | None:
        """The status store ``url`` names, else the ``[dispatcher]`` table's; None when neither names one.

        Built by the store schemes plugins register (``postgresql://`` comes with
        pluggable-messaging-scale), with the table's other keys as options.
        """
        table = dict(config.dispatcher or {"kind": "inprocess"})
        if url is not None:
            table["status_store"] = url
        if table.get("status_store") is None:
            return None
        return DispatcherSettings.from_mapping(table, self.store_schemes()).create_status_store()

    def export_schemas(self, directory: str | os.PathLike[str], *, channels: Iterable[str] = ()) -> list[Path]:
        """Write the JSON exports of every registered schema and the meta-schemas into ``directory``.

        One file per channel variant (``<channel>.<variant>.json``: the schema, its settings and
        message JSON Schemas) plus ``channel-schema.schema.json`` and ``config.schema.json``.
        With ``channels`` (names or aliases), only those channels' variants are written (an unknown
        one is a ``ConfigurationError`` before anything is written).
        """
        wanted = {self.channel(name).name for name in channels}
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []

        def write(name: str, document: Any) -> None:
            target = folder / name
            target.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            written.append(target)

        if not wanted:
            write("channel-schema.schema.json", converters.meta_schema())
            write("config.schema.json", config_json_schema())
        for info in self.channels():
            if wanted and info.name not in wanted:
                continue
            for variant, found in info.variants.items():
                write(
                    f"{info.name}.{variant}.json",
                    {
                        "channel": info.name,
                        "variant": variant,
                        "schema": converters.schema_to_document(found),
                        "settings": found.settings_json_schema(),
                        "message": found.message_json_schema(),
                    },
                )
        return written

    def create_connectors(self, config: MessagingConfig | str | os.PathLike[str]) -> dict[str, ChannelConnector]:
        """Connectors of every enabled connector of a configuration (a loaded one or a path)."""
        if isinstance(config, str | os.PathLike | Path):
            config = load_config(config)
        issues = self.check_config(config)
        if issues:
            raise config_error(config, issues)
        return {name: self.create_connector(spec) for name, spec in config.connectors.items() if spec.enabled}


_MISSING_VARIABLE = re.compile(r"environment variable ([A-Za-z_][A-Za-z0-9_]*) is not set")


class _StandIns(Mapping[str, str]):
    """The environment, plus a stand-in value for each of ``missing`` (variables that are not set)."""

    def __init__(self, missing: set[str]) -> None:
        self._missing = missing

    def __getitem__(self, name: str) -> str:
        if name in os.environ:
            return os.environ[name]
        if name in self._missing:
            return "unset"
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter({*os.environ, *self._missing})

    def __len__(self) -> int:
        return len({*os.environ, *self._missing})


@frozen
class PluginInfo:
    """What ``messaging plugins`` shows about one plugin."""

    name: str
    distribution: str | None
    """The distribution its entry point came from; None for a built-in or a plugin registered in code."""
    version: str | None
    hooks: tuple[str, ...]
    channels: tuple[str, ...]
    problems: tuple[str, ...]
    """Why it (or part of what it registers) was left out; empty when it loaded cleanly."""


def _version(distribution: str | None) -> str | None:
    if distribution is None:
        return None
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _check_registration(plugin: str, cls: Any) -> ChannelInfo:
    if not (isinstance(cls, type) and issubclass(cls, ChannelConnector)):
        raise PluginError(f"plugin {plugin!r} registered {cls!r}, which is not a ChannelConnector subclass")
    name = getattr(cls, "channel_name", None)
    master = getattr(cls, "master_schema", None)
    if not isinstance(name, str) or not name:
        raise PluginError(f"plugin {plugin!r}: {cls.__name__}.channel_name must be a non-empty string")
    if not isinstance(master, ChannelSchema):  # plugins are untyped input: check anyway
        raise PluginError(f"plugin {plugin!r}: {cls.__name__}.master_schema must be a ChannelSchema")
    variants: dict[str, Any] = dict(getattr(cls, "schema_variants", {}) or {})
    problems = []
    for variant, schema in variants.items():
        if not isinstance(schema, ChannelSchema):
            problems.append(f"variant {variant!r} is not a ChannelSchema")
            continue
        problems.extend(f"variant {variant!r}: {p}" for p in schema.validate_as_restriction_of(master))
    if problems:
        raise PluginError(f"plugin {plugin!r}, channel {name!r}: " + "; ".join(problems))
    if master not in variants.values():
        variants = {"default": master, **variants}
    aliases = getattr(cls, "channel_aliases", ())
    if not isinstance(aliases, tuple) or not all(isinstance(a, str) and a and a != name for a in aliases):
        raise PluginError(
            f"plugin {plugin!r}: {cls.__name__}.channel_aliases must be a tuple of non-empty names other than {name!r}"
        )
    return ChannelInfo(name, plugin, cls, master, variants, tuple(dict.fromkeys(aliases)))
