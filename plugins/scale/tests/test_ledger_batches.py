"""PostgresLedger's coalesced claims and records: one statement per batch, the same answers as alone.

The conformance suite (``test_conformance_stores.py``) runs the ledger batched (the default) and
alone (``batch_size=1``) one call at a time; here the calls are concurrent, so that they really
share statements: a chunk's worth of claims, an id claimed twice in one batch, an unknown id among
known ones, a lost fence among current ones, a provider id another message holds, a batch whose
connection fails, and two ledgers (two workers) racing for overlapping ids.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from messaging_core.campaigns import PROVIDER_ID_COLLISION, Claim, LedgerEntry, SendOutcome, SendState
from messaging_scale import PostgresLedger

pytestmark = pytest.mark.services

LEASE = 60.0
TIMEOUT = 5.0


class CountingPool:
    """The pool, counting the statements sent through it (every ledger call acquires a connection)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.statements: collections.Counter[str] = collections.Counter()
        self.fail_next = False
        self.faults: dict[str, list[BaseException]] = {}
        """Errors to raise, in order, instead of running a given statement (a precise fault shape)."""

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        async with self.pool.acquire() as conn:
            yield _CountingConnection(self, conn)


class _CountingConnection:
    def __init__(self, owner: CountingPool, conn: Any) -> None:
        self._owner = owner
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._conn, name)
        if name not in ("fetch", "fetchrow", "fetchval", "execute"):
            return method

        async def counted(sql: str, *args: Any) -> Any:
            self._owner.statements[sql.split(" ", 1)[0]] += 1
            if self._owner.fail_next:
                self._owner.fail_next = False
                raise ConnectionResetError("the connection dropped")
            if self._owner.faults.get(sql):
                raise self._owner.faults[sql].pop(0)
            return await method(sql, *args)

        return counted


@pytest.fixture
def counting(pg_pool: Any) -> CountingPool:
    return CountingPool(pg_pool)


@pytest.fixture
def batched(counting: CountingPool, pg_schema: str) -> PostgresLedger:
    return PostgresLedger(counting, schema=pg_schema, batch_size=100, batch_wait=0.01)


async def claim_all(ledger: PostgresLedger, ids: list[str]) -> list[Claim | LedgerEntry | BaseException]:
    return await asyncio.gather(
        *(ledger.claim(i, lease=LEASE, request_timeout=TIMEOUT, token=f"t{n}") for n, i in enumerate(ids)),
        return_exceptions=True,
    )


async def test_a_chunk_of_claims_is_one_statement_and_each_row_is_fenced(
    batched: PostgresLedger, counting: CountingPool, make_messages: Any, pg_pool: Any, pg_schema: str
) -> None:
    await batched.add("c1", make_messages(100))
    counting.statements.clear()
    ids = [f"m-{i:06d}" for i in range(100)]
    claims = await claim_all(batched, ids)
    assert all(isinstance(c, Claim) for c in claims), claims
    assert [c.message_id for c in claims if isinstance(c, Claim)] == ids
    assert {(c.fence, c.attempts) for c in claims if isinstance(c, Claim)} == {(1, 1)}
    assert counting.statements == {"with": 1}  # one update for 100 claims, nothing else
    # Committed before anyone heard back: another connection sees every row claimed, with its token.
    async with pg_pool.acquire() as conn:
        rows = await conn.fetch(f"select message_id, state, claim_token from {pg_schema}.sends order by message_id")
    assert [(r["state"], r["claim_token"]) for r in rows] == [("submitting", f"t{n}") for n in range(100)]
    assert (await batched.progress("c1")).counts == {"submitting": 100}

    counting.statements.clear()
    outcomes = [SendOutcome(SendState.ACCEPTED, provider_id=f"SM{i}") for i in range(100)]
    written = await asyncio.gather(
        *(batched.record(c, o) for c, o in zip(claims, outcomes, strict=True) if isinstance(c, Claim))
    )
    assert written == [True] * 100
    assert counting.statements == {"with": 1}
    entry = await batched.get("m-000042")
    assert entry is not None
    assert (entry.state, entry.provider_id) == (SendState.ACCEPTED, "SM42")
    assert (await batched.progress("c1")).counts == {"accepted": 100}


