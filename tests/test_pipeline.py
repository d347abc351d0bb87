"""``SendPipeline``: the ledger invariants I1–I5, retries, in-doubt reconciliation, pacing.

A recording connector (the memory channel with scripted provider answers) notes the ledger entry
at the moment of every provider call, and which messages its "provider" created, so each test can
check that nothing was sent without a claim and nothing was created twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from messaging_core import (
    ChannelRegistry,
    ConnectorErrorCodes,
    ConnectorResult,
    Endpoint,
    FailureOutcome,
    Message,
    MessageStatus,
    SendResult,
    StatusUpdate,
    TextContent,
)
from messaging_core.campaigns import (
    Claim,
    InProcessDispatcher,
    LedgerEntry,
    MemoryLedger,
    MemoryRateLimiter,
    MemoryStatusStore,
    SendLedger,
    SendOutcome,
    SendPipeline,
    SendState,
)
from messaging_core.default_plugins.memory import MemoryConnector
from messaging_core.testing import HookRecorder

SENDER = "+15550001111"


def sms(receiver: str, text: str = "hello") -> Message:
    return Message(uuid.uuid4().hex, Endpoint.phone(SENDER), Endpoint.phone(receiver), TextContent(text))


class RecordingConnector(MemoryConnector):
    """The memory channel with a scripted provider: answers per receiver, in order, then "ok".

    Script words: ``ok`` (created, 201), ``created_no_answer`` (created, the answer lost:
    in doubt), ``lost_before`` (not created, in doubt all the same), ``rate_limited`` (not
    created, retryable), ``invalid`` (refused), ``callback_first`` (created, and its status
    callback settles the ledger before the answer comes back, which then is lost).
    """

    ledger: SendLedger | None = None
    probe: str = "unsupported"
    """What ``find_sent`` does: ``unsupported`` (None), ``truthful`` (the created ids), ``several``,
    ``by_content`` (every message created with the same receiver, sender and content: the
    provider's list knows no ids, so identical messages are indistinguishable)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.script: dict[str, list[str]] = {}
        self.calls: list[tuple[str, LedgerEntry | None]] = []
        """``(message_id, the ledger entry when the provider was called)``."""
        self.created: dict[str, list[str]] = {}
        """Provider ids created per message id (two entries would be a duplicate SMS)."""
        self.probes: list[tuple[str, datetime]] = []
        self.sent_messages: dict[str, Message] = {}
        """Messages the provider created, by our id (what a probe by content can see)."""

    async def _send_message(self, message: Message) -> ConnectorResult[SendResult]:
        entry = await self.ledger.get(message.id) if self.ledger is not None else None
        self.calls.append((message.id, entry))
        assert message.receiver is not None
        queue = self.script.get(message.receiver.address, [])
        word = queue.pop(0) if queue else "ok"
        await asyncio.sleep(0)
        if word in ("ok", "created_no_answer", "callback_first"):
            sid = f"SM{uuid.uuid4().hex}"
            self.sent_messages[message.id] = message
            self.created.setdefault(message.id, []).append(sid)
            if word == "ok":
                return ConnectorResult.success(SendResult(message.id, sid, MessageStatus.QUEUED))
            if word == "callback_first":
                assert self.ledger is not None
                assert await self.ledger.resolve(message.id, provider_id=sid, reconciled=False)
            return _in_doubt()
        if word == "lost_before":
            return _in_doubt()
        if word == "rate_limited":
            return ConnectorResult.failure(ConnectorErrorCodes.RATE_LIMITED, "429", retryable=True)
        assert word == "invalid", word
        return ConnectorResult.failure(ConnectorErrorCodes.INVALID_RECIPIENT, "refused")

    async def find_sent(self, message: Message, since: datetime) -> list[str] | None:
        self.probes.append((message.id, since))
        if self.probe == "unsupported":
            return None
        if self.probe == "by_content":
            # As Twilio's list does: it knows receivers, senders and bodies, not our ids.
            return [sid for other_id, sids in self.created.items() if self._same(other_id, message) for sid in sids]
        found = list(self.created.get(message.id, []))
        return found * 2 if self.probe == "several" else found

    def _same(self, message_id: str, message: Message) -> bool:
        sent = self.sent_messages.get(message_id)
        return sent is not None and (sent.receiver, sent.sender, sent.content) == (
            message.receiver,
            message.sender,
            message.content,
        )

    def call_count(self, message_id: str) -> int:
        return sum(1 for mid, _ in self.calls if mid == message_id)


def _in_doubt() -> ConnectorResult[SendResult]:
    return ConnectorResult.failure(
        ConnectorErrorCodes.OUTCOME_UNKNOWN, "no answer", outcome=FailureOutcome.MAY_HAVE_BEEN_SENT
    )


@pytest.fixture
async def connector() -> AsyncIterator[RecordingConnector]:
    registry = ChannelRegistry()
    made = RecordingConnector(registry.schema("memory"), {"Mailbox": uuid.uuid4().hex}, plugins=registry.host)
    assert (await made.initialize()).is_success
    yield made
    await made.shutdown()


async def _added(ledger: SendLedger, *messages: Message) -> None:
    await ledger.add("c", [(m, SENDER, 1) for m in messages])


def _pipeline(connector: RecordingConnector, ledger: SendLedger | None = None, **options: Any) -> SendPipeline:
    ledger = ledger if ledger is not None else MemoryLedger()
    connector.ledger = ledger
    options.setdefault("backoff", 0.01)
    options.setdefault("probe_grace", 0.01)
    # A short lease and no extra quiet period: "absent" may be concluded once the lease has ended.
    options.setdefault("request_timeout", 0.5)
    options.setdefault("lease", 1.0)
    options.setdefault("absent_after", 0.0)
    return SendPipeline(connector, ledger=ledger, **options)


async def _state(ledger: SendLedger, message_id: str) -> SendState:
    entry = await ledger.get(message_id)
    assert entry is not None
    return entry.state


# -- the outcome table ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "state"),
    [
        (ConnectorResult.success(SendResult("m", "SM1", MessageStatus.QUEUED)), SendState.ACCEPTED),
        (ConnectorResult.failure(ConnectorErrorCodes.INVALID_RECIPIENT, "21211"), SendState.FAILED),
        (ConnectorResult.failure(ConnectorErrorCodes.RATE_LIMITED, "429", retryable=True), SendState.PENDING),
        (ConnectorResult.failure(ConnectorErrorCodes.NOT_ATTEMPTED, "stopped", retryable=True), SendState.PENDING),
        (_in_doubt(), SendState.UNKNOWN),
        (
            ConnectorResult.failure(
                ConnectorErrorCodes.SEND_MESSAGE_ERROR, "bug", outcome=FailureOutcome.MAY_HAVE_BEEN_SENT
            ),
            SendState.UNKNOWN,
        ),
        # The typed outcome decides, not the code: a plugin's SEND_MESSAGE_ERROR it knows was refused is FAILED.
        (ConnectorResult.failure(ConnectorErrorCodes.SEND_MESSAGE_ERROR, "refused"), SendState.FAILED),
    ],
)
def test_outcome_table(result: ConnectorResult[SendResult], state: SendState) -> None:
    outcome = SendOutcome.from_result(result)
    assert outcome.state is state
    assert outcome.provider_id == ("SM1" if state is SendState.ACCEPTED else None)
    assert (outcome.retry_after is not None) == (state is SendState.PENDING)


