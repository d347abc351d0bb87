"""Twilio SMS channel schemas: the full ``TwilioSms`` schema and its variants.

Variants are derived from the master schema (never written out again), and each is checked to be
a restriction of it when the plugin registers.
"""

from __future__ import annotations

from messaging_core import (
    Capability,
    ChannelSchema,
    ContentType,
    EndpointSpec,
    EndpointType,
    ParameterSpec,
    PropertySpec,
)

__all__ = ["E164_PATTERN", "TwilioChannelSchemas"]

E164_PATTERN = r"^\+[1-9][0-9]{1,14}$"
"""E.164: a plus, a country code that does not start with 0, at most 15 digits."""

SHORT_CODE_PATTERN = r"^[0-9]{3,8}$"
"""A short code: digits only (5 or 6 in the US and Canada; other countries use other lengths)."""

ALPHANUMERIC_SENDER_RULES = (
    (
        r"^[A-Za-z0-9 +&_-]*$",
        "may hold only letters A-Z and a-z, digits, spaces and + - & _ (an alphanumeric sender ID)",
    ),
    (r"[A-Za-z]", "must contain at least one letter (an alphanumeric sender ID of digits only is refused)"),
)
"""Twilio's rules for an alphanumeric sender ID (with at most 11 characters), each its own issue."""
ALPHANUMERIC_SENDER_LENGTH = 11

EDGES = ("sydney", "sao-paulo", "dublin", "frankfurt", "tokyo", "singapore", "ashburn", "umatilla", "roaming")
"""Twilio's edge locations."""

SEND_AT_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}:[0-9]{2})$"
"""ISO 8601 with an explicit offset: a send time without one would be read in some unknown zone."""

ACCOUNT_SID_PATTERN = r"^AC[0-9a-fA-F]{32}$"
MESSAGING_SERVICE_SID_PATTERN = r"^MG[0-9a-fA-F]{32}$"
API_KEY_SID_PATTERN = r"^SK[0-9a-fA-F]{32}$"

# -- URLs Twilio accepts ----------------------------------------------------------------------------
#
# Twilio answers every send with error 21609 when its StatusCallback is not a URL it can use: not
# http(s), characters a URL must percent-encode (spaces, quotes, non-ASCII), a '%' not followed by
# two hex digits, an underscore in the host name, more than 4,000 characters. These are the
# emulator's checks (emulator/_rules.py: url_problem, status_callback_problem) written as JSON
# Schema patterns, so a bad URL is refused at initialize instead; a test feeds both the same URLs.

_PERCENT_ESCAPE = "%[0-9A-Fa-f]{2}"
_URL_CHARACTER = rf"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|{_PERCENT_ESCAPE})"
"""What RFC 3986 allows in a URL: unreserved and reserved characters, percent-escapes."""
_USER_INFO = rf"(?:(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|{_PERCENT_ESCAPE})*@)?"
_PORT = r"(?::0*(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])?)?"
"""An optional port, 0 to 65535 (empty allowed, as ``http://host:/``)."""
_IPV6_LITERAL = r"\[[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*\]"
"""An IPv6 address in brackets, checked by its characters only (an ill-formed one passes here and fails
at Twilio): RFC 3986's IPv6 grammar would make the pattern, quoted by every issue about it, five
times longer."""
_HOST_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
"""A DNS label (1 to 63 characters, no hyphen first or last), underscores tolerated."""
_HOST_LABEL_WITHOUT_UNDERSCORE = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_END = r"$(?!\n)"
"""The end of the value: Python's ``$`` also matches before a final newline, ECMA's never does."""


def _url_pattern(host_label: str) -> str:
    """An http(s) URL whose host is a name of ``host_label`` labels (a dotted IPv4 is one) or an IPv6 literal."""
    host = rf"(?:{host_label}(?:\.{host_label})*|{_IPV6_LITERAL})"
    return rf"^[Hh][Tt][Tt][Pp][Ss]?://{_USER_INFO}{host}{_PORT}(?:[/?#]{_URL_CHARACTER}*)?{_END}"


