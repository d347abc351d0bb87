"""Channel schemas: what a channel can do, what it needs, and what a valid message looks like.

A ``ChannelSchema`` is declarative data. It compiles (once, lazily) to three JSON Schema (draft
2020-12) documents: the connection settings, the message properties, and a whole message. Variants
of a schema are made with ``derive`` (never by mutation) and checked with
``validate_as_restriction_of``.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from attrs import field, frozen

from messaging_core.errors import SchemaError
from messaging_core.message import ContentType, EndpointType

__all__ = [
    "Capability",
    "ChannelSchema",
    "DataType",
    "EndpointSpec",
    "ParameterSpec",
    "PropertySpec",
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class Capability(enum.Flag):
    """What a connector can do. Operations outside the schema's capabilities raise."""

    # New flags go last: documents name them, but their values must stay put.

    NONE = 0
    SEND_MESSAGES = enum.auto()
    RECEIVE_MESSAGES = enum.auto()
    MESSAGE_STATUS_QUERY = enum.auto()
    HANDLE_MESSAGE_STATE = enum.auto()
    """Receive status callbacks (delivery reports) pushed by the provider."""
    MEDIA_ATTACHMENTS = enum.auto()
    TEMPLATES = enum.auto()
    BULK_MESSAGING = enum.auto()
    HEALTH_CHECK = enum.auto()
    SCHEDULED_SENDING = enum.auto()
    """A message may name a future send time (its ``SendAt`` property: ISO 8601 with an offset) and
    be cancelled before then (``cancel_scheduled``)."""

    @classmethod
    def from_names(cls, names: Iterable[str]) -> Capability:
        """Combine capabilities given by name (``["SEND_MESSAGES", ...]``)."""
        result = cls.NONE
        for name in names:
            try:
                result |= cls[name]
            except KeyError:
                raise SchemaError(f"unknown capability {name!r}") from None
        return result

    def names(self) -> list[str]:
        """The names of the single flags set, in declaration order."""
        return [member.name for member in type(self) if member.value and member in self and member.name]


