"""The webhook host: an aiohttp application that receives provider webhooks for configured connectors.

Routes, per connector name:

- ``POST /webhooks/{connector}/messages`` — inbound messages → ``message_received``
- ``POST /webhooks/{connector}/status`` — delivery statuses → ``message_status_changed``
- ``GET /healthz`` — liveness: the process and its event loop answer (no provider call)
- ``GET /readyz`` — readiness: every connector's health, cached for ``readiness_cache_seconds``
  (503 with the reasons when one is unhealthy)

Answers: a webhook the connector refuses (``INVALID_SIGNATURE``: signature missing, wrong or not
checkable; ``UNEXPECTED_ACCOUNT``: another account's) → 403 and nothing dispatched; malformed or
unsupported payload → 400 with a short reason; an observer that raises → 500 (so the provider
retries). Redeliveries (same
idempotency token, same inbound message, same message + status) are acknowledged and dispatched
once; status updates that would move a message backwards (a late ``sent`` after ``delivered``)
are acknowledged and not dispatched. Body size and handling time are limited.

Where delivery statuses are reconciled:

- by default, in this process's memory (a bounded table): right for one webhook host;
- with a ``status_store`` (``StatusStore``), in the store, which several hosts can share (PostgreSQL).
  Every verified status callback goes through ``status_store.apply(update, idempotency_key=<the
  provider's token>)``: the store decides whether it is new and moves the message forward, and
  the hook is dispatched only when it says so. Each callback is then dispatched by one host, once,
  never backwards. A store that fails answers 500 (503 on a timeout), so the provider retries:
  the host never acknowledges a status it did not record;
- with a ``pipeline`` (``SendPipeline``, ``InProcessDispatcher``: anything with
  ``status_received`` and a ``status_store``), through ``pipeline.status_received``, which records
  the status in the pipeline's store and also settles a send the ledger holds in doubt.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Protocol

from aiohttp import web

from messaging_core.campaigns.protocols import StatusStore
from messaging_core.config import WebhookSettings
from messaging_core.connector import ChannelConnector
from messaging_core.results import ConnectorErrorCodes, ConnectorResult, MessageStatus, StatusUpdate
from messaging_core.schema import Capability
from messaging_core.webhook_request import WebhookRequest

__all__ = ["CONNECTORS_KEY", "StatusReceiver", "WebhookStats", "create_webhook_app", "public_url_of"]

log = logging.getLogger(__name__)

_FORBIDDEN: dict[str, str] = {
    ConnectorErrorCodes.INVALID_SIGNATURE: "invalid signature\n",
    ConnectorErrorCodes.UNEXPECTED_ACCOUNT: "unexpected account\n",
}
"""Refusals answered 403 (the provider must not retry them as if we had failed), with their short answer."""


class WebhookStats:
    """Counters of a webhook app (exposed on ``/healthz`` and to tests)."""

    def __init__(self) -> None:
        self.received = 0
        self.dispatched = 0
        self.duplicates = 0
        self.stale = 0
        self.rejected = 0
        self.forbidden = 0
        self.errors = 0
        self.not_applied = 0
        """Status callbacks the status store did not apply: a replayed token, or a status that does
        not move the message forward (the store does not say which). Only with a status store."""

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class _Seen:
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


class _StatusTable:
    """The reconciled status of recent messages (bounded)."""

    def __init__(self, size: int) -> None:
        self._status: OrderedDict[str, MessageStatus] = OrderedDict()
        self._size = size

    def advance(self, key: str, new: MessageStatus) -> bool:
        """Record ``new`` if it moves the message forward; whether it did."""
        current = self._status.get(key)
        if current is not None and not current.can_become(new):
            return False
        self._status[key] = new
        self._status.move_to_end(key)
        if len(self._status) > self._size:
            self._status.popitem(last=False)
        return True

    def get(self, key: str) -> MessageStatus | None:
        return self._status.get(key)

    def restore(self, key: str, previous: MessageStatus | None) -> None:
        """Undo an ``advance`` whose dispatch failed."""
        if previous is None:
            self._status.pop(key, None)
        else:
            self._status[key] = previous


class StatusReceiver(Protocol):
    """What records a status callback and settles the send it proves: ``SendPipeline``, ``InProcessDispatcher``."""

    @property
    def status_store(self) -> StatusStore | None:
        """Where statuses are recorded; it decides what is new."""

    async def status_received(self, update: StatusUpdate, *, idempotency_key: str | None = None) -> bool:
        """Record ``update`` (and settle its message if it was in doubt); whether anything changed."""


class RecordStatus(Protocol):
    """``StatusStore.apply`` or ``StatusReceiver.status_received``: whether the update was recorded as new."""

    async def __call__(self, update: StatusUpdate, *, idempotency_key: str | None = None) -> bool: ...


CONNECTORS_KEY: web.AppKey[Mapping[str, ChannelConnector]] = web.AppKey("connectors", Mapping)
STATS_KEY: web.AppKey[WebhookStats] = web.AppKey("webhook_stats", WebhookStats)
STATUS_KEY: web.AppKey[_StatusTable] = web.AppKey("status_table", _StatusTable)


def public_url_of(request: web.Request, settings: WebhookSettings) -> str:
    """The URL the provider called, as it signed it.

    Behind a reverse proxy the request's own URL is not the one the provider used: the configured
    ``public_url`` replaces scheme and host; ``X-Forwarded-Proto``/``X-Forwarded-Host`` are used only
    when ``trust_forwarded_headers`` is on (anyone can send those headers).
    """
    if settings.public_url:
        return settings.public_url.rstrip("/") + request.path_qs
    if settings.trust_forwarded_headers:
        proto = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
        return f"{proto}://{host}{request.path_qs}"
    return str(request.url)


class _Handlers:
    def __init__(
        self,
        connectors: Mapping[str, ChannelConnector],
        settings: WebhookSettings,
        dedup_size: int,
        record_status: RecordStatus | None,
    ) -> None:
        self.connectors = connectors
        self.settings = settings
        self.record_status = record_status
        self.stats = WebhookStats()
        self.seen = {name: _Seen(dedup_size) for name in connectors}
        self.statuses = _StatusTable(dedup_size)
        # Striped locks: one dispatch at a time per message, with bounded memory.
        self.locks = [asyncio.Lock() for _ in range(256)]
        self.readiness = _Readiness(connectors, settings.readiness_cache_seconds, settings.request_timeout)

    def _connector(self, request: web.Request, capability: Capability) -> tuple[str, ChannelConnector]:
        """The route's connector name (the key it was configured under) and the connector."""
        name = request.match_info["connector"]
        connector = self.connectors.get(name)
        if connector is None or capability not in connector.schema.capabilities:
            raise web.HTTPNotFound(text=f"no webhook {request.path}\n")
        if not connector.is_ready:
            raise web.HTTPServiceUnavailable(text=f"connector {name} is {connector.state.value}\n")
        return name, connector

    async def _source(self, request: web.Request) -> WebhookRequest:
        return await WebhookRequest.from_aiohttp_request(request, url=public_url_of(request, self.settings))

    def _refuse(self, request: web.Request, result: ConnectorResult[Any]) -> web.Response:
        assert result.error is not None
        forbidden = _FORBIDDEN.get(result.error.code)
        if forbidden is not None:
            self.stats.forbidden += 1
            # The reason is logged, not answered: whoever forged the request learns nothing from it.
            log.warning("webhook %s refused: %s", request.path, result.error.message)
            return web.Response(status=403, text=forbidden)
        self.stats.rejected += 1
        return web.Response(status=400, text=f"{result.error.code}: {result.error.message}\n"[:300])

    async def messages(self, request: web.Request) -> web.StreamResponse:
        name, connector = self._connector(request, Capability.RECEIVE_MESSAGES)
        self.stats.received += 1
        async with asyncio.timeout(self.settings.request_timeout):
            source = await self._source(request)
            result = await connector.receive_messages(source, notify=False)
            if result.value is None:
                return self._refuse(request, result)
            # Keyed by route name: the mapping's key, which need not be the connector's own name.
            seen = self.seen[name]
            token = connector.webhook_idempotency_key(source)
            keys = [f"token:{token}"] if token else []
            keys += [f"message:{m.id}" for m in result.value.messages]
            if any(k in seen for k in keys):
                self.stats.duplicates += 1
                return _ack(connector, "messages")
            for key in keys:
                seen.add(key)
            try:
                for message in result.value.messages:
                    await connector.notify_received(message)
            except BaseException as err:
                # Not handled (an observer raised, or the request timed out inside one): forget
                # the keys so that the provider's retry dispatches it again.
                for key in keys:
                    seen.discard(key)
                if not isinstance(err, Exception):
                    raise
                self.stats.errors += 1
                log.exception("webhook %s: a message_received observer failed", request.path)
                return web.Response(status=500, text="observer failed\n")
            self.stats.dispatched += len(result.value.messages)
            return _ack(connector, "messages")

    async def status(self, request: web.Request) -> web.StreamResponse:
        name, connector = self._connector(request, Capability.HANDLE_MESSAGE_STATE)
        self.stats.received += 1
        async with asyncio.timeout(self.settings.request_timeout):
            source = await self._source(request)
            result = await connector.receive_message_status(source, notify=False)
            if result.value is None:
                return self._refuse(request, result)
            update = result.value
            token = connector.webhook_idempotency_key(source)
            subject = f"{name}:{update.remote_message_id or update.message_id}"
            if self.record_status is not None:
                return await self._status_through_store(request, connector, update, token, subject)
            seen = self.seen[name]
            keys = ([f"token:{token}"] if token else []) + [f"status:{subject}:{update.raw_status or update.status}"]
            if any(k in seen for k in keys):
                self.stats.duplicates += 1
                return _ack(connector, "status")
            # One dispatch at a time per message keeps the reconciled order exact.
            async with self.locks[hash(subject) % len(self.locks)]:
                previous = self.statuses.get(subject)
                if not self.statuses.advance(subject, update.status):
                    for key in keys:
                        seen.add(key)
                    self.stats.stale += 1
                    log.debug("webhook %s: stale status %s ignored", request.path, update.status.value)
                    return _ack(connector, "status")
                for key in keys:
                    seen.add(key)
                try:
                    await connector.notify_status_changed(update)
                except BaseException as err:
                    # Not handled (an observer raised, or the request timed out inside one):
                    # undo, so that the provider's retry dispatches it again.
                    for key in keys:
                        seen.discard(key)
                    self.statuses.restore(subject, previous)
                    if not isinstance(err, Exception):
                        raise
                    self.stats.errors += 1
                    log.exception("webhook %s: a message_status_changed observer failed", request.path)
                    return web.Response(status=500, text="observer failed\n")
            self.stats.dispatched += 1
            return _ack(connector, "status")

    async def _status_through_store(
        self,
        request: web.Request,
        connector: ChannelConnector,
        update: StatusUpdate,
        token: str | None,
        subject: str,
    ) -> web.StreamResponse:
        """Record in the status store, then dispatch only what the store applied.

        The store is shared by every host, so it alone decides what is new: nothing is kept here.
        Once the store has recorded a status it cannot be taken back (another host may already
        have moved the message further), so an observer that fails makes a 500 but the
        provider's retry is acknowledged without a second dispatch: with a store, observers see
        each status at most once.
        """
        assert self.record_status is not None
        # One message at a time on this host, so that its observers see the order the store applied.
        async with self.locks[hash(subject) % len(self.locks)]:
            try:
                applied = await self.record_status(update, idempotency_key=token)
            except Exception:
                self.stats.errors += 1
                log.exception("webhook %s: the status store failed; answering 500 so that it is retried", request.path)
                return web.Response(status=500, text="status not recorded\n")
            if not applied:
                self.stats.not_applied += 1
                log.debug("webhook %s: status %s not applied (replay or stale)", request.path, update.status.value)
                return _ack(connector, "status")
            try:
                await connector.notify_status_changed(update)
            except Exception:
                self.stats.errors += 1
                log.exception("webhook %s: a message_status_changed observer failed (status recorded)", request.path)
                return web.Response(status=500, text="observer failed\n")
        self.stats.dispatched += 1
        return _ack(connector, "status")

    async def healthz(self, request: web.Request) -> web.Response:
        """Liveness: answering at all proves the process and its event loop work; no provider is called."""
        return web.json_response({"alive": True, "webhooks": self.stats.as_dict()}, dumps=json.dumps)

    async def readyz(self, request: web.Request) -> web.Response:
        """Readiness: every connector's health, from a cache a few seconds old at most."""
        report = await self.readiness.report()
        healthy = all(check["healthy"] for check in report.values())
        body = {"ready": healthy, "connectors": report}
        return web.json_response(body, status=200 if healthy else 503, dumps=json.dumps)


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


