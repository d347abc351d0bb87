"""JSON Schema compilation: cached validators, every issue reported, no values echoed."""

from __future__ import annotations

import copy
import types
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messaging_core import (
    ChannelConnector,
    ChannelSchema,
    ConnectionSettings,
    Endpoint,
    IssueCodes,
    MediaContent,
    Message,
    MultipartContent,
    ParameterSpec,
    PropertySpec,
    TemplateContent,
    TextContent,
    ValidationIssue,
)
from messaging_core.validation import JsonValidator, format_issues, validator_for

SENDER = Endpoint.phone("+15550000001")
RECEIVER = Endpoint.phone("+15550000002")


def _message(content: Any = None, **changes: Any) -> Message:
    fields: dict[str, Any] = {
        "id": "m1",
        "sender": SENDER,
        "receiver": RECEIVER,
        "content": content or TextContent("hello"),
        "properties": {},
    }
    return Message(**{**fields, **changes})


@pytest.fixture
def acme_connector(acme: types.SimpleNamespace) -> ChannelConnector:
    connector: ChannelConnector = acme.connector_class(acme.schema, acme.settings)
    return connector


@pytest.fixture
def issues_of(acme_connector: ChannelConnector) -> Callable[[Message], list[tuple[str, str]]]:
    def issues(message: Message) -> list[tuple[str, str]]:
        return [(i.path, i.code) for i in acme_connector.validate_message(message)]

    return issues


# -- documents and caching ---------------------------------------------------------------------------


def test_documents_are_draft_2020_12_and_valid(acme: types.SimpleNamespace) -> None:
    schema: ChannelSchema = acme.schema
    for document in (schema.settings_json_schema(), schema.properties_json_schema(), schema.message_json_schema()):
        assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema.Draft202012Validator.check_schema(document)


def test_documents_are_built_once_per_schema(acme: types.SimpleNamespace) -> None:
    schema: ChannelSchema = acme.schema
    assert schema.message_json_schema() is schema.message_json_schema()
    assert schema.settings_json_schema() is copy.deepcopy(schema).settings_json_schema()


def test_validators_are_compiled_once_and_reused(acme: types.SimpleNamespace) -> None:
    document = acme.schema.message_json_schema()
    first = validator_for(document)
    assert validator_for(document) is first
    assert validator_for(copy.deepcopy(document)) is first  # keyed by content, not identity
    assert validator_for(acme.text_only.message_json_schema()) is not first


