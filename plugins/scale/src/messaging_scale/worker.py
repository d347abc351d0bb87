"""The worker process: the stock Taskiq worker, with the send pipeline built from a configuration file.

``messaging worker --config FILE`` runs Taskiq's own worker (its process manager starts
``--workers`` processes and restarts any that dies) on ``broker_from_environment``, the broker
factory of this module. The same works with Taskiq's command line::

    MESSAGING_WORKER_CONFIG=messaging.toml taskiq worker messaging_scale.worker:broker_from_environment -w 4

Each worker process, at start-up (``WorkerRuntime``):

- opens the PostgreSQL ledger and the Redis limiter named by ``[dispatcher]`` (one pool each per
  process; every ledger operation holds one pooled connection, never across a pace wait or a
  provider call);
- installs a ``ChunkSender`` that creates, on first use, the connector a campaign names, from
  the same file, and a ``SendPipeline`` for it (the shared limiter, an optional account-wide cap
  on calls in flight, the table's lease, retry and in-doubt options);
- starts a ``Sweeper`` (one process of the fleet sweeps per interval);
- with ``[metrics] enabled = true``, answers ``GET /metrics`` on ``[metrics] port`` + the
  process's index (``worker-0`` on ``port``, ``worker-1`` on ``port + 1``...).

The ledger each process opens is chosen by the code that builds the runtime (``ledger_factory``
of ``WorkerRuntime`` and ``broker_from_environment``), never by the environment: the chaos tests
start workers through their own broker factory with a ledger that crashes or claims unsafely
(``plugins/scale/tests/chaos_worker.py``). No setting and no environment variable weakens the
ledger's no-double-send check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import re
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any

from taskiq import AsyncBroker, TaskiqEvents, TaskiqState

from messaging_core import telemetry
from messaging_core.campaigns import DispatcherSettings, SendPipeline
from messaging_core.config import MessagingConfig, load_config
from messaging_core.connector import ChannelConnector
from messaging_core.errors import ConfigurationError
from messaging_core.registry import ChannelRegistry
from messaging_scale._brokers import broker_from_settings
from messaging_scale._chunks import ChunkKicker, ChunkSender, install_sender
from messaging_scale._ledger import PostgresLedger
from messaging_scale._limiter import RedisConcurrencyLimit, RedisGcraLimiter
from messaging_scale._settings import TaskiqSettings
from messaging_scale._status import PostgresStatusStore
from messaging_scale._sweeper import Sweeper
from messaging_scale._urls import REDIS_OPTIONS, redis_client, split_options

__all__ = [
    "CONFIG_ENV",
    "LedgerFactory",
    "WorkerRuntime",
    "broker_from_environment",
    "preflight",
    "taskiq_settings",
]

CONFIG_ENV = "MESSAGING_WORKER_CONFIG"
"""The environment variable naming the configuration file of ``broker_from_environment``."""

LedgerFactory = Callable[[str], PostgresLedger]
"""Opens a worker process's ledger from the ``[dispatcher]`` table's ``ledger`` URL (default:
``PostgresLedger.from_url``). The runtime closes that ledger at shutdown: it should own its pool."""

log = logging.getLogger(__name__)


def taskiq_settings(config: MessagingConfig, registry: ChannelRegistry) -> tuple[DispatcherSettings, TaskiqSettings]:
    """The ``[dispatcher]`` table of ``config``, checked for ``kind = "taskiq"``."""
    if not config.dispatcher:
        raise ConfigurationError(f'{config.where}: no [dispatcher] table (kind = "taskiq" is needed for workers)')
    table = DispatcherSettings.from_mapping(config.dispatcher, registry.store_schemes())
    if table.kind != "taskiq":
        raise ConfigurationError(f'{config.where}: [dispatcher] kind is {table.kind!r}; workers need "taskiq"')
    return table, TaskiqSettings.from_dispatcher(table)


async def preflight(config: MessagingConfig, registry: ChannelRegistry) -> list[str]:
    """Every reason the workers of ``config`` could not work, each in one line (empty: ready).

    ``messaging worker`` runs it once, before any process starts: a wrong password or an
    unreachable service is then one clear error, not workers failing chunk after chunk. It
    connects to the ledger (creating its tables if needed), the limiter and the broker, and
    opens and tests every enabled connector.
    """
    _, settings = taskiq_settings(config, registry)
    problems: list[str] = []
    if config.metrics.enabled:
        try:
            telemetry.enable_metrics()
        except ConfigurationError as err:
            problems.append(f"{config.where}: [metrics] {err}")

    async def check(what: str, job: Coroutine[Any, Any, object]) -> None:
        try:
            async with asyncio.timeout(20):
                await job
        except TimeoutError:
            problems.append(f"{what}: no answer within 20 s")
        except ConfigurationError as err:
            problems.append(str(err))
        except OSError as err:  # refused, unknown host: say which service
            problems.append(f"{what}: cannot connect: {err.strerror or err}")
        except Exception as err:
            # Named by what was checked (a redis:// broker is not the limiter), described as usual.
            problems.append(f"{what}: {type(err).__name__}: {err}")

    ledger = PostgresLedger.from_url(settings.ledger)
    try:
        await check("the ledger (PostgreSQL)", ledger.campaign("-"))
    finally:
        await ledger.close()
    if settings.limiter is not None:
        client = redis_client(*split_options(settings.limiter, REDIS_OPTIONS))
        try:
            await check("the limiter (Redis)", client.ping())
        finally:
            await client.aclose()
    await check(f"the broker ({_broker_kind(settings.broker)})", _broker_reachable(settings))
    for name, spec in config.connectors.items():
        if spec.enabled:
            await check(f"connector {name!r}", _connector_ready(registry, name, spec))
    return problems


def _broker_kind(url: str) -> str:
    scheme = url.split("://", 1)[0].lower()
    return {"redis": "Redis Streams", "rediss": "Redis Streams", "nats": "NATS", "tls": "NATS"}.get(scheme, "RabbitMQ")


async def _broker_reachable(settings: TaskiqSettings) -> None:
    """Start and stop the broker the workers will use: it connects and declares its queue or stream."""
    broker = broker_from_settings(settings)
    quiet = logging.getLogger("aiormq.connection")  # it logs a failed connect itself, with a traceback
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        await broker.startup()
    finally:
        quiet.setLevel(level)
        with contextlib.suppress(Exception):  # whatever start-up opened before it failed
            await broker.shutdown()


async def _connector_ready(registry: ChannelRegistry, name: str, spec: Any) -> None:
    connector = registry.create_connector(spec)
    try:
        started = await connector.initialize()
        if started.error is not None:
            raise ConfigurationError(f"connector {name!r}: {started.error.code}: {started.error.message}")
        tested = await connector.test_connection()
        if tested.error is not None:
            raise ConfigurationError(f"connector {name!r}: {tested.error.code}: {tested.error.message}")
    finally:
        await connector.shutdown()


def broker_from_environment(ledger_factory: LedgerFactory = PostgresLedger.from_url) -> AsyncBroker:
    """The broker of a worker process, from the file ``$MESSAGING_WORKER_CONFIG`` (Taskiq's broker factory).

    :param ledger_factory: how the process opens its ledger (see ``WorkerRuntime``). Taskiq
        calls the factory without arguments; a broker factory of your own may pass one.
    """
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise ConfigurationError(f"set {CONFIG_ENV} to the configuration file (or run `messaging worker --config`)")
    return WorkerRuntime(load_config(path), ChannelRegistry.discover(), ledger_factory=ledger_factory).broker


class WorkerRuntime:
    """What one worker process owns: the broker, the ledger, the limiter, connectors and their pipelines.

    Built before the event loop runs (Taskiq imports the broker first); everything that connects
    is opened in the broker's ``WORKER_STARTUP`` event and closed in ``WORKER_SHUTDOWN``.

    :param ledger_factory: opens the ledger from the ``[dispatcher]`` table's URL at start-up
        (default ``PostgresLedger.from_url``). The one seam for another ledger class; the chaos
        tests use it for ledgers that crash between the provider's answer and the record.
    """

    def __init__(
        self,
        config: MessagingConfig,
        registry: ChannelRegistry,
        *,
        ledger_factory: LedgerFactory = PostgresLedger.from_url,
    ) -> None:
        self.config = config
        self.registry = registry
        self.ledger_factory = ledger_factory
        _, self.settings = taskiq_settings(config, registry)
        if config.metrics.enabled:
            telemetry.enable_metrics()  # now: a missing extra fails the process at start, not at its first send
        settings = self.settings
        self.broker = broker_from_settings(settings)
        self.broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, self.startup)
        self.broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, self.shutdown)
        self.ledger: PostgresLedger | None = None
        self.limiter: RedisGcraLimiter | None = None
        self._redis: Any = None
        self._cap: RedisConcurrencyLimit | None = None
        self._pipelines: dict[str, SendPipeline] = {}
        self._lock = asyncio.Lock()
        self._sweeper: asyncio.Task[None] | None = None
        self.metrics_server: telemetry.MetricsServer | None = None

    def __repr__(self) -> str:
        return f"<WorkerRuntime {self.config.where} queue={self.settings.queue!r}>"

    async def startup(self, state: TaskiqState | None = None) -> None:
        """Open the stores, install the chunk sender, start the sweeper."""
        settings = self.settings
        self.ledger = ledger = self.ledger_factory(settings.ledger)
        if settings.limiter is not None:
            assert settings.messages_per_second is not None
            self.limiter = RedisGcraLimiter.from_url(
                settings.limiter, rate=settings.messages_per_second, rates=settings.rates, start_delay=0.1
            )
            if settings.account_concurrency is not None:
                address, options = split_options(settings.limiter, REDIS_OPTIONS)
                self._redis = redis_client(address, options)
                self._cap = RedisConcurrencyLimit(
                    self._redis,
                    key=options.get("account", "default"),
                    limit=settings.account_concurrency,
                    ttl=max(30.0, 2 * (settings.request_timeout or 30.0)),
                    prefix=f"{options.get('prefix', 'messaging:rl')}:cc",
                )
        sender = ChunkSender(
            ledger,
            self.pipeline,
            concurrency=settings.concurrency or 100,
            max_inline_wait=settings.max_inline_wait,
            defer_lead=settings.defer_lead(),
        )
        install_sender(self.broker, sender)
        kicker = ChunkKicker(self.broker, chunk_size=settings.chunk_size)
        sweeper = Sweeper(
            ledger,
            kicker,
            queue=settings.queue,
            interval=settings.sweep_interval,
            stale_after=settings.stale_after,
            reconcile=settings.in_doubt == "probe_then_resend",
            webhook_events_retention=settings.webhook_events_retention,
        )
        self._sweeper = asyncio.create_task(_after(settings.sweep_interval, sweeper.run()), name="messaging sweeper")
        await self._open_connectors()
        metrics = self.config.metrics
        if metrics.enabled:
            self.metrics_server = await telemetry.serve_metrics(metrics.host, _metrics_port(metrics.port))
            log.info("worker metrics: GET %s", self.metrics_server.url)
        log.info("worker ready: queue %s, ledger schema %s", settings.queue, ledger.schema)

    async def _open_connectors(self) -> None:
        """Open every enabled connector now and test its connection, instead of on the first chunk.

        A wrong credential shows in the log at start-up, and the first sends of a campaign do not
        pay for connection set-up after their pace slot (which would bunch them with the next
        ones at the provider). A connector that fails here is logged and tried again lazily.
        """
        for name, spec in self.config.connectors.items():
            if not spec.enabled:
                continue
            try:
                pipeline = await self.pipeline(name)
            except ConfigurationError as err:
                log.error("connector %s not ready at start-up: %s", name, err)
                continue
            tested = await pipeline.connector.test_connection()
            if tested.error is not None:
                log.error("connector %s: connection test failed: %s", name, tested.error.message)

    async def pipeline(self, connector_name: str | None) -> SendPipeline:
        """The pipeline of the connector named ``connector_name`` in the configuration (created once)."""
        name = connector_name or self._only_connector()
        pipeline = self._pipelines.get(name)
        if pipeline is not None:
            return pipeline
        async with self._lock:
            pipeline = self._pipelines.get(name)
            if pipeline is None:
                if self.ledger is None:
                    raise RuntimeError("the worker's services are not open (call start() first)")
                connector = await self._open_connector(name)
                # The suppression list is the ledger's table, read through a status store on its pool.
                suppressions = (
                    PostgresStatusStore(self.ledger.pool, schema=self.ledger.schema, batch_size=1)
                    if self.settings.suppressions
                    else None
                )
                pipeline = SendPipeline(
                    connector,
                    ledger=self.ledger,
                    limiter=self.limiter,
                    status_store=suppressions,
                    call_slot=self._slot if self._cap is not None else None,
                    **self.settings.pipeline_options(),
                )
                self._pipelines[name] = pipeline
        return pipeline

    def _slot(self) -> AbstractAsyncContextManager[object]:
        assert self._cap is not None
        return self._cap.slot()

    def _only_connector(self) -> str:
        # Rows added by another dispatcher kind name no connector: they can only mean the one there is.
        enabled = [name for name, spec in self.config.connectors.items() if spec.enabled]
        if len(enabled) != 1:
            raise ConfigurationError(
                f"{self.config.where}: a message of a campaign with no connector name, and "
                f"{len(enabled)} enabled connectors to choose from"
            )
        return enabled[0]

    async def _open_connector(self, name: str) -> ChannelConnector:
        spec = self.config.connectors.get(name)
        if spec is None or not spec.enabled:
            raise ConfigurationError(f"{self.config.where}: no enabled connector {name!r} (a campaign names it)")
        connector = self.registry.create_connector(spec)
        result = await connector.initialize()
        if result.error is not None:
            await connector.shutdown()
            raise ConfigurationError(f"connector {name!r}: {result.error.code}: {result.error.message}")
        return connector

    async def shutdown(self, state: TaskiqState | None = None) -> None:
        """Stop the sweeper and the metrics endpoint, shut the connectors down, close the stores."""
        if self.metrics_server is not None:
            await self.metrics_server.close()
            self.metrics_server = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for pipeline in self._pipelines.values():
            await pipeline.connector.shutdown()
        self._pipelines.clear()
        if self.limiter is not None:
            await self.limiter.close()
        if self._redis is not None:
            await self._redis.aclose()
        if self.ledger is not None:
            await self.ledger.close()


def _metrics_port(base: int) -> int:
    """The metrics port of this process: ``base`` plus its index among Taskiq's worker processes.

    Taskiq's process manager names its processes ``worker-<index>``; a process started otherwise
    listens on ``base`` (0 stays 0: any free port, logged).
    """
    found = re.fullmatch(r"worker-(\d+)", multiprocessing.current_process().name)
    return base + int(found.group(1)) if base and found else base


async def _after(delay: float, job: Coroutine[Any, Any, None]) -> None:
    # The broker connects after its start-up handlers ran: the first sweep waits one interval.
    try:
        await asyncio.sleep(delay)
        await job
    finally:
        job.close()