def test_entries_read_as_results() -> None:
    def entry(state: SendState, **fields: Any) -> LedgerEntry:
        return LedgerEntry("m", "c", state, SENDER, **fields)

    accepted = entry(SendState.ACCEPTED, provider_id="SM1").to_result()
    assert accepted is not None
    assert accepted.value is not None
    assert (accepted.value.remote_message_id, accepted.value.status) == ("SM1", MessageStatus.QUEUED)
    assert entry(SendState.PENDING).to_result() is None
    codes = {
        state: (result.error_code, result.error.retryable, result.error.outcome)
        for state in (SendState.FAILED, SendState.CANCELLED, SendState.UNKNOWN, SendState.SUBMITTING)
        if (result := entry(state, error_code="INVALID_RECIPIENT").to_result()) is not None and result.error
    }
    assert codes == {
        SendState.FAILED: ("INVALID_RECIPIENT", False, FailureOutcome.REJECTED),
        SendState.CANCELLED: (ConnectorErrorCodes.NOT_ATTEMPTED, True, FailureOutcome.NOT_SENT),
        SendState.UNKNOWN: (ConnectorErrorCodes.OUTCOME_UNKNOWN, False, FailureOutcome.MAY_HAVE_BEEN_SENT),
        SendState.SUBMITTING: (ConnectorErrorCodes.OUTCOME_UNKNOWN, False, FailureOutcome.MAY_HAVE_BEEN_SENT),
    }


# -- I1: no provider call without a committed claim ----------------------------------------------------------


async def test_every_provider_call_holds_the_current_claim(connector: RecordingConnector) -> None:
    dispatcher = InProcessDispatcher(connector, concurrency=8, backoff=0.01, max_attempts=3)
    connector.ledger = dispatcher.ledger
    words = ["ok", "rate_limited", "invalid", "created_no_answer", "lost_before", "callback_first"]
    messages = [sms(f"+1555000{i:04d}") for i in range(60)]
    for i, message in enumerate(messages):
        assert message.receiver is not None
        connector.script[message.receiver.address] = [words[i % len(words)]]
    handle = await dispatcher.submit(messages, campaign_id="i1")
    async with asyncio.timeout(5):
        await handle.wait()
    assert len(connector.calls) == 60 + 10, "each message once, the rate-limited ones twice"
    for message_id, entry in connector.calls:
        assert entry is not None, f"{message_id}: provider called for a message not in the ledger"
        assert entry.state is SendState.SUBMITTING, f"{message_id}: provider called in state {entry.state}"
        assert entry.lease_until is not None
        assert entry.fence == entry.attempts, "every claim moved the fence once"
    assert all(len(sids) == 1 for sids in connector.created.values()), "a message was created twice"


