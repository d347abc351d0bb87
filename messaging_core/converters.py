"""The one cattrs converter that owns the wire format of every model.

``unstructure(obj)`` gives JSON-ready data, ``structure(data, cls)`` builds the model back;
``dumps``/``loads`` add the JSON text. Contents are tagged with ``"type"`` (``ContentType``);
datetimes are ISO 8601; bytes are base64; capabilities are lists of names.

Channel schemas have their own document format (``schema_to_document``/``schema_from_document``),
described by the meta-schema shipped in ``messaging_core/schemas/channel-schema.schema.json``.
"""

from __future__ import annotations

import base64
import enum
import json
from datetime import datetime, timedelta
from importlib import resources
from typing import Any, TypeVar

import cattrs
from cattrs.strategies import configure_tagged_union

from messaging_core.errors import SchemaError
from messaging_core.message import (
    BinaryContent,
    Content,
    HtmlContent,
    JsonContent,
    MediaContent,
    MultipartContent,
    TemplateContent,
    TextContent,
)
from messaging_core.results import ConnectorResult
from messaging_core.schema import Capability, ChannelSchema, EndpointSpec, ParameterSpec, PropertySpec
from messaging_core.validation import validator_for

__all__ = [
    "converter",
    "dumps",
    "loads",
    "schema_from_document",
    "schema_to_document",
    "structure",
    "unstructure",
]

T = TypeVar("T")

converter = cattrs.Converter(omit_if_default=False)
"""The converter. Plugins with models of their own may register hooks on it."""

converter.register_unstructure_hook(datetime, lambda value: value.isoformat())
converter.register_structure_hook(datetime, lambda value, _: datetime.fromisoformat(value))
converter.register_unstructure_hook(timedelta, lambda value: value.total_seconds())
converter.register_structure_hook(timedelta, lambda value, _: timedelta(seconds=value))
converter.register_unstructure_hook(bytes, lambda value: base64.b64encode(value).decode("ascii"))
converter.register_structure_hook(bytes, lambda value, _: base64.b64decode(value))
converter.register_unstructure_hook_func(
    lambda cls: isinstance(cls, type) and issubclass(cls, enum.Enum) and not issubclass(cls, enum.Flag),
    lambda value: value.value,
)
converter.register_unstructure_hook(Capability, lambda value: value.names())
converter.register_structure_hook(Capability, lambda value, _: Capability.from_names(value))
converter.register_structure_hook(Any, lambda value, _: value)

_CONTENT_CLASSES: dict[str, type[Any]] = {
    cls.type.value: cls
    for cls in (
        TextContent,
        MediaContent,
        HtmlContent,
        TemplateContent,
        JsonContent,
        BinaryContent,
        MultipartContent,
    )
}
configure_tagged_union(
    Content,
    converter,
    tag_generator=lambda cls: getattr(cls, "type").value,  # noqa: B009 - mypy sees builtins.type here
    tag_name="type",
)


def _structure_result(value: Any, cls: Any) -> ConnectorResult[Any]:
    (inner,) = getattr(cls, "__args__", (Any,))
    error = value.get("error")
    from messaging_core.results import Failure

    return ConnectorResult(
        None if value.get("value") is None else converter.structure(value["value"], inner),
        None if error is None else converter.structure(error, Failure),
    )


converter.register_structure_hook_func(
    lambda cls: getattr(cls, "__origin__", None) is ConnectorResult or cls is ConnectorResult,
    _structure_result,
)


def unstructure(obj: Any) -> Any:
    """JSON-ready data for a model."""
    return converter.unstructure(obj)


def structure(data: Any, cls: type[T]) -> T:
    """A model from JSON-ready data; raises ``cattrs`` errors that name the failing field."""
    return converter.structure(data, cls)


def dumps(obj: Any, **kwargs: Any) -> str:
    """JSON text for a model."""
    return json.dumps(unstructure(obj), **kwargs)


def loads(text: str | bytes, cls: type[T]) -> T:
    """A model from JSON text."""
    return structure(json.loads(text), cls)


# -- channel schema documents -----------------------------------------------------------------------

META_SCHEMA_RESOURCE = "channel-schema.schema.json"


def meta_schema() -> dict[str, Any]:
    """The JSON Schema that channel-schema documents follow."""
    text = resources.files("messaging_core.schemas").joinpath(META_SCHEMA_RESOURCE).read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def _spec_document(spec: Any) -> dict[str, Any]:
    data: dict[str, Any] = converter.unstructure(spec)
    if isinstance(spec, EndpointSpec):
        data["address_rules"] = [list(rule) for rule in spec.address_rules]  # JSON arrays, not tuples
    # Keep documents small and readable: drop what equals the default.
    defaults = type(spec)(name=spec.name) if not isinstance(spec, EndpointSpec) else EndpointSpec(spec.type)
    return {k: v for k, v in data.items() if k in ("name", "type") or v != converter.unstructure(defaults).get(k)}


def schema_to_document(schema: ChannelSchema) -> dict[str, Any]:
    """A channel schema as a JSON document (valid against the meta-schema)."""
    return {
        "provider": schema.provider,
        "channel_type": schema.channel_type,
        "version": schema.version,
        "display_name": schema.display_name,
        "strict": schema.strict,
        "capabilities": schema.capabilities.names(),
        "parameters": [_spec_document(p) for p in schema.parameters],
        "properties": [_spec_document(p) for p in schema.properties],
        "content_types": sorted(c.value for c in schema.content_types),
        "endpoints": [_spec_document(e) for e in schema.endpoints],
        "auth_types": list(schema.auth_types),
        "max_text_length": schema.max_text_length,
        "max_media": schema.max_media,
    }


def schema_from_document(document: Any, *, where: str = "channel schema") -> ChannelSchema:
    """A channel schema from a JSON document; raises ``SchemaError`` listing every problem."""
    issues = validator_for(meta_schema()).issues(document)
    if issues:
        lines = "\n".join(f"  - {i}" for i in issues)
        raise SchemaError(f"{where}: {len(issues)} problem(s)\n{lines}")
    try:
        return ChannelSchema(
            provider=document["provider"],
            channel_type=document["channel_type"],
            version=document["version"],
            display_name=document["display_name"],
            strict=document.get("strict", True),
            capabilities=Capability.from_names(document["capabilities"]),
            parameters=[converter.structure(p, ParameterSpec) for p in document.get("parameters", [])],
            properties=[converter.structure(p, PropertySpec) for p in document.get("properties", [])],
            content_types=document.get("content_types", ["text"]),
            endpoints=[converter.structure(e, EndpointSpec) for e in document.get("endpoints", [])],
            auth_types=document.get("auth_types", []),
            max_text_length=document.get("max_text_length"),
            max_media=document.get("max_media"),
        )
    except (cattrs.BaseValidationError, ValueError, KeyError) as err:
        raise SchemaError(f"{where}: {err}") from err
