"""Twilio webhooks: request signature validation and webhook parsing, as pure functions.

No I/O: the connector and the webhook host pass in what they received (the public URL Twilio
called, the form fields or raw body, the ``X-Twilio-Signature`` header). The signature part does
not depend on the core; the parsing part turns webhooks into core models.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import re
from binascii import b2a_base64
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, TypeAlias, cast
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit
from xml.sax.saxutils import escape as xml_escape

from messaging_core import (
    Content,
    Endpoint,
    EndpointType,
    Failure,
    MediaContent,
    Message,
    MultipartContent,
    StatusUpdate,
    TextContent,
    WebhookRequest,
)
from messaging_core.results import utc_now
from messaging_twilio_sms._api import MESSAGE_ID_PARAM, delivery_error, map_status, parse_twilio_date


class OptOutType(enum.StrEnum):
    """What an inbound keyword did under Twilio's Advanced Opt-Out (the webhook's ``OptOutType``)."""

    STOP = "STOP"
    """The sender opted out: sends to them fail with 21610 until they opt in again."""
    START = "START"
    """The sender opted in again."""
    HELP = "HELP"
    """The sender asked for help (Twilio answered with the service's help text)."""


# =====================================================================================================
# Request signature (X-Twilio-Signature)
#
# Twilio signs every webhook request with HMAC-SHA1 keyed by the account's auth token, over
#
#     the full URL Twilio requested (query string included)
#     + for each distinct form key in sorted order, for each distinct value in sorted order: key + value
#
# base64-encoded in the X-Twilio-Signature header. JSON requests add ``bodySHA256=<hex sha256 of the
# body>`` to the URL query and sign the URL alone; a JSON request without it is refused (that
# signature would cover any body). Twilio is not consistent about explicit ports, so, like Twilio's
# SDKs, a signature is accepted for the URL as given, the URL without its explicit port, or the URL
# with the scheme's default port added, and (like twilio-node) each of these with its query escaped
# as a WHATWG URL parser writes it. No other form is accepted.
# =====================================================================================================

SIGNATURE_HEADER: Final = "X-Twilio-Signature"

Params: TypeAlias = Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]]
"""Form fields: a dict, a dict of lists, a multidict (``.items()`` repeats keys) or (key, value) pairs."""

_BODY_SHA256_PARAM: Final = "bodySHA256"
_DEFAULT_PORTS: Final = {"https": ":443", "http": ":80"}


class SignatureValidator:
    """Compute and check ``X-Twilio-Signature`` values for one auth token.

    The HMAC key is prepared once; each signature then copies it. Build one validator per auth token
    and reuse it on hot paths; :func:`validate_signature` and :func:`compute_signature` build a
    throwaway one per call. The token is never exposed (no attribute, nothing in ``repr``).
    """

    __slots__ = ("_hmac",)

    def __init__(self, auth_token: str) -> None:
        """Prepare the HMAC-SHA1 key for ``auth_token``.

        :raises TypeError: if ``auth_token`` is not a ``str``.
        """
        if not isinstance(auth_token, str):
            raise TypeError("auth_token must be a str")
        self._hmac = hmac.new(auth_token.encode(), digestmod=hashlib.sha1)

    def compute(self, url: str, params: Params | None = None) -> str:
        """Return the signature Twilio sends for a request to ``url`` with form ``params``.

        ``url`` is used exactly as given (no port handling). Pass ``None`` for GET and JSON requests.

        :raises TypeError: if a parameter name or value is not a ``str``.
        """
        return self._sign(url + _signed_params(params)).decode("ascii")

    def validate(self, url: str, params: Params | None, signature: str | None, *, body: bytes | None = None) -> bool:
        """Tell whether ``signature`` is Twilio's for this request; see :meth:`refusal`. Never raises."""
        return self.refusal(url, params, signature, body=body) is None

    def refusal(
        self, url: str, params: Params | None, signature: str | None, *, body: bytes | None = None
    ) -> str | None:
        """Why this request is not proven to be Twilio's, or None when ``signature`` is Twilio's for it.

        ``url`` is the public URL Twilio requested, query string included. Form requests pass their
        fields as ``params`` (the signature covers the URL and the fields). Requests with any other
        body (JSON) pass ``params=None`` and the raw ``body``: Twilio then adds ``bodySHA256`` to the
        URL query and signs the URL alone, so the query must carry ``bodySHA256`` and the body must
        hash to it; such a body without one is refused, since that signature would cover any body.
        Whenever the query carries ``bodySHA256``, ``params`` are ignored and ``body`` is required.
        ``params=None`` and ``body=None`` is a request without a body (GET): the URL alone.

        Accepted URL forms are those Twilio's own validators accept: the URL as given, without its
        explicit port or with the scheme's default port added, and each with its query escaped the
        way a WHATWG URL parser writes it (``'`` as ``%27``), as twilio-node also tries. Never
        raises: malformed input is a refusal.
        """
        try:
            return self._refusal(url, params, signature, body)
        except (AttributeError, TypeError, ValueError):
            # Request data is attacker-controlled: a malformed URL, port or parameter, a non-str value
            # or a non-ASCII signature only means "not signed by Twilio".
            return "the request's URL or fields are malformed; its signature cannot be checked"

    def _refusal(self, url: str, params: Params | None, signature: str | None, body: bytes | None) -> str | None:
        """:meth:`refusal` without catching errors from malformed input."""
        if not signature:
            return f"the {SIGNATURE_HEADER} header is missing"
        expected = signature.encode()
        body_hash = _query_body_sha256(url) if _BODY_SHA256_PARAM in url else None
        if body_hash is not None:
            if body is None:
                return f"the URL carries {_BODY_SHA256_PARAM} but no body was given to check it against"
            if not hmac.compare_digest(body_sha256(body).encode(), body_hash.encode()):
                return f"the body does not match the {_BODY_SHA256_PARAM} it was signed with"
            signed_params = ""
        elif params is None and body is not None:
            return (
                f"a webhook with a {_content_kind(body)} body must be signed with {_BODY_SHA256_PARAM} "
                "in its URL query (Twilio adds it); this URL has none"
            )
        else:
            signed_params = _signed_params(params)
        # The URL as given is what Twilio signs in practice: try it before building variants.
        if hmac.compare_digest(self._sign(url + signed_params), expected):
            return None
        for candidate in _url_variants(url):
            if hmac.compare_digest(self._sign(candidate + signed_params), expected):
                return None
        return (
            f"the {SIGNATURE_HEADER} does not match this request "
            "(is AuthToken right, and is the URL exactly the public URL Twilio called?)"
        )

    def _sign(self, message: str) -> bytes:
        """Return base64(HMAC-SHA1(token, message)) as ASCII bytes."""
        mac = self._hmac.copy()
        mac.update(message.encode())
        return b2a_base64(mac.digest(), newline=False)


