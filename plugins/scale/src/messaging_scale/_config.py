"""The registrations of the plugin: the `taskiq` dispatcher kind, and which URL schemes build which stores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messaging_core.campaigns import DispatcherRegistration, StoreRegistration
from messaging_core.errors import ConfigurationError
from messaging_scale._dispatcher import create_taskiq_dispatcher
from messaging_scale._ledger import PostgresLedger
from messaging_scale._limiter import RedisGcraLimiter
from messaging_scale._status import PostgresStatusStore

__all__ = ["POSTGRES_STORES", "REDIS_STORES", "TASKIQ"]


def _ledger(url: str, options: Mapping[str, Any]) -> PostgresLedger:
    return PostgresLedger.from_url(url)


def _status_store(url: str, options: Mapping[str, Any]) -> PostgresStatusStore:
    return PostgresStatusStore.from_url(url)


def _limiter(url: str, options: Mapping[str, Any]) -> RedisGcraLimiter:
    rate = options.get("messages_per_second")
    if not rate:
        raise ConfigurationError("[dispatcher]: a redis:// limiter needs messages_per_second (each sender's pace)")
    rates = options.get("rates") or {}
    return RedisGcraLimiter.from_url(url, rate=float(rate), rates={str(k): float(v) for k, v in rates.items()})


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

TASKIQ = DispatcherRegistration(
    "taskiq",
    create_taskiq_dispatcher,
    "worker processes on RabbitMQ (Taskiq), PostgreSQL ledger, Redis pace (`messaging worker`)",
)
