"""The webhook host's aiohttp application: a thin adapter over ``WebhookService``.

Routes, per connector name (only the kinds the connector's capabilities allow):

- ``POST /webhooks/{connector}/messages`` — inbound messages → ``message_received``
- ``POST /webhooks/{connector}/status`` — delivery statuses → ``message_status_changed``
- ``GET /healthz`` — liveness: the process and its event loop answer (no provider call)
- ``GET /readyz`` — readiness: every connector's health, cached for ``readiness_cache_seconds``
  (503 with the reasons when one is unhealthy)
- ``GET /metrics`` — the framework's Prometheus metrics, only with ``[metrics] enabled = true``

The adapter reads the request (body size and time limited), builds the ``WebhookRequest`` with the
public URL the provider called (``public_url_of``), and answers what the service says: verification,
deduplication, recording, dispatch and the rule for failing observers are the service's
(``messaging_core.webhooks.service``), the same for every web framework.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from messaging_core import telemetry
from messaging_core.campaigns.protocols import StatusStore
from messaging_core.config import MetricsSettings, WebhookSettings
from messaging_core.connector import ChannelConnector
from messaging_core.webhook_request import WebhookRequest
from messaging_core.webhooks.service import (
    StatusReceiver,
    WebhookAnswer,
    WebhookKind,
    WebhookService,
    WebhookStats,
    public_url,
)

__all__ = ["CONNECTORS_KEY", "SERVICE_KEY", "STATS_KEY", "create_webhook_app", "public_url_of"]

log = logging.getLogger(__name__)

CONNECTORS_KEY: web.AppKey[Mapping[str, ChannelConnector]] = web.AppKey("connectors", Mapping)
SERVICE_KEY: web.AppKey[WebhookService] = web.AppKey("webhook_service", WebhookService)
STATS_KEY: web.AppKey[WebhookStats] = web.AppKey("webhook_stats", WebhookStats)


def public_url_of(request: web.Request, settings: WebhookSettings) -> str:
    """The URL the provider called, as it signed it.

    The rules are ``public_url``'s (the configured ``public_url``, then forwarded headers when
    ``trust_forwarded_headers`` is on), the same for every web framework adapter.
    """
    return public_url(
        settings, scheme=request.scheme, host=request.host, path_qs=request.path_qs, headers=request.headers
    )


def _response(answer: WebhookAnswer) -> web.Response:
    response = web.Response(status=answer.status, body=answer.body, content_type=answer.content_type)
    for name, value in answer.headers:
        response.headers.add(name, value)
    return response


class _Routes:
    def __init__(self, service: WebhookService, settings: WebhookSettings) -> None:
        self.service = service
        self.settings = settings

    async def _webhook(self, request: web.Request, kind: WebhookKind) -> web.Response:
        name = request.match_info["connector"]
        if self.service.connector(name, kind) is None:
            raise web.HTTPNotFound(text=f"no webhook {request.path}\n")
        # The body arrives within the request timeout too: a client that never sends it is cut off.
        async with asyncio.timeout(self.settings.request_timeout):
            source = await WebhookRequest.from_aiohttp_request(request, url=public_url_of(request, self.settings))
        return _response(await self.service.handle(name, kind, source))

    async def messages(self, request: web.Request) -> web.Response:
        return await self._webhook(request, "messages")

    async def status(self, request: web.Request) -> web.Response:
        return await self._webhook(request, "status")

    async def healthz(self, request: web.Request) -> web.Response:
        """Liveness: answering at all proves the process and its event loop work; no provider is called."""
        return web.json_response({"alive": True, "webhooks": self.service.stats.as_dict()}, dumps=json.dumps)

    async def readyz(self, request: web.Request) -> web.Response:
        """Readiness: every connector's health, from a cache a few seconds old at most."""
        ready, report = await self.service.readiness()
        return web.json_response({"ready": ready, "connectors": report}, status=200 if ready else 503, dumps=json.dumps)


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
    status_store: StatusStore | None = None,
    pipeline: StatusReceiver | None = None,
    metrics: MetricsSettings | None = None,
) -> web.Application:
    """An aiohttp application serving the webhooks of ``connectors`` (by name), through a ``WebhookService``.

    With ``manage_lifecycle`` the app initializes the connectors on startup and shuts them down
    on cleanup; otherwise the caller does (``async with`` each connector, or ``WebhookHost``).
    ``status_store``, ``pipeline`` and ``dedup_size`` are the service's (see ``WebhookService``):
    pass the dispatcher as ``pipeline`` to let status callbacks settle sends held in doubt.
    With ``metrics.enabled`` the framework records metrics and ``GET /metrics`` answers them
    (``ConfigurationError`` when ``prometheus-client`` is not installed); otherwise that route is 404.
    """
    settings = settings or WebhookSettings()
    service = WebhookService(
        connectors, settings=settings, status_store=status_store, pipeline=pipeline, dedup_size=dedup_size
    )
    routes = _Routes(service, settings)
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[_errors])
    app[CONNECTORS_KEY] = service.connectors
    app[SERVICE_KEY] = service
    app[STATS_KEY] = service.stats
    app.router.add_post("/webhooks/{connector}/messages", routes.messages)
    app.router.add_post("/webhooks/{connector}/status", routes.status)
    app.router.add_get("/healthz", routes.healthz)
    app.router.add_get("/readyz", routes.readyz)
    if metrics is not None and metrics.enabled:
        telemetry.enable_metrics()
        app.router.add_get("/metrics", telemetry.metrics_view)
    if manage_lifecycle:

        async def startup(_: web.Application) -> None:
            await service.initialize_connectors()

        async def cleanup(_: web.Application) -> None:
            await service.shutdown_connectors()

        app.on_startup.append(startup)
        app.on_cleanup.append(cleanup)
    return app
