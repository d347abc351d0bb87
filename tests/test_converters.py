"""The one cattrs converter: JSON round-trips of messages, batches and results (hypothesis)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import cattrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messaging_core import (
    BatchSendResult,
    BinaryContent,
    Capability,
    ConnectorHealth,
    ConnectorResult,
    Endpoint,
    EndpointType,
    Failure,
    HtmlContent,
    JsonContent,
    MediaContent,
    Message,
    MessageBatch,
    MessageStatus,
    MultipartContent,
    ReceiveResult,
    SendResult,
    StatusUpdate,
    StatusUpdatesResult,
    TemplateContent,
    TextContent,
    ValidationIssue,
)
from messaging_core.converters import dumps, loads, structure, unstructure

text = st.text(max_size=20)
names = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=10)
json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(names, json_values, max_size=4)
urls = st.builds(lambda host, path: f"https://{host}.example.com/{path}", names, names)
endpoints = st.builds(Endpoint, st.sampled_from(EndpointType), text)
instants = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))

simple_contents = st.one_of(
    st.builds(TextContent, text, st.none() | st.just("utf-8")),
    st.builds(
        MediaContent,
        urls,
        st.none() | st.just("image/png"),
        st.none() | text,
        st.none() | text,
        st.none() | st.binary(max_size=16),
    ),
    st.builds(HtmlContent, text, st.none() | text),
    st.builds(TemplateContent, names, json_objects),
    st.builds(JsonContent, json_values),
    st.builds(BinaryContent, st.binary(max_size=32), st.sampled_from(["application/octet-stream", "image/gif"])),
)
contents = simple_contents | st.builds(MultipartContent, st.lists(simple_contents, min_size=1, max_size=3))
messages = st.builds(Message, names, st.none() | endpoints, st.none() | endpoints, contents, json_objects)
issues = st.builds(ValidationIssue, text.map(lambda t: f"$.{t}"), text, st.sampled_from(["REQUIRED", "INVALID_TYPE"]))
errors = st.builds(Failure, names, text, st.lists(issues, max_size=3), st.booleans(), json_objects)
send_results = st.builds(SendResult, names, st.none() | names, st.sampled_from(MessageStatus), instants, json_objects)
send_outcomes = st.builds(ConnectorResult.success, send_results) | st.builds(ConnectorResult.from_error, errors)
updates = st.builds(
    StatusUpdate, names, st.sampled_from(MessageStatus), instants, st.none() | text, json_objects, st.none() | names
)


def round_trip(obj: Any, cls: Any) -> Any:
    text_form = dumps(obj)
    json.loads(text_form)  # plain JSON, nothing Python-specific
    return loads(text_form, cls)


@settings(max_examples=150, deadline=None)
@given(messages)
def test_message_round_trips(message: Message) -> None:
    assert round_trip(message, Message) == message


@settings(deadline=None)  # timing varies on shared CI machines; correctness is the point
@given(st.lists(messages, max_size=4), names, json_objects)
def test_batch_round_trips(items: list[Message], batch_id: str, properties: dict[str, Any]) -> None:
    batch = MessageBatch(items, batch_id, properties)
    assert round_trip(batch, MessageBatch) == batch


@settings(deadline=None)  # timing varies on shared CI machines; correctness is the point
@given(send_outcomes)
def test_send_outcome_round_trips(result: ConnectorResult[SendResult]) -> None:
    assert round_trip(result, ConnectorResult[SendResult]) == result


@settings(deadline=None)  # timing varies on shared CI machines; correctness is the point
@given(names, st.dictionaries(names, send_outcomes, max_size=4))
def test_batch_result_round_trips(batch_id: str, results: dict[str, ConnectorResult[SendResult]]) -> None:
    batch_result = BatchSendResult(batch_id, results)
    back = round_trip(batch_result, BatchSendResult)
    assert back == batch_result
    assert list(back.results) == list(results)  # input order survives


@settings(deadline=None)  # timing varies on shared CI machines; correctness is the point
@given(names, st.lists(updates, max_size=4))
def test_status_history_round_trips(message_id: str, history: list[StatusUpdate]) -> None:
    result = ConnectorResult.success(StatusUpdatesResult(message_id, history))
    assert round_trip(result, ConnectorResult[StatusUpdatesResult]) == result


@settings(deadline=None)  # timing varies on shared CI machines; correctness is the point
@given(names, st.lists(messages, max_size=3))
def test_receive_result_round_trips(batch_id: str, items: list[Message]) -> None:
    assert round_trip(ReceiveResult(batch_id, items), ReceiveResult) == ReceiveResult(batch_id, items)


@settings(deadline=None)  # timing varies on shared CI machines; correctness is the point
@given(
    st.sampled_from(["ready", "error"]),
    st.booleans(),
    instants,
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3000)),
    st.lists(text, max_size=3),
    json_objects,
)
def test_health_round_trips(
    state: str, healthy: bool, at: datetime, uptime: timedelta, found: list[str], metrics: dict[str, Any]
) -> None:
    health = ConnectorHealth(state, healthy, at, uptime, found, metrics)
    assert round_trip(health, ConnectorHealth) == health


def test_wire_format_is_tagged_and_readable() -> None:
    message = Message(
        "m1",
        None,
        Endpoint.phone("+15550000001"),
        MultipartContent([TextContent("hi"), BinaryContent(b"\x00\x01")]),
        {"Tag": "x"},
    )
    assert unstructure(message) == {
        "id": "m1",
        "sender": None,
        "receiver": {"type": "phone", "address": "+15550000001"},
        "content": {
            "type": "multipart",
            "parts": [
                {"type": "text", "text": "hi", "encoding": None},
                {"type": "binary", "data": "AAE=", "mime_type": "application/octet-stream"},
            ],
        },
        "properties": {"Tag": "x"},
    }
    update = StatusUpdate("m1", MessageStatus.DELIVERED, datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    assert unstructure(update)["timestamp"] == "2024-05-01T12:00:00+00:00"
    assert unstructure(update)["status"] == "delivered"
    assert unstructure(Capability.SEND_MESSAGES | Capability.TEMPLATES) == ["SEND_MESSAGES", "TEMPLATES"]
    assert structure(["SEND_MESSAGES", "TEMPLATES"], Capability) == Capability.SEND_MESSAGES | Capability.TEMPLATES


def test_unknown_content_tag_is_refused_naming_the_field() -> None:
    data = {"id": "m", "sender": None, "receiver": None, "content": {"type": "carrier-pigeon"}, "properties": {}}
    with pytest.raises(cattrs.BaseValidationError) as raised:
        structure(data, Message)
    assert any("$.content" in line for line in cattrs.transform_error(raised.value))
