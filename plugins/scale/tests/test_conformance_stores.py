"""The core's store conformance suites, run against the PostgreSQL and Redis stores.

The same classes run against ``MemoryLedger``, ``MemoryRateLimiter`` and ``MemoryStatusStore`` in
the core's tests: the distributed stores must give identical answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from messaging_core.campaigns import RateLimiter
from messaging_core.testing import LedgerConformance, RateLimiterConformance, StatusStoreConformance
from messaging_scale import PostgresLedger, PostgresStatusStore, RedisGcraLimiter

pytestmark = pytest.mark.services


class TestPostgresLedgerConformance(LedgerConformance):
    @pytest.fixture
    def ledger_factory(self, pg_pool: Any, pg_schema: str) -> Callable[[], Awaitable[PostgresLedger]]:
        async def factory() -> PostgresLedger:
            return PostgresLedger(pg_pool, schema=pg_schema)

        return factory


class TestRedisGcraLimiterConformance(RateLimiterConformance):
    @pytest.fixture
    def limiter_factory(self, redis_client: Any, redis_prefix: str) -> Callable[..., Awaitable[RateLimiter]]:
        async def factory(rate: float, burst: float = 1.0) -> RateLimiter:
            return RedisGcraLimiter(redis_client, rate=rate, burst=burst, prefix=redis_prefix)

        return factory


class TestRedisGcraLimiterAloneConformance(RateLimiterConformance):
    """The same limiter sending each reservation in a script call of its own (``batch_size=1``)."""

    @pytest.fixture
    def limiter_factory(self, redis_client: Any, redis_prefix: str) -> Callable[..., Awaitable[RateLimiter]]:
        async def factory(rate: float, burst: float = 1.0) -> RateLimiter:
            return RedisGcraLimiter(redis_client, rate=rate, burst=burst, prefix=redis_prefix, batch_size=1)

        return factory


class TestPostgresStatusStoreConformance(StatusStoreConformance):
    @pytest.fixture
    def status_store_factory(self, pg_pool: Any, pg_schema: str) -> Callable[[], Awaitable[PostgresStatusStore]]:
        async def factory() -> PostgresStatusStore:
            return PostgresStatusStore(pg_pool, schema=pg_schema)

        return factory


class TestPostgresStatusStoreAloneConformance(StatusStoreConformance):
    """The same store writing each update in a transaction of its own (``batch_size=1``)."""

    @pytest.fixture
    def status_store_factory(self, pg_pool: Any, pg_schema: str) -> Callable[[], Awaitable[PostgresStatusStore]]:
        async def factory() -> PostgresStatusStore:
            return PostgresStatusStore(pg_pool, schema=pg_schema, batch_size=1)

        return factory


class TestPostgresLedgerAloneConformance(LedgerConformance):
    """The same ledger writing each claim and record in a statement of its own (``batch_size=1``)."""

    @pytest.fixture
    def ledger_factory(self, pg_pool: Any, pg_schema: str) -> Callable[[], Awaitable[PostgresLedger]]:
        async def factory() -> PostgresLedger:
            return PostgresLedger(pg_pool, schema=pg_schema, batch_size=1)

        return factory
