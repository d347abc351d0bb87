"""The sweeper forgets webhook idempotency tokens past their retention, in bounded batches."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from taskiq import InMemoryBroker

from messaging_core.campaigns import Claim, DispatcherSettings, SendOutcome, SendState
from messaging_core.results import MessageStatus, StatusUpdate
from messaging_scale import ChunkKicker, PostgresLedger, PostgresStatusStore, StatusWrite, Sweeper, TaskiqSettings

pytestmark = pytest.mark.services

DAY = 86_400.0


async def _tokens(pool: Any, schema: str) -> set[str]:
    async with pool.acquire() as conn:
        return {row["token"] for row in await conn.fetch(f"select token from {schema}.webhook_events")}


async def test_a_sweep_deletes_tokens_past_retention_in_batches(
    ledger: PostgresLedger, status_store: PostgresStatusStore, pg_pool: Any, pg_schema: str, make_messages: Any
) -> None:
    [(message, sender, cost)] = make_messages(1)
    await ledger.add("c1", [(message, sender, cost)])
    claim = await ledger.claim(message.id, lease=60, request_timeout=5)
    assert isinstance(claim, Claim)
    assert await ledger.record(claim, SendOutcome(SendState.ACCEPTED, provider_id="SM1"))
    sent = StatusUpdate(message.id, MessageStatus.SENT, remote_message_id="SM1")
    delivered = StatusUpdate(message.id, MessageStatus.DELIVERED, remote_message_id="SM1")
    assert await status_store.write(sent, idempotency_key="old-sent") is StatusWrite.APPLIED
    for i in range(5):
        await status_store.write(StatusUpdate(f"x-{i}", MessageStatus.QUEUED), idempotency_key=f"old-{i}")
    await status_store.write(StatusUpdate("x-new", MessageStatus.QUEUED), idempotency_key="new")
    async with pg_pool.acquire() as conn:
        await conn.execute(
            f"update {pg_schema}.webhook_events set received_at = now() - interval '4 days' where token like 'old-%'"
        )
        await conn.execute(
            f"update {pg_schema}.webhook_events set received_at = now() - interval '2 days' where token = 'new'"
        )
    sweeper = Sweeper(
        ledger,
        ChunkKicker(InMemoryBroker(), chunk_size=10),
        queue="unused",
        interval=0.001,
        batch=4,
        webhook_events_retention=3 * DAY,
    )
    await sweeper.sweep()
    assert len(await _tokens(pg_pool, pg_schema)) == 7 - 4, "one batch per sweep"
    for _ in range(3):
        await asyncio.sleep(0.01)  # the fleet's next turn
        await sweeper.sweep()
    assert await _tokens(pg_pool, pg_schema) == {"new"}, "older tokens gone, a newer one kept"
    # A replay of a pruned token is no longer recognized as one: it is applied again only if its
    # status moves the message forward; a token still kept is a duplicate whatever it says.
    assert await status_store.write(sent, idempotency_key="old-sent") is StatusWrite.STALE
    assert await status_store.write(delivered, idempotency_key="new") is StatusWrite.DUPLICATE
    assert await status_store.get(message.id) is MessageStatus.SENT
    assert await status_store.write(delivered, idempotency_key="old-delivered") is StatusWrite.APPLIED
    assert await status_store.get(message.id) is MessageStatus.DELIVERED


def test_retention_is_a_dispatcher_option() -> None:
    base = {"kind": "taskiq", "broker": "amqp://x", "ledger": "postgresql://x"}
    assert TaskiqSettings.from_dispatcher(DispatcherSettings.from_mapping(base)).webhook_events_retention == 3 * DAY
    table = {**base, "webhook_events_retention": 3600}
    assert TaskiqSettings.from_dispatcher(DispatcherSettings.from_mapping(table)).webhook_events_retention == 3600.0
