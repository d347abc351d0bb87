"""The in-memory stores: the conformance suites, plus what only an injectable clock can show."""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messaging_core import Endpoint, Message, MessageStatus, StatusUpdate, TextContent
from messaging_core.campaigns import (
    Claim,
    LedgerEntry,
    MemoryLedger,
    MemoryRateLimiter,
    MemoryStatusStore,
    RateLimiter,
    SendLedger,
    SendOutcome,
    SendState,
    StatusStore,
)
from messaging_core.testing import StoreConformance


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class TestMemoryStores(StoreConformance):
    @pytest.fixture
    def ledger_factory(self) -> Callable[[], Awaitable[SendLedger]]:
        async def factory() -> SendLedger:
            return MemoryLedger()

        return factory

    @pytest.fixture
    def limiter_factory(self) -> Callable[..., Awaitable[RateLimiter]]:
        async def factory(rate: float, burst: float = 1.0) -> RateLimiter:
            return MemoryRateLimiter(rate, burst=burst)

        return factory

    @pytest.fixture
    def status_store_factory(self) -> Callable[[], Awaitable[StatusStore]]:
        async def factory() -> StatusStore:
            return MemoryStatusStore()

        return factory


def test_the_memory_stores_satisfy_the_protocols() -> None:
    assert isinstance(MemoryLedger(), SendLedger)
    assert isinstance(MemoryRateLimiter(1.0), RateLimiter)
    assert isinstance(MemoryStatusStore(), StatusStore)


def _message(index: int = 0) -> Message:
    return Message(
        uuid.uuid4().hex, Endpoint.phone("+15550001111"), Endpoint.phone(f"+1555{index:07d}"), TextContent("hi")
    )


# -- ledger ----------------------------------------------------------------------------------------------


async def test_a_lease_expires_on_the_ledger_clock_not_the_wall_clock() -> None:
    clock = FakeClock()
    ledger = MemoryLedger(clock=clock)
    message = _message()
    await ledger.add("c", [(message, "S", 1)])
    claim = await ledger.claim(message.id, lease=60.0, request_timeout=10.0)
    assert isinstance(claim, Claim)
    clock.advance(59.9)
    assert not await ledger.mark_unknown(message.id, claim.fence), "the lease is still live"
    assert await ledger.due(campaign_id="c") == []
    clock.advance(0.2)
    assert await ledger.due(campaign_id="c") == [message.id]
    assert await ledger.mark_unknown(message.id, claim.fence)
    entry = await ledger.get(message.id)
    assert entry is not None
    assert (entry.state, entry.fence, entry.attempts) == (SendState.UNKNOWN, claim.fence, 1)
    assert isinstance(await ledger.claim(message.id, lease=60.0, request_timeout=10.0), LedgerEntry)


async def test_retry_at_is_on_the_ledger_clock() -> None:
    clock = FakeClock()
    ledger = MemoryLedger(clock=clock)
    message = _message()
    await ledger.add("c", [(message, "S", 1)])
    claim = await ledger.claim(message.id, lease=60.0, request_timeout=10.0)
    assert isinstance(claim, Claim)
    await ledger.record(claim, SendOutcome(SendState.PENDING, error_code="RATE_LIMITED", retry_after=30.0))
    clock.advance(29.0)
    assert isinstance(await ledger.claim(message.id, lease=60.0, request_timeout=10.0), LedgerEntry)
    clock.advance(1.0)
    again = await ledger.claim(message.id, lease=60.0, request_timeout=10.0)
    assert isinstance(again, Claim)
    assert again.attempts == 2


async def test_results_include_rows_added_while_iterating() -> None:
    ledger = MemoryLedger()
    first, second = _message(1), _message(2)
    await ledger.add("c", [(first, "S", 1)])
    seen = []
    async for entry in ledger.results("c"):
        seen.append(entry.message_id)
        if len(seen) == 1:
            await ledger.add("c", [(second, "S", 1)])
    assert seen == [first.id, second.id]
    assert len(ledger) == 2


