"""``WebhookService``: what to do with a provider's webhook, whatever web framework carried it.

One direction, one place::

    WebhookRequest ─▶ connector: verify + parse (no hook) ─▶ dedupe + record ─▶ dispatch (hooks) ─▶ WebhookAnswer

- **Verify and parse**: ``connector.receive_messages(request)`` / ``receive_message_status(request)``.
  A refused webhook (``INVALID_SIGNATURE``, ``UNEXPECTED_ACCOUNT``) is answered 403, a malformed
  one 400; neither is recorded nor dispatched.
- **Dedupe and record**: a status callback always goes through a ``StatusStore`` (by default a
  ``MemoryStatusStore`` of this process; a shared one, e.g. PostgreSQL, for several hosts), which
  decides whether it is new and moves the message forward (``apply(update, idempotency_key=the
  provider's token)``). With a ``pipeline`` (``InProcessDispatcher``, ``SendPipeline``) the status
  goes through ``pipeline.status_received``, which records it in the pipeline's store and also
  settles a send the ledger holds in doubt: the one way to settle sends in doubt from webhooks
  (a store on the ledger's tables, like the scale-out ``PostgresStatusStore``, settles them
  itself). Inbound messages are deduplicated by the provider's token and the message id, in a
  bounded table of this process.
- **Dispatch**: ``message_received`` per message, ``message_status_changed`` per applied status,
  through the connector's plugin host, one message at a time per subject (order kept).
- **Answer**: the connector's answer (``webhook_response``); 500 when a store or an observer
  failed, so that the provider retries.

What every web framework adapter shares lives here too, so that each adapter (``app`` for
aiohttp, ``asgi``, ``django``, ``flask``) only translates its framework's request and response:
``public_url`` (the URL the provider signed, behind a proxy too), ``early_answer`` (404 and 413
before the body is read) and ``request_of`` (the ``WebhookRequest`` of what the framework read).

**Observers** (the one rule): a webhook is recorded before its observers run. When one raises, the
answer is 500 and the webhook is remembered here as not dispatched; the provider's retry of it is
then dispatched again, by this service, even though the store already holds it. So observers see
each webhook at least once per host that received it, and never a status that would move a
message backwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Protocol

from attrs import evolve, frozen

from messaging_core import telemetry
from messaging_core.campaigns.memory import MemoryStatusStore
from messaging_core.campaigns.protocols import StatusStore, SuppressionList
from messaging_core.config import WebhookSettings
from messaging_core.connector import ChannelConnector
from messaging_core.message import Message
from messaging_core.results import ConnectorErrorCodes, Failure, StatusUpdate
from messaging_core.schema import Capability
from messaging_core.webhook_request import WebhookRequest

__all__ = ["StatusReceiver", "WebhookAnswer", "WebhookKind", "WebhookService", "WebhookStats", "public_url"]

log = logging.getLogger(__name__)

WebhookKind = Literal["messages", "status"]
"""``"messages"``: inbound messages; ``"status"``: delivery status callbacks."""

_CAPABILITY: dict[str, Capability] = {
    "messages": Capability.RECEIVE_MESSAGES,
    "status": Capability.HANDLE_MESSAGE_STATE,
}

_FORBIDDEN: dict[str, str] = {
    ConnectorErrorCodes.INVALID_SIGNATURE: "invalid signature\n",
    ConnectorErrorCodes.UNEXPECTED_ACCOUNT: "unexpected account\n",
}
"""Refusals answered 403, with their short answer (the reason is logged, never answered)."""


@frozen
class WebhookAnswer:
    """What to answer the provider: an HTTP status, a content type, headers and a body.

    Adapters relay all four as they are (no content type at all when ``content_type`` is None).
    """

    status: int
    content_type: str | None = None
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    """Further response headers, in order (a name may repeat); never ``Content-Type``."""

    @classmethod
    def text(cls, status: int, text: str) -> WebhookAnswer:
        return cls(status, "text/plain", text.encode())


class HeaderLookup(Protocol):
    """Request headers as any web framework holds them: looked up by name, case-insensitively."""

    def get(self, key: str, /) -> str | None: ...


def public_url(settings: WebhookSettings, *, scheme: str, host: str, path_qs: str, headers: HeaderLookup) -> str:
    """The URL the provider called, as it signed it, from what a web framework saw of the request.

    ``path_qs`` is the full path (any mount prefix included) and the query string as received;
    ``headers`` must look names up case-insensitively. Behind a reverse proxy the request's own URL
    is not the one the provider used: the configured ``public_url`` replaces scheme and host;
    ``X-Forwarded-Proto``/``X-Forwarded-Host`` are used only when ``trust_forwarded_headers`` is on
    (anyone can send those headers). The first value of a forwarded list is the client-facing one.
    """
    if settings.public_url:
        return settings.public_url.rstrip("/") + path_qs
    if settings.trust_forwarded_headers:
        scheme = (headers.get("X-Forwarded-Proto") or scheme).split(",")[0].strip()
        host = (headers.get("X-Forwarded-Host") or host).split(",")[0].strip()
    return f"{scheme}://{host}{path_qs}"


class WebhookStats:
    """Counters of a webhook service (on ``/healthz`` and for tests)."""

    def __init__(self) -> None:
        self.received = 0
        self.dispatched = 0
        self.duplicates = 0
        self.rejected = 0
        self.forbidden = 0
        self.errors = 0
        self.not_applied = 0
        """Status callbacks the status store did not apply: a replayed token, or a status that does
        not move the message forward (the store does not say which)."""

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class StatusReceiver(Protocol):
    """What records a status callback and settles the send it proves: ``SendPipeline``, ``InProcessDispatcher``."""

    @property
    def status_store(self) -> StatusStore | None:
        """Where statuses are recorded; it decides what is new."""

    async def status_received(self, update: StatusUpdate, *, idempotency_key: str | None = None) -> bool:
        """Record ``update`` (and settle its message if it was in doubt); whether anything changed."""


class _Recent:
    """A bounded set of recently seen keys (oldest forgotten first)."""

    def __init__(self, size: int) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def add(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        if len(self._keys) > self._size:
            self._keys.popitem(last=False)

    def discard(self, key: str) -> None:
        self._keys.pop(key, None)


class WebhookService:
    """Verify, record, dispatch and answer the webhooks of ``connectors`` (by route name).

    :param connectors: the connectors by the name their routes use (the caller opens and closes them).
    :param status_store: where status callbacks are recorded; default a ``MemoryStatusStore``
        (one process). The caller opens and closes a store it passes.
    :param pipeline: records through ``pipeline.status_received`` instead (``InProcessDispatcher``,
        ``SendPipeline``), so that a callback also settles a send held in doubt; ``status_store``,
        when also given, must be the pipeline's own store.
    :param settings: ``request_timeout`` bounds the handling of one webhook (503 past it) and one
        connector's health check; ``readiness_cache_seconds`` how long ``readiness()`` reuses a check.
    :param dedup_size: how many recent keys (inbound messages, statuses to dispatch again) are kept.
    """

    def __init__(
        self,
        connectors: Mapping[str, ChannelConnector],
        *,
        settings: WebhookSettings | None = None,
        status_store: StatusStore | None = None,
        pipeline: StatusReceiver | None = None,
        dedup_size: int = 100_000,
    ) -> None:
        self.connectors = dict(connectors)
        self.settings = settings or WebhookSettings()
        self._readiness = _Readiness(
            self.connectors, self.settings.readiness_cache_seconds, self.settings.request_timeout
        )
        self.status_store, self._record = _recorder(status_store, pipeline, dedup_size)
        store = self.status_store
        self._suppressions = store if isinstance(store, SuppressionList) else None
        """The status store's suppression list, if it keeps one (checked once: a protocol check is not cheap)."""
        self.stats = WebhookStats()
        self._seen = {name: _Recent(dedup_size) for name in self.connectors}
        self._undispatched = _Recent(dedup_size)
        """Statuses recorded whose observers failed: their retry is dispatched although the store has them."""
        # Striped locks: one dispatch at a time per message, with bounded memory.
        self._locks = [asyncio.Lock() for _ in range(256)]

    def connector(self, name: str, kind: WebhookKind) -> ChannelConnector | None:
        """The connector of route ``name`` if it takes webhooks of ``kind``, else None (a 404)."""
        connector = self.connectors.get(name)
        if connector is None or _CAPABILITY[kind] not in connector.schema.capabilities:
            return None
        return connector

    def early_answer(self, name: str, kind: WebhookKind, content_length: int | None) -> WebhookAnswer | None:
        """The answer to give before reading the body, or None to read it (then ``request_of`` and ``handle``).

        404 when route ``name`` takes no webhooks of ``kind``; 413 when the declared body is longer
        than ``max_body_bytes`` (an adapter reading a body of unknown length stops past it too).
        """
        if self.connector(name, kind) is None:
            return WebhookAnswer.text(404, f"no {kind} webhook for {name!r}\n")
        if content_length is not None and content_length > self.settings.max_body_bytes:
            return self.too_large()
        return None

    def too_large(self) -> WebhookAnswer:
        """413: a body longer than ``max_body_bytes``."""
        return WebhookAnswer.text(413, f"body larger than {self.settings.max_body_bytes} bytes\n")

    def request_of(
        self,
        *,
        content_type: str,
        body: bytes,
        scheme: str,
        host: str,
        path_qs: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
    ) -> WebhookRequest:
        """The ``WebhookRequest`` of a request as a web framework hands it, at the URL the provider signed.

        ``content_type`` is the header's value, ``body`` the raw bytes (a form is decoded);
        ``scheme``, ``host`` and ``path_qs`` (full path, mount prefix included, and query string)
        are what the framework saw: ``public_url`` makes the public URL of them with this service's settings.
        """
        request = WebhookRequest.from_http(content_type, body, headers=headers)
        url = public_url(self.settings, scheme=scheme, host=host, path_qs=path_qs, headers=request.headers)
        return evolve(request, url=url)

    async def initialize_connectors(self) -> None:
        """Initialize every connector (for adapters that own the connectors' lifecycle); raises if one fails."""
        for connector in self.connectors.values():
            (await connector.initialize()).unwrap()

    async def shutdown_connectors(self) -> None:
        """Shut every connector down (the counterpart of ``initialize_connectors``)."""
        for connector in self.connectors.values():
            await connector.shutdown()

    def routes(self) -> dict[str, tuple[WebhookKind, ...]]:
        """The webhook kinds each connector takes, by route name (what to mount, and to announce)."""
        kinds: tuple[WebhookKind, ...] = ("messages", "status")
        return {name: tuple(k for k in kinds if self.connector(name, k) is not None) for name in self.connectors}

    async def handle(self, name: str, kind: WebhookKind, request: WebhookRequest) -> WebhookAnswer:
        """Verify, record, dispatch and answer one webhook for the connector of route ``name``.

        Never raises for bad input or a failing observer or store: every outcome is an answer.
        """
        connector = self.connector(name, kind)
        return await telemetry.webhook_handled(connector, name, kind, self._handle(name, kind, connector, request))

    async def _handle(
        self, name: str, kind: WebhookKind, connector: ChannelConnector | None, request: WebhookRequest
    ) -> WebhookAnswer:
        if connector is None:
            return WebhookAnswer.text(404, f"no {kind} webhook for {name!r}\n")
        if not connector.is_ready:
            return WebhookAnswer.text(503, f"connector {name} is {connector.state.value}\n")
        self.stats.received += 1
        try:
            async with asyncio.timeout(self.settings.request_timeout):
                if kind == "messages":
                    return await self._messages(name, connector, request)
                return await self._status(name, connector, request)
        except TimeoutError:
            log.warning("webhook %s/%s: took longer than the request timeout", name, kind)
            return WebhookAnswer.text(503, "timeout\n")

    async def readiness(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        """Whether every connector is healthy, and each one's report (checked at most once per cache period)."""
        report = await self._readiness.report()
        return all(check["healthy"] for check in report.values()), report

    # -- inbound messages --------------------------------------------------------------------------------

    async def _messages(self, name: str, connector: ChannelConnector, request: WebhookRequest) -> WebhookAnswer:
        result = await connector.receive_messages(request)
        if result.value is None:
            assert result.error is not None
            return self._refuse(name, result.error)
        seen = self._seen[name]
        token = connector.webhook_idempotency_key(request)
        keys = [f"token:{token}"] if token else []
        keys += [f"message:{m.id}" for m in result.value.messages]
        if any(k in seen for k in keys):
            self.stats.duplicates += 1
            return _ack(connector, "messages")
        for key in keys:
            seen.add(key)
        stage = "a message_received observer"
        try:
            for message in result.value.messages:
                await self._note_opt_out(connector, message)
                await connector.plugins.notify_strict("message_received", {"connector": connector, "message": message})
            stage = "the reply_to_message hook"
            reply = await _reply(connector, result.value.messages)
        except BaseException as err:
            # Not handled (an observer raised, or the request timed out inside one): forget the
            # keys so that the provider's retry dispatches it again.
            for key in keys:
                seen.discard(key)
            if not isinstance(err, Exception):
                raise
            self.stats.errors += 1
            log.exception("webhook %s/messages: %s failed", name, stage)
            return WebhookAnswer.text(500, "observer failed\n")
        self.stats.dispatched += len(result.value.messages)
        if reply is not None:
            return reply
        return _ack(connector, "messages")

    async def _note_opt_out(self, connector: ChannelConnector, message: Message) -> None:
        """A STOP (or START) puts its sender on (or off) the status store's suppression list."""
        store = self._suppressions
        if store is None or message.sender is None:
            return
        change = connector.opt_out_change(message)
        if change is True:
            await store.suppress(message.sender.address, ConnectorErrorCodes.RECIPIENT_UNSUBSCRIBED)
        elif change is False:
            await store.lift(message.sender.address)

    # -- status callbacks -------------------------------------------------------------------------------

    async def _status(self, name: str, connector: ChannelConnector, request: WebhookRequest) -> WebhookAnswer:
        result = await connector.receive_message_status(request)
        if result.value is None:
            assert result.error is not None
            return self._refuse(name, result.error)
        update = result.value
        token = connector.webhook_idempotency_key(request)
        subject = f"{name}:{update.remote_message_id or update.message_id}"
        retry_key = f"{subject}:{update.raw_status or update.status.value}"
        # One message at a time on this host, so that its observers see the order the store applied.
        async with self._locks[hash(subject) % len(self._locks)]:
            try:
                applied = await self._record(update, idempotency_key=token)
            except Exception:
                self.stats.errors += 1
                log.exception("webhook %s/status: the status store failed; answering 500 so that it is retried", name)
                return WebhookAnswer.text(500, "status not recorded\n")
            if not applied and retry_key not in self._undispatched:
                self.stats.not_applied += 1
                log.debug("webhook %s/status: %s not applied (replay or stale)", name, update.status.value)
                return _ack(connector, "status")
            try:
                await connector.plugins.notify_strict(
                    "message_status_changed", {"connector": connector, "update": update}
                )
            except BaseException as err:
                self._undispatched.add(retry_key)
                if not isinstance(err, Exception):
                    raise
                self.stats.errors += 1
                log.exception("webhook %s/status: a message_status_changed observer failed (status recorded)", name)
                return WebhookAnswer.text(500, "observer failed\n")
            self._undispatched.discard(retry_key)
        self.stats.dispatched += 1
        return _ack(connector, "status")

    def _refuse(self, name: str, error: Failure) -> WebhookAnswer:
        forbidden = _FORBIDDEN.get(error.code)
        if forbidden is not None:
            self.stats.forbidden += 1
            telemetry.webhook_refused(name, error.code)
            # The reason is logged, not answered: whoever forged the request learns nothing from it.
            log.warning("webhook for %s refused: %s", name, error.message)
            return WebhookAnswer.text(403, forbidden)
        self.stats.rejected += 1
        return WebhookAnswer.text(400, f"{error.code}: {error.message}\n"[:300])


class _Readiness:
    """Connectors' health, checked at most once per ``ttl`` seconds however often it is asked.

    A load balancer probing every second must not turn into a provider API call per probe, nor
    mark the host down because the provider was slow once: concurrent probes share one check.
    """

    def __init__(self, connectors: Mapping[str, ChannelConnector], ttl: float, timeout: float) -> None:
        self._connectors = connectors
        self._ttl = ttl
        self._timeout = timeout
        self._report: dict[str, dict[str, Any]] | None = None
        self._checked_at = 0.0
        self._running: asyncio.Task[dict[str, dict[str, Any]]] | None = None

    async def report(self) -> dict[str, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        if self._report is not None and loop.time() - self._checked_at < self._ttl:
            return self._report
        if self._running is None:
            self._running = loop.create_task(self._check())
            self._running.add_done_callback(self._checked)
        # shield: a probe that gives up (client gone) must not cancel the check others wait for.
        return await asyncio.shield(self._running)

    def _checked(self, task: asyncio.Task[dict[str, dict[str, Any]]]) -> None:
        self._running = None
        if not task.cancelled() and task.exception() is None:
            self._report = task.result()
            self._checked_at = asyncio.get_running_loop().time()

    async def _check(self) -> dict[str, dict[str, Any]]:
        # Concurrently, each within the request timeout: one slow provider must not hold the probe.
        checks = await asyncio.gather(*(self._health(connector) for connector in self._connectors.values()))
        return dict(zip(self._connectors, checks, strict=True))

    async def _health(self, connector: ChannelConnector) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self._timeout):
                health = await connector.get_health()
        except TimeoutError:
            return {
                "state": connector.state.value,
                "healthy": False,
                "issues": [f"health check took longer than {self._timeout:g} s"],
                "uptime_s": None,
            }
        return {
            "state": health.state,
            "healthy": health.is_healthy,
            "issues": list(health.issues),
            "uptime_s": round(health.uptime.total_seconds(), 1),
        }


async def _reply(connector: ChannelConnector, messages: tuple[Message, ...]) -> WebhookAnswer | None:
    """The answer carrying the first reply a ``reply_to_message`` hook gave, or None (the usual answer)."""
    if not connector.plugins.has_observers("reply_to_message"):
        return None
    for message in messages:
        content = await connector.plugins.reply_to_message(connector, message)
        if content is None:
            continue
        answer = connector.webhook_reply(content)
        if answer is None:
            log.warning(
                "connector %s cannot reply in a webhook's response; the reply to %s was not sent (send a message)",
                connector.name,
                message.id,
            )
            return None
        status, content_type, body = answer
        return WebhookAnswer(status, content_type if body else None, body)
    return None


def _ack(connector: ChannelConnector, kind: WebhookKind) -> WebhookAnswer:
    status, content_type, body = connector.webhook_response(kind)
    return WebhookAnswer(status, content_type if body else None, body)


class _RecordStatus(Protocol):
    async def __call__(self, update: StatusUpdate, *, idempotency_key: str | None = None) -> bool: ...


def _recorder(
    store: StatusStore | None, pipeline: StatusReceiver | None, size: int
) -> tuple[StatusStore, _RecordStatus]:
    """The store statuses land in, and how to record one: the pipeline's ``status_received`` or ``store.apply``."""
    if pipeline is None:
        store = store if store is not None else MemoryStatusStore(max_messages=size, max_keys=size)
        return store, store.apply
    own = pipeline.status_store
    if own is None:
        # Without a store a pipeline reports only ledger changes: every status after the first
        # would look like a replay and never be dispatched.
        raise ValueError(f"{pipeline!r} has no status store: give it one, or pass status_store instead")
    if store is not None and store is not own:
        raise ValueError("status_store must be the pipeline's own status store (or left out)")
    return own, pipeline.status_received