async def test_an_id_twice_in_one_batch_is_claimed_once(batched: PostgresLedger, make_messages: Any) -> None:
    await batched.add("c1", make_messages(2))
    answers = await claim_all(batched, ["m-000000", "m-000001", "m-000000"])
    first, other, again = answers
    assert isinstance(first, Claim)
    assert isinstance(other, Claim)
    assert isinstance(again, LedgerEntry)
    assert (again.state, again.fence) == (SendState.SUBMITTING, 1)


async def test_unknown_final_and_not_due_ids_get_their_own_answers(batched: PostgresLedger, make_messages: Any) -> None:
    await batched.add("c1", make_messages(3))
    done = await batched.claim("m-000001", lease=LEASE, request_timeout=TIMEOUT)
    assert isinstance(done, Claim)
    assert await batched.record(done, SendOutcome(SendState.FAILED, error_code="X"))
    later = await batched.claim("m-000002", lease=LEASE, request_timeout=TIMEOUT)
    assert isinstance(later, Claim)
    assert await batched.record(later, SendOutcome(SendState.PENDING, error_code="R", retry_after=600))

    answers = await claim_all(batched, ["m-000000", "nope", "m-000001", "m-000002"])
    assert isinstance(answers[0], Claim)
    assert isinstance(answers[1], KeyError)
    assert isinstance(answers[2], LedgerEntry)
    assert answers[2].state is SendState.FAILED
    assert isinstance(answers[3], LedgerEntry)
    assert answers[3].state is SendState.PENDING
    assert answers[3].retry_in is not None
    assert answers[3].retry_in > 500


async def test_a_lost_fence_in_a_batch_refuses_that_record_only(batched: PostgresLedger, make_messages: Any) -> None:
    await batched.add("c1", make_messages(3))
    claims = [c for c in await claim_all(batched, ["m-000000", "m-000001", "m-000002"]) if isinstance(c, Claim)]
    assert len(claims) == 3
    # A status callback settles m-000001 meanwhile: its fence moves.
    assert await batched.resolve("m-000001", provider_id="SM-cb")
    written = await asyncio.gather(
        *(batched.record(c, SendOutcome(SendState.ACCEPTED, provider_id=f"SM{n}")) for n, c in enumerate(claims))
    )
    assert written == [True, False, True]
    entry = await batched.get("m-000001")
    assert entry is not None
    assert (entry.state, entry.provider_id) == (SendState.ACCEPTED, "SM-cb")


async def test_a_provider_id_collision_in_a_batch_is_settled_as_alone(
    batched: PostgresLedger, make_messages: Any
) -> None:
    await batched.add("c1", make_messages(3))
    claims = [c for c in await claim_all(batched, ["m-000000", "m-000001", "m-000002"]) if isinstance(c, Claim)]
    same = "SM-same"
    written = await asyncio.gather(
        batched.record(claims[0], SendOutcome(SendState.ACCEPTED, provider_id=same)),
        batched.record(claims[1], SendOutcome(SendState.ACCEPTED, provider_id=same)),
        batched.record(claims[2], SendOutcome(SendState.ACCEPTED, provider_id="SM-other")),
    )
    assert written == [True, True, True]
    states = {i: await batched.get(f"m-00000{i}") for i in range(3)}
    assert all(entry is not None for entry in states.values())
    # Neither of the two is taken as the owner: both held for an operator; the third is accepted.
    for i in (0, 1):
        entry = states[i]
        assert entry is not None
        assert (entry.state, entry.error_code) == (SendState.UNKNOWN, PROVIDER_ID_COLLISION)
    third = states[2]
    assert third is not None
    assert (third.state, third.provider_id) == (SendState.ACCEPTED, "SM-other")


async def test_a_batch_whose_connection_fails_fails_every_caller_and_each_claim_can_be_given_back(
    batched: PostgresLedger, counting: CountingPool, make_messages: Any
) -> None:
    await batched.add("c1", make_messages(3))
    counting.fail_next = True
    ids = ["m-000000", "m-000001", "m-000002"]
    answers = await claim_all(batched, ids)
    assert all(isinstance(a, ConnectionResetError) for a in answers), answers
    # Nothing was claimed (the statement never ran): release finds nothing to give back, and a new claim works.
    assert not await batched.release("m-000000", "t0")
    assert all(isinstance(a, Claim) for a in await claim_all(batched, ids))