def _ack(connector: ChannelConnector, kind: str) -> web.Response:
    status, content_type, body = connector.webhook_response(kind)
    return web.Response(status=status, body=body, content_type=content_type if body else None)


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """No traceback and no 500 for bad input: classify what escaped the handlers."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException:
        raise
    except TimeoutError:
        log.warning("webhook %s: took longer than the request timeout", request.path)
        return web.Response(status=503, text="timeout\n")
    except (UnicodeDecodeError, ValueError) as err:
        return web.Response(status=400, text=f"malformed request: {type(err).__name__}\n")


def _status_recorder(store: StatusStore | None, pipeline: StatusReceiver | None) -> RecordStatus | None:
    """How the status handler records a callback: the pipeline's ``status_received``, the store's ``apply``, or None."""
    if pipeline is None:
        return None if store is None else store.apply
    own = pipeline.status_store
    if own is None:
        # Without a store a pipeline reports only ledger changes: every status after the first
        # would look like a replay and never be dispatched.
        raise ValueError(f"{pipeline!r} has no status store: give it one, or pass status_store instead")
    if store is not None and store is not own:
        raise ValueError("status_store must be the pipeline's own status store (or left out)")
    return pipeline.status_received


def create_webhook_app(
    connectors: Mapping[str, ChannelConnector],
    *,
    settings: WebhookSettings | None = None,
    manage_lifecycle: bool = False,
    dedup_size: int = 100_000,
    status_store: StatusStore | None = None,
    pipeline: StatusReceiver | None = None,
) -> web.Application:
    """An aiohttp application serving the webhooks of ``connectors`` (by name).

    With ``manage_lifecycle`` the app initializes the connectors on startup and shuts them down
    on cleanup; otherwise the caller does (``async with`` each connector).

    :param dedup_size: how many recent keys and statuses the in-memory tables keep.
    :param status_store: where status callbacks are recorded (shared by several hosts); it decides
        what is dispatched. None: a table in this process's memory. The caller opens and closes it.
    :param pipeline: records through ``pipeline.status_received`` instead, so that a callback also
        settles a send held in doubt (``SendPipeline``, ``InProcessDispatcher``; pass it here
        rather than registering it as a plugin). A callback is dispatched when ``status_received``
        reports a change: its ``status_store`` applied it, or the ledger settled the message.
        ``status_store``, when also given, must be that same store. Not needed when the store
        settles sends itself (``PostgresStatusStore`` on the ledger's tables does).
    """
    settings = settings or WebhookSettings()
    handlers = _Handlers(dict(connectors), settings, dedup_size, _status_recorder(status_store, pipeline))
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[_errors])
    app[CONNECTORS_KEY] = handlers.connectors
    app[STATS_KEY] = handlers.stats
    app[STATUS_KEY] = handlers.statuses
    app.router.add_post("/webhooks/{connector}/messages", handlers.messages)
    app.router.add_post("/webhooks/{connector}/status", handlers.status)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    if manage_lifecycle:

        async def startup(_: web.Application) -> None:
            for connector in handlers.connectors.values():
                (await connector.initialize()).unwrap()

        async def cleanup(_: web.Application) -> None:
            for connector in handlers.connectors.values():
                await connector.shutdown()

        app.on_startup.append(startup)
        app.on_cleanup.append(cleanup)
    return app
