"""Sans-I/O Twilio Messages API: build requests, parse resources, map statuses and errors.

Nothing here touches the network; the connector moves the bytes. Tables map Twilio's vocabulary
to the core's, with a comment per quirk naming its source (Twilio's API reference, error pages, OpenAPI file).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, quote_from_bytes, urlencode, urlsplit, urlunsplit

from attrs import evolve, frozen

from messaging_core import ConnectorErrorCodes, Failure, FailureOutcome, Message, MessageStatus, TemplateContent
from messaging_twilio_sms.segments import count_segments
from messaging_twilio_sms.settings import TwilioSettings

__all__ = [
    "CREATE_FIELDS",
    "DELIVERY_ERRORS",
    "MODELLED_FIELDS",
    "SCHEDULE_MAX_AHEAD",
    "SCHEDULE_MIN_AHEAD",
    "STATUS_TABLE",
    "TwilioErrorCodes",
    "TwilioMessage",
    "account_path",
    "build_message_form",
    "decimal_text",
    "delivery_error",
    "encode_form",
    "error_from_response",
    "is_message_sid",
    "list_filters",
    "list_query",
    "map_status",
    "mask_phone",
    "message_body",
    "message_path",
    "messages_path",
    "parse_json_object",
    "parse_twilio_date",
    "retry_after_seconds",
    "sent_candidates",
    "utf16_length",
    "with_message_id",
]


class TwilioErrorCodes(ConnectorErrorCodes):
    """Stable codes of the Twilio connector (the generic ones are inherited)."""

    SEND_MESSAGE_FAILED = "SEND_MESSAGE_FAILED"
    INVALID_PROVIDER_RESPONSE = "INVALID_PROVIDER_RESPONSE"
    """A 2xx answer we cannot read (truncated JSON, no sid): the message was probably created."""
    STATUS_QUERY_FAILED = "STATUS_QUERY_FAILED"
    CANCEL_FAILED = "CANCEL_FAILED"
    MESSAGE_NOT_FOUND = "MESSAGE_NOT_FOUND"
    """No such message at Twilio (or not one this connector sent, when given by our id)."""
    REQUEST_FAILED = "REQUEST_FAILED"
    """Twilio refused a management request (redact, delete, list, media) for another reason."""
    """Twilio refused to cancel a scheduled message for a reason other than its state."""
    RECEIVE_MESSAGE_FAILED = "RECEIVE_MESSAGE_FAILED"
    RECEIVE_STATUS_FAILED = "RECEIVE_STATUS_FAILED"
    INVALID_WEBHOOK_DATA = "INVALID_WEBHOOK_DATA"
    UNSUPPORTED_CONTENT_TYPE = "UNSUPPORTED_CONTENT_TYPE"


API_VERSION = "2010-04-01"
MESSAGE_ID_PARAM = "MessageId"
"""Query parameter carrying our message id in the StatusCallback URL (correlates callbacks without a lookup)."""

_SID = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")


def is_message_sid(value: str) -> bool:
    """Whether ``value`` looks like a Twilio Message SID."""
    return _SID.match(value) is not None


def account_path(account_sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}.json"


def messages_path(account_sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"


def message_path(account_sid: str, sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}/Messages/{quote(sid, safe='')}.json"


# -- statuses ---------------------------------------------------------------------------------------

STATUS_TABLE: dict[str, MessageStatus] = {
    "accepted": MessageStatus.QUEUED,  # Messaging Service picked it up, sender not chosen yet
    "scheduled": MessageStatus.SCHEDULED,  # Messaging Service scheduled send (SendAt)
    "queued": MessageStatus.QUEUED,
    "sending": MessageStatus.ROUTED,  # being handed to the nearest carrier
    "sent": MessageStatus.SENT,  # carrier accepted; not final (a DLR may never come)
    "delivered": MessageStatus.DELIVERED,
    "undelivered": MessageStatus.DELIVERY_FAILED,  # a delivery receipt said no
    "failed": MessageStatus.ROUTE_FAILED,  # never left Twilio (queue overflow, suspended account...)
    "receiving": MessageStatus.QUEUED,  # inbound, still being assembled
    "received": MessageStatus.RECEIVED,
    "read": MessageStatus.READ,  # RCS / WhatsApp only
    "canceled": MessageStatus.CANCELLED,  # a scheduled message was canceled
    "partially_delivered": MessageStatus.SENT,  # deprecated by Twilio; some parts arrived, not final
}
"""Every Twilio message status (OAI ``message_enum_status``) and the core status it means."""


DELIVERY_ERRORS: dict[int, tuple[str, bool]] = {
    30001: ("queue_overflow", False),  # queued too long (10 h, or ValidityPeriod): later, or more senders
    30002: ("account_suspended", True),
    30003: ("unreachable_handset", False),  # off, no signal: may work later
    30004: ("message_blocked", True),  # by the recipient or the carrier (STOP on toll-free, DND)
    30005: ("unknown_handset", True),  # the number may no longer exist
    30006: ("landline_or_unreachable_carrier", True),
    30007: ("message_filtered", True),  # spam filtering: change the content or the registration
    30008: ("unknown_error", False),  # one more try may work
    30009: ("missing_segment", False),
    30010: ("price_exceeds_max_price", True),
}
"""Twilio's delivery error codes (30001-30010) → (stable reason, permanent?). A permanent one
will fail again if the same message is sent again as it is; a transient one may not."""


def delivery_error(code: object) -> dict[str, object]:
    """``delivery_error`` and ``delivery_error_permanent`` for a status's error code ({} when not one of the table)."""
    known = DELIVERY_ERRORS.get(code) if isinstance(code, int) else None
    if known is None:
        return {}
    return {"delivery_error": known[0], "delivery_error_permanent": known[1]}