async def test_two_workers_racing_for_overlapping_ids_claim_each_once(
    pg_pool: Any, pg_schema: str, make_messages: Any
) -> None:
    """Two ledgers (two workers), each claiming a redelivered copy of the same chunk at once: one claim per id."""
    workers = [PostgresLedger(pg_pool, schema=pg_schema, batch_size=50, batch_wait=0.005) for _ in range(2)]
    await workers[0].add("c1", make_messages(200))
    ids = [f"m-{i:06d}" for i in range(200)]
    answers = await asyncio.gather(*(claim_all(ledger, ids) for ledger in workers))
    claimed = collections.Counter(a.message_id for batch in answers for a in batch if isinstance(a, Claim))
    refused = [a for batch in answers for a in batch if isinstance(a, LedgerEntry)]
    assert not [a for batch in answers for a in batch if isinstance(a, BaseException)]
    assert set(claimed) == set(ids)
    assert set(claimed.values()) == {1}
    # The loser of each id hears it is taken (SUBMITTING), or still PENDING when it skipped a row the
    # winner held locked at that instant: it then tries again, as after any refused claim.
    assert {entry.state for entry in refused} <= {SendState.SUBMITTING, SendState.PENDING}
    assert len(refused) == 200
    assert (await workers[0].progress("c1")).counts == {"submitting": 200}


async def test_batches_are_set_in_the_url(pg_dsn: str, pg_schema: str, make_messages: Any) -> None:
    ledger = PostgresLedger.from_url(f"{pg_dsn}?schema={pg_schema}&batch_size=1&batch_wait=0.01")
    try:
        assert (ledger.batch_size, ledger.batch_wait) == (1, 0.01)
        await ledger.add("c1", make_messages(1))
        assert isinstance(await ledger.claim("m-000000", lease=LEASE, request_timeout=TIMEOUT), Claim)
    finally:
        await ledger.close()
    default = PostgresLedger.from_url(f"{pg_dsn}?schema={pg_schema}")
    assert (default.batch_size, default.batch_wait) == (100, 0.002)
    await default.close()


async def test_a_url_pool_gives_connections_back_without_a_reset_round_trip(pg_dsn: str, pg_schema: str) -> None:
    """asyncpg's default reset (``reset all`` and more) is one more round trip per ledger call; the stores need none.

    Shown by a session setting that survives the release: with the default reset it would be gone.
    """
    ledger = PostgresLedger.from_url(f"{pg_dsn}?schema={pg_schema}&pool_min_size=1&pool_max_size=1")
    try:
        async with ledger.pool.acquire() as conn:
            await conn.execute("set application_name = 'kept'")
        async with ledger.pool.acquire() as conn:
            assert await conn.fetchval("show application_name") == "kept"
            # An open transaction is still rolled back on release (asyncpg does that before any reset).
            await conn.execute("begin")
            await conn.execute(f"insert into {pg_schema}.sweeps (name, next_at) values ('left open', now())")
        async with ledger.pool.acquire() as conn:
            assert await conn.fetchval(f"select count(*) from {pg_schema}.sweeps where name = 'left open'") == 0
    finally:
        await ledger.close()


# -- what mutation testing found untested (#18) ------------------------------------------------------------------


@pytest.mark.parametrize(("batch_size", "statements"), [(1, 2), (2, 1)])
async def test_a_batch_size_of_one_writes_alone_and_of_two_shares(
    counting: CountingPool, pg_schema: str, make_messages: Any, batch_size: int, statements: int
) -> None:
    ledger = PostgresLedger(counting, schema=pg_schema, batch_size=batch_size, batch_wait=0.05)
    await ledger.add("c1", make_messages(2))
    counting.statements.clear()
    claims = await claim_all(ledger, ["m-000000", "m-000001"])
    assert all(isinstance(c, Claim) for c in claims)
    assert sum(counting.statements.values()) == statements
    counting.statements.clear()
    outcomes = [SendOutcome(SendState.ACCEPTED, provider_id=f"SM{n}") for n in range(2)]
    recorded = await asyncio.gather(*(ledger.record(c, o) for c, o in zip(claims, outcomes, strict=True)))  # type: ignore[arg-type]
    assert recorded == [True, True]
    assert sum(counting.statements.values()) == statements


def _deadlock() -> asyncpg.DeadlockDetectedError:
    return asyncpg.DeadlockDetectedError("deadlock detected")