def test_sending_does_not_compile_validators(acme: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    connector = acme.connector_class(acme.schema, acme.settings)
    other = acme.connector_class(acme.schema, acme.settings)
    connector.validate_message(_message())  # first use of each document in this process may compile
    ConnectionSettings(acme.settings).issues(acme.schema)
    compiled: list[object] = []
    original = JsonValidator.__init__

    def counting(self: JsonValidator, document: Any) -> None:
        compiled.append(document)
        original(self, document)

    monkeypatch.setattr(JsonValidator, "__init__", counting)
    for i in range(20):
        connector.validate_message(_message(id=f"m{i}"))
        other.validate_message(_message(id=f"m{i}", properties={"Nope": 1}))
    ConnectionSettings(acme.settings).issues(acme.schema)
    assert compiled == []


def test_validators_are_keyed_by_content_whatever_the_key_order() -> None:
    first = validator_for({"type": "string", "minLength": 1, "maxLength": 7})
    assert validator_for({"maxLength": 7, "type": "string", "minLength": 1}) is first


def test_a_validator_compiled_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    # JsonValidator itself, not the cached validator_for (whose cache may hold validators built earlier).
    document = {"type": "object", "properties": {"to": {"type": "string", "format": "email"}}, "required": ["to"]}
    validator = JsonValidator(document)
    assert validator.document == document
    assert [(i.path, i.message, i.code) for i in validator.issues({"to": "nobody"})] == [
        ("$.to", "must be a valid email", IssueCodes.INVALID_FORMAT)  # formats are checked, not only annotated
    ]
    assert validator.issues({"to": "a@example.com"}) == []

    # The hot path: is_valid answers from the compiled predicate, never through jsonschema.
    def refuse(*args: object, **kwargs: object) -> bool:
        raise AssertionError("jsonschema was asked")

    compiled = JsonValidator({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
    monkeypatch.setattr(jsonschema.Draft202012Validator, "is_valid", refuse)
    monkeypatch.setattr(jsonschema.Draft202012Validator, "iter_errors", refuse)
    assert compiled.is_valid({"n": 1})
    assert not compiled.is_valid({"n": "1"})
    assert not compiled.is_valid({})


def test_invalid_schema_documents_are_refused() -> None:
    with pytest.raises(jsonschema.SchemaError):
        JsonValidator({"type": "no-such-type"})


# -- every issue, each with a path and a code ------------------------------------------------------


def test_every_problem_is_reported_not_only_the_first(issues_of: Callable[[Message], list[tuple[str, str]]]) -> None:
    message = _message(
        MultipartContent([TextContent("x" * 161), *[MediaContent("https://example.com/a.png")] * 3]),
        sender=None,
        receiver=Endpoint.phone("12"),
        properties={"Priority": True, "MaxPrice": 2, "Tags": ["a", 1], "Nope": "x"},
    )
    assert issues_of(message) == [
        ("$.content.parts", IssueCodes.TOO_MANY),
        ("$.content.parts[0].text", IssueCodes.TOO_LONG),
        ("$.properties.MaxPrice", IssueCodes.OUT_OF_RANGE),
        ("$.properties.Nope", IssueCodes.UNKNOWN_FIELD),
        ("$.properties.Priority", IssueCodes.INVALID_TYPE),
        ("$.properties.Priority", IssueCodes.NOT_ALLOWED),
        ("$.properties.Tags[1]", IssueCodes.INVALID_TYPE),
        ("$.receiver.address", IssueCodes.INVALID_FORMAT),
        ("$.sender", IssueCodes.REQUIRED),
    ]


def test_issue_wording(acme_connector: ChannelConnector) -> None:
    issues = acme_connector.validate_message(
        _message(TemplateContent("welcome"), id="", receiver=Endpoint.email("a@example.com"))
    )
    assert [str(i) for i in issues] == [
        '$.content.type: must be one of ["media", "multipart", "text"]',
        "$.id: must have at least 1 characters",
        '$.receiver.type: must be one of ["label", "phone"]',
    ]
    assert format_issues(issues).splitlines()[0] == '  - $.content.type: must be one of ["media", "multipart", "text"]'


def test_a_valid_message_has_no_issues(issues_of: Callable[[Message], list[tuple[str, str]]]) -> None:
    message = _message(
        MultipartContent([TextContent("hi"), MediaContent("https://example.com/a.png", "image/png")]),
        properties={"MaxPrice": 0.5, "Tags": ["a", "b"], "Priority": 2},
    )
    assert issues_of(message) == []
    assert issues_of(_message(sender=Endpoint.label("ACME"))) == []


def test_capabilities_gate_content(acme: types.SimpleNamespace) -> None:
    # The text-only variant removed MEDIA_ATTACHMENTS (and the media content types).
    connector = acme.connector_class(acme.text_only, acme.settings)
    issues = connector.validate_message(_message(MediaContent("https://example.com/a.png")))
    assert ("$.content.type", IssueCodes.NOT_ALLOWED) in [(i.path, i.code) for i in issues]
    # A variant that removed only the capability still refuses media content.
    media_capability_only = acme.schema.derive(
        "no media capability", remove_capabilities=acme.schema.capabilities & ~acme.text_only.capabilities
    )
    assert "media" in {c.value for c in media_capability_only.content_types}
    only_capability = acme.connector_class(media_capability_only, acme.settings)
    assert only_capability.validate_message(_message(MediaContent("https://example.com/a.png")))
    assert only_capability.validate_message(_message()) == []


# -- data types ----------------------------------------------------------------------------------------

TYPED = ChannelSchema(
    provider="typed",
    channel_type="t",
    version="1.0.0",
    display_name="Typed",
    capabilities=["SEND_MESSAGES"],
    parameters=[
        ParameterSpec("Count", "integer"),
        ParameterSpec("Ratio", "number"),
        ParameterSpec("Flag", "boolean"),
        ParameterSpec("Names", repeated=True, min_length=2),
        ParameterSpec("Levels", "integer", repeated=True, maximum=3),
    ],
)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"Count": 3, "Ratio": 3, "Flag": False}, []),  # an int is a number
        ({"Ratio": 0.5, "Names": ["ab", "cd"], "Levels": [1, 3]}, []),
        ({"Count": True}, [("$.Count", IssueCodes.INVALID_TYPE)]),  # a bool is not an integer
        ({"Ratio": False}, [("$.Ratio", IssueCodes.INVALID_TYPE)]),  # nor a number
        ({"Count": 1.5}, [("$.Count", IssueCodes.INVALID_TYPE)]),
        ({"Count": "14400"}, [("$.Count", IssueCodes.INVALID_TYPE)]),
        ({"Flag": 1}, [("$.Flag", IssueCodes.INVALID_TYPE)]),
        ({"Names": "ab"}, [("$.Names", IssueCodes.INVALID_TYPE)]),
        ({"Names": ("ab", "c")}, [("$.Names[1]", IssueCodes.TOO_SHORT)]),  # tuples are arrays
        (
            {"Levels": [1, True, 4]},
            [("$.Levels[1]", IssueCodes.INVALID_TYPE), ("$.Levels[2]", IssueCodes.OUT_OF_RANGE)],
        ),
        ({"Other": 1, "Count": "x"}, [("$.Count", IssueCodes.INVALID_TYPE), ("$.Other", IssueCodes.UNKNOWN_FIELD)]),
    ],
)
def test_parameter_types(values: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert [(i.path, i.code) for i in ConnectionSettings(values).issues(TYPED)] == expected


def test_unknown_names_are_accepted_when_not_strict() -> None:
    loose = ChannelSchema(
        provider="loose",
        channel_type="t",
        version="1.0.0",
        display_name="Loose",
        capabilities=["SEND_MESSAGES"],
        properties=[PropertySpec("Known", "integer")],
        strict=False,
    )
    assert ConnectionSettings({"Anything": 1}).issues(loose) == []
    validator = validator_for(loose.properties_json_schema())
    assert validator.issues({"Other": "x"}) == []
    assert [(i.path, i.code) for i in validator.issues({"Known": "x"})] == [("$.Known", IssueCodes.INVALID_TYPE)]


def test_issue_paths_can_be_rooted_elsewhere() -> None:
    issues = ConnectionSettings({"Count": "x"}).issues(TYPED, root="$.connectors.sms.parameters")
    assert issues == [
        ValidationIssue("$.connectors.sms.parameters.Count", "must be of type integer (got string)", "INVALID_TYPE")
    ]


# -- issues never echo the offending value -----------------------------------------------------------

SECRETIVE = ChannelSchema(
    provider="secretive",
    channel_type="t",
    version="1.0.0",
    display_name="Secretive",
    capabilities=["SEND_MESSAGES"],
    parameters=[
        ParameterSpec("ApiKey", required=True, sensitive=True, pattern="^key_[0-9]{4}$", min_length=8, max_length=8),
        ParameterSpec("Mode", allowed_values=["live", "test"]),
        ParameterSpec("Contact", format="email"),
        ParameterSpec("Retries", "integer", maximum=3),
    ],
)

secret_text = st.text(st.sampled_from("QXZJW"), min_size=6, max_size=30)


@settings(deadline=None)  # timing varies on shared CI machines; correctness is the point
@given(secret_text, secret_text, secret_text)
def test_issues_never_contain_the_value(api_key: str, mode: str, contact: str) -> None:
    values = {"ApiKey": api_key, "Mode": mode, "Contact": contact, "Retries": api_key}
    issues = ConnectionSettings(values).issues(SECRETIVE)
    assert {i.path for i in issues} == {"$.ApiKey", "$.Mode", "$.Contact", "$.Retries"}
    for issue in issues:
        for value in (api_key, mode, contact):
            assert value not in issue.message
            assert value not in str(issue)


def test_settings_errors_never_contain_the_value() -> None:
    secret = "QQQQQQQQQQQQQQQQ-secret"
    settings = ConnectionSettings({"ApiKey": secret, "Unknown": secret}, sensitive=frozenset({"Unknown"}))
    with pytest.raises(ValueError) as raised:
        settings.validate(SECRETIVE, where="connector 'x'")
    assert secret not in str(raised.value)
    assert str(raised.value).startswith("connector 'x': 3 problem(s)")
    assert [i.path for i in raised.value.issues] == ["$.ApiKey", "$.ApiKey", "$.Unknown"]  # type: ignore[attr-defined]