def compute_signature(auth_token: str, url: str, params: Params | None = None) -> str:
    """Return the ``X-Twilio-Signature`` value for a request to ``url`` with form ``params``.

    See :meth:`SignatureValidator.compute`.

    :raises TypeError: if ``auth_token``, a parameter name or a value is not a ``str``.
    """
    return SignatureValidator(auth_token).compute(url, params)


def body_sha256(body: bytes) -> str:
    """Return the hex SHA-256 of a raw request body, as Twilio puts it in the ``bodySHA256`` param."""
    return hashlib.sha256(body).hexdigest()


def validate_signature(
    auth_token: str,
    url: str,
    params: Params | None,
    signature: str | None,
    *,
    body: bytes | None = None,
) -> bool:
    """Tell whether ``signature`` is Twilio's ``X-Twilio-Signature`` for this request.

    See :meth:`SignatureValidator.validate`, and prefer a long-lived validator on hot paths. Never
    raises: garbage input, including a non-str ``auth_token``, returns False.
    """
    try:
        validator = SignatureValidator(auth_token)
    except (TypeError, ValueError):
        return False
    return validator.validate(url, params, signature, body=body)


def _signed_params(params: Params | None) -> str:
    """Concatenate key + value for each distinct key, then each of its distinct values, all sorted.

    :raises TypeError: if ``params`` is not a mapping or pairs of ``str``.
    """
    if params is None:
        return ""
    try:
        pairs: Iterable[tuple[str, str | Sequence[str]]]
        if isinstance(params, tuple | list):  # checked first: the webhook path passes pairs
            # Pairs (WebhookRequest.form): sorting the distinct (key, value) pairs is exactly
            # "distinct keys sorted, then each key's distinct values sorted".
            return "".join([key + value for key, value in sorted(set(params))])
        if isinstance(params, Mapping):
            fields = dict(params.items())  # a repeated key (multidict) keeps one value: checked next
            if len(fields) == len(params) and all(isinstance(value, str) for value in fields.values()):
                # The usual form, each key once with one value: only the keys need sorting.
                texts = cast("dict[str, str]", fields)
                return "".join([key + texts[key] for key in sorted(texts)])
            pairs = params.items()
        else:
            pairs = params
        grouped: dict[str, set[str]] = {}
        for key, value in pairs:
            grouped.setdefault(key, set()).update([value] if isinstance(value, str) else value)
        return "".join([key + value for key in sorted(grouped) for value in sorted(grouped[key])])
    except (TypeError, ValueError) as err:
        raise TypeError("webhook parameters must map str names to str values") from err


def _query_body_sha256(url: str) -> str | None:
    """Return the first ``bodySHA256`` query parameter of ``url``, or None."""
    for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if key == _BODY_SHA256_PARAM:
            return value
    return None