# -- rate limiter ------------------------------------------------------------------------------------------


async def _simulate(
    limiter: MemoryRateLimiter, clock: FakeClock, costs: list[float], rate: float, key: str = "S"
) -> list[float]:
    """When each unit goes out, for callers arriving at once that each sleep exactly the wait they were told.

    A message of ``cost`` units takes ``cost`` consecutive slots from its start (the provider
    sends an SMS's segments one per slot), which is what the limiter reserved.
    """
    sent: list[float] = []
    for cost in costs:
        wait = await limiter.reserve(key, cost)
        assert wait is not None
        sent.extend(clock.now + wait + k / rate for k in range(int(cost)))
    return sent


def _busiest_window(times: list[float], width: float = 1.0) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_no_one_second_window_exceeds_the_rate() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(50.0, clock=clock)
    rng = random.Random(7)
    times: list[float] = []
    for _ in range(400):  # bursts of callers at irregular moments, SMS of 1 to 3 segments
        costs = [float(rng.randint(1, 3)) for _ in range(rng.randint(1, 20))]
        times += await _simulate(limiter, clock, costs, 50.0)
        clock.advance(rng.uniform(0.0, 0.5))
    assert len(times) > 2000
    assert _busiest_window(times) <= 50 * 1.05, "a sliding 1 s window saw more units than the rate allows"
    assert _busiest_window(times) >= 45, "the limiter must not be much slower than the rate either"


async def test_burst_allows_that_many_at_once_then_spaces() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(10.0, burst=4.0, clock=clock)
    waits = [await limiter.reserve("S") for _ in range(6)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.0, 0.1, 0.2])


async def test_rates_per_key_and_unlimited_keys() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(None, rates={"short-code": 100.0}, clock=clock)
    assert [await limiter.reserve("long-code") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert [await limiter.reserve("short-code") for _ in range(3)] == pytest.approx([0.0, 0.01, 0.02])
    limiter.set_rate("short-code", 1.0)
    assert await limiter.reserve("short-code") == pytest.approx(0.03)
    assert await limiter.reserve("short-code") == pytest.approx(1.03)
    limiter.set_rate("short-code", None)
    assert await limiter.reserve("short-code") == 0.0


async def test_max_wait_refuses_and_reserves_nothing() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(2.0, clock=clock)
    assert await limiter.reserve("S") == 0.0
    assert await limiter.reserve("S", max_wait=0.4) is None
    assert await limiter.reserve("S", max_wait=0.5) == pytest.approx(0.5)


async def test_idle_keys_are_forgotten() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(1000.0, clock=clock)
    for i in range(2000):
        await limiter.reserve(f"sender-{i}")
        clock.advance(0.01)
    assert len(limiter) <= 1024, "senders idle for longer than their interval must not pile up"


def test_limiter_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match=r"^rate must be positive, not 0.0$"):
        MemoryRateLimiter(0.0)
    with pytest.raises(ValueError, match=r"^burst must be at least 1, not 0.5$"):
        MemoryRateLimiter(1.0, burst=0.5)
    limiter = MemoryRateLimiter(1.0)
    for rate in (0.0, -1.0):  # a zero rate would divide by zero at the next reservation
        with pytest.raises(ValueError, match=rf"^rate must be positive, not {rate}$"):
            limiter.set_rate("S", rate)
    limiter.set_rate("never-set", None)  # back to the default: nothing to undo is not an error


async def test_a_pass_that_comes_back_to_its_booked_slot_shares_it() -> None:
    """A message's second pass (a redelivered chunk) is told the wait of its first pass's slot, not a new one."""
    clock = FakeClock()
    limiter = MemoryRateLimiter(2.0, clock=clock)
    assert await limiter.reserve("S") == 0.0
    assert await limiter.reserve("S", token="m1") == pytest.approx(0.5)
    assert await limiter.reserve("S") == pytest.approx(1.0), "a reservation without a token comes between"
    assert await limiter.reserve("S", token="m1", max_wait=0.5) == pytest.approx(0.5), "max_wait is inclusive"
    assert await limiter.reserve("S", token="m1", max_wait=0.4) is None
    assert await limiter.reserve("S") == pytest.approx(1.5), "sharing took no slot"


