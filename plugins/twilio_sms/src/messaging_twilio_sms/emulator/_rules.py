"""Twilio's rules as the emulator applies them: create validation, test numbers, lifecycle, webhook fields.

Pure functions and tables, no I/O; comments name the Twilio documentation each rule follows.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from attrs import frozen

from .._api import (  # the SendAt window, kept in one place
    SCHEDULE_MAX_AHEAD,
    SCHEDULE_MIN_AHEAD,  # Twilio's keywords, one table for the connector and the emulator
)
from ._resources import API_VERSION, PRICE_PER_SEGMENT, EmulatedMessage, Params

# ----------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------


@frozen
class ApiError:
    """An error answer of the REST API: HTTP status, Twilio error code and message (Twilio's error docs)."""

    status: int
    code: int
    message: str


INVALID_PARAMETER = 60200
"""Twilio's generic "Invalid parameter" code.

The 2010 Messages API's code for an out-of-range `ValidityPeriod`, `PageSize` or a bad update is not
documented by Twilio, so the emulator answers those with this one code.
"""

BODY_MAX_CHARS = 1600  # Twilio's Create Message docs: "Can be up to 1,600 characters"; longer => 21617
MEDIA_MAX_COUNT = 10  # Twilio's Create Message docs: "up to ten media_url parameters per message"; more => 21623
VALIDITY_MIN, VALIDITY_MAX = 1, 36000  # Twilio's Create Message docs: ValidityPeriod 1 ... 36000 s

STATUS_CALLBACK_MAX_CHARS = 4000  # error 21609 page: "Keep the URL at 4000 characters or fewer"

# The characters RFC 3986 allows in a URI: unreserved, reserved and '%' (of a percent-encoding).
_URL_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# A DNS label; the underscore is tolerated here and refused for StatusCallback only, where Twilio says so.
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")

# E.164 for SMS/MMS, or a channel address such as `whatsapp:+1555...` (Twilio's Create Message docs `To`).
_TO_PATTERN = re.compile(r"^(?:whatsapp:)?\+[1-9]\d{1,14}$")
_SERVICE_SID_PATTERN = re.compile(r"^MG[0-9a-fA-F]{32}$")
_CONTENT_SID_PATTERN = re.compile(r"^HX[0-9a-fA-F]{32}$")
_TEST_NUMBER_PATTERN = re.compile(r"^\+1500555000\d$")

# Test-credential magic numbers (Twilio's error docs "Magic numbers") with the observed message texts. The emulator
# applies the From rules to +1500555000X numbers only and accepts every other sender: it does not model
# which numbers an account owns.
_MAGIC_FROM_PASS = "+15005550006"
_MAGIC_FROM: dict[str, ApiError] = {
    "+15005550001": ApiError(
        400,
        21212,
        "The 'From' number +15005550001 is not a valid phone number, shortcode, or alphanumeric sender ID.",
    ),
    # Observed with HTTP 429, not 400: the sender's queue is over its 10 h budget (Twilio's queueing docs).
    "+15005550008": ApiError(429, 21611, "SMS queue is full."),
}
_NOT_OWNED_MESSAGE = (
    "The From phone number {from_} is not a valid, SMS-capable inbound phone number or short code for your account."
)
_INVALID_TO_MESSAGE = "The 'To' number {to} is not a valid phone number."
_MAGIC_TO: dict[str, tuple[int, str]] = {
    "+15005550001": (21211, _INVALID_TO_MESSAGE),
    "+15005550002": (
        21612,
        "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number: {from_} via SMS.",
    ),
    "+15005550003": (
        21408,
        "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}.",
    ),
    "+15005550004": (21610, "The message From/To pair violates a blacklist rule."),
    "+15005550009": (21614, "To number: {to}, is not a mobile number"),
}

_TRUE_VALUES = frozenset({"true", "True", "TRUE", "1"})  # twilio-python sends lowercase "true"


@frozen
class CreateRequest:
    """A create request that passed validation, with its parameters parsed."""

    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    media_urls: tuple[str, ...]
    status_callback: str | None
    smart_encoded: bool
    send_at: float | None
    """POSIX time of a scheduled send (`ScheduleType=fixed` + `SendAt`), else None."""


def first(params: Params, key: str) -> str | None:
    """Return a parameter's value, or its first value when the key was repeated."""
    value = params.get(key)
    if isinstance(value, list):
        return value[0] if value else None
    return value


def all_values(params: Params, key: str) -> list[str]:
    """Return every value sent for a repeatable parameter (`MediaUrl`, `PersistentAction`)."""
    value = params.get(key)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def utf16_length(text: str) -> int:
    """Count UTF-16 code units: Twilio's 1,600 limit counts an emoji as two (Twilio's error docs, 21617)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def parse_create(params: Params, *, now: float) -> CreateRequest | ApiError:
    """Validate a Create Message form (Twilio's Create Message docs) and return the parsed request or the first error.

    Order: required parameters, then address formats, then the test numbers, then content limits.
    """
    to = first(params, "To")
    from_ = first(params, "From") or None
    service_sid = first(params, "MessagingServiceSid") or None
    if not to:
        return ApiError(400, 21604, "A 'To' phone number is required.")
    if from_ is None and service_sid is None:
        return ApiError(400, 21603, "A 'From' phone number is required.")
    if service_sid is not None and _SERVICE_SID_PATTERN.match(service_sid) is None:
        return ApiError(400, 21705, f"The Messaging Service Sid {service_sid} is invalid.")
    if _TO_PATTERN.match(to) is None:
        return ApiError(400, 21211, _INVALID_TO_MESSAGE.format(to=to))
    if from_ is not None and from_ != _MAGIC_FROM_PASS and _TEST_NUMBER_PATTERN.match(from_):
        return _MAGIC_FROM.get(from_) or ApiError(400, 21606, _NOT_OWNED_MESSAGE.format(from_=from_))
    magic_to = _MAGIC_TO.get(to)
    if magic_to is not None:
        code, template = magic_to
        return ApiError(400, code, template.format(to=to, from_=from_ or ""))

    body = first(params, "Body") or ""
    media_urls = all_values(params, "MediaUrl")
    # One of Body, MediaUrl, ContentSid is required (OAI x-twilio.conditional). Of the two candidate codes
    # 21602 "Message body is required" and 21619 "Unable to create record - body or media required"
    # (Twilio's error docs), 21619 describes exactly this either-or rule, and it is what Twilio answers today with
    # the message text below (public bug reports, e.g. twilio/twilio-php#810).
    content_sid = first(params, "ContentSid")
    if not body and not media_urls and not content_sid:
        return ApiError(400, 21619, "A text message body or media urls must be specified.")
    if content_sid:
        rendered = _render_template(content_sid, first(params, "ContentVariables"))
        if isinstance(rendered, ApiError):
            return rendered
        body = rendered
    if utf16_length(body) > BODY_MAX_CHARS:
        return ApiError(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
    if len(media_urls) > MEDIA_MAX_COUNT:
        return ApiError(400, 21623, "The number of media files exceeds the allowed limit of 10.")
    bad_urls = [url for url in media_urls if url_problem(url) is not None]
    if bad_urls:
        return ApiError(
            400,
            21620,
            f"Media urls: {', '.join(bad_urls)} are invalid. Please use only valid http and https urls",
        )

    status_callback = first(params, "StatusCallback") or None
    if status_callback is not None:
        problem = status_callback_problem(status_callback)
        if problem is not None:
            return ApiError(400, 21609, f"The StatusCallback URL {status_callback} is not a valid URL: {problem}.")

    validity = first(params, "ValidityPeriod")
    if validity is not None and not _int_in_range(validity, VALIDITY_MIN, VALIDITY_MAX):
        return ApiError(
            400,
            INVALID_PARAMETER,
            f"Invalid ValidityPeriod {validity}: must be between {VALIDITY_MIN} and {VALIDITY_MAX} seconds.",
        )

    send_at: float | None = None
    if first(params, "ScheduleType") == "fixed":
        scheduled = _parse_send_at(params, service_sid, now)
        if isinstance(scheduled, ApiError):
            return scheduled
        send_at = scheduled

    return CreateRequest(
        to=to,
        from_=from_,
        messaging_service_sid=service_sid,
        body=body,
        media_urls=tuple(media_urls),
        status_callback=status_callback,
        smart_encoded=first(params, "SmartEncoded") in _TRUE_VALUES,
        send_at=send_at,
    )


def _render_template(content_sid: str, variables: str | None) -> str | ApiError:
    """A Content template "rendered" plainly: the emulator knows no templates, so the stored body is
    the SID and the variables in order (``HX… 1=Ada 2=Friday``), enough for a test to see what went."""
    if _CONTENT_SID_PATTERN.match(content_sid) is None:
        return ApiError(400, INVALID_PARAMETER, f"Invalid ContentSid {content_sid}")
    values: object = {}
    if variables:
        try:
            values = json.loads(variables)
        except ValueError:
            values = None
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        return ApiError(400, INVALID_PARAMETER, "ContentVariables must be a JSON object of strings")
    return " ".join([content_sid, *(f"{key}={value}" for key, value in values.items())])


def _parse_send_at(params: Params, service_sid: str | None, now: float) -> float | ApiError:
    """Check a scheduled send (Twilio's Create Message docs `SendAt`: 35111, 35118, window errors)."""
    raw = first(params, "SendAt")
    if not raw:
        return ApiError(400, 35111, "SendAt is required when ScheduleType is fixed.")
    if service_sid is None:
        return ApiError(400, 35118, "MessagingServiceSid is required to schedule a message.")
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        parsed = None
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    ahead = None if parsed is None else parsed.timestamp() - now
    # Twilio's error pages name three window codes (35114/35115/35117) without saying which is which; one code
    # for "outside the window" is enough for a client that only needs to know the request was refused.
    if ahead is None or not SCHEDULE_MIN_AHEAD < ahead <= SCHEDULE_MAX_AHEAD:
        return ApiError(
            400,
            35114,
            "Scheduling does not meet criteria: SendAt must be between 5 minutes and 35 days ahead.",
        )
    return now + ahead


def url_problem(url: str) -> str | None:
    """Say why `url` is not a fully qualified, properly encoded http(s) URL; None when it is one.

    "Properly encoded" is RFC 3986: only its ASCII characters, and `%` always followed by two hex digits.
    A URL that passes can be written into a request line exactly as it is.
    """
    if _URL_CHARACTERS.fullmatch(url) is None:
        return "it holds characters a URL must percent-encode (spaces, non-ASCII, quotes...)"
    if _BAD_PERCENT.search(url) is not None:
        return "a '%' is not followed by two hex digits"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (reading it validates the port)
    except ValueError:  # a bracketed host that is no IPv6 address, a port out of range
        return "its host or port cannot be read"
    if parts.scheme not in ("http", "https"):
        return "the scheme must be http or https"
    host = parts.hostname
    if not host:
        return "it has no hostname"
    if not _is_ip_address(host) and not all(_HOST_LABEL.fullmatch(label) for label in host.split(".")):
        return f"{host} is not a valid hostname"
    return None


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def status_callback_problem(url: str) -> str | None:
    """Say why Twilio refuses `url` as a `StatusCallback` (error 21609); None when it is accepted.

    Twilio's error page "21609: Invalid 'StatusCallback'" lists the rules: a fully qualified http(s) URL
    with properly encoded query parameters, at most 4000 characters, and a hostname without underscores.
    """
    if len(url) > STATUS_CALLBACK_MAX_CHARS:
        return f"it is longer than {STATUS_CALLBACK_MAX_CHARS} characters"
    problem = url_problem(url)
    if problem is None and "_" in (urlsplit(url).hostname or ""):
        return "underscores are not allowed in its hostname"
    return problem


def _int_in_range(text: str, low: int, high: int) -> bool:
    try:
        value = int(text)
    except ValueError:
        return False
    return low <= value <= high


def parse_page_size(raw: str | None, default: int = 50) -> int | None:
    """Parse `PageSize` (1-1000, default 50, OAI ListMessage); None when invalid."""
    if raw is None:
        return default
    return int(raw) if _int_in_range(raw, 1, 1000) else None


DAY = 86400.0

# RFC 822 zone names, for the `MM/DD/YYYY hh:mm:ss ZONE` form (OAI example `06/11/2019 22:05:25 MST`).
_ZONE_HOURS = {"UT": 0, "UTC": 0, "GMT": 0, "Z": 0, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5}
_ZONE_HOURS |= {"MST": -7, "MDT": -6, "PST": -8, "PDT": -7}
_US_TIMESTAMP = re.compile(r"(\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2})(?: ([A-Z]{1,3}))?")


def parse_day(raw: str) -> float | None:
    """Return the start (POSIX time) of the GMT day a date filter value names; None when unreadable.

    The documented value is `YYYY-MM-DD` (GMT); the OAI examples of `DateSent>` also show
    `06/11/2019 22:05:25 MST`, `2019-06-11 22:05:25.000` and `Wed, 19 Jun 2019 22:04:00 -0000`, and
    twilio-python writes dates as `2019-06-11T00:00:00Z`. Twilio filters by day: a timestamp stands for
    the GMT day it falls on, its time of day is not compared.
    """
    try:
        us = _US_TIMESTAMP.fullmatch(raw)
        if us is not None:
            local, zone = us.groups()
            if zone is not None and zone not in _ZONE_HOURS:
                return None
            offset = timezone(timedelta(hours=_ZONE_HOURS[zone or "GMT"]))
            instant = datetime.strptime(local, "%m/%d/%Y %H:%M:%S").replace(tzinfo=offset)
        elif raw[:4].isdigit():
            instant = datetime.fromisoformat(raw)
        else:
            instant = parsedate_to_datetime(raw)
    except (ValueError, TypeError):
        return None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)  # "GMT dates" (OAI), and RFC 2822's `-0000`
    day = instant.astimezone(UTC).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


@frozen
class DateRange:
    """A `[lower, upper)` range of POSIX times from a list's date filters; None leaves that side open."""

    lower: float | None = None
    upper: float | None = None

    def holds(self, instant: float | None) -> bool:
        """Whether `instant` is in the range; a record without the date matches only an open range."""
        if self.lower is None and self.upper is None:
            return True
        if instant is None:
            return False
        return (self.lower is None or instant >= self.lower) and (self.upper is None or instant < self.upper)


def date_range(query: Mapping[str, str], name: str) -> DateRange | ApiError:
    """Combine the filters `name`, `name<` and `name>` of a list request (e.g. `DateSent`) into a range.

    `name=D` keeps day D, `name<=D` (key `name<`) D and the days before, `name>=D` (key `name>`) D and
    the days after (OAI ListMessage / ListMedia parameter descriptions); several filters intersect.
    """
    lower: float | None = None
    upper: float | None = None
    for key in (name, name + "<", name + ">"):
        raw = query.get(key)
        if raw is None:
            continue
        day = parse_day(raw)
        if day is None:
            return ApiError(400, INVALID_PARAMETER, f"Invalid {key} value {raw}")
        if key != name + ">":  # `name=D` and `name<=D` end with day D
            upper = day + DAY if upper is None else min(upper, day + DAY)
        if key != name + "<":  # `name=D` and `name>=D` start with day D
            lower = day if lower is None else max(lower, day)
    return DateRange(lower, upper)


def parse_page(raw: str | None) -> int | None:
    """Parse `Page` (>= 0); None when invalid."""
    if raw is None:
        return 0
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


# ----------------------------------------------------------------------------------------------------------
# Lifecycle (Twilio's message status docs)
# ----------------------------------------------------------------------------------------------------------

DEFAULT_UNDELIVERED_NUMBERS: frozenset[str] = frozenset({"+15559990001"})
"""Recipients whose messages end `undelivered` with error 30003 unless configured otherwise."""

DEFAULT_FAILED_NUMBERS: frozenset[str] = frozenset({"+15559990002"})
"""Recipients whose messages end `failed` with error 30008 unless configured otherwise."""

UNDELIVERED_ERROR = 30003  # "Unreachable destination handset": what a missing handset produces
FAILED_ERROR = 30008  # "Unknown error": the generic failure code

FINAL_STATUSES = frozenset({"delivered", "undelivered", "failed", "canceled", "read", "received"})
STATUSES = frozenset(
    {
        "queued",
        "sending",
        "sent",
        "failed",
        "delivered",
        "undelivered",
        "receiving",
        "received",
        "accepted",
        "scheduled",
        "read",
        "partially_delivered",
        "canceled",
    }
)
"""OAI `message_enum_status`."""


def phone_number(address: str) -> str:
    """Strip a channel prefix (`whatsapp:+1...` -> `+1...`) so designated numbers match on any channel."""
    return address.rpartition(":")[2]


def next_transition(
    message: EmulatedMessage, *, undelivered: frozenset[str], failed: frozenset[str]
) -> tuple[str, int | None] | None:
    """Return the next `(status, error_code)` of an outbound message, or None when it is final.

    Messaging Service sends start `accepted` (or `scheduled`) and go to `queued`; after queuing every
    message goes `sending`, then `sent` or `failed`, then `delivered` or `undelivered`.
    """
    status = message.status
    if status in ("accepted", "scheduled"):
        return "queued", None
    if status == "queued":
        return "sending", None
    if status == "sending":
        return ("failed", FAILED_ERROR) if phone_number(message.to) in failed else ("sent", None)
    if status == "sent":
        if phone_number(message.to) in undelivered:
            return "undelivered", UNDELIVERED_ERROR
        return "delivered", None
    return None


def apply_status(
    message: EmulatedMessage,
    status: str,
    error_code: int | None,
    *,
    now: float,
    service_sender: str,
) -> None:
    """Move a message to `status`, updating the fields Twilio fills in along the way."""
    message.status = status
    message.date_updated = now
    message.history.append(status)
    if status == "queued" and message.messaging_service_sid is not None:
        # The service has picked a sender now: `from` and `num_segments` become known (Twilio's Message resource docs).
        if message.from_ is None:
            message.from_ = service_sender
        message.num_segments = message.segments
    if status in ("sending", "sent") and message.date_sent is None:
        message.date_sent = now
    if status in ("sent", "delivered", "undelivered") and message.price is None:
        message.price = f"{-PRICE_PER_SEGMENT * message.segments:.5f}"
    if status == "failed" and error_code is None:
        error_code = FAILED_ERROR
    if status == "undelivered" and error_code is None:
        error_code = UNDELIVERED_ERROR
    message.error_code = error_code


# ----------------------------------------------------------------------------------------------------------
# Webhook fields (Twilio's webhook docs)
# ----------------------------------------------------------------------------------------------------------


def status_callback_params(message: EmulatedMessage, *, now: float) -> dict[str, str]:
    """Build the form a status callback posts for the message's current status (Twilio's webhook docs)."""
    status = message.status
    params = {
        "AccountSid": message.account_sid,
        "From": message.from_ or "",
        "To": message.to,
        "MessageSid": message.sid,
        "SmsSid": message.sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "ApiVersion": API_VERSION,
    }
    if message.messaging_service_sid is not None:
        params["MessagingServiceSid"] = message.messaging_service_sid
    if message.error_code is not None and status in ("failed", "undelivered"):
        params["ErrorCode"] = str(message.error_code)
    if status in ("delivered", "undelivered"):
        # Carrier DLR done date: YYMMDDhhmm, minute precision, no zone (Twilio changelog 2023-02-14).
        params["RawDlrDoneDate"] = time.strftime("%y%m%d%H%M", time.gmtime(now))
    return params


def inbound_params(
    message: EmulatedMessage, *, geo: Mapping[str, str], media: Sequence[tuple[str, str]]
) -> dict[str, str]:
    """Build the form of an incoming-message webhook (Twilio's webhook docs "Inbound message webhook").

    Includes the fields real captures show beside the documented ones (`SmsStatus`, `ApiVersion`,
    `ReferralNumMedia`) and geo keys that are present with empty values.
    """
    params = {
        "ToCountry": geo.get("ToCountry", ""),
        "ToState": geo.get("ToState", ""),
        "SmsMessageSid": message.sid,
        "NumMedia": str(len(media)),
        "ToCity": geo.get("ToCity", ""),
        "FromZip": geo.get("FromZip", ""),
        "SmsSid": message.sid,
        "FromState": geo.get("FromState", ""),
        "SmsStatus": "received",
        "FromCity": geo.get("FromCity", ""),
        "Body": message.body,
        "FromCountry": geo.get("FromCountry", ""),
        "To": message.to,
        "ToZip": geo.get("ToZip", ""),
        "NumSegments": str(message.num_segments),
        "ReferralNumMedia": "0",
        "MessageSid": message.sid,
        "AccountSid": message.account_sid,
        "From": message.from_ or "",
        "ApiVersion": API_VERSION,
    }
    if message.messaging_service_sid is not None:
        params["MessagingServiceSid"] = message.messaging_service_sid
    # Media keys are numbered from zero: MediaUrl0, MediaContentType0, ...
    for index, (url, content_type) in enumerate(media):
        params[f"MediaContentType{index}"] = content_type
        params[f"MediaUrl{index}"] = url
    return params
