"""The Taskiq broker on a real RabbitMQ, and ``send_chunk`` run by an in-process receiver.

These pin the broker's queue settings and the chunk task's no-double-send path; the campaigns on
worker processes (T1–T5, T11 of the design's test plan) are in ``test_campaigns.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import aio_pika
import aio_pika.exceptions
import pytest
from taskiq.api import run_receiver_task

from messaging_core import ChannelConnector, Endpoint, Message, TextContent
from messaging_core.campaigns import SendPipeline
from messaging_scale import (
    SEND_CHUNK_TASK,
    ChunkSender,
    PostgresLedger,
    RedisGcraLimiter,
    create_broker,
    install_sender,
)

pytestmark = pytest.mark.services


async def test_queue_is_quorum_with_delivery_limit_and_dead_letters(amqp_names: tuple[str, str]) -> None:
    url, name = amqp_names
    broker = create_broker(url, queue=name, exchange=name, delivery_limit=3)
    await broker.startup()
    await broker.shutdown()
    expected = {
        "x-queue-type": "quorum",
        "x-delivery-limit": 3,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": f"{name}.dead",
    }
    async with await aio_pika.connect(url) as connection:
        # Declaring with the same arguments succeeds; any difference is refused (406) by the server.
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True, arguments=expected)
        await channel.declare_queue(f"{name}.dead", passive=True)
        for changed in ({"x-delivery-limit": 4}, {"x-queue-type": "classic"}):
            channel = await connection.channel()
            with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
                await channel.declare_queue(name, durable=True, arguments={**expected, **changed})


def test_delivery_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        create_broker("amqp://127.0.0.1/", delivery_limit=0)


async def test_send_chunk_sends_each_message_once(
    amqp_names: tuple[str, str],
    memory_connector: ChannelConnector,
    ledger: PostgresLedger,
    redis_client: Any,
    redis_prefix: str,
) -> None:
    """Four chunks, one of them delivered twice and one overlapping another: 100 messages, 100 sends."""
    url, name = amqp_names
    messages = [
        Message(uuid.uuid4().hex, Endpoint.phone("+15550001111"), Endpoint.phone(f"+1555000{i:04d}"), TextContent("hi"))
        for i in range(100)
    ]
    assert await ledger.add("camp", [(m, "+15550001111", 1) for m in messages]) == 100
    pipeline = SendPipeline(
        memory_connector, ledger=ledger, limiter=RedisGcraLimiter(redis_client, rate=500, prefix=redis_prefix)
    )
    broker = create_broker(url, queue=name, exchange=name)
    install_sender(broker, ChunkSender(ledger, pipeline, concurrency=20))
    broker.is_worker_process = True
    await broker.startup()
    receiver = asyncio.create_task(run_receiver_task(broker))
    try:
        task = broker.find_task(SEND_CHUNK_TASK)
        assert task is not None
        ids = [m.id for m in messages]
        for chunk in (ids[:25], ids[25:50], ids[25:50], ids[40:75], ids[75:]):
            await task.kiq(chunk)
        for _ in range(600):  # 30 s at most
            progress = await ledger.progress("camp")
            if progress.is_complete:
                break
            await asyncio.sleep(0.05)
        assert progress.counts == {"accepted": 100}
        sent: list[Message] = memory_connector.mailbox.sent  # type: ignore[attr-defined]
        assert sorted(m.id for m in sent) == sorted(ids)  # each exactly once
        assert {entry.attempts async for entry in ledger.results("camp")} == {1}
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
        await broker.shutdown()


async def test_a_chunk_cut_short_is_published_again_before_taskiq_acknowledges_it() -> None:
    """Taskiq acknowledges a cancelled task (a worker stopping past its shutdown timeout): a copy goes first."""
    from types import SimpleNamespace

    from messaging_scale._chunks import _STATE_KEY, _send_chunk

    class Stuck:
        async def send(self, ids: list[str]) -> dict[str, str]:
            await asyncio.sleep(3600)
            return {}

    published: list[Any] = []

    class Broker:
        formatter = SimpleNamespace(dumps=lambda message: ("wire", message))

        async def kick(self, message: Any) -> None:
            published.append(message)

    state = SimpleNamespace(**{_STATE_KEY: Stuck()})
    context: Any = SimpleNamespace(state=state, message=SimpleNamespace(labels={}), broker=Broker())
    running = asyncio.create_task(_send_chunk(["m1", "m2"], context))
    await asyncio.sleep(0.05)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert published == [("wire", context.message)]
    assert context.message.labels == {}  # not counted as one of the requeues after errors
