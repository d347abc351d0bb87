"""Issue codes, paths and wording are public API: a table of schemas, values and the exact issues they give.

Each case goes through ``validator_for(schema)``: the compiled fast predicate (``is_valid``) and
the jsonschema-backed explanation (``issues``) must agree, and the issues are compared whole.
"""

from __future__ import annotations

from typing import Any

import pytest

from messaging_core import IssueCodes
from messaging_core.validation import validator_for

OBJECT = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
CONTENT = {
    "anyOf": [
        {
            "type": "object",
            "properties": {"type": {"const": "text"}, "text": {"type": "string", "maxLength": 3}},
            "required": ["type", "text"],
        },
        {
            "type": "object",
            "properties": {"type": {"const": "media"}, "url": {"type": "string", "pattern": "^https://"}},
            "required": ["type", "url"],
        },
    ]
}
NULLABLE = {"type": "object", "properties": {"to": {"anyOf": [{"type": "null"}, {"type": "string"}]}}}


def tagged(tag: Any, **properties: Any) -> dict[str, Any]:
    """An object told apart from its siblings by ``"type": tag``."""
    return {"type": "object", "properties": {"type": {"const": tag}, **properties}, "required": ["type"]}


ONE_OF_TWO_CONSTS = {"anyOf": [{"const": 1}, {"const": 2}]}

