"""``get_message_status()``: by Twilio SID or by our id, every Twilio status, and the failures."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from messaging_core import Failure, Message, MessageStatus, StatusUpdate
from messaging_twilio_sms import (
    DELIVERY_ERRORS,
    STATUS_TABLE,
    TwilioChannelSchemas,
    TwilioErrorCodes,
    TwilioSmsConnector,
)
from messaging_twilio_sms.emulator import TwilioEmulator

Maker = Callable[..., Awaitable[TwilioSmsConnector]]
Sms = Callable[..., Message]


async def _sent_sid(connector: TwilioSmsConnector, message: Message) -> str:
    result = await connector.send_message(message)
    assert result.value is not None, result.error
    assert result.value.remote_message_id is not None
    return result.value.remote_message_id


async def _latest(connector: TwilioSmsConnector, message_id: str) -> StatusUpdate:
    result = await connector.get_message_status(message_id)
    assert result.value is not None, result.error
    assert result.value.message_id == message_id
    latest = result.value.latest
    assert latest is not None
    return latest


async def test_status_by_sid_and_by_our_id(emulator: TwilioEmulator, make_connector: Maker, sms: Sms) -> None:
    connector = await make_connector()
    message = sms()
    sid = await _sent_sid(connector, message)
    stored = await emulator.wait_for_status(sid, "delivered")

    by_sid = await _latest(connector, sid)
    by_ours = await _latest(connector, message.id)
    for update in (by_sid, by_ours):
        assert update.status is MessageStatus.DELIVERED
        assert update.raw_status == "delivered"
        assert update.remote_message_id == sid
        assert update.additional_data["price_unit"] == "USD"
        assert update.additional_data["price"] == stored.price
        assert update.additional_data["num_segments"] == "1"
    assert by_ours.message_id == message.id
    assert by_sid.message_id == sid


@pytest.mark.parametrize("raw", sorted(STATUS_TABLE))
async def test_every_twilio_status_is_mapped_and_kept(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, raw: str
) -> None:
    emulator.auto_advance = False
    connector = await make_connector()
    message = sms()
    sid = await _sent_sid(connector, message)
    stored = await emulator.set_status(sid, raw)
    update = await _latest(connector, message.id)
    assert update.raw_status == raw
    assert update.status is STATUS_TABLE[raw]
    assert update.status is not MessageStatus.UNKNOWN
    # The timestamp is Twilio's date_updated (RFC 2822, to the second).
    assert abs(update.timestamp.timestamp() - stored.date_updated) < 1


@pytest.mark.parametrize(
    ("raw", "error_code", "reason", "permanent"),
    [
        ("undelivered", 30003, "unreachable_handset", False),
        ("failed", 30008, "unknown_error", False),
        ("failed", 30007, "message_filtered", True),
        ("undelivered", 30005, "unknown_handset", True),
        ("failed", 30001, "queue_overflow", False),
    ],
)
async def test_failures_carry_the_error_code_and_a_stable_reason(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, raw: str, error_code: int, reason: str, permanent: bool
) -> None:
    emulator.auto_advance = False
    connector = await make_connector()
    sid = await _sent_sid(connector, sms())
    await emulator.set_status(sid, raw, error_code)
    update = await _latest(connector, sid)
    assert update.status.is_failure
    assert update.additional_data["error_code"] == error_code  # the raw code is kept
    assert update.additional_data["error_message"]
    assert update.additional_data["delivery_error"] == reason
    assert update.additional_data["delivery_error_permanent"] is permanent


def test_every_delivery_error_from_30001_to_30010_has_a_reason() -> None:
    assert sorted(DELIVERY_ERRORS) == list(range(30001, 30011))
    assert len({reason for reason, _ in DELIVERY_ERRORS.values()}) == 10


async def test_lifecycle_reaches_delivered_through_intermediate_statuses(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms
) -> None:
    emulator.auto_advance = False
    connector = await make_connector()
    message = sms()
    sid = await _sent_sid(connector, message)
    seen = [(await _latest(connector, message.id)).status]
    while await emulator.advance(sid) is not None:
        seen.append((await _latest(connector, message.id)).status)
    assert seen == [MessageStatus.QUEUED, MessageStatus.ROUTED, MessageStatus.SENT, MessageStatus.DELIVERED]
    update = await _latest(connector, sid)
    assert update.additional_data["date_sent"] is not None
    assert update.additional_data["direction"] == "outbound-api"


async def test_media_message_sid_is_recognised(emulator: TwilioEmulator, make_connector: Maker, sms: Sms) -> None:
    connector = await make_connector()
    sid = await _sent_sid(connector, sms(media=["https://cdn.example.com/a.png"]))
    assert sid.startswith("MM")
    assert (await _latest(connector, sid)).remote_message_id == sid


async def test_unknown_local_id_fails_without_a_request(mock_http: aioresponses) -> None:
    connector = TwilioSmsConnector(
        TwilioChannelSchemas.TWILIO_SMS,
        {"ApiBaseUrl": "https://api.twilio.example", "AccountSid": "AC" + "0" * 32, "AuthToken": "token-token"},
    )
    async with connector:
        result = await connector.get_message_status("not-a-message-we-sent")
    assert result.error_code == TwilioErrorCodes.STATUS_QUERY_FAILED
    assert mock_http.requests == {}


async def test_unknown_sid_is_a_404(emulator: TwilioEmulator, make_connector: Maker) -> None:
    connector = await make_connector()
    result = await connector.get_message_status("SM" + "0" * 32)
    assert result.error is not None
    assert result.error.code == TwilioErrorCodes.STATUS_QUERY_FAILED
    assert (result.error.details["http_status"], result.error.details["twilio_code"]) == (404, 20404)


async def test_status_query_with_a_wrong_token(emulator: TwilioEmulator, make_connector: Maker, sms: Sms) -> None:
    sender = await make_connector()
    sid = await _sent_sid(sender, sms())
    connector = await make_connector(AuthToken="f" * 32)
    result = await connector.get_message_status(sid)
    assert result.error_code == TwilioErrorCodes.AUTHENTICATION_FAILED


async def test_our_ids_are_per_connector(emulator: TwilioEmulator, make_connector: Maker, sms: Sms) -> None:
    first, second = await make_connector(), await make_connector()
    message = sms()
    await _sent_sid(first, message)
    result = await second.get_message_status(message.id)
    assert result.error_code == TwilioErrorCodes.STATUS_QUERY_FAILED


async def test_status_query_needs_the_capability(make_connector: Maker) -> None:
    from messaging_core import Capability, CapabilityNotSupportedError

    schema = TwilioChannelSchemas.TWILIO_SMS.derive("no status", remove_capabilities=Capability.MESSAGE_STATUS_QUERY)
    connector = await make_connector(schema)
    with pytest.raises(CapabilityNotSupportedError):
        await connector.get_message_status("SM" + "0" * 32)


# -- answer shapes (aioresponses) -------------------------------------------------------------------------

API = "https://api.twilio.example"
ACCOUNT = "AC" + "0123456789abcdef" * 2
SID = "SM" + "a" * 32
FETCH_URL = f"{API}/2010-04-01/Accounts/{ACCOUNT}/Messages/{SID}.json"


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ({"status": 500, "body": b""}, TwilioErrorCodes.STATUS_QUERY_FAILED),
        ({"status": 503, "body": "<html>down</html>"}, TwilioErrorCodes.STATUS_QUERY_FAILED),
        ({"status": 200, "body": "<html>not json</html>"}, TwilioErrorCodes.STATUS_QUERY_FAILED),
        ({"status": 429, "payload": {"code": 20429, "message": "Too Many Requests"}}, TwilioErrorCodes.RATE_LIMITED),
        (
            {"status": 401, "payload": {"code": 20003, "message": "Authenticate"}},
            TwilioErrorCodes.AUTHENTICATION_FAILED,
        ),
        ({"exception": aiohttp.ServerDisconnectedError()}, TwilioErrorCodes.STATUS_QUERY_FAILED),
        ({"exception": TimeoutError()}, TwilioErrorCodes.STATUS_QUERY_FAILED),
    ],
)
async def test_status_answer_shapes(mock_http: aioresponses, answer: dict[str, Any], code: str) -> None:
    mock_http.get(FETCH_URL, **answer)
    connector = TwilioSmsConnector(
        TwilioChannelSchemas.TWILIO_SMS, {"ApiBaseUrl": API, "AccountSid": ACCOUNT, "AuthToken": "token-token"}
    )
    async with connector:
        result = await connector.get_message_status(SID)
    assert result.error_code == code


async def test_status_of_a_resource_with_a_new_status_word(mock_http: aioresponses) -> None:
    resource = {"sid": SID, "status": "teleported", "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000"}
    mock_http.get(FETCH_URL, status=200, payload=resource)
    connector = TwilioSmsConnector(
        TwilioChannelSchemas.TWILIO_SMS, {"ApiBaseUrl": API, "AccountSid": ACCOUNT, "AuthToken": "token-token"}
    )
    async with connector:
        result = await connector.get_message_status(SID)
    assert result.value is not None
    update = result.value.latest
    assert update is not None
    assert (update.status, update.raw_status) == (MessageStatus.UNKNOWN, "teleported")
    assert update.timestamp == parsedate_to_datetime(resource["date_updated"])


async def test_status_of_a_resource_with_fields_of_other_types(mock_http: aioresponses) -> None:
    """A resource is whatever JSON came back: a field of another type is no value, never an error or a str()."""
    resource = {
        "sid": 42,
        "status": ["delivered"],
        "date_updated": 1692853305,
        "error_code": "30003",
        "error_message": None,
        "price": -0.0075,
        "num_segments": "1",
    }
    mock_http.get(FETCH_URL, status=200, payload=resource)
    connector = TwilioSmsConnector(
        TwilioChannelSchemas.TWILIO_SMS, {"ApiBaseUrl": API, "AccountSid": ACCOUNT, "AuthToken": "token-token"}
    )
    async with connector:
        before = datetime.now(UTC)
        result = await connector.get_message_status(SID)
    assert result.value is not None, result.error
    update = result.value.latest
    assert update is not None
    assert (update.status, update.raw_status, update.remote_message_id) == (MessageStatus.UNKNOWN, None, None)
    assert update.timestamp >= before  # a date that is not Twilio's RFC 2822 text: the time of the query
    # Kept raw (nulls left out); a code that is not a number is not looked up in the delivery errors.
    assert update.additional_data == {"error_code": "30003", "price": -0.0075, "num_segments": "1"}


def test_a_status_callback_classifies_its_error_code_too() -> None:
    from messaging_twilio_sms.webhooks import parse_status_callback

    fields = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "undelivered", "ErrorCode": "30004"}
    update = parse_status_callback(fields, "https://h.example.com/s?MessageId=ours")
    assert not isinstance(update, Failure)
    assert (update.message_id, update.additional_data["error_code"]) == ("ours", 30004)
    assert (update.additional_data["delivery_error"], update.additional_data["delivery_error_permanent"]) == (
        "message_blocked",
        True,
    )
    other = parse_status_callback({**fields, "ErrorCode": "63016"}, None)  # not a delivery error of the table
    assert not isinstance(other, Failure)
    assert other.additional_data["error_code"] == 63016
    assert "delivery_error" not in other.additional_data
