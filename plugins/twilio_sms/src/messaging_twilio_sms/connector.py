"""``TwilioSmsConnector``: moves bytes between the core and Twilio's Messages API.

Request building, response parsing, status and error mapping live in ``_api`` and webhook
signatures and parsing in ``webhooks`` (pure functions); this module does the I/O: one
``aiohttp.ClientSession`` per connector, precomputed headers, explicit timeouts, and retries only
where a retry cannot create a message twice.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlencode

import aiohttp
import attrs

from messaging_core import (
    Capability,
    ChannelConnector,
    ChannelSchema,
    ConnectionSettings,
    ConnectorResult,
    Content,
    Failure,
    FailureOutcome,
    IssueCodes,
    MediaContent,
    Message,
    MultipartContent,
    PluginHost,
    ProviderError,
    ReceiveResult,
    SendResult,
    StatusUpdate,
    StatusUpdatesResult,
    TemplateContent,
    ValidationIssue,
    WebhookRequest,
)
from messaging_core.campaigns import not_attempted
from messaging_twilio_sms import _api, webhooks
from messaging_twilio_sms._api import TwilioErrorCodes, mask_phone
from messaging_twilio_sms.schemas import TwilioChannelSchemas
from messaging_twilio_sms.segments import count_segments
from messaging_twilio_sms.settings import (
    TwilioSettings,
    api_url,
    provisional_settings,
    settings_problem,
    structure_settings,
)

__all__ = ["TwilioSmsConnector"]

log = logging.getLogger(__name__)

_USER_AGENT = "pluggable-messaging-twilio-sms/0.1"
_EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
_RECENT_IDS = 10_000
"""How many (our id → SID) pairs the connector remembers for status queries by our id."""


class _DeadlinePassed(Exception):
    """The send's deadline passed before its request was written (see ``ChannelConnector._deadline_passed``)."""


class _Answer:
    """What came back from one API request: status, headers that matter, raw body."""

    __slots__ = ("body", "retry_after", "status")

    def __init__(self, status: int, body: bytes, retry_after: str | None) -> None:
        self.status = status
        self.body = body
        self.retry_after = retry_after


