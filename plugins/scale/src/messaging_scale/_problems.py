"""What went wrong with a service, in one line: for the command line and the workers' start-up checks."""

from __future__ import annotations

import aio_pika.exceptions
import asyncpg
import redis.exceptions

__all__ = ["service_problem"]


def service_problem(err: BaseException) -> str | None:
    """One line for an error of PostgreSQL, RabbitMQ or Redis (or a campaign/connector mismatch), else None.

    The services' own messages name hosts and users, never passwords (the URLs are not repeated).
    """
    if isinstance(err, asyncpg.PostgresError | asyncpg.InterfaceError):
        return f"the ledger (PostgreSQL): {type(err).__name__}: {err}"
    if isinstance(err, aio_pika.exceptions.AMQPException):
        return f"the broker (RabbitMQ): {type(err).__name__}: {err}"
    if isinstance(err, redis.exceptions.RedisError):
        return f"Redis (the limiter, or a redis:// broker): {type(err).__name__}: {err}"
    if type(err).__module__.startswith("nats."):
        return f"the broker (NATS): {type(err).__name__}: {err}"
    if isinstance(err, OSError | TimeoutError):
        return f"a service cannot be reached: {type(err).__name__}: {err}"
    if isinstance(err, ValueError) and "is sent by connector" in str(err):
        return str(err)  # a campaign id reused with another connector
    return None
