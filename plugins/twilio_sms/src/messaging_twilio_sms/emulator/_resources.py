"""Records kept by the emulator and the Twilio 2010-04-01 JSON shapes rendered from them (no I/O).

Every shape here follows the OpenAPI file `twilio_api_v2010.json` (Twilio's Message resource): message
`api.v2010.account.message`, media `api.v2010.account.message.media`, account `api.v2010.account`,
and the 2010 paging envelope.
"""

from __future__ import annotations

import bisect
import json
import mimetypes
import os
import re
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

from attrs import define, field, frozen

API_VERSION = "2010-04-01"
"""The only API version the emulator speaks."""

ACCOUNTS_ROOT = "/2010-04-01/Accounts"
"""Path prefix of every resource URI (relative to `https://api.twilio.com`)."""

PRICE_PER_SEGMENT = 0.0079
"""USD charged per segment once a message is sent (a plausible US long-code rate)."""

PRICE_UNIT = "USD"

MORE_INFO = "https://www.twilio.com/docs/errors/{code}"

# Descriptions for the asynchronous error codes a message can end with (Twilio's error docs code table). Twilio says
# `error_message` must not be used programmatically, so these are only for humans reading records.
ASYNC_ERROR_MESSAGES: dict[int, str] = {
    14107: "SMS send rate limit exceeded",
    30001: "Queue overflow",
    30002: "Account suspended",
    30003: "Unreachable destination handset",
    30004: "Message blocked",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
    30022: "US A2P 10DLC - Rate Limits Exceeded",
    30032: "Toll-Free Number Has Not Been Verified",
    30034: "US A2P 10DLC - Message from an Unregistered Number",
}

_PAGE_TOKEN = re.compile(r"(?P<direction>PA|PB)(?P<position>\d{1,18})")

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

Params = dict[str, str | list[str]]
"""Form parameters as received: a key sent once maps to its value, a repeated key to the list of values."""


def new_sid(prefix: str) -> str:
    """Return a fresh Twilio SID: two-letter prefix plus 32 lowercase hex digits."""
    return prefix + os.urandom(16).hex()


def rfc2822(timestamp: float) -> str:
    """Format a POSIX timestamp the way every 2010 API date is written: RFC 2822 in GMT with `+0000`.

    Built by hand because `time.strftime` names days and months in the current locale and
    `email.utils.formatdate` writes the zone as `-0000`.
    """
    t = time.gmtime(timestamp)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def guess_content_type(url: str) -> str:
    """Guess a media file's MIME type from the URL path, as Twilio reports it in `content_type`."""
    guessed, _ = mimetypes.guess_type(urlsplit(url).path)
    return guessed or "application/octet-stream"


@frozen
class EmulatedMedia:
    """One media item attached to a message (Twilio's Media subresource)."""

    sid: str
    """`ME` + 32 hex."""
    url: str
    """The URL the media was fetched from (outbound: the `MediaUrl` sent; inbound: the one simulated)."""
    content_type: str
    date_created: float
    deleted: bool = False
    """Set by DELETE: the media disappears from the API but stays on the message as evidence."""


@define
class EmulatedMessage:
    """A message the emulator holds: created through the API or simulated as inbound.

    Mutable because its lifecycle advances in place; the JSON the API returns is rendered from it on
    demand by :func:`message_resource`.
    """

    sid: str
    account_sid: str
    direction: str
    """`outbound-api` for created messages, `inbound` for simulated ones."""
    to: str
    from_: str | None
    """None while a Messaging Service has not picked a sender yet (OAI create example)."""
    body: str
    status: str
    params: Params
    """The form parameters exactly as the create request sent them (empty for inbound messages)."""
    segments: int
    """Segments the body needs (`count_segments`), charged once sent."""
    num_segments: int
    """Segments shown in `num_segments`: 0 until a Messaging Service send is queued (Twilio's Message resource docs)."""
    date_created: float
    date_updated: float
    messaging_service_sid: str | None = None
    status_callback: str | None = None
    media: list[EmulatedMedia] = field(factory=list)
    date_sent: float | None = None
    error_code: int | None = None
    price: str | None = None
    send_at: float | None = None
    """POSIX time a scheduled message is due (`SendAt`), else None."""
    deleted: bool = False
    """Set by DELETE: the message disappears from the API but stays in `emulator.messages` as evidence."""
    history: list[str] = field(factory=list)
    """Every status the message has had, oldest first."""

    @property
    def uri(self) -> str:
        """The message's resource URI, without the `.json` suffix."""
        return f"{ACCOUNTS_ROOT}/{self.account_sid}/Messages/{self.sid}"


@frozen
class CallbackRecord:
    """One webhook request the emulator made (status callback or simulated inbound message)."""

    kind: str
    """`status` or `inbound`."""
    url: str
    params: dict[str, str]
    """The form parameters sent, in the order sent."""
    message_sid: str
    signature: str
    """The `X-Twilio-Signature` header sent."""
    idempotency_token: str
    """The `I-Twilio-Idempotency-Token` header sent."""
    status: int | None
    """HTTP status of the answer, None when no answer came."""
    error: str | None = None
    """Why no answer came (connection refused, timeout, bad URL), else None."""
    response_text: str = ""


