"""Configuration files: connectors by name, the webhook host, metrics.

TOML, YAML or JSON, validated against ``messaging_core/schemas/config.schema.json``. Strings may
reference environment variables (``${TWILIO_AUTH_TOKEN}``, ``${PORT:-8080}``). Every error names
the file, the connector and the JSON path. Channel-level checks (unknown channel or variant,
parameter types) need the installed plugins: ``ChannelRegistry.check_config`` does those.

.. code-block:: toml

    [connectors.sms]
    channel = "twilio_sms"
    schema = "SimpleSms"

    [connectors.sms.parameters]
    AccountSid = "${TWILIO_ACCOUNT_SID}"
    AuthToken = "${TWILIO_AUTH_TOKEN}"
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from attrs import field, frozen

from messaging_core.errors import ConfigurationError
from messaging_core.settings import ConnectionSettings, interpolate_env
from messaging_core.validation import ValidationIssue, validator_for

__all__ = [
    "ConnectorSpec",
    "MessagingConfig",
    "MetricsSettings",
    "WebhookSettings",
    "config_json_schema",
    "load_config",
    "parse_config",
]


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of configuration files."""
    text = resources.files("messaging_core.schemas").joinpath("config.schema.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


@frozen
class ConnectorSpec:
    """One connector of a configuration: which channel, which variant, which parameters."""

    name: str
    channel: str
    schema: str | None = None
    parameters: Mapping[str, Any] = field(factory=dict, converter=dict, repr=False)
    enabled: bool = True
    environment_defaults: bool = True
    """False: parameters left out are never read from ``<PROVIDER>_<PARAMETER>`` variables."""

    @classmethod
    def from_mapping(cls, name: str, data: Mapping[str, Any]) -> ConnectorSpec:
        return cls(
            name,
            data["channel"],
            data.get("schema"),
            dict(data.get("parameters") or {}),
            data.get("enabled", True),
            data.get("environment_defaults", True),
        )

    def settings(self, sensitive: frozenset[str] = frozenset()) -> ConnectionSettings:
        """The connection settings this spec gives (its parameters, its environment rule)."""
        return ConnectionSettings(self.parameters, sensitive=sensitive, environment_defaults=self.environment_defaults)


@frozen
class WebhookSettings:
    """The webhook host's settings."""

    public_url: str | None = None
    """Base URL the provider calls (``https://hooks.example.com``); signatures are checked against it."""
    trust_forwarded_headers: bool = False
    max_body_bytes: int = 256 * 1024
    request_timeout: float = 10.0
    host: str = "127.0.0.1"
    port: int = 8080
    readiness_cache_seconds: float = 5.0
    """How long ``/readyz`` reuses the connectors' last health check (provider calls) before checking again."""


@frozen
class MetricsSettings:
    """The ``[metrics]`` table: Prometheus metrics, off unless ``enabled`` (docs/observability.md)."""

    enabled: bool = False
    """Record metrics and answer ``GET /metrics`` (the webhook host on its own port, each worker on ``port``);
    needs the extra ``pluggable-messaging[metrics]``. Off: ``prometheus_client`` is never imported."""
    host: str = "127.0.0.1"
    """Interface of the workers' metrics endpoint."""
    port: int = 9464
    """Port of the workers' metrics endpoint: worker process ``i`` listens on ``port + i`` (0: any free port)."""


@frozen
class MessagingConfig:
    """A loaded configuration file."""

    connectors: Mapping[str, ConnectorSpec]
    webhooks: WebhookSettings = WebhookSettings()
    path: Path | None = None
    dispatcher: Mapping[str, Any] | None = None
    metrics: MetricsSettings = MetricsSettings()

    @property
    def where(self) -> str:
        return str(self.path) if self.path else "<config>"


def _read(path: Path) -> Any:
    try:
        text = path.read_text("utf-8")
    except OSError as err:
        raise ConfigurationError(f"{path}: cannot read the file ({err.strerror or err})") from err
    except UnicodeDecodeError as err:
        raise ConfigurationError(f"{path}: cannot read the file (not UTF-8 text at byte {err.start})") from err
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix in (".yaml", ".yml"):
            return yaml.safe_load(text)
        if suffix == ".json":
            return json.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigurationError(f"{path}: not valid TOML: {err}") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigurationError(f"{path}: not valid YAML{at}: {getattr(err, 'problem', err)}") from err
    except json.JSONDecodeError as err:
        raise ConfigurationError(f"{path}: not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from err
    raise ConfigurationError(f"{path}: unsupported file type {suffix or '(none)'!r}; use .toml, .yaml, .yml or .json")


def _interpolate(value: Any, path: str, environ: Mapping[str, str], problems: list[str]) -> Any:
    if isinstance(value, str):
        try:
            return interpolate_env(value, environ, where=path)
        except ConfigurationError as err:
            problems.append(str(err))
            return value
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}", environ, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", environ, problems) for i, v in enumerate(value)]
    return value


def _connector_of(path: str) -> str:
    parts = path.split(".")
    return f"connector {parts[2]!r}, " if len(parts) > 2 and parts[1] == "connectors" else ""


def parse_config(
    data: Any,
    *,
    where: str = "<config>",
    environ: Mapping[str, str] | None = None,
    only: Iterable[str] | None = None,
) -> MessagingConfig:
    """Validate and interpolate configuration data already read from a file.

    ``only`` keeps just the named connectors (the others' variables need not be set).
    """
    if only is not None and isinstance(data, dict) and isinstance(data.get("connectors"), dict):
        wanted = set(only)
        kept = {name: spec for name, spec in data["connectors"].items() if name in wanted}
        data = {**data, "connectors": kept or data["connectors"]}
    # Interpolate first (a "${PUBLIC_URL}" must be checked as the URL it becomes), then validate;
    # report the missing variables and the structural problems together.
    problems: list[str] = []
    data = _interpolate(data, "$", os.environ if environ is None else environ, problems)
    issues = [ValidationIssue(p.split(":", 1)[0], p.split(":", 1)[1].strip(), "MISSING_ENV") for p in problems]
    missing = {i.path for i in issues}
    issues += [i for i in validator_for(config_json_schema()).issues(data) if i.path not in missing]
    if issues:
        raise _error(where, sorted(issues, key=lambda i: i.path))
    connectors = {name: ConnectorSpec.from_mapping(name, spec) for name, spec in data["connectors"].items()}
    webhooks = WebhookSettings(**data.get("webhooks", {}))
    metrics = MetricsSettings(**data.get("metrics", {}))
    return MessagingConfig(connectors, webhooks, None, data.get("dispatcher"), metrics)


def _error(where: str, issues: list[ValidationIssue]) -> ConfigurationError:
    lines = "\n".join(f"  - {where}: {_connector_of(i.path)}{i.path}: {i.message}" for i in issues)
    return ConfigurationError(f"{where}: {len(issues)} problem(s) in the configuration\n{lines}", issues=issues)


def load_config(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    only: Iterable[str] | None = None,
) -> MessagingConfig:
    """Read, validate and interpolate a configuration file; raises ``ConfigurationError``.

    ``only`` names the connectors to load: a command that uses one connector does not require the
    environment variables of the others.
    """
    file = Path(path)
    config = parse_config(_read(file), where=str(file), environ=environ, only=only)
    return MessagingConfig(config.connectors, config.webhooks, file, config.dispatcher, config.metrics)


def config_error(config: MessagingConfig, issues: list[ValidationIssue]) -> ConfigurationError:
    """A ``ConfigurationError`` for issues found in ``config`` (used by the registry's checks)."""
    return _error(config.where, issues)
