"""Every request the connector builds is a valid ``CreateMessage`` request of Twilio's OpenAPI file.

The form is read back the way Twilio reads it: every key must be a property of the operation's
``requestBody`` schema, values must parse as the declared types (integers, numbers, booleans
written ``true``/``false``), only array properties may repeat, and the operation's conditional
requirements (``x-twilio.conditional``) hold. Hypothesis generates the messages.
"""

from __future__ import annotations

import math
import re
import string
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from messaging_core import (
    ConnectionSettings,
    Endpoint,
    MediaContent,
    Message,
    MultipartContent,
    TextContent,
)
from messaging_twilio_sms import TwilioChannelSchemas, TwilioSmsConnector, _api
from messaging_twilio_sms.emulator import TwilioEmulator
from messaging_twilio_sms.settings import structure_settings

MESSAGES_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
FORM = "application/x-www-form-urlencoded"
ACCOUNT = "AC" + "0" * 32
SERVICE = "MG" + "1" * 32
_OAI_ONLY_KEYS = frozenset({"nullable", "example", "examples", "discriminator", "xml", "externalDocs", "format"})
_INTEGER = re.compile(r"^-?[0-9]+$")


def _to_json_schema(node: Any, components: Mapping[str, Any]) -> Any:
    """OpenAPI 3.0 → JSON Schema 2020-12: inline ``$ref``s, drop OpenAPI-only keys and formats.

    Formats (``phone-number``, ``uri``) are Twilio's own and are checked by the tests themselves.
    """
    if isinstance(node, list):
        return [_to_json_schema(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _to_json_schema(components[node["$ref"].removeprefix("#/components/schemas/")], components)
    schema: dict[str, Any] = {}
    for key, value in node.items():
        if key in _OAI_ONLY_KEYS or key.startswith("x-") or key == "description":
            continue
        if key == "properties":
            schema[key] = {name: _to_json_schema(sub, components) for name, sub in value.items()}
        else:
            schema[key] = _to_json_schema(value, components)
    return schema


class CreateMessageOperation:
    """The ``CreateMessage`` operation of the OpenAPI file, as a checker of form bodies."""

    def __init__(self, oai: Mapping[str, Any]) -> None:
        operation = oai["paths"][MESSAGES_PATH]["post"]
        assert operation["operationId"] == "CreateMessage"
        schema = operation["requestBody"]["content"][FORM]["schema"]
        components = oai["components"]["schemas"]
        self.schema: dict[str, Any] = _to_json_schema(schema, components)
        self.schema["additionalProperties"] = False  # a key Twilio does not define is an error here
        Draft202012Validator.check_schema(self.schema)
        self.validator = Draft202012Validator(self.schema)
        self.properties: dict[str, Any] = self.schema["properties"]
        # [["from", "messaging_service_sid"], ["body", "media_url", "content_sid"]]: one of each group.
        self.conditional = [
            [_pascal(name) for name in group] for group in operation.get("x-twilio", {}).get("conditional", [])
        ]

    def problems(self, form: list[tuple[str, str]]) -> list[str]:
        """Every way ``form`` is not a valid ``CreateMessage`` body (empty when it is one)."""
        problems: list[str] = []
        instance: dict[str, Any] = {}
        for key, text in form:
            spec = self.properties.get(key)
            if spec is None:
                problems.append(f"{key}: not a CreateMessage parameter")
                continue
            is_array = spec.get("type") == "array"
            item = spec["items"] if is_array else spec
            value = _parse(text, item.get("type", "string"))
            if value is _INVALID:
                problems.append(f"{key}: {text!r} is not a {item.get('type')}")
                continue
            if is_array:
                instance.setdefault(key, []).append(value)
            elif key in instance:
                problems.append(f"{key}: repeated, but not an array parameter")
            else:
                instance[key] = value
        problems += [f"{list(e.absolute_path)}: {e.message}" for e in self.validator.iter_errors(instance)]
        for group in self.conditional:
            if not any(instance.get(name) for name in group):
                problems.append(f"one of {group} is required")
        return problems


def _pascal(snake: str) -> str:
    return "".join(word.capitalize() for word in snake.split("_"))


_INVALID = object()


def _parse(text: str, kind: str) -> Any:
    """A form value read as the OpenAPI type says (what Twilio's server does)."""
    if kind == "integer":
        return int(text) if _INTEGER.match(text) else _INVALID
    if kind == "number":
        try:
            number = float(text)
        except ValueError:
            return _INVALID
        return number if math.isfinite(number) and text.strip() == text else _INVALID
    if kind == "boolean":
        return {"true": True, "false": False}.get(text, _INVALID)
    return text


@pytest.fixture(scope="module")
def create_message(oai: dict[str, Any]) -> CreateMessageOperation:
    return CreateMessageOperation(oai)


# -- the checker itself --------------------------------------------------------------------------------


def test_checker_knows_the_operation(create_message: CreateMessageOperation) -> None:
    assert {"To", "From", "MessagingServiceSid", "Body", "MediaUrl", "StatusCallback", "Attempt"} <= set(
        create_message.properties
    )
    assert create_message.properties["MediaUrl"]["type"] == "array"
    assert create_message.properties["PersistentAction"]["type"] == "array"
    assert create_message.conditional == [["From", "MessagingServiceSid"], ["Body", "MediaUrl", "ContentSid"]]


@pytest.mark.parametrize(
    ("form", "complaint"),
    [
        ([("To", "+1"), ("From", "+2"), ("Body", "x"), ("AttemptLimits", "3")], "AttemptLimits"),
        ([("To", "+1"), ("From", "+2"), ("Body", "x"), ("Attempt", "3.5")], "Attempt"),
        ([("To", "+1"), ("From", "+2"), ("Body", "x"), ("SmartEncoded", "True")], "SmartEncoded"),
        ([("To", "+1"), ("From", "+2"), ("Body", "x"), ("MaxPrice", "nan")], "MaxPrice"),
        ([("To", "+1"), ("From", "+2"), ("Body", "x"), ("Body", "y")], "Body"),
        ([("To", "+1"), ("Body", "x")], "one of"),
        ([("To", "+1"), ("From", "+2")], "one of"),
        ([("From", "+2"), ("Body", "x")], "'To' is a required property"),
        ([("To", "+1"), ("MessagingServiceSid", "MG12"), ("Body", "x")], "does not match"),
    ],
)
def test_checker_refuses_bad_forms(
    create_message: CreateMessageOperation, form: list[tuple[str, str]], complaint: str
) -> None:
    problems = create_message.problems(form)
    assert any(complaint in problem for problem in problems), problems


# -- generated messages --------------------------------------------------------------------------------

_e164 = st.from_regex(r"\A\+[1-9][0-9]{6,14}\Z")
_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=200
)
_media_url = st.builds(
    lambda host, path: f"https://{host}.example.com/{path}.png",
    st.text(string.ascii_lowercase, min_size=1, max_size=10),
    st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10),
)
_properties = st.fixed_dictionaries(
    {},
    optional={
        "ValidityPeriod": st.integers(1, 36000),
        "MaxPrice": st.one_of(st.integers(0, 10**6), st.floats(0, 1e6, allow_nan=False, allow_infinity=False)),
        "ProvideCallback": st.booleans(),
        "StatusCallback": st.sampled_from(["https://cb.example.com/s", "https://cb.example.com/s?x=1"]),
        "AttemptLimits": st.integers(1, 100),
        "SmartEncoded": st.booleans(),
        "PersistentAction": st.one_of(_text, st.lists(_text, max_size=3)),
        "ShortenUrls": st.booleans(),
        "SendAsMms": st.booleans(),
        "RiskCheck": st.sampled_from(["enable", "disable"]),
        "ApplicationSid": st.just("AP" + "0" * 32),
        "FallbackFrom": _e164,
        "ContentRetention": st.sampled_from(["retain", "discard"]),
        "AddressRetention": st.sampled_from(["retain", "obfuscate"]),
        "ExtraFields": st.sampled_from(["TrafficType=free", ["ProvideFeedback=true", "ForceDelivery=false"]]),
    },
)
_settings = st.fixed_dictionaries(
    {"AccountSid": st.just(ACCOUNT), "AuthToken": st.just("secret-token")},
    optional={
        "StatusCallback": st.sampled_from(
            ["https://hooks.example.com/status", "https://hooks.example.com/status?tenant=7", "http://127.0.0.1:8/s"]
        ),
        "MessagingServiceSid": st.just(SERVICE),
        "ValidityPeriod": st.integers(1, 36000),
        "MaxPrice": st.floats(0, 100, allow_nan=False, allow_infinity=False),
    },
)