WEBHOOK_URL_PATTERN = _url_pattern(_HOST_LABEL)
"""A URL Twilio can post webhooks to."""
STATUS_CALLBACK_PATTERN = _url_pattern(_HOST_LABEL_WITHOUT_UNDERSCORE)
"""A URL Twilio accepts as ``StatusCallback``: no underscore in its host name (underscores elsewhere are fine)."""

_TWILIO_SMS = ChannelSchema(
    provider="twilio",
    channel_type="sms",
    version="1.0.0",
    display_name="Twilio SMS Connector",
    capabilities=Capability.SEND_MESSAGES
    | Capability.RECEIVE_MESSAGES
    | Capability.MESSAGE_STATUS_QUERY
    | Capability.HANDLE_MESSAGE_STATE
    | Capability.MEDIA_ATTACHMENTS
    | Capability.BULK_MESSAGING
    | Capability.HEALTH_CHECK
    | Capability.SCHEDULED_SENDING
    | Capability.TEMPLATES,
    parameters=[
        ParameterSpec(
            "AccountSid", required=True, pattern=ACCOUNT_SID_PATTERN, description="Twilio Account SID (AC...)."
        ),
        ParameterSpec(
            "AuthToken",
            sensitive=True,
            min_length=1,
            description="Auth Token: checks webhook signatures; authenticates API calls unless an API key is set "
            "(required unless ApiKeySid and ApiKeySecret are set and no webhook is received).",
        ),
        ParameterSpec(
            "ApiKeySid",
            pattern=API_KEY_SID_PATTERN,
            description="API key SID (SK...); with ApiKeySecret, used for API calls instead of the Auth Token.",
        ),
        ParameterSpec("ApiKeySecret", sensitive=True, min_length=1, description="Secret of the API key."),
        ParameterSpec(
            "WebhookUrl",
            pattern=WEBHOOK_URL_PATTERN,
            description="Public URL of the inbound-message webhook (http(s), percent-encoded), as configured in Twilio "
            "(signatures are checked against it behind a proxy).",
        ),
        ParameterSpec(
            "SubaccountSids",
            repeated=True,
            pattern=ACCOUNT_SID_PATTERN,
            description="Other accounts (AC...) whose webhooks this connector accepts besides AccountSid's, "
            "e.g. subaccounts sending through it; they must still be signed with AuthToken.",
        ),
        ParameterSpec(
            "StatusCallback",
            pattern=STATUS_CALLBACK_PATTERN,
            max_length=4000,
            description="URL Twilio posts delivery statuses to: http(s), percent-encoded, no underscores in the host "
            "name, at most 4000 characters (Twilio refuses others with error 21609).",
        ),
        ParameterSpec(
            "ValidityPeriod",
            "integer",
            default=14400,
            minimum=1,
            maximum=36000,
            description="Seconds a message may wait in Twilio's queue before it fails.",
        ),
        ParameterSpec(
            "MaxPrice",
            "number",
            minimum=0,
            description="Obsolete at Twilio since 2024-06-03 (no effect); still sent, with a warning.",
        ),
        ParameterSpec(
            "MessagingServiceSid",
            pattern=MESSAGING_SERVICE_SID_PATTERN,
            description="Messaging Service (MG...): picks the sender from its pool when a message names none; a "
            "sender the message names is sent as From too (it must be in the pool).",
        ),
        ParameterSpec(
            "Region",
            pattern=r"^[a-z]{2}[0-9]$",
            description="Twilio Region (au1, ie1, jp1, ...; us1 by default): API calls go to "
            "api.{Edge}.{Region}.twilio.com; the credentials must be that region's.",
        ),
        ParameterSpec(
            "Edge",
            allowed_values=EDGES,
            description="Edge location the API calls enter by (a region alone takes its own: au1 sydney, ie1 dublin, "
            "jp1 tokyo).",
        ),
        ParameterSpec(
            "ApiBaseUrl",
            default="https://api.twilio.com",
            pattern=r"^https?://[^\s/]+(:[0-9]+)?/?$",
            description="Base URL of the API (point it at the local emulator or a proxy).",
        ),
        ParameterSpec(
            "RequestTimeout", "number", default=15, minimum=0.1, maximum=300, description="Seconds per API request."
        ),
        ParameterSpec(
            "MaxConcurrency",
            "integer",
            default=32,
            minimum=1,
            maximum=1000,
            description="Most API requests in flight (also the default batch concurrency).",
        ),
        ParameterSpec(
            "MessagesPerSecond",
            "number",
            minimum=0.01,
            maximum=10000,
            description="Pace of batch sends (Twilio queues at the sender's MPS anyway; this avoids 21611).",
        ),
        ParameterSpec(
            "MaxRetries",
            "integer",
            default=2,
            minimum=0,
            maximum=10,
            description="Retries of requests that cannot have created a message (429, connection refused).",
        ),
        ParameterSpec(
            "ValidateSignatures",
            "boolean",
            default=True,
            description="Check X-Twilio-Signature on every webhook (refused when missing or wrong, or when the "
            "URL is unknown); false accepts unsigned webhooks and logs a warning at initialize.",
        ),
        ParameterSpec(
            "LogPhoneNumbers",
            "boolean",
            default=False,
            description="Show full phone numbers in logs (masked otherwise).",
        ),
    ],
    properties=[
        PropertySpec(
            "ValidityPeriod", "integer", minimum=1, maximum=36000, description="Overrides the connection setting."
        ),
        PropertySpec(
            "MaxPrice",
            "number",
            minimum=0,
            description="Obsolete at Twilio since 2024-06-03 (no effect); still sent as MaxPrice, with a warning.",
        ),
        PropertySpec(
            "ProvideCallback",
            "boolean",
            description="true: ask for status callbacks (needs a StatusCallback URL, the property or the setting); "
            "false: none, even with a StatusCallback setting.",
        ),
        PropertySpec(
            "StatusCallback",
            pattern=STATUS_CALLBACK_PATTERN,
            max_length=4000,
            description="This message's status callback URL (overrides the setting); our id is added to its query.",
        ),
        PropertySpec(
            "AttemptLimits",
            "integer",
            minimum=1,
            maximum=100,
            description="Most requests the connector makes for this message when Twilio answers a retryable refusal "
            "(429/20429, connection refused); each request carries Twilio's Attempt (1, 2, ...).",
        ),
        PropertySpec("SmartEncoded", "boolean", description="Replace Unicode look-alikes with GSM-7 characters."),
        PropertySpec(
            "PersistentAction",
            repeated=True,
            single_allowed=True,
            min_length=1,
            description="Rich actions for non-SMS channels (e.g. a WhatsApp location): one string or a list.",
        ),
        PropertySpec(
            "ShortenUrls",
            "boolean",
            description="Shorten links in the body (Messaging Service with Link Shortening; sent as ShortenUrls).",
        ),
        PropertySpec("SendAsMms", "boolean", description="Deliver as one MMS even without media (sent as SendAsMms)."),
        PropertySpec(
            "RiskCheck",
            allowed_values=("enable", "disable"),
            description="`disable` skips Twilio's risk check for this message (sent as RiskCheck).",
        ),
        PropertySpec(
            "ApplicationSid",
            pattern=r"^AP[0-9a-fA-F]{32}$",
            description="TwiML Application (AP...) whose status callback URL receives this message's statuses.",
        ),
        PropertySpec(
            "FallbackFrom",
            pattern=E164_PATTERN,
            description="SMS sender used when an RCS recipient cannot be reached (E.164; Messaging Service only).",
        ),
        PropertySpec(
            "ContentRetention",
            allowed_values=("retain", "discard"),
            description="Whether Twilio may keep the message content (privacy settings).",
        ),
        PropertySpec(
            "AddressRetention",
            allowed_values=("retain", "obfuscate"),
            description="Whether Twilio may keep the addresses or must obfuscate them (privacy settings).",
        ),
        PropertySpec(
            "SendAt",
            pattern=SEND_AT_PATTERN,
            description="Send at this time (ISO 8601 with an offset; sent in UTC with ScheduleType=fixed): more than "
            "300 s and at most 35 days ahead; needs a Messaging Service. Cancel with cancel_scheduled().",
        ),
        PropertySpec(
            "ExtraFields",
            repeated=True,
            single_allowed=True,
            pattern=r"^[A-Z][A-Za-z]*=",
            description="Escape hatch: `Name=value` create fields this plugin does not model (e.g. "
            "`TrafficType=free`), sent as given; a field the plugin models is refused here.",
        ),
    ],
    # A template (TemplateContent: a Content SID HX... and its variables) is a message of its own.
    content_types=[ContentType.TEXT, ContentType.MEDIA, ContentType.MULTIPART, ContentType.TEMPLATE],
    endpoints=[
        EndpointSpec(EndpointType.PHONE, can_send=True, can_receive=True, address_pattern=E164_PATTERN),
        # A short code sends and receives (people text it), but Twilio sends to phone numbers only.
        EndpointSpec(
            EndpointType.SHORT_CODE,
            sender_only=True,
            address_rules=((SHORT_CODE_PATTERN, "must be 3 to 8 digits (a short code)"),),
        ),
        # An alphanumeric sender ID ("AcmeAlerts") only sends: nobody can text or reply to it.
        EndpointSpec(
            EndpointType.LABEL,
            can_receive=False,
            sender_only=True,
            max_length=ALPHANUMERIC_SENDER_LENGTH,
            address_rules=ALPHANUMERIC_SENDER_RULES,
        ),
        EndpointSpec(EndpointType.URL, can_send=False, can_receive=True),
    ],
    auth_types=("basic",),
    max_text_length=1600,
    max_media=10,
)


