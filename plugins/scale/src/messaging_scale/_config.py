"""The store registrations of the plugin: which URL schemes build which stores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messaging_core.dispatcher import StoreRegistration
from messaging_core.errors import ConfigurationError
from messaging_scale._ledger import PostgresLedger
from messaging_scale._limiter import RedisGcraLimiter
from messaging_scale._status import PostgresStatusStore

__all__ = ["POSTGRES_STORES", "REDIS_STORES"]


def _ledger(url: str, options: Mapping[str, Any]) -> PostgresLedger:
    return PostgresLedger.from_url(url)


def _status_store(url: str, options: Mapping[str, Any]) -> PostgresStatusStore:
    return PostgresStatusStore.from_url(url)


def _limiter(url: str, options: Mapping[str, Any]) -> RedisGcraLimiter:
    rate = options.get("messages_per_second")
    if not rate:
        raise ConfigurationError("[dispatcher]: a redis:// limiter needs messages_per_second (each sender's pace)")
    return RedisGcraLimiter.from_url(url, rate=float(rate))


_POSTGRES_DESCRIPTION = "PostgreSQL send ledger and status store (?schema=…, tables created on first use)"

POSTGRES_STORES = tuple(
    StoreRegistration(scheme, ledger=_ledger, status_store=_status_store, description=_POSTGRES_DESCRIPTION)
    for scheme in ("postgresql", "postgres")
)
REDIS_STORES = (
    StoreRegistration(
        "redis", limiter=_limiter, description="Redis GCRA rate limiter shared by every worker (?prefix=…&account=…)"
    ),
)