class DataType(enum.StrEnum):
    """Type of a parameter or property value. ``bool`` is never an integer or a number; ``int`` is a number."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"

    def accepts(self, value: Any) -> bool:
        """Whether a Python value has this type."""
        if isinstance(value, bool):
            return self is DataType.BOOLEAN
        if self is DataType.INTEGER:
            return isinstance(value, int)
        if self is DataType.NUMBER:
            return isinstance(value, int | float)
        if self is DataType.STRING:
            return isinstance(value, str)
        return False


def _frozen_default(value: Any) -> Any:
    # Lists become tuples so that specs (and schemas) stay hashable and comparable.
    return tuple(value) if isinstance(value, list) else value


def _tuple_or_none(value: Iterable[Any] | None) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


@frozen
class _ValueSpec:
    """Fields shared by parameters and properties."""

    name: str
    data_type: DataType = field(default=DataType.STRING, converter=DataType)
    required: bool = False
    description: str = ""
    default: Any = field(default=None, converter=_frozen_default)
    allowed_values: tuple[Any, ...] | None = field(default=None, converter=_tuple_or_none)
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    format: str | None = None
    """A JSON Schema format name (``uri``, ``email``, ``date-time``...)."""
    repeated: bool = False
    """The value is a list of ``data_type`` values (a repeated form key on the wire)."""
    single_allowed: bool = False
    """With ``repeated``: one value alone is accepted too, as a list of one."""

    def json_schema(self) -> dict[str, Any]:
        """This spec as a JSON Schema fragment."""
        item: dict[str, Any] = {"type": self.data_type.value}
        if self.allowed_values is not None:
            item["enum"] = list(self.allowed_values)
        for key, value in (
            ("minimum", self.minimum),
            ("maximum", self.maximum),
            ("minLength", self.min_length),
            ("maxLength", self.max_length),
            ("pattern", self.pattern),
            ("format", self.format),
        ):
            if value is not None:
                item[key] = value
        schema = {"type": "array", "items": item} if self.repeated else item
        if self.repeated and self.single_allowed:
            schema = {"anyOf": [item, schema]}
        if self.description:
            schema["description"] = self.description
        return schema

    def restriction_issues(self, base: _ValueSpec, where: str) -> list[str]:
        """Every way this spec loosens ``base``."""
        issues = []
        if self.data_type != base.data_type or self.repeated != base.repeated:
            issues.append(f"{where}: type changed")
        if self.single_allowed and not base.single_allowed:
            issues.append(f"{where}: accepts one value alone, the base only a list")
        if base.required and not self.required:
            issues.append(f"{where}: required in the base, optional here")
        if base.allowed_values is not None and (
            self.allowed_values is None or not set(self.allowed_values) <= set(base.allowed_values)
        ):
            issues.append(f"{where}: allows values the base does not")
        for attr in ("minimum", "min_length"):
            mine, theirs = getattr(self, attr), getattr(base, attr)
            if theirs is not None and (mine is None or mine < theirs):
                issues.append(f"{where}: {attr} lower than the base's {theirs}")
        for attr in ("maximum", "max_length"):
            mine, theirs = getattr(self, attr), getattr(base, attr)
            if theirs is not None and (mine is None or mine > theirs):
                issues.append(f"{where}: {attr} higher than the base's {theirs}")
        for attr in ("pattern", "format"):
            theirs = getattr(base, attr)
            if theirs is not None and getattr(self, attr) != theirs:
                issues.append(f"{where}: {attr} differs from the base's")
        return issues


@frozen
class ParameterSpec(_ValueSpec):
    """A connection setting (credentials, URLs, limits)."""

    sensitive: bool = False
    """A secret: never shown in reprs, logs or errors."""

    def restriction_issues(self, base: _ValueSpec, where: str) -> list[str]:
        issues = super().restriction_issues(base, where)
        if isinstance(base, ParameterSpec) and base.sensitive and not self.sensitive:
            issues.append(f"{where}: sensitive in the base, not here")
        return issues


@frozen
class PropertySpec(_ValueSpec):
    """A per-message property (``ValidityPeriod``, ``MaxPrice``...)."""


def _rules(value: Iterable[Iterable[str]]) -> tuple[tuple[str, str], ...]:
    return tuple((pattern, meaning) for pattern, meaning in value)


@frozen
class EndpointSpec:
    """An endpoint type a channel supports.

    ``can_send``: messages sent through the channel may use it (as sender or receiver).
    ``can_receive``: the channel receives messages addressed to it.
    ``required``: an outgoing message must name a sender of this type.
    ``sender_only``: an outgoing message may name it as its sender, never as its receiver (an
    alphanumeric sender ID, which nobody can send to or reply to).
    """

    type: EndpointType = field(converter=EndpointType)
    can_send: bool = True
    can_receive: bool = True
    required: bool = False
    address_pattern: str | None = None
    """A regular expression every address of this type must match (E.164 for phones, say)."""
    sender_only: bool = False
    max_length: int | None = None
    """Most characters an address of this type may have."""
    address_rules: tuple[tuple[str, str], ...] = field(default=(), converter=_rules)
    """More rules as ``(pattern, what it means)``, each its own issue when broken: the meaning is
    the issue's message (``("[A-Za-z]", "must contain at least one letter")``)."""


def _capability(value: Capability | Iterable[str]) -> Capability:
    return value if isinstance(value, Capability) else Capability.from_names(value)


def _content_types(value: Iterable[ContentType | str]) -> frozenset[ContentType]:
    return frozenset(ContentType(v) for v in value)


