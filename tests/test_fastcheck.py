"""The compiled validity predicate must agree with jsonschema on every instance.

``JsonValidator.is_valid`` answers from a predicate generated from the JSON Schema document (for
speed on the hot path of sending); ``jsonschema`` stays the authority. These tests generate
instances near the boundary of validity (and random JSON) and compare the two answers.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messaging_core import ChannelRegistry
from messaging_core._fastcheck import compile_predicate
from messaging_core.config import config_json_schema
from messaging_core.validation import validator_for

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 40_000)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)

addresses = st.sampled_from(
    [
        "+15551234567",
        "+1",
        "15551234567",
        "",
        "+0123",
        "+1555123456789012",
        "a@b.c",
        "AcmeAlerts",
        "Acme Alerts!",
        "12345",
    ]
) | st.text(max_size=5)
endpoints = (
    st.none()
    | st.fixed_dictionaries(
        {"type": st.sampled_from(["phone", "email", "url", "label", "short_code", "nope"]), "address": addresses}
    )
    | json_values
)
texts = st.sampled_from(["hi", "", "x" * 1600, "x" * 1601, "é" * 70]) | st.text(max_size=8)
text_parts = st.fixed_dictionaries(
    {"type": st.just("text"), "text": texts}, optional={"encoding": st.none() | st.text(max_size=3)}
)
media_parts = st.fixed_dictionaries(
    {
        "type": st.just("media"),
        "url": st.sampled_from(["https://x.io/a.png", "http://h/b", "ftp://x/y", "https://", ""]),
    },
    optional={"content_type": st.none() | st.just("image/png") | st.integers()},
)
parts = text_parts | media_parts | st.fixed_dictionaries({"type": st.sampled_from(["html", "json", "template"])})
contents = (
    parts
    | st.fixed_dictionaries(
        {"type": st.just("multipart"), "parts": st.lists(text_parts | media_parts | json_values, max_size=12)}
    )
    | json_values
)
property_values = st.dictionaries(
    st.sampled_from(
        [
            "ValidityPeriod",
            "MaxPrice",
            "ProvideCallback",
            "AttemptLimits",
            "SmartEncoded",
            "PersistentAction",
            "Tag",
            "Nope",
        ]
    ),
    st.integers(-1, 40_000)
    | st.booleans()
    | st.floats(-1, 10, allow_nan=False)
    | st.text(max_size=3)
    | st.lists(st.text(max_size=3) | st.integers(), max_size=2),
    max_size=4,
)
messages = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["m1", ""]) | st.integers(),
        "sender": endpoints,
        "receiver": endpoints,
        "content": contents,
    },
    optional={"properties": property_values | json_values},
)


def _documents() -> list[tuple[str, dict[str, Any]]]:
    registry = ChannelRegistry.discover()
    documents = []
    for info in registry.channels():
        for variant, schema in info.variants.items():
            documents.append((f"{info.name}/{variant}/message", schema.message_json_schema()))
            documents.append((f"{info.name}/{variant}/settings", schema.settings_json_schema()))
    return documents


DOCUMENTS = _documents()


@pytest.mark.parametrize(("label", "document"), DOCUMENTS, ids=[label for label, _ in DOCUMENTS])
def test_every_generated_document_compiles(label: str, document: dict[str, Any]) -> None:
    assert compile_predicate(document) is not None, f"{label} fell back to jsonschema"


MESSAGE_DOCUMENTS = [(label, doc) for label, doc in DOCUMENTS if label.endswith("/message")]


@pytest.mark.parametrize(("label", "document"), MESSAGE_DOCUMENTS, ids=[label for label, _ in MESSAGE_DOCUMENTS])
@settings(max_examples=300, deadline=None)
@given(instance=messages)
def test_predicate_agrees_with_jsonschema_on_messages(label: str, document: dict[str, Any], instance: Any) -> None:
    predicate = compile_predicate(document)
    assert predicate is not None
    expected = jsonschema.Draft202012Validator(document).is_valid(instance)
    assert predicate(instance) is expected


SETTINGS_DOCUMENTS = [(label, doc) for label, doc in DOCUMENTS if label.endswith("/settings")]
settings_values = st.dictionaries(
    st.sampled_from(
        [
            "AccountSid",
            "AuthToken",
            "ValidityPeriod",
            "MaxPrice",
            "ApiBaseUrl",
            "MaxConcurrency",
            "ValidateSignatures",
            "Mailbox",
            "Latency",
            "FailAddresses",
            "Unknown",
            "MessagingServiceSid",
        ]
    ),
    st.sampled_from(["AC" + "a" * 32, "MG" + "0" * 32, "https://api.twilio.com", "x"])
    | st.integers(-1, 50_000)
    | st.floats(-1, 400, allow_nan=False)
    | st.booleans()
    | st.none()
    | st.lists(st.text(max_size=2), max_size=2),
    max_size=6,
)


@pytest.mark.parametrize(("label", "document"), SETTINGS_DOCUMENTS, ids=[label for label, _ in SETTINGS_DOCUMENTS])
@settings(max_examples=200, deadline=None)
@given(instance=settings_values | json_values)
def test_predicate_agrees_with_jsonschema_on_settings(label: str, document: dict[str, Any], instance: Any) -> None:
    predicate = compile_predicate(document)
    assert predicate is not None
    assert predicate(instance) is jsonschema.Draft202012Validator(document).is_valid(instance)


def test_unsupported_keywords_fall_back_to_jsonschema() -> None:
    # The config schema uses propertyNames/minProperties/$ref: no predicate, jsonschema decides.
    document = config_json_schema()
    assert compile_predicate(document) is None
    validator = validator_for(document)
    assert validator.is_valid({"connectors": {"a": {"channel": "memory"}}})
    assert not validator.is_valid({"connectors": {"bad name!": {"channel": "memory"}}})


@pytest.mark.parametrize(
    ("schema", "valid", "invalid"),
    [
        ({"type": "integer"}, [1, 2.0, -3], [True, 1.5, "1", None]),
        ({"type": "number", "minimum": 1, "exclusiveMaximum": 3}, [1, 2.5], [0.5, 3, True, "2"]),
        ({"enum": [1, "a"]}, [1, 1.0, "a"], [True, "b", [1]]),
        ({"const": False}, [False], [0, None]),
        ({"type": "array", "contains": {"const": 1}, "maxContains": 1}, [[1, 2]], [[], [1, 1]]),
        ({"not": {}}, [], [1, None, {}]),
        ({"pattern": "^a"}, ["abc", 5], ["ba"]),
        # json_equal on lists and objects (enum/const values that are not strings): equal only with the
        # same length or the same keys, element by element, booleans never equal to numbers.
        (
            {"enum": [[1, 2], {"a": 1}]},
            [[1, 2], [1.0, 2], {"a": 1}, {"a": 1.0}],
            [[1], [1, 2, 3], [], [2, 1], [True, 2], [[1, 2]], {}, {"a": 1, "b": 2}, {"b": 1}, {"a": 2}, {"a": True}],
        ),
        (
            {"const": {"a": [1, {"b": None}]}},
            [{"a": [1, {"b": None}]}],
            [{"a": [1]}, {"a": [1, {"b": None}, 2]}, {"a": [1, {}]}, {"a": [1, {"b": None, "c": 1}]}, {"a": [1, 1]}],
        ),
        ({"const": [False]}, [[False]], [[0], [], [False, False], False, [None]]),
        ({"const": []}, [[]], [[0], {}, None]),
    ],
)
def test_keyword_semantics_match_jsonschema(schema: dict[str, Any], valid: list[Any], invalid: list[Any]) -> None:
    predicate = compile_predicate(schema)
    assert predicate is not None
    for instance in valid:
        assert predicate(instance), instance
        assert jsonschema.Draft202012Validator(schema).is_valid(instance)
    for instance in invalid:
        assert not predicate(instance), instance
        assert not jsonschema.Draft202012Validator(schema).is_valid(instance)
