"""The entry point, the stores reachable by URL, and the core's in-process dispatcher on them."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from messaging_core import ChannelConnector, ChannelRegistry, ConfigurationError, Endpoint, Message, TextContent
from messaging_scale import PostgresLedger, PostgresStatusStore, RedisGcraLimiter


def test_entry_point_registers_the_url_schemes() -> None:
    registry = ChannelRegistry.discover()
    assert [error for error in registry.load_errors if "scale" in str(error)] == []
    schemes = registry.store_schemes()
    for scheme in ("postgresql", "postgres"):
        assert schemes[scheme].ledger is not None
        assert schemes[scheme].status_store is not None
    assert schemes["redis"].limiter is not None


def test_urls_keep_our_options_away_from_the_drivers() -> None:
    schemes = ChannelRegistry.discover().store_schemes()
    make_ledger, make_limiter = schemes["postgresql"].ledger, schemes["redis"].limiter
    assert make_ledger is not None
    assert make_limiter is not None
    ledger = make_ledger("postgresql://u:secret@db.example/app?schema=campaigns&sslmode=disable", {})
    assert isinstance(ledger, PostgresLedger)
    assert ledger.schema == "campaigns"
    assert "db.example" in repr(ledger)
    assert "secret" not in repr(ledger)
    limiter = make_limiter("redis://127.0.0.1:6379/0?prefix=p&account=AC1&burst=3", {"messages_per_second": 5})
    assert isinstance(limiter, RedisGcraLimiter)
    assert (limiter.prefix, limiter.account, limiter.burst, limiter.rate) == ("p", "AC1", 3.0, 5.0)
    with pytest.raises(ConfigurationError, match="messages_per_second"):
        make_limiter("redis://127.0.0.1:6379/0", {})
    with pytest.raises(ValueError, match="schema name"):
        make_ledger("postgresql://db.example/app?schema=Bad-Name", {})


@pytest.mark.services
async def test_inprocess_dispatcher_runs_on_the_distributed_stores(
    memory_connector: ChannelConnector, pg_dsn: str, pg_schema: str, redis_url: str, redis_prefix: str, pg_pool: Any
) -> None:
    """The core's pipeline, unchanged, with the ledger, limiter and status store named by URL."""
    registry = ChannelRegistry.discover()
    table = {
        "kind": "inprocess",
        "ledger": f"{pg_dsn}?schema={pg_schema}",
        "status_store": f"{pg_dsn}?schema={pg_schema}",
        "limiter": f"{redis_url}?prefix={redis_prefix}",
        "messages_per_second": 200,
    }
    dispatcher: Any = registry.create_dispatcher(table, memory_connector)
    assert isinstance(dispatcher.ledger, PostgresLedger)
    assert isinstance(dispatcher.status_store, PostgresStatusStore)
    assert isinstance(dispatcher.limiter, RedisGcraLimiter)
    messages = [
        Message(uuid.uuid4().hex, Endpoint.phone("+15550001111"), Endpoint.phone(f"+1555000{i:04d}"), TextContent("hi"))
        for i in range(40)
    ]
    try:
        async with asyncio.timeout(30):
            handle = await dispatcher.submit(messages, campaign_id="camp-1")
            progress = await handle.wait()
        assert progress.counts == {"accepted": 40}
        entries = [entry async for entry in dispatcher.ledger.results("camp-1")]
        assert [entry.message_id for entry in entries] == [m.id for m in messages]
        assert all(entry.provider_id for entry in entries)
        async with pg_pool.acquire() as conn:
            attempts = await conn.fetchval(f"select sum(attempts) from {pg_schema}.sends")
        assert attempts == 40
        # Re-submitting the campaign sends nothing again.
        async with asyncio.timeout(30):
            again = await dispatcher.submit(messages, campaign_id="camp-1")
            await again.wait()
        async with pg_pool.acquire() as conn:
            assert await conn.fetchval(f"select sum(attempts) from {pg_schema}.sends") == 40
    finally:
        await dispatcher.ledger.close()
        await dispatcher.status_store.close()
        await dispatcher.limiter.close()
