"""The webhook host: an aiohttp application that receives provider webhooks for configured connectors.

Routes, per connector name:

- ``POST /webhooks/{connector}/messages`` — inbound messages → ``message_received``
- ``POST /webhooks/{connector}/status`` — delivery statuses → ``message_status_changed``
- ``GET /healthz`` — every connector's health (503 when one is unhealthy)

Answers: bad signature → 403 and nothing dispatched; malformed or unsupported payload → 400 with a
short reason; an observer that raises → 500 (so the provider retries). Redeliveries (same
idempotency token, same inbound message, same message + status) are acknowledged and dispatched
once; status updates that would move a message backwards (a late ``sent`` after ``delivered``)
are acknowledged and not dispatched. Body size and handling time are limited.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from messaging_core.config import WebhookSettings
from messaging_core.connector import ChannelConnector
from messaging_core.message import MessageSource
from messaging_core.results import ConnectorResult, MessageStatus
from messaging_core.schema import Capability

__all__ = ["CONNECTORS_KEY", "WebhookStats", "create_webhook_app", "public_url_of"]

log = logging.getLogger(__name__)

INVALID_SIGNATURE_CODES = frozenset({"INVALID_SIGNATURE"})


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
    def __init__(self, connectors: Mapping[str, ChannelConnector], settings: WebhookSettings, dedup_size: int) -> None:
        self.connectors = connectors
        self.settings = settings
        self.stats = WebhookStats()
        self.seen = {name: _Seen(dedup_size) for name in connectors}
        self.statuses = _StatusTable(dedup_size)
        # Striped locks: one dispatch at a time per message, with bounded memory.
        self.locks = [asyncio.Lock() for _ in range(256)]

    def _connector(self, request: web.Request, capability: Capability) -> tuple[str, ChannelConnector]:
        """The route's connector name (the key it was configured under) and the connector."""
        name = request.match_info["connector"]
        connector = self.connectors.get(name)
        if connector is None or capability not in connector.schema.capabilities:
            raise web.HTTPNotFound(text=f"no webhook {request.path}\n")
        if not connector.is_ready:
            raise web.HTTPServiceUnavailable(text=f"connector {name} is {connector.state.value}\n")
        return name, connector

    async def _source(self, request: web.Request) -> MessageSource:
        return await MessageSource.from_aiohttp_request(request, url=public_url_of(request, self.settings))

    def _refuse(self, result: ConnectorResult[Any]) -> web.Response:
        assert result.error is not None
        if result.error.code in INVALID_SIGNATURE_CODES:
            self.stats.forbidden += 1
            return web.Response(status=403, text="invalid signature\n")
        self.stats.rejected += 1
        return web.Response(status=400, text=f"{result.error.code}: {result.error.message}\n"[:300])

    async def messages(self, request: web.Request) -> web.StreamResponse:
        name, connector = self._connector(request, Capability.RECEIVE_MESSAGES)
        self.stats.received += 1
        async with asyncio.timeout(self.settings.request_timeout):
            source = await self._source(request)
            result = await connector.receive_messages(source, notify=False)
            if result.value is None:
                return self._refuse(result)
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
                return self._refuse(result)
            update = result.value
            seen = self.seen[name]
            token = connector.webhook_idempotency_key(source)
            subject = f"{name}:{update.remote_message_id or update.message_id}"
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

    async def healthz(self, request: web.Request) -> web.Response:
        # Concurrently, each within the request timeout: one slow provider must not hold the probe.
        checks = await asyncio.gather(*(self._health(connector) for connector in self.connectors.values()))
        report = dict(zip(self.connectors, checks, strict=True))
        healthy = all(check["healthy"] for check in checks)
        body = {"healthy": healthy, "connectors": report, "webhooks": self.stats.as_dict()}
        return web.json_response(body, status=200 if healthy else 503, dumps=json.dumps)

    async def _health(self, connector: ChannelConnector) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.settings.request_timeout):
                health = await connector.get_health()
        except TimeoutError:
            return {
                "state": connector.state.value,
                "healthy": False,
                "issues": [f"health check took longer than {self.settings.request_timeout:g} s"],
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


def create_webhook_app(
    connectors: Mapping[str, ChannelConnector],
    *,
    settings: WebhookSettings | None = None,
    manage_lifecycle: bool = False,
    dedup_size: int = 100_000,
) -> web.Application:
    """An aiohttp application serving the webhooks of ``connectors`` (by name).

    With ``manage_lifecycle`` the app initializes the connectors on startup and shuts them down
    on cleanup; otherwise the caller does (``async with`` each connector).
    """
    settings = settings or WebhookSettings()
    handlers = _Handlers(dict(connectors), settings, dedup_size)
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[_errors])
    app[CONNECTORS_KEY] = handlers.connectors
    app[STATS_KEY] = handlers.stats
    app[STATUS_KEY] = handlers.statuses
    app.router.add_post("/webhooks/{connector}/messages", handlers.messages)
    app.router.add_post("/webhooks/{connector}/status", handlers.status)
    app.router.add_get("/healthz", handlers.healthz)
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