def _content_kind(body: bytes) -> str:
    return "JSON" if body[:1] in (b"{", b"[") else "non-form"


def _url_variants(url: str) -> list[str]:
    """The other forms of ``url`` that Twilio's validators accept (the URL as given excluded).

    :raises ValueError: if the URL or its port is malformed.
    """
    port_variant = _port_variant(url)
    variants = [] if port_variant is None else [port_variant]
    for form in [url, *variants]:
        escaped = _whatwg_query(form)
        if escaped is not None:
            variants.append(escaped)
    return variants


# What a WHATWG URL parser percent-encodes in the query of an http(s) URL (the "special-query
# percent-encode set"): C0 controls, space, ", #, <, >, ' and everything above ~. Node's URL
# class does this, so twilio-node signs, and validates, ``It's`` as ``It%27s``.
_WHATWG_QUERY_UNSAFE: Final = re.compile(r"""[\x00-\x20"<>'\x7f-\U0010ffff]""")


def _whatwg_query(url: str) -> str | None:
    """``url`` with its query escaped as a WHATWG URL parser writes it, or None when that changes nothing."""
    head, question, rest = url.partition("?")
    if not question:
        return None
    query, hash_sign, fragment = rest.partition("#")
    if _WHATWG_QUERY_UNSAFE.search(query) is None:
        return None
    escaped = _WHATWG_QUERY_UNSAFE.sub(lambda match: quote(match.group(), safe=""), query)
    return head + question + escaped + hash_sign + fragment


def _port_variant(url: str) -> str | None:
    """Return ``url`` without its explicit port, or with the scheme's default port added.

    Userinfo, path and query are kept exactly as given. Returns None when there is no variant (no
    netloc, a scheme other than http/https, or a URL that ``urlsplit`` had to clean up).

    :raises ValueError: if the URL or its port is malformed.
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    start = url.find("//") + 2  # the first "//" starts the netloc; the path or query may hold others
    if not netloc or url[start : start + len(netloc)] != netloc:
        return None
    # The port ends the netloc (after userinfo, and after an IPv6 literal's closing bracket).
    if parts.port is not None:  # raises ValueError for a non-numeric or out-of-range port
        netloc = netloc.rpartition(":")[0]
    elif parts.scheme in _DEFAULT_PORTS:
        netloc += _DEFAULT_PORTS[parts.scheme]
    else:
        return None
    return url[:start] + netloc + url[start + len(parts.netloc) :]


# =====================================================================================================
# Webhook parsing: inbound messages and status callbacks → core models
# =====================================================================================================

_REQUIRED_INBOUND: Final = ("MessageSid", "From", "To")
_INBOUND_CORE_FIELDS: Final = frozenset({"MessageSid", "From", "To", "Body"})
# MediaUrl{N} and MediaContentType{N} are zero-based; Twilio carries at most ten.
_MEDIA_FIELDS: Final = tuple((f"MediaUrl{index}", f"MediaContentType{index}") for index in range(10))


@functools.lru_cache(maxsize=1024)
def signed_url(request_url: str, configured_url: str | None) -> str:
    """The URL Twilio signed.

    Behind a proxy the request URL differs from the one configured in Twilio; when the connector
    knows the configured URL (``WebhookUrl`` / ``StatusCallback``) its scheme, host and path are
    used, with the query of the request (which carries e.g. our ``MessageId``).
    """
    if not configured_url:
        return request_url
    configured = urlsplit(configured_url)
    requested = urlsplit(request_url)
    query = requested.query or configured.query
    return urlunsplit((configured.scheme, configured.netloc, configured.path, query, ""))


def fields_of(source: WebhookRequest) -> dict[str, str] | Failure:
    """The webhook's fields (form or JSON object; first value of repeated keys)."""
    if source.form is not None:
        return source.form_dict()
    if source.content_type == "application/json":
        try:
            data = source.json()
        except ValueError:
            return Failure("INVALID_WEBHOOK_DATA", "body is not valid JSON")
        if not isinstance(data, dict):
            return Failure("INVALID_WEBHOOK_DATA", "JSON body is not an object")
        return {str(k): "" if v is None else str(v) for k, v in data.items() if not isinstance(v, dict | list)}
    return Failure(
        "UNSUPPORTED_CONTENT_TYPE",
        f"unsupported content type {source.content_type!r}; Twilio sends application/x-www-form-urlencoded",
    )


def _missing(fields: Mapping[str, str], names: Iterable[str]) -> Failure | None:
    absent = [n for n in names if not fields.get(n)]
    if absent:
        return Failure("INVALID_WEBHOOK_DATA", f"missing field(s) {', '.join(absent)}")
    return None


