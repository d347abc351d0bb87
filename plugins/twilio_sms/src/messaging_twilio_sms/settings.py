"""``TwilioSettings``: a Twilio connector's connection parameters, typed.

The schema (``schemas.py``) declares and validates the parameters; ``TwilioSettings`` holds the
values, one field per parameter (``AccountSid`` → ``account_sid``, defaults as the schema's), so
the rest of the plugin reads attributes instead of looking names up. ``initialize()`` structures it
once from the validated values with ``structure_settings``; before that, ``provisional_settings``
makes a best guess from the raw values. A test pins the fields to the schema's parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import field, fields, frozen
from cattrs.gen import make_dict_structure_fn, override

from messaging_core import ChannelSchema, ConnectionSettings, IssueCodes, ValidationIssue
from messaging_core.converters import converter

__all__ = [
    "DEFAULT_EDGES",
    "TwilioSettings",
    "api_url",
    "parameter_name",
    "provisional_settings",
    "settings_problem",
    "structure_settings",
]


@frozen(kw_only=True)
class TwilioSettings:
    """The connection parameters of a Twilio connector; the secrets never show in ``repr``."""

    account_sid: str
    """``AccountSid``: the account (AC...) the API paths name and webhooks must come from."""
    auth_token: str | None = field(default=None, repr=False)
    """``AuthToken``: checks webhook signatures; authenticates API calls unless an API key is set."""
    api_key_sid: str | None = None
    """``ApiKeySid``: with ``api_key_secret``, authenticates API calls instead of the Auth Token."""
    api_key_secret: str | None = field(default=None, repr=False)
    """``ApiKeySecret``: the secret of the API key."""
    webhook_url: str | None = None
    """``WebhookUrl``: the public URL of the inbound webhook, as configured in Twilio."""
    subaccount_sids: tuple[str, ...] = ()
    """``SubaccountSids``: other accounts whose webhooks are accepted."""
    status_callback: str | None = None
    """``StatusCallback``: where Twilio posts delivery statuses."""
    validity_period: int = 14400
    """``ValidityPeriod``: seconds a message may wait in Twilio's queue."""
    max_price: float | None = None
    """``MaxPrice``: obsolete at Twilio, still sent."""
    messaging_service_sid: str | None = None
    """``MessagingServiceSid``: the Messaging Service (MG...) that picks the sender."""
    region: str | None = None
    """``Region``: the Twilio Region API calls go to (us1 when None)."""
    edge: str | None = None
    """``Edge``: the edge location API calls enter by."""
    api_base_url: str = "https://api.twilio.com"
    """``ApiBaseUrl``: the API's base URL (the emulator's, a proxy's); see ``api_url``."""
    request_timeout: float = 15.0
    """``RequestTimeout``: seconds per API request."""
    max_concurrency: int = 32
    """``MaxConcurrency``: most API requests in flight, and the default batch concurrency."""
    messages_per_second: float | None = None
    """``MessagesPerSecond``: pace of batch sends (None: unpaced)."""
    max_retries: int = 2
    """``MaxRetries``: retries of requests that cannot have created a message."""
    validate_signatures: bool = True
    """``ValidateSignatures``: check ``X-Twilio-Signature`` on every webhook."""
    log_phone_numbers: bool = False
    """``LogPhoneNumbers``: show full phone numbers in logs."""


DEFAULT_EDGES = {"au1": "sydney", "ie1": "dublin", "jp1": "tokyo", "us1": "ashburn"}
"""The edge a region alone goes through (Twilio's documented pairs; us1's default host needs none)."""


def api_url(settings: TwilioSettings) -> str:
    """Where API calls go: ``api.{edge}.{region}.twilio.com`` with a region or an edge, else ``ApiBaseUrl``.

    A region alone takes its own edge (the old ``api.{region}.twilio.com`` hosts stopped working on
    2026-04-28); an edge alone goes to us1. ``settings_problem`` refuses both with ``ApiBaseUrl``.
    """
    if settings.region is None and settings.edge is None:
        return settings.api_base_url.rstrip("/")
    region = settings.region or "us1"
    edge = settings.edge or DEFAULT_EDGES.get(region)
    return f"https://api.{edge}.{region}.twilio.com"