def _specs(value: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(value)


@frozen
class ChannelSchema:
    """What a channel is, can do, needs, and accepts. Immutable; derive variants with ``derive``."""

    provider: str
    channel_type: str
    version: str
    display_name: str
    capabilities: Capability = field(converter=_capability)
    parameters: tuple[ParameterSpec, ...] = field(default=(), converter=_specs)
    properties: tuple[PropertySpec, ...] = field(default=(), converter=_specs)
    content_types: frozenset[ContentType] = field(default=frozenset({ContentType.TEXT}), converter=_content_types)
    endpoints: tuple[EndpointSpec, ...] = field(default=(), converter=_specs)
    auth_types: tuple[str, ...] = field(default=(), converter=_specs)
    strict: bool = True
    """Unknown parameters and properties are errors (not silently ignored)."""
    max_text_length: int | None = None
    max_media: int | None = None
    """Most media parts one message may carry."""

    def __attrs_post_init__(self) -> None:
        for kind, specs in (("parameter", self.parameters), ("property", self.properties)):
            names = [s.name for s in specs]
            duplicates = {n for n in names if names.count(n) > 1}
            if duplicates:
                raise SchemaError(f"{self.logical_identity}: duplicate {kind} names {sorted(duplicates)}")
        endpoint_types = [e.type for e in self.endpoints]
        if len(set(endpoint_types)) != len(endpoint_types):
            raise SchemaError(f"{self.logical_identity}: duplicate endpoint types")

    @property
    def logical_identity(self) -> str:
        """``provider/type/version``: variants share it with their base."""
        return f"{self.provider}/{self.channel_type}/{self.version}"

    def has(self, capability: Capability) -> bool:
        """Whether every flag of ``capability`` is in this schema."""
        return capability in self.capabilities

    def parameter_spec(self, name: str) -> ParameterSpec | None:
        return next((p for p in self.parameters if p.name == name), None)

    def property_spec(self, name: str) -> PropertySpec | None:
        return next((p for p in self.properties if p.name == name), None)

    def endpoint_spec(self, endpoint_type: EndpointType | str) -> EndpointSpec | None:
        wanted = EndpointType(endpoint_type)
        return next((e for e in self.endpoints if e.type == wanted), None)

    @property
    def sensitive_parameters(self) -> frozenset[str]:
        return frozenset(p.name for p in self.parameters if p.sensitive)

    # -- derivation -------------------------------------------------------------------------------

    def derive(
        self,
        display_name: str,
        *,
        remove_capabilities: Capability = Capability.NONE,
        remove_parameters: Iterable[str] = (),
        remove_properties: Iterable[str] = (),
        remove_content_types: Iterable[ContentType | str] = (),
        remove_endpoints: Iterable[EndpointType | str] = (),
        update_parameters: Mapping[str, Mapping[str, Any]] | None = None,
        update_properties: Mapping[str, Mapping[str, Any]] | None = None,
        update_endpoints: Mapping[EndpointType | str, Mapping[str, Any]] | None = None,
        max_text_length: int | None = None,
        max_media: int | None = None,
    ) -> ChannelSchema:
        """A new schema based on this one; everything not removed or updated is kept as is.

        Raises ``SchemaError`` when a name to remove or update does not exist (a typo would
        otherwise silently keep what was meant to go).
        """
        removed_params = self._known(set(remove_parameters), {p.name for p in self.parameters}, "parameter")
        removed_props = self._known(set(remove_properties), {p.name for p in self.properties}, "property")
        removed_endpoints = {EndpointType(e) for e in remove_endpoints}
        self._known(removed_endpoints, {e.type for e in self.endpoints}, "endpoint")
        param_updates = dict(update_parameters or {})
        prop_updates = dict(update_properties or {})
        endpoint_updates = {EndpointType(k): v for k, v in (update_endpoints or {}).items()}
        self._known(set(param_updates), {p.name for p in self.parameters} - removed_params, "parameter")
        self._known(set(prop_updates), {p.name for p in self.properties} - removed_props, "property")
        self._known(set(endpoint_updates), {e.type for e in self.endpoints} - removed_endpoints, "endpoint")
        return attrs.evolve(
            self,
            display_name=display_name,
            capabilities=self.capabilities & ~remove_capabilities,
            parameters=tuple(
                attrs.evolve(p, **param_updates.get(p.name, {}))
                for p in self.parameters
                if p.name not in removed_params
            ),
            properties=tuple(
                attrs.evolve(p, **prop_updates.get(p.name, {})) for p in self.properties if p.name not in removed_props
            ),
            content_types=self.content_types - {ContentType(c) for c in remove_content_types},
            endpoints=tuple(
                attrs.evolve(e, **endpoint_updates.get(e.type, {}))
                for e in self.endpoints
                if e.type not in removed_endpoints
            ),
            max_text_length=self.max_text_length if max_text_length is None else max_text_length,
            max_media=self.max_media if max_media is None else max_media,
        )

    def _known(self, names: set[Any], known: set[Any], kind: str) -> set[Any]:
        unknown = names - known
        if unknown:
            raise SchemaError(f"{self.logical_identity}: cannot derive, unknown {kind}(s) {sorted(map(str, unknown))}")
        return names

    def validate_as_restriction_of(self, base: ChannelSchema) -> list[str]:
        """Every way this schema is *not* a restriction of ``base`` (empty when it is one)."""
        issues: list[str] = []
        if (self.provider, self.channel_type, self.version) != (
            base.provider,
            base.channel_type,
            base.version,
        ):
            issues.append(f"identity {self.logical_identity} differs from {base.logical_identity}")
        extra = self.capabilities & ~base.capabilities
        if extra:
            issues.append(f"capabilities not in the base: {extra.names()}")
        if base.strict and not self.strict:
            issues.append("strict in the base, not here")
        for kind, mine, theirs in (
            ("parameter", self.parameters, base.parameters),
            ("property", self.properties, base.properties),
        ):
            base_specs: dict[str, _ValueSpec] = {s.name: s for s in theirs}
            for spec in mine:
                if spec.name not in base_specs:
                    issues.append(f"{kind} {spec.name!r} is not in the base")
                else:
                    issues.extend(spec.restriction_issues(base_specs[spec.name], f"{kind} {spec.name!r}"))
            kept = {spec.name for spec in mine}
            for name, base_spec in base_specs.items():
                # The base's code reads a required value it cannot do without: a variant may give
                # it a default, never take it away.
                if base_spec.required and base_spec.default is None and name not in kept:
                    issues.append(f"{kind} {name!r} is required in the base and cannot be removed")
        extra_content = self.content_types - base.content_types
        if extra_content:
            issues.append(f"content types not in the base: {sorted(c.value for c in extra_content)}")
        base_endpoints = {e.type: e for e in base.endpoints}
        for endpoint in self.endpoints:
            base_endpoint = base_endpoints.get(endpoint.type)
            where = f"endpoint {endpoint.type.value!r}"
            if base_endpoint is None:
                issues.append(f"{where} is not in the base")
                continue
            if endpoint.can_send and not base_endpoint.can_send:
                issues.append(f"{where}: can send here, not in the base")
            if endpoint.can_receive and not base_endpoint.can_receive:
                issues.append(f"{where}: can receive here, not in the base")
            if base_endpoint.required and not endpoint.required:
                issues.append(f"{where}: required in the base, optional here")
            if base_endpoint.address_pattern and endpoint.address_pattern != base_endpoint.address_pattern:
                issues.append(f"{where}: address pattern differs from the base's")
            if not set(base_endpoint.address_rules) <= set(endpoint.address_rules):
                issues.append(f"{where}: drops address rules of the base")
            if base_endpoint.sender_only and not endpoint.sender_only:
                issues.append(f"{where}: sender only in the base, a receiver too here")
            if base_endpoint.max_length is not None and (
                endpoint.max_length is None or endpoint.max_length > base_endpoint.max_length
            ):
                issues.append(f"{where}: max_length higher than the base's {base_endpoint.max_length}")
        for attr in ("max_text_length", "max_media"):
            mine, theirs = getattr(self, attr), getattr(base, attr)
            if theirs is not None and (mine is None or mine > theirs):
                issues.append(f"{attr} higher than the base's {theirs}")
        return issues

    # -- JSON Schema ------------------------------------------------------------------------------

    def settings_json_schema(self) -> dict[str, Any]:
        """JSON Schema of the connection settings (a mapping of parameter values)."""
        document: dict[str, Any] = _settings_document(self)
        return document

    def properties_json_schema(self) -> dict[str, Any]:
        """JSON Schema of a message's ``properties`` mapping."""
        document: dict[str, Any] = _properties_document(self)
        return document

    def message_json_schema(self) -> dict[str, Any]:
        """JSON Schema of a whole message, as written by the converter (``converters.unstructure``)."""
        document: dict[str, Any] = _message_document(self)
        return document


# The documents are cached per schema: ChannelSchema is frozen, so its hash identifies its content.
# (Mutable default values would break hashing; the cache falls back to building afresh for those.)


def _cached(builder: Any) -> Any:
    cached = functools.lru_cache(maxsize=128)(builder)

    @functools.wraps(builder)
    def wrapper(schema: ChannelSchema) -> dict[str, Any]:
        try:
            return cached(schema)  # type: ignore[no-any-return]
        except TypeError:  # unhashable content (a list default): build afresh
            return builder(schema)  # type: ignore[no-any-return]

    return wrapper


def _object(specs: Iterable[_ValueSpec], strict: bool, *, with_defaults: bool) -> dict[str, Any]:
    specs = list(specs)
    document: dict[str, Any] = {
        "type": "object",
        "properties": {s.name: s.json_schema() for s in specs},
        "additionalProperties": not strict,
    }
    required = [s.name for s in specs if s.required and not (with_defaults and s.default is not None)]
    if required:
        document["required"] = required
    return document


@_cached
def _settings_document(schema: ChannelSchema) -> dict[str, Any]:
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": f"{schema.display_name} connection settings",
        **_object(schema.parameters, schema.strict, with_defaults=True),
    }