def map_status(raw: str | None) -> MessageStatus:
    """The core status for a Twilio status word (``UNKNOWN`` for a word Twilio adds later)."""
    return STATUS_TABLE.get(raw or "", MessageStatus.UNKNOWN)


def parse_twilio_date(value: object) -> datetime | None:
    """An RFC 2822 date of the 2010 API (``Thu, 24 Aug 2023 05:01:45 +0000``), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


# -- message records ----------------------------------------------------------------------------------


@frozen(kw_only=True)
class TwilioMessage:
    """One message of Twilio's message list (``TwilioSmsConnector.list_messages``), typed."""

    sid: str
    to: str
    from_: str | None
    body: str
    status: MessageStatus
    raw_status: str | None
    direction: str
    date_created: datetime | None
    date_sent: datetime | None
    num_media: int
    num_segments: int
    error_code: int | None
    messaging_service_sid: str | None
    price: str | None
    price_unit: str | None

    @classmethod
    def from_resource(cls, data: Mapping[str, Any]) -> TwilioMessage:
        """A Message resource (JSON) of the 2010 API; missing or malformed fields become None/0/""."""

        def text(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) else None

        def number(key: str) -> int | None:
            value = data.get(key)
            if isinstance(value, bool):
                return None
            try:
                return int(value) if isinstance(value, (int, str)) else None
            except ValueError:
                return None

        raw = text("status")
        return cls(
            sid=text("sid") or "",
            to=text("to") or "",
            from_=text("from"),
            body=text("body") or "",
            status=map_status(raw),
            raw_status=raw,
            direction=text("direction") or "",
            date_created=parse_twilio_date(data.get("date_created")),
            date_sent=parse_twilio_date(data.get("date_sent")),
            num_media=number("num_media") or 0,
            num_segments=number("num_segments") or 0,
            error_code=number("error_code"),
            messaging_service_sid=text("messaging_service_sid"),
            price=text("price"),
            price_unit=text("price_unit"),
        )