def settings_problem(settings: TwilioSettings, given: Mapping[str, Any], *, receives: bool) -> ValidationIssue | None:
    """What is wrong across parameters (each one alone is valid), or None.

    :param given: the parameters as configured (to tell a given ``ApiBaseUrl`` from the default).
    :param receives: whether the connector checks webhooks (then signatures need the Auth Token).
    """
    api_key = settings.api_key_sid is not None
    missing = IssueCodes.REQUIRED
    if api_key and settings.api_key_secret is None:
        return ValidationIssue("$.ApiKeySecret", "is required with ApiKeySid", missing)
    if settings.api_key_secret is not None and not api_key:
        return ValidationIssue("$.ApiKeySid", "is required with ApiKeySecret", missing)
    if settings.auth_token is None and not api_key:
        return ValidationIssue("$.AuthToken", "is required (or ApiKeySid and ApiKeySecret for API calls)", missing)
    if settings.auth_token is None and receives and settings.validate_signatures:
        return ValidationIssue(
            "$.AuthToken",
            "is required to check webhook signatures (an API key authenticates API calls only); give it, or turn "
            "ValidateSignatures off where only Twilio can reach the webhook URL",
            missing,
        )
    located = settings.region is not None or settings.edge is not None
    if located and given.get("ApiBaseUrl") is not None:
        return ValidationIssue("$.ApiBaseUrl", "cannot be given with Region or Edge (they make the URL)", "NOT_ALLOWED")
    if settings.region is not None and settings.edge is None and settings.region not in DEFAULT_EDGES:
        return ValidationIssue("$.Edge", f"is required with Region {settings.region} (no known default edge)", missing)
    return None


def parameter_name(field_name: str) -> str:
    """The schema's name of a field: ``account_sid`` → ``AccountSid``."""
    return "".join(word.capitalize() for word in field_name.split("_"))


_RENAMES: dict[str, Any] = {f.name: override(rename=parameter_name(f.name)) for f in fields(TwilioSettings)}
"""Each field read from its parameter (typed ``Any``: the overrides are keyword arguments)."""

converter.register_structure_hook(
    TwilioSettings,
    # A parameter without a field is drift between the schema and this class: fail loudly.
    make_dict_structure_fn(TwilioSettings, converter, _cattrs_forbid_extra_keys=True, **_RENAMES),
)


def structure_settings(parameters: Mapping[str, Any]) -> TwilioSettings:
    """The settings of validated parameter values (``connector.parameters``); None means unset."""
    return converter.structure({k: v for k, v in parameters.items() if v is not None}, TwilioSettings)


_UNUSABLE = frozenset({IssueCodes.INVALID_TYPE, IssueCodes.UNKNOWN_FIELD})


def provisional_settings(settings: Mapping[str, Any], schema: ChannelSchema) -> TwilioSettings:
    """A best guess at the settings before ``initialize()`` has resolved and validated them.

    Every raw value of the right type is taken as given (a ``${VAR}`` reference is not resolved
    yet), the schema's defaults fill the rest, and a credential not given yet is empty: enough to
    validate, pace and preview messages, never to call the API.
    """
    values = {k: v for k, v in settings.items() if v is not None}
    unusable = {
        issue.path.removeprefix("$.").split("[", 1)[0]
        for issue in ConnectionSettings(values).issues(schema)
        if issue.code in _UNUSABLE
    }
    defaults = {spec.name: spec.default for spec in schema.parameters if spec.default is not None}
    usable = {k: v for k, v in values.items() if k not in unusable}
    return structure_settings({"AccountSid": "", **defaults, **usable})