# -- I2: no provider call after the local deadline -------------------------------------------------------------


class LateLedger(MemoryLedger):
    """Hands out claims whose deadline already passed (a worker stalled between claim and call)."""

    async def claim(
        self, message_id: str, *, lease: float, request_timeout: float, token: str | None = None
    ) -> Claim | LedgerEntry:
        claim = await super().claim(message_id, lease=lease, request_timeout=request_timeout, token=token)
        if isinstance(claim, Claim):
            return Claim(claim.message_id, claim.fence, claim.attempts, claim.lease_until, time.monotonic() - 1)
        return claim


async def test_no_call_starts_after_the_deadline(connector: RecordingConnector) -> None:
    ledger = LateLedger()
    message = sms("+15550000001")
    await _added(ledger, message)
    pipeline = _pipeline(connector, ledger, max_attempts=3)
    attempt = await pipeline.process(message)
    assert connector.calls == []
    assert (attempt.state, attempt.called_provider) == (SendState.PENDING, False)
    assert attempt.result.error_code == ConnectorErrorCodes.NOT_ATTEMPTED
    entry = await ledger.get(message.id)
    assert entry is not None
    assert (entry.state, entry.attempts) == (SendState.PENDING, 1), "nothing was sent: a retry is safe"
    # A worker that is always too late gives up after max_attempts, still without a call.
    async with asyncio.timeout(2):
        final = await pipeline.run(message)
    assert (final.state, final.result.error_code) == (SendState.FAILED, ConnectorErrorCodes.NOT_ATTEMPTED)
    assert connector.calls == []


# -- I3: in doubt is never resent before reconciliation ------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


async def test_an_expired_lease_is_never_resent_without_resolve(connector: RecordingConnector) -> None:
    clock = FakeClock()
    ledger = MemoryLedger(clock=clock)
    message = sms("+15550000002")
    await _added(ledger, message)
    crashed = await ledger.claim(message.id, lease=60.0, request_timeout=10.0)  # a worker that died
    assert isinstance(crashed, Claim)
    clock.now += 61
    pipeline = _pipeline(connector, ledger, in_doubt="probe_then_resend")  # probe: "unsupported"
    attempt = await pipeline.run(message)
    assert connector.calls == []
    assert attempt.state is SendState.UNKNOWN
    assert attempt.result.error is not None
    assert attempt.result.error.outcome is FailureOutcome.MAY_HAVE_BEEN_SENT
    assert await _state(ledger, message.id) is SendState.UNKNOWN
    assert len(connector.probes) == 1, "the provider was asked, and could not tell"
    assert (await pipeline.run(message)).state is SendState.UNKNOWN
    assert connector.calls == []
    assert await ledger.resolve(message.id, provider_id=None)  # an operator proved it absent
    assert (await pipeline.run(message)).state is SendState.ACCEPTED
    assert connector.call_count(message.id) == 1


def _skew_worker_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """The worker's wall clock runs ``seconds`` ahead of the ledger's (the ledger keeps its own)."""
    monkeypatch.setattr(
        "messaging_core.campaigns.pipeline.utc_now", lambda: datetime.now(UTC) + timedelta(seconds=seconds)
    )


@pytest.mark.parametrize("skew", [0.0, 30.0])
async def test_a_live_lease_elsewhere_is_waited_for(
    connector: RecordingConnector, monkeypatch: pytest.MonkeyPatch, skew: float
) -> None:
    """For the time the ledger says is left: a worker clock ahead by ``skew`` must not shorten the wait."""
    ledger = MemoryLedger()
    message = sms("+15550000003")
    await _added(ledger, message)
    other = await ledger.claim(message.id, lease=30.0, request_timeout=5.0)
    assert isinstance(other, Claim)
    _skew_worker_clock(monkeypatch, skew)
    attempt = await _pipeline(connector, ledger, lease=300.0, request_timeout=30.0).process(message)
    assert connector.calls == []
    assert attempt.state is SendState.SUBMITTING
    assert attempt.retry_after is not None
    assert 29 < attempt.retry_after <= 30


# -- I4: fenced result writes ------------------------------------------------------------------------------------


async def test_a_callback_that_settles_first_wins_over_a_lost_answer(connector: RecordingConnector) -> None:
    ledger = MemoryLedger()
    message = sms("+15550000004")
    await _added(ledger, message)
    connector.script["+15550000004"] = ["callback_first"]
    attempt = await _pipeline(connector, ledger).run(message)
    entry = await ledger.get(message.id)
    assert entry is not None
    assert (entry.state, entry.provider_id) == (SendState.ACCEPTED, connector.created[message.id][0])
    assert attempt.state is SendState.ACCEPTED, "the stale UNKNOWN write was refused"
    assert connector.call_count(message.id) == 1


