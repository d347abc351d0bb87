"""Fixtures of the scale-out tests: real PostgreSQL and Redis on loopback, one namespace per test.

Each test gets its own PostgreSQL schema (``t_<uuid>``, dropped afterwards) and its own Redis key
prefix (its keys deleted afterwards), so tests never see each other's rows or keys and can run
against the shared development services. An unreachable service goes through ``unreachable``
(the root conftest's rule: a failure under CI, a skip with the service, address and start command
elsewhere; ``plugins/scale/ci_services.sh`` starts them); any other failure is a failure.

Tests run with ``--import-mode=importlib``: test modules cannot import this file, so shared
helpers reach them as fixtures (``make_messages``).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, NoReturn
from urllib.parse import urlsplit

import aio_pika
import aio_pika.exceptions
import asyncpg
import pytest
import redis.asyncio as aioredis
import redis.exceptions

from messaging_core import Endpoint, Message, TextContent
from messaging_scale import PostgresLedger, PostgresStatusStore

PG_DSN = os.environ.get("MESSAGING_SCALE_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MESSAGING_SCALE_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("MESSAGING_SCALE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
START_HINT = "start it with `bash plugins/scale/ci_services.sh` (PostgreSQL, Redis, RabbitMQ and NATS)"

Unreachable = Callable[[str, str, BaseException], NoReturn]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "services: needs PostgreSQL, Redis, RabbitMQ or NATS on loopback (real servers)")


@pytest.fixture
def unreachable(cannot_run: Callable[[str], NoReturn]) -> Unreachable:
    """``unreachable(service, url, error)``: the test needs ``service`` at ``url`` and could not connect.

    A failure under CI, a skip elsewhere (``cannot_run``); the reason names the service, the
    address and the command that starts it. The URL's password is masked: reports are printed.
    """

    def report(service: str, url: str, error: BaseException) -> NoReturn:
        reason = f"{service} unreachable at {url} ({error!r}); {START_HINT}"
        password = urlsplit(url).password
        cannot_run(reason.replace(password, "***") if password else reason)

    return report


@pytest.fixture
def pg_dsn() -> str:
    """The PostgreSQL server the tests use (``MESSAGING_SCALE_PG_DSN``)."""
    return PG_DSN


@pytest.fixture
async def pg_pool(unreachable: Unreachable) -> AsyncIterator[Any]:
    """An asyncpg pool on the test database (20 connections at most)."""
    try:
        pool = await asyncio.wait_for(asyncpg.create_pool(PG_DSN, min_size=1, max_size=20), timeout=10)
    except (OSError, TimeoutError, asyncpg.CannotConnectNowError) as err:
        unreachable("PostgreSQL", PG_DSN, err)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def pg_schema(pg_pool: Any) -> AsyncIterator[str]:
    """A fresh schema with the ledger's tables, dropped after the test."""
    name = f"t_{uuid.uuid4().hex}"
    await PostgresLedger(pg_pool, schema=name).migrate()
    try:
        yield name
    finally:
        async with pg_pool.acquire() as conn:
            await conn.execute(f"drop schema if exists {name} cascade")


class CountingAcquires:
    """A pool counting the connections taken from it: each query or transaction of a store takes one."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.acquired = 0

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        self.acquired += 1
        async with self.pool.acquire() as conn:
            yield conn


@pytest.fixture
def counted_pool(pg_pool: Any) -> CountingAcquires:
    """``pg_pool``, counting its acquisitions (``counted_pool.acquired``)."""
    return CountingAcquires(pg_pool)


@pytest.fixture
def ledger(pg_pool: Any, pg_schema: str) -> PostgresLedger:
    """A ledger in the test's own schema."""
    return PostgresLedger(pg_pool, schema=pg_schema)


@pytest.fixture(params=["batched", "alone"])
def status_store(request: pytest.FixtureRequest, pg_pool: Any, pg_schema: str) -> PostgresStatusStore:
    """A status store on the same tables as ``ledger``: batching updates (the default), or not (``batch_size=1``).

    Every test of the store runs on both write paths, so both keep its promises.
    """
    batch_size = 1 if request.param == "alone" else 100
    return PostgresStatusStore(pg_pool, schema=pg_schema, batch_size=batch_size)


@pytest.fixture
async def redis_client(unreachable: Unreachable) -> AsyncIterator[Any]:
    """A ``redis.asyncio`` client on the test server."""
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        await client.ping()
    except (OSError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as err:
        await client.aclose()
        unreachable("Redis", REDIS_URL, err)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def redis_prefix(redis_client: Any) -> AsyncIterator[str]:
    """A key prefix of the test's own; its keys are deleted after the test."""
    prefix = f"t-{uuid.uuid4().hex}"
    try:
        yield prefix
    finally:
        keys = [key async for key in redis_client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await redis_client.delete(*keys)


@pytest.fixture
def redis_url() -> str:
    """The Redis server the tests use (``MESSAGING_SCALE_REDIS_URL``)."""
    return REDIS_URL


@pytest.fixture
async def amqp_names(unreachable: Unreachable) -> AsyncIterator[tuple[str, str]]:
    """``(amqp_url, name)``: a RabbitMQ server and a name for the test's queues and exchange.

    Everything named ``<name>`` or ``<name>.*`` (queues) and the exchange ``<name>`` is deleted
    after the test.
    """
    try:
        connection = await asyncio.wait_for(aio_pika.connect(AMQP_URL), timeout=10)
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPConnectionError) as err:
        unreachable("RabbitMQ", AMQP_URL, err)
    await connection.close()
    name = f"t-{uuid.uuid4().hex}"
    try:
        yield AMQP_URL, name
    finally:
        # A new connection: the server may have been restarted during the test (T7).
        connection = await asyncio.wait_for(aio_pika.connect(AMQP_URL), timeout=30)
        async with connection:
            channel = await connection.channel()
            for queue in (name, f"{name}.dead"):
                await channel.queue_delete(queue)
            await channel.exchange_delete(name)


@pytest.fixture
def make_messages() -> Callable[..., list[tuple[Message, str, int]]]:
    """``make_messages(n, prefix="m", senders=("+15005550006",))``: ledger entries of SMS messages."""

    def make(n: int, prefix: str = "m", senders: tuple[str, ...] = ("+15005550006",)) -> list[tuple[Message, str, int]]:
        entries = []
        for i in range(n):
            sender = senders[i % len(senders)]
            message = Message(
                id=f"{prefix}-{i:06d}",
                sender=Endpoint.phone(sender),
                receiver=Endpoint.phone(f"+1415555{i % 10000:04d}"),
                content=TextContent(f"hello {i}"),
                properties={"campaign_row": i},
            )
            entries.append((message, sender, 1 + i % 3))
        return entries

    return make