def parse_inbound(fields: Mapping[str, str]) -> Message | Failure:
    """An inbound SMS/MMS webhook → a ``Message`` (text plus ``MediaUrl{N}`` parts; every field kept)."""
    problem = _missing(fields, _REQUIRED_INBOUND)
    if problem is not None:
        return problem
    parts: list[Content] = []
    body = fields.get("Body")
    if body:
        parts.append(TextContent(body))
    try:
        int(fields.get("NumMedia") or 0)
    except ValueError:
        return Failure("INVALID_WEBHOOK_DATA", "NumMedia is not a number")
    # Trust the MediaUrl{N} keys present rather than NumMedia (a JSON webhook or a relay may
    # leave NumMedia out).
    for url_field, type_field in _MEDIA_FIELDS:
        url = fields.get(url_field)
        if url:
            parts.append(MediaContent(url, fields.get(type_field) or None))
    if not parts:
        parts.append(TextContent(""))
    content: Content = parts[0] if len(parts) == 1 else MultipartContent(tuple(parts))
    properties: dict[str, object] = {k: v for k, v in fields.items() if k not in _INBOUND_CORE_FIELDS}
    opt_out = fields.get("OptOutType", "").upper()
    if opt_out in OptOutType.__members__:
        properties["OptOutType"] = OptOutType(opt_out)
    return Message(
        id=fields["MessageSid"],
        sender=Endpoint(EndpointType.PHONE, fields["From"]),
        receiver=Endpoint(EndpointType.PHONE, fields["To"]),
        content=content,
        properties=properties,
    )


def parse_status_callback(fields: Mapping[str, str], url: str | None) -> StatusUpdate | Failure:
    """A status callback → a ``StatusUpdate``; our message id comes from the callback URL when present."""
    problem = _missing(fields, ("MessageSid",))
    if problem is not None:
        return problem
    raw = fields.get("MessageStatus") or fields.get("SmsStatus")
    if not raw:
        return Failure("INVALID_WEBHOOK_DATA", "missing field(s) MessageStatus")
    sid = fields["MessageSid"]
    our_id = None
    if url:
        our_id = next((v for k, v in parse_qsl(urlsplit(url).query) if k == MESSAGE_ID_PARAM), None)
    extra: dict[str, object] = {k: v for k, v in fields.items() if k not in ("MessageSid", "MessageStatus")}
    if fields.get("ErrorCode"):
        extra["error_code"] = _int_or_text(fields["ErrorCode"])
        extra.update(delivery_error(extra["error_code"]))
    if fields.get("RawDlrDoneDate"):
        extra["raw_dlr_done_date"] = fields["RawDlrDoneDate"]  # YYMMDDhhmm, no time zone (carrier's)
    return StatusUpdate(
        message_id=our_id or sid,
        status=map_status(raw),
        raw_status=raw,
        additional_data=extra,
        remote_message_id=sid,
    )


def status_update_from_resource(message_id: str, data: Mapping[str, object]) -> StatusUpdate:
    """A fetched Message resource → a ``StatusUpdate`` (error code, price and dates kept)."""
    raw = data.get("status")
    raw_status = raw if isinstance(raw, str) else None
    updated = parse_twilio_date(data.get("date_updated"))
    extra = {
        k: data.get(k)
        for k in ("error_code", "error_message", "num_segments", "price", "price_unit", "date_sent", "direction")
        if data.get(k) is not None
    }
    extra.update(delivery_error(extra.get("error_code")))
    sid = data.get("sid")
    return StatusUpdate(
        message_id=message_id,
        status=map_status(raw_status),
        timestamp=updated or utc_now(),
        raw_status=raw_status,
        additional_data=extra,
        remote_message_id=sid if isinstance(sid, str) else None,
    )


def _int_or_text(value: str) -> int | str:
    """A Twilio error code as the number it is, or the text as sent when it is not one.

    ASCII digits only: ``str.isdigit`` also says yes to ``"²"`` (which ``int`` refuses) and to other
    scripts' digits (which ``int`` reads), and neither is a Twilio code.
    """
    return int(value) if value.isascii() and value.isdigit() else value


# =====================================================================================================
# TwiML replies
# =====================================================================================================


def twiml_reply(reply: Content) -> bytes:
    """A TwiML document answering an inbound message with ``reply`` (Twilio's "TwiML for Programmable
    Messaging": ``<Message>`` with ``<Body>`` and up to ten ``<Media>``), text XML-escaped."""
    parts = list(reply.parts) if isinstance(reply, MultipartContent) else [reply]
    texts = [p.text for p in parts if isinstance(p, TextContent)]
    media = [p.url for p in parts if isinstance(p, MediaContent)]
    inner = ""
    if texts:
        inner += f"<Body>{xml_escape(chr(10).join(texts))}</Body>"
    inner += "".join(f"<Media>{xml_escape(url)}</Media>" for url in media)
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{inner}</Message></Response>'.encode()
