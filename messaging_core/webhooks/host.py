"""``WebhookHost``: the webhook application served on a socket, with its connectors and status store open.

``messaging serve`` and ``messaging demo`` both run one; an application that wants the webhook
host in its own process uses it the same way::

    async with WebhookHost(connectors, settings=config.webhooks, port=8080) as host:
        print("listening on", host.base_url)
        await stop.wait()

On entry the status store (if any) is reached once, every connector is initialized, then the
socket listens; on exit the server stops first (requests in flight finish), then the connectors
shut down, then the store closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
from collections.abc import Mapping
from types import TracebackType

from aiohttp import web

from messaging_core.campaigns.protocols import StatusStore
from messaging_core.config import MetricsSettings, WebhookSettings
from messaging_core.connector import ChannelConnector
from messaging_core.errors import ConfigurationError, ConnectorStateError
from messaging_core.webhooks.app import SERVICE_KEY, STATS_KEY, create_webhook_app
from messaging_core.webhooks.service import StatusReceiver, WebhookService, WebhookStats

__all__ = ["WebhookHost"]


class WebhookHost:
    """The webhook routes of ``connectors`` served on ``host:port`` (or on a bound ``sock``).

    :param connectors: the connectors by route name; the host initializes them and shuts them down.
    :param settings: the ``[webhooks]`` settings (public URL, limits); ``host``/``port`` default to theirs.
    :param status_store: where status callbacks are recorded (shared by several hosts); the host
        reaches it once on entry and closes it on exit when it has a ``close()``.
    :param pipeline: records through ``pipeline.status_received`` (see ``create_webhook_app``).
    :param sock: an already bound socket to serve on (its port can be known before the host starts).
    :param metrics: the ``[metrics]`` settings: when enabled, ``GET /metrics`` on the same port.
    """

    def __init__(
        self,
        connectors: Mapping[str, ChannelConnector],
        *,
        settings: WebhookSettings | None = None,
        status_store: StatusStore | None = None,
        pipeline: StatusReceiver | None = None,
        host: str | None = None,
        port: int | None = None,
        sock: socket.socket | None = None,
        metrics: MetricsSettings | None = None,
    ) -> None:
        self.settings = settings or WebhookSettings()
        self.connectors = dict(connectors)
        self.status_store = status_store
        self.app = create_webhook_app(
            self.connectors, settings=self.settings, status_store=status_store, pipeline=pipeline, metrics=metrics
        )
        self._host = host or self.settings.host
        self._port = self.settings.port if port is None else port
        self._sock = sock
        self._stack: contextlib.AsyncExitStack | None = None
        self.base_url = ""
        """``http://host:port`` actually bound (with port 0, the port the system picked); set on entry."""

    def __repr__(self) -> str:
        return f"<WebhookHost {self.base_url or 'not started'} connectors={sorted(self.connectors)}>"

    @property
    def service(self) -> WebhookService:
        """The webhook service behind the routes (what each connector takes: ``service.routes()``)."""
        return self.app[SERVICE_KEY]

    @property
    def stats(self) -> WebhookStats:
        """The counters of the running application (also on ``/healthz``)."""
        return self.app[STATS_KEY]

    async def __aenter__(self) -> WebhookHost:
        async with contextlib.AsyncExitStack() as stack:
            store = self.status_store
            if store is not None:
                # Registered first, so closed last: after the server has finished the requests in flight.
                stack.push_async_callback(_close_store, store)
                await _check_store(store, self.settings.request_timeout)
            for name, connector in self.connectors.items():
                stack.push_async_callback(connector.shutdown)
                result = await connector.initialize()
                if result.error is not None:
                    raise ConnectorStateError(f"connector {name!r}: {result.error.code}: {result.error.message}")
            runner = web.AppRunner(self.app, access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            if self._sock is not None:
                await web.SockSite(runner, self._sock).start()
            else:
                try:
                    await web.TCPSite(runner, self._host, self._port).start()
                except OSError as err:  # port in use, unknown host...
                    raise OSError(
                        err.errno, f"cannot listen on {self._host}:{self._port}: {err.strerror or err}"
                    ) from err
            address_host, address_port = runner.addresses[0][:2]
            self.base_url = (
                f"http://[{address_host}]:{address_port}"
                if ":" in address_host
                else f"http://{address_host}:{address_port}"
            )
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()


async def _check_store(store: StatusStore, seconds: float) -> None:
    """Reach the store once before listening: an unreachable database is one clear error, not a flood of 500s."""
    try:
        async with asyncio.timeout(seconds):
            await store.get("messaging-webhook-host-startup-check")
    except Exception as err:  # whatever the driver raises (refused, unknown database, auth): the store is unusable
        reason = f"no answer within {seconds:g} s" if isinstance(err, TimeoutError) else f"{type(err).__name__}: {err}"
        raise ConfigurationError(f"status store {store!r} is unreachable ({reason})") from err


async def _close_store(store: StatusStore) -> None:
    """Close a store that has a ``close()`` (stores made from URLs own a connection pool); the protocol has none."""
    close = getattr(store, "close", None)
    if close is None:
        return
    result = close()
    if inspect.isawaitable(result):
        await result