async def test_a_slot_given_back_is_booked_anew_when_its_message_comes_back() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(2.0, clock=clock)
    assert await limiter.reserve("S") == 0.0
    assert await limiter.reserve("S", 3.0, token="m1") == pytest.approx(0.5)
    assert await limiter.release("S", "m1") is True, "at any rate, the slot of the last booking is given back"
    # The message comes back (its claim was granted this time): a new slot, not the one given back.
    assert await limiter.reserve("S", token="m1") == pytest.approx(0.5)
    assert await limiter.reserve("S") == pytest.approx(1.0), "two sends never share the slot given back"


async def test_idle_keys_are_forgotten_when_the_bound_is_reached() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(1.0, clock=clock)
    for i in range(1024):
        await limiter.reserve(f"sender-{i}", token=f"m{i}")
    assert len(limiter) == 1024
    clock.advance(1.0)  # every slot has ended: their keys are idle
    await limiter.reserve("one more", token="m")
    assert len(limiter) == 1, "the keys whose slots have ended are dropped"


async def test_pending_bookings_are_bounded_and_kept() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(1.0, clock=clock)
    for i in range(1030):  # each key's second pass waits for a slot: a booking
        await limiter.reserve(f"sender-{i}")
        assert await limiter.reserve(f"sender-{i}", token=f"m{i}") == pytest.approx(1.0)
    for i in (0, 1029):
        assert await limiter.reserve(f"sender-{i}", token=f"m{i}") == pytest.approx(1.0), "still shared"


async def test_a_pass_at_the_instant_its_slot_starts_books_anew() -> None:
    """A slot has started at its first instant: a pass then takes a new slot, as the Redis limiter does."""
    clock = FakeClock()
    limiter = MemoryRateLimiter(2.0, clock=clock)
    assert await limiter.reserve("S") == 0.0
    assert await limiter.reserve("S", token="m1") == 0.5
    clock.advance(0.5)
    assert await limiter.reserve("S", token="m1") == 0.5, "not the slot starting now (wait 0): the next one"


async def test_idle_keys_stay_counted_below_the_bound() -> None:
    """Nothing is pruned before 1,024 keys: an idle key is still counted (and its slot can still be given back)."""
    clock = FakeClock()
    limiter = MemoryRateLimiter(1.0, clock=clock)
    await limiter.reserve("a", token="ma")
    clock.advance(10.0)
    await limiter.reserve("b", token="mb")
    assert len(limiter) == 2
    assert await limiter.release("a", "ma") is True


async def test_last_bookings_of_ended_slots_are_forgotten_at_the_bound() -> None:
    """At 1,024 keys with a last booking, a new one drops those whose slot has ended, at this very instant too."""
    clock = FakeClock()
    limiter = MemoryRateLimiter(1.0, clock=clock)
    await limiter.reserve("x")  # a key with a schedule but no booking under a token
    for i in range(1024):
        await limiter.reserve(f"sender-{i}", token=f"m{i}")  # each slot ends 1 s from now
    clock.advance(1.0)
    await limiter.reserve("x", token="mx")  # a key already scheduled: only the last bookings are pruned
    assert len(limiter) == 1025, "the schedules stay (no new key)"
    assert await limiter.release("sender-0", "m0") is False, "its last booking was forgotten"


# -- status store ------------------------------------------------------------------------------------------

LIFECYCLE = (
    MessageStatus.SCHEDULED,
    MessageStatus.QUEUED,
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.READ,
    MessageStatus.DELETED,
)


