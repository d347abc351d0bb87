"""``WebhookRequest``: a provider's webhook request as it arrived, for a connector to verify and parse.

It is the input of the connector's receive methods, as ``Message`` is of its send methods, so it
lives in the model layer; ``messaging_core.webhooks`` builds on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus, urlencode

from attrs import field, frozen
from multidict import CIMultiDict, CIMultiDictProxy

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["FORM_CONTENT_TYPE", "JSON_CONTENT_TYPE", "WebhookRequest"]


def _headers(value: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> CIMultiDictProxy[str]:
    if isinstance(value, CIMultiDictProxy):
        return value
    items = value.items() if isinstance(value, Mapping) else (value or ())
    return CIMultiDictProxy(CIMultiDict(items))


def _parse_form(text: str) -> tuple[tuple[str, str], ...]:
    """Decode a form body like ``parse_qsl(keep_blank_values=True)``, faster on plain fields.

    Webhooks arrive by the thousand: most fields need no unquoting, so only those with ``%`` or
    ``+`` go through ``unquote_plus``.
    """
    pairs = []
    for item in text.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        if "%" in value or "+" in value:
            value = unquote_plus(value)
        pairs.append((name, value))
    return tuple(pairs)


FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
JSON_CONTENT_TYPE = "application/json"


@frozen
class WebhookRequest:
    """A webhook request as it arrived: raw body, content type, the public URL and headers.

    Connectors verify signatures over exactly these bytes and that URL, then parse ``form`` or
    ``json``. Build one with ``from_form``, ``from_form_data``, ``from_json`` or, in an aiohttp
    handler, ``await WebhookRequest.from_aiohttp_request(request)``. Pass ``url`` (the URL the
    provider called, query included): a connector that checks signatures refuses a request without it.
    """

    content_type: str
    body: bytes = field(repr=False)
    url: str | None = None
    headers: CIMultiDictProxy[str] = field(factory=lambda: _headers(None), converter=_headers, repr=False)
    form: tuple[tuple[str, str], ...] | None = field(default=None, repr=False)
    """Decoded form fields in arrival order (repeated keys kept), for form bodies."""

    @classmethod
    def from_form(
        cls,
        body: bytes | str,
        *,
        url: str | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> WebhookRequest:
        """An ``application/x-www-form-urlencoded`` body (``+`` decodes to a space)."""
        raw = body.encode() if isinstance(body, str) else bytes(body)
        pairs = _parse_form(raw.decode("utf-8", errors="replace"))
        return cls(FORM_CONTENT_TYPE, raw, url, _headers(headers), pairs)

    @classmethod
    def from_form_data(
        cls,
        data: Mapping[str, str] | Iterable[tuple[str, str]],
        *,
        url: str | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> WebhookRequest:
        """Already-decoded form fields (a dict, a MultiDict or pairs); the body is re-encoded."""
        if isinstance(data, Mapping):
            getall = getattr(data, "getall", None)
            if getall is not None:  # a MultiDict: keep repeated keys
                pairs = tuple((str(k), str(v)) for k, v in data.items())
            else:
                pairs = tuple(
                    (str(k), str(item)) for k, v in data.items() for item in (v if isinstance(v, list | tuple) else [v])
                )
        else:
            pairs = tuple((str(k), str(v)) for k, v in data)
        return cls(FORM_CONTENT_TYPE, urlencode(pairs).encode(), url, _headers(headers), pairs)

    @classmethod
    def from_json(
        cls,
        body: bytes | str | Mapping[str, Any] | list[Any],
        *,
        url: str | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> WebhookRequest:
        """A JSON body (raw bytes are kept as given, for ``bodySHA256`` checks)."""
        if isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = json.dumps(body).encode()
        return cls(JSON_CONTENT_TYPE, raw, url, _headers(headers), None)

    @classmethod
    def from_http(
        cls,
        content_type: str,
        body: bytes,
        *,
        url: str | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> WebhookRequest:
        """A request as any web framework reads it: the ``Content-Type`` header value and the raw body.

        A form body is decoded into ``form``; any other body is kept as it is, under its media type
        (parameters such as ``charset`` dropped).
        """
        mime = content_type.partition(";")[0].strip().lower()
        if mime == FORM_CONTENT_TYPE:
            return cls.from_form(body, url=url, headers=headers)
        return cls(mime, bytes(body), url, _headers(headers), None)

    @classmethod
    async def from_aiohttp_request(cls, request: web.Request, *, url: str | None = None) -> WebhookRequest:
        """Read an aiohttp request; ``url`` overrides the request URL (the public URL behind a proxy)."""
        raw = await request.read()
        return cls.from_http(request.content_type, raw, url=url or str(request.url), headers=request.headers)

    @property
    def is_form(self) -> bool:
        return self.form is not None

    def header(self, name: str) -> str | None:
        """A header value (case-insensitive), or None."""
        return self.headers.get(name)

    def form_dict(self) -> dict[str, str]:
        """Form fields as a dict; for repeated keys the first value wins."""
        pairs = self.form or ()
        result = dict(pairs)  # the usual case: every key once (built in C)
        if len(result) != len(pairs):
            result = {}
            for key, value in pairs:
                result.setdefault(key, value)
        return result

    def json(self) -> Any:
        """The decoded JSON body; raises ``ValueError`` when it is not JSON."""
        return json.loads(self.body)
