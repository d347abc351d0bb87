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

ACCOUNT_SID_PATTERN = r"^AC[0-9a-fA-F]{32}$"
MESSAGING_SERVICE_SID_PATTERN = r"^MG[0-9a-fA-F]{32}$"
API_KEY_SID_PATTERN = r"^SK[0-9a-fA-F]{32}$"

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
    | Capability.HEALTH_CHECK,
    parameters=[
        ParameterSpec(
            "AccountSid", required=True, pattern=ACCOUNT_SID_PATTERN, description="Twilio Account SID (AC...)."
        ),
        ParameterSpec(
            "AuthToken",
            required=True,
            sensitive=True,
            min_length=1,
            description="Auth Token: signs webhooks; authenticates API calls unless an API key is set.",
        ),
        ParameterSpec(
            "ApiKeySid",
            pattern=API_KEY_SID_PATTERN,
            description="API key SID (SK...); with ApiKeySecret, used for API calls instead of the Auth Token.",
        ),
        ParameterSpec("ApiKeySecret", sensitive=True, min_length=1, description="Secret of the API key."),
        ParameterSpec(
            "WebhookUrl",
            pattern=r"^https?://[^\s]+$",
            description="Public URL of the inbound-message webhook, as configured in Twilio (signatures are checked "
            "against it behind a proxy).",
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
            # Twilio refuses underscores in the host name only; paths and queries may have them.
            pattern=r"^https?://[^\s/?#_]+([/?#][^\s]*)?$",
            description="URL Twilio posts delivery statuses to (no underscores in the host, per Twilio).",
        ),
        ParameterSpec(
            "ValidityPeriod",
            "integer",
            default=14400,
            minimum=1,
            maximum=36000,
            description="Seconds a message may wait in Twilio's queue before it fails.",
        ),
        ParameterSpec("MaxPrice", "number", minimum=0, description="Obsolete at Twilio since 2024-06-03; still sent."),
        ParameterSpec(
            "MessagingServiceSid",
            pattern=MESSAGING_SERVICE_SID_PATTERN,
            description="Messaging Service (MG...); wins over the sender number.",
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
        PropertySpec("MaxPrice", "number", minimum=0, description="Obsolete at Twilio; sent as MaxPrice."),
        PropertySpec(
            "ProvideCallback", "boolean", description="true: ask for status callbacks (StatusCallback); false: none."
        ),
        PropertySpec("AttemptLimits", "integer", minimum=1, maximum=100, description="Sent as Attempt."),
        PropertySpec("SmartEncoded", "boolean", description="Replace Unicode look-alikes with GSM-7 characters."),
        PropertySpec(
            "PersistentAction", repeated=True, description="Rich actions (repeated), e.g. WhatsApp locations."
        ),
    ],
    content_types=[ContentType.TEXT, ContentType.MEDIA, ContentType.MULTIPART],
    endpoints=[
        EndpointSpec(EndpointType.PHONE, can_send=True, can_receive=True, address_pattern=E164_PATTERN),
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
        remove_capabilities=Capability.RECEIVE_MESSAGES
        | Capability.HANDLE_MESSAGE_STATE
        | Capability.BULK_MESSAGING
        | Capability.MEDIA_ATTACHMENTS,
        remove_parameters=["WebhookUrl", "StatusCallback", "MessagingServiceSid", "SubaccountSids"],
        remove_properties=["ProvideCallback"],
        remove_content_types=[ContentType.MEDIA, ContentType.MULTIPART],
        remove_endpoints=[EndpointType.URL],
        update_endpoints={EndpointType.PHONE: {"required": True}},
    )
    """Send-only text SMS from a phone number."""

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