@settings(max_examples=150, deadline=None)
@given(
    chain=st.lists(st.sampled_from(LIFECYCLE), min_size=1, unique=True).map(lambda c: sorted(c, key=LIFECYCLE.index)),
    copies=st.lists(st.integers(min_value=1, max_value=3), min_size=6, max_size=6),
    seed=st.integers(min_value=0, max_value=2**32),
)
async def test_status_is_monotonic_under_shuffled_duplicated_callbacks(
    chain: list[MessageStatus], copies: list[int], seed: int
) -> None:
    store = MemoryStatusStore()
    updates = [status for status, n in zip(chain, copies, strict=False) for _ in range(n)]
    random.Random(seed).shuffle(updates)
    history: list[MessageStatus] = []
    for status in updates:
        await store.apply(StatusUpdate("m", status), idempotency_key=f"{status}-{random.random()}")
        now = await store.get("m")
        assert now is not None
        if history and history[-1] != now:
            assert history[-1].can_become(now), f"moved backwards: {history[-1]} -> {now}"
        history.append(now)
    assert await store.get("m") is chain[-1]


async def test_status_store_is_bounded() -> None:
    store = MemoryStatusStore(max_messages=3, max_keys=2)
    for i in range(5):
        await store.apply(StatusUpdate(f"m{i}", MessageStatus.QUEUED), idempotency_key=f"k{i}")
    assert len(store) == 3
    assert await store.get("m0") is None, "the least recently updated message is forgotten first"
    assert await store.get("m4") is MessageStatus.QUEUED
    assert not await store.apply(StatusUpdate("m4", MessageStatus.SENT), idempotency_key="k4"), "a recent key"
    assert await store.apply(StatusUpdate("m4", MessageStatus.SENT), idempotency_key="k0"), "a forgotten key"


def test_status_store_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        MemoryStatusStore(max_messages=0)


# -- issue #18: what mutation testing found untested ----------------------------------------------------------


async def _one_claimed(clock: FakeClock | None = None) -> tuple[MemoryLedger, Message, Claim]:
    """A ledger holding one message, claimed for 60 s."""
    ledger = MemoryLedger() if clock is None else MemoryLedger(clock=clock)
    message = _message()
    await ledger.add("c", [(message, "S", 1)])
    claim = await ledger.claim(message.id, lease=60.0, request_timeout=10.0)
    assert isinstance(claim, Claim)
    return ledger, message, claim


async def test_a_ledger_clock_starting_at_zero_holds_no_row_back() -> None:
    """New, given-back and reopened rows are due at once, whatever the clock reads (here 0)."""
    clock = FakeClock()
    clock.now = 0.0
    ledger = MemoryLedger(clock=clock)
    message = _message()
    await ledger.add("c", [(message, "S", 1)])
    assert await ledger.due() == [message.id]
    claim = await ledger.claim(message.id, lease=0.5, request_timeout=0.1, token="t")
    assert isinstance(claim, Claim)
    assert await ledger.release(message.id, "t")
    claim = await ledger.claim(message.id, lease=0.5, request_timeout=0.1)
    assert isinstance(claim, Claim), "given back: due at once"
    clock.advance(0.5)
    assert await ledger.mark_unknown(message.id, claim.fence)
    assert await ledger.resolve(message.id, provider_id=None)
    assert isinstance(await ledger.claim(message.id, lease=0.5, request_timeout=0.1), Claim), "reopened: due at once"


async def test_a_lease_ends_at_its_last_instant_for_every_method() -> None:
    clock = FakeClock()
    ledger = MemoryLedger(clock=clock)
    expiring, reopened, retried = _message(1), _message(2), _message(3)
    await ledger.add("c", [(m, "S", 1) for m in (expiring, reopened, retried)])
    claims = [await ledger.claim(m.id, lease=60.0, request_timeout=10.0) for m in (expiring, reopened, retried)]
    assert all(isinstance(c, Claim) for c in claims)
    retry_claim = claims[2]
    assert isinstance(retry_claim, Claim)
    await ledger.record(retry_claim, SendOutcome(SendState.PENDING, retry_after=60.0))
    clock.advance(60.0)  # exactly the end of the leases, and the retry's due time
    assert await ledger.due(campaign_id="c") == [expiring.id, reopened.id, retried.id]
    assert await ledger.mark_unknown(expiring.id, 1)
    assert await ledger.resolve(reopened.id, provider_id=None), "an expired lease may be proven absent"
    assert isinstance(await ledger.claim(retried.id, lease=60.0, request_timeout=10.0), Claim)


