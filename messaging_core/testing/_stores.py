"""Conformance suites for the send pipeline's stores: ledger, rate limiter, status store.

Every implementation of ``SendLedger``, ``RateLimiter`` and ``StatusStore`` (the in-memory ones in
``messaging_core``, PostgreSQL and Redis ones in a scale-out distribution) must give the same
answers to these tests. Inherit a suite in a test module and provide its factory fixture::

    class TestPostgresLedger(LedgerConformance):
        @pytest.fixture
        async def ledger_factory(self, dsn):
            ledgers = []

            async def factory():
                ledgers.append(ledger := await PostgresLedger.connect(dsn))
                return ledger

            yield factory
            for ledger in ledgers:
                await ledger.close()

Each test calls its factory once. Every test uses fresh campaign ids, message ids and limiter keys
(random), so a factory may hand out stores backed by one shared database. Timing assertions allow
``clock_tolerance`` seconds (a class attribute) for a server round trip; no test sleeps more than
0.3 s.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar, cast

import pytest

from messaging_core.campaigns.protocols import (
    LEASE_EXPIRED,
    PROVIDER_ID_COLLISION,
    CampaignProgress,
    Claim,
    LedgerEntry,
    RateLimiter,
    SendLedger,
    SendOutcome,
    SendState,
    StatusStore,
    SuppressionList,
)
from messaging_core.message import Endpoint, Message, TextContent
from messaging_core.results import MessageStatus, StatusUpdate

__all__ = [
    "LedgerConformance",
    "LedgerFactory",
    "RateLimiterConformance",
    "RateLimiterFactory",
    "StatusStoreConformance",
    "StatusStoreFactory",
    "StoreConformance",
]

F = TypeVar("F", bound=Callable[..., Any])

try:  # async tests that also run in pytest-asyncio's strict mode
    _ASYNCIO_MARK: pytest.MarkDecorator | None = pytest.mark.asyncio
except AttributeError:  # pragma: no cover - another async plugin (anyio, auto mode) runs them
    _ASYNCIO_MARK = None


def _asyncio(function: F) -> F:
    """Mark an async test for pytest-asyncio (needed in strict mode, harmless in auto mode)."""
    return function if _ASYNCIO_MARK is None else cast(F, _ASYNCIO_MARK(function))


class LedgerFactory(Protocol):
    """``await ledger_factory()``: a ledger (empty, or shared with other tests: ids never collide)."""

    def __call__(self) -> Awaitable[SendLedger]: ...


class RateLimiterFactory(Protocol):
    """``await limiter_factory(rate, burst)``: a limiter giving every key ``rate`` units per second.

    ``burst`` is how many units may go back to back before the spacing applies (1: strict spacing).
    """

    def __call__(self, rate: float, burst: float = 1.0) -> Awaitable[RateLimiter]: ...


class StatusStoreFactory(Protocol):
    """``await status_store_factory()``: a status store."""

    def __call__(self) -> Awaitable[StatusStore]: ...


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def _message(text: str = "hello", receiver: str = "+15550002222") -> Message:
    return Message(_uid("m"), Endpoint.phone("+15550001111"), Endpoint.phone(receiver), TextContent(text))


async def _added(ledger: SendLedger, count: int = 1, *, sender_key: str = "+15550001111") -> tuple[str, list[str]]:
    """A new campaign of ``count`` PENDING messages: ``(campaign_id, message ids in order)``."""
    campaign = _uid("c")
    messages = [_message(f"hello {i}") for i in range(count)]
    assert await ledger.add(campaign, [(m, sender_key, 1) for m in messages]) == count
    return campaign, [m.id for m in messages]


async def _claimed(ledger: SendLedger, message_id: str, *, lease: float = 30.0, request_timeout: float = 5.0) -> Claim:
    claim = await ledger.claim(message_id, lease=lease, request_timeout=request_timeout)
    assert isinstance(claim, Claim), f"a PENDING, due message must be claimable, got {claim!r}"
    return claim


async def _entry(ledger: SendLedger, message_id: str) -> LedgerEntry:
    entry = await ledger.get(message_id)
    assert entry is not None, f"{message_id} is not in the ledger"
    return entry


def _counts(progress: CampaignProgress) -> dict[str, int]:
    """The non-zero counts (an implementation may list states with no message as 0, or omit them)."""
    return {state: n for state, n in progress.counts.items() if n}


class LedgerConformance:
    """The ``SendLedger`` contract (invariants I1–I5 of ``docs/scale-out.md``, seen from the ledger).

    Provide the fixture ``ledger_factory`` (a ``LedgerFactory``).
    """

    clock_tolerance: float = 0.05
    """Seconds a time-dependent answer may be off (a database round trip, clock granularity)."""

    @pytest.fixture
    async def ledger(self, ledger_factory: LedgerFactory) -> SendLedger:
        return await ledger_factory()

    async def _expire(self, ledger: SendLedger, message_id: str) -> Claim:
        """Claim ``message_id`` with a lease that is over when this returns."""
        claim = await _claimed(ledger, message_id, lease=0.01, request_timeout=0.0)
        await asyncio.sleep(0.01 + self.clock_tolerance)
        return claim

    # -- add, load, get ------------------------------------------------------------------------------

    @_asyncio
    async def test_add_inserts_pending_rows_once(self, ledger: SendLedger) -> None:
        campaign = _uid("c")
        first = [_message(f"m{i}") for i in range(3)]
        assert await ledger.add(campaign, [(m, "S1", 2) for m in first]) == 3
        again = [*first, _message("new")]
        assert await ledger.add(campaign, [(m, "S1", 2) for m in again]) == 1, "existing ids are left alone"
        assert _counts(await ledger.progress(campaign)) == {"pending": 4}
        entry = await _entry(ledger, first[0].id)
        assert (entry.message_id, entry.campaign_id, entry.state) == (first[0].id, campaign, SendState.PENDING)
        assert (entry.sender_key, entry.cost, entry.attempts) == ("S1", 2, 0)
        assert entry.provider_id is None
        assert entry.error_code is None
        assert not entry.reconciled

    @_asyncio
    async def test_campaigns_of_counts_the_ids_held_per_campaign(self, ledger: SendLedger) -> None:
        first, ids_first = await _added(ledger, 3)
        second, ids_second = await _added(ledger, 2)
        unknown = _uid("m")
        asked = [ids_first[0], ids_first[1], ids_second[0], unknown, ids_first[0]]
        assert await ledger.campaigns_of(asked) == {first: 2, second: 1}, "each id once, per campaign holding it"
        assert await ledger.campaigns_of([unknown]) == {}
        assert await ledger.campaigns_of([]) == {}

    @_asyncio
    async def test_add_leaves_an_existing_row_untouched(self, ledger: SendLedger) -> None:
        campaign, (message_id,) = await _added(ledger)
        claim = await _claimed(ledger, message_id)
        assert await ledger.record(claim, SendOutcome(SendState.ACCEPTED, provider_id="SM1"))
        message = await ledger.load(message_id)
        assert message is not None
        assert await ledger.add(campaign, [(message, "+15550001111", 1)]) == 0
        assert (await _entry(ledger, message_id)).state is SendState.ACCEPTED, "re-adding must not reset a row"

    @_asyncio
    async def test_load_returns_the_message_as_added(self, ledger: SendLedger) -> None:
        campaign = _uid("c")
        message = Message(
            _uid("m"),
            Endpoint.phone("+15550001111"),
            Endpoint.phone("+15550003333"),
            TextContent("héllo ✓"),
            properties={"ValidityPeriod": 600},
        )
        await ledger.add(campaign, [(message, "+15550001111", 1)])
        assert await ledger.load(message.id) == message
        assert await ledger.load(_uid("missing")) is None
        assert await ledger.get(_uid("missing")) is None

    # -- claim ---------------------------------------------------------------------------------------

    @_asyncio
    async def test_claim_takes_a_lease_and_bumps_fence_and_attempts(self, ledger: SendLedger) -> None:
        _, (message_id,) = await _added(ledger)
        before_fence = (await _entry(ledger, message_id)).fence
        before, wall = time.monotonic(), datetime.now(UTC)
        claim = await _claimed(ledger, message_id, lease=30.0, request_timeout=5.0)
        after = time.monotonic()
        assert claim.message_id == message_id
        assert claim.fence > before_fence
        assert claim.attempts == 1
        assert before + 25.0 - self.clock_tolerance <= claim.deadline <= after + 25.0 + self.clock_tolerance
        slack = timedelta(seconds=1)  # a server clock may differ a little from ours
        assert wall + timedelta(seconds=30) - slack <= claim.lease_until <= wall + timedelta(seconds=30) + slack
        entry = await _entry(ledger, message_id)
        assert entry.state is SendState.SUBMITTING
        assert (entry.fence, entry.attempts) == (claim.fence, 1)
        assert entry.claimed_at is not None
        assert entry.lease_until is not None

    @_asyncio
    async def test_claim_refuses_a_live_lease_and_returns_the_entry(self, ledger: SendLedger) -> None:
        _, (message_id,) = await _added(ledger)
        claim = await _claimed(ledger, message_id)
        second = await ledger.claim(message_id, lease=30.0, request_timeout=5.0)
        assert isinstance(second, LedgerEntry), "a message in flight must not be claimed twice"
        assert (second.state, second.fence, second.attempts) == (SendState.SUBMITTING, claim.fence, 1)

    @_asyncio
    async def test_concurrent_claims_have_one_winner(self, ledger: SendLedger) -> None:
        _, (message_id,) = await _added(ledger)
        answers = await asyncio.gather(*(ledger.claim(message_id, lease=30.0, request_timeout=5.0) for _ in range(12)))
        claims = [a for a in answers if isinstance(a, Claim)]
        assert len(claims) == 1, f"{len(claims)} claims for one message"
        assert (await _entry(ledger, message_id)).attempts == 1

    @_asyncio
    async def test_claim_of_an_unknown_id_raises_key_error(self, ledger: SendLedger) -> None:
        """The error names the id, also for claims made at the same moment (a ledger may write them together)."""
        missing = _uid("missing")
        with pytest.raises(KeyError) as raised:
            await ledger.claim(missing, lease=30.0, request_timeout=5.0)
        assert raised.value.args == (missing,)
        _, (known,) = await _added(ledger)
        others = [_uid("missing"), _uid("missing")]
        answers = await asyncio.gather(
            *(ledger.claim(i, lease=30.0, request_timeout=5.0) for i in [others[0], known, others[1]]),
            return_exceptions=True,
        )
        assert isinstance(answers[1], Claim)
        for asked, answer in zip(others, (answers[0], answers[2]), strict=True):
            assert isinstance(answer, KeyError)
            assert answer.args == (asked,)

    @_asyncio
    async def test_expired_lease_is_in_doubt_not_claimable(self, ledger: SendLedger) -> None:
        # I3: the worker may have sent before it died; only reconciliation may allow a resend.
        campaign, (message_id,) = await _added(ledger)
        claim = await self._expire(ledger, message_id)
        again = await ledger.claim(message_id, lease=30.0, request_timeout=5.0)
        assert isinstance(again, LedgerEntry)
        assert again.state is SendState.SUBMITTING
        assert again.fence == claim.fence, "a refused claim must not move the fence"
        assert message_id in await ledger.due(campaign_id=campaign)
        assert await ledger.mark_unknown(message_id, claim.fence)
        entry = await _entry(ledger, message_id)
        assert entry.state is SendState.UNKNOWN
        refused = await ledger.claim(message_id, lease=30.0, request_timeout=5.0)
        assert isinstance(refused, LedgerEntry)
        assert refused.state is SendState.UNKNOWN

    @_asyncio
    async def test_release_gives_back_only_the_claim_with_that_token(self, ledger: SendLedger) -> None:
        _, (lost_id, recorded_id) = await _added(ledger, 2)
        lost = await ledger.claim(lost_id, lease=30.0, request_timeout=5.0, token="t-lost")
        assert isinstance(lost, Claim)
        assert not await ledger.release(lost_id, "t-other"), "another claim's token"
        assert await ledger.release(lost_id, "t-lost")
        entry = await _entry(ledger, lost_id)
        assert (entry.state, entry.attempts) == (SendState.PENDING, 0)
        assert entry.fence > lost.fence, "the lost claim can no longer record"
        assert not await ledger.record(lost, SendOutcome(SendState.ACCEPTED, provider_id=_uid("SM")))
        assert isinstance(await ledger.claim(lost_id, lease=30.0, request_timeout=5.0), Claim)
        recorded = await ledger.claim(recorded_id, lease=30.0, request_timeout=5.0, token="t-done")
        assert isinstance(recorded, Claim)
        assert await ledger.record(recorded, SendOutcome(SendState.ACCEPTED, provider_id=_uid("SM")))
        assert not await ledger.release(recorded_id, "t-done"), "an outcome is never given back"

    @_asyncio
    async def test_mark_unknown_needs_an_expired_lease_and_the_current_fence(self, ledger: SendLedger) -> None:
        _, (live_id, expired_id) = await _added(ledger, 2)
        live = await _claimed(ledger, live_id)
        assert not await ledger.mark_unknown(live_id, live.fence), "a live lease is not in doubt"
        assert (await _entry(ledger, live_id)).state is SendState.SUBMITTING
        expired = await self._expire(ledger, expired_id)
        assert not await ledger.mark_unknown(expired_id, expired.fence + 1), "wrong fence"
        assert await ledger.mark_unknown(expired_id, expired.fence)
        assert (await _entry(ledger, expired_id)).error_code == LEASE_EXPIRED, "in doubt, with its reason"
        assert not await ledger.mark_unknown(expired_id, expired.fence), "already UNKNOWN"

    # -- record (fenced) -----------------------------------------------------------------------------

    @_asyncio
    async def test_accepted_is_final(self, ledger: SendLedger) -> None:
        # I5
        _, (message_id,) = await _added(ledger)
        claim = await _claimed(ledger, message_id)
        assert await ledger.record(claim, SendOutcome(SendState.ACCEPTED, provider_id="SM0001"))
        entry = await _entry(ledger, message_id)
        assert (entry.state, entry.provider_id) == (SendState.ACCEPTED, "SM0001")
        assert not await ledger.record(claim, SendOutcome(SendState.FAILED, error_code="X")), "recorded twice"
        refused = await ledger.claim(message_id, lease=30.0, request_timeout=5.0)
        assert isinstance(refused, LedgerEntry)
        assert refused.state is SendState.ACCEPTED
        assert not await ledger.resolve(message_id, provider_id=None), "an accepted message is never reopened"
        assert (await _entry(ledger, message_id)).state is SendState.ACCEPTED

    @_asyncio
    async def test_failed_is_final(self, ledger: SendLedger) -> None:
        campaign, (message_id,) = await _added(ledger)
        claim = await _claimed(ledger, message_id)
        assert await ledger.record(claim, SendOutcome(SendState.FAILED, error_code="INVALID_RECIPIENT"))
        entry = await _entry(ledger, message_id)
        assert (entry.state, entry.error_code) == (SendState.FAILED, "INVALID_RECIPIENT")
        refused = await ledger.claim(message_id, lease=30.0, request_timeout=5.0)
        assert isinstance(refused, LedgerEntry)
        assert refused.state is SendState.FAILED
        assert not await ledger.resolve(message_id, provider_id="SM1"), "a failed message stays failed"
        assert message_id not in await ledger.due(campaign_id=campaign)

    @_asyncio
    async def test_stale_fence_is_rejected(self, ledger: SendLedger) -> None:
        # I4: a worker whose lease expired and was reconciled must not overwrite the newer claim.
        _, (message_id,) = await _added(ledger)
        stale = await self._expire(ledger, message_id)
        assert await ledger.mark_unknown(message_id, stale.fence)
        assert await ledger.resolve(message_id, provider_id=None)  # proven absent: resend allowed
        current = await _claimed(ledger, message_id)
        assert current.fence > stale.fence
        assert current.attempts == 2
        assert not await ledger.record(stale, SendOutcome(SendState.ACCEPTED, provider_id="SM-stale"))
        entry = await _entry(ledger, message_id)
        assert (entry.state, entry.provider_id, entry.fence) == (SendState.SUBMITTING, None, current.fence)
        forged = Claim(message_id, current.fence + 1, current.attempts, current.lease_until, current.deadline)
        assert not await ledger.record(forged, SendOutcome(SendState.FAILED, error_code="X"))
        assert await ledger.record(current, SendOutcome(SendState.ACCEPTED, provider_id="SM-current"))
        assert (await _entry(ledger, message_id)).provider_id == "SM-current"

    @_asyncio
    async def test_record_after_mark_unknown_is_rejected(self, ledger: SendLedger) -> None:
        _, (message_id,) = await _added(ledger)
        claim = await self._expire(ledger, message_id)
        assert await ledger.mark_unknown(message_id, claim.fence)
        assert not await ledger.record(claim, SendOutcome(SendState.ACCEPTED, provider_id="SM1"))
        assert (await _entry(ledger, message_id)).state is SendState.UNKNOWN

    @_asyncio
    async def test_pending_outcome_waits_for_retry_at(self, ledger: SendLedger) -> None:
        campaign, (message_id,) = await _added(ledger)
        claim = await _claimed(ledger, message_id)
        outcome = SendOutcome(SendState.PENDING, error_code="RATE_LIMITED", retry_after=0.15)
        assert await ledger.record(claim, outcome)
        entry = await _entry(ledger, message_id)
        assert (entry.state, entry.error_code) == (SendState.PENDING, "RATE_LIMITED")
        assert entry.retry_at is not None
        early = await ledger.claim(message_id, lease=30.0, request_timeout=5.0)
        assert isinstance(early, LedgerEntry), "claimed before retry_at"
        assert early.state is SendState.PENDING
        assert message_id not in await ledger.due(campaign_id=campaign)
        await asyncio.sleep(0.15 + self.clock_tolerance)
        assert message_id in await ledger.due(campaign_id=campaign)
        retry = await _claimed(ledger, message_id)
        assert retry.attempts == 2
        assert retry.fence > claim.fence

    @_asyncio
    async def test_a_pending_outcome_without_a_retry_time_is_due_at_once(self, ledger: SendLedger) -> None:
        campaign, (message_id,) = await _added(ledger)
        claim = await _claimed(ledger, message_id)
        assert await ledger.record(claim, SendOutcome(SendState.PENDING, error_code="NOT_ATTEMPTED"))
        assert message_id in await ledger.due(campaign_id=campaign)
        again = await _claimed(ledger, message_id)
        assert again.attempts == 2

    @_asyncio
    async def test_entries_count_the_time_left_on_the_ledgers_clock(self, ledger: SendLedger) -> None:
        """``lease_left``/``retry_in``: seconds on the ledger's clock as of the entry (a worker's may be skewed)."""
        campaign, (message_id, other_id) = await _added(ledger, 2)
        fresh = await _entry(ledger, message_id)
        assert (fresh.lease_left, fresh.retry_in) == (None, None)
        claim = await _claimed(ledger, message_id, lease=30.0, request_timeout=5.0)
        slack = 1.0  # a round trip, and the time between the claim and the entry
        refused = await ledger.claim(message_id, lease=30.0, request_timeout=5.0)
        assert isinstance(refused, LedgerEntry)
        assert refused.lease_left is not None
        assert 30.0 - slack <= refused.lease_left <= 30.0
        assert await ledger.record(claim, SendOutcome(SendState.PENDING, retry_after=20.0))
        early = await ledger.claim(message_id, lease=30.0, request_timeout=5.0)
        assert isinstance(early, LedgerEntry)
        assert early.retry_in is not None
        assert 20.0 - slack <= early.retry_in <= 20.0
        listed = {entry.message_id: entry.retry_in async for entry in ledger.results(campaign)}
        retry_in = listed[message_id]
        assert retry_in is not None
        assert 20.0 - slack <= retry_in <= 20.0
        await self._expire(ledger, other_id)
        expired = await _entry(ledger, other_id)
        assert expired.lease_left is not None
        assert expired.lease_left <= 0.0, "an ended lease has no time left"
        assert expired.retry_in is None

    @_asyncio
    async def test_unknown_outcome_waits_for_resolve(self, ledger: SendLedger) -> None:
        campaign, (message_id,) = await _added(ledger)
        claim = await _claimed(ledger, message_id)
        assert await ledger.record(claim, SendOutcome(SendState.UNKNOWN, error_code="OUTCOME_UNKNOWN"))
        refused = await ledger.claim(message_id, lease=30.0, request_timeout=5.0)
        assert isinstance(refused, LedgerEntry)
        assert refused.state is SendState.UNKNOWN
        assert await ledger.due(campaign_id=campaign) == [message_id]
        assert await ledger.resolve(message_id, provider_id="SM0042")
        entry = await _entry(ledger, message_id)
        assert (entry.state, entry.provider_id, entry.reconciled) == (SendState.ACCEPTED, "SM0042", True)
        assert not await ledger.resolve(message_id, provider_id="SM0042"), "resolving twice changes nothing"

    @_asyncio
    async def test_record_refuses_states_a_provider_call_cannot_produce(self, ledger: SendLedger) -> None:
        _, (message_id,) = await _added(ledger)
        claim = await _claimed(ledger, message_id)
        for state in (SendState.SUBMITTING, SendState.CANCELLED):
            with pytest.raises(ValueError, match=state.value):
                await ledger.record(claim, SendOutcome(state))
        assert (await _entry(ledger, message_id)).state is SendState.SUBMITTING

    # -- resolve ---------------------------------------------------------------------------------------

    @_asyncio
    async def test_callback_before_the_record_wins_and_fences_the_worker(self, ledger: SendLedger) -> None:
        # A status callback naming our id may arrive before the worker records the provider's answer.
        _, (message_id,) = await _added(ledger)
        claim = await _claimed(ledger, message_id)
        assert await ledger.resolve(message_id, provider_id="SM-cb", reconciled=False)
        entry = await _entry(ledger, message_id)
        assert (entry.state, entry.provider_id, entry.reconciled) == (SendState.ACCEPTED, "SM-cb", False)
        assert not await ledger.record(claim, SendOutcome(SendState.UNKNOWN, error_code="OUTCOME_UNKNOWN"))
        assert (await _entry(ledger, message_id)).state is SendState.ACCEPTED

    @_asyncio
    async def test_resolve_absent_only_for_messages_in_doubt(self, ledger: SendLedger) -> None:
        _, (pending_id, live_id, unknown_id) = await _added(ledger, 3)
        assert not await ledger.resolve(pending_id, provider_id=None), "nothing to resolve"
        live = await _claimed(ledger, live_id)
        assert not await ledger.resolve(live_id, provider_id=None), "a live lease may still be sending"
        assert (await _entry(ledger, live_id)).fence == live.fence
        unknown = await _claimed(ledger, unknown_id)
        assert await ledger.record(unknown, SendOutcome(SendState.UNKNOWN, error_code="OUTCOME_UNKNOWN"))
        assert await ledger.resolve(unknown_id, provider_id=None)
        entry = await _entry(ledger, unknown_id)
        assert (entry.state, entry.reconciled) == (SendState.PENDING, True)
        assert isinstance(await ledger.claim(unknown_id, lease=30.0, request_timeout=5.0), Claim)

    @_asyncio
    async def test_a_verdict_on_an_older_attempt_is_refused(self, ledger: SendLedger) -> None:
        # Two workers reconcile the same message; one proves it absent and sends it again (in doubt
        # once more) while the other is still probing. The late verdict names the fence it probed.
        _, (message_id,) = await _added(ledger)
        first = await _claimed(ledger, message_id)
        assert await ledger.record(first, SendOutcome(SendState.UNKNOWN, error_code="OUTCOME_UNKNOWN"))
        probed = (await _entry(ledger, message_id)).fence
        assert await ledger.resolve(message_id, provider_id=None, fence=probed)
        second = await _claimed(ledger, message_id)
        assert await ledger.record(second, SendOutcome(SendState.UNKNOWN, error_code="OUTCOME_UNKNOWN"))
        assert not await ledger.resolve(message_id, provider_id=None, fence=probed), "absent, for an older attempt"
        assert not await ledger.resolve(message_id, provider_id="SM-old", fence=probed)
        entry = await _entry(ledger, message_id)
        assert (entry.state, entry.fence, entry.provider_id) == (SendState.UNKNOWN, second.fence, None)
        assert await ledger.resolve(message_id, provider_id="SM-2", fence=second.fence)
        assert (await _entry(ledger, message_id)).state is SendState.ACCEPTED

    @_asyncio
    async def test_resolve_of_an_expired_lease_settles_it(self, ledger: SendLedger) -> None:
        _, (message_id,) = await _added(ledger)
        await self._expire(ledger, message_id)
        assert await ledger.resolve(message_id, provider_id=None)
        assert (await _entry(ledger, message_id)).state is SendState.PENDING

    # -- provider ids: one message each ------------------------------------------------------------------

    async def _accepted(self, ledger: SendLedger, message_id: str, provider_id: str) -> None:
        claim = await _claimed(ledger, message_id)
        assert await ledger.record(claim, SendOutcome(SendState.ACCEPTED, provider_id=provider_id))

    async def _in_doubt(self, ledger: SendLedger, message_id: str) -> None:
        claim = await _claimed(ledger, message_id)
        assert await ledger.record(claim, SendOutcome(SendState.UNKNOWN, error_code="OUTCOME_UNKNOWN"))

    @_asyncio
    async def test_owner_names_the_message_holding_a_provider_id(self, ledger: SendLedger) -> None:
        _, (message_id,) = await _added(ledger)
        provider_id = _uid("SM")
        assert await ledger.owner(provider_id) is None
        await self._accepted(ledger, message_id, provider_id)
        assert await ledger.owner(provider_id) == message_id

    @_asyncio
    async def test_open_to_lists_calls_under_way_or_in_doubt_to_a_receiver(self, ledger: SendLedger) -> None:
        receiver = "+1555" + str(uuid.uuid4().int)[:7]
        campaign = _uid("c")
        pending, live, doubt, done, elsewhere = [_message("x", receiver) for _ in range(4)] + [_message("x")]
        assert await ledger.add(campaign, [(m, "S1", 1) for m in (pending, live, doubt, done, elsewhere)]) == 5
        await _claimed(ledger, live.id)
        await self._in_doubt(ledger, doubt.id)
        await self._accepted(ledger, done.id, _uid("SM"))
        await _claimed(ledger, elsewhere.id)
        assert sorted(await ledger.open_to(receiver)) == sorted([live.id, doubt.id])

    @_asyncio
    async def test_resolve_refuses_a_provider_id_another_message_holds(self, ledger: SendLedger) -> None:
        _, (holder, other) = await _added(ledger, 2)
        provider_id = _uid("SM")
        await self._accepted(ledger, holder, provider_id)
        await self._in_doubt(ledger, other)
        assert not await ledger.resolve(other, provider_id=provider_id), "that id proves the other message"
        entry = await _entry(ledger, other)
        assert (entry.state, entry.provider_id) == (SendState.UNKNOWN, None)
        assert await ledger.owner(provider_id) == holder

    @_asyncio
    async def test_a_call_answering_an_id_a_probe_gave_another_message_reopens_that_one(
        self, ledger: SendLedger
    ) -> None:
        """A probe matched the id to the wrong message (it was this call's): that one is in doubt again."""
        _, (probed, calling) = await _added(ledger, 2)
        provider_id = _uid("SM")
        await self._in_doubt(ledger, probed)
        claim = await _claimed(ledger, calling)
        assert await ledger.resolve(probed, provider_id=provider_id, reconciled=True)
        fence = (await _entry(ledger, probed)).fence
        assert await ledger.record(claim, SendOutcome(SendState.ACCEPTED, provider_id=provider_id))
        reopened, accepted = await _entry(ledger, probed), await _entry(ledger, calling)
        assert (reopened.state, reopened.provider_id, reopened.error_code) == (
            SendState.UNKNOWN,
            None,
            PROVIDER_ID_COLLISION,
        )
        assert reopened.fence > fence, "a verdict on the old match is refused"
        assert (accepted.state, accepted.provider_id) == (SendState.ACCEPTED, provider_id)
        assert await ledger.owner(provider_id) == calling

    @_asyncio
    async def test_a_call_answering_an_id_held_otherwise_holds_both(self, ledger: SendLedger) -> None:
        """A status callback gave the id to another message: the answers contradict, an operator decides."""
        _, (called_back, calling) = await _added(ledger, 2)
        provider_id = _uid("SM")
        await self._in_doubt(ledger, called_back)
        claim = await _claimed(ledger, calling)
        assert await ledger.resolve(called_back, provider_id=provider_id, reconciled=False)
        assert await ledger.record(claim, SendOutcome(SendState.ACCEPTED, provider_id=provider_id))
        for message_id in (called_back, calling):
            entry = await _entry(ledger, message_id)
            assert (entry.state, entry.error_code) == (SendState.UNKNOWN, PROVIDER_ID_COLLISION), message_id
        assert await ledger.owner(provider_id) is None

    # -- cancel, due, progress, results ----------------------------------------------------------------

    @_asyncio
    async def test_cancel_moves_only_pending_rows(self, ledger: SendLedger) -> None:
        campaign, ids = await _added(ledger, 4)
        in_flight = await _claimed(ledger, ids[0])
        assert await ledger.cancel(campaign) == 3
        assert [(await _entry(ledger, i)).state for i in ids] == [SendState.SUBMITTING] + [SendState.CANCELLED] * 3
        refused = await ledger.claim(ids[1], lease=30.0, request_timeout=5.0)
        assert isinstance(refused, LedgerEntry)
        assert refused.state is SendState.CANCELLED
        # The send in flight keeps its true outcome.
        assert await ledger.record(in_flight, SendOutcome(SendState.ACCEPTED, provider_id="SM1"))
        assert _counts(await ledger.progress(campaign)) == {"accepted": 1, "cancelled": 3}
        assert await ledger.cancel(campaign) == 0

    @_asyncio
    async def test_due_lists_the_work_left(self, ledger: SendLedger) -> None:
        campaign, ids = await _added(ledger, 6)
        accepted, live, expired, unknown, not_due = ids[:5]
        claim = await _claimed(ledger, accepted)
        await ledger.record(claim, SendOutcome(SendState.ACCEPTED, provider_id="SM1"))
        await _claimed(ledger, live)
        claim = await _claimed(ledger, unknown)
        await ledger.record(claim, SendOutcome(SendState.UNKNOWN, error_code="OUTCOME_UNKNOWN"))
        claim = await _claimed(ledger, not_due)
        await ledger.record(claim, SendOutcome(SendState.PENDING, error_code="RATE_LIMITED", retry_after=60))
        await self._expire(ledger, expired)
        due = await ledger.due(campaign_id=campaign)
        assert sorted(due) == sorted([expired, unknown, ids[5]])
        assert len(await ledger.due(campaign_id=campaign, limit=2)) == 2
        other, _ = await _added(ledger, 2)
        assert set(await ledger.due(campaign_id=other)).isdisjoint(due), "due() filters by campaign"

    @_asyncio
    async def test_progress_counts_by_state(self, ledger: SendLedger) -> None:
        campaign, ids = await _added(ledger, 5)
        for message_id, outcome in zip(
            ids,
            [
                SendOutcome(SendState.ACCEPTED, provider_id="SM1"),
                SendOutcome(SendState.FAILED, error_code="INVALID_RECIPIENT"),
                SendOutcome(SendState.UNKNOWN, error_code="OUTCOME_UNKNOWN"),
            ],
            strict=False,
        ):
            await ledger.record(await _claimed(ledger, message_id), outcome)
        await _claimed(ledger, ids[3])
        progress = await ledger.progress(campaign)
        assert progress.campaign_id == campaign
        assert _counts(progress) == {"accepted": 1, "failed": 1, "unknown": 1, "submitting": 1, "pending": 1}
        assert (progress.total, progress.done, progress.is_complete) == (5, 2, False)
        empty = await ledger.progress(_uid("c"))
        assert empty.total == 0
        assert _counts(empty) == {}

    @_asyncio
    async def test_results_are_in_insertion_order(self, ledger: SendLedger) -> None:
        campaign = _uid("c")
        first, second = [_message(f"a{i}") for i in range(3)], [_message(f"b{i}") for i in range(4)]
        await ledger.add(campaign, [(m, "S", 1) for m in first])
        await ledger.add(campaign, [(m, "S", 1) for m in second])
        claim = await _claimed(ledger, second[0].id)
        await ledger.record(claim, SendOutcome(SendState.ACCEPTED, provider_id="SM9"))
        entries = [entry async for entry in ledger.results(campaign)]
        assert [e.message_id for e in entries] == [m.id for m in first + second]
        assert entries[3].state is SendState.ACCEPTED
        assert entries[3].provider_id == "SM9"
        assert {e.campaign_id for e in entries} == {campaign}


class RateLimiterConformance:
    """The ``RateLimiter`` contract: GCRA "reserve a slot" per key, cost in units, ``max_wait``.

    Provide the fixture ``limiter_factory`` (a ``RateLimiterFactory``). Waits are checked against
    the exact GCRA schedule, give or take ``clock_tolerance`` plus the time the calls took.
    """

    clock_tolerance: float = 0.02

    def _close_to(self, wait: float | None, expected: float, elapsed: float) -> bool:
        return wait is not None and expected - elapsed - self.clock_tolerance <= wait <= expected + self.clock_tolerance

    @_asyncio
    async def test_a_fresh_key_has_a_free_slot(self, limiter_factory: RateLimiterFactory) -> None:
        limiter = await limiter_factory(10.0)
        assert await limiter.reserve(_uid("k")) == 0.0
        assert await limiter.reserve(_uid("k"), 1.0, max_wait=0.0) == 0.0, "max_wait=0 still takes a free slot"

    @_asyncio
    async def test_strict_spacing(self, limiter_factory: RateLimiterFactory) -> None:
        limiter = await limiter_factory(100.0)
        key = _uid("k")
        start = time.monotonic()
        waits = [await limiter.reserve(key) for _ in range(10)]
        elapsed = time.monotonic() - start
        for i, wait in enumerate(waits):
            assert self._close_to(wait, i * 0.01, elapsed), f"reservation {i}: waited {wait}, expected {i * 0.01}"

    @_asyncio
    async def test_burst_lets_units_go_back_to_back(self, limiter_factory: RateLimiterFactory) -> None:
        limiter = await limiter_factory(10.0, 5.0)
        key = _uid("k")
        start = time.monotonic()
        waits = [await limiter.reserve(key) for _ in range(7)]
        elapsed = time.monotonic() - start
        assert all(w is not None and w <= self.clock_tolerance for w in waits[:5]), waits
        assert self._close_to(waits[5], 0.1, elapsed), waits
        assert self._close_to(waits[6], 0.2, elapsed), waits

    @_asyncio
    async def test_cost_is_paid_after_the_slot(self, limiter_factory: RateLimiterFactory) -> None:
        # A three-segment SMS goes now and pushes the next send back by three intervals.
        limiter = await limiter_factory(10.0)
        key = _uid("k")
        start = time.monotonic()
        first = await limiter.reserve(key, 3.0)
        second = await limiter.reserve(key, 1.0)
        elapsed = time.monotonic() - start
        assert first == 0.0
        assert self._close_to(second, 0.3, elapsed), second

    @_asyncio
    async def test_max_wait_refuses_without_reserving(self, limiter_factory: RateLimiterFactory) -> None:
        limiter = await limiter_factory(10.0)
        key = _uid("k")
        start = time.monotonic()
        assert await limiter.reserve(key) == 0.0
        assert await limiter.reserve(key, max_wait=0.05) is None
        after_refusal = await limiter.reserve(key, max_wait=1.0)
        elapsed = time.monotonic() - start
        assert self._close_to(after_refusal, 0.1, elapsed), "a refused reservation must not take a slot"

    @_asyncio
    async def test_the_last_slot_booked_under_a_token_can_be_given_back(
        self, limiter_factory: RateLimiterFactory
    ) -> None:
        # A pass whose claim was refused sent nothing in its slot: the next message takes it.
        limiter = await limiter_factory(1.0)
        key = _uid("k")
        assert await limiter.reserve(key, token="m1") == 0.0
        assert await limiter.release(key, "m2") is False, "another token's slot"
        assert await limiter.release(key, "m1") is True
        assert await limiter.reserve(key, token="m2") == 0.0, "the slot given back is free again"
        assert await limiter.release(key, "m1") is False, "given back once"

    @_asyncio
    async def test_a_slot_two_passes_share_is_kept(self, limiter_factory: RateLimiterFactory) -> None:
        # A second copy of a message (a redelivered chunk) shares its slot: the copy whose claim
        # is refused must not give back the slot the other copy sends in.
        limiter = await limiter_factory(1.0)
        key = _uid("k")
        assert await limiter.reserve(key) == 0.0
        first = await limiter.reserve(key, token="m1")
        again = await limiter.reserve(key, token="m1")
        assert first is not None
        assert again is not None
        assert again <= first
        assert await limiter.release(key, "m1") is False
        later = await limiter.reserve(key)
        assert later is not None
        assert later > 1.5, "the shared slot is still booked"

    @_asyncio
    async def test_a_slot_with_later_slots_booked_behind_it_is_kept(self, limiter_factory: RateLimiterFactory) -> None:
        # Moving the schedule back under a later slot would let two sends share an instant.
        limiter = await limiter_factory(10.0)
        key = _uid("k")
        start = time.monotonic()
        assert await limiter.reserve(key, token="m1") == 0.0
        assert await limiter.reserve(key, token="m2") is not None
        assert await limiter.release(key, "m1") is False
        third = await limiter.reserve(key)
        elapsed = time.monotonic() - start
        assert self._close_to(third, 0.2, elapsed), third
        assert await limiter.release(key, "m2") is False, "a reservation without a token came after it"

    @_asyncio
    async def test_keys_are_independent(self, limiter_factory: RateLimiterFactory) -> None:
        limiter = await limiter_factory(1.0)
        first, second = _uid("k"), _uid("k")
        assert await limiter.reserve(first) == 0.0
        assert await limiter.reserve(second) == 0.0
        wait = await limiter.reserve(first)
        assert wait is not None
        assert wait > 0.9

    @_asyncio
    async def test_concurrent_reservations_get_distinct_slots(self, limiter_factory: RateLimiterFactory) -> None:
        limiter = await limiter_factory(200.0)
        key = _uid("k")
        start = time.monotonic()
        waits = await asyncio.gather(*(limiter.reserve(key) for _ in range(20)))
        elapsed = time.monotonic() - start
        assert all(w is not None for w in waits)
        found = cast(list[float], waits)
        # Twenty slots 5 ms apart: the last one starts 95 ms out (less the time the calls took).
        assert self._close_to(max(found), 19 * 0.005, elapsed), f"two reservations shared a slot: {sorted(found)}"

    @_asyncio
    async def test_a_token_keeps_its_slot_until_the_slot_starts(self, limiter_factory: RateLimiterFactory) -> None:
        # A message paced twice (a redelivered chunk beside the original) takes one slot.
        limiter = await limiter_factory(10.0)
        key, token = _uid("k"), _uid("message")
        assert await limiter.reserve(key) == 0.0
        start = time.monotonic()
        booked = await limiter.reserve(key, 2.0, token=token)
        again = await limiter.reserve(key, 2.0, token=token)
        other = await limiter.reserve(key, 1.0, token=_uid("message"))
        elapsed = time.monotonic() - start
        assert booked is not None
        assert again is not None
        assert other is not None
        assert self._close_to(booked, 0.1, elapsed)
        assert self._close_to(again, booked, elapsed), f"the same slot, a little closer: {booked} then {again}"
        # The token's 2 units were booked once: the next message comes 2 intervals after it.
        assert self._close_to(other, 0.3, elapsed), f"the token booked twice: {other}"
        assert await limiter.reserve(key, max_wait=0.05, token=token) is None, "max_wait applies to the slot left"

    @_asyncio
    async def test_a_token_books_again_once_its_slot_started(self, limiter_factory: RateLimiterFactory) -> None:
        # A retry after the slot was used pays for a slot of its own.
        limiter = await limiter_factory(20.0)
        key, token = _uid("k"), _uid("message")
        assert await limiter.reserve(key) == 0.0
        first = await limiter.reserve(key, token=token)
        assert first is not None
        assert first > 0
        await asyncio.sleep(first + 0.07)  # past the slot and the schedule (one interval is 50 ms)
        retry = await limiter.reserve(key, token=token)
        assert retry == 0.0, "the schedule is free again: a new slot, now"
        after = await limiter.reserve(key, token=_uid("message"))
        assert after is not None
        assert after > 0.02, "the retry's slot was booked"


# A message's real lifecycles: each status can become the next one (MessageStatus.can_become).
_LIFECYCLES: tuple[tuple[MessageStatus, ...], ...] = (
    (MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED),
    (MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ),
    (MessageStatus.SCHEDULED, MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERY_FAILED),
    (MessageStatus.QUEUED, MessageStatus.ROUTE_FAILED),
    (MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.DELETED),
    (MessageStatus.SCHEDULED, MessageStatus.CANCELLED),
)


class StatusStoreConformance:
    """The ``StatusStore`` contract: monotonic per message, deduplicated by idempotency key.

    Provide the fixture ``status_store_factory`` (a ``StatusStoreFactory``).
    """

    @pytest.fixture
    async def status_store(self, status_store_factory: StatusStoreFactory) -> StatusStore:
        return await status_store_factory()

    @_asyncio
    async def test_status_moves_forward_only(self, status_store: StatusStore) -> None:
        message_id = _uid("m")
        assert await status_store.get(message_id) is None
        assert await status_store.apply(StatusUpdate(message_id, MessageStatus.SENT))
        assert await status_store.get(message_id) is MessageStatus.SENT
        assert not await status_store.apply(StatusUpdate(message_id, MessageStatus.QUEUED)), "moved backwards"
        assert not await status_store.apply(StatusUpdate(message_id, MessageStatus.SENT)), "same status twice"
        assert await status_store.get(message_id) is MessageStatus.SENT
        assert await status_store.apply(StatusUpdate(message_id, MessageStatus.DELIVERED))
        assert not await status_store.apply(StatusUpdate(message_id, MessageStatus.DELIVERY_FAILED)), "final"
        assert await status_store.apply(StatusUpdate(message_id, MessageStatus.READ)), "delivered -> read"
        assert await status_store.get(message_id) is MessageStatus.READ

    @_asyncio
    async def test_idempotency_key_is_applied_once(self, status_store: StatusStore) -> None:
        message_id, key = _uid("m"), _uid("token")
        assert await status_store.apply(StatusUpdate(message_id, MessageStatus.QUEUED), idempotency_key=key)
        assert not await status_store.apply(StatusUpdate(message_id, MessageStatus.SENT), idempotency_key=key)
        assert await status_store.get(message_id) is MessageStatus.QUEUED, "a replayed key must change nothing"
        assert await status_store.apply(StatusUpdate(message_id, MessageStatus.SENT), idempotency_key=_uid("t"))

    @_asyncio
    async def test_messages_are_independent(self, status_store: StatusStore) -> None:
        first, second = _uid("m"), _uid("m")
        await status_store.apply(StatusUpdate(first, MessageStatus.DELIVERED))
        assert await status_store.apply(StatusUpdate(second, MessageStatus.QUEUED))
        assert (await status_store.get(first), await status_store.get(second)) == (
            MessageStatus.DELIVERED,
            MessageStatus.QUEUED,
        )

    @_asyncio
    async def test_shuffled_duplicated_callbacks_end_at_the_last_status(self, status_store: StatusStore) -> None:
        # Providers deliver callbacks out of order and more than once; the outcome must not depend on it.
        rng = random.Random(20_261_107)
        expected: dict[str, MessageStatus] = {}
        updates: list[tuple[StatusUpdate, str]] = []
        for n in range(60):
            message_id = _uid("m")
            lifecycle = _LIFECYCLES[n % len(_LIFECYCLES)]
            expected[message_id] = lifecycle[-1]
            for status in lifecycle:
                token = _uid("token")
                # Redeliveries carry the same token (deduplicated); a few come with none at all.
                updates.extend([(StatusUpdate(message_id, status), token)] * rng.randint(1, 3))
                updates.append((StatusUpdate(message_id, status), ""))
        rng.shuffle(updates)
        seen: dict[str, MessageStatus] = {}
        for start in range(0, len(updates), 25):
            chunk = updates[start : start + 25]
            await asyncio.gather(*(status_store.apply(u, idempotency_key=key or None) for u, key in chunk))
            for message_id in {u.message_id for u, _ in chunk}:
                now = await status_store.get(message_id)
                assert now is not None
                before = seen.get(message_id)
                assert before is None or before == now or before.can_become(now), f"{before} -> {now}"
                seen[message_id] = now
        for message_id, status in expected.items():
            assert await status_store.get(message_id) is status

    @_asyncio
    async def test_the_suppression_list_if_the_store_keeps_one(self, status_store: StatusStore) -> None:
        if not isinstance(status_store, SuppressionList):
            pytest.skip(f"{type(status_store).__name__} keeps no suppression list (SuppressionList)")
        listed, other = _uid("+1555"), _uid("+1555")
        assert await status_store.suppressed(listed) is None
        await status_store.suppress(listed, "RECIPIENT_UNSUBSCRIBED")
        assert await status_store.suppressed(listed) == "RECIPIENT_UNSUBSCRIBED"
        assert await status_store.suppressed(other) is None, "addresses are independent"
        await status_store.suppress(listed, "ANOTHER_REASON")  # again: the latest reason
        assert await status_store.suppressed(listed) == "ANOTHER_REASON"
        await status_store.lift(listed)
        assert await status_store.suppressed(listed) is None
        await status_store.lift(listed)  # lifting what is not listed is harmless


class StoreConformance(LedgerConformance, RateLimiterConformance, StatusStoreConformance):
    """All three suites; provide ``ledger_factory``, ``limiter_factory`` and ``status_store_factory``."""

    clock_tolerance: float = 0.05
