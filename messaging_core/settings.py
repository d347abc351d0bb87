"""Connection settings: the parameter values a connector is created with."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from messaging_core.errors import ConfigurationError
from messaging_core.schema import ChannelSchema, ParameterSpec
from messaging_core.validation import IssueCodes, ValidationIssue, validator_for

__all__ = ["ENVIRONMENT_DEFAULTS", "REDACTED", "ConnectionSettings", "environment_sources", "interpolate_env"]

ENVIRONMENT_DEFAULTS: ContextVar[bool] = ContextVar("messaging_environment_defaults", default=True)
"""Whether a parameter the settings leave out may be read from ``<PROVIDER>_<PARAMETER>``: set by
``ConnectionSettings.resolved`` for the settings it resolves (a connector's
``environment_defaults = false`` in a configuration turns it off), read by the environment plugin."""

REDACTED = "***"

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate_env(value: str, environ: Mapping[str, str] | None = None, *, where: str = "value") -> str:
    """Replace ``${VAR}`` (or ``${VAR:-default}``) references with environment values.

    Raises ``ConfigurationError`` naming the variable and ``where`` when one is not set.
    """
    env = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigurationError(f"{where}: environment variable {name} is not set")

    return _ENV_REFERENCE.sub(replace, value) if "${" in value else value


class ConnectionSettings(Mapping[str, Any]):
    """Parameter values for a connector; sensitive values never show in ``repr`` or ``str``.

    ``ConnectionSettings({"AccountSid": ...}).add_parameter("AuthToken", token)`` — a fluent builder
    that returns the same object. Validate against a schema with ``validate(schema)``; get the
    values with the schema's defaults applied with ``resolved(schema)``.
    """

    __slots__ = ("_sensitive", "_values", "environment_defaults")

    def __init__(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        sensitive: frozenset[str] = frozenset(),
        environment_defaults: bool = True,
    ) -> None:
        self._values: dict[str, Any] = dict(values or {})
        self._sensitive = set(sensitive)
        self.environment_defaults = environment_defaults
        """False: a parameter left out is never read from the environment (``${VAR}`` references still are)."""

    def add_parameter(self, name: str, value: Any, *, sensitive: bool = False) -> ConnectionSettings:
        self._values[name] = value
        if sensitive:
            self._sensitive.add(name)
        return self

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ConnectionSettings):
            return self._values == other._values
        if isinstance(other, Mapping):
            return self._values == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def redacted(self, schema: ChannelSchema | None = None) -> dict[str, Any]:
        """The values with every sensitive one replaced by ``***``."""
        hidden = self._sensitive | (schema.sensitive_parameters if schema else set())
        return {k: (REDACTED if k in hidden or _looks_secret(k) else v) for k, v in self._values.items()}

    def __repr__(self) -> str:
        return f"ConnectionSettings({self.redacted()!r})"

    __str__ = __repr__

    def resolved(
        self,
        schema: ChannelSchema,
        resolve: Callable[[ChannelSchema, str, Any], Any] | None = None,
    ) -> dict[str, Any]:
        """Values with references resolved and the schema's defaults applied.

        ``resolve(schema, name, value)`` (the ``resolve_parameter`` hook) gets every parameter of
        the schema, with the value given or None, and returns the value to use (None: keep). A
        ``${VAR}`` reference left unresolved is a ``ConfigurationError``, never a value.
        """
        values = dict(self._values)
        scope = ENVIRONMENT_DEFAULTS.set(self.environment_defaults)
        try:
            for spec in schema.parameters:
                self._resolve_one(schema, spec, values, resolve)
        finally:
            ENVIRONMENT_DEFAULTS.reset(scope)
        return values

    @staticmethod
    def _resolve_one(
        schema: ChannelSchema,
        spec: ParameterSpec,
        values: dict[str, Any],
        resolve: Callable[[ChannelSchema, str, Any], Any] | None,
    ) -> None:
        current = values.get(spec.name)
        if resolve is not None:
            found = resolve(schema, spec.name, current)
            if found is not None:
                current = found
        if current is None and spec.default is not None:
            current = spec.default
        if current is not None:
            values[spec.name] = current
        if isinstance(current, str) and (reference := _ENV_REFERENCE.search(current)) is not None:
            # Nothing resolved it (a connector built without a registry has no environment
            # plugin): never hand the provider the literal reference as a credential.
            raise ConfigurationError(
                f"parameter {spec.name}: ${{{reference.group(1)}}} was not resolved; create the connector "
                "through a ChannelRegistry (its environment plugin expands it) or pass the value itself"
            )

    def issues(
        self, schema: ChannelSchema, *, root: str = "$", given: Mapping[str, Any] | None = None
    ) -> list[ValidationIssue]:
        """Every problem of these (already resolved) values against ``schema``.

        With ``given`` (the settings as written, before resolution), a problem of a parameter they
        did not give says where its value came from: ``from environment variable TWILIO_TIMEOUT``,
        or a ``resolve_parameter`` plugin.
        """
        validator = validator_for(schema.settings_json_schema())
        # JSON Schema knows arrays, not tuples: present sequences as lists.
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in self._values.items() if v is not None}
        issues = [_without_value(i) for i in validator.issues(values, root)]
        if given is None:
            return issues
        return [_with_source(i, schema, root, given) for i in issues]

    def validate(self, schema: ChannelSchema, *, where: str = "connection settings") -> None:
        """Raise ``ConfigurationError`` listing every issue."""
        issues = self.issues(schema)
        if issues:
            lines = "\n".join(f"  - {i}" for i in issues)
            raise ConfigurationError(f"{where}: {len(issues)} problem(s)\n{lines}", issues=issues)


_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def environment_variable(schema: ChannelSchema, parameter: str) -> str:
    """The variable a missing parameter is read from (``TWILIO_ACCOUNT_SID``)."""
    words = _CAMEL_BOUNDARY.sub("_", parameter)
    return f"{schema.provider}_{words}".upper().replace("-", "_")


def environment_sources(schema: ChannelSchema, given: Mapping[str, Any]) -> dict[str, str]:
    """``{parameter: variable}`` for each parameter ``given`` leaves out that the environment fills.

    What ``config validate`` reports, so that a value picked up from the shell is never silent;
    empty when ``given`` is ``ConnectionSettings(..., environment_defaults=False)``.
    """
    if isinstance(given, ConnectionSettings) and not given.environment_defaults:
        return {}
    found = {}
    for spec in schema.parameters:
        variable = environment_variable(schema, spec.name)
        if given.get(spec.name) is None and variable in os.environ:
            found[spec.name] = variable
    return found


def _with_source(issue: ValidationIssue, schema: ChannelSchema, root: str, given: Mapping[str, Any]) -> ValidationIssue:
    """``issue``, naming where the value came from when the settings did not give it."""
    name = re.split(r"[.\[]", issue.path.removeprefix(f"{root}."), maxsplit=1)[0]
    spec = schema.parameter_spec(name)
    if spec is None or given.get(name) is not None:
        return issue
    variable = environment_variable(schema, name)
    defaults = given.environment_defaults if isinstance(given, ConnectionSettings) else True
    if defaults and variable in os.environ:
        source = f"from environment variable {variable}"
    elif spec.default is None:
        source = "from a resolve_parameter plugin"
    else:
        return issue
    return ValidationIssue(issue.path, f"{issue.message} (not in the settings: {source})", issue.code)


def _looks_secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in ("token", "secret", "password", "apikey", "api_key"))


def _without_value(issue: ValidationIssue) -> ValidationIssue:
    # Our issue messages never echo values; this is where that promise is kept for settings.
    if issue.code == IssueCodes.UNKNOWN_FIELD:
        return ValidationIssue(issue.path, "is not a parameter of this schema", issue.code)
    return issue