async def test_a_pending_outcome_without_a_retry_time_is_due_at_once() -> None:
    ledger, message, claim = await _one_claimed(FakeClock())
    before = datetime.now(UTC)
    assert await ledger.record(claim, SendOutcome(SendState.PENDING))
    entry = await ledger.get(message.id)
    assert entry is not None
    assert entry.retry_in == 0.0
    assert entry.retry_at is not None
    assert before <= entry.retry_at <= datetime.now(UTC)
    assert isinstance(await ledger.claim(message.id, lease=60.0, request_timeout=10.0), Claim)


async def test_a_retry_time_is_ahead_of_the_wall_clock_too() -> None:
    ledger, message, claim = await _one_claimed()
    before = datetime.now(UTC)
    assert await ledger.record(claim, SendOutcome(SendState.PENDING, retry_after=30.0))
    entry = await ledger.get(message.id)
    assert entry is not None
    assert entry.retry_at is not None
    assert before + timedelta(seconds=30) <= entry.retry_at <= datetime.now(UTC) + timedelta(seconds=30)


async def test_entries_forget_what_a_new_turn_of_the_row_makes_stale() -> None:
    """A row never claimed has no claim time; a row given back or reopened has no retry time; a
    message settled by a provider id has no error code; every change moves the fence forward."""
    clock = FakeClock()
    ledger = MemoryLedger(clock=clock)
    given_back, reopened, settled = _message(1), _message(2), _message(3)
    await ledger.add("c", [(m, "S", 1) for m in (given_back, reopened, settled)])
    fresh = await ledger.get(given_back.id)
    assert fresh is not None
    assert (fresh.claimed_at, fresh.lease_until, fresh.retry_at) == (None, None, None)
    fences: dict[str, list[int]] = {m.id: [] for m in (given_back, reopened, settled)}

    async def note(message: Message) -> LedgerEntry:
        entry = await ledger.get(message.id)
        assert entry is not None
        fences[message.id].append(entry.fence)
        return entry

    for message in (given_back, reopened):
        claim = await ledger.claim(message.id, lease=60.0, request_timeout=10.0, token="t")
        assert isinstance(claim, Claim)
        await ledger.record(claim, SendOutcome(SendState.PENDING, retry_after=1.0))  # a retry time...
        clock.advance(1.0)
        assert isinstance(await ledger.claim(message.id, lease=60.0, request_timeout=10.0, token="t"), Claim)
        await note(message)
    assert await ledger.release(given_back.id, "t")
    clock.advance(60.0)
    assert await ledger.resolve(reopened.id, provider_id=None)
    for message in (given_back, reopened):
        entry = await note(message)
        assert (entry.state, entry.retry_at, entry.retry_in) == (SendState.PENDING, None, None), "...forgotten"
    claim = await ledger.claim(settled.id, lease=60.0, request_timeout=10.0)
    assert isinstance(claim, Claim)
    clock.advance(61.0)
    assert await ledger.mark_unknown(settled.id, claim.fence)
    assert (await note(settled)).error_code == "LEASE_EXPIRED"
    assert await ledger.resolve(settled.id, provider_id="SM1")
    entry = await note(settled)
    assert (entry.state, entry.error_code) == (SendState.ACCEPTED, None)
    assert all(later > earlier for seen in fences.values() for earlier, later in itertools.pairwise(seen))