def list_filters(
    *, to: str | None, from_: str | None, sent_after: datetime | None, sent_before: datetime | None, page_size: int
) -> dict[str, str]:
    """The query of ``ListMessage`` (``DateSent>``/``DateSent<`` take a day, ``YYYY-MM-DD``, in UTC)."""
    query = {"PageSize": str(page_size)}
    if to:
        query["To"] = to
    if from_:
        query["From"] = from_
    if sent_after is not None:
        query["DateSent>"] = sent_after.astimezone(UTC).date().isoformat()
    if sent_before is not None:
        query["DateSent<"] = sent_before.astimezone(UTC).date().isoformat()
    return query


# -- requests ---------------------------------------------------------------------------------------


def with_message_id(url: str, message_id: str) -> str:
    """``url`` with our message id added to its query, so the callback names the message."""
    parts = urlsplit(url)
    extra = urlencode({MESSAGE_ID_PARAM: message_id})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def message_body(message: Message) -> str | None:
    """The ``Body`` a message is sent with: its text parts joined by newlines, or None without text."""
    texts = message.texts()
    return "\n".join(texts) if texts else None


def template_of(message: Message) -> TemplateContent | None:
    """The message's Content template (``TemplateContent``: ``HX…`` SID and variables), if it is one."""
    content = message.content
    return content if isinstance(content, TemplateContent) else None


CONTENT_SID_PATTERN = r"^HX[0-9a-fA-F]{32}$"


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, as Twilio counts its 1,600 limit (an emoji counts twice)."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


def list_query(message: Message, settings: TwilioSettings) -> dict[str, str]:
    """Query of ``ListMessage`` that finds the messages ``message`` may have become.

    With a Messaging Service the sender is chosen by Twilio, so only ``To`` narrows the list
    (candidates are then matched on ``messaging_service_sid``).
    """
    assert message.receiver is not None
    query = {"To": message.receiver.address, "PageSize": "50"}
    if not settings.messaging_service_sid and message.sender is not None:
        query["From"] = message.sender.address
    return query


PROBE_PAGES = 20
"""Pages of the message list a probe reads at most (50 messages each); a longer list cannot tell."""


def probe_can_tell(message: Message) -> bool:
    """Whether Twilio's message list can show which message this one became.

    The list knows the receiver, the sender, the body Twilio *stored* and the media count, not our
    id. A body Twilio transforms (``SmartEncoded`` replaces look-alike characters: the stored
    body differs from the one sent) or no body at all (media only, a content template) cannot be
    told apart from another send to the same number: the probe says "cannot tell", and the
    message is held rather than taken for another or resent.
    """
    body = message_body(message)
    if not body:
        return False
    smart = bool(message.properties.get("SmartEncoded", False))
    return not (smart and count_segments(body, False).encoding != "GSM-7")


def sent_candidates(
    message: Message, settings: TwilioSettings, listed: Mapping[str, Any], since: datetime
) -> list[str] | None:
    """SIDs in a ``ListMessage`` page that could be ``message`` (reconciliation probe).

    A candidate is outbound, created at or after ``since`` (second precision, as Twilio's dates),
    with the same body and number of media, from the same Messaging Service when one is used.
    Returns None when the page cannot tell (no ``messages`` list).
    """
    records = listed.get("messages")
    if not isinstance(records, list):
        return None
    body = message_body(message) or ""
    media = len(message.media())
    service = settings.messaging_service_sid
    floor = since.replace(microsecond=0)
    found = []
    for record in records:
        if not isinstance(record, dict) or not str(record.get("direction", "")).startswith("outbound"):
            continue
        created = parse_twilio_date(record.get("date_created"))
        if created is None or created < floor:
            continue
        if (record.get("body") or "") != body or str(record.get("num_media") or "0") != str(media):
            continue
        if service and record.get("messaging_service_sid") != service:
            continue
        if isinstance(record.get("sid"), str):
            found.append(record["sid"])
    return found


