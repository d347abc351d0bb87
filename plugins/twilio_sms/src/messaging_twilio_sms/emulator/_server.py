"""The emulator itself: an aiohttp application answering Twilio's 2010-04-01 Messages API on loopback."""

from __future__ import annotations

import asyncio
import base64
import functools
import hmac
import json
import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Container, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import attrs
from aiohttp import hdrs, web
from multidict import MultiDictProxy
from yarl import URL

from .._api import MESSAGE_ID_PARAM, opt_out_keyword
from ..segments import count_segments
from ..webhooks import SIGNATURE_HEADER, compute_signature
from ._faults import FAULT_ERRORS, FAULT_PAYLOADS, HTML_ERROR_PAGE, PRE_CREATE_FAULTS, FaultQueue
from ._resources import (
    ACCOUNTS_ROOT,
    PRICE_PER_SEGMENT,
    CallbackRecord,
    EmulatedMedia,
    EmulatedMessage,
    Params,
    account_resource,
    error_payload,
    guess_content_type,
    media_resource,
    message_resource,
    new_sid,
    page_payload,
    paginate,
)
from ._rules import (
    DEFAULT_FAILED_NUMBERS,
    DEFAULT_UNDELIVERED_NUMBERS,
    INVALID_PARAMETER,
    STATUSES,
    ApiError,
    CreateRequest,
    apply_status,
    date_range,
    first,
    inbound_params,
    next_transition,
    parse_create,
    parse_page,
    parse_page_size,
    status_callback_params,
    url_problem,
)

__all__ = ["TwilioEmulator"]

logger = logging.getLogger("messaging_twilio_sms.emulator")

_ACCOUNT_SID_PATTERN = re.compile(r"^AC[0-9a-fA-F]{32}$")
_API_KEY_SID_PATTERN = re.compile(r"^SK[0-9a-fA-F]{32}$")
_JSON = "application/json"
_FORM = "application/x-www-form-urlencoded"
_SHUTDOWN_TIMEOUT = 2.0
"""Seconds `stop()` waits for in-flight requests; requests held by a fault are let go well before that."""

_MESSAGE_FILTERS = ("To", "From", "DateSent", "DateSent<", "DateSent>")
"""List filters in the order Twilio writes them into page URIs (OAI ListMessage examples)."""
_MEDIA_FILTERS = ("DateCreated", "DateCreated<", "DateCreated>")
"""The Media list's filters (OAI ListMedia)."""

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_Record = TypeVar("_Record")


def _basic_auth(username: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{username}:{password}".encode())


def _json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(payload).encode(), status=status, content_type=_JSON)


def _error_response(error: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=error_payload(error.status, error.code, error.message),
        status=error.status,
        content_type=_JSON,
        headers=headers,
    )


def _not_found(path: str) -> web.Response:
    # Observed text for 20404 (Twilio's error docs code table).
    return _error_response(ApiError(404, 20404, f"The requested resource {path} was not found"))