# -- I5: accepted and failed are final ---------------------------------------------------------------------------


async def test_final_messages_are_never_sent_again(connector: RecordingConnector) -> None:
    ledger = MemoryLedger()
    accepted, failed = sms("+15550000005"), sms("+15550000006")
    await _added(ledger, accepted, failed)
    connector.script["+15550000006"] = ["invalid"]
    pipeline = _pipeline(connector, ledger)
    first = [await pipeline.run(m) for m in (accepted, failed)]
    again = [await pipeline.run(m) for m in (accepted, failed)]
    assert [a.state for a in first + again] == [SendState.ACCEPTED, SendState.FAILED] * 2
    assert len(connector.calls) == 2
    assert again[0].result.value is not None
    assert again[0].result.value.remote_message_id == connector.created[accepted.id][0]
    assert again[1].result.error_code == ConnectorErrorCodes.INVALID_RECIPIENT
    assert not again[0].called_provider


# -- retries ---------------------------------------------------------------------------------------------------


async def test_retryable_failures_are_retried_until_accepted(connector: RecordingConnector) -> None:
    ledger = MemoryLedger()
    message = sms("+15550000007")
    await _added(ledger, message)
    connector.script["+15550000007"] = ["rate_limited", "rate_limited"]
    attempt = await _pipeline(connector, ledger).run(message)
    assert attempt.state is SendState.ACCEPTED
    assert connector.call_count(message.id) == 3
    entry = await ledger.get(message.id)
    assert entry is not None
    assert (entry.attempts, entry.fence) == (3, 3)


async def test_retries_stop_at_max_attempts(connector: RecordingConnector) -> None:
    ledger = MemoryLedger()
    message = sms("+15550000008")
    await _added(ledger, message)
    connector.script["+15550000008"] = ["rate_limited"] * 5
    attempt = await _pipeline(connector, ledger, max_attempts=3).run(message)
    assert attempt.state is SendState.FAILED
    assert attempt.result.error_code == ConnectorErrorCodes.RATE_LIMITED
    assert connector.call_count(message.id) == 3


async def test_backoff_doubles_up_to_the_cap(connector: RecordingConnector) -> None:
    clock = FakeClock()
    ledger = MemoryLedger(clock=clock)
    message = sms("+15550000009")
    await _added(ledger, message)
    connector.script["+15550000009"] = ["rate_limited"] * 3
    pipeline = _pipeline(connector, ledger, backoff=2.0, max_backoff=5.0)
    delays = []
    for _ in range(3):
        attempt = await pipeline.process(message)
        assert attempt.called_provider
        assert attempt.retry_after is not None
        delays.append(attempt.retry_after)
        clock.now += attempt.retry_after
    assert delays == [2.0, 4.0, 5.0]


# -- in doubt: hold, probe, resend ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "probe", "state", "calls", "created"),
    [
        ("created_no_answer", "truthful", SendState.ACCEPTED, 1, 1),  # one candidate: it was sent
        ("lost_before", "truthful", SendState.ACCEPTED, 2, 1),  # none, twice: resent once
        ("created_no_answer", "several", SendState.UNKNOWN, 1, 1),  # ambiguous: held
        ("created_no_answer", "unsupported", SendState.UNKNOWN, 1, 1),  # cannot tell: held
    ],
)
async def test_probe_then_resend(
    connector: RecordingConnector, word: str, probe: str, state: SendState, calls: int, created: int
) -> None:
    ledger = MemoryLedger()
    message = sms("+15550000010")
    await _added(ledger, message)
    connector.script["+15550000010"] = [word]
    connector.probe = probe
    attempt = await _pipeline(connector, ledger, in_doubt="probe_then_resend").run(message)
    assert attempt.state is state
    assert connector.call_count(message.id) == calls
    assert len(connector.created.get(message.id, [])) == created
    entry = await ledger.get(message.id)
    assert entry is not None
    assert entry.reconciled == (probe == "truthful")
    # Absent: one probe right away (found nothing), then two after the quiet period (the lease's end).
    assert len(connector.probes) == (3 if word == "lost_before" else 1)


