"""The webhook routes for ASGI frameworks: a mountable Starlette app and a FastAPI ``APIRouter``.

Both are thin over a ``WebhookService``: the same verification, deduplication, recording and
dispatch as ``messaging serve``, the same routes (``POST /webhooks/{connector}/messages`` and
``/status``, relative to where they are mounted), the same answers. Each request is read (body
size and time limited), its public URL rebuilt with ``public_url`` (mount prefix included; the
``[webhooks]`` public URL or, when trusted, the forwarded headers), and the service's
``WebhookAnswer`` relayed as it is: status, content type, headers, body.

The connectors are used on the server's event loop, so they must be initialized on it: by the
Starlette app itself with ``manage_lifecycle=True`` (when it is the application served, or its
lifespan is run by yours), or by your application's lifespan (``await
service.initialize_connectors()`` / ``shutdown_connectors()``). Starlette does not run the lifespan
of a mounted app: when you mount, open the connectors in the parent's lifespan.

Needs the ``fastapi`` extra (``pluggable-messaging[fastapi]``), or ``[starlette]`` without the router.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from messaging_core.webhooks.service import WebhookAnswer, WebhookKind, WebhookService

if TYPE_CHECKING:
    from fastapi import APIRouter

__all__ = ["create_webhook_asgi_app", "create_webhook_router"]

_PATHS: dict[WebhookKind, str] = {
    "messages": "/webhooks/{connector}/messages",
    "status": "/webhooks/{connector}/status",
}


def _response(answer: WebhookAnswer) -> Response:
    response = Response(answer.body, status_code=answer.status)
    if answer.content_type is not None:
        # Set as given: Starlette's media_type would add a charset the connector did not ask for.
        response.headers["content-type"] = answer.content_type
    for name, value in answer.headers:
        response.headers.append(name, value)
    return response


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is longer than ``limit`` (whatever Content-Length said)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


class _Endpoints:
    def __init__(self, service: WebhookService) -> None:
        self.service = service

    async def handle(self, request: Request, kind: WebhookKind) -> Response:
        service = self.service
        name = request.path_params["connector"]
        early = service.early_answer(name, kind, _content_length(request))
        if early is not None:
            return _response(early)
        try:
            # The body arrives within the request timeout too: a client that never sends it is cut off.
            async with asyncio.timeout(service.settings.request_timeout):
                body = await _read_body(request, service.settings.max_body_bytes)
        except TimeoutError:
            return _response(WebhookAnswer.text(503, "timeout\n"))
        if body is None:
            return _response(service.too_large())
        url = request.url
        source = service.request_of(
            content_type=request.headers.get("content-type", ""),
            body=body,
            scheme=url.scheme,
            host=url.netloc,
            path_qs=url.path + (f"?{url.query}" if url.query else ""),
            headers=request.headers.items(),  # every field, repeated ones too
        )
        return _response(await service.handle(name, kind, source))

    async def messages(self, request: Request) -> Response:
        return await self.handle(request, "messages")

    async def status(self, request: Request) -> Response:
        return await self.handle(request, "status")


def create_webhook_asgi_app(service: WebhookService, *, manage_lifecycle: bool = False) -> Starlette:
    """A Starlette application serving the webhooks of ``service``'s connectors (mount it, or serve it).

    With ``manage_lifecycle`` the app's lifespan initializes the connectors and shuts them down
    (only when it is the application served: a mounted app's lifespan is not run). The service is
    ``app.state.service``.
    """
    endpoints = _Endpoints(service)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if manage_lifecycle:
            await service.initialize_connectors()
        try:
            yield
        finally:
            if manage_lifecycle:
                await service.shutdown_connectors()

    app = Starlette(
        routes=[
            Route(_PATHS["messages"], endpoints.messages, methods=["POST"]),
            Route(_PATHS["status"], endpoints.status, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.service = service
    return app


def create_webhook_router(service: WebhookService) -> APIRouter:
    """A FastAPI ``APIRouter`` with the two webhook routes over ``service``: ``app.include_router(router)``.

    Initialize the service's connectors in your application's lifespan
    (``await service.initialize_connectors()``). The routes take the raw request (no body model), so
    that the signature is checked over the bytes the provider sent; they are left out of the OpenAPI schema.
    """
    from fastapi import APIRouter  # only the router needs FastAPI: the Starlette app works without it

    endpoints = _Endpoints(service)
    router = APIRouter()
    router.add_api_route(_PATHS["messages"], endpoints.messages, methods=["POST"], include_in_schema=False)
    router.add_api_route(_PATHS["status"], endpoints.status, methods=["POST"], include_in_schema=False)
    return router
