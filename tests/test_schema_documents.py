"""Channel schemas as JSON documents, described by the shipped meta-schema."""

from __future__ import annotations

import json
import types
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messaging_core import (
    Capability,
    ChannelRegistry,
    ChannelSchema,
    ContentType,
    EndpointSpec,
    EndpointType,
    ParameterSpec,
    PropertySpec,
    SchemaError,
)
from messaging_core.converters import meta_schema, schema_from_document, schema_to_document


def _round_trip(schema: ChannelSchema) -> ChannelSchema:
    document = schema_to_document(schema)
    jsonschema.Draft202012Validator(meta_schema()).validate(document)
    return schema_from_document(json.loads(json.dumps(document)))


def test_meta_schema_is_a_valid_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(meta_schema())
    assert meta_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_memory_schema_round_trips(messaging_registry: ChannelRegistry) -> None:
    schema = messaging_registry.schema("memory")
    assert _round_trip(schema) == schema


def test_acme_schemas_round_trip(acme: types.SimpleNamespace) -> None:
    assert _round_trip(acme.schema) == acme.schema
    assert _round_trip(acme.text_only) == acme.text_only


def test_documents_leave_out_defaults(acme: types.SimpleNamespace) -> None:
    document = schema_to_document(acme.schema)
    assert document["parameters"][1] == {"name": "AuthToken", "required": True, "min_length": 8, "sensitive": True}
    assert document["endpoints"][1] == {"type": "label", "can_receive": False}
    assert document["content_types"] == ["media", "multipart", "text"]
    assert document["capabilities"] == acme.schema.capabilities.names()


# -- generated schemas -------------------------------------------------------------------------------

names = st.text(st.sampled_from("ABCDEFabcdef"), min_size=1, max_size=6)
scalars = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=5)
optional_number = st.none() | st.integers(-100, 100) | st.floats(-100, 100, allow_nan=False)
optional_length = st.none() | st.integers(0, 50)


def _value_spec_fields() -> dict[str, Any]:
    return {
        "data_type": st.sampled_from(["string", "integer", "number", "boolean"]),
        "required": st.booleans(),
        "description": st.text(max_size=10),
        "default": scalars | st.lists(st.integers(0, 9), max_size=3),
        "allowed_values": st.none() | st.lists(scalars, max_size=3),
        "minimum": optional_number,
        "maximum": optional_number,
        "min_length": optional_length,
        "max_length": optional_length,
        "pattern": st.none() | st.sampled_from(["^[a-z]+$", r"^\+[0-9]{6,15}$"]),
        "format": st.none() | st.sampled_from(["email", "uri", "date-time"]),
        "repeated": st.booleans(),
        "single_allowed": st.booleans(),
    }


def _specs(cls: type[Any], **extra: Any) -> st.SearchStrategy[list[Any]]:
    return st.lists(names, unique=True, max_size=4).flatmap(
        lambda unique: st.tuples(*[st.builds(cls, st.just(n), **_value_spec_fields(), **extra) for n in unique]).map(
            list
        )
    )


endpoint_specs = st.lists(st.sampled_from(EndpointType), unique=True, max_size=4).flatmap(
    lambda types_: st.tuples(
        *[
            st.builds(
                EndpointSpec,
                st.just(t),
                st.booleans(),
                st.booleans(),
                st.booleans(),
                st.none() | st.just(r"^\S+$"),
                st.booleans(),
                st.none() | st.integers(1, 20),
                st.lists(st.tuples(st.sampled_from(["[A-Z]", "^[0-9]*$"]), st.just("must be so")), max_size=2),
            )
            for t in types_
        ]
    ).map(list)
)

schemas = st.builds(
    ChannelSchema,
    provider=names,
    channel_type=names,
    version=st.from_regex(r"\A[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{1,2}\Z"),
    display_name=st.text(min_size=1, max_size=12),
    capabilities=st.lists(st.sampled_from([c for c in Capability if c.name and c.value]), unique=True).map(
        lambda caps: Capability.from_names(c.name for c in caps if c.name)
    ),
    parameters=_specs(ParameterSpec, sensitive=st.booleans()),
    properties=_specs(PropertySpec),
    content_types=st.frozensets(st.sampled_from(ContentType), min_size=1),
    endpoints=endpoint_specs,
    auth_types=st.lists(names, max_size=2).map(tuple),
    strict=st.booleans(),
    max_text_length=st.none() | st.integers(1, 2000),
    max_media=st.none() | st.integers(0, 10),
)


@settings(max_examples=60, deadline=None)
@given(schemas)
def test_generated_schemas_round_trip(schema: ChannelSchema) -> None:
    assert _round_trip(schema) == schema


# -- invalid documents -------------------------------------------------------------------------------


def test_invalid_document_lists_every_problem() -> None:
    document = {
        "channel_type": "sms",
        "version": "one",
        "display_name": "",
        "capabilities": ["SEND_MESSAGES", "TELEPATHY"],
        "parameters": [{"name": "A", "data_type": "date"}, {"data_type": "string"}, {"name": "B", "secret": True}],
        "endpoints": [{"type": "pigeon"}],
        "content_types": ["text", "hologram"],
        "colour": "blue",
    }
    with pytest.raises(SchemaError) as raised:
        schema_from_document(document, where="acme.json")
    message = str(raised.value)
    assert message.startswith("acme.json: 10 problem(s)")
    for expected in (
        "$.provider: is required",
        "$.version: must match the pattern",
        "$.display_name: must have at least 1 characters",
        "$.capabilities[1]: must be one of",
        "$.parameters[0].data_type: must be one of",
        "$.parameters[1].name: is required",
        "$.parameters[2].secret: is not a known field",
        "$.endpoints[0].type: must be one of",
        "$.content_types[1]: must be one of",
        "$.colour: is not a known field",
    ):
        assert expected in message, expected


def test_a_document_that_contradicts_itself_is_a_schema_error(acme: types.SimpleNamespace) -> None:
    document = schema_to_document(acme.schema)
    document["parameters"].append({"name": "AuthToken"})
    with pytest.raises(SchemaError, match=r"acme-sms.json: .*duplicate parameter names \['AuthToken'\]"):
        schema_from_document(document, where="acme-sms.json")


def test_a_document_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(SchemaError, match="must be of type object"):
        schema_from_document(["not", "a", "schema"])