async def test_a_stale_absent_verdict_does_not_reopen_a_later_attempt(connector: RecordingConnector) -> None:
    """Worker A probes; meanwhile worker B proves the message absent and sends it again, in doubt
    once more (the provider's list does not show it yet). A's "absent" must not reopen B's attempt."""
    ledger = MemoryLedger()
    message = sms("+15550000012")
    await _added(ledger, message)
    connector.script["+15550000012"] = ["lost_before", "lost_before"]
    connector.probe = "truthful"
    worker_a = _pipeline(connector, ledger, in_doubt="probe_then_resend")
    worker_b = _pipeline(connector, ledger, in_doubt="probe_then_resend")
    assert (await worker_a.process(message)).state is SendState.UNKNOWN
    await asyncio.sleep(1.05)  # A's lease (1 s) is over: "absent" may now be concluded
    probe = connector.find_sent
    interleaved = False

    async def b_acts_during_a_probe(probed: Message, since: datetime) -> list[str] | None:
        nonlocal interleaved
        found = await probe(probed, since)
        if not interleaved:
            interleaved = True
            reopened = await worker_b.reconcile(message)
            assert reopened is not None
            assert reopened.state is SendState.PENDING
            assert (await worker_b.process(message)).state is SendState.UNKNOWN
        return found

    connector.find_sent = b_acts_during_a_probe  # type: ignore[method-assign]
    verdict = await worker_a.reconcile(message)
    assert verdict is not None
    assert verdict.state is SendState.UNKNOWN, "B's attempt stays in doubt"
    assert await _state(ledger, message.id) is SendState.UNKNOWN
    assert connector.call_count(message.id) == 2
    assert not isinstance(await ledger.claim(message.id, lease=30.0, request_timeout=5.0), Claim)


class SlowConnector(RecordingConnector):
    """A provider call that takes ``delay`` seconds (a connector queueing or backing off inside)."""

    delay = 5.0
    cancelled = False

    async def _send_message(self, message: Message) -> ConnectorResult[SendResult]:
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return await super()._send_message(message)


async def test_a_call_is_cut_off_when_its_lease_ends() -> None:
    registry = ChannelRegistry()
    connector = SlowConnector(registry.schema("memory"), {"Mailbox": uuid.uuid4().hex}, plugins=registry.host)
    assert (await connector.initialize()).is_success
    ledger = MemoryLedger()
    message = sms("+15550000013")
    await _added(ledger, message)
    pipeline = _pipeline(connector, ledger, lease=0.4, request_timeout=0.2)
    started = time.monotonic()
    async with asyncio.timeout(3):
        attempt = await pipeline.process(message)
    assert 0.3 <= time.monotonic() - started < 1.5
    assert connector.cancelled
    assert connector.calls == []  # cut off before the (slow) provider call completed: nothing created
    assert attempt.state is SendState.UNKNOWN  # the request may have left: in doubt, never resent blindly
    assert attempt.result.error is not None
    assert attempt.result.error.outcome is FailureOutcome.MAY_HAVE_BEEN_SENT
    await connector.shutdown()


async def test_reconciliation_loops_stop_at_max_attempts(connector: RecordingConnector) -> None:
    """Lost again and again, proven absent each time: resent at most max_attempts times in all, then FAILED."""
    ledger = MemoryLedger()
    message = sms("+15550000017")
    await _added(ledger, message)
    connector.script["+15550000017"] = ["lost_before"] * 10
    connector.probe = "truthful"
    async with asyncio.timeout(5):
        attempt = await _pipeline(connector, ledger, in_doubt="probe_then_resend", max_attempts=3).run(message)
    assert (attempt.state, attempt.result.error_code) == (SendState.FAILED, ConnectorErrorCodes.NOT_ATTEMPTED)
    assert connector.call_count(message.id) == 3
    entry = await ledger.get(message.id)
    assert entry is not None
    assert (entry.state, entry.attempts) == (SendState.FAILED, 4)  # the fourth claim sent nothing


async def test_hold_never_probes(connector: RecordingConnector) -> None:
    ledger = MemoryLedger()
    message = sms("+15550000011")
    await _added(ledger, message)
    connector.script["+15550000011"] = ["lost_before"]
    connector.probe = "truthful"
    attempt = await _pipeline(connector, ledger, in_doubt="hold").run(message)
    assert attempt.state is SendState.UNKNOWN
    assert connector.probes == []
    assert connector.call_count(message.id) == 1


async def test_a_status_callback_settles_a_message_in_doubt(connector: RecordingConnector) -> None:
    ledger, store = MemoryLedger(), MemoryStatusStore()
    message = sms("+15550000012")
    await _added(ledger, message)
    connector.script["+15550000012"] = ["created_no_answer"]
    pipeline = _pipeline(connector, ledger, status_store=store)
    assert (await pipeline.run(message)).state is SendState.UNKNOWN
    sid = connector.created[message.id][0]
    update = StatusUpdate(message.id, MessageStatus.SENT, remote_message_id=sid)
    assert await pipeline.status_received(update, idempotency_key="token-1")
    entry = await ledger.get(message.id)
    assert entry is not None
    assert (entry.state, entry.provider_id, entry.reconciled) == (SendState.ACCEPTED, sid, True)
    assert await store.get(message.id) is MessageStatus.SENT
    assert not await pipeline.status_received(update, idempotency_key="token-1"), "a replay changes nothing"
    assert (await pipeline.run(message)).state is SendState.ACCEPTED
    assert connector.call_count(message.id) == 1


async def test_a_status_without_the_provider_id_proves_nothing(connector: RecordingConnector) -> None:
    ledger = MemoryLedger()
    message = sms("+15550000013")
    await _added(ledger, message)
    connector.script["+15550000013"] = ["created_no_answer"]
    pipeline = _pipeline(connector, ledger)
    await pipeline.run(message)
    assert not await pipeline.status_received(StatusUpdate(message.id, MessageStatus.SENT))
    assert await _state(ledger, message.id) is SendState.UNKNOWN


