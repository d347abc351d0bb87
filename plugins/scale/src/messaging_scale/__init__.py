"""pluggable-messaging-scale: distributed stores for pluggable-messaging.

- ``PostgresLedger``: the send ledger (claim before send, fenced results, campaign counters);
- ``PostgresStatusStore``: monotonic delivery statuses shared by every webhook host;
- ``RedisGcraLimiter``: per-sender pacing shared by every worker;
- ``RedisConcurrencyLimit``: an account-wide cap on provider calls in flight.

They implement ``messaging_core.pipeline``'s ``SendLedger``, ``StatusStore`` and ``RateLimiter``.
This module is the public API; everything not re-exported here is private.
"""

from __future__ import annotations

from messaging_scale._ledger import PostgresLedger
from messaging_scale._limiter import RedisConcurrencyLimit, RedisGcraLimiter
from messaging_scale._schema import COUNTER_SHARDS
from messaging_scale._status import PostgresStatusStore, StatusWrite

__version__ = "0.1.0"

__all__ = [
    "COUNTER_SHARDS",
    "PostgresLedger",
    "PostgresStatusStore",
    "RedisConcurrencyLimit",
    "RedisGcraLimiter",
    "StatusWrite",
    "__version__",
]