def _bool(value: Any) -> str:
    # Twilio's SDK serialises booleans as lowercase words.
    return "true" if value else "false"


CREATE_FIELDS = frozenset(
    {
        "To", "From", "MessagingServiceSid", "Body", "MediaUrl", "ContentSid", "ContentVariables",
        "StatusCallback", "ApplicationSid", "MaxPrice", "ProvideFeedback", "Attempt", "ValidityPeriod",
        "ForceDelivery", "ContentRetention", "AddressRetention", "SmartEncoded", "PersistentAction",
        "TrafficType", "ShortenUrls", "ScheduleType", "SendAt", "SendAsMms", "RiskCheck", "FallbackFrom",
    }
)  # fmt: skip
"""Every field of Twilio's ``CreateMessage`` (a test compares it with the OpenAPI description)."""

_PASSED_AS_IS: tuple[str, ...] = ("ShortenUrls", "SendAsMms", "RiskCheck", "ApplicationSid", "FallbackFrom")
_PASSED_AS_IS += ("ContentRetention", "AddressRetention")
"""Properties sent under their own name, booleans as ``true``/``false``, in this order."""

MODELLED_FIELDS = frozenset({"To", "From", "MessagingServiceSid", "Body", "MediaUrl", "StatusCallback", "Attempt"})
MODELLED_FIELDS |= {"ContentSid", "ContentVariables"}
MODELLED_FIELDS |= {"ValidityPeriod", "MaxPrice", "SmartEncoded", "PersistentAction", "ScheduleType", "SendAt"}
MODELLED_FIELDS |= set(_PASSED_AS_IS)
"""Create fields set from the message, its properties or the settings: ``ExtraFields`` may not name them."""


def extra_fields(values: Any) -> list[tuple[str, str]]:
    """``ExtraFields`` (``Name=value`` strings, or one) as form pairs."""
    items = [values] if isinstance(values, str) else list(values or ())
    return [(name, value) for name, _, value in (item.partition("=") for item in items)]


SCHEDULE_MIN_AHEAD = 300
"""A scheduled message's ``SendAt`` must be more than this many seconds ahead (error 35114; older
Twilio pages said 900)."""
SCHEDULE_MAX_AHEAD = 35 * 86400
"""... and at most this many (35 days; error 35115)."""


def send_at(value: str) -> datetime:
    """The aware datetime of a ``SendAt`` property (``SEND_AT_PATTERN``); raises ValueError if impossible."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def schedule_problem(value: str, now: float) -> str | None:
    """Why ``SendAt`` cannot be scheduled ``now`` (POSIX seconds), or None: a real date inside Twilio's window."""
    try:
        when = send_at(value).timestamp()
    except ValueError:
        return "is not a real date and time"
    ahead = when - now
    if ahead <= SCHEDULE_MIN_AHEAD:
        return f"must be more than {SCHEDULE_MIN_AHEAD} seconds ahead (Twilio refuses it: 35114/35115)"
    if ahead > SCHEDULE_MAX_AHEAD:
        return f"must be at most {SCHEDULE_MAX_AHEAD // 86400} days ahead (Twilio refuses it: 35114/35115)"
    return None