# -- pacing ------------------------------------------------------------------------------------------------------


class RecordingLimiter:
    def __init__(self, answer: float | None = 0.0) -> None:
        self.answer = answer
        self.calls: list[tuple[str, float, float | None]] = []
        self.tokens: list[str | None] = []

    async def reserve(
        self, key: str, cost: float = 1.0, *, max_wait: float | None = None, token: str | None = None
    ) -> float | None:
        self.calls.append((key, cost, max_wait))
        self.tokens.append(token)
        return self.answer


class ThreeSegments(RecordingConnector):
    def send_cost(self, message: Message) -> int:
        return 3


async def test_pace_by_sender_at_the_message_cost_before_the_claim() -> None:
    registry = ChannelRegistry()
    connector = ThreeSegments(registry.schema("memory"), {"Mailbox": uuid.uuid4().hex}, plugins=registry.host)
    await connector.initialize()
    ledger, limiter = MemoryLedger(), RecordingLimiter()
    message = sms("+15550000014")
    await _added(ledger, message)
    attempt = await _pipeline(connector, ledger, limiter=limiter, max_wait=2.0).process(message)
    assert attempt.state is SendState.ACCEPTED
    assert limiter.calls == [(SENDER, 3, 2.0)]
    assert limiter.tokens == [message.id]  # booked under the message id: a second pass shares the slot
    await connector.shutdown()


async def test_a_pace_beyond_max_wait_defers_without_claiming(connector: RecordingConnector) -> None:
    ledger = MemoryLedger()
    message = sms("+15550000015")
    await _added(ledger, message)
    attempt = await _pipeline(connector, ledger, limiter=RecordingLimiter(None), max_wait=1.5).process(message)
    assert (attempt.state, attempt.retry_after) == (SendState.PENDING, 1.5)
    assert attempt.result.error_code == ConnectorErrorCodes.NOT_ATTEMPTED
    entry = await ledger.get(message.id)
    assert entry is not None
    assert (entry.state, entry.attempts) == (SendState.PENDING, 0), "nothing was claimed"
    assert connector.calls == []


@pytest.mark.parametrize("limiter_kind", ["gives back", "keeps"])
async def test_a_refused_claim_gives_its_pace_slot_back(connector: RecordingConnector, limiter_kind: str) -> None:
    """Another worker holds the message: this pass sent nothing, so the next message takes its slot."""
    ledger = MemoryLedger()
    held, following = sms("+15550000017"), sms("+15550000018")
    await _added(ledger, held, following)
    assert isinstance(await ledger.claim(held.id, lease=60.0, request_timeout=5.0), Claim)  # another worker's lease
    limiter = MemoryRateLimiter(1.0)
    paced = limiter if limiter_kind == "gives back" else WithoutRelease(limiter)
    attempt = await _pipeline(connector, ledger, limiter=paced).process(held)
    assert attempt.state is SendState.SUBMITTING
    assert connector.calls == []
    wait = await limiter.reserve(SENDER, token=following.id)
    if limiter_kind == "gives back":
        assert wait == 0.0, "the refused pass's slot is free for the next message"
    else:  # a limiter without ``release`` keeps the slot, as before
        assert wait is not None
        assert wait > 0.9


class WithoutRelease:
    """A limiter written before ``RateLimiter.release``: ``reserve`` only."""

    def __init__(self, limiter: MemoryRateLimiter) -> None:
        self.limiter = limiter

    async def reserve(
        self, key: str, cost: float = 1.0, *, max_wait: float | None = None, token: str | None = None
    ) -> float | None:
        return await self.limiter.reserve(key, cost, max_wait=max_wait, token=token)


async def test_a_cancellation_before_the_claim_sends_nothing(connector: RecordingConnector) -> None:
    ledger = MemoryLedger()
    message = sms("+15550000016")
    await _added(ledger, message)
    await ledger.cancel("c")
    cancel = asyncio.Event()
    cancel.set()
    attempt = await _pipeline(connector, ledger).run(message, cancel=cancel)
    assert attempt.state is SendState.CANCELLED
    assert attempt.result.error_code == ConnectorErrorCodes.NOT_ATTEMPTED
    assert connector.calls == []


# -- every send path goes through the connector's one seam ------------------------------------------------------