@pytest.mark.parametrize("deadlocks", [4, 5])
async def test_a_batch_of_records_rolled_back_by_deadlocks_is_tried_five_times(
    batched: PostgresLedger, counting: CountingPool, make_messages: Any, deadlocks: int
) -> None:
    """Another batch locking the same rows in another order rolls ours back whole: it is run again, at most 5 times."""
    await batched.add("c1", make_messages(2))
    claims = [c for c in await claim_all(batched, ["m-000000", "m-000001"]) if isinstance(c, Claim)]
    counting.faults[batched._sql.record_batch] = [_deadlock() for _ in range(deadlocks)]
    outcomes = [SendOutcome(SendState.FAILED, error_code="X") for _ in claims]
    answers = await asyncio.gather(
        *(batched.record(c, o) for c, o in zip(claims, outcomes, strict=True)), return_exceptions=True
    )
    if deadlocks == 4:
        assert answers == [True, True], "written by the fifth try"
        expected = SendState.FAILED
    else:
        assert all(isinstance(a, asyncpg.DeadlockDetectedError) for a in answers), answers
        expected = SendState.SUBMITTING
    for claim in claims:
        entry = await batched.get(claim.message_id)
        assert entry is not None
        assert entry.state is expected
    assert counting.faults[batched._sql.record_batch] == []


async def _one_claimed_alone(
    counting: CountingPool, pg_schema: str, make_messages: Any
) -> tuple[PostgresLedger, Claim]:
    """A ledger writing each claim and record alone, with ``m-000000`` claimed."""
    ledger = PostgresLedger(counting, schema=pg_schema, batch_size=1)
    await ledger.add("c1", make_messages(1))
    (claim,) = await claim_all(ledger, ["m-000000"])
    assert isinstance(claim, Claim)
    return ledger, claim


async def test_a_provider_id_given_up_before_the_collision_is_looked_at_is_recorded_as_usual(
    counting: CountingPool, pg_schema: str, make_messages: Any
) -> None:
    """The write met a unique violation, but by the time the holder is looked for, none holds the id."""
    ledger, claim = await _one_claimed_alone(counting, pg_schema, make_messages)
    counting.faults[ledger._sql.record] = [asyncpg.UniqueViolationError("duplicate key value")]
    assert await ledger.record(claim, SendOutcome(SendState.ACCEPTED, provider_id="SM-free"))
    entry = await ledger.get("m-000000")
    assert entry is not None
    assert (entry.state, entry.provider_id) == (SendState.ACCEPTED, "SM-free")


async def test_a_provider_id_taken_by_another_resolve_at_the_same_moment_resolves_nothing(
    counting: CountingPool, pg_schema: str, make_messages: Any
) -> None:
    ledger, claim = await _one_claimed_alone(counting, pg_schema, make_messages)
    counting.faults[ledger._sql.resolve_accepted] = [asyncpg.UniqueViolationError("duplicate key value")]
    assert not await ledger.resolve("m-000000", provider_id="SM-race")
    entry = await ledger.get("m-000000")
    assert entry is not None
    assert (entry.state, entry.provider_id, entry.fence) == (SendState.SUBMITTING, None, claim.fence)


@pytest.mark.parametrize("reconciled", [True, False], ids=["probe-match", "answered"])
async def test_a_provider_id_collision_names_both_messages_in_the_log(
    ledger: PostgresLedger, make_messages: Any, caplog: pytest.LogCaptureFixture, reconciled: bool
) -> None:
    await ledger.add("c1", make_messages(2))
    holder, other = "m-000000", "m-000001"
    first = await ledger.claim(holder, lease=LEASE, request_timeout=TIMEOUT)
    second = await ledger.claim(other, lease=LEASE, request_timeout=TIMEOUT)
    assert isinstance(first, Claim)
    assert isinstance(second, Claim)
    if reconciled:
        assert await ledger.resolve(holder, provider_id="SM-same", reconciled=True)
    else:
        assert await ledger.record(first, SendOutcome(SendState.ACCEPTED, provider_id="SM-same"))
    caplog.clear()
    assert await ledger.record(second, SendOutcome(SendState.ACCEPTED, provider_id="SM-same"))
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "messaging_scale._ledger"]
    if reconciled:
        assert lines == [("WARNING", f"send {holder}: a probe had matched {other}'s provider id to it; in doubt again")]
    else:
        assert lines == [
            (
                "ERROR",
                f"sends {holder} and {other}: the provider answered one with the id the other holds; "
                "both held for an operator",
            )
        ]
