"""The sweeper's queries read the rows that are due, through partial indexes; status callbacks stay HOT."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from messaging_core.campaigns import Claim, SendOutcome, SendState
from messaging_core.results import MessageStatus, StatusUpdate
from messaging_scale import PostgresLedger, PostgresStatusStore
from messaging_scale._ledger_sql import LedgerSql

pytestmark = pytest.mark.services

SWEEPER_INDEXES = {"sends_lease_ends", "sends_in_doubt_since", "sends_tried_due", "sends_untried_due", "sends_deferred"}


async def test_every_kind_of_due_row_is_swept_and_nothing_else(
    ledger: PostgresLedger, pg_pool: Any, pg_schema: str, make_messages: Any
) -> None:
    """One row of each kind the sweep looks for, one of each kind it must leave alone."""
    await ledger.add("c1", make_messages(9))
    ids = [f"m-{i:06d}" for i in range(9)]
    claims = {}
    for i in (0, 1, 2, 3, 4, 5):
        claims[i] = await ledger.claim(ids[i], lease=0.05 if i != 1 else 60, request_timeout=0.01)
        assert isinstance(claims[i], Claim)
    await asyncio.sleep(0.1)
    # 0: expired lease; 1: live lease (left alone); 2: UNKNOWN; 3: a retry due;
    # 4: a retry due in an hour (left alone); 5: proven absent (PENDING, tried, no retry_at);
    # 6: never tried; 7: deferred and due; 8: never tried, in a paused campaign (left alone).
    assert await ledger.mark_unknown(ids[2], claims[2].fence)
    for i, retry_after in ((3, 0.0), (4, 3600.0)):
        assert await ledger.record(claims[i], SendOutcome(SendState.PENDING, retry_after=retry_after))
    assert await ledger.mark_unknown(ids[5], claims[5].fence)
    assert await ledger.resolve(ids[5], provider_id=None)
    assert await ledger.defer([ids[7]], 0) == 1
    async with pg_pool.acquire() as conn:
        await conn.execute(f"update {pg_schema}.sends set campaign_id = 'paused' where message_id = $1", ids[8])
    await ledger.register_campaign("paused", "sms")
    await ledger.set_campaign_flags("paused", paused=True)
    await asyncio.sleep(0.05)

    busy = await ledger.stale(stale_after=0.01, unknown=True, unclaimed=False, expired_after=0)
    assert sorted(busy) == [ids[0], ids[2], ids[3], ids[5]]
    assert await ledger.wake_deferred(again_after=0.01) == [ids[7]]
    await asyncio.sleep(0.05)
    empty = await ledger.stale(stale_after=0.01, unknown=True, unclaimed=True, expired_after=0)
    # Never-tried rows too once the queue is empty (and the deferred row, due and not claimed).
    assert sorted(empty) == [ids[0], ids[2], ids[3], ids[5], ids[6], ids[7]]
    assert await ledger.stale(stale_after=0.01, unknown=False, unclaimed=False, limit=2, expired_after=0) == []
    await asyncio.sleep(0.05)
    # The limit keeps the oldest rows (insertion order).
    assert await ledger.stale(stale_after=0.01, unknown=True, unclaimed=True, limit=2, expired_after=0) == ids[:3:2]


def _scans(plan: Any) -> list[tuple[str, str | None, str | None]]:
    """``(node type, relation, index)`` of every node of an EXPLAIN (FORMAT JSON) plan."""
    found = [(plan["Node Type"], plan.get("Relation Name"), plan.get("Index Name"))]
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


async def test_a_sweep_reads_sends_only_through_its_partial_indexes(pg_pool: Any, pg_schema: str) -> None:
    """Under generic plans (a sweeper runs the same statements for days), with 50,000 open rows."""
    async with pg_pool.acquire() as conn:
        # As during a campaign: 5 % live leases, 5 % retries due later, 1 % in doubt, the rest never tried.
        await conn.execute(
            f"insert into {pg_schema}.sends (message_id, campaign_id, sender_key, to_address, payload, state, "
            "attempts, lease_until, retry_at) "
            "select 'g-' || g, 'c1', '+14155550000', '+1418' || g, '{}'::jsonb, "
            "case when g % 20 = 0 then 'submitting' when g % 20 = 1 then 'pending' "
            "when g % 100 = 2 then 'unknown' else 'pending' end, "
            "case when g % 20 in (0, 1) or g % 100 = 2 then 1 else 0 end, "
            "case when g % 20 = 0 then now() + interval '1 hour' end, "
            "case when g % 20 = 1 then now() + interval '1 hour' end "
            "from generate_series(1, 50000) as g"
        )
        await conn.execute(f"analyze {pg_schema}.sends")
        sql = LedgerSql(pg_schema)
        async with conn.transaction():
            await conn.execute("set local plan_cache_mode = force_generic_plan")
            for statement, arguments in (
                (sql.stale, (300.0, True, True, 5000, None, 5.0)),
                (sql.stale, (300.0, False, False, 5000, "c1", 5.0)),
                (sql.wake, (5000, 300.0)),
            ):
                plan = json.loads(await conn.fetchval(f"explain (format json) {statement}", *arguments))
                scans = [scan for scan in _scans(plan[0]["Plan"]) if scan[1] == "sends"]
                assert scans, plan
                for node, _, index in scans:
                    assert node in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan", "ModifyTable"), (node, plan)
                    # By id (the picked rows, the update) or through a sweeper index: never every open row.
                    assert index is None or index == "sends_pkey" or index in SWEEPER_INDEXES, (index, plan)
                used = {index for _, _, index in scans}
                assert used & SWEEPER_INDEXES, used


async def test_status_callbacks_on_accepted_rows_are_hot_updates(
    ledger: PostgresLedger, pg_pool: Any, pg_schema: str, make_messages: Any
) -> None:
    """No index covers what a callback writes to an accepted row, so PostgreSQL updates it in place (HOT)."""
    await ledger.add("c1", make_messages(3))
    for i in range(3):
        claim = await ledger.claim(f"m-{i:06d}", lease=60, request_timeout=5)
        assert isinstance(claim, Claim)
        assert await ledger.record(claim, SendOutcome(SendState.ACCEPTED, provider_id=f"SM{i}"))
    at = StatusUpdate("x", MessageStatus.SENT).timestamp
    counts = (
        f"select n_tup_upd, n_tup_hot_upd from pg_stat_xact_user_tables where relid = '{pg_schema}.sends'::regclass"
    )
    async with pg_pool.acquire() as conn, conn.transaction():
        # pg_stat_xact_user_tables: this backend's counts not yet reported (so far and in this
        # transaction); the difference is the callbacks'.
        before = await conn.fetchrow(counts)
        for status in (MessageStatus.QUEUED, MessageStatus.SENT):  # the batch path
            outcomes = await conn.fetchval(
                f"select {pg_schema}.apply_statuses($1, $2, $3, $4, $5, $6)",
                ["m-000000", "SM1", "m-000002"],
                [None, "SM1", "SM2"],
                [status.value] * 3,
                [status.rank] * 3,
                [at] * 3,
                [None] * 3,
            )
            assert outcomes == ["applied"] * 3
        outcome = await conn.fetchval(  # the single path
            f"select {pg_schema}.apply_status('m-000001', null, 'delivered', $1, $2, 'tok')",
            MessageStatus.DELIVERED.rank,
            at,
        )
        assert outcome == "applied"
        after = await conn.fetchrow(counts)
    updates = after["n_tup_upd"] - before["n_tup_upd"]
    hot = after["n_tup_hot_upd"] - before["n_tup_hot_upd"]
    assert (updates, hot) == (7, 7)
    store = PostgresStatusStore(pg_pool, schema=pg_schema)
    assert await store.get("m-000000") is MessageStatus.SENT
