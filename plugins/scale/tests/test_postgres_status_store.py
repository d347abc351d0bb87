"""PostgresStatusStore against a real PostgreSQL: monotonic, deduplicated, orphan-merging updates."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import asyncpg
import pytest

from messaging_core.campaigns import Claim, SendOutcome, SendState, StatusStore
from messaging_core.results import MessageStatus, StatusUpdate
from messaging_scale import PostgresLedger, PostgresStatusStore, StatusWrite

pytestmark = pytest.mark.services

QUEUED, SENT, DELIVERED, FAILED = (
    MessageStatus.QUEUED,
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.DELIVERY_FAILED,
)


async def claim(ledger: PostgresLedger, message_id: str) -> Claim:
    result = await ledger.claim(message_id, lease=60, request_timeout=5)
    assert isinstance(result, Claim)
    return result


async def accept(ledger: PostgresLedger, message_id: str, sid: str) -> None:
    assert await ledger.record(await claim(ledger, message_id), SendOutcome(SendState.ACCEPTED, provider_id=sid))


async def count(pool: Any, sql: str) -> int:
    async with pool.acquire() as conn:
        value: int = await conn.fetchval(sql)
    return value


def test_implements_the_protocol(status_store: PostgresStatusStore) -> None:
    assert isinstance(status_store, StatusStore)


async def test_status_only_moves_forward(
    ledger: PostgresLedger, status_store: PostgresStatusStore, make_messages: Any
) -> None:
    await ledger.add("c1", make_messages(1))
    await accept(ledger, "m-000000", "SM0")
    assert await status_store.get("m-000000") is None
    assert await status_store.write(StatusUpdate("m-000000", QUEUED)) is StatusWrite.APPLIED
    assert await status_store.write(StatusUpdate("m-000000", QUEUED)) is StatusWrite.STALE
    assert await status_store.apply(StatusUpdate("m-000000", DELIVERED))
    assert not await status_store.apply(StatusUpdate("m-000000", SENT))  # late: ignored
    assert not await status_store.apply(StatusUpdate("m-000000", FAILED))  # final stays final
    assert await status_store.get("m-000000") is DELIVERED
    assert await status_store.apply(StatusUpdate("m-000000", MessageStatus.READ))  # read receipts
    assert await status_store.get("m-000000") is MessageStatus.READ
    entry = await ledger.get("m-000000")
    assert entry is not None
    assert entry.status is MessageStatus.READ


async def test_idempotency_token_applies_once(
    ledger: PostgresLedger, status_store: PostgresStatusStore, make_messages: Any
) -> None:
    await ledger.add("c1", make_messages(1))
    await accept(ledger, "m-000000", "SM0")
    assert await status_store.write(StatusUpdate("m-000000", SENT), idempotency_key="tok-1") is StatusWrite.APPLIED
    # A replay carrying the same token is dropped even though it would move the status forward.
    replay = await status_store.write(StatusUpdate("m-000000", DELIVERED), idempotency_key="tok-1")
    assert replay is StatusWrite.DUPLICATE
    assert await status_store.get("m-000000") is SENT


async def test_lookup_by_provider_id(
    ledger: PostgresLedger, status_store: PostgresStatusStore, make_messages: Any
) -> None:
    await ledger.add("c1", make_messages(1))
    await accept(ledger, "m-000000", "SM0")
    # A callback configured on a Messaging Service carries no mid: the SID is all there is.
    assert await status_store.apply(StatusUpdate("SM0", SENT, remote_message_id="SM0"))
    assert await status_store.get("m-000000") is SENT
    assert await status_store.get("SM0") is SENT


async def test_callback_settles_in_doubt_sends(
    ledger: PostgresLedger, status_store: PostgresStatusStore, make_messages: Any
) -> None:
    await ledger.add("c1", make_messages(4))
    await claim(ledger, "m-000000")  # SUBMITTING, live lease
    expired = await ledger.claim("m-000001", lease=0.1, request_timeout=0.05)
    assert isinstance(expired, Claim)
    await asyncio.sleep(0.2)
    assert await ledger.mark_unknown("m-000001", expired.fence)  # UNKNOWN

    assert await status_store.apply(StatusUpdate("m-000000", SENT, remote_message_id="SMa"))
    assert await status_store.apply(StatusUpdate("m-000001", QUEUED, remote_message_id="SMb"))
    # PENDING: a probe found nothing (the provider's list lagged) and a resend is due; the
    # callback proves the first attempt exists, so the resend must not happen.
    pending = await ledger.get("m-000002")
    assert pending is not None
    assert await status_store.apply(StatusUpdate("m-000002", QUEUED, remote_message_id="SMc"))
    states = {m: await ledger.get(m) for m in ("m-000000", "m-000001", "m-000002")}
    assert {m: (e.state, e.provider_id) for m, e in states.items() if e} == {
        "m-000000": (SendState.ACCEPTED, "SMa"),
        "m-000001": (SendState.ACCEPTED, "SMb"),
        "m-000002": (SendState.ACCEPTED, "SMc"),
    }
    assert all(e is not None and e.fence > 0 for e in states.values())  # settling moved every fence
    assert states["m-000002"] is not None
    assert states["m-000002"].fence == pending.fence + 1
    assert (await ledger.progress("c1")).counts == {"accepted": 3, "pending": 1}
    assert not isinstance(await ledger.claim("m-000002", lease=30.0, request_timeout=5.0), Claim)
    # The original worker's late write loses: the row is final.
    assert not await ledger.resolve("m-000001", provider_id=None)


async def test_orphans_are_merged_when_the_sid_appears(
    ledger: PostgresLedger, status_store: PostgresStatusStore, pg_pool: Any, pg_schema: str, make_messages: Any
) -> None:
    await ledger.add("c1", make_messages(3))
    # Callbacks keyed by SID arrive before the worker stored the SID (they are monotonic too).
    assert await status_store.write(StatusUpdate("SM0", DELIVERED)) is StatusWrite.ORPHANED
    assert await status_store.write(StatusUpdate("SM0", SENT)) is StatusWrite.STALE
    assert await status_store.write(StatusUpdate("SM1", QUEUED, remote_message_id="SM1")) is StatusWrite.ORPHANED
    assert await status_store.get("SM0") is DELIVERED
    assert await count(pg_pool, f"select count(*) from {pg_schema}.orphan_status") == 2

    await accept(ledger, "m-000000", "SM0")  # record() stores the SID
    granted = await ledger.claim("m-000001", lease=0.1, request_timeout=0.05)
    assert isinstance(granted, Claim)
    await asyncio.sleep(0.2)
    await ledger.mark_unknown("m-000001", granted.fence)
    assert await ledger.resolve("m-000001", provider_id="SM1")  # reconciliation stores the SID

    assert await status_store.get("m-000000") is DELIVERED
    assert await status_store.get("m-000001") is QUEUED
    assert await status_store.get("m-000002") is None
    assert await count(pg_pool, f"select count(*) from {pg_schema}.orphan_status") == 0
    # After the merge the message is found by SID directly.
    assert await status_store.write(StatusUpdate("SM1", SENT)) is StatusWrite.APPLIED
    assert await status_store.get("m-000001") is SENT


async def test_orphans_never_slip_past_a_concurrent_merge(
    ledger: PostgresLedger, status_store: PostgresStatusStore, pg_pool: Any, pg_schema: str, make_messages: Any
) -> None:
    """Callbacks by SID race the ledger storing that SID; every status must end up on its message."""
    n = 300
    await ledger.add("c1", make_messages(n))
    claims = [await claim(ledger, f"m-{i:06d}") for i in range(n)]
    rng = random.Random(5)

    async def callback(i: int) -> None:
        await asyncio.sleep(rng.random() * 0.02)
        await status_store.apply(StatusUpdate(f"SM{i}", SENT, remote_message_id=f"SM{i}"))

    async def record(i: int) -> None:
        await asyncio.sleep(rng.random() * 0.02)
        await ledger.record(claims[i], SendOutcome(SendState.ACCEPTED, provider_id=f"SM{i}"))

    async with asyncio.timeout(60):
        await asyncio.gather(*(callback(i) for i in range(n)), *(record(i) for i in range(n)))
    statuses = {entry.message_id: entry.status async for entry in ledger.results("c1")}
    assert statuses == {f"m-{i:06d}": SENT for i in range(n)}
    assert await count(pg_pool, f"select count(*) from {pg_schema}.orphan_status") == 0


async def test_unknown_message_is_kept_by_its_id(status_store: PostgresStatusStore) -> None:
    """Without a ledger row (a plain webhook host), the store still answers by the id it was given."""
    assert await status_store.apply(StatusUpdate("x-1", SENT))
    assert await status_store.get("x-1") is SENT
    assert await status_store.get("x-2") is None


async def test_prune_forgets_old_tokens_and_orphans(
    status_store: PostgresStatusStore, pg_pool: Any, pg_schema: str
) -> None:
    assert await status_store.apply(StatusUpdate("SM-old", SENT), idempotency_key="old")
    assert await status_store.apply(StatusUpdate("SM-new", SENT), idempotency_key="new")
    async with pg_pool.acquire() as conn:
        for table in ("webhook_events", "orphan_status"):
            await conn.execute(
                f"update {pg_schema}.{table} set received_at = now() - interval '2 days' "
                f"where {'token' if table == 'webhook_events' else 'ref'} like '%old'"
            )
    assert await status_store.prune(tokens_older_than=86_400, orphans_older_than=86_400) == (1, 1)
    assert await status_store.prune() == (0, 0)
    assert await status_store.get("SM-old") is None
    assert await status_store.get("SM-new") is SENT
    # A pruned token is new again; a kept one still deduplicates.
    assert await status_store.write(StatusUpdate("SM-x", QUEUED), idempotency_key="old") is StatusWrite.ORPHANED
    assert await status_store.write(StatusUpdate("SM-x", SENT), idempotency_key="new") is StatusWrite.DUPLICATE


async def test_30k_shuffled_duplicated_updates(
    ledger: PostgresLedger,
    status_store: PostgresStatusStore,
    pg_pool: Any,
    pg_schema: str,
    make_messages: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """10,000 messages × 3 callbacks, shuffled, 10 % replayed with their token, 50 concurrent writers."""
    n, writers = 10_000, 50
    rng = random.Random(11)
    await ledger.add("c1", make_messages(n))
    # A quarter each: accepted with a SID, accepted without (the callback brings it), SUBMITTING, UNKNOWN.
    async with pg_pool.acquire() as conn:
        await conn.execute(
            f"update {pg_schema}.sends set state = case (seq % 4) when 0 then 'accepted' when 1 then 'accepted' "
            "when 2 then 'submitting' else 'unknown' end, "
            "provider_id = case when seq % 4 = 0 then 'SM' || message_id end, fence = 1, attempts = 1"
        )
        with_sid = {
            row["message_id"]
            for row in await conn.fetch(f"select message_id from {pg_schema}.sends where provider_id is not null")
        }

    final: dict[str, MessageStatus] = {}
    events: list[tuple[str, StatusUpdate]] = []
    for i in range(n):
        mid, sid = f"m-{i:06d}", f"SMm-{i:06d}"
        final[mid] = DELIVERED if rng.random() < 0.9 else FAILED
        for status in (QUEUED, SENT, final[mid]):
            by_sid_only = mid in with_sid and rng.random() < 0.5
            update = (
                StatusUpdate(sid, status, remote_message_id=sid)
                if by_sid_only
                else StatusUpdate(mid, status, remote_message_id=sid)
            )
            events.append((f"tok-{mid}-{status.value}", update))
    deliveries = events + rng.sample(events, len(events) // 10)
    rng.shuffle(deliveries)

    outcomes: dict[str, list[StatusWrite]] = defaultdict(list)
    queue: asyncio.Queue[tuple[str, StatusUpdate]] = asyncio.Queue()
    for delivery in deliveries:
        queue.put_nowait(delivery)

    async def writer() -> None:
        while not queue.empty():
            token, update = queue.get_nowait()
            outcomes[token].append(await status_store.write(update, idempotency_key=token))

    started = time.perf_counter()
    async with asyncio.timeout(90):
        await asyncio.gather(*(writer() for _ in range(writers)))
    elapsed = time.perf_counter() - started
    rate = len(deliveries) / elapsed
    with capsys.disabled():
        print(f"\n[status store] {len(deliveries)} updates in {elapsed:.2f}s: {rate:,.0f} updates/s")

    statuses = {entry.message_id: (entry.status, entry.state) async for entry in ledger.results("c1")}
    assert statuses == {mid: (status, SendState.ACCEPTED) for mid, status in final.items()}
    for token, seen in outcomes.items():
        tally = Counter(seen)
        assert tally[StatusWrite.DUPLICATE] == len(seen) - 1, (token, seen)  # every replay dropped
        assert tally[StatusWrite.APPLIED] <= 1
    assert sum(Counter(seen)[StatusWrite.APPLIED] for seen in outcomes.values()) >= n  # the last of each applied
    assert await count(pg_pool, f"select count(*) from {pg_schema}.webhook_events") == len(events)
    assert await count(pg_pool, f"select count(*) from {pg_schema}.orphan_status") == 0
    assert (await ledger.progress("c1")).counts == {"accepted": n}
    assert rate > 500  # a floor far below the measured rate: catches a pathological regression only


# -- batches: many callers, one transaction ------------------------------------------------------


@pytest.fixture
def batching_store(pg_pool: Any, pg_schema: str) -> PostgresStatusStore:
    """A store batching the updates a test starts in one turn of the loop (50 ms behind a batch in flight)."""
    return PostgresStatusStore(pg_pool, schema=pg_schema, batch_size=1000, batch_wait=0.05)


async def transactions_of(pool: Any, schema: str, message_ids: list[str]) -> int:
    """How many transactions wrote these rows last (``xmin``)."""
    async with pool.acquire() as conn:
        value: int = await conn.fetchval(
            f"select count(distinct xmin::text) from {schema}.sends where message_id = any($1::text[])", message_ids
        )
    return value


async def test_concurrent_callers_share_one_transaction_and_each_get_their_answer(
    ledger: PostgresLedger, batching_store: PostgresStatusStore, pg_pool: Any, pg_schema: str, make_messages: Any
) -> None:
    await ledger.add("c1", make_messages(4))
    for i in range(4):
        await accept(ledger, f"m-{i:06d}", f"SM{i}")
    assert await batching_store.apply(StatusUpdate("m-000003", DELIVERED))
    outcomes = await asyncio.gather(
        batching_store.write(StatusUpdate("m-000000", SENT), idempotency_key="a"),
        batching_store.write(StatusUpdate("SM1", DELIVERED, remote_message_id="SM1"), idempotency_key="b"),
        batching_store.write(StatusUpdate("m-000002", QUEUED), idempotency_key="c"),
        batching_store.write(StatusUpdate("m-000003", SENT), idempotency_key="d"),  # late: stale
    )
    assert outcomes == [StatusWrite.APPLIED, StatusWrite.APPLIED, StatusWrite.APPLIED, StatusWrite.STALE]
    assert await transactions_of(pg_pool, pg_schema, ["m-000000", "m-000001", "m-000002"]) == 1
    assert [await batching_store.get(f"m-{i:06d}") for i in range(4)] == [SENT, DELIVERED, QUEUED, DELIVERED]


async def test_updates_of_one_message_in_one_batch_apply_in_arrival_order(
    ledger: PostgresLedger, batching_store: PostgresStatusStore, pg_pool: Any, make_messages: Any
) -> None:
    await ledger.add("c1", make_messages(2))
    await accept(ledger, "m-000000", "SM0")
    await accept(ledger, "m-000001", "SM1")
    forward = await asyncio.gather(
        *(batching_store.write(StatusUpdate("m-000000", status)) for status in (QUEUED, SENT, QUEUED, DELIVERED, SENT))
    )
    assert forward == [
        StatusWrite.APPLIED,
        StatusWrite.APPLIED,
        StatusWrite.STALE,  # after SENT in the same batch
        StatusWrite.APPLIED,
        StatusWrite.STALE,
    ]
    # The same statuses arriving the other way round: the first wins, the rest are stale.
    backward = await asyncio.gather(
        *(batching_store.write(StatusUpdate("SM1", status, remote_message_id="SM1")) for status in (DELIVERED, SENT))
    )
    assert backward == [StatusWrite.APPLIED, StatusWrite.STALE]
    assert await batching_store.get("m-000000") is DELIVERED
    assert await batching_store.get("m-000001") is DELIVERED
    entry = await ledger.get("m-000000")
    assert entry is not None
    assert entry.fence == 1  # accepted already: callbacks do not move the fence


async def test_a_replay_inside_one_batch_is_a_duplicate(
    ledger: PostgresLedger, batching_store: PostgresStatusStore, pg_pool: Any, pg_schema: str, make_messages: Any
) -> None:
    await ledger.add("c1", make_messages(1))
    await accept(ledger, "m-000000", "SM0")
    outcomes = await asyncio.gather(
        batching_store.write(StatusUpdate("m-000000", SENT), idempotency_key="tok-1"),
        batching_store.write(StatusUpdate("m-000000", SENT), idempotency_key="tok-1"),
        # an orphan and its replay: applied alone after the batch, in order
        batching_store.write(StatusUpdate("SM-none", QUEUED), idempotency_key="tok-2"),
        batching_store.write(StatusUpdate("SM-none", QUEUED), idempotency_key="tok-2"),
    )
    assert outcomes == [StatusWrite.APPLIED, StatusWrite.DUPLICATE, StatusWrite.ORPHANED, StatusWrite.DUPLICATE]
    assert await count(pg_pool, f"select count(*) from {pg_schema}.webhook_events") == 2
    # And a replay in a later batch too.
    assert await batching_store.write(StatusUpdate("m-000000", DELIVERED), idempotency_key="tok-1") is (
        StatusWrite.DUPLICATE
    )


async def test_an_orphan_and_the_updates_after_it_keep_their_order(
    ledger: PostgresLedger, batching_store: PostgresStatusStore, pg_pool: Any, pg_schema: str, make_messages: Any
) -> None:
    """A callback by SID before the SID is stored, then one naming our id and that SID, in one batch."""
    await ledger.add("c1", make_messages(1))
    await claim(ledger, "m-000000")  # SUBMITTING, no SID yet
    outcomes = await asyncio.gather(
        batching_store.write(StatusUpdate("SMa", SENT, remote_message_id="SMa")),
        batching_store.write(StatusUpdate("m-000000", DELIVERED, remote_message_id="SMa")),
    )
    # One after the other: the first kept as an orphan, the second settles the message (and
    # merges the orphan, which does not move it back). Had the second been applied first, the
    # first would be stale.
    assert outcomes == [StatusWrite.ORPHANED, StatusWrite.APPLIED]
    entry = await ledger.get("m-000000")
    assert entry is not None
    assert (entry.state, entry.provider_id, entry.status) == (SendState.ACCEPTED, "SMa", DELIVERED)
    assert await count(pg_pool, f"select count(*) from {pg_schema}.orphan_status") == 0


async def test_a_failing_batch_makes_every_caller_raise_and_records_nothing(
    ledger: PostgresLedger, batching_store: PostgresStatusStore, pg_pool: Any, pg_schema: str, make_messages: Any
) -> None:
    await ledger.add("c1", make_messages(3))
    for i in range(3):
        await accept(ledger, f"m-{i:06d}", f"SM{i}")
    async with pg_pool.acquire() as conn:  # the batch statement fails for every update in it
        await conn.execute(
            f"create function {pg_schema}.fail_status() returns trigger language plpgsql as "
            "$$ begin raise exception 'disk full'; end $$; "
            f"create trigger fail_status before update of status on {pg_schema}.sends "
            f"for each row execute function {pg_schema}.fail_status()"
        )
    outcomes = await asyncio.gather(
        *(batching_store.apply(StatusUpdate(f"m-{i:06d}", SENT), idempotency_key=f"t{i}") for i in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(outcome, asyncpg.RaiseError) for outcome in outcomes), outcomes
    assert await count(pg_pool, f"select count(*) from {pg_schema}.webhook_events") == 0  # rolled back
    assert [await batching_store.get(f"m-{i:06d}") for i in range(3)] == [None, None, None]


async def test_an_update_at_fault_fails_only_its_own_caller(
    ledger: PostgresLedger, batching_store: PostgresStatusStore, pg_pool: Any, pg_schema: str, make_messages: Any
) -> None:
    """A callback naming a SID another message holds: the batch is applied update by update."""
    await ledger.add("c1", make_messages(3))
    await accept(ledger, "m-000000", "SM0")
    await claim(ledger, "m-000001")  # no SID yet
    await accept(ledger, "m-000002", "SM2")
    outcomes = await asyncio.gather(
        batching_store.apply(StatusUpdate("m-000000", SENT), idempotency_key="a"),
        batching_store.apply(StatusUpdate("m-000001", SENT, remote_message_id="SM0"), idempotency_key="b"),
        batching_store.apply(StatusUpdate("m-000002", DELIVERED), idempotency_key="c"),
        return_exceptions=True,
    )
    assert outcomes[0] is True
    assert isinstance(outcomes[1], asyncpg.UniqueViolationError)
    assert outcomes[2] is True
    assert await batching_store.get("m-000000") is SENT
    assert await batching_store.get("m-000002") is DELIVERED
    # The failed update left nothing behind, not even its token: a retry is not taken for a replay.
    assert await batching_store.get("m-000001") is None
    assert await count(pg_pool, f"select count(*) from {pg_schema}.webhook_events where token = 'b'") == 0


async def test_a_caller_that_stops_waiting_does_not_disturb_its_batch(
    ledger: PostgresLedger, batching_store: PostgresStatusStore, make_messages: Any
) -> None:
    await ledger.add("c1", make_messages(2))
    await accept(ledger, "m-000000", "SM0")
    await accept(ledger, "m-000001", "SM1")
    impatient = asyncio.ensure_future(batching_store.apply(StatusUpdate("m-000000", SENT)))
    patient = asyncio.ensure_future(batching_store.apply(StatusUpdate("m-000001", SENT)))
    for _ in range(3):  # both submitted, their batch started: in flight, waiting for the database
        await asyncio.sleep(0)
    assert not impatient.done()
    impatient.cancel()
    assert await patient is True
    with pytest.raises(asyncio.CancelledError):
        await impatient
    # Like a request cut off by a timeout: the update may still be committed (here it is).
    assert await batching_store.get("m-000000") is SENT


async def test_close_writes_the_updates_still_waiting(pg_pool: Any, pg_schema: str) -> None:
    """One batch in flight, one update waiting behind it (for up to 60 s): close returns once both are committed."""
    store = PostgresStatusStore(pg_pool, schema=pg_schema, batch_size=1000, batch_wait=60.0)
    in_flight = asyncio.ensure_future(store.apply(StatusUpdate("SM-x", SENT)))
    for _ in range(3):
        await asyncio.sleep(0)
    waiting = asyncio.ensure_future(store.apply(StatusUpdate("SM-y", SENT)))
    await asyncio.sleep(0)
    assert not in_flight.done()
    assert not waiting.done()
    async with asyncio.timeout(10):
        await store.close()
    assert (in_flight.result(), waiting.result()) == (True, True)
    assert await store.get("SM-x") is SENT
    assert await store.get("SM-y") is SENT


def test_batch_settings_are_checked(pg_pool: Any) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        PostgresStatusStore(pg_pool, batch_size=0)
    with pytest.raises(ValueError, match="batch_wait"):
        PostgresStatusStore(pg_pool, batch_wait=-1)


async def test_batches_are_set_in_the_url(pg_dsn: str, pg_schema: str) -> None:
    store = PostgresStatusStore.from_url(f"{pg_dsn}?schema={pg_schema}&batch_size=1&batch_wait=0.01")
    try:
        assert (store.batch_size, store.batch_wait) == (1, 0.01)
        assert await store.apply(StatusUpdate("SM-url", SENT))
        assert await store.get("SM-url") is SENT
    finally:
        await store.close()
    default = PostgresStatusStore.from_url(f"{pg_dsn}?schema={pg_schema}")
    assert (default.batch_size, default.batch_wait) == (100, 0.002)
    await default.close()


# -- what mutation testing found unchecked (#18) ------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 100], ids=["alone", "batched"])
@pytest.mark.parametrize("deadlocks", [4, 5])
async def test_an_update_rolled_back_by_deadlocks_is_tried_five_times(
    ledger: PostgresLedger, pg_pool: Any, pg_schema: str, make_messages: Any, batch_size: int, deadlocks: int
) -> None:
    """PostgreSQL itself fails the first tries with a deadlock (SQLSTATE 40P01), as another transaction would."""
    await ledger.add("c1", make_messages(1))
    await accept(ledger, "m-000000", "SM0")
    async with pg_pool.acquire() as conn:  # a sequence counts the tries: it is not rolled back with them
        await conn.execute(
            f"create sequence {pg_schema}.tries; "
            f"create function {pg_schema}.deadlock() returns trigger language plpgsql as $$ begin "
            f"if nextval('{pg_schema}.tries') <= {deadlocks} then "
            "raise exception 'deadlock detected' using errcode = '40P01'; end if; return new; end $$; "
            f"create trigger deadlock before update of status on {pg_schema}.sends "
            f"for each row execute function {pg_schema}.deadlock()"
        )
    store = PostgresStatusStore(pg_pool, schema=pg_schema, batch_size=batch_size)
    if deadlocks == 4:
        assert await store.write(StatusUpdate("m-000000", SENT), idempotency_key="t0") is StatusWrite.APPLIED
        assert await store.get("m-000000") is SENT
    else:
        with pytest.raises(asyncpg.DeadlockDetectedError):
            await store.write(StatusUpdate("m-000000", SENT), idempotency_key="t0")
        assert await store.get("m-000000") is None
    assert await count(pg_pool, f"select last_value from {pg_schema}.tries") == 5, "five tries at most"
    tokens = await count(pg_pool, f"select count(*) from {pg_schema}.webhook_events")
    assert tokens == (1 if deadlocks == 4 else 0), "a rolled-back try keeps no token"


def test_the_default_schema_is_messaging(pg_pool: Any) -> None:
    assert PostgresStatusStore(pg_pool).schema == "messaging"


async def test_migrate_creates_the_tables_it_needs(pg_pool: Any) -> None:
    schema = f"t_{uuid.uuid4().hex}"
    store = PostgresStatusStore(pg_pool, schema=schema)
    try:
        await store.migrate()
        assert await store.apply(StatusUpdate("SM-migrated", SENT))
        assert await store.get("SM-migrated") is SENT
    finally:
        async with pg_pool.acquire() as conn:
            await conn.execute(f"drop schema if exists {schema} cascade")


async def test_close_closes_only_a_pool_the_store_opened(pg_pool: Any, pg_dsn: str, pg_schema: str) -> None:
    await PostgresStatusStore(pg_pool, schema=pg_schema).close()
    assert await count(pg_pool, "select 1") == 1, "the caller's pool is still open"
    own = PostgresStatusStore.from_url(f"{pg_dsn}?schema={pg_schema}")
    assert own.schema == pg_schema
    assert await own.get("nothing") is None  # opens its pool
    assert "open=True" in repr(own._pool)
    await own.close()
    assert "open=False" in repr(own._pool), "a pool of its own is closed with it"


@pytest.mark.parametrize(("batch_size", "transactions"), [(1, 2), (2, 1)])
async def test_a_batch_size_of_one_writes_alone_and_of_two_shares(
    ledger: PostgresLedger, counted_pool: Any, pg_schema: str, make_messages: Any, batch_size: int, transactions: int
) -> None:
    await ledger.add("c1", make_messages(2))
    for i in range(2):
        await accept(ledger, f"m-{i:06d}", f"SM{i}")
    pages = counted_pool
    store = PostgresStatusStore(pages, schema=pg_schema, batch_size=batch_size, batch_wait=0.05)
    writes = await asyncio.gather(*(store.write(StatusUpdate(f"m-{i:06d}", SENT)) for i in range(2)))
    assert writes == [StatusWrite.APPLIED, StatusWrite.APPLIED]
    assert pages.acquired == transactions


async def test_old_tokens_are_pruned_5000_at_a_time_by_default(
    status_store: PostgresStatusStore, pg_pool: Any, pg_schema: str
) -> None:
    async with pg_pool.acquire() as conn:
        await conn.execute(
            f"insert into {pg_schema}.webhook_events (token, received_at) "
            "select 'old-' || n, now() - interval '4 days' from generate_series(1, 5001) as n"
        )
    assert await status_store.prune_webhook_events() == 5000
    assert await status_store.prune_webhook_events() == 1
