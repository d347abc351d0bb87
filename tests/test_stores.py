"""The in-memory stores: the conformance suites, plus what only an injectable clock can show."""

from __future__ import annotations

import random
import uuid
from collections.abc import Awaitable, Callable

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