class TwilioChannelSchemas:
    """The Twilio SMS schemas; config files name them ``TwilioSms``, ``SimpleSms``, ``NotificationSms``, ``BulkSms``."""

    TWILIO_SMS = _TWILIO_SMS
    """Everything: send (SMS/MMS), receive, status query and callbacks, bulk, health."""

    SIMPLE_SMS = _TWILIO_SMS.derive(
        "Twilio Simple SMS",
        # Scheduling needs a Messaging Service, which SimpleSms has not: it goes with MessagingServiceSid.
        remove_capabilities=Capability.RECEIVE_MESSAGES
        | Capability.HANDLE_MESSAGE_STATE
        | Capability.BULK_MESSAGING
        | Capability.SCHEDULED_SENDING,
        # SubaccountSids only widens which webhooks are accepted: without receiving, it means nothing.
        remove_parameters=["WebhookUrl", "StatusCallback", "MessagingServiceSid", "SubaccountSids"],
        remove_properties=["SendAt"],
        remove_endpoints=[EndpointType.URL],
        update_endpoints={EndpointType.PHONE: {"required": True}},
    )
    """Send-only SMS and MMS from a sender of its own (no Messaging Service, no webhooks handled here).

    A message may still ask for status callbacks with its own ``StatusCallback`` property; they
    are then handled by whatever serves that URL.
    """

    NOTIFICATION_SMS = _TWILIO_SMS.derive(
        "Twilio Notification SMS",
        remove_capabilities=Capability.RECEIVE_MESSAGES | Capability.HANDLE_MESSAGE_STATE,
        remove_parameters=["WebhookUrl", "SubaccountSids"],
        remove_endpoints=[EndpointType.URL],
    )
    """Outbound notifications: status query and StatusCallback kept, no inbound."""

    BULK_SMS = _TWILIO_SMS.derive(
        "Twilio Bulk SMS",
        remove_capabilities=Capability.RECEIVE_MESSAGES | Capability.HANDLE_MESSAGE_STATE,
        remove_parameters=["WebhookUrl", "SubaccountSids"],
        remove_endpoints=[EndpointType.URL],
        update_parameters={"MessagingServiceSid": {"required": True}},
    )
    """Campaigns through a Messaging Service (required; it picks the sender)."""

    VARIANTS = {
        "TwilioSms": TWILIO_SMS,
        "SimpleSms": SIMPLE_SMS,
        "NotificationSms": NOTIFICATION_SMS,
        "BulkSms": BULK_SMS,
    }
    """Every schema by the name configuration files use."""