@_cached
def _properties_document(schema: ChannelSchema) -> dict[str, Any]:
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": f"{schema.display_name} message properties",
        **_object(schema.properties, schema.strict, with_defaults=False),
    }


def _endpoint_schema(schema: ChannelSchema, *, sender: bool) -> dict[str, Any]:
    branches = []
    for spec in schema.endpoints:
        if not spec.can_send or (spec.sender_only and not sender):
            continue
        address: dict[str, Any] = {"type": "string", "minLength": 1}
        if spec.max_length is not None:
            address["maxLength"] = spec.max_length
        if spec.address_pattern:
            address["pattern"] = spec.address_pattern
        if spec.address_rules:
            address["allOf"] = [
                {"pattern": pattern, "errorMessage": meaning} for pattern, meaning in spec.address_rules
            ]
        branches.append(
            {
                "type": "object",
                "required": ["type", "address"],
                "properties": {"type": {"const": spec.type.value}, "address": address},
                "additionalProperties": False,
            }
        )
    if not branches:
        return {"not": {}}
    endpoint: dict[str, Any] = branches[0] if len(branches) == 1 else {"anyOf": branches}
    if sender and not any(e.required and e.can_send for e in schema.endpoints):
        return (
            {"anyOf": [{"type": "null"}, endpoint]} if len(branches) == 1 else {"anyOf": [{"type": "null"}, *branches]}
        )
    return endpoint


