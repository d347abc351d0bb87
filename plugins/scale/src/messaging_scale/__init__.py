"""pluggable-messaging-scale: campaigns on worker processes, and the distributed stores they share.

- ``TaskiqDispatcher`` (the ``taskiq`` dispatcher kind): campaigns copied into the ledger and sent
  by worker processes (``messaging worker``) on a RabbitMQ queue; ``TaskiqCampaign`` follows,
  pauses, resumes or cancels one from any process;
- ``PostgresLedger``: the send ledger (claim before send, fenced results, campaign counters,
  campaign flags);
- ``PostgresStatusStore``: monotonic delivery statuses shared by every webhook host;
- ``RedisGcraLimiter``: per-sender pacing shared by every worker;
- ``RedisConcurrencyLimit``: an account-wide cap on provider calls in flight.

They implement ``messaging_core.pipeline``'s ``Dispatcher``, ``CampaignHandle``, ``SendLedger``,
``StatusStore`` and ``RateLimiter``. The Taskiq pieces (broker, chunk task, sweeper) are in
``messaging_scale.taskiq``, the worker process in ``messaging_scale.worker``. This module is the
public API; everything not re-exported here (or in those two modules) is private.
"""

from __future__ import annotations

from messaging_scale._dispatcher import TaskiqCampaign, TaskiqDispatcher, create_taskiq_dispatcher
from messaging_scale._ledger import CampaignInfo, OpenMessage, PostgresLedger
from messaging_scale._limiter import RedisConcurrencyLimit, RedisGcraLimiter
from messaging_scale._schema import COUNTER_SHARDS
from messaging_scale._settings import TaskiqSettings
from messaging_scale._status import PostgresStatusStore, StatusWrite

__version__ = "0.1.0"

__all__ = [
    "COUNTER_SHARDS",
    "CampaignInfo",
    "OpenMessage",
    "PostgresLedger",
    "PostgresStatusStore",
    "RedisConcurrencyLimit",
    "RedisGcraLimiter",
    "StatusWrite",
    "TaskiqCampaign",
    "TaskiqDispatcher",
    "TaskiqSettings",
    "__version__",
    "create_taskiq_dispatcher",
]