async def test_every_send_path_makes_one_attempt_and_fires_message_sent_once(
    connector: RecordingConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """send_message, send_batch, send_stream and the campaign pipeline: one ``attempt``, one hook, per message."""
    attempts: Counter[str] = Counter()
    original = connector.attempt

    async def counted(message: Message, *, deadline: float | None = None) -> ConnectorResult[SendResult]:
        attempts[message.id] += 1
        return await original(message, deadline=deadline)

    monkeypatch.setattr(connector, "attempt", counted)
    recorder = HookRecorder()
    connector.plugins.register(recorder)
    single, batched, streamed, campaign = (
        [sms("+15550000900")],
        [sms(f"+1555000091{i}") for i in range(3)],
        [sms(f"+1555000092{i}") for i in range(3)],
        [sms("+15550000930"), sms("+15550000931")],
    )
    connector.script["+15550000931"] = ["invalid"]
    assert (await connector.send_message(single[0])).is_success
    assert (await connector.send_batch(batched)).is_complete_success
    assert len([m async for m, _ in connector.send_stream(streamed)]) == 3
    ledger = MemoryLedger()
    connector.ledger = ledger
    await _added(ledger, *campaign)
    for message in campaign:
        await _pipeline(connector, ledger).run(message)
    everything = [m.id for m in single + batched + streamed + campaign]
    assert attempts == Counter(everything)
    sent_hooks = Counter(call.arguments["message"].id for call in recorder.named("message_sent"))
    assert sent_hooks == Counter(everything)


async def test_send_batch_pace_is_batch_wide(connector: RecordingConnector) -> None:
    messages = [sms(f"+1555000{i:04d}") for i in range(6)]
    start = time.monotonic()
    result = await connector.send_batch(messages, concurrency=6, messages_per_second=40)
    elapsed = time.monotonic() - start
    assert result.is_complete_success
    assert elapsed >= 5 / 40 - 0.01, "six sends at 40/s take at least five intervals"


def test_pipeline_arguments_are_checked(connector: RecordingConnector) -> None:
    with pytest.raises(ValueError, match="lease"):
        SendPipeline(connector, ledger=MemoryLedger(), lease=10.0, request_timeout=10.0)
    with pytest.raises(ValueError, match="in_doubt"):
        SendPipeline(connector, ledger=MemoryLedger(), in_doubt="resend")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_attempts"):
        SendPipeline(connector, ledger=MemoryLedger(), max_attempts=0)


# -- issue #12: the probe holds whenever it is not sure ----------------------------------------------------


async def test_two_identical_messages_in_doubt_are_both_held(connector: RecordingConnector) -> None:
    """One was created, one was not; the list cannot tell them apart: neither is taken as sent."""
    ledger = MemoryLedger()
    created, lost = sms("+15550000040", "same text"), sms("+15550000040", "same text")
    await _added(ledger, created, lost)
    connector.script["+15550000040"] = ["created_no_answer", "lost_before"]
    connector.probe = "by_content"
    pipeline = _pipeline(connector, ledger, in_doubt="probe_then_resend")
    for message in (created, lost):
        assert (await pipeline.process(message)).state is SendState.UNKNOWN
    for message in (lost, created):
        assert await pipeline.reconcile(message) is None, "held: the one candidate could be either"
        entry = await ledger.get(message.id)
        assert entry is not None
        assert (entry.state, entry.provider_id) == (SendState.UNKNOWN, None)
    assert connector.call_count(lost.id) == 1  # never resent, never recorded as sent


async def test_a_provider_id_recorded_for_another_message_is_never_taken(connector: RecordingConnector) -> None:
    """The same text to the same number, sent before: its id is not proof that the lost one was sent."""
    ledger = MemoryLedger()
    earlier, lost = sms("+15550000041", "same text"), sms("+15550000041", "same text")
    await _added(ledger, earlier, lost)
    connector.script["+15550000041"] = ["ok", "lost_before", "ok"]
    connector.probe = "by_content"
    pipeline = _pipeline(connector, ledger, in_doubt="probe_then_resend")
    assert (await pipeline.run(earlier)).state is SendState.ACCEPTED
    attempt = await pipeline.run(lost)
    assert attempt.state is SendState.ACCEPTED
    entries = [await ledger.get(m.id) for m in (earlier, lost)]
    assert entries[0] is not None
    assert entries[1] is not None
    assert entries[1].provider_id != entries[0].provider_id
    assert len(connector.created[lost.id]) == 1, "sent again once, after the quiet period"
    assert await ledger.owner(entries[0].provider_id or "") == earlier.id


@pytest.mark.parametrize("skew", [0.0, 30.0])
async def test_absent_is_concluded_only_after_the_quiet_period(
    connector: RecordingConnector, monkeypatch: pytest.MonkeyPatch, skew: float
) -> None:
    """The quiet period is the ledger's: a worker clock running ahead (``skew``) must not end it early."""
    ledger = MemoryLedger()
    message = sms("+15550000042")
    await _added(ledger, message)
    connector.script["+15550000042"] = ["lost_before"]
    connector.probe = "truthful"
    pipeline = _pipeline(connector, ledger, in_doubt="probe_then_resend", absent_after=0.4)
    assert (await pipeline.process(message)).state is SendState.UNKNOWN
    _skew_worker_clock(monkeypatch, skew)
    waiting = await pipeline.reconcile(message)
    assert waiting is not None
    assert waiting.state is SendState.UNKNOWN
    assert waiting.retry_after is not None
    assert 0.4 < waiting.retry_after <= 1.0 + 0.4, "the lease's end (1 s) plus absent_after"
    assert connector.call_count(message.id) == 1
    await asyncio.sleep(waiting.retry_after)
    proven = await pipeline.reconcile(message)
    assert proven is not None
    assert proven.state is SendState.PENDING
    # One probe before the quiet period ended, then two empty probes after it.
    assert len(connector.probes) == 3


async def test_a_retry_hint_is_the_ledgers_whatever_the_worker_clock_says(
    connector: RecordingConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker 30 s ahead once spun 41 passes in 4 s, each booking a pace slot: its hint was ~0."""
    clock = FakeClock()
    ledger = MemoryLedger(clock=clock)
    message = sms("+15550000046")
    await _added(ledger, message)
    connector.script["+15550000046"] = ["rate_limited"]
    pipeline = _pipeline(connector, ledger, backoff=20.0, max_backoff=20.0)
    assert (await pipeline.process(message)).retry_after == 20.0
    _skew_worker_clock(monkeypatch, 30.0)
    passes = 0
    while connector.call_count(message.id) < 2 and passes < 100:
        attempt = await pipeline.process(message)
        passes += 1
        assert attempt.retry_after is not None or attempt.state is SendState.ACCEPTED
        clock.now += min(attempt.retry_after or 0.0, 5.0)  # a worker sleeps through the hint (5 s at most)
    assert attempt.state is SendState.ACCEPTED
    assert passes == 5, "four waits of 5 s on the ledger's clock, then the retry"


async def test_no_request_is_written_once_the_deadline_has_passed(
    connector: RecordingConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process frozen between the pipeline's deadline check and the call, thawed after the deadline."""
    ledger = MemoryLedger()
    message = sms("+15550000043")
    await _added(ledger, message)

    class Thawed:
        @staticmethod
        def monotonic() -> float:
            return time.monotonic() + 3600.0  # what the clock says in the connector, after the thaw

    monkeypatch.setattr("messaging_core.connector.time", Thawed)
    attempt = await _pipeline(connector, ledger).process(message)
    assert connector.calls == []
    assert attempt.result.error_code == ConnectorErrorCodes.NOT_ATTEMPTED
    assert attempt.state is SendState.PENDING  # nothing was sent: a later pass may send it


async def test_an_outcome_is_recorded_once_the_ledger_answers_again(connector: RecordingConnector) -> None:
    class Flaky(MemoryLedger):
        failures = 2

        async def record(self, claim: Claim, outcome: SendOutcome) -> bool:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("database restarting")
            return await super().record(claim, outcome)

    ledger = Flaky()
    message = sms("+15550000044")
    await _added(ledger, message)
    attempt = await _pipeline(connector, ledger).process(message)
    assert attempt.state is SendState.ACCEPTED
    entry = await ledger.get(message.id)
    assert entry is not None
    assert (entry.state, entry.provider_id) == (SendState.ACCEPTED, connector.created[message.id][0])


async def test_an_outcome_that_cannot_be_recorded_is_logged_for_an_operator(
    connector: RecordingConnector, caplog: pytest.LogCaptureFixture
) -> None:
    class Down(MemoryLedger):
        async def record(self, claim: Claim, outcome: SendOutcome) -> bool:
            raise ConnectionError("database down")

    ledger = Down()
    message = sms("+15550000045")
    await _added(ledger, message)
    with pytest.raises(ConnectionError):
        await _pipeline(connector, ledger, lease=0.6, request_timeout=0.5).process(message)
    (line,) = [r.getMessage() for r in caplog.records if "NOT RECORDED" in r.getMessage()]
    assert message.id in line
    assert connector.created[message.id][0] in line  # the provider id an operator settles it with


async def test_a_claim_whose_answer_was_lost_is_given_back(connector: RecordingConnector) -> None:
    """The ledger committed the claim, then the connection dropped (a database restart): nothing was sent."""

    class LostAnswer(MemoryLedger):
        lose = 1

        async def claim(
            self, message_id: str, *, lease: float, request_timeout: float, token: str | None = None
        ) -> Claim | LedgerEntry:
            claim = await super().claim(message_id, lease=lease, request_timeout=request_timeout, token=token)
            if self.lose:
                self.lose -= 1
                raise ConnectionError("server closed the connection unexpectedly")
            return claim

    ledger = LostAnswer()
    message = sms("+15550000046")
    await _added(ledger, message)
    with pytest.raises(ConnectionError):
        await _pipeline(connector, ledger).process(message)
    entry = await ledger.get(message.id)
    assert entry is not None
    assert (entry.state, entry.attempts) == (SendState.PENDING, 0), "given back, not left to expire into UNKNOWN"
    assert connector.calls == []
    attempt = await _pipeline(connector, ledger).process(message)
    assert attempt.state is SendState.ACCEPTED
    assert connector.call_count(message.id) == 1