def message_resource(message: EmulatedMessage) -> dict[str, Any]:
    """Render the Message JSON: every property of `api.v2010.account.message` (the OpenAPI file), sorted."""
    uri = message.uri
    error_code = message.error_code
    return {
        "account_sid": message.account_sid,
        "api_version": API_VERSION,
        "body": message.body,
        "date_created": rfc2822(message.date_created),
        "date_sent": None if message.date_sent is None else rfc2822(message.date_sent),
        "date_updated": rfc2822(message.date_updated),
        "direction": message.direction,
        "error_code": error_code,
        "error_message": None if error_code is None else ASYNC_ERROR_MESSAGES.get(error_code, "Error"),
        "from": message.from_,
        "messaging_service_sid": message.messaging_service_sid,
        # num_segments and num_media are strings in the 2010 API (OAI schema), not integers.
        "num_media": str(len(live_media(message))),
        "num_segments": str(message.num_segments),
        "price": message.price,
        "price_unit": PRICE_UNIT,
        "sid": message.sid,
        "status": message.status,
        "subresource_uris": {"media": uri + "/Media.json", "feedback": uri + "/Feedback.json"},
        "to": message.to,
        "uri": uri + ".json",
    }


def live_media(message: EmulatedMessage) -> list[EmulatedMedia]:
    """The media of a message that have not been deleted, in the order they were attached."""
    return [media for media in message.media if not media.deleted]


def media_resource(message: EmulatedMessage, media: EmulatedMedia) -> dict[str, Any]:
    """Render one Media JSON object (`api.v2010.account.message.media`)."""
    created = rfc2822(media.date_created)
    return {
        "account_sid": message.account_sid,
        "content_type": media.content_type,
        "date_created": created,
        "date_updated": created,
        "parent_sid": message.sid,
        "sid": media.sid,
        "uri": f"{message.uri}/Media/{media.sid}.json",
    }


def account_resource(account_sid: str, auth_token: str, created: float) -> dict[str, Any]:
    """Render the Account JSON (`api.v2010.account`); the real API returns the auth token too."""
    base = f"{ACCOUNTS_ROOT}/{account_sid}"
    date = rfc2822(created)
    return {
        "auth_token": auth_token,
        "date_created": date,
        "date_updated": date,
        "friendly_name": "Twilio emulator",
        "owner_account_sid": account_sid,
        "sid": account_sid,
        "status": "active",
        "subresource_uris": {"messages": base + "/Messages.json", "balance": base + "/Balance.json"},
        "type": "Full",
        "uri": base + ".json",
    }


def error_payload(status: int, code: int, message: str) -> bytes:
    """Encode Twilio's REST error object (Twilio's error docs "Shape"): code, message, more_info, status."""
    return json.dumps(
        {"code": code, "message": message, "more_info": MORE_INFO.format(code=code), "status": status}
    ).encode()


@frozen
class PageWindow:
    """Which records of a listing one page shows, and the tokens that lead to its neighbours."""

    begin: int
    """Index of the page's first record in the listing."""
    end: int
    """Index after the page's last record."""
    next_token: str | None
    previous_token: str | None


def paginate(
    positions: Sequence[int], *, page: int, page_size: int, page_token: str | None, newest_first: bool
) -> PageWindow | None:
    """Cut one page out of a listing whose records sit at `positions`, in the order listed.

    A record's position is its place in a store that never shrinks (deleted records stay there), so
    it outlives the record: `PA<position>` continues after the last record of the previous page and
    `PB<position>` ends before the first record of the next one, whatever was created or deleted in
    between. (Twilio's own tokens name the record, e.g. `PAMM...` in the OAI examples; clients only
    follow `next_page_uri`.) Without a token the page number decides. Returns None for a token this
    emulator did not write.
    """

    def order(position: int) -> int:
        return -position if newest_first else position

    count = len(positions)
    if not page_token:
        begin = min(page * page_size, count)
        end = min(begin + page_size, count)
    else:
        match = _PAGE_TOKEN.fullmatch(page_token)
        if match is None:
            return None
        anchor = order(int(match["position"]))
        if match["direction"] == "PA":
            begin = bisect.bisect_right(positions, anchor, key=order)
            end = min(begin + page_size, count)
        else:
            end = bisect.bisect_left(positions, anchor, key=order)
            begin = max(end - page_size, 0)
    return PageWindow(
        begin=begin,
        end=end,
        next_token=f"PA{positions[end - 1]}" if begin < end < count else None,
        previous_token=f"PB{positions[begin]}" if 0 < begin < count else None,
    )


def page_payload(
    *,
    key: str,
    records: list[dict[str, Any]],
    path: str,
    filters: list[tuple[str, str]],
    page: int,
    page_size: int,
    next_token: str | None,
    previous_token: str | None,
) -> dict[str, Any]:
    """Wrap records in the 2010 paging envelope.

    twilio-python's `Page` finds the records as the single key that is not a paging key,
    so the envelope carries exactly the eight paging keys below plus `key`.
    """

    def page_uri(number: int, token: str | None) -> str:
        query = [*filters, ("PageSize", str(page_size)), ("Page", str(number))]
        if token is not None:
            query.append(("PageToken", token))
        return f"{path}?{urlencode(query)}"

    start = page * page_size
    return {
        "end": start + len(records) - 1 if records else start,
        "first_page_uri": page_uri(0, None),
        key: records,
        "next_page_uri": None if next_token is None else page_uri(page + 1, next_token),
        "page": page,
        "page_size": page_size,
        "previous_page_uri": (None if previous_token is None or page == 0 else page_uri(page - 1, previous_token)),
        "start": start,
        "uri": page_uri(page, None),
    }
