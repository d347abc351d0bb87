"""Stores built from URLs (``[dispatcher] ledger = "postgresql://…"``), connecting on first use.

The core's store factories are synchronous, and a configuration is often loaded before any event
loop runs, so a store made from a URL opens its connection pool when it is first used, inside
the loop that uses it.

Our own settings travel in the URL's query and are removed before the URL reaches the driver
(asyncpg would send unknown parameters to the server as settings):

- PostgreSQL: ``schema`` (default ``messaging``), ``pool_min_size``, ``pool_max_size``,
  ``migrate`` (``true`` by default: create the tables on first use); for the status store,
  ``batch_size`` and ``batch_wait`` (``PostgresStatusStore.from_url``);
- Redis: ``prefix``, ``account``, ``burst``; for the limiter, ``batch_size`` and ``batch_wait``
  (``RedisGcraLimiter.from_url``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import asyncpg
import redis.asyncio as aioredis

from messaging_scale._schema import check_schema_name, migrate

__all__ = ["POSTGRES_OPTIONS", "REDIS_OPTIONS", "LazyPool", "flag", "postgres_pool", "redis_client", "split_options"]

POSTGRES_OPTIONS = frozenset({"schema", "pool_min_size", "pool_max_size", "migrate", "batch_size", "batch_wait"})
REDIS_OPTIONS = frozenset({"prefix", "account", "burst", "max_connections", "start_delay", "batch_size", "batch_wait"})


def split_options(url: str, names: frozenset[str]) -> tuple[str, dict[str, str]]:
    """``url`` without the query parameters in ``names``, and those parameters."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in names:
            ours[key] = value
        else:
            theirs.append((key, value))
    return parts._replace(query=urlencode(theirs)).geturl(), ours


def flag(options: Mapping[str, str], name: str, default: bool) -> bool:
    """A boolean query parameter (``true``/``false``, ``1``/``0``, ``yes``/``no``)."""
    value = options.get(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, not {value!r}")


class LazyPool:
    """An asyncpg pool created on the first ``acquire``; optionally migrates the schema then.

    It has the two methods the stores use (``acquire`` as an async context manager, ``close``),
    so a store takes it wherever it takes an ``asyncpg.Pool``.
    """

    def __init__(self, dsn: str, *, schema: str | None, min_size: int = 1, max_size: int = 10) -> None:
        self._dsn = dsn
        self._schema = schema
        self._min_size = min_size
        self._max_size = max_size
        self._pool: Any = None
        self._lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        # The DSN may hold a password: say where, not how.
        parts = urlsplit(self._dsn)
        return f"<LazyPool {parts.hostname}:{parts.port or 5432}{parts.path} open={self._pool is not None}>"

    async def pool(self) -> Any:
        """The pool, created (and the schema migrated) on first call."""
        if self._pool is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._pool is None:
                    pool = await asyncpg.create_pool(
                        self._dsn, min_size=self._min_size, max_size=self._max_size, reset=_keep_session
                    )
                    if self._schema is not None:
                        try:
                            await migrate(pool, self._schema)
                        except BaseException:
                            await pool.close()
                            raise
                    self._pool = pool
        return self._pool

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        """A pooled connection for the duration of the block."""
        pool = await self.pool()
        async with pool.acquire() as conn:
            yield conn

    async def close(self) -> None:
        """Close the pool if it was opened."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


async def _keep_session(conn: Any) -> None:
    """Nothing to reset when a connection goes back to the pool.

    asyncpg's default runs ``select pg_advisory_unlock_all(); close all; unlisten *; reset all``
    on every release: one more round trip per ledger call (5 % of a worker's CPU, and as much on
    the server). The stores leave nothing behind in a session: no ``set``, no ``listen``, no
    session-level advisory lock (migrations take transaction-level ones), no cursor outside a
    transaction. An open transaction is still rolled back by asyncpg itself before this runs.
    """


def postgres_pool(url: str) -> tuple[LazyPool, str]:
    """A lazy pool for a ``postgresql://`` URL and the schema it names (``messaging`` by default)."""
    dsn, options = split_options(url, POSTGRES_OPTIONS)
    schema = check_schema_name(options.get("schema", "messaging"))
    pool = LazyPool(
        dsn,
        schema=schema if flag(options, "migrate", True) else None,
        min_size=int(options.get("pool_min_size", 1)),
        max_size=int(options.get("pool_max_size", 10)),
    )
    return pool, schema


def redis_client(address: str, options: dict[str, str]) -> Any:
    """A ``redis.asyncio.Redis`` whose callers wait for a free connection instead of failing.

    redis-py's default pool raises "Too many connections" past 100 connections in use; a worker
    with hundreds of messages waiting for their pace slots would make that many calls at once.
    ``max_connections`` (URL option, default 100, a worker's default concurrency) bounds the
    connections; a caller waits up to 30 s for one.
    """
    size = int(options.get("max_connections", "100"))
    if size < 1:
        raise ValueError("max_connections must be at least 1")
    pool = aioredis.BlockingConnectionPool.from_url(address, max_connections=size, timeout=30)
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes both