CASES: list[tuple[str, dict[str, Any], Any, list[tuple[str, str, str]]]] = [
    (
        "missing required fields",
        OBJECT,
        {},
        [("$.age", "is required", "REQUIRED"), ("$.name", "is required", "REQUIRED")],
    ),
    ("null where a value is required", {"type": "string"}, None, [("$", "is required", "REQUIRED")]),
    ("unknown field", OBJECT, {"name": "a", "age": 1, "x": 2}, [("$.x", "is not a known field", "UNKNOWN_FIELD")]),
    (
        "wrong type",
        OBJECT,
        {"name": 5, "age": 1},
        [("$.name", "must be of type string (got integer)", "INVALID_TYPE")],
    ),
    ("below minimum", OBJECT, {"name": "a", "age": -1}, [("$.age", "must be >= 0", "OUT_OF_RANGE")]),
    (
        "the meant branch explains",
        CONTENT,
        {"type": "text", "text": "long"},
        [("$.text", "must have at most 3 characters", "TOO_LONG")],
    ),
    (
        "the other branch explains",
        CONTENT,
        {"type": "media", "url": "http://x"},
        [("$.url", "must match the pattern ^https://", "INVALID_FORMAT")],
    ),
    (
        "no branch meant: the discriminator is wrong",
        CONTENT,
        {"type": "video"},
        [("$.type", 'must be one of ["media", "text"]', "NOT_ALLOWED")],
    ),
    (
        "null alternative of an anyOf",
        NULLABLE,
        {"to": 5},
        [("$.to", "must be of type string (got integer)", "INVALID_TYPE")],
    ),
    ("not", {"not": {"type": "integer"}}, 3, [("$", "is not allowed here", "NOT_ALLOWED")]),
    (
        "null for an anyOf without a null branch",
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        None,
        [("$", "is required", "REQUIRED")],
    ),
    (
        "a null field of an object",
        OBJECT,
        {"name": None, "age": 1},
        [("$.name", "is required", "REQUIRED")],
    ),
    (
        "the value's type tells the branch",
        {"anyOf": [{"type": "string", "minLength": 5}, {"type": "integer"}]},
        "abc",
        [("$", "must have at least 5 characters", "TOO_SHORT")],
    ),
    (
        "no branch can be told apart",
        {"anyOf": [{"minLength": 5}, {"maxLength": 1}]},
        "abc",
        [("$", "matches none of the allowed forms", "INVALID_VALUE")],
    ),
    (
        "required inside an anyOf branch",
        CONTENT,
        {"type": "media"},
        [("$.url", "is required", "REQUIRED")],
    ),
    # How the branch meant is found (anyOf/oneOf): the branches a const or a null type rules out,
    # nested alternatives about the same value included; never those of a value further down.
    (
        "a null or an object: the object's discriminator is wrong",
        {"anyOf": [{"type": "null"}, tagged("a")]},
        {"type": "b"},
        [("$.type", 'must be one of ["a"]', "NOT_ALLOWED")],
    ),
    (
        "discriminators of several JSON types are sorted as text",
        {"anyOf": [tagged("text"), tagged(2)]},
        {"type": "video"},
        [("$.type", 'must be one of [2, "text"]', "NOT_ALLOWED")],
    ),
    (
        "a wrong discriminator with two undiscriminated branches left",
        {"anyOf": [tagged("text"), {"type": "object", "required": ["x"]}, {"type": "object", "required": ["y"]}]},
        {"type": "video"},
        [("$", "matches none of the allowed forms", "INVALID_VALUE")],
    ),
    (
        "every branch ruled out, none by a discriminator",
        {"anyOf": [{"type": "null"}, {"type": "null"}]},
        5,
        [("$", "matches none of the allowed forms", "INVALID_VALUE")],
    ),
    (
        "a nested oneOf whose branches are all ruled out is not meant",
        {"anyOf": [{"oneOf": [tagged("a"), tagged("b")]}, tagged("c") | {"required": ["type", "z"]}]},
        {"type": "c"},
        [("$.z", "is required", "REQUIRED")],
    ),
    (
        "the discriminators of a nested oneOf are allowed values too",
        {"anyOf": [{"oneOf": [tagged("a"), tagged("b")]}, tagged("c")]},
        {"type": "d"},
        [("$.type", 'must be one of ["a", "b", "c"]', "NOT_ALLOWED")],
    ),
    (
        "a nested anyOf is told apart by the value's type too",
        {"anyOf": [{"type": "string", "minLength": 5}, {"anyOf": [{"type": "integer"}, {"type": "array"}]}]},
        "abc",
        [("$", "must have at least 5 characters", "TOO_SHORT")],
    ),
    (
        "an anyOf about a field does not tell the branches of the object apart",
        {"anyOf": [{"type": "string"}, {"type": "object", "properties": {"x": ONE_OF_TWO_CONSTS}}]},
        {"x": 3},
        [("$.x", "matches none of the allowed forms", "INVALID_VALUE")],
    ),
    (
        "the consts of an anyOf about a field are not the object's discriminators",
        {"anyOf": [tagged("a"), tagged("b", x=ONE_OF_TWO_CONSTS)]},
        {"type": "c", "x": 3},
        [("$.type", 'must be one of ["a", "b"]', "NOT_ALLOWED")],
    ),
    (
        "oneOf matched by more than one branch",
        {"oneOf": [{"type": "string"}, {"minLength": 1}]},
        "ab",
        [("$", "is invalid (oneOf)", "INVALID_VALUE")],
    ),
    ("enum", {"enum": ["a", "b"]}, "c", [("$", 'must be one of ["a", "b"]', "NOT_ALLOWED")]),
    ("const", {"const": "x"}, "y", [("$", 'must be "x"', "NOT_ALLOWED")]),
    # json_equal on lists and objects: a shorter or longer list, a missing or extra key is not equal.
    ("enum of lists, shorter", {"enum": [[1, 2]]}, [1], [("$", "must be one of [[1, 2]]", "NOT_ALLOWED")]),
    ("enum of lists, longer", {"enum": [[1, 2]]}, [1, 2, 3], [("$", "must be one of [[1, 2]]", "NOT_ALLOWED")]),
    (
        "const object, missing key",
        {"const": {"a": 1, "b": 2}},
        {"a": 1},
        [("$", 'must be {"a": 1, "b": 2}', "NOT_ALLOWED")],
    ),
    ("const object, extra key", {"const": {"a": 1}}, {"a": 1, "b": 2}, [("$", 'must be {"a": 1}', "NOT_ALLOWED")]),
    ("const 1 is not true", {"const": 1}, True, [("$", "must be 1", "NOT_ALLOWED")]),
    (
        "no known fields at all",
        {"type": "object", "additionalProperties": False},
        {"a": 1},
        [("$.a", "is not a known field", "UNKNOWN_FIELD")],
    ),
    (
        # The path of a missing field is built like any other: under the key "" it is "$..a".
        "required fields under the empty key",
        {"properties": {"": {"required": ["a"], "properties": {"b": {"type": "string"}}}}},
        {"": {"b": 1}},
        [("$..a", "is required", "REQUIRED"), ("$..b", "must be of type string (got integer)", "INVALID_TYPE")],
    ),
    # The wording and code of every other keyword with a message of its own.
    ("above maximum", {"maximum": 5}, 6, [("$", "must be <= 5", "OUT_OF_RANGE")]),
    ("exclusive minimum", {"exclusiveMinimum": 5}, 5, [("$", "must be > 5", "OUT_OF_RANGE")]),
    ("exclusive maximum", {"exclusiveMaximum": 5}, 5, [("$", "must be < 5", "OUT_OF_RANGE")]),
    ("too short", {"minLength": 2}, "a", [("$", "must have at least 2 characters", "TOO_SHORT")]),
    ("format", {"format": "email"}, "nobody", [("$", "must be a valid email", "INVALID_FORMAT")]),
    ("too few items", {"minItems": 2}, [1], [("$", "must have at least 2 items", "TOO_SHORT")]),
    ("too many items", {"maxItems": 1}, [1, 2], [("$", "must have at most 1 items", "TOO_MANY")]),
    (
        "too many such items",
        {"contains": {"const": 1}, "maxContains": 1},
        [1, 1],
        [("$", "must have at most 1 such items", "TOO_MANY")],
    ),
    ("too few entries", {"minProperties": 1}, {}, [("$", "must have at least 1 entries", "TOO_SHORT")]),
    ("duplicates", {"uniqueItems": True}, [1, 1], [("$", "must not contain duplicates", "INVALID_VALUE")]),
    (
        "a pattern with its own wording",
        {"type": "string", "pattern": "^\\+", "errorMessage": "must start with +"},
        "1",
        [("$", "must start with +", "INVALID_FORMAT")],
    ),
    (
        "unevaluated properties",
        {"properties": {"a": {}}, "unevaluatedProperties": False},
        {"a": 1, "b": 2},
        [("$.b", "is not a known field", "UNKNOWN_FIELD")],
    ),
    (
        "oneOf, told apart by the value's type",
        {"oneOf": [{"type": "string", "maxLength": 1}, {"type": "integer"}]},
        "ab",
        [("$", "must have at most 1 characters", "TOO_LONG")],
    ),
    (
        "a keyword without wording of its own",
        {"dependentRequired": {"a": ["b"]}},
        {"a": 1},
        [("$", "is invalid (dependentRequired)", "INVALID_VALUE")],
    ),
    # The type found is named as JSON names it; a list of types is read out with "or".
    (
        "one of two types",
        {"type": ["string", "integer"]},
        1.5,
        [("$", "must be of type string or integer (got number)", "INVALID_TYPE")],
    ),
    ("a boolean", {"type": "string"}, True, [("$", "must be of type string (got boolean)", "INVALID_TYPE")]),
    ("an array", {"type": "string"}, [], [("$", "must be of type string (got array)", "INVALID_TYPE")]),
    ("an object", {"type": "string"}, {}, [("$", "must be of type string (got object)", "INVALID_TYPE")]),
    # Long lists of allowed values are cut after 200 characters of JSON.
    (
        "allowed values of exactly 200 characters are cut",
        {"enum": ["a" * 198]},
        "b",
        [("$", f'must be one of ["{"a" * 198}"...]', "NOT_ALLOWED")],
    ),
    (
        "allowed values of 199 characters are not",
        {"enum": ["a" * 197]},
        "b",
        [("$", f'must be one of ["{"a" * 197}"]', "NOT_ALLOWED")],
    ),
    (
        "longer allowed values keep their first 200 characters",
        {"enum": ["a" * 300]},
        "b",
        [("$", f'must be one of ["{"a" * 199}...]', "NOT_ALLOWED")],
    ),
]