def build_message_form(message: Message, settings: TwilioSettings) -> list[tuple[str, str]]:
    """The form fields of ``CreateMessage`` for a validated message, in a stable order.

    With a Messaging Service, ``From`` is sent too when the message names a sender (it must be in
    the service's sender pool); without one, Twilio picks a sender from the pool. List values
    (``MediaUrl``, ``PersistentAction``) become repeated keys. Every message property is mapped:
    ``ProvideCallback`` true (the default) → ``StatusCallback`` (the message's own or the
    setting's, with our message id in its query), false → none; ``AttemptLimits`` is the
    connector's (it sends ``Attempt`` per request, not here); ``ExtraFields`` are sent as given.
    """
    props = message.properties
    form: list[tuple[str, str]] = []
    assert message.receiver is not None  # guaranteed by schema validation
    form.append(("To", message.receiver.address))
    service = settings.messaging_service_sid
    if service:
        form.append(("MessagingServiceSid", service))
    if message.sender is not None:
        form.append(("From", message.sender.address))
    body = message_body(message)
    if body is not None:
        form.append(("Body", body))
    template = template_of(message)
    if template is not None:
        form.append(("ContentSid", template.template_id))
        if template.parameters:
            variables = json.dumps(dict(template.parameters), separators=(",", ":"), ensure_ascii=False)
            form.append(("ContentVariables", variables))
    for media in message.media():
        form.append(("MediaUrl", media.url))
    callback = props.get("StatusCallback") or settings.status_callback
    if callback and props.get("ProvideCallback", True):
        form.append(("StatusCallback", with_message_id(callback, message.id)))
    validity = props.get("ValidityPeriod", settings.validity_period)
    if validity is not None:
        form.append(("ValidityPeriod", str(int(validity))))
    max_price = props.get("MaxPrice", settings.max_price)
    if max_price is not None:
        form.append(("MaxPrice", decimal_text(max_price)))
    if "SmartEncoded" in props:
        form.append(("SmartEncoded", _bool(props["SmartEncoded"])))
    actions = props.get("PersistentAction", ())
    for action in [actions] if isinstance(actions, str) else actions:
        form.append(("PersistentAction", str(action)))
    for name in _PASSED_AS_IS:
        if name in props:
            value = props[name]
            form.append((name, _bool(value) if isinstance(value, bool) else str(value)))
    if "SendAt" in props:
        when = send_at(props["SendAt"]).astimezone(UTC)
        form += [("ScheduleType", "fixed"), ("SendAt", when.strftime("%Y-%m-%dT%H:%M:%SZ"))]
    form += extra_fields(props.get("ExtraFields"))
    return form


def encode_form(form: list[tuple[str, str]]) -> bytes:
    """``application/x-www-form-urlencoded`` bytes of ``build_message_form`` output.

    The keys are Twilio's parameter names (ASCII letters only), so only the values are quoted:
    half the work of ``urllib.parse.urlencode`` on the hot path.
    """
    return "&".join([f"{key}={_quote_value(value)}" for key, value in form]).encode()


def _quote_value(value: str) -> str:
    """``quote_plus(value)`` without its layers of calls (this runs for every field of every send)."""
    return quote_from_bytes(value.encode("utf-8"), " ").replace(" ", "+")


def decimal_text(value: Any) -> str:
    """A number as Twilio reads it: plain decimal digits, never an exponent (``1e-05`` → ``0.00001``)."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return format(Decimal(repr(float(value))), "f")


# -- responses --------------------------------------------------------------------------------------


def parse_json_object(body: bytes) -> dict[str, Any] | None:
    """The JSON object in ``body``, or None when it is not one (HTML page, truncated JSON)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


_RECIPIENT_CODES = frozenset({21211, 21408, 21608, 21612, 21614})
_SENDER_CODES = frozenset({21212, 21606})
_RATE_CODES = frozenset({20429, 21611})  # 20429: concurrency, never processed; 21611: From's queue is full
# Twilio refused the content itself: no body or media (21602, 21619), body over 1,600 (21617),
# bad or too many media URLs (21620, 21623). Sending the same message again cannot succeed.
_CONTENT_CODES = frozenset({21602, 21617, 21619, 21620, 21623})