def _content_branch(kind: ContentType, schema: ChannelSchema) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "object",
        "properties": {"type": {"const": kind.value}},
        "required": ["type"],
    }
    props = base["properties"]
    if kind is ContentType.TEXT:
        text: dict[str, Any] = {"type": "string", "minLength": 1}
        if schema.max_text_length is not None:
            text["maxLength"] = schema.max_text_length
        props["text"] = text
        props["encoding"] = {"type": ["string", "null"]}
        base["required"] = ["type", "text"]
    elif kind is ContentType.MEDIA:
        props["url"] = {"type": "string", "pattern": "^https?://[^\\s/]+"}
        props["content_type"] = {"type": ["string", "null"]}
        base["required"] = ["type", "url"]
    elif kind is ContentType.HTML:
        props["html"] = {"type": "string", "minLength": 1}
        base["required"] = ["type", "html"]
    elif kind is ContentType.TEMPLATE:
        props["template_id"] = {"type": "string", "minLength": 1}
        props["parameters"] = {"type": "object"}
        base["required"] = ["type", "template_id"]
    elif kind is ContentType.BINARY:
        props["data"] = {"type": "string"}
        base["required"] = ["type", "data"]
    return base


# Content kinds that also need a capability: a variant that removed the capability but kept the
# content type (``derive(remove_capabilities=MEDIA_ATTACHMENTS)``) must still refuse that content.
_CONTENT_CAPABILITIES = {
    ContentType.MEDIA: Capability.MEDIA_ATTACHMENTS,
    ContentType.TEMPLATE: Capability.TEMPLATES,
}


def _accepted_content_types(schema: ChannelSchema) -> set[ContentType]:
    return {
        c
        for c in schema.content_types
        if c not in _CONTENT_CAPABILITIES or _CONTENT_CAPABILITIES[c] in schema.capabilities
    }


@_cached
def _message_document(schema: ChannelSchema) -> dict[str, Any]:
    accepted = _accepted_content_types(schema)
    simple = sorted((c for c in accepted if c is not ContentType.MULTIPART), key=lambda c: c.value)
    single_branches = [_content_branch(c, schema) for c in simple]
    single: dict[str, Any] = (
        single_branches[0]
        if len(single_branches) == 1
        else {"anyOf": single_branches}
        if single_branches
        else {"not": {}}
    )
    content_branches = [single] if single_branches else []
    if ContentType.MULTIPART in accepted:
        parts: dict[str, Any] = {"type": "array", "minItems": 1, "items": single}
        if schema.max_media is not None:
            parts["contains"] = {
                "type": "object",
                "properties": {"type": {"const": ContentType.MEDIA.value}},
                "required": ["type"],
            }
            parts["minContains"] = 0
            parts["maxContains"] = schema.max_media
        content_branches.append(
            {
                "type": "object",
                "required": ["type", "parts"],
                "properties": {"type": {"const": ContentType.MULTIPART.value}, "parts": parts},
            }
        )
    content: dict[str, Any] = content_branches[0] if len(content_branches) == 1 else {"anyOf": content_branches}
    if not content_branches:
        content = {"not": {}}
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": f"{schema.display_name} message",
        "type": "object",
        "required": ["id", "receiver", "content"],
        "properties": {
            "id": {"type": "string", "minLength": 1},
            "sender": _endpoint_schema(schema, sender=True),
            "receiver": _endpoint_schema(schema, sender=False),
            "content": content,
            "properties": _object(schema.properties, schema.strict, with_defaults=False),
        },
    }
