"""``ThreadedWebhookService``: the webhook service for synchronous views (Flask, Django), on its own event loop.

Why one long-lived loop in a thread of its own, and not ``asyncio.run`` per request:

- a connector opens one ``aiohttp.ClientSession`` in ``initialize()`` and uses it until
  ``shutdown()``; the session, and the status store's and the service's locks, belong to the loop
  they were created on. ``asyncio.run`` per request would make a new loop each time: the
  connectors' sessions would be used from a loop that is not theirs (aiohttp refuses, or worse,
  hangs), and re-initializing the connectors per request would cost a connection per webhook;
- a synchronous view cannot ``await``, and may be running in a thread whose own loop is already
  running (Django runs sync views from its ASGI handler's threads; a test may call the app from
  an async test): ``asyncio.run`` and ``loop.run_until_complete`` both fail there
  ("cannot be called from a running event loop").

So the service owns one loop, running forever in a daemon thread, on which the connectors are
initialized, every webhook handled and the connectors shut down. A view hands its request over
with ``asyncio.run_coroutine_threadsafe`` and waits (its own thread only) for the answer, bounded
by ``request_timeout``; concurrent requests from many WSGI threads run concurrently on the loop.
Only the loop's own thread may not wait on it (that would wait forever): it gets a ``RuntimeError``.

Usage (one per process, shared by all views; ``close()`` at exit, also registered with ``atexit``)::

    service = ThreadedWebhookService.from_config("messaging.toml").start()
    app.register_blueprint(create_webhook_blueprint(service))    # Flask; Django: webhook_urlpatterns(service)
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from messaging_core.config import WebhookSettings, load_config
from messaging_core.registry import ChannelRegistry
from messaging_core.webhooks.service import WebhookAnswer, WebhookKind, WebhookService

__all__ = ["ThreadedWebhookService"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_GRACE = 1.0
"""How much longer than ``request_timeout`` a view waits: the service answers 503 at the timeout itself."""


class ThreadedWebhookService:
    """A ``WebhookService`` on an event loop of its own, for synchronous views (see the module docstring).

    :param service: the service (its connectors, settings and status store); it runs only on this
        object's loop from then on.
    :param manage_lifecycle: ``start()`` initializes the service's connectors on the loop and
        ``close()`` shuts them down (the default: connectors initialized on another loop would hold
        a session of that loop). Without it, the connectors must have been opened on this loop.
    """

    def __init__(self, service: WebhookService, *, manage_lifecycle: bool = True) -> None:
        self.service = service
        self.manage_lifecycle = manage_lifecycle
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(
        cls, path: str | os.PathLike[str], *, registry: ChannelRegistry | None = None
    ) -> ThreadedWebhookService:
        """The connectors and ``[webhooks]`` settings of a configuration file (not started yet)."""
        config = load_config(path)
        registry = registry or ChannelRegistry.discover()
        return cls(WebhookService(registry.create_connectors(config), settings=config.webhooks))

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ThreadedWebhookService {state} connectors={sorted(self.service.connectors)}>"

    @property
    def settings(self) -> WebhookSettings:
        return self.service.settings

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> ThreadedWebhookService:
        """Start the loop thread and initialize the connectors on it; returns self. Idempotent."""
        with self._lock:
            if self.running:
                return self
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="messaging-webhooks", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        try:
            if self.manage_lifecycle:
                self._run(self.service.initialize_connectors(), timeout=None)
        except BaseException:
            self.close()
            raise
        atexit.register(self.close)
        return self

    def close(self) -> None:
        """Shut the connectors down (with ``manage_lifecycle``), then stop the loop and its thread. Idempotent."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        atexit.unregister(self.close)
        try:
            if self.manage_lifecycle:
                asyncio.run_coroutine_threadsafe(self.service.shutdown_connectors(), loop).result()
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    def __enter__(self) -> ThreadedWebhookService:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- what views call ----------------------------------------------------------------------------

    def answer(
        self,
        name: str,
        kind: WebhookKind,
        *,
        content_length: int | None,
        read_body: Callable[[int], bytes],
        content_type: str,
        scheme: str,
        host: str,
        path_qs: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
    ) -> WebhookAnswer:
        """Answer one webhook a synchronous view received; blocks the calling thread until answered.

        404 or 413 before the body is read (``early_answer``); ``read_body(n)`` reads at most ``n``
        bytes of it in the view's thread (413 past ``max_body_bytes``); the rest runs on the
        service's loop: the public URL and request (``request_of``), then ``handle``. 503 when no
        answer came within the request timeout (the handling is cancelled).
        """
        early = self.service.early_answer(name, kind, content_length)
        if early is not None:
            return early
        limit = self.settings.max_body_bytes
        body = read_body(limit + 1)  # one byte more tells a body of unknown length is too long
        if len(body) > limit:
            return self.service.too_large()
        request = self.service.request_of(
            content_type=content_type, body=body, scheme=scheme, host=host, path_qs=path_qs, headers=headers
        )
        try:
            return self._run(self.service.handle(name, kind, request), timeout=self.settings.request_timeout + _GRACE)
        except TimeoutError:
            log.warning("webhook %s/%s: no answer within the request timeout", name, kind)
            return WebhookAnswer.text(503, "timeout\n")

    def _run(self, coroutine: Coroutine[Any, Any, T], *, timeout: float | None) -> T:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            coroutine.close()
            raise RuntimeError(f"{self!r} is not started: call start() (or use it as a context manager) first")
        if threading.current_thread() is thread:
            coroutine.close()
            raise RuntimeError("a view cannot wait on the webhook loop from the loop's own thread")
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError from None