@st.composite
def _messages(draw: st.DrawFn, *, with_sender: bool) -> Message:
    texts = draw(st.lists(_text, max_size=2))
    media = draw(st.lists(_media_url, min_size=0 if texts else 1, max_size=10))
    parts = [TextContent(t) for t in texts] + [MediaContent(url) for url in media]
    content = parts[0] if len(parts) == 1 else MultipartContent(tuple(parts))
    sender = Endpoint.phone(draw(_e164)) if with_sender else None
    return Message(uuid.uuid4().hex, sender, Endpoint.phone(draw(_e164)), content, draw(_properties))


@st.composite
def _cases(draw: st.DrawFn) -> tuple[dict[str, Any], Message]:
    settings = draw(_settings)
    # Without a Messaging Service the connector needs a sender; with one, a sender is optional.
    with_sender = "MessagingServiceSid" not in settings or draw(st.booleans())
    message = draw(_messages(with_sender=with_sender))
    # ProvideCallback true needs a callback URL (a validation issue otherwise, tested elsewhere).
    wanted = message.properties.get("ProvideCallback")
    assume(not wanted or "StatusCallback" in settings or "StatusCallback" in message.properties)
    return settings, message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_cases())
def test_generated_requests_are_valid_create_message_requests(
    create_message: CreateMessageOperation, case: tuple[dict[str, Any], Message]
) -> None:
    raw_settings, message = case
    schema = TwilioChannelSchemas.TWILIO_SMS
    connector = TwilioSmsConnector(schema, raw_settings)
    assert connector.validate_message(message) == [], "the strategy must build valid messages"
    resolved = ConnectionSettings(raw_settings).resolved(schema)
    form = _api.build_message_form(message, structure_settings(resolved))

    assert create_message.problems(form) == []
    keys = [key for key, _ in form]
    assert keys.count("MediaUrl") == len(message.media())
    actions = message.properties.get("PersistentAction", ())
    assert keys.count("PersistentAction") == (1 if isinstance(actions, str) else len(actions))
    assert keys.count("From") == (message.sender is not None)
    status_callbacks = [value for key, value in form if key == "StatusCallback"]
    if status_callbacks:
        assert status_callbacks[0].endswith(f"MessageId={message.id}")


async def test_requests_the_emulator_received_are_valid(
    create_message: CreateMessageOperation,
    emulator: TwilioEmulator,
    make_connector: Callable[..., Any],
    sms: Callable[..., Message],
) -> None:
    """The same check on the bytes that went over the wire (as the emulator parsed them)."""
    emulator.auto_advance = False
    connector = await make_connector(StatusCallback="http://127.0.0.1:9/status", MaxPrice=1.5)
    messages = [
        sms(),
        sms(text=None, media=["https://a.example.com/1.png", "https://a.example.com/2.gif"]),
        sms(
            ValidityPeriod=600,
            MaxPrice=0.05,
            ProvideCallback=False,
            AttemptLimits=2,
            SmartEncoded=True,
            PersistentAction=["geo:1,2", "mailto:x@example.com"],
        ),
    ]
    for message in messages:
        result = await connector.send_message(message)
        assert result.is_success, result.error
    assert len(emulator.messages) == len(messages)
    for stored in emulator.messages.values():
        form = [
            (key, item)
            for key, value in stored.params.items()
            for item in (value if isinstance(value, list) else [value])
        ]
        assert create_message.problems(form) == []
