"""Managing messages at Twilio: redact, delete, list (paged, filtered), fetch media — by our id or the SID."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aioresponses import aioresponses

from messaging_core import MediaContent, Message, MessageStatus
from messaging_twilio_sms import TwilioChannelSchemas, TwilioErrorCodes, TwilioMessage, TwilioSmsConnector
from messaging_twilio_sms.emulator import TwilioEmulator

Maker = Callable[..., Awaitable[TwilioSmsConnector]]
Sms = Callable[..., Message]


async def _sent(connector: TwilioSmsConnector, message: Message) -> str:
    result = await connector.send_message(message)
    assert result.is_success, result.error
    assert result.value is not None
    assert result.value.remote_message_id is not None
    return result.value.remote_message_id


async def test_redact_erases_the_body_by_our_id(emulator: TwilioEmulator, make_connector: Maker, sms: Sms) -> None:
    emulator.auto_advance = False
    connector = await make_connector()
    message = sms(text="my one-time code is 123456")
    sid = await _sent(connector, message)
    result = await connector.redact_message(message.id)
    assert result.is_success, result.error
    assert emulator.messages[sid].body == ""


async def test_delete_removes_the_message_by_its_sid(emulator: TwilioEmulator, make_connector: Maker, sms: Sms) -> None:
    emulator.auto_advance = False
    connector = await make_connector()
    sid = await _sent(connector, sms())
    assert (await connector.delete_message(sid)).is_success
    again = await connector.delete_message(sid)
    assert again.error_code == TwilioErrorCodes.MESSAGE_NOT_FOUND
    assert [m async for m in connector.list_messages()] == []


async def test_an_unknown_id_is_not_found_without_a_request(emulator: TwilioEmulator, make_connector: Maker) -> None:
    connector = await make_connector()
    for result in (await connector.redact_message("nope"), await connector.fetch_media("nope")):
        assert result.error_code == TwilioErrorCodes.MESSAGE_NOT_FOUND


async def test_list_pages_through_every_message_newest_first(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms
) -> None:
    emulator.auto_advance = False
    connector = await make_connector()
    sids = [await _sent(connector, sms(to=f"+1555123{n:04d}")) for n in range(7)]
    listed = [m async for m in connector.list_messages(page_size=3)]  # three pages
    assert {m.sid for m in listed} == set(sids)
    assert len(listed) == 7
    assert all(isinstance(m, TwilioMessage) and m.status is MessageStatus.QUEUED for m in listed)
    assert [m.sid async for m in connector.list_messages(page_size=2, limit=3)] == [m.sid for m in listed[:3]]
    (one,) = [m async for m in connector.list_messages(to="+15551230004")]
    assert (one.sid, one.to, one.direction) == (sids[4], "+15551230004", "outbound-api")
    today = datetime.now(UTC)
    assert [m async for m in connector.list_messages(sent_after=today + timedelta(days=2))] == []


async def test_list_refuses_a_bad_page_size(make_connector: Maker) -> None:
    connector = await make_connector()
    with pytest.raises(ValueError, match="page_size"):
        [m async for m in connector.list_messages(page_size=0)]


async def test_fetch_media_lists_each_media_url_and_type(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms
) -> None:
    emulator.auto_advance = False
    connector = await make_connector()
    message = sms(media=["https://cdn.example.com/a.png", "https://cdn.example.com/b.gif"])
    sid = await _sent(connector, message)
    result = await connector.fetch_media(message.id)
    assert result.is_success, result.error
    assert result.value is not None
    media_sids = [m.sid for m in emulator.messages[sid].media]
    prefix = f"{emulator.base_url}/2010-04-01/Accounts/{emulator.account_sid}/Messages/{sid}/Media/"
    assert result.value == [
        MediaContent(prefix + media_sids[0], "image/png"),
        MediaContent(prefix + media_sids[1], "image/gif"),
    ]


def test_a_record_tolerates_missing_and_malformed_fields() -> None:
    record = TwilioMessage.from_resource({"sid": "SM1", "num_media": "x", "error_code": True, "status": "delivered"})
    assert (record.sid, record.num_media, record.error_code, record.status) == ("SM1", 0, None, MessageStatus.DELIVERED)
    assert (record.to, record.from_, record.date_sent) == ("", None, None)


LISTED = {
    "sid": "SM" + "1" * 32,
    "to": "+15551230001",
    "from": "+15005550006",
    "body": "Your code is 1234",
    "status": "undelivered",
    "direction": "outbound-api",
    "date_created": "Fri, 04 Dec 2026 23:30:00 +0000",
    "date_sent": "Fri, 04 Dec 2026 23:30:02 +0000",
    "num_media": "2",
    "num_segments": "3",
    "error_code": 30003,
    "messaging_service_sid": "MG" + "2" * 32,
    "price": "-0.00790",
    "price_unit": "USD",
}


async def test_list_reads_every_field_of_a_record_and_sends_the_filters_in_utc(
    mock_http: aioresponses, local_time_nine_hours_ahead: None
) -> None:
    api = "https://api.twilio.example"
    connector = TwilioSmsConnector(
        TwilioChannelSchemas.TWILIO_SMS, {"ApiBaseUrl": api, "AccountSid": "AC" + "0" * 32, "AuthToken": "t"}
    )
    empty: dict[str, Any] = {}
    malformed = {"to": 15551230001, "from": ["+1"], "num_segments": None, "error_code": "30003x", "price": -0.0079}
    mock_http.get(
        re.compile(r"^https://api\.twilio\.example/.*/Messages\.json\?.*"),
        payload={"messages": [LISTED, empty, malformed]},
    )
    # Late on the 4th in UTC is already the 5th at UTC+9: Twilio's date filters are UTC days.
    late = datetime(2026, 12, 4, 23, 30, tzinfo=UTC)
    async with connector:
        full, nothing, odd = [
            m
            async for m in connector.list_messages(
                to="+15551230001", from_="+15005550006", sent_after=late, sent_before=late, page_size=20
            )
        ]
    ((_, url),) = list(mock_http.requests)
    assert dict(parse_qsl(url.query_string)) == {
        "PageSize": "20",
        "To": "+15551230001",
        "From": "+15005550006",
        "DateSent>": "2026-12-04",
        "DateSent<": "2026-12-04",
    }
    assert full == TwilioMessage(
        sid="SM" + "1" * 32,
        to="+15551230001",
        from_="+15005550006",
        body="Your code is 1234",
        status=MessageStatus.DELIVERY_FAILED,
        raw_status="undelivered",
        direction="outbound-api",
        date_created=datetime(2026, 12, 4, 23, 30, tzinfo=UTC),
        date_sent=datetime(2026, 12, 4, 23, 30, 2, tzinfo=UTC),
        num_media=2,
        num_segments=3,
        error_code=30003,
        messaging_service_sid="MG" + "2" * 32,
        price="-0.00790",
        price_unit="USD",
    )
    blank = TwilioMessage(
        sid="",
        to="",
        from_=None,
        body="",
        status=MessageStatus.UNKNOWN,
        raw_status=None,
        direction="",
        date_created=None,
        date_sent=None,
        num_media=0,
        num_segments=0,
        error_code=None,
        messaging_service_sid=None,
        price=None,
        price_unit=None,
    )
    assert nothing == blank, "a missing field is empty, never a made-up value"
    assert odd == blank, "a field of the wrong type is taken as missing"