def error_from_response(http_status: int, body: bytes, *, operation: str = "send") -> Failure:
    """A ``Failure`` for a non-success API answer (Twilio error JSON, or whatever came back)."""
    data = parse_json_object(body) or {}
    raw_code = data.get("code")
    twilio_code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
    message = data.get("message") if isinstance(data.get("message"), str) else None
    details: dict[str, Any] = {"http_status": http_status}
    if twilio_code is not None:
        details["twilio_code"] = twilio_code
    if isinstance(data.get("more_info"), str):
        details["more_info"] = data["more_info"]
    if isinstance(data.get("details"), dict):
        details["twilio_details"] = data["details"]  # newer error bodies explain the code here: keep it raw
    text = message or f"HTTP {http_status} from Twilio"
    retryable = throttled = False
    outcome: FailureOutcome | None = None
    if twilio_code == 20003 or http_status == 401:
        code = TwilioErrorCodes.AUTHENTICATION_FAILED
    elif twilio_code in _RECIPIENT_CODES:
        code = TwilioErrorCodes.INVALID_RECIPIENT
    elif twilio_code == 21610:
        code = TwilioErrorCodes.RECIPIENT_UNSUBSCRIBED
    elif twilio_code in _SENDER_CODES:
        code = TwilioErrorCodes.INVALID_SENDER
    elif twilio_code in _CONTENT_CODES:
        code = TwilioErrorCodes.MESSAGE_VALIDATION_FAILED
    elif http_status == 429 or twilio_code in _RATE_CODES:
        code, retryable = TwilioErrorCodes.RATE_LIMITED, True
        if twilio_code == 21611:
            # The From number's queue is full: this sender is over its rate (a 20429 is the account's
            # concurrency instead). A shared pace (messaging_scale) slows the sender down on it.
            throttled = True
    elif http_status >= 500:
        # The request reached Twilio (or a proxy in front of it): it may have been processed.
        # Not retried automatically; the caller (or the scale-out ledger) settles it.
        code = TwilioErrorCodes.TEMPORARY_FAILURE
        if operation == "send":
            outcome = FailureOutcome.MAY_HAVE_BEEN_SENT
    elif operation == "status":
        code = TwilioErrorCodes.STATUS_QUERY_FAILED
    elif operation == "cancel":
        code = TwilioErrorCodes.CANCEL_FAILED
    elif operation == "manage":
        code = TwilioErrorCodes.MESSAGE_NOT_FOUND if http_status == 404 else TwilioErrorCodes.REQUEST_FAILED
    else:
        code = TwilioErrorCodes.SEND_MESSAGE_FAILED
    failure = Failure(code, text, (), retryable, details, throttled=throttled)
    return failure if outcome is None else evolve(failure, outcome=outcome)


def retry_after_seconds(value: str | None, *, cap: float = 60.0) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), capped; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    when = parse_twilio_date(value)
    if when is None:
        return None
    return max(0.0, min((when - datetime.now(UTC)).total_seconds(), cap))


def mask_phone(number: str | None) -> str:
    """``+14155550100`` → ``+14*******00``: enough to tell numbers apart in logs, not to dial them.

    At most the first 3 and the last 2 characters show, and never more than half of them, so no
    number of any length is shown in full (``1234567`` → ``12****7``, ``+1234`` → ``+***4``).
    """
    if not number:
        return "-"
    shown = len(number) // 2
    tail = min(2, shown // 2)
    head = min(3, shown - tail)
    return number[:head] + "*" * (len(number) - head - tail) + number[len(number) - tail :]


# -- opt-out keywords -------------------------------------------------------------------------------

OPT_OUT_KEYWORDS = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"), "STOP"),
    **dict.fromkeys(("START", "YES", "UNSTOP"), "START"),
    **dict.fromkeys(("HELP", "INFO"), "HELP"),
}
"""Twilio's default opt-out, opt-in and help keywords (docs "Advanced Opt-Out"), matched as the whole
body: Twilio acts on them for long codes even without Advanced Opt-Out."""


def opt_out_keyword(body: str) -> str | None:
    """``STOP``, ``START`` or ``HELP`` when ``body`` is one of Twilio's keywords, else None."""
    return OPT_OUT_KEYWORDS.get(body.strip().upper())
