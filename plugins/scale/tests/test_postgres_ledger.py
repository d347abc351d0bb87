"""PostgresLedger against a real PostgreSQL: the send-ledger invariants of docs/scale-out.md.

I1/I3: a message is only sent under a committed claim, and an in-doubt message is never claimed
again before ``resolve``; I4: result writes are fenced; I5: final states are terminal. Plus the
bookkeeping: idempotent ``add``, counters equal to a ``group by`` over ``sends``, keyset-paginated
results, and one pooled connection at a time (a pool of one connection must not deadlock).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from messaging_core import Endpoint, Message, MessageStatus, StatusUpdate, TextContent
from messaging_core.campaigns import CampaignProgress, Claim, LedgerEntry, SendLedger, SendOutcome, SendState
from messaging_scale import COUNTER_SHARDS, PostgresLedger, PostgresStatusStore

pytestmark = pytest.mark.services

LONG_LEASE = 60.0
TIMEOUT = 5.0


async def claim(ledger: PostgresLedger, message_id: str, lease: float = LONG_LEASE) -> Claim:
    result = await ledger.claim(message_id, lease=lease, request_timeout=min(TIMEOUT, lease / 2))
    assert isinstance(result, Claim), result
    return result


async def refused(ledger: PostgresLedger, message_id: str) -> LedgerEntry:
    result = await ledger.claim(message_id, lease=LONG_LEASE, request_timeout=TIMEOUT)
    assert isinstance(result, LedgerEntry), result
    return result


async def group_by_state(pool: Any, schema: str, campaign_id: str) -> dict[str, int]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"select state, count(*) as n from {schema}.sends where campaign_id = $1 group by state", campaign_id
        )
    return {row["state"]: row["n"] for row in rows}


def test_implements_the_protocol(ledger: PostgresLedger) -> None:
    assert isinstance(ledger, SendLedger)


def test_schema_name_must_be_a_plain_identifier(pg_pool: Any) -> None:
    with pytest.raises(ValueError, match="schema name"):
        PostgresLedger(pg_pool, schema="x; drop table sends")


async def test_migrate_is_idempotent_and_safe_concurrently(ledger: PostgresLedger, make_messages: Any) -> None:
    await ledger.add("c1", make_messages(3))
    await asyncio.gather(*(ledger.migrate() for _ in range(3)))
    assert (await ledger.progress("c1")).counts == {"pending": 3}


async def test_migrate_renames_the_old_segments_column_to_cost(
    ledger: PostgresLedger, pg_pool: Any, pg_schema: str, make_messages: Any
) -> None:
    """A ledger created before the rename (column ``segments``) is brought up to date in place."""
    async with pg_pool.acquire() as conn:
        await conn.execute(f"alter table {pg_schema}.sends rename column cost to segments")
    await ledger.migrate()
    (message, sender, cost) = make_messages(2)[1]  # cost 2: not the column default
    assert await ledger.add("c-old", [(message, sender, cost)]) == 1
    entry = await ledger.get(message.id)
    assert entry is not None
    assert entry.cost == cost


async def test_add_is_idempotent_and_load_returns_the_message(ledger: PostgresLedger, make_messages: Any) -> None:
    entries = make_messages(120)
    assert await ledger.add("c1", entries[:100]) == 100
    assert await ledger.add("c1", entries) == 20  # only the 20 new ids
    assert await ledger.add("c1", []) == 0
    assert await ledger.add("c1", [entries[0], entries[0]]) == 0

    message, sender, segments = entries[7]
    assert await ledger.load(message.id) == message
    entry = await ledger.get(message.id)
    assert entry is not None
    assert (entry.state, entry.campaign_id, entry.sender_key, entry.cost) == (
        SendState.PENDING,
        "c1",
        sender,
        segments,
    )
    assert (entry.attempts, entry.fence, entry.provider_id) == (0, 0, None)
    assert await ledger.load("nope") is None
    assert await ledger.get("nope") is None
    assert (await ledger.progress("c1")).counts == {"pending": 120}


async def test_duplicate_ids_within_one_add_count_once(ledger: PostgresLedger, make_messages: Any) -> None:
    entries = make_messages(5)
    assert await ledger.add("c1", entries + entries[:2]) == 5
    assert (await ledger.progress("c1")).total == 5


async def test_claim_then_record_accepted(ledger: PostgresLedger, make_messages: Any) -> None:
    await ledger.add("c1", make_messages(1))
    granted = await claim(ledger, "m-000000")
    assert (granted.fence, granted.attempts) == (1, 1)
    assert granted.lease_until is not None

    # A second delivery of the same message while the lease is live is refused.
    entry = await refused(ledger, "m-000000")
    assert entry.state is SendState.SUBMITTING
    assert entry.fence == 1

    assert await ledger.record(granted, SendOutcome(SendState.ACCEPTED, provider_id="SM1"))
    entry = await ledger.get("m-000000")
    assert entry is not None
    assert (entry.state, entry.provider_id) == (SendState.ACCEPTED, "SM1")
    # The same claim cannot write twice, and a final entry is never claimed.
    assert not await ledger.record(granted, SendOutcome(SendState.FAILED, error_code="X"))
    assert (await refused(ledger, "m-000000")).state is SendState.ACCEPTED


async def test_stale_fence_is_rejected(ledger: PostgresLedger, make_messages: Any) -> None:
    await ledger.add("c1", make_messages(1))
    first = await claim(ledger, "m-000000")
    assert await ledger.record(first, SendOutcome(SendState.PENDING, error_code="RATE_LIMITED", retry_after=0.0))
    second = await claim(ledger, "m-000000")
    assert (second.fence, second.attempts) == (2, 2)

    assert not await ledger.record(first, SendOutcome(SendState.ACCEPTED, provider_id="SM-stale"))
    entry = await ledger.get("m-000000")
    assert entry is not None
    assert (entry.state, entry.provider_id) == (SendState.SUBMITTING, None)
    assert await ledger.record(second, SendOutcome(SendState.ACCEPTED, provider_id="SM2"))


async def test_retry_after_delays_the_next_claim(ledger: PostgresLedger, make_messages: Any) -> None:
    await ledger.add("c1", make_messages(2))
    first = await claim(ledger, "m-000000")
    assert await ledger.record(first, SendOutcome(SendState.PENDING, error_code="RATE_LIMITED", retry_after=60.0))
    entry = await refused(ledger, "m-000000")
    assert entry.state is SendState.PENDING
    assert entry.retry_at is not None
    assert "m-000000" not in await ledger.due(campaign_id="c1")
    assert await ledger.due(campaign_id="c1") == ["m-000001"]


async def test_expired_lease_goes_unknown_and_is_never_reclaimed_before_resolve(
    ledger: PostgresLedger, make_messages: Any
) -> None:
    await ledger.add("c1", make_messages(1))
    granted = await claim(ledger, "m-000000", lease=0.3)
    assert not await ledger.mark_unknown("m-000000", granted.fence)  # lease still live
    assert "m-000000" not in await ledger.due()
    await asyncio.sleep(0.4)
    assert await ledger.due() == ["m-000000"]  # expired lease: needs reconciliation

    assert not await ledger.mark_unknown("m-000000", granted.fence + 1)  # wrong fence
    assert await ledger.mark_unknown("m-000000", granted.fence)
    assert not await ledger.mark_unknown("m-000000", granted.fence)  # already UNKNOWN
    for _ in range(3):
        entry = await refused(ledger, "m-000000")
        assert entry.state is SendState.UNKNOWN
    assert await ledger.due() == ["m-000000"]

    # Reconciliation found nothing: resend allowed, under a new fence.
    assert await ledger.resolve("m-000000", provider_id=None)
    again = await claim(ledger, "m-000000")
    assert again.fence > granted.fence
    assert again.attempts == 2
    assert not await ledger.record(granted, SendOutcome(SendState.ACCEPTED, provider_id="SM-late"))
    entry = await ledger.get("m-000000")
    assert entry is not None
    assert entry.reconciled


async def test_resolve_with_provider_id_accepts(ledger: PostgresLedger, make_messages: Any) -> None:
    await ledger.add("c1", make_messages(2))
    live = await claim(ledger, "m-000000")
    # "Absent" is never concluded while a call may be in flight...
    assert not await ledger.resolve("m-000000", provider_id=None)
    # ...but proof of existence settles it.
    assert await ledger.resolve("m-000000", provider_id="SM9")
    entry = await ledger.get("m-000000")
    assert entry is not None
    assert (entry.state, entry.provider_id, entry.reconciled) == (SendState.ACCEPTED, "SM9", True)
    assert not await ledger.record(live, SendOutcome(SendState.FAILED, error_code="X"))
    # A PENDING message has nothing to reopen, but proof that the provider has it still counts.
    assert not await ledger.resolve("m-000001", provider_id=None)
    assert await ledger.resolve("m-000001", provider_id="SM10")
    assert (await refused(ledger, "m-000001")).state is SendState.ACCEPTED


async def test_final_states_are_terminal(ledger: PostgresLedger, make_messages: Any) -> None:
    await ledger.add("c1", make_messages(3))
    accepted = await claim(ledger, "m-000000")
    failed = await claim(ledger, "m-000001")
    assert await ledger.record(accepted, SendOutcome(SendState.ACCEPTED, provider_id="SM1"))
    assert await ledger.record(failed, SendOutcome(SendState.FAILED, error_code="INVALID_RECIPIENT"))
    assert await ledger.cancel("c1") == 1
    assert await ledger.cancel("c1") == 0

    expected = {"m-000000": SendState.ACCEPTED, "m-000001": SendState.FAILED, "m-000002": SendState.CANCELLED}
    for message_id, state in expected.items():
        assert (await refused(ledger, message_id)).state is state
        assert not await ledger.mark_unknown(message_id, 1)
        assert not await ledger.resolve(message_id, provider_id=None)
        assert not await ledger.resolve(message_id, provider_id="SM-x")
    assert not await ledger.record(accepted, SendOutcome(SendState.PENDING, retry_after=0))
    assert not await ledger.record(failed, SendOutcome(SendState.ACCEPTED, provider_id="SM2"))
    assert await ledger.due() == []
    progress = await ledger.progress("c1")
    assert progress.counts == {"accepted": 1, "failed": 1, "cancelled": 1}
    assert progress.is_complete


async def test_record_takes_only_outcomes_and_claim_needs_a_known_id(
    ledger: PostgresLedger, make_messages: Any
) -> None:
    await ledger.add("c1", make_messages(1))
    granted = await claim(ledger, "m-000000")
    with pytest.raises(ValueError):
        await ledger.record(granted, SendOutcome(SendState.CANCELLED))
    with pytest.raises(KeyError):
        await ledger.claim("nope", lease=LONG_LEASE, request_timeout=TIMEOUT)


async def test_due_lists_open_work_oldest_first(ledger: PostgresLedger, make_messages: Any) -> None:
    await ledger.add("c1", make_messages(4, prefix="a"))
    await ledger.add("c2", make_messages(2, prefix="b"))
    done = await claim(ledger, "a-000001")
    await ledger.record(done, SendOutcome(SendState.ACCEPTED, provider_id="SM1"))
    await claim(ledger, "a-000002")  # live lease: not due
    assert await ledger.due(campaign_id="c1") == ["a-000000", "a-000003"]
    assert await ledger.due() == ["a-000000", "a-000003", "b-000000", "b-000001"]
    assert await ledger.due(limit=1) == ["a-000000"]


async def test_results_are_keyset_paginated_in_insertion_order(
    counted_pool: Any, pg_schema: str, make_messages: Any
) -> None:
    pages = counted_pool
    ledger = PostgresLedger(pages, schema=pg_schema, page_size=7)
    entries = make_messages(50)
    random.Random(1).shuffle(entries)
    await ledger.add("c1", entries[:30])
    await ledger.add("other", make_messages(5, prefix="o"))
    await ledger.add("c1", entries[30:])
    pages.acquired = 0
    seen = [entry.message_id async for entry in ledger.results("c1")]
    assert seen == [message.id for message, _, _ in entries]
    assert pages.acquired == 8, "a query per page of 7 rows: 7 full pages and one of 1"
    assert [entry.message_id async for entry in ledger.results("none")] == []


async def test_one_connection_at_a_time(pg_dsn: str, pg_schema: str, make_messages: Any) -> None:
    """With a pool of one connection, interleaved operations must not wait on themselves (§8)."""
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=1)
    try:
        ledger = PostgresLedger(pool, schema=pg_schema, page_size=5)
        await ledger.add("c1", make_messages(20))
        async with asyncio.timeout(20):
            seen = []
            async for entry in ledger.results("c1"):  # a connection per page, released before yielding
                seen.append(entry.message_id)
                assert await ledger.get(entry.message_id) is not None
            outcomes = await asyncio.gather(*(ledger.claim(m, lease=60, request_timeout=5) for m in seen))
        assert len(seen) == 20
        assert all(isinstance(outcome, Claim) for outcome in outcomes)
    finally:
        await pool.close()


async def test_counters_equal_group_by_over_sends(
    ledger: PostgresLedger, pg_pool: Any, pg_schema: str, make_messages: Any
) -> None:
    rng = random.Random(7)
    await ledger.add("c1", make_messages(600, prefix="a"))
    await ledger.add("c2", make_messages(300, prefix="b"))
    ids = [f"a-{i:06d}" for i in range(600)] + [f"b-{i:06d}" for i in range(300)]
    rng.shuffle(ids)

    async def walk(message_id: str) -> None:
        granted = await ledger.claim(message_id, lease=0.2 if rng.random() < 0.2 else 60, request_timeout=0.1)
        if not isinstance(granted, Claim):
            return
        choice = rng.random()
        if choice < 0.4:
            await ledger.record(granted, SendOutcome(SendState.ACCEPTED, provider_id=f"SM{message_id}"))
        elif choice < 0.55:
            await ledger.record(granted, SendOutcome(SendState.FAILED, error_code="INVALID_RECIPIENT"))
        elif choice < 0.7:
            await ledger.record(granted, SendOutcome(SendState.UNKNOWN, error_code="OUTCOME_UNKNOWN"))
        elif choice < 0.8:
            await ledger.record(granted, SendOutcome(SendState.PENDING, retry_after=0.0))
        # else: left SUBMITTING (a worker that died)

    semaphore = asyncio.Semaphore(30)

    async def bounded(message_id: str) -> None:
        async with semaphore:
            await walk(message_id)

    async with asyncio.timeout(60):
        await asyncio.gather(*(bounded(m) for m in ids[:450]))
        # Cancel c2 while the other half of the transitions runs.
        cancelled, *_ = await asyncio.gather(ledger.cancel("c2"), *(bounded(m) for m in ids[450:]))

    states: set[str] = set()
    for campaign_id, total in (("c1", 600), ("c2", 300)):
        expected = await group_by_state(pg_pool, pg_schema, campaign_id)
        progress = await ledger.progress(campaign_id)
        assert progress == CampaignProgress(campaign_id, expected)
        assert progress.total == total
        states |= set(expected)
    assert cancelled > 0
    assert states == {state.value for state in SendState}  # every state was really exercised
    async with pg_pool.acquire() as conn:
        shards = await conn.fetch(f"select shard, n from {pg_schema}.campaign_counters")
    assert {row["shard"] for row in shards} <= set(range(COUNTER_SHARDS))
    assert len({row["shard"] for row in shards}) > 1
    assert all(row["n"] >= 0 for row in shards)


async def test_concurrent_claims_grant_each_message_exactly_once(ledger: PostgresLedger, make_messages: Any) -> None:
    """2,000 messages, 50 concurrent tasks, every message offered to 5 of them."""
    n, tasks, offers = 2000, 50, 5
    await ledger.add("c1", make_messages(n))
    ids = [f"m-{i:06d}" for i in range(n)]
    rng = random.Random(3)
    work: list[list[str]] = [[] for _ in range(tasks)]
    for message_id in ids:
        for task in rng.sample(range(tasks), offers):
            work[task].append(message_id)
    for chunk in work:
        rng.shuffle(chunk)

    granted: Counter[str] = Counter()

    async def worker(chunk: list[str]) -> None:
        for message_id in chunk:
            if isinstance(await ledger.claim(message_id, lease=LONG_LEASE, request_timeout=TIMEOUT), Claim):
                granted[message_id] += 1

    async with asyncio.timeout(60):
        await asyncio.gather(*(worker(chunk) for chunk in work))
    assert set(granted) == set(ids)
    assert set(granted.values()) == {1}
    assert (await ledger.progress("c1")).counts == {"submitting": n}
    entries = [entry async for entry in ledger.results("c1")]
    assert {(entry.fence, entry.attempts) for entry in entries} == {(1, 1)}


# -- what mutation testing found untested (#18) ------------------------------------------------------------------


async def test_an_entry_carries_the_delivery_status_and_the_error_that_failed_it(
    ledger: PostgresLedger, pg_pool: Any, pg_schema: str, make_messages: Any
) -> None:
    """``status``: the last delivery status (written by the status store on the same tables);
    ``error``: the error a worker gave up on, only once it made the message FAILED."""
    await ledger.add("c1", make_messages(2))
    sent, broken = "m-000000", "m-000001"
    accepted = await claim(ledger, sent)
    assert await ledger.record(accepted, SendOutcome(SendState.ACCEPTED, provider_id="SM-status"))
    entry = await ledger.get(sent)
    assert entry is not None
    assert entry.status is None
    store = PostgresStatusStore(pg_pool, schema=pg_schema, batch_size=1)
    assert await store.apply(StatusUpdate("SM-status", MessageStatus.DELIVERED))
    entry = await ledger.get(sent)
    assert entry is not None
    assert entry.status is MessageStatus.DELIVERED
    assert entry.error is None

    assert not await ledger.note_failure(broken, "ValueError: bad row", give_up_after=2, error_code="WORKER_ERROR")
    pending = await ledger.get(broken)
    assert pending is not None
    assert (pending.state, pending.error) == (SendState.PENDING, None), "not failed yet: no error to show"
    assert await ledger.note_failure(broken, "ValueError: bad row", give_up_after=2, error_code="WORKER_ERROR")
    failed = await ledger.get(broken)
    assert failed is not None
    assert (failed.state, failed.error_code, failed.error) == (SendState.FAILED, "WORKER_ERROR", "ValueError: bad row")
    assert failed.status is None


async def test_close_closes_only_a_pool_the_ledger_opened(pg_pool: Any, pg_dsn: str, pg_schema: str) -> None:
    given = PostgresLedger(pg_pool, schema=pg_schema)
    await given.close()
    async with pg_pool.acquire() as conn:
        assert await conn.fetchval("select 1") == 1, "the caller's pool is still open"
    own = PostgresLedger.from_url(f"{pg_dsn}?schema={pg_schema}")
    assert await own.get("nothing") is None  # opens its pool
    assert "open=True" in repr(own.pool)
    await own.close()
    assert "open=False" in repr(own.pool), "a pool of its own is closed with it"


def test_the_default_schema_is_messaging(pg_pool: Any) -> None:
    assert PostgresLedger(pg_pool).schema == "messaging"


async def test_a_message_without_a_receiver_is_kept_under_the_empty_address(ledger: PostgresLedger) -> None:
    message = Message("no-receiver", Endpoint.phone("+15005550006"), None, TextContent("hi"))
    assert await ledger.add("c1", [(message, "+15005550006", 1)]) == 1
    assert await ledger.load(message.id) == message
    await claim(ledger, message.id)
    assert await ledger.open_to("") == [message.id]


async def test_a_campaign_is_sent_by_one_connector(ledger: PostgresLedger) -> None:
    await ledger.register_campaign("c1", "sms")
    assert await ledger.set_campaign_flags("c1", paused=True, cancelled=True)
    info = await ledger.campaign("c1")
    assert info is not None
    assert (info.campaign_id, info.connector, info.paused, info.cancelled) == ("c1", "sms", True, True)
    assert abs((info.created_at - datetime.now(UTC)).total_seconds()) < 60
    with pytest.raises(ValueError, match="campaign 'c1' is sent by connector 'sms', not 'other'"):
        await ledger.register_campaign("c1", "other")
    await ledger.register_campaign("c1", "sms")  # a resubmission: the flags are cleared
    info = await ledger.campaign("c1")
    assert info is not None
    assert (info.connector, info.paused, info.cancelled) == ("sms", False, False)
    assert await ledger.set_campaign_flags("c1", cancelled=True)
    info = await ledger.campaign("c1")
    assert info is not None
    assert (info.paused, info.cancelled) == (False, True), "None leaves a flag unchanged"
    assert not await ledger.set_campaign_flags("unregistered", paused=True)


async def test_the_sweep_queries_are_bounded_by_default(
    ledger: PostgresLedger, pg_pool: Any, pg_schema: str, make_messages: Any
) -> None:
    """At most 500 ids from ``due``, 1,000 from ``held``, 5,000 from ``stale`` and ``wake_deferred``, 10,000 a page."""
    entries = make_messages(10_001)
    assert await ledger.add("c1", entries) == 10_001
    assert len(await ledger.due()) == 500
    assert len(await ledger.open_page("c1")) == 10_000
    assert len(await ledger.stale(stale_after=0.0, unknown=False, unclaimed=True)) == 5000
    assert await ledger.defer([message.id for message, _, _ in entries], 0.0) == 10_001
    assert len(await ledger.wake_deferred()) == 5000
    async with pg_pool.acquire() as conn:  # in doubt, as after an unanswered call (the counters follow by trigger)
        await conn.execute(
            f"update {pg_schema}.sends set state = 'unknown' "
            f"where seq <= (select min(seq) + 1000 from {pg_schema}.sends)"
        )
    assert len(await ledger.held()) == 1000


async def test_a_woken_row_is_woken_again_after_five_minutes_unclaimed(
    ledger: PostgresLedger, pg_pool: Any, pg_schema: str, make_messages: Any
) -> None:
    await ledger.add("c1", make_messages(1))
    assert await ledger.defer(["m-000000"], 0.0) == 1
    assert await ledger.wake_deferred() == ["m-000000"]
    for seconds_ago, woken in ((299.5, []), (300.5, ["m-000000"])):
        async with pg_pool.acquire() as conn:
            await conn.execute(
                # Due for ten minutes, woken (published) that long ago, never claimed: the publication was lost.
                f"update {pg_schema}.sends set retry_at = now() - interval '10 minutes', "
                "kicked_at = now() - make_interval(secs => $1)",
                seconds_ago,
            )
        assert await ledger.wake_deferred() == woken, f"kicked {seconds_ago} s ago"


async def test_an_expired_lease_is_stale_after_its_own_delay(ledger: PostgresLedger, make_messages: Any) -> None:
    """``expired_after`` (default: ``stale_after``) counts from the end of a lease."""
    await ledger.add("c1", make_messages(1))
    await claim(ledger, "m-000000", lease=0.01)
    await asyncio.sleep(0.1)
    assert await ledger.stale(stale_after=3600.0, unknown=False, unclaimed=False) == []
    assert await ledger.stale(stale_after=3600.0, unknown=False, unclaimed=False, expired_after=0.0) == ["m-000000"]
    assert await ledger.stale(stale_after=0.0, unknown=False, unclaimed=False, expired_after=3600.0) == []


async def test_an_unreadable_row_is_reported_apart_from_its_chunk(
    ledger: PostgresLedger, pg_pool: Any, pg_schema: str, make_messages: Any
) -> None:
    await ledger.add("c1", make_messages(2))
    await ledger.register_campaign("c1", "sms")
    assert await ledger.set_campaign_flags("c1", cancelled=True)
    async with pg_pool.acquire() as conn:
        await conn.execute(f"update {pg_schema}.sends set payload = '{{\"id\": 1}}' where message_id = 'm-000001'")
    found, unreadable = await ledger.open_chunk(["m-000000", "m-000001"])
    assert [(item.message.id, item.connector, item.paused, item.cancelled) for item in found] == [
        ("m-000000", "sms", False, True)
    ]
    assert list(unreadable) == ["m-000001"]
    error = unreadable["m-000001"]
    assert error.startswith("unreadable message: ClassValidationError: While structuring Message"), error
    with pytest.raises(ValueError) as raised:
        await ledger.open_messages(["m-000000", "m-000001"])
    assert str(raised.value) == f"message m-000001 cannot be read from the ledger: {error}"


async def test_a_failure_is_kept_to_its_first_500_characters(ledger: PostgresLedger, make_messages: Any) -> None:
    await ledger.add("c1", make_messages(1))
    error = "RuntimeError: " + "x" * 600
    assert await ledger.note_failure("m-000000", error, give_up_after=1, error_code="WORKER_ERROR")
    entry = await ledger.get("m-000000")
    assert entry is not None
    assert entry.error == error[:500]


async def test_the_campaign_filters_of_stale_and_held(ledger: PostgresLedger, make_messages: Any) -> None:
    await ledger.add("c1", make_messages(1, prefix="a"))
    await ledger.add("c2", make_messages(1, prefix="b"))
    assert await ledger.stale(stale_after=0.0, unknown=False, unclaimed=True, campaign_id="c2") == ["b-000000"]
    for message_id in ("a-000000", "b-000000"):
        claimed = await claim(ledger, message_id)
        assert await ledger.record(claimed, SendOutcome(SendState.UNKNOWN, error_code="OUTCOME_UNKNOWN"))
    assert [entry.message_id for entry in await ledger.held(campaign_id="c1")] == ["a-000000"]
    assert [entry.message_id for entry in await ledger.held()] == ["a-000000", "b-000000"]
