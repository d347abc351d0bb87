"""Which records of Twilio's message list the reconciliation probe takes for a message (``find_sent``).

The emulator only lists what it was sent; a hand-made list page (``aioresponses``) shows the
records a real account holds beside it: inbound replies, other Messaging Services, sends of a
second earlier, other media counts.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aioresponses import aioresponses

from messaging_core import Message
from messaging_twilio_sms import TwilioChannelSchemas, TwilioSmsConnector

API = "https://api.twilio.example"
ACCOUNT = "AC" + "0123456789abcdef" * 2
SERVICE = "MG" + "0123456789abcdef" * 2
OTHER_SERVICE = "MG" + "fedcba9876543210" * 2
LIST_URL = re.compile(r"^https://api\.twilio\.example/2010-04-01/Accounts/AC[0-9a-f]{32}/Messages\.json\?.*$")
CLAIMED = datetime(2026, 12, 4, 12, 0, 0, 700000, tzinfo=UTC)
"""When the attempt was claimed: mid-second, as a clock reads; Twilio's dates have whole seconds."""
BODY = "Your code is 1234"

Sms = Callable[..., Message]


def _record(sid: str, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "sid": sid,
        "direction": "outbound-api",
        "date_created": format_datetime(CLAIMED.replace(microsecond=0)),  # the claim's own second
        "body": BODY,
        "num_media": "0",
        "messaging_service_sid": None,
    }
    record.update(fields)
    return record


def _sid(n: int) -> str:
    return f"SM{n:032x}"


async def _connector(**settings: Any) -> TwilioSmsConnector:
    return TwilioSmsConnector(
        TwilioChannelSchemas.TWILIO_SMS, {"ApiBaseUrl": API, "AccountSid": ACCOUNT, "AuthToken": "t", **settings}
    )


@pytest.fixture
async def plain() -> AsyncIterator[TwilioSmsConnector]:
    async with await _connector() as connector:
        yield connector


@pytest.fixture
async def pooled() -> AsyncIterator[TwilioSmsConnector]:
    async with await _connector(MessagingServiceSid=SERVICE) as connector:
        yield connector


def _queries(mocked: aioresponses) -> list[dict[str, str]]:
    return [dict(parse_qsl(url.query_string)) for (method, url) in mocked.requests if method == "GET"]


async def test_only_outbound_records_of_the_same_content_since_the_claims_second_are_candidates(
    mock_http: aioresponses, plain: TwilioSmsConnector, sms: Sms
) -> None:
    page = [
        _record(_sid(1)),  # created in the claim's second, before its microseconds: still this attempt
        _record(_sid(2), direction="outbound-reply"),  # every outbound direction counts
        _record(_sid(3), num_media=None),  # a list may leave the media count out: none
        _record(_sid(4), direction="inbound"),  # the receiver's reply, same text
        _record(_sid(5), date_created=format_datetime(CLAIMED.replace(microsecond=0) - timedelta(seconds=1))),
        _record(_sid(6), num_media="1"),  # the same text with a picture is another message
        _record(_sid(7), body="Your code is 9999"),
        _record(_sid(8), date_created=None),  # no date: cannot be placed after the claim
        _record(_sid(9), body=None),
        _record(_sid(10), messaging_service_sid=OTHER_SERVICE),  # without a service of ours, not compared
        {k: v for k, v in _record(_sid(11)).items() if k != "direction"},
        _record(12),  # a sid that is not a string is not a SID
        "not a record",
    ]
    mock_http.get(LIST_URL, payload={"messages": page, "next_page_uri": None})
    found = await plain.find_sent(sms(text=BODY, sender="+15005550006"), CLAIMED)
    assert found == [_sid(1), _sid(2), _sid(3), _sid(10)]
    assert _queries(mock_http) == [{"To": "+15551230001", "From": "+15005550006", "PageSize": "50"}]


async def test_the_media_count_must_match(mock_http: aioresponses, plain: TwilioSmsConnector, sms: Sms) -> None:
    page = [_record(_sid(1), num_media="1"), _record(_sid(2), num_media="2"), _record(_sid(3))]
    mock_http.get(LIST_URL, payload={"messages": page})
    message = sms(text=BODY, sender="+15005550006", media=["https://a.example/1.png"])
    assert await plain.find_sent(message, CLAIMED) == [_sid(1)]


async def test_with_a_messaging_service_only_its_records_are_candidates(
    mock_http: aioresponses, pooled: TwilioSmsConnector, sms: Sms
) -> None:
    page = [
        _record(_sid(1), messaging_service_sid=OTHER_SERVICE),  # same number, same text, another service
        _record(_sid(2)),  # sent without a service (another app on the account)
        _record(_sid(3), messaging_service_sid=SERVICE),
    ]
    mock_http.get(LIST_URL, payload={"messages": page})
    assert await pooled.find_sent(sms(text=BODY, sender="+15005550006"), CLAIMED) == [_sid(3)]
    # Twilio picks the sender from the pool: the list is narrowed by the receiver only.
    assert _queries(mock_http) == [{"To": "+15551230001", "PageSize": "50"}]


async def test_a_page_without_a_message_list_cannot_tell(
    mock_http: aioresponses, plain: TwilioSmsConnector, sms: Sms
) -> None:
    mock_http.get(LIST_URL, payload={"messages": {"sid": _sid(1)}})
    assert await plain.find_sent(sms(text=BODY), CLAIMED) is None


async def test_a_text_twilio_stores_as_sent_is_compared_whatever_its_alphabet(
    mock_http: aioresponses, plain: TwilioSmsConnector, sms: Sms
) -> None:
    """Without ``SmartEncoded`` Twilio keeps a UCS-2 body as it is: the probe can tell."""
    mock_http.get(LIST_URL, payload={"messages": [_record(_sid(1), body="Привет 👋")]})
    assert await plain.find_sent(sms(text="Привет 👋"), CLAIMED) == [_sid(1)]