VALID: list[tuple[str, dict[str, Any], Any]] = [
    ("enum of lists, equal", {"enum": [[1, 2]]}, [1, 2]),
    ("const object, key order", {"const": {"a": 1, "b": 2}}, {"b": 2, "a": 1}),
    ("const 1.0 is 1", {"const": 1}, 1.0),
    ("text branch", CONTENT, {"type": "text", "text": "hi"}),
    ("null alternative", NULLABLE, {"to": None}),
    # Keywords the compiled predicate does not know: jsonschema answers.
    ("format", {"format": "email"}, "a@example.com"),
    ("oneOf", {"oneOf": [{"type": "string"}, {"type": "integer"}]}, "a"),
]


@pytest.mark.parametrize(("schema", "instance", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_issues_have_stable_paths_wording_and_codes(
    schema: dict[str, Any], instance: Any, expected: list[tuple[str, str, str]]
) -> None:
    validator = validator_for(schema)
    assert not validator.is_valid(instance)
    issues = sorted((i.path, i.message, i.code) for i in validator.issues(instance))
    assert issues == sorted(expected)


@pytest.mark.parametrize(("schema", "instance"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_equal_values_are_valid(schema: dict[str, Any], instance: Any) -> None:
    validator = validator_for(schema)
    assert validator.is_valid(instance)
    assert validator.issues(instance) == []


def test_the_codes_used_above_are_the_public_ones() -> None:
    public = {value for name, value in vars(IssueCodes).items() if name.isupper()}
    assert {code for *_, issues in CASES for _, _, code in issues} <= public