def _abort(request: web.Request) -> web.StreamResponse:
    """Drop the connection without an answer (a TCP reset as the client sees it)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    request.protocol.force_close()
    # aiohttp still wants a response object; writing it fails quietly on the dead transport.
    return web.Response(status=204)


def _list_response(
    request: web.Request,
    key: str,
    selected: Sequence[tuple[int, _Record]],
    render: Callable[[_Record], dict[str, Any]],
    filter_keys: Sequence[str],
    *,
    newest_first: bool,
) -> web.Response:
    """Answer a list request with one page of `selected` (`(position, record)` pairs, in listed order)."""
    query = request.query
    page_size = parse_page_size(query.get("PageSize"))
    page = parse_page(query.get("Page"))
    if page_size is None or page is None:
        return _error_response(
            ApiError(400, INVALID_PARAMETER, "PageSize must be 1-1000 and Page a non-negative integer.")
        )
    page_token = query.get("PageToken")
    window = paginate(
        [position for position, _ in selected],
        page=page,
        page_size=page_size,
        page_token=page_token,
        newest_first=newest_first,
    )
    if window is None:
        return _error_response(ApiError(400, INVALID_PARAMETER, f"Invalid PageToken {page_token}"))
    payload = page_payload(
        key=key,
        records=[render(record) for _, record in selected[window.begin : window.end]],
        path=request.path,
        filters=[(name, query[name]) for name in filter_keys if name in query],
        page=page,
        page_size=page_size,
        next_token=window.next_token,
        previous_token=window.previous_token,
    )
    return _json_response(payload)


def _form_params(form: MultiDictProxy[Any]) -> Params:
    """Collect form fields keeping repeated keys (`MediaUrl`, `PersistentAction`) as lists."""
    params: Params = {}
    for key, value in form.items():
        if not isinstance(value, str):
            continue  # file parts are not part of this API
        previous = params.get(key)
        if previous is None:
            params[key] = [value] if key in ("MediaUrl", "PersistentAction") else value
        elif isinstance(previous, list):
            previous.append(value)
        else:
            params[key] = [previous, value]
    return params


class TwilioEmulator:
    """A local stand-in for Twilio's Programmable Messaging REST API (2010-04-01 Messages).

    It authenticates like Twilio (HTTP Basic with the account SID and auth token, or an API key pair),
    validates creates with Twilio's error codes and test-credential magic numbers, advances each message
    through its status lifecycle while posting signed status callbacks, simulates inbound messages, and
    can inject faults (see :data:`FAULTS`) and let its Messages list lag behind its writes (`list_lag`),
    as Twilio's does. Everything it created is kept in :attr:`messages` (counted per our message id by
    :meth:`creates_by_message_id`), every webhook it sent in :attr:`callback_log`.

    It serves from the event loop that starts it, so the client talking to it must not block that loop:
    use an async client, as here with the official ``twilio`` package's, or run synchronous code
    against a :class:`ThreadedTwilioEmulator`::

        import asyncio

        from twilio.http.async_http_client import AsyncTwilioHttpClient
        from twilio.rest import Client

        from messaging_twilio_sms.emulator import TwilioEmulator


        async def main() -> None:
            async with TwilioEmulator(status_interval=0.01) as emu:
                http = AsyncTwilioHttpClient(timeout=10)
                client = Client(emu.account_sid, emu.auth_token, http_client=http)
                client.api.base_url = emu.base_url  # instead of https://api.twilio.com
                try:
                    message = await client.messages.create_async(
                        to="+15551230001", from_="+15005550006", body="Hello"
                    )
                    delivered = await emu.wait_for_status(message.sid, "delivered")
                    print(message.sid, delivered.history)  # ['queued', 'sending', 'sent', 'delivered']
                finally:
                    await http.close()


        asyncio.run(main())
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        account_sid: str | None = None,
        auth_token: str | None = None,
        api_key_sid: str | None = None,
        api_key_secret: str | None = None,
        status_interval: float = 0.05,
        auto_advance: bool = True,
        sms_url: str | None = None,
        messaging_service_sid: str | None = None,
        service_sender: str = "+15005550006",
        undelivered_numbers: Iterable[str] = DEFAULT_UNDELIVERED_NUMBERS,
        failed_numbers: Iterable[str] = DEFAULT_FAILED_NUMBERS,
        latency: float = 0.0,
        rate_limit_every: int | None = None,
        fault_delay: float = 30.0,
        list_lag: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        callback_timeout: float = 5.0,
        fast: bool = False,
    ) -> None:
        """Configure the emulator; nothing listens until :meth:`start` (or ``async with``).

        :param host: interface to listen on (loopback by default).
        :param port: TCP port; 0 picks a free one, see :attr:`port` / :attr:`base_url` once started.
        :param account_sid: `AC` + 32 hex; random when None.
        :param auth_token: 32 hex; random when None. Also the key of every webhook signature.
        :param api_key_sid: optionally accept HTTP Basic `api_key_sid:api_key_secret` too (`SK` + 32 hex).
        :param api_key_secret: the API key's secret.
        :param status_interval: seconds between two lifecycle steps (0: as fast as the loop runs).
        :param auto_advance: False freezes messages in their initial status; move them with
            :meth:`advance` or :meth:`set_status`.
        :param sms_url: where :meth:`simulate_inbound` posts by default (the number's SMS webhook).
        :param messaging_service_sid: Messaging Service SID reported on inbound messages.
        :param service_sender: the number a Messaging Service "picks" for sends without `From`.
        :param undelivered_numbers: recipients whose messages end `undelivered` (30003).
        :param failed_numbers: recipients whose messages end `failed` (30008).
        :param latency: seconds added before every API answer.
        :param rate_limit_every: answer every Nth create request with 429/20429 (None: never).
        :param fault_delay: seconds the faults in :data:`HELD_FAULTS` hold a create request.
        :param list_lag: seconds a new message stays out of the Messages list (fetch by SID finds it at
            once), as Twilio's list lags behind its writes.
        :param clock: the time source of `list_lag`, in seconds from any origin; tests pass one they
            move by hand instead of sleeping.
        :param callback_timeout: total timeout of each webhook request the emulator makes.
        :param fast: benchmark mode: no lifecycle tasks, no callbacks, messages keep their first status.
        """
        self._account_sid = account_sid or new_sid("AC")
        self._auth_token = auth_token or uuid.uuid4().hex
        if _ACCOUNT_SID_PATTERN.match(self._account_sid) is None:
            raise ValueError("account_sid must be 'AC' followed by 32 hex digits")
        credentials = [_basic_auth(self._account_sid, self._auth_token)]
        if api_key_sid is not None:
            if _API_KEY_SID_PATTERN.match(api_key_sid) is None or not api_key_secret:
                raise ValueError("api_key_sid must be 'SK' followed by 32 hex digits, with a secret")
            credentials.append(_basic_auth(api_key_sid, api_key_secret))
        self._credentials = tuple(credentials)

        self.host = host
        self.status_interval = status_interval
        self.auto_advance = auto_advance
        self.sms_url = sms_url
        self.messaging_service_sid = messaging_service_sid
        self.wall_clock: Callable[[], float] = time.time
        """POSIX time for scheduled sends (SendAt's window, when they go): a test may move it."""
        self.opted_out: set[str] = set()
        """Numbers that texted STOP (and not START since): sends to them fail with 21610, as at Twilio."""
        self.service_sender = service_sender
        self.undelivered_numbers = frozenset(undelivered_numbers)
        self.failed_numbers = frozenset(failed_numbers)
        self.latency = latency
        self.rate_limit_every = rate_limit_every
        self.fault_delay = fault_delay
        self.list_lag = list_lag
        """Seconds a message created from now on waits before the Messages list shows it."""
        self.clock = clock
        """The time source of `list_lag` (seconds from any origin)."""
        self.callback_timeout = callback_timeout
        self.fast = fast

        self.messages: dict[str, EmulatedMessage] = {}
        """Every message created or simulated, by SID, in creation order (deleted ones included)."""
        self.callback_log: list[CallbackRecord] = []
        """Every webhook request made (status callbacks and inbound messages), in order."""

        self._requested_port = port
        self._created = time.time()
        self._create_requests = 0
        self._faults = FaultQueue()
        self._unlisted: dict[str, float] = {}
        """SIDs the Messages list does not show yet, with the `clock` time it starts showing them."""
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._waiters: dict[str, list[tuple[str, asyncio.Future[None]]]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._stopping: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._port: int | None = None
        self.app: web.Application = self._build_app()
        """The aiohttp application; serve it with :meth:`start` or any external runner."""

    # ------------------------------------------------------------------------------------------------------
    # Identity and lifecycle
    # ------------------------------------------------------------------------------------------------------

    @property
    def account_sid(self) -> str:
        """The emulated account's SID."""
        return self._account_sid

    @property
    def auth_token(self) -> str:
        """The account's auth token (HTTP Basic password and webhook signing key)."""
        return self._auth_token

    @property
    def base_url(self) -> str:
        """Root URL of the API, e.g. ``http://127.0.0.1:54321``; set it when serving :attr:`app` yourself."""
        if self._base_url is None:
            raise RuntimeError("the emulator is not started; call start() or set base_url")
        return self._base_url

    @base_url.setter
    def base_url(self, value: str) -> None:
        self._base_url = value.rstrip("/")

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful with ``port=0``)."""
        if self._port is None:
            raise RuntimeError("the emulator is not started")
        return self._port

    @property
    def create_requests(self) -> int:
        """How many create requests arrived, including refused and faulted ones (retries show up here)."""
        return self._create_requests

    def creates_by_message_id(self) -> Counter[str]:
        """Outbound messages created, counted per our message id, for "created once" checks.

        The Twilio connector appends `MessageId=<our id>` to each message's `StatusCallback` query;
        Twilio knows nothing of it, so this is the one place a test sees which of our messages a
        create stored. Every stored message counts, whether or not its answer reached the client
        (the faults in :data:`POST_CREATE_FAULTS`) and whether or not it was deleted since; refused
        creates do not. Messages without a `MessageId` (no `StatusCallback`, or a client other than
        the connector) are left out.
        """
        counts: Counter[str] = Counter()
        for message in self.messages.values():
            if message.direction == "inbound" or message.status_callback is None:
                continue
            # The connector appends its parameter, so the last one is ours if the URL had one already.
            ids = parse_qs(urlsplit(message.status_callback).query).get(MESSAGE_ID_PARAM)
            if ids:
                counts[ids[-1]] += 1
        return counts

    def __repr__(self) -> str:
        # The auth token stays out (STYLE habit 13).
        where = self._base_url or "not started"
        return f"<TwilioEmulator {self._account_sid} at {where}, {len(self.messages)} messages>"

    async def start(self) -> None:
        """Start listening on :attr:`host`:`port`."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already started")
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._port = port
        self._base_url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        logger.info("Twilio emulator for %s listening on %s", self._account_sid, self._base_url)

    async def stop(self) -> None:
        """Stop listening, cancel every lifecycle task and close the webhook client session."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> TwilioEmulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def reset(self) -> None:
        """Forget all messages, callbacks, queued faults and counters; cancel running lifecycles."""
        for task in self._tasks.values():
            task.cancel()
        self.messages.clear()
        self.callback_log.clear()
        self._unlisted.clear()
        self._faults.clear()
        self._create_requests = 0

    def inject(self, fault: str, *, count: int = 1, match_to: str | None = None) -> None:
        """Make the next `count` create requests (to `match_to` only, if given) fail with `fault`.

        Faults in :data:`PRE_CREATE_FAULTS` answer without creating the message; the others create it
        and then spoil the answer. Those in :data:`HELD_FAULTS` hold the request for :attr:`fault_delay`
        seconds: `timeout_before_create` creates nothing and then drops the connection;
        `create_then_timeout` (or its older name `timeout`) creates the message first and answers its
        201 late. Queued faults apply first-in first-out. A `reset_before` can only cut
        the connection before the body is read when it is first in the queue and has no `match_to`;
        otherwise it cuts it right after reading the body (still creating nothing). A request that fails
        validation gets its validation error and still uses up the fault it matched.

        :raises ValueError: for an unknown fault name (see :data:`FAULTS`) or a count below 1.
        """
        self._faults.add(fault, count, match_to)

    # ------------------------------------------------------------------------------------------------------
    # Driving messages from tests
    # ------------------------------------------------------------------------------------------------------

    async def advance(self, sid: str) -> str | None:
        """Move a message one lifecycle step (posting its status callback); return the new status.

        Returns None when the message is already final. Meant for ``auto_advance=False``.
        """
        message = self.messages[sid]
        transition = next_transition(message, undelivered=self.undelivered_numbers, failed=self.failed_numbers)
        if transition is None:
            return None
        await self._change_status(message, *transition)
        return message.status

    async def set_status(self, sid: str, status: str, error_code: int | None = None) -> EmulatedMessage:
        """Put a message in any status (posting its status callback) and return it.

        `failed` and `undelivered` get error 30008 / 30003 unless `error_code` says otherwise.
        """
        if status not in STATUSES:
            raise ValueError(f"unknown message status {status!r}")
        message = self.messages[sid]
        await self._change_status(message, status, error_code)
        return message

    async def wait_for_status(
        self,
        sid: str,
        status: str,
        timeout: float = 5.0,  # noqa: ASYNC109  (a deadline argument reads best in tests)
    ) -> EmulatedMessage:
        """Wait until a message has reached `status` (now or earlier) and return it.

        :raises TimeoutError: when it does not get there within `timeout` seconds.
        """
        message = self.messages[sid]
        if status in message.history:
            return message
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (status, future)
        waiters = self._waiters.setdefault(sid, [])
        waiters.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"message {sid} did not reach {status!r} within {timeout} s (it is {message.status!r})"
            ) from None
        finally:
            if entry in waiters:
                waiters.remove(entry)
            if not waiters:
                self._waiters.pop(sid, None)
        return message

    async def simulate_inbound(
        self,
        from_: str,
        to: str,
        body: str,
        media_urls: Sequence[str] = (),
        *,
        url: str | None = None,
    ) -> tuple[int, str]:
        """Deliver an incoming message to the SMS webhook, signed as Twilio signs it; return its answer.

        The message is also stored (direction `inbound`, status `received`) so the API lists it.

        :param url: webhook URL; defaults to :attr:`sms_url`. It must be a properly encoded http(s) URL:
            the emulator requests it exactly as written, as Twilio signs it.
        :returns: the webhook's HTTP status and response text (TwiML, usually).
        :raises ValueError: when there is no URL or it is not a properly encoded http(s) URL.
        :raises ConnectionError: when the webhook gave no HTTP answer.
        """
        target = url or self.sms_url
        if target is None:
            raise ValueError("no webhook URL: pass url= or configure sms_url")
        problem = url_problem(target)
        if problem is not None:
            raise ValueError(f"webhook URL {target!r} is not usable: {problem}")
        now = time.time()
        info = count_segments(body)
        segments = max(info.segments, 1)
        message = EmulatedMessage(
            sid=new_sid("MM" if media_urls else "SM"),
            account_sid=self._account_sid,
            direction="inbound",
            to=to,
            from_=from_,
            body=body,
            status="received",
            params={},
            segments=segments,
            num_segments=segments,
            date_created=now,
            date_updated=now,
            messaging_service_sid=self.messaging_service_sid,
            media=[EmulatedMedia(new_sid("ME"), u, guess_content_type(u), now) for u in media_urls],
            date_sent=now,
            price=f"{-PRICE_PER_SEGMENT * segments:.5f}",
            history=["received"],
        )
        self._keep(message)
        geo = {
            "FromCountry": "US" if from_.startswith("+1") else "",
            "ToCountry": "US" if to.startswith("+1") else "",
        }
        params = inbound_params(message, geo=geo, media=[(media.url, media.content_type) for media in message.media])
        keyword = opt_out_keyword(body)
        if keyword == "STOP":
            self.opted_out.add(from_)
        elif keyword == "START":
            self.opted_out.discard(from_)
        if keyword is not None and self.messaging_service_sid is not None:
            params["OptOutType"] = keyword  # Advanced Opt-Out, which needs a Messaging Service
        record = await self._post_webhook("inbound", target, params, message.sid)
        if record.status is None:
            raise ConnectionError(f"inbound webhook {target} gave no answer: {record.error}")
        return record.status, record.response_text

    # ------------------------------------------------------------------------------------------------------
    # Application
    # ------------------------------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        @web.middleware
        async def twilio_front(request: web.Request, handler: _Handler) -> web.StreamResponse:
            return await self._front(request, handler)

        app = web.Application(middlewares=[twilio_front])
        account = ACCOUNTS_ROOT + "/{AccountSid}"
        app.router.add_get(account + ".json", self._fetch_account)
        app.router.add_post(account + "/Messages.json", self._create_message)
        app.router.add_get(account + "/Messages.json", self._list_messages)
        app.router.add_get(account + "/Messages/{Sid}.json", self._fetch_message)
        app.router.add_post(account + "/Messages/{Sid}.json", self._update_message)
        app.router.add_delete(account + "/Messages/{Sid}.json", self._delete_message)
        app.router.add_get(account + "/Messages/{MessageSid}/Media.json", self._list_media)
        app.router.add_get(account + "/Messages/{MessageSid}/Media/{Sid}.json", self._fetch_media)
        app.router.add_delete(account + "/Messages/{MessageSid}/Media/{Sid}.json", self._delete_media)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self._stopping = asyncio.Event()

    async def _on_shutdown(self, app: web.Application) -> None:
        if self._stopping is not None:
            self._stopping.set()  # releases requests held by the faults in HELD_FAULTS
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _on_cleanup(self, app: web.Application) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _front(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Latency, authentication and Twilio-shaped routing errors for every request."""
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if not self._authenticated(request.headers.get(hdrs.AUTHORIZATION)):
            # Observed 401 body (Twilio's error docs, 20003).
            return _error_response(
                ApiError(401, 20003, "Authenticate"), headers={"WWW-Authenticate": 'Basic realm="Twilio API"'}
            )
        account_sid = request.match_info.get("AccountSid")
        if account_sid is not None and account_sid != self._account_sid:
            # Valid credentials for another account's path: Twilio shows no such resource.
            return _not_found(request.path)
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return _not_found(request.path)
        except web.HTTPMethodNotAllowed:
            return _error_response(ApiError(405, 20004, "Method not allowed"))

    def _authenticated(self, header: str | None) -> bool:
        if header is None:
            return False
        try:
            presented = header.encode("ascii")
        except UnicodeEncodeError:
            return False
        # Compare with every accepted pair, in constant time (STYLE habit 13).
        matched = False
        for expected in self._credentials:
            matched |= hmac.compare_digest(presented, expected)
        return matched

    # ------------------------------------------------------------------------------------------------------
    # Messages API
    # ------------------------------------------------------------------------------------------------------

    async def _create_message(self, request: web.Request) -> web.StreamResponse:
        self._create_requests += 1
        if self._faults and self._faults.take_reset_before():
            return _abort(request)
        params = _form_params(await request.post())
        fault = self._faults.take(first(params, "To")) if self._faults else None
        if fault is None and self.rate_limit_every and self._create_requests % self.rate_limit_every == 0:
            fault = "429"
        if fault is not None and fault in PRE_CREATE_FAULTS:
            return await self._refuse(request, fault)

        now = self.wall_clock()
        parsed = parse_create(params, now=now)
        if isinstance(parsed, ApiError):
            return _error_response(parsed)
        if parsed.to in self.opted_out:
            return _error_response(ApiError(400, 21610, "Attempt to send to unsubscribed recipient"))
        message = self._store_outbound(parsed, params, now)
        payload = json.dumps(message_resource(message)).encode()
        if fault is None:
            return web.Response(body=payload, status=201, content_type=_JSON)
        return await self._spoil(request, fault, message, payload)

    async def _refuse(self, request: web.Request, fault: str) -> web.StreamResponse:
        """Answer a fault that prevents the create (the message is not stored)."""
        if fault == "reset_before":
            return _abort(request)
        if fault == "timeout_before_create":
            await self._hold()
            return _abort(request)  # nothing to answer: the request never reached the API
        if fault == "html_error":
            return web.Response(body=HTML_ERROR_PAGE, status=502, content_type="text/html")
        status = FAULT_ERRORS[fault][0]
        headers = {"Retry-After": "1"} if fault == "429_retry_after" else None
        return web.Response(body=FAULT_PAYLOADS[fault], status=status, content_type=_JSON, headers=headers)

    async def _spoil(
        self, request: web.Request, fault: str, message: EmulatedMessage, payload: bytes
    ) -> web.StreamResponse:
        """Answer a fault that hits after the message was created."""
        if fault == "reset_after_create":
            return _abort(request)
        if fault == "500_after_create":
            return web.Response(body=FAULT_PAYLOADS[fault], status=500, content_type=_JSON)
        if fault in ("create_then_timeout", "timeout"):
            if not await self._hold():
                return _abort(request)  # shutting down: do not hold the server
            return web.Response(body=payload, status=201, content_type=_JSON)
        if fault == "truncated_json":
            body = payload[: len(payload) // 2]
        elif fault == "no_sid":
            resource = message_resource(message)
            del resource["sid"]
            body = json.dumps(resource).encode()
        else:  # malformed_json: Python-repr-like quoting, which no JSON parser accepts
            body = payload.replace(b'"', b"'")
        return web.Response(body=body, status=201, content_type=_JSON)

    async def _hold(self) -> bool:
        """Hold a faulted request for :attr:`fault_delay` seconds; False when the emulator began stopping first."""
        stopping = self._stopping
        if stopping is None:  # set on startup, before any request is served
            return True
        try:
            await asyncio.wait_for(stopping.wait(), self.fault_delay)
        except TimeoutError:
            return True
        return False

    def _keep(self, message: EmulatedMessage) -> None:
        """Store a new message; the Messages list shows it once :attr:`list_lag` has passed."""
        self.messages[message.sid] = message
        if self.list_lag > 0:
            self._unlisted[message.sid] = self.clock() + self.list_lag

    def _hidden_from_list(self) -> Container[str]:
        """SIDs the Messages list must not show yet (forgetting those whose lag has passed)."""
        if not self._unlisted:
            return self._unlisted
        now = self.clock()
        self._unlisted = {sid: shown_at for sid, shown_at in self._unlisted.items() if shown_at > now}
        return self._unlisted

    def _store_outbound(self, parsed: CreateRequest, params: Params, now: float) -> EmulatedMessage:
        info = count_segments(parsed.body, smart_encoded=parsed.smart_encoded)
        # A media-only message is still one (MMS) segment.
        segments = max(info.segments, 1)
        service_sid = parsed.messaging_service_sid
        # Initial status (Twilio's status docs): `scheduled` for a scheduled send, `accepted` with a Messaging Service,
        # else `queued`.
        if parsed.send_at is not None:
            status = "scheduled"
        elif service_sid is not None:
            status = "accepted"
        else:
            status = "queued"
        message = EmulatedMessage(
            sid=new_sid("MM" if parsed.media_urls else "SM"),
            account_sid=self._account_sid,
            direction="outbound-api",
            to=parsed.to,
            from_=parsed.from_,
            # Smart Encoding replaces look-alike characters before sending (Twilio's Smart Encoding docs).
            body=info.text if parsed.smart_encoded else parsed.body,
            status=status,
            params=params,
            segments=segments,
            # Messaging Service sends report 0 segments until a sender is picked (Twilio's Message resource docs).
            num_segments=0 if service_sid is not None else segments,
            date_created=now,
            date_updated=now,
            messaging_service_sid=service_sid,
            status_callback=parsed.status_callback,
            media=[EmulatedMedia(new_sid("ME"), url, guess_content_type(url), now) for url in parsed.media_urls],
            send_at=parsed.send_at,
            history=[status],
        )
        self._keep(message)
        if self.auto_advance and not self.fast:
            self._start_lifecycle(message)
        return message

    async def _list_messages(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        sent = date_range(query, "DateSent")
        if isinstance(sent, ApiError):
            return _error_response(sent)
        to, from_ = query.get("To"), query.get("From")
        hidden = self._hidden_from_list()
        # A message's position in `messages` (which keeps deleted ones) is its paging sort key.
        selected = [
            (position, message)
            for position, message in enumerate(self.messages.values())
            if not message.deleted
            and message.sid not in hidden
            and (to is None or message.to == to)
            and (from_ is None or message.from_ == from_)
            and sent.holds(message.date_sent)
        ]
        selected.reverse()  # Twilio lists newest first
        return _list_response(request, "messages", selected, message_resource, _MESSAGE_FILTERS, newest_first=True)

    def _find(self, sid: str) -> EmulatedMessage | None:
        message = self.messages.get(sid)
        return None if message is None or message.deleted else message

    async def _fetch_message(self, request: web.Request) -> web.StreamResponse:
        message = self._find(request.match_info["Sid"])
        if message is None:
            return _not_found(request.path)
        return _json_response(message_resource(message))

    async def _update_message(self, request: web.Request) -> web.StreamResponse:
        message = self._find(request.match_info["Sid"])
        if message is None:
            return _not_found(request.path)
        params = _form_params(await request.post())
        body, status = first(params, "Body"), first(params, "Status")
        if body is not None and body != "":
            # Only redaction is allowed: "To redact the text content of a Message, ... empty string" (OAI).
            return _error_response(ApiError(400, INVALID_PARAMETER, "Body can only be set to ''"))
        if status is not None:
            if status != "canceled":
                return _error_response(ApiError(400, INVALID_PARAMETER, f"Invalid Status {status}"))
            if message.status != "scheduled":
                return _error_response(ApiError(400, 30409, "This message cannot be canceled"))
            self._stop_lifecycle(message.sid)
            await self._change_status(message, "canceled", None)
        if body is not None:
            message.body = ""
            message.date_updated = time.time()
        return _json_response(message_resource(message))

    async def _delete_message(self, request: web.Request) -> web.StreamResponse:
        message = self._find(request.match_info["Sid"])
        if message is None:
            return _not_found(request.path)
        message.deleted = True
        self._stop_lifecycle(message.sid)
        return web.Response(status=204)

    async def _list_media(self, request: web.Request) -> web.StreamResponse:
        message = self._find(request.match_info["MessageSid"])
        if message is None:
            return _not_found(request.path)
        created = date_range(request.query, "DateCreated")
        if isinstance(created, ApiError):
            return _error_response(created)
        # Deleted media stay in `message.media`, so an item's index there is its paging sort key.
        selected = [
            (position, media)
            for position, media in enumerate(message.media)
            if not media.deleted and created.holds(media.date_created)
        ]
        return _list_response(
            request,
            "media_list",
            selected,
            functools.partial(media_resource, message),
            _MEDIA_FILTERS,
            newest_first=False,
        )

    def _find_media(self, request: web.Request) -> tuple[EmulatedMessage, int] | None:
        """The message and the index in its `media` of the live media item the request names."""
        message = self._find(request.match_info["MessageSid"])
        if message is None:
            return None
        sid = request.match_info["Sid"]
        for index, media in enumerate(message.media):
            if media.sid == sid and not media.deleted:
                return message, index
        return None

    async def _fetch_media(self, request: web.Request) -> web.StreamResponse:
        found = self._find_media(request)
        if found is None:
            return _not_found(request.path)
        message, index = found
        return _json_response(media_resource(message, message.media[index]))

    async def _delete_media(self, request: web.Request) -> web.StreamResponse:
        found = self._find_media(request)
        if found is None:
            return _not_found(request.path)
        message, index = found
        message.media[index] = attrs.evolve(message.media[index], deleted=True)
        message.date_updated = time.time()
        return web.Response(status=204)  # OAI DeleteMedia: 204, no body

    async def _fetch_account(self, request: web.Request) -> web.StreamResponse:
        return _json_response(account_resource(self._account_sid, self._auth_token, self._created))

    # ------------------------------------------------------------------------------------------------------
    # Lifecycle and webhooks
    # ------------------------------------------------------------------------------------------------------

    def _start_lifecycle(self, message: EmulatedMessage) -> None:
        sid = message.sid
        task = asyncio.create_task(self._run_lifecycle(message), name=f"twilio-emulator-{sid}")
        self._tasks[sid] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._tasks.get(sid) is done:
                del self._tasks[sid]

        task.add_done_callback(forget)

    def _stop_lifecycle(self, sid: str) -> None:
        task = self._tasks.get(sid)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _run_lifecycle(self, message: EmulatedMessage) -> None:
        try:
            # Polled (not one long sleep, nor an event nobody sets) so that a test moving `wall_clock` releases it.
            while message.send_at is not None and message.status == "scheduled" and self.wall_clock() < message.send_at:  # noqa: ASYNC110
                await asyncio.sleep(max(0.01, min(self.status_interval or 0.05, message.send_at - self.wall_clock())))
            if message.status == "canceled":
                return
            while not message.deleted:
                await asyncio.sleep(self.status_interval)
                transition = next_transition(message, undelivered=self.undelivered_numbers, failed=self.failed_numbers)
                if transition is None:
                    return
                await self._change_status(message, *transition)
        except Exception:
            # A bug here must not take the emulator down; the message simply stops advancing.
            logger.exception("lifecycle of %s failed", message.sid)

    async def _change_status(self, message: EmulatedMessage, status: str, error_code: int | None) -> None:
        now = time.time()
        apply_status(message, status, error_code, now=now, service_sender=self.service_sender)
        for wanted, future in self._waiters.get(message.sid, ()):
            if wanted == status and not future.done():
                future.set_result(None)
        # No callback for the initial status, one for every later change (Twilio's message status docs).
        if message.status_callback is not None and not self.fast:
            params = status_callback_params(message, now=now)
            await self._post_webhook("status", message.status_callback, params, message.sid)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _post_webhook(self, kind: str, url: str, params: dict[str, str], sid: str) -> CallbackRecord:
        """POST a signed form to a webhook the way Twilio does and log the outcome (never raises)."""
        signature = compute_signature(self._auth_token, url, params)
        token = str(uuid.uuid4())
        headers = {
            SIGNATURE_HEADER: signature,
            "I-Twilio-Idempotency-Token": token,
            "User-Agent": "TwilioProxy/1.1",
            "Content-Type": _FORM,
        }
        status: int | None = None
        error: str | None = None
        text = ""
        problem = url_problem(url)
        if problem is not None:
            # Refused, never re-encoded: the signature covers the URL exactly as written (Twilio's webhook docs).
            error = f"not a valid webhook URL: {problem}"
            logger.warning("%s webhook for %s not sent to %r: %s", kind, sid, url, error)
        else:
            try:
                # encoded=True: request the URL byte for byte as signed (url_problem let only
                # properly encoded URLs through).
                async with self._client().post(
                    URL(url, encoded=True),
                    data=urlencode(params).encode(),
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.callback_timeout),
                ) as response:
                    status = response.status
                    text = await response.text(errors="replace")
            except (aiohttp.ClientError, TimeoutError, ValueError) as err:
                error = f"{type(err).__name__}: {err}"
                logger.warning("%s webhook for %s to %s failed: %s", kind, sid, url, error)
        record = CallbackRecord(
            kind=kind,
            url=url,
            params=params,
            message_sid=sid,
            signature=signature,
            idempotency_token=token,
            status=status,
            error=error,
            response_text=text,
        )
        self.callback_log.append(record)
        return record
