"""pluggable-messaging-scale: campaigns on worker processes, and the distributed stores they share.

- ``TaskiqDispatcher`` (the ``taskiq`` dispatcher kind): campaigns copied into the ledger and sent
  by worker processes (``messaging worker``) on a RabbitMQ queue; ``TaskiqCampaign`` follows,
  pauses, resumes or cancels one from any process;
- ``PostgresLedger``: the send ledger (claim before send, fenced results, campaign counters,
  campaign flags);
- ``PostgresStatusStore``: monotonic delivery statuses shared by every webhook host;
- ``RedisGcraLimiter``: per-sender pacing shared by every worker;
- ``RedisConcurrencyLimit``: an account-wide cap on provider calls in flight;
- the pieces workers are built of: the brokers (``create_broker``, ``queued_chunks``), the chunk
  task (``ChunkSender``, ``ChunkKicker``, ``install_sender``) and the ``Sweeper``.

They implement ``messaging_core.campaigns``' ``Dispatcher``, ``CampaignHandle``, ``SendLedger``,
``StatusStore`` and ``RateLimiter``. The worker process is ``messaging_scale.worker`` (Taskiq's
broker factory). This module is the public API; everything not re-exported here (or in
``messaging_scale.worker``) is private.
"""

from __future__ import annotations

from messaging_scale._brokers import (
    BROKER_SCHEMES,
    broker_from_settings,
    create_broker,
    nats_broker,
    queued_chunks,
    rabbitmq_broker,
    redis_stream_broker,
)
from messaging_scale._campaign import TaskiqCampaign
from messaging_scale._chunks import (
    MAX_REQUEUES,
    SEND_CHUNK_TASK,
    ChunkKicker,
    ChunkSender,
    install_sender,
    register_tasks,
)
from messaging_scale._dispatcher import TaskiqDispatcher, create_taskiq_dispatcher
from messaging_scale._ledger import CampaignInfo, OpenMessage, PostgresLedger
from messaging_scale._limiter import RedisConcurrencyLimit, RedisGcraLimiter
from messaging_scale._schema import COUNTER_SHARDS
from messaging_scale._settings import TaskiqSettings
from messaging_scale._status import PostgresStatusStore, StatusWrite
from messaging_scale._sweeper import Sweeper

__version__ = "0.1.0"

__all__ = [
    "BROKER_SCHEMES",
    "COUNTER_SHARDS",
    "MAX_REQUEUES",
    "SEND_CHUNK_TASK",
    "CampaignInfo",
    "ChunkKicker",
    "ChunkSender",
    "OpenMessage",
    "PostgresLedger",
    "PostgresStatusStore",
    "RedisConcurrencyLimit",
    "RedisGcraLimiter",
    "StatusWrite",
    "Sweeper",
    "TaskiqCampaign",
    "TaskiqDispatcher",
    "TaskiqSettings",
    "__version__",
    "broker_from_settings",
    "create_broker",
    "create_taskiq_dispatcher",
    "install_sender",
    "nats_broker",
    "queued_chunks",
    "rabbitmq_broker",
    "redis_stream_broker",
    "register_tasks",
]