class TwilioSmsConnector(ChannelConnector):
    """Twilio Programmable Messaging: SMS and MMS out, webhooks in.

    ``TwilioSmsConnector(schema, settings, *, session=None)``: pass an ``aiohttp.ClientSession``
    to share one (the caller then closes it); otherwise the connector opens its own in
    ``initialize()`` and closes it in ``shutdown()``.
    """

    channel_name: ClassVar[str] = "twilio_sms"
    channel_aliases: ClassVar[tuple[str, ...]] = ("twilio",)
    master_schema: ClassVar[ChannelSchema] = TwilioChannelSchemas.TWILIO_SMS
    schema_variants: ClassVar[Mapping[str, ChannelSchema]] = TwilioChannelSchemas.VARIANTS
    credential_parameters: ClassVar[frozenset[str]] = frozenset(
        {"AccountSid", "AuthToken", "ApiKeySid", "ApiKeySecret"}
    )

    def __init__(
        self,
        schema: ChannelSchema,
        settings: ConnectionSettings | Mapping[str, Any] | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        plugins: PluginHost | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(schema, settings, plugins=plugins, name=name)
        self._external_session = session
        self._session: aiohttp.ClientSession | None = None
        self._configured: TwilioSettings | None = None
        """The validated settings, structured once by ``initialize()``."""
        self._headers: dict[str, str] = {}
        self._form_headers: dict[str, str] = {}
        self._messages_url = ""
        self._base_url = ""
        self._signatures: webhooks.SignatureValidator | None = None
        """None when ``ValidateSignatures`` is false, or without an Auth Token (then every webhook is refused)."""
        self._check_signatures = True
        self._accounts: frozenset[str] = frozenset()
        """Accounts whose webhooks are accepted: AccountSid and SubaccountSids."""
        self._recent: OrderedDict[str, str] = OrderedDict()
        self._semaphore: asyncio.Semaphore | None = None
        self._timeout: aiohttp.ClientTimeout | None = None
        self._max_retries = 0
        self._show_numbers = False
        self._counters = {"sent": 0, "failed": 0, "retries": 0}
        self._max_price_warned = False
        self.clock = time.time
        """Seconds since the epoch, for the checks of ``SendAt`` before any request (a test may move it)."""

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def twilio_settings(self) -> TwilioSettings:
        """The typed settings: those ``initialize()`` validated, or a best guess before it.

        Before ``initialize()`` the raw settings are read as ``provisional_settings`` says (values
        of the right type as given, the schema's defaults for the rest), so that validation,
        pacing, timeouts and previews work; resolving references may change them at initialize.
        """
        if self._configured is not None:
            return self._configured
        if self.parameters:  # resolve_settings() ran (a dry run): the resolved values, not a guess
            return structure_settings(self.parameters)
        return provisional_settings(self.settings, self.schema)

    async def _initialize(self) -> ConnectorResult[bool]:
        settings = self._configured = structure_settings(self.parameters)
        receives = bool(self.schema.capabilities & (Capability.RECEIVE_MESSAGES | Capability.HANDLE_MESSAGE_STATE))
        problem = settings_problem(settings, self.settings, receives=receives)
        if problem is not None:
            missing = problem.code == IssueCodes.REQUIRED
            code = TwilioErrorCodes.MISSING_CREDENTIALS if missing else TwilioErrorCodes.INVALID_CONNECTION_SETTINGS
            what = "missing credentials" if missing else "invalid connection settings"
            return ConnectorResult.failure(code, f"{self.name}: {what}: {problem}", issues=[problem])
        # Built once: every request reuses the same header dict (no per-request auth building).
        if settings.api_key_sid and settings.api_key_secret:
            user, secret = settings.api_key_sid, settings.api_key_secret
        else:
            assert settings.auth_token is not None  # settings_problem said so
            user, secret = settings.account_sid, settings.auth_token
        token = base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")
        self._headers = {
            "Authorization": f"Basic {token}",
            "Accept": "application/json",
            "User-Agent": _USER_AGENT,
        }
        self._form_headers = {**self._headers, "Content-Type": "application/x-www-form-urlencoded"}
        self._base_url = api_url(settings)
        self._messages_url = self._base_url + _api.messages_path(settings.account_sid)
        self._check_signatures = settings.validate_signatures
        if settings.validate_signatures and settings.auth_token is not None:
            self._signatures = webhooks.SignatureValidator(settings.auth_token)
        elif settings.validate_signatures:
            # Send-only with an API key (settings_problem allowed it): a webhook that reaches this
            # connector anyway is refused (_verified_fields), never taken unchecked.
            self._signatures = None
        else:
            self._signatures = None
            log.warning(
                "connector %s: ValidateSignatures is false: webhooks are accepted without a signature check; "
                "turn it on wherever the webhook URL can be reached by anyone but Twilio",
                self.name,
            )
        self._accounts = frozenset([settings.account_sid, *settings.subaccount_sids])
        if settings.max_price is not None:
            self._warn_max_price()
        self._max_retries = settings.max_retries
        self._show_numbers = settings.log_phone_numbers
        concurrency = settings.max_concurrency
        self._semaphore = asyncio.Semaphore(concurrency)
        # Per request, not only per session: a shared session keeps its own default timeout.
        self._timeout = aiohttp.ClientTimeout(total=settings.request_timeout)
        if self._external_session is not None:
            self._session = self._external_session
        else:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency),
                raise_for_status=False,
            )
        return ConnectorResult.success(True)

    async def _shutdown(self) -> None:
        if self._session is not None and self._session is not self._external_session:
            await self._session.close()
        self._session = None

    def batch_concurrency(self) -> int:
        return self.twilio_settings.max_concurrency

    def batch_rate(self) -> float | None:
        return self.twilio_settings.messages_per_second

    # -- HTTP --------------------------------------------------------------------------------------

    async def _request(self, method: str, url: str, body: bytes | None = None) -> _Answer:
        """One API request; raises aiohttp errors (the callers classify them)."""
        assert self._session is not None
        assert self._semaphore is not None
        headers = self._headers if body is None else self._form_headers
        async with self._semaphore:
            if body is not None and self._deadline_passed():
                # Queued behind the concurrency limit (or a backoff) past the campaign claim's
                # deadline: writing now could outlive the lease. Nothing leaves.
                raise _DeadlinePassed
            async with self._session.request(
                method, url, data=body, headers=headers, allow_redirects=False, timeout=self._timeout
            ) as response:
                payload = await response.read()
                return _Answer(response.status, payload, response.headers.get("Retry-After"))

    async def _backoff(self, attempt: int, retry_after: str | None) -> None:
        delay = _api.retry_after_seconds(retry_after)
        if delay is None:
            # Full jitter, as twilio-node does: random(0, min(3 s, 0.1 s * 2^attempt)).
            delay = random.uniform(0, min(3.0, 0.1 * (2**attempt)))
        self._counters["retries"] += 1
        await asyncio.sleep(delay)

    # -- sending -----------------------------------------------------------------------------------

    def _validate(self, message: Message) -> list[ValidationIssue]:
        """Twilio's rules that depend on the settings or span parts (the schema's checks passed)."""
        issues: list[ValidationIssue] = []
        settings = self.twilio_settings
        props = message.properties
        if message.sender is None and not settings.messaging_service_sid:
            issues.append(ValidationIssue("$.sender", "is required (or set MessagingServiceSid)", IssueCodes.REQUIRED))
        if props.get("ProvideCallback") is True and not (props.get("StatusCallback") or settings.status_callback):
            issues.append(
                ValidationIssue(
                    "$.properties.ProvideCallback",
                    "is true but there is no status callback URL: set the StatusCallback property or setting",
                    IssueCodes.REQUIRED,
                )
            )
        if isinstance(message.content, MultipartContent):
            for index, part in enumerate(message.content.parts):
                if isinstance(part, TemplateContent):
                    issues.append(
                        ValidationIssue(
                            f"$.content.parts[{index}]",
                            "a Content template is a message of its own (its text and media are the template's): "
                            "send it alone",
                            IssueCodes.NOT_ALLOWED,
                        )
                    )
        template = _api.template_of(message)
        if template is not None:
            if re.match(_api.CONTENT_SID_PATTERN, template.template_id) is None:
                issues.append(
                    ValidationIssue(
                        "$.content.template_id",
                        "must be a Content SID: HX and 32 hex digits",
                        IssueCodes.INVALID_FORMAT,
                    )
                )
            for name, value in template.parameters.items():
                if not isinstance(value, str):
                    issues.append(
                        ValidationIssue(
                            f"$.content.parameters.{name}",
                            "must be a string (Twilio's ContentVariables are strings)",
                            IssueCodes.INVALID_TYPE,
                        )
                    )
        if "SendAt" in props:
            problem = _api.schedule_problem(props["SendAt"], self.clock())
            if problem is not None:
                issues.append(ValidationIssue("$.properties.SendAt", problem, IssueCodes.OUT_OF_RANGE))
            if not settings.messaging_service_sid:
                issues.append(
                    ValidationIssue(
                        "$.properties.SendAt",
                        "needs a Messaging Service: set MessagingServiceSid (Twilio refuses it with 35118)",
                        IssueCodes.REQUIRED,
                    )
                )
        extras = props.get("ExtraFields")
        for index, (name, _) in enumerate(_api.extra_fields(extras)):
            path = "$.properties.ExtraFields" + ("" if isinstance(extras, str) else f"[{index}]")
            if name in _api.MODELLED_FIELDS:
                issues.append(
                    ValidationIssue(
                        path, f"{name} is set by the connector (use its property or setting)", "NOT_ALLOWED"
                    )
                )
            elif name not in _api.CREATE_FIELDS:
                issues.append(
                    ValidationIssue(path, f"{name} is not a field of Twilio's Create Message", IssueCodes.UNKNOWN_FIELD)
                )
        limit = self.schema.max_text_length
        text = _api.message_body(message)
        if limit is not None and text is not None and _api.utf16_length(text) > limit:
            # The schema checks each text part; Twilio limits the joined body, counted in UTF-16
            # code units (an emoji counts twice): refuse here rather than after a round trip (21617).
            issues.append(
                ValidationIssue(
                    "$.content",
                    f"the message body is longer than {limit} characters (UTF-16 code units, parts joined)",
                    IssueCodes.TOO_LONG,
                )
            )
        return issues

    async def _send_message(self, message: Message) -> ConnectorResult[SendResult]:
        form = _api.build_message_form(message, self.twilio_settings)
        encoded = _api.encode_form(form)
        limit = message.properties.get("AttemptLimits")
        tries = int(limit) if limit is not None else self._max_retries + 1
        if "MaxPrice" in message.properties:
            self._warn_max_price()
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "POST %s to=%s fields=%s",
                _api.messages_path("AC…"),
                self._phone(message.receiver.address if message.receiver else None),
                sorted({k for k, _ in form}),
            )
        attempt = 0
        while True:
            # Twilio's Attempt is "total attempts made, including this request": sent on every
            # request when AttemptLimits is set, and on every retry.
            body = encoded + b"&Attempt=%d" % (attempt + 1) if limit is not None or attempt else encoded
            try:
                answer = await self._request("POST", self._messages_url, body)
            except _DeadlinePassed:
                return not_attempted("the claim's deadline passed before the request was written")
            except aiohttp.ClientConnectorError as err:
                # The connection was never made: nothing reached Twilio, retrying cannot duplicate.
                if attempt + 1 < tries:
                    attempt += 1
                    await self._backoff(attempt, None)
                    continue
                return self._failed(
                    Failure(
                        TwilioErrorCodes.NETWORK_ERROR,
                        f"cannot connect to the Twilio API: {type(err).__name__}",
                        retryable=True,
                        details={"attempts": attempt + 1},
                    )
                )
            except (TimeoutError, aiohttp.ClientError) as err:
                # The request may have been written and processed: never resend blindly.
                return self._failed(
                    Failure(
                        TwilioErrorCodes.NETWORK_ERROR,
                        f"no answer from the Twilio API ({type(err).__name__}); the message may have been sent",
                        details={"attempts": attempt + 1},
                        outcome=FailureOutcome.MAY_HAVE_BEEN_SENT,
                    )
                )
            if 200 <= answer.status < 300:
                # Any 2xx means Twilio (or whatever answered for it) took the request.
                return self._accepted(message, answer)
            error = _api.error_from_response(answer.status, answer.body)
            if error.retryable and attempt + 1 < tries:
                attempt += 1
                await self._backoff(attempt, answer.retry_after)
                continue
            return self._failed(error)

    def _warn_max_price(self) -> None:
        if not self._max_price_warned:
            self._max_price_warned = True
            log.warning(
                "connector %s: MaxPrice is obsolete at Twilio (no effect since 2024-06-03); it is still sent", self.name
            )

    def preview_message(self, message: Message) -> dict[str, Any]:
        """The ``CreateMessage`` request this message becomes, with its encoding and segment count."""
        settings = self.twilio_settings
        form = _api.build_message_form(message, settings)
        preview: dict[str, Any] = {
            "method": "POST",
            "url": api_url(settings) + _api.messages_path(settings.account_sid),
            "form": [[key, value] for key, value in form],
        }
        text = _api.message_body(message)
        if text is not None:
            info = count_segments(text, bool(message.properties.get("SmartEncoded", False)))
            preview.update(encoding=info.encoding, segments=info.segments, characters=info.characters)
        return preview

    def _accepted(self, message: Message, answer: _Answer) -> ConnectorResult[SendResult]:
        data = _api.parse_json_object(answer.body)
        sid = data.get("sid") if data else None
        if not isinstance(sid, str) or not sid:
            # Twilio said yes, but we cannot tell which message it created: report, don't resend.
            return self._failed(
                Failure(
                    TwilioErrorCodes.INVALID_PROVIDER_RESPONSE,
                    f"HTTP {answer.status} without a readable message resource; the message was probably created",
                    details={"http_status": answer.status},
                    outcome=FailureOutcome.MAY_HAVE_BEEN_SENT,
                )
            )
        assert data is not None
        self._remember(message.id, sid)
        self._counters["sent"] += 1
        raw_status = data.get("status")
        extra: dict[str, Any] = {
            "raw_status": raw_status,
            "num_segments": _int_or_none(data.get("num_segments")),
            "num_media": _int_or_none(data.get("num_media")),
            "price": data.get("price"),
            "price_unit": data.get("price_unit"),
            "messaging_service_sid": data.get("messaging_service_sid"),
        }
        text = _api.message_body(message)
        if text is not None:
            segments = count_segments(text, bool(message.properties.get("SmartEncoded", False)))
            extra["encoding"] = segments.encoding
            extra["segments"] = segments.segments
        return ConnectorResult.success(SendResult(message.id, sid, _api.map_status(raw_status), additional_data=extra))

    def _failed(self, error: Failure) -> ConnectorResult[SendResult]:
        self._counters["failed"] += 1
        log.debug("send failed: %s %s", error.code, error.details.get("twilio_code", ""))
        return ConnectorResult.from_error(error)

    def _remember(self, message_id: str, sid: str) -> None:
        self._recent[message_id] = sid
        if len(self._recent) > _RECENT_IDS:
            self._recent.popitem(last=False)

    def _phone(self, number: str | None) -> str:
        return (number or "-") if self._show_numbers else mask_phone(number)

    # -- the send pipeline's seam -------------------------------------------------------------------

    def rate_limit_key(self, message: Message) -> str:
        """Twilio paces per sender: the Messaging Service when one is used, else the From number."""
        service = self.twilio_settings.messaging_service_sid
        if service:
            return service
        return super().rate_limit_key(message)

    def send_cost(self, message: Message) -> int:
        """Segments: Twilio counts throughput (MPS) in message segments."""
        body = _api.message_body(message)
        if body is None:
            return 1
        return max(1, count_segments(body, bool(message.properties.get("SmartEncoded", False))).segments)

    def send_timeout(self) -> float | None:
        return self.twilio_settings.request_timeout

    async def find_sent(self, message: Message, since: datetime) -> list[str] | None:
        """Probe Twilio's message list for messages this one may have become (reconciliation).

        Returns the candidates' SIDs from every page of the list (``PROBE_PAGES`` at most), or
        None when the list cannot tell: it cannot be read, it is longer than that, or the message
        is one Twilio's list cannot tell apart (``_api.probe_can_tell``). The message is then
        held rather than resent.
        """
        if message.receiver is None or not _api.probe_can_tell(message):
            return None
        settings = self.twilio_settings
        url: str | None = f"{self._messages_url}?{urlencode(_api.list_query(message, settings))}"
        found: list[str] = []
        for _ in range(_api.PROBE_PAGES):
            assert url is not None
            try:
                answer = await self._request("GET", url)
            except (TimeoutError, aiohttp.ClientError):
                return None
            listed = _api.parse_json_object(answer.body) if answer.status == 200 else None
            page = None if listed is None else _api.sent_candidates(message, settings, listed, since)
            if page is None or listed is None:
                return None
            found += page
            next_uri = listed.get("next_page_uri")
            if not next_uri:
                return found
            url = self._base_url + str(next_uri)
        return None  # more pages than a probe reads: it cannot tell

    # -- status query ------------------------------------------------------------------------------

    async def _get_message_status(self, message_id: str) -> ConnectorResult[StatusUpdatesResult]:
        sid = await self._sid_of(message_id)
        if sid is None:
            return ConnectorResult.failure(TwilioErrorCodes.STATUS_QUERY_FAILED, self._unknown_id(message_id))
        url = self._base_url + _api.message_path(self.twilio_settings.account_sid, sid)
        try:
            answer = await self._request("GET", url)
        except (TimeoutError, aiohttp.ClientError) as err:
            return ConnectorResult.failure(
                TwilioErrorCodes.STATUS_QUERY_FAILED, f"no answer from the Twilio API ({type(err).__name__})"
            )
        data = _api.parse_json_object(answer.body) if answer.status == 200 else None
        if data is None:
            error = _api.error_from_response(answer.status, answer.body, operation="status")
            return ConnectorResult.from_error(
                Failure(
                    TwilioErrorCodes.STATUS_QUERY_FAILED
                    if error.code not in (TwilioErrorCodes.AUTHENTICATION_FAILED, TwilioErrorCodes.RATE_LIMITED)
                    else error.code,
                    error.message,
                    retryable=error.retryable,
                    details=error.details,
                )
            )
        update = webhooks.status_update_from_resource(message_id, data)
        return ConnectorResult.success(StatusUpdatesResult(message_id, (update,)))

    # -- scheduled messages ------------------------------------------------------------------------

    async def _cancel_scheduled(self, message_id: str) -> ConnectorResult[StatusUpdate]:
        """``Status=canceled`` on the message (by its SID, or our id of a message this connector sent)."""
        sid = await self._sid_of(message_id)
        if sid is None:
            return ConnectorResult.failure(TwilioErrorCodes.NOT_CANCELLABLE, self._unknown_id(message_id))
        url = self._base_url + _api.message_path(self.twilio_settings.account_sid, sid)
        try:
            answer = await self._request("POST", url, b"Status=canceled")
        except (TimeoutError, aiohttp.ClientError) as err:
            return ConnectorResult.failure(
                TwilioErrorCodes.NETWORK_ERROR, f"no answer from the Twilio API ({type(err).__name__})", retryable=True
            )
        data = _api.parse_json_object(answer.body) if answer.status == 200 else None
        if data is None:
            error = _api.error_from_response(answer.status, answer.body, operation="cancel")
            if error.details.get("twilio_code") == 30409 or answer.status == 404:
                error = attrs.evolve(error, code=TwilioErrorCodes.NOT_CANCELLABLE)
            return ConnectorResult.from_error(error)
        return ConnectorResult.success(webhooks.status_update_from_resource(message_id, data))

    async def _sid_of(self, message_id: str) -> str | None:
        """The SID ``message_id`` names: itself, one this process sent, or the attached lookup's (a ledger)."""
        if _api.is_message_sid(message_id):
            return message_id
        sid = self._recent.get(message_id)
        if sid is None and self.provider_ids is not None:
            sid = await self.provider_ids.provider_id(message_id)
        return sid

    def _unknown_id(self, message_id: str) -> str:
        where = (
            "nor in the attached ledger"
            if self.provider_ids is not None
            else "and no ledger is attached (a persistent [dispatcher] ledger keeps our ids across processes and "
            "restarts: see docs/connectors/twilio-sms.md, 'Status query')"
        )
        return f"unknown message id {message_id[:64]!r}: not a Twilio SID, not sent by this process recently, {where}"

    # -- managing messages (Twilio-specific) ------------------------------------------------------

    async def redact_message(self, message_id: str) -> ConnectorResult[bool]:
        """Erase a message's body at Twilio (``Body=""``), by our id or its SID; the record stays."""
        return await self._manage(message_id, "POST", b"Body=")

    async def delete_message(self, message_id: str) -> ConnectorResult[bool]:
        """Delete a message (and its media) at Twilio, by our id or its SID. Twilio refuses it while sending."""
        return await self._manage(message_id, "DELETE", None)

    async def _manage(self, message_id: str, method: str, body: bytes | None) -> ConnectorResult[bool]:
        self.require(Capability.SEND_MESSAGES)
        sid = await self._sid_of(message_id)
        if sid is None:
            return ConnectorResult.failure(TwilioErrorCodes.MESSAGE_NOT_FOUND, self._unknown_id(message_id))
        url = self._base_url + _api.message_path(self.twilio_settings.account_sid, sid)
        try:
            answer = await self._request(method, url, body)
        except (TimeoutError, aiohttp.ClientError) as err:
            return ConnectorResult.failure(
                TwilioErrorCodes.NETWORK_ERROR, f"no answer from the Twilio API ({type(err).__name__})", retryable=True
            )
        if answer.status in (200, 204):
            return ConnectorResult.success(True)
        return ConnectorResult.from_error(_api.error_from_response(answer.status, answer.body, operation="manage"))

    async def list_messages(
        self,
        *,
        to: str | None = None,
        from_: str | None = None,
        sent_after: datetime | None = None,
        sent_before: datetime | None = None,
        page_size: int = 50,
        limit: int | None = None,
    ) -> AsyncIterator[_api.TwilioMessage]:
        """Twilio's messages, newest first, page by page (``next_page_uri``) until ``limit`` or the end.

        ``sent_after``/``sent_before`` filter on the day sent (Twilio's ``DateSent>``/``DateSent<``, in
        UTC). Raises ``ProviderError`` when a page cannot be read (so a partial listing never passes
        for a whole one).
        """
        self.require(Capability.MESSAGE_STATUS_QUERY)
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000")
        query = _api.list_filters(
            to=to, from_=from_, sent_after=sent_after, sent_before=sent_before, page_size=page_size
        )
        url: str | None = f"{self._messages_url}?{urlencode(query)}"
        count = 0
        while url is not None:
            page = await self._page(url, "messages")
            for record in page[0]:
                if limit is not None and count >= limit:
                    return
                count += 1
                yield _api.TwilioMessage.from_resource(record)
            url = page[1]

    async def fetch_media(self, message_id: str) -> ConnectorResult[list[MediaContent]]:
        """The media of a message (by our id or its SID): each one's content URL and type."""
        self.require(Capability.MESSAGE_STATUS_QUERY)
        sid = await self._sid_of(message_id)
        if sid is None:
            return ConnectorResult.failure(TwilioErrorCodes.MESSAGE_NOT_FOUND, self._unknown_id(message_id))
        path = _api.message_path(self.twilio_settings.account_sid, sid).removesuffix(".json") + "/Media.json"
        url: str | None = self._base_url + path
        media: list[MediaContent] = []
        try:
            while url is not None:
                records, url = await self._page(url, "media_list")
                for record in records:
                    uri = record.get("uri")
                    if isinstance(uri, str):
                        kind = record.get("content_type")
                        media.append(
                            MediaContent(
                                self._base_url + uri.removesuffix(".json"), kind if isinstance(kind, str) else None
                            )
                        )
        except ProviderError as err:
            return ConnectorResult.from_error(err.error)
        return ConnectorResult.success(media)

    async def _page(self, url: str, key: str) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a Twilio list: its records and the next page's URL; raises ``ProviderError``."""
        try:
            answer = await self._request("GET", url)
        except (TimeoutError, aiohttp.ClientError) as err:
            failure = Failure(TwilioErrorCodes.NETWORK_ERROR, f"no answer from the Twilio API ({type(err).__name__})")
            raise ProviderError(failure) from None
        data = _api.parse_json_object(answer.body) if answer.status == 200 else None
        records = data.get(key) if data is not None else None
        if data is None or not isinstance(records, list):
            raise ProviderError(_api.error_from_response(answer.status, answer.body, operation="manage"))
        next_uri = data.get("next_page_uri")
        return [r for r in records if isinstance(r, dict)], (
            self._base_url + next_uri if isinstance(next_uri, str) and next_uri else None
        )

    # -- webhooks ----------------------------------------------------------------------------------

    def _verified_fields(self, source: WebhookRequest, configured_url: str | None) -> dict[str, str] | Failure:
        """The webhook's fields, once it is proven to be Twilio's (the account is checked after parsing).

        With ``ValidateSignatures`` on (the default) every path fails closed: no URL, no signature,
        a wrong one, a JSON body without ``bodySHA256`` or with a body that does not match it.
        """
        if self._check_signatures:
            if self._signatures is None:
                return Failure(
                    TwilioErrorCodes.INVALID_SIGNATURE,
                    "webhook refused: this connector has no AuthToken to check Twilio's signature with",
                )
            if source.url is None:
                return Failure(
                    TwilioErrorCodes.INVALID_SIGNATURE,
                    "cannot check the webhook's signature without the URL Twilio requested: pass the public "
                    "URL, query string included, when building the source (e.g. WebhookRequest.from_form_data("
                    "form, url=..., headers=...))",
                )
            url = webhooks.signed_url(source.url, configured_url)
            if source.form is not None:
                refusal = self._signatures.refusal(url, source.form, source.header(webhooks.SIGNATURE_HEADER))
            else:
                refusal = self._signatures.refusal(
                    url, None, source.header(webhooks.SIGNATURE_HEADER), body=source.body
                )
            if refusal is not None:
                return Failure(TwilioErrorCodes.INVALID_SIGNATURE, f"webhook refused: {refusal}")
        return webhooks.fields_of(source)

    def _foreign(self, fields: Mapping[str, str]) -> Failure | None:
        """A refusal when the webhook names an account other than this connector's, else None."""
        account = fields.get("AccountSid")
        if account in self._accounts:
            return None
        # Signed or not, a webhook for another account is not ours to act on (a shared URL, a
        # copied configuration, a replay from another tenant); one without an account is not Twilio's.
        shown = repr(account[:40]) if account else "none"
        return Failure(
            TwilioErrorCodes.UNEXPECTED_ACCOUNT,
            f"webhook refused: its AccountSid ({shown}) is neither AccountSid nor one of SubaccountSids",
        )

    async def _receive_messages(self, source: WebhookRequest) -> ConnectorResult[ReceiveResult]:
        fields = self._verified_fields(source, self.twilio_settings.webhook_url)
        if isinstance(fields, Failure):
            return ConnectorResult.from_error(fields)
        parsed = webhooks.parse_inbound(fields)
        if isinstance(parsed, Failure):
            return ConnectorResult.from_error(parsed)
        foreign = self._foreign(fields)
        if foreign is not None:
            return ConnectorResult.from_error(foreign)
        return ConnectorResult.success(ReceiveResult(parsed.id, (parsed,)))

    async def _receive_message_status(self, source: WebhookRequest) -> ConnectorResult[StatusUpdate]:
        fields = self._verified_fields(source, self.twilio_settings.status_callback)
        if isinstance(fields, Failure):
            return ConnectorResult.from_error(fields)
        update = webhooks.parse_status_callback(fields, source.url)
        if isinstance(update, Failure):
            return ConnectorResult.from_error(update)
        foreign = self._foreign(fields)
        if foreign is not None:
            return ConnectorResult.from_error(foreign)
        return ConnectorResult.success(update)

    def opt_out_change(self, message: Message) -> bool | None:
        """STOP → True, START → False: from ``OptOutType`` (Advanced Opt-Out), else from the body
        when it is one of Twilio's default keywords, which Twilio acts on for long codes anyway."""
        kind = message.properties.get("OptOutType")
        if kind is None:
            texts = message.texts()
            kind = _api.opt_out_keyword(texts[0]) if len(texts) == 1 else None
        return {"STOP": True, "START": False}.get(str(kind)) if kind is not None else None

    def webhook_reply(self, reply: Content) -> tuple[int, str | None, bytes]:
        """TwiML ``<Response><Message>`` with the reply's text (``<Body>``) and media (``<Media>``)."""
        return 200, "text/xml", webhooks.twiml_reply(reply)

    def webhook_idempotency_key(self, source: WebhookRequest) -> str | None:
        # Twilio sends the same token again when it retries a webhook delivery.
        return source.header("I-Twilio-Idempotency-Token")

    def webhook_response(self, kind: str) -> tuple[int, str | None, bytes]:
        if kind == "messages":
            # Twilio expects TwiML; an empty <Response/> means "no automatic reply".
            return 200, "text/xml", _EMPTY_TWIML
        return 204, None, b""

    # -- health ------------------------------------------------------------------------------------

    async def _fetch_account(self) -> tuple[_Answer, float]:
        url = self._base_url + _api.account_path(self.twilio_settings.account_sid)
        started = time.perf_counter()
        answer = await self._request("GET", url)
        return answer, time.perf_counter() - started

    async def _test_connection(self) -> ConnectorResult[bool]:
        try:
            answer, _ = await self._fetch_account()
        except (TimeoutError, aiohttp.ClientError) as err:
            return ConnectorResult.failure(
                TwilioErrorCodes.NETWORK_ERROR, f"cannot reach the Twilio API ({type(err).__name__})"
            )
        if answer.status != 200:
            error = _api.error_from_response(answer.status, answer.body, operation="test")
            code = (
                error.code
                if error.code in (TwilioErrorCodes.AUTHENTICATION_FAILED, TwilioErrorCodes.RATE_LIMITED)
                else TwilioErrorCodes.CONNECTION_TEST_FAILED
            )
            return ConnectorResult.failure(code, error.message, details=error.details)
        return ConnectorResult.success(True)

    async def _check_health(self) -> tuple[list[str], dict[str, Any]]:
        issues: list[str] = []
        metrics: dict[str, Any] = dict(self._counters)
        try:
            answer, latency = await self._fetch_account()
        except (TimeoutError, aiohttp.ClientError) as err:
            return [f"Twilio API unreachable ({type(err).__name__})"], metrics
        metrics["latency_ms"] = round(latency * 1000, 1)
        data = _api.parse_json_object(answer.body)
        if answer.status != 200 or data is None:
            issues.append(f"account fetch answered HTTP {answer.status}")
        else:
            metrics["account_status"] = data.get("status")
            if data.get("status") not in (None, "active"):
                issues.append(f"account is {data.get('status')}")
        return issues, metrics


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
