"""T13: the scale-out on the second-tier brokers, Redis Streams and NATS JetStream.

T2 again (workers SIGKILLed at random instants while a campaign runs; every message created
exactly once), with ``broker = "redis://…"`` (taskiq-redis ``RedisStreamBroker``, a short
``idle_timeout`` so that a dead worker's chunks are claimed by another within the test, and a
``lock_timeout``) and ``broker = "nats://…"`` (taskiq-nats ``PullBasedJetStreamBroker``, a short
``ack_wait``). Each prints how long the campaign took after the last kill: the brokers' redelivery
paths differ (RabbitMQ returns a dead consumer's chunks at once; Redis only after ``idle_timeout``
and a new delivery to a live worker; NATS after ``ack_wait``).

The scene (emulator, configuration, workers) is ``test_campaigns.py``'s, loaded from its file.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

_spec = importlib.util.spec_from_file_location("_scale_campaigns_t13", Path(__file__).with_name("test_campaigns.py"))
assert _spec is not None
assert _spec.loader is not None
_campaigns: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_campaigns)

scene = _campaigns.scene  # the fixture, registered for this module
campaign = _campaigns.campaign

pytestmark = pytest.mark.services

NATS_URL = "nats://127.0.0.1:4222"
N = 1500
PACE = 150  # per sender; 2 senders: about 5 s of sending, time for two kills


@pytest.fixture
async def redis_stream(scene: Any) -> AsyncIterator[str]:
    """The broker URL; the stream (named after the test's queue) is deleted afterwards."""
    yield f"{scene.names['redis']}?idle_timeout=3&lock_timeout=5"
    client = aioredis.Redis.from_url(scene.names["redis"])
    try:
        await client.delete(scene.names["queue"])
    finally:
        await client.aclose()


@pytest.fixture
async def nats_stream(scene: Any, unreachable: Any) -> AsyncIterator[str]:
    """The broker URL; the JetStream stream (named after the test's queue) is deleted afterwards."""
    import nats

    try:
        client = await asyncio.wait_for(nats.connect(NATS_URL), timeout=10)
    except Exception as err:
        unreachable("NATS (JetStream)", NATS_URL, err)
    try:
        yield f"{NATS_URL}?ack_wait=3"
    finally:
        with contextlib.suppress(Exception):  # never created: nothing to delete
            await client.jetstream().delete_stream(scene.names["queue"].replace(".", "_"))
        await client.close()


async def _killed_campaign(scene: Any, broker: str, label: str) -> None:
    messages = campaign(label, N)
    ids = [m.id for m in messages]
    scene.write_config(broker=broker, messages_per_second=PACE)
    workers = scene.start_workers(2)
    await workers.wait_children(2)
    await scene.submit(messages, label)
    last_kill = time.monotonic()
    for _ in range(2):
        await asyncio.sleep(random.uniform(0.6, 1.2))
        if (await scene.ledger.progress(label)).count("pending") < 300:
            break
        assert workers.children(), f"no worker process alive:\n{workers.tail()}"
        workers.kill_child()
        last_kill = time.monotonic()
        await workers.wait_children(2)  # Taskiq's manager starts a new one
    counts = await scene.wait_done(label, within=150)
    done = time.monotonic()
    assert workers.killed, "no worker was killed while the campaign ran"
    assert counts == {"accepted": N}
    rows = await scene.assert_each_sent_exactly_once(label, ids)
    attempts = sum(row["attempts"] for row in rows)
    reconciled = sum(bool(row["reconciled"]) for row in rows)
    print(
        f"\nT13 {label}: {N} messages, {len(workers.killed)} worker(s) killed; campaign done {done - last_kill:.1f} s "
        f"after the last kill; attempts {attempts}; reconciled {reconciled}; duplicates at the emulator: 0"
    )
    await scene.assert_counters_match_rows(label)


async def test_t13_redis_streams_workers_killed_nothing_sent_twice(scene: Any, redis_stream: str) -> None:
    await _killed_campaign(scene, redis_stream, "t13r")


async def test_t13_nats_jetstream_workers_killed_nothing_sent_twice(scene: Any, nats_stream: str) -> None:
    await _killed_campaign(scene, nats_stream, "t13n")
