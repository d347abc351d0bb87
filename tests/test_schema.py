"""Channel schemas: capabilities, data types, derivation and the restriction check."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from messaging_core import (
    Capability,
    ChannelSchema,
    ContentType,
    DataType,
    EndpointSpec,
    EndpointType,
    ParameterSpec,
    PropertySpec,
    SchemaError,
)

# -- capabilities and data types ---------------------------------------------------------------------


def test_capability_names_round_trip() -> None:
    caps = Capability.SEND_MESSAGES | Capability.HEALTH_CHECK
    assert caps.names() == ["SEND_MESSAGES", "HEALTH_CHECK"]
    assert Capability.from_names(caps.names()) == caps
    assert Capability.from_names([]) == Capability.NONE
    assert Capability.NONE.names() == []


def test_unknown_capability_name_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="TELEPATHY"):
        Capability.from_names(["SEND_MESSAGES", "TELEPATHY"])


@pytest.mark.parametrize(
    ("data_type", "accepted", "refused"),
    [
        (DataType.INTEGER, [0, -3, 10**20], [True, False, 1.5, "1", None]),
        (DataType.NUMBER, [0, 1.5, -2], [True, False, "1.5", None]),
        (DataType.BOOLEAN, [True, False], [0, 1, "true", None]),
        (DataType.STRING, ["", "x"], [1, True, None, b"x"]),
    ],
)
def test_data_type_accepts(data_type: DataType, accepted: list[Any], refused: list[Any]) -> None:
    assert all(data_type.accepts(v) for v in accepted)
    assert not any(data_type.accepts(v) for v in refused)


# -- ChannelSchema ---------------------------------------------------------------------------------


def test_schema_identity_and_lookups(acme: types.SimpleNamespace) -> None:
    schema: ChannelSchema = acme.schema
    assert schema.logical_identity == "acme/sms/1.0.0"
    assert schema.has(Capability.SEND_MESSAGES | Capability.BULK_MESSAGING)
    assert not schema.has(Capability.SEND_MESSAGES | Capability.RECEIVE_MESSAGES)
    assert schema.parameter_spec("AuthToken") == ParameterSpec("AuthToken", required=True, sensitive=True, min_length=8)
    assert schema.parameter_spec("Nope") is None
    assert schema.property_spec("MaxPrice") is not None
    assert schema.endpoint_spec("phone") is not None
    assert schema.endpoint_spec(EndpointType.EMAIL) is None
    assert schema.sensitive_parameters == frozenset({"AuthToken"})


def test_schema_is_frozen_and_hashable(acme: types.SimpleNamespace) -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        acme.schema.display_name = "x"
    assert hash(acme.schema) == hash(attrs.evolve(acme.schema))
    assert isinstance(acme.schema.parameters, tuple)
    assert acme.schema.content_types == frozenset({ContentType.TEXT, ContentType.MEDIA, ContentType.MULTIPART})


def _schema(**changes: Any) -> ChannelSchema:
    fields: dict[str, Any] = {
        "provider": "p",
        "channel_type": "t",
        "version": "1.0.0",
        "display_name": "P",
        "capabilities": ["SEND_MESSAGES"],
    }
    return ChannelSchema(**{**fields, **changes})


def test_capabilities_may_be_given_by_name() -> None:
    assert _schema(capabilities=["SEND_MESSAGES", "TEMPLATES"]).capabilities == (
        Capability.SEND_MESSAGES | Capability.TEMPLATES
    )


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        (
            {"parameters": [ParameterSpec("A"), ParameterSpec("B"), ParameterSpec("A")]},
            "duplicate parameter names ['A']",
        ),
        ({"properties": [PropertySpec("X"), PropertySpec("X")]}, "duplicate property names ['X']"),
        ({"endpoints": [EndpointSpec("phone"), EndpointSpec("phone")]}, "duplicate endpoint types"),
    ],
)
def test_duplicate_names_are_rejected(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(SchemaError) as raised:
        _schema(**changes)
    assert words in str(raised.value)
    assert "p/t/1.0.0" in str(raised.value)


# -- derive --------------------------------------------------------------------------------------------


def test_derive_keeps_everything_not_removed_or_updated(acme: types.SimpleNamespace) -> None:
    base: ChannelSchema = acme.schema
    before = attrs.asdict(base, recurse=False)
    variant = base.derive(
        "Acme, short texts",
        remove_capabilities=Capability.MEDIA_ATTACHMENTS,
        remove_properties=["Tags"],
        remove_content_types=["media", "multipart"],
        update_parameters={"ValidityPeriod": {"maximum": 600, "default": 300}},
        update_endpoints={"phone": {"can_receive": False}},
        max_text_length=70,
    )
    assert attrs.asdict(base, recurse=False) == before  # the base is untouched
    assert variant.display_name == "Acme, short texts"
    assert variant.logical_identity == base.logical_identity
    assert variant.capabilities == base.capabilities & ~Capability.MEDIA_ATTACHMENTS
    assert [p.name for p in variant.properties] == ["MaxPrice", "Priority"]
    assert variant.property_spec("MaxPrice") == base.property_spec("MaxPrice")
    validity = variant.parameter_spec("ValidityPeriod")
    assert validity == attrs.evolve(base.parameter_spec("ValidityPeriod"), maximum=600, default=300)
    assert validity is not None
    assert validity.minimum == 1
    for name in ("AccountId", "AuthToken", "Region", "Sandbox"):
        assert variant.parameter_spec(name) == base.parameter_spec(name)
    phone = variant.endpoint_spec("phone")
    assert phone is not None
    assert (phone.required, phone.can_receive) == (True, False)
    assert phone.address_pattern == r"^\+[1-9][0-9]{6,14}$"
    assert variant.content_types == frozenset({ContentType.TEXT})
    assert (variant.max_text_length, variant.max_media) == (70, base.max_media)
    assert variant.validate_as_restriction_of(base) == []


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"remove_parameters": ["AuthTokn"]}, "unknown parameter(s) ['AuthTokn']"),
        ({"remove_properties": ["Nope"]}, "unknown property(s) ['Nope']"),
        ({"remove_endpoints": ["email"]}, "unknown endpoint(s) ['email']"),
        ({"update_parameters": {"Regoin": {"default": "ie1"}}}, "unknown parameter(s) ['Regoin']"),
        ({"update_properties": {"Price": {"minimum": 1}}}, "unknown property(s) ['Price']"),
        ({"update_endpoints": {"email": {"required": True}}}, "unknown endpoint(s) ['email']"),
        ({"remove_parameters": ["Region"], "update_parameters": {"Region": {"default": "ie1"}}}, "['Region']"),
    ],
)
def test_derive_with_unknown_names_raises(acme: types.SimpleNamespace, kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(SchemaError) as raised:
        acme.schema.derive("typo", **kwargs)
    assert words in str(raised.value)


def test_derive_with_an_unknown_endpoint_type_raises_value_error(acme: types.SimpleNamespace) -> None:
    with pytest.raises(ValueError):
        acme.schema.derive("x", remove_endpoints=["pigeon"])


# -- validate_as_restriction_of: one case per rule ---------------------------------------------------

BASE = ChannelSchema(
    provider="acme",
    channel_type="sms",
    version="1.0.0",
    display_name="Base",
    capabilities=["SEND_MESSAGES", "BULK_MESSAGING"],
    parameters=[
        ParameterSpec("Token", required=True, sensitive=True, min_length=8, max_length=64, pattern="^[a-z]+$"),
        ParameterSpec("Limit", "integer", minimum=1, maximum=10),
        ParameterSpec("Region", allowed_values=["us1", "ie1"]),
        ParameterSpec("Callback", format="uri"),
    ],
    properties=[PropertySpec("Tags", repeated=True)],
    content_types=["text"],
    endpoints=[
        EndpointSpec("phone", required=True, address_pattern=r"^\+\d+$", can_receive=False),
        EndpointSpec("label", can_send=False),
    ],
    max_text_length=160,
    max_media=1,
)


def _param(name: str, **changes: Any) -> Callable[[ChannelSchema], ChannelSchema]:
    def change(schema: ChannelSchema) -> ChannelSchema:
        return attrs.evolve(
            schema,
            parameters=[attrs.evolve(p, **changes) if p.name == name else p for p in schema.parameters],
        )

    return change


def _endpoint(endpoint_type: str, **changes: Any) -> Callable[[ChannelSchema], ChannelSchema]:
    def change(schema: ChannelSchema) -> ChannelSchema:
        return attrs.evolve(
            schema,
            endpoints=[attrs.evolve(e, **changes) if e.type == endpoint_type else e for e in schema.endpoints],
        )

    return change


RULES: list[tuple[str, Callable[[ChannelSchema], ChannelSchema], str]] = [
    ("provider", lambda s: attrs.evolve(s, provider="other"), "identity other/sms/1.0.0 differs from acme/sms/1.0.0"),
    ("version", lambda s: attrs.evolve(s, version="2.0.0"), "identity acme/sms/2.0.0 differs"),
    (
        "capability",
        lambda s: attrs.evolve(s, capabilities=s.capabilities | Capability.TEMPLATES),
        "capabilities not in the base: ['TEMPLATES']",
    ),
    ("strict", lambda s: attrs.evolve(s, strict=False), "strict in the base, not here"),
    (
        "new parameter",
        lambda s: attrs.evolve(s, parameters=[*s.parameters, ParameterSpec("Extra")]),
        "parameter 'Extra' is not in the base",
    ),
    (
        "new property",
        lambda s: attrs.evolve(s, properties=[*s.properties, PropertySpec("Extra")]),
        "property 'Extra' is not in the base",
    ),
    ("data type", _param("Limit", data_type="number"), "parameter 'Limit': type changed"),
    ("repeated", _param("Region", repeated=True), "parameter 'Region': type changed"),
    ("required", _param("Token", required=False), "parameter 'Token': required in the base, optional here"),
    (
        "allowed values",
        _param("Region", allowed_values=["us1", "au1"]),
        "parameter 'Region': allows values the base does not",
    ),
    (
        "allowed values dropped",
        _param("Region", allowed_values=None),
        "parameter 'Region': allows values the base does not",
    ),
    ("minimum", _param("Limit", minimum=0), "parameter 'Limit': minimum lower than the base's 1"),
    ("minimum dropped", _param("Limit", minimum=None), "parameter 'Limit': minimum lower than the base's 1"),
    ("maximum", _param("Limit", maximum=11), "parameter 'Limit': maximum higher than the base's 10"),
    ("min_length", _param("Token", min_length=4), "parameter 'Token': min_length lower than the base's 8"),
    ("max_length", _param("Token", max_length=None), "parameter 'Token': max_length higher than the base's 64"),
    ("pattern", _param("Token", pattern="^.+$"), "parameter 'Token': pattern differs from the base's"),
    ("format", _param("Callback", format=None), "parameter 'Callback': format differs from the base's"),
    ("sensitive", _param("Token", sensitive=False), "parameter 'Token': sensitive in the base, not here"),
    (
        "content type",
        lambda s: attrs.evolve(s, content_types=["text", "media"]),
        "content types not in the base: ['media']",
    ),
    (
        "new endpoint",
        lambda s: attrs.evolve(s, endpoints=[*s.endpoints, EndpointSpec("email")]),
        "endpoint 'email' is not in the base",
    ),
    ("can send", _endpoint("label", can_send=True), "endpoint 'label': can send here, not in the base"),
    ("can receive", _endpoint("phone", can_receive=True), "endpoint 'phone': can receive here, not in the base"),
    ("endpoint required", _endpoint("phone", required=False), "endpoint 'phone': required in the base, optional here"),
    (
        "address pattern",
        _endpoint("phone", address_pattern=None),
        "endpoint 'phone': address pattern differs from the base's",
    ),
    ("max_text_length", lambda s: attrs.evolve(s, max_text_length=161), "max_text_length higher than the base's 160"),
    ("max_media", lambda s: attrs.evolve(s, max_media=None), "max_media higher than the base's 1"),
]


@pytest.mark.parametrize(("rule", "loosen", "expected"), RULES, ids=[r[0] for r in RULES])
def test_each_loosening_is_reported(rule: str, loosen: Callable[[ChannelSchema], ChannelSchema], expected: str) -> None:
    issues = loosen(BASE).validate_as_restriction_of(BASE)
    assert len(issues) == 1, issues
    assert issues[0].startswith(expected), issues


def test_every_loosening_is_listed_not_only_the_first() -> None:
    # One loosening per spec, so that each shows as exactly one issue.
    chosen = {
        "capability", "strict", "new parameter", "new property", "data type", "required", "allowed values",
        "format", "content type", "new endpoint", "can send", "address pattern", "max_text_length", "max_media",
    }  # fmt: skip
    schema = BASE
    for name, loosen, _ in RULES:
        if name in chosen:
            schema = loosen(schema)
    issues = schema.validate_as_restriction_of(BASE)
    assert len(issues) == len(chosen)
    for name, _, expected in RULES:
        if name in chosen:
            assert any(issue.startswith(expected) for issue in issues), name


def test_tightening_is_a_restriction() -> None:
    tighter = BASE.derive(
        "Tighter",
        remove_capabilities=Capability.BULK_MESSAGING,
        remove_parameters=["Callback"],
        remove_endpoints=["label"],
        update_parameters={
            "Limit": {"minimum": 2, "maximum": 5},
            "Region": {"allowed_values": ["us1"]},
            "Token": {"min_length": 10, "max_length": 32},
        },
        update_endpoints={"phone": {"can_send": False}},
        max_text_length=70,
        max_media=0,
    )
    assert tighter.validate_as_restriction_of(BASE) == []
    assert BASE.validate_as_restriction_of(BASE) == []


def test_dropping_a_required_parameter_is_not_a_restriction() -> None:
    """The base's connector reads a required parameter it cannot do without (``KeyError: 'BaseUrl'`` at send)."""
    dropped = BASE.derive("Dropped", remove_parameters=["Token"])
    assert dropped.validate_as_restriction_of(BASE) == [
        "parameter 'Token' is required in the base and cannot be removed"
    ]