async def test_a_fence_is_never_handed_out_twice() -> None:
    """Reopened twice: a late answer of the first reopened attempt is refused by the third's fence."""
    clock = FakeClock()
    ledger = MemoryLedger(clock=clock)
    message = _message()
    await ledger.add("c", [(message, "S", 1)])
    claims: list[Claim] = []
    for _ in range(3):
        claim = await ledger.claim(message.id, lease=60.0, request_timeout=10.0)
        assert isinstance(claim, Claim)
        claims.append(claim)
        clock.advance(61.0)
        assert await ledger.resolve(message.id, provider_id=None)
    assert len({c.fence for c in claims}) == 3
    live = await ledger.claim(message.id, lease=60.0, request_timeout=10.0)
    assert isinstance(live, Claim)
    for stale in claims:
        assert not await ledger.record(stale, SendOutcome(SendState.ACCEPTED, provider_id="SM-late"))
    entry = await ledger.get(message.id)
    assert entry is not None
    assert (entry.state, entry.fence) == (SendState.SUBMITTING, live.fence)


async def test_a_collision_leaves_the_probes_match_unreconciled_and_the_answer_clean() -> None:
    ledger = MemoryLedger()
    matched, answered = _message(1), _message(2)
    await ledger.add("c", [(matched, "S", 1), (answered, "S", 1)])
    assert await ledger.resolve(matched.id, provider_id="SM1")  # a probe matched it (reconciled)
    claim = await ledger.claim(answered.id, lease=60.0, request_timeout=10.0)
    assert isinstance(claim, Claim)
    assert await ledger.record(claim, SendOutcome(SendState.ACCEPTED, provider_id="SM1"))
    holder, recording = await ledger.get(matched.id), await ledger.get(answered.id)
    assert holder is not None
    assert recording is not None
    assert (holder.state, holder.reconciled, holder.provider_id) == (SendState.UNKNOWN, False, None)
    assert (recording.state, recording.error_code, recording.provider_id) == (SendState.ACCEPTED, None, "SM1")


async def test_record_names_the_state_a_provider_call_cannot_end_in() -> None:
    ledger, _, claim = await _one_claimed()
    with pytest.raises(ValueError, match=r"^a provider call cannot end in cancelled$"):
        await ledger.record(claim, SendOutcome(SendState.CANCELLED))


async def test_unknown_campaigns_have_nothing() -> None:
    ledger = MemoryLedger()
    await ledger.add("c", [(_message(), "S", 1)])
    assert await ledger.cancel("nope") == 0
    assert await ledger.due(campaign_id="nope") == []
    assert [entry async for entry in ledger.results("nope")] == []


async def test_due_lists_every_campaign_up_to_500_by_default() -> None:
    ledger = MemoryLedger()
    await ledger.add("a", [(_message(), "S", 1) for _ in range(300)])
    await ledger.add("b", [(_message(), "S", 1) for _ in range(201)])
    due = await ledger.due()
    assert len(due) == 500
    assert set(due) & {entry.message_id async for entry in ledger.results("b")}, "both campaigns"


async def test_status_store_defaults_and_smallest_bounds() -> None:
    store = MemoryStatusStore()
    assert (store.max_messages, store.max_keys) == (100_000, 100_000)
    smallest = MemoryStatusStore(max_messages=1, max_keys=1)
    assert await smallest.apply(StatusUpdate("m1", MessageStatus.QUEUED), idempotency_key="k1")
    assert await smallest.apply(StatusUpdate("m2", MessageStatus.QUEUED), idempotency_key="k2")
    assert len(smallest) == 1
    for bounds in ({"max_messages": 0}, {"max_keys": 0}):
        with pytest.raises(ValueError, match=r"^max_messages and max_keys must be at least 1$"):
            MemoryStatusStore(**bounds)


async def test_status_store_remembers_max_keys_keys() -> None:
    store = MemoryStatusStore(max_keys=2)
    for i in range(3):
        assert await store.apply(StatusUpdate(f"m{i}", MessageStatus.QUEUED), idempotency_key=f"k{i}")
    assert not await store.apply(StatusUpdate("m1", MessageStatus.SENT), idempotency_key="k1"), "the older of two"
    assert not await store.apply(StatusUpdate("m2", MessageStatus.SENT), idempotency_key="k2")
    assert await store.apply(StatusUpdate("m0", MessageStatus.SENT), idempotency_key="k0"), "forgotten"
