"""``SendPipeline``: the ledger invariants I1–I5, retries, in-doubt reconciliation, pacing.

A recording connector (the memory channel with scripted provider answers) notes the ledger entry
at the moment of every provider call, and which messages its "provider" created, so each test can
check that nothing was sent without a claim and nothing was created twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import types
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
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
from messaging_core import connector as connector_module
from messaging_core.campaigns import (
    Claim,
    InProcessDispatcher,
    LedgerEntry,
    MemoryLedger,
    MemoryRateLimiter,
    MemoryStatusStore,
    SendAttempt,
    SendLedger,
    SendOutcome,
    SendPipeline,
    SendState,
    add_messages,
)
from messaging_core.campaigns import memory as memory_module
from messaging_core.campaigns import pipeline as pipeline_module
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


async def _error_code(ledger: SendLedger, message_id: str) -> str | None:
    entry = await ledger.get(message_id)
    assert entry is not None
    return entry.error_code


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


class RecordsNothing(MemoryLedger):
    """A ledger whose writes of outcomes all fail (a database that went down after the claim)."""

    async def record(self, claim: Claim, outcome: SendOutcome) -> bool:
        raise ConnectionError("database down")


class ClaimAnswerLost(MemoryLedger):
    """A ledger that commits every claim, then loses the answer (the connection dropped)."""

    async def claim(
        self, message_id: str, *, lease: float, request_timeout: float, token: str | None = None
    ) -> Claim | LedgerEntry:
        await super().claim(message_id, lease=lease, request_timeout=request_timeout, token=token)
        raise ConnectionError("server closed the connection unexpectedly")


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
    assert attempt.result.error is not None
    assert attempt.result.error.message == "the claim's deadline passed before this message was sent"
    entry = await ledger.get(message.id)
    assert entry is not None
    assert (entry.state, entry.attempts) == (SendState.PENDING, 1), "nothing was sent: a retry is safe"
    # A worker that is always too late gives up after max_attempts, still without a call.
    async with asyncio.timeout(2):
        final = await pipeline.run(message)
    assert (final.state, final.result.error_code) == (SendState.FAILED, ConnectorErrorCodes.NOT_ATTEMPTED)
    assert final.result.error is not None
    assert final.result.error.message == "the claim's deadline passed before this message was sent"
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


async def test_a_callback_that_settles_first_wins_over_a_lost_answer(
    connector: RecordingConnector, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = MemoryLedger()
    message = sms("+15550000004")
    await _added(ledger, message)
    connector.script["+15550000004"] = ["callback_first"]
    attempt = await _pipeline(connector, ledger).run(message)
    entry = await ledger.get(message.id)
    assert entry is not None
    assert (entry.state, entry.provider_id) == (SendState.ACCEPTED, connector.created[message.id][0])
    assert attempt.state is SendState.ACCEPTED, "the stale UNKNOWN write was refused"
    assert (attempt.message_id, attempt.called_provider) == (message.id, True)
    assert attempt.result.error_code == ConnectorErrorCodes.OUTCOME_UNKNOWN, "our answer is kept"
    assert connector.call_count(message.id) == 1
    not_recorded = f"send {message.id}: result not recorded (the claim's fence was lost)"
    assert not_recorded in [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


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
    pipeline = _pipeline(connector, ledger)
    first = await pipeline.process(message)
    assert (first.message_id, first.state, first.called_provider) == (message.id, SendState.PENDING, True)
    waiting = await ledger.get(message.id)
    assert waiting is not None
    assert waiting.error_code == ConnectorErrorCodes.RATE_LIMITED, "the retry keeps the reason"
    attempt = await pipeline.run(message)
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
    assert await _error_code(ledger, message.id) == ConnectorErrorCodes.RATE_LIMITED
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


async def test_a_call_is_cut_off_when_its_lease_ends(caplog: pytest.LogCaptureFixture) -> None:
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
    assert attempt.result.error_code == ConnectorErrorCodes.SEND_MESSAGE_ERROR
    assert attempt.result.error.message == (
        "the provider call outlasted the claim's lease and was cut off; the message may have been sent"
    )
    cut_off = f"send {message.id}: still running when its lease ended; cut off, outcome unknown"
    assert cut_off in [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
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
    assert attempt.result.error is not None
    assert attempt.result.error.message == "all 3 attempts were used before this message was sent"
    assert connector.call_count(message.id) == 3
    entry = await ledger.get(message.id)
    assert entry is not None
    assert (entry.state, entry.attempts) == (SendState.FAILED, 4)  # the fourth claim sent nothing
    assert entry.error_code == ConnectorErrorCodes.NOT_ATTEMPTED


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
    assert (attempt.message_id, attempt.state, attempt.retry_after) == (message.id, SendState.PENDING, 1.5)
    assert attempt.result.error_code == ConnectorErrorCodes.NOT_ATTEMPTED
    assert attempt.result.error is not None
    assert attempt.result.error.message == (
        "the sender's pace would have needed too long a wait before this message was sent"
    )
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
    calls = {call.arguments["message"].id: call.arguments for call in recorder.named("message_sent")}
    assert all(arguments["connector"] is connector for arguments in calls.values())
    assert calls[campaign[0].id]["result"].is_success
    assert calls[campaign[1].id]["result"].error_code == ConnectorErrorCodes.INVALID_RECIPIENT


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


async def test_two_identical_messages_in_doubt_are_both_held(
    connector: RecordingConnector, caplog: pytest.LogCaptureFixture
) -> None:
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
    held = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "held" in r.getMessage()]
    assert held == [f"send {m.id}: a probe candidate could be another message in doubt; held" for m in (lost, created)]


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


async def test_an_outcome_is_recorded_once_the_ledger_answers_again(
    connector: RecordingConnector, caplog: pytest.LogCaptureFixture
) -> None:
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
    retries = [r.getMessage() for r in caplog.records if "recording the outcome failed" in r.getMessage()]
    assert retries == [
        f"send {message.id}: recording the outcome failed; trying again in 0.05 s",
        f"send {message.id}: recording the outcome failed; trying again in 0.10 s",
    ]
    entry = await ledger.get(message.id)
    assert entry is not None
    assert (entry.state, entry.provider_id) == (SendState.ACCEPTED, connector.created[message.id][0])


async def test_an_outcome_that_cannot_be_recorded_is_logged_for_an_operator(
    connector: RecordingConnector, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = RecordsNothing()
    message = sms("+15550000045")
    await _added(ledger, message)
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        await _pipeline(connector, ledger, lease=0.6, request_timeout=0.5).process(message)
    # Tried until one more lease had passed after the claim's lease (2 x 0.6 s from the claim).
    assert time.monotonic() - started >= 0.9
    (line,) = [r.getMessage() for r in caplog.records if "NOT RECORDED" in r.getMessage()]
    sid = connector.created[message.id][0]  # the provider id an operator settles it with
    assert line == (
        f"send {message.id}: the ledger did not answer for a lease after the claim's lease; outcome NOT RECORDED: "
        f"state=accepted provider_id={sid} error_code=None attempt=1 (settle it with ledger.resolve)"
    )


async def test_a_claim_whose_answer_was_lost_is_given_back(
    connector: RecordingConnector, caplog: pytest.LogCaptureFixture
) -> None:
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
    given_back = f"send {message.id}: the claim's answer was lost; given back, nothing was sent"
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [given_back]
    attempt = await _pipeline(connector, ledger).process(message)
    assert attempt.state is SendState.ACCEPTED
    assert connector.call_count(message.id) == 1


# -- issue #18: what mutation testing found untested ----------------------------------------------------------


async def test_reconcile_answers_from_the_ledger_once_the_message_is_out_of_doubt(
    connector: RecordingConnector,
) -> None:
    """Not in doubt (any more): the ledger's answer, without a probe; None for a message it lacks."""
    ledger = MemoryLedger()
    message, unknown_to_the_ledger = sms("+15550000050"), sms("+15550000051")
    await _added(ledger, message)
    connector.probe = "truthful"
    pipeline = _pipeline(connector, ledger, in_doubt="probe_then_resend")
    assert (await pipeline.process(message)).state is SendState.ACCEPTED
    settled = await pipeline.reconcile(message)
    assert settled is not None
    assert settled.state is SendState.ACCEPTED
    assert settled.result.value is not None
    assert settled.result.value.remote_message_id == connector.created[message.id][0]
    assert not settled.called_provider
    assert settled.message_id == message.id
    assert await pipeline.reconcile(unknown_to_the_ledger) is None
    await _added(ledger, unknown_to_the_ledger)
    waiting = await pipeline.reconcile(unknown_to_the_ledger)
    assert waiting is not None
    assert waiting.state is SendState.PENDING
    assert waiting.result.error is not None
    assert waiting.result.error.message == "waiting to be sent before this message was sent"
    assert connector.probes == [], "nothing in doubt: the provider is not asked"


async def test_the_probe_looks_back_from_the_claim_by_probe_skew(connector: RecordingConnector) -> None:
    ledger = MemoryLedger()
    message = sms("+15550000052")
    await _added(ledger, message)
    connector.script["+15550000052"] = ["created_no_answer"]
    connector.probe = "truthful"
    pipeline = _pipeline(connector, ledger, in_doubt="probe_then_resend", probe_skew=42.0)
    assert (await pipeline.process(message)).state is SendState.UNKNOWN
    entry = await ledger.get(message.id)
    assert entry is not None
    assert entry.claimed_at is not None
    reconciled = await pipeline.reconcile(message)
    assert reconciled is not None
    assert reconciled.state is SendState.ACCEPTED
    assert connector.probes == [(message.id, entry.claimed_at - timedelta(seconds=42.0))]


async def test_a_probe_verdict_lands_only_on_the_attempt_it_probed(connector: RecordingConnector) -> None:
    """A's probe finds the first attempt while B, sure it was absent (a lagging list), is sending it again.

    A must not write "accepted" over B's live claim: B's answer is the one the ledger keeps.
    """
    ledger = MemoryLedger()
    message = sms("+15550000053")
    await _added(ledger, message)
    connector.script["+15550000053"] = ["created_no_answer"]
    connector.probe = "truthful"
    worker_a = _pipeline(connector, ledger, in_doubt="probe_then_resend")
    assert (await worker_a.process(message)).state is SendState.UNKNOWN
    probe = connector.find_sent
    b_claim: list[Claim] = []

    async def b_resends_during_the_probe(probed: Message, since: datetime) -> list[str] | None:
        found = await probe(probed, since)
        assert await ledger.resolve(message.id, provider_id=None)  # B: "absent"
        claim = await ledger.claim(message.id, lease=30.0, request_timeout=5.0)  # B calls the provider again
        assert isinstance(claim, Claim)
        b_claim.append(claim)
        return found

    connector.find_sent = b_resends_during_the_probe  # type: ignore[method-assign, assignment]
    verdict = await worker_a.reconcile(message)
    assert verdict is not None
    assert verdict.state is SendState.SUBMITTING, "A's verdict was refused: the row is B's attempt now"
    assert verdict.message_id == message.id
    assert verdict.result.error is not None
    assert verdict.result.error.details["ledger_state"] == "submitting"
    assert await ledger.record(b_claim[0], SendOutcome(SendState.ACCEPTED, provider_id="SM-b"))
    entry = await ledger.get(message.id)
    assert entry is not None
    assert (entry.state, entry.provider_id) == (SendState.ACCEPTED, "SM-b")


@pytest.mark.parametrize(
    ("before", "state"),
    [
        ("not in the ledger", SendState.CANCELLED),
        ("pending", SendState.PENDING),
        ("accepted", SendState.ACCEPTED),
    ],
)
async def test_a_cancelled_pass_reports_the_ledgers_state(
    connector: RecordingConnector, before: str, state: SendState
) -> None:
    """Cancelled before the claim: nothing sent, and the state is what the ledger holds (a cancel
    signal does not cancel the row: the campaign's ``cancel`` does), CANCELLED for a message it lacks."""
    ledger = MemoryLedger()
    message = sms("+15550000054")
    pipeline = _pipeline(connector, ledger, cancel_reason="stopped by the operator")
    if before != "not in the ledger":
        await _added(ledger, message)
    if before == "accepted":
        assert (await pipeline.process(message)).state is SendState.ACCEPTED
    cancel = asyncio.Event()
    cancel.set()
    attempt = await pipeline.process(message, cancel=cancel)
    assert (attempt.message_id, attempt.state) == (message.id, state)
    assert not attempt.called_provider
    assert attempt.result.error_code == ConnectorErrorCodes.NOT_ATTEMPTED
    assert attempt.result.error is not None
    assert attempt.result.error.message == "stopped by the operator before this message was sent"
    assert connector.call_count(message.id) == (1 if before == "accepted" else 0)


class TimestampsOnly(MemoryLedger):
    """A ledger that reports its lease and retry times as timestamps only (no ``lease_left``/``retry_in``)."""

    async def get(self, message_id: str) -> LedgerEntry | None:
        entry = await super().get(message_id)
        return None if entry is None else attrs.evolve(entry, lease_left=None, retry_in=None)

    async def claim(
        self, message_id: str, *, lease: float, request_timeout: float, token: str | None = None
    ) -> Claim | LedgerEntry:
        claim = await super().claim(message_id, lease=lease, request_timeout=request_timeout, token=token)
        return claim if isinstance(claim, Claim) else attrs.evolve(claim, lease_left=None, retry_in=None)


async def test_a_ledger_of_timestamps_only_is_read_against_the_wall_clock(connector: RecordingConnector) -> None:
    """Without the ledger's own count of the time left, the wait is the timestamp against our clock."""
    clock = FakeClock()
    ledger = TimestampsOnly(clock=clock)
    held, retried = sms("+15550000060"), sms("+15550000061")
    await _added(ledger, held, retried)
    assert isinstance(await ledger.claim(held.id, lease=30.0, request_timeout=5.0), Claim)  # another worker's
    connector.script["+15550000061"] = ["rate_limited"]
    pipeline = _pipeline(connector, ledger, lease=300.0, request_timeout=30.0, backoff=20.0)
    submitting = await pipeline.process(held)
    assert (submitting.message_id, submitting.state) == (held.id, SendState.SUBMITTING)
    assert submitting.result.error is not None
    assert submitting.result.error.details["ledger_state"] == "submitting", "the other worker's call, in doubt"
    assert submitting.retry_after is not None
    assert 29 < submitting.retry_after <= 30
    assert (await pipeline.process(retried)).state is SendState.PENDING
    waiting = await pipeline.process(retried)
    assert (waiting.message_id, waiting.state) == (retried.id, SendState.PENDING)
    assert waiting.retry_after is not None
    assert 19 < waiting.retry_after <= 20
    assert waiting.result.error is not None
    assert waiting.result.error.message == "waiting for a retry before this message was sent"
    assert connector.call_count(held.id) == 0


@pytest.mark.parametrize(("skew", "state"), [(0.0, SendState.UNKNOWN), (120.0, SendState.PENDING)])
async def test_the_quiet_period_of_a_ledger_of_timestamps_only(
    connector: RecordingConnector, monkeypatch: pytest.MonkeyPatch, skew: float, state: SendState
) -> None:
    """The lease's end is a timestamp: the quiet period runs from it on our wall clock."""
    clock = FakeClock()
    ledger = TimestampsOnly(clock=clock)
    message = sms("+15550000062")
    await _added(ledger, message)
    assert isinstance(await ledger.claim(message.id, lease=60.0, request_timeout=10.0), Claim)  # a worker that died
    clock.now += 61  # its lease is over on the ledger's clock, and the entry is put in doubt
    connector.probe = "truthful"
    pipeline = _pipeline(connector, ledger, in_doubt="probe_then_resend", absent_after=0.0)
    assert (await pipeline.process(message)).state is SendState.UNKNOWN
    _skew_worker_clock(monkeypatch, skew)  # 120 s on: the lease (until 60 s after the claim) ended 60 s ago
    verdict = await pipeline.reconcile(message)
    assert verdict is not None
    assert verdict.state is state
    assert verdict.message_id == message.id
    if state is SendState.UNKNOWN:
        assert verdict.retry_after is not None
        assert 59 < verdict.retry_after <= 60, "until the lease's end on the wall clock"
        assert verdict.result.error_code == ConnectorErrorCodes.OUTCOME_UNKNOWN
    assert connector.call_count(message.id) == 0


@pytest.mark.parametrize("floor_case", ["a lease about to end", "a ledger that does not say when"])
async def test_hints_have_a_floor_and_keep_what_is_left(connector: RecordingConnector, floor_case: str) -> None:
    clock = FakeClock()

    class NoRetryTime(MemoryLedger):
        async def claim(
            self, message_id: str, *, lease: float, request_timeout: float, token: str | None = None
        ) -> Claim | LedgerEntry:
            return LedgerEntry(message_id, "c", SendState.PENDING, SENDER)  # "not due", without saying when

    ledger = MemoryLedger(clock=clock) if floor_case == "a lease about to end" else NoRetryTime(clock=clock)
    message = sms("+15550000063")
    await _added(ledger, message)
    if floor_case == "a lease about to end":
        assert isinstance(await ledger.claim(message.id, lease=30.0, request_timeout=5.0), Claim)
        clock.now += 29.5
        expected = 0.5  # what is left, not rounded up
    else:
        expected = 0.01  # a floor: a zero would spin
    attempt = await _pipeline(connector, ledger).process(message)
    assert attempt.retry_after == pytest.approx(expected)
    assert connector.calls == []


async def test_a_lease_found_expired_reads_as_in_doubt(connector: RecordingConnector) -> None:
    clock = FakeClock()
    ledger = MemoryLedger(clock=clock)
    message = sms("+15550000064")
    await _added(ledger, message)
    assert isinstance(await ledger.claim(message.id, lease=60.0, request_timeout=10.0), Claim)  # a worker that died
    clock.now += 61
    attempt = await _pipeline(connector, ledger).process(message)
    assert (attempt.message_id, attempt.state) == (message.id, SendState.UNKNOWN)
    assert attempt.result.error is not None
    assert attempt.result.error.details["ledger_state"] == "unknown", "the entry as it is now, not as claimed"
    assert attempt.result.error.message == "the message may have been sent; it is reconciled, never resent blindly"


async def test_a_pass_that_cannot_give_its_slot_back_says_so(
    connector: RecordingConnector, caplog: pytest.LogCaptureFixture
) -> None:
    class ReleaseFails(RecordingLimiter):
        async def release(self, key: str, token: str) -> bool:
            raise ConnectionError("limiter down")

    ledger = MemoryLedger()
    message = sms("+15550000065")
    await _added(ledger, message)
    assert isinstance(await ledger.claim(message.id, lease=60.0, request_timeout=5.0), Claim)  # another worker's
    attempt = await _pipeline(connector, ledger, limiter=ReleaseFails()).process(message)
    assert attempt.state is SendState.SUBMITTING, "the pass goes on: the slot is only lost time"
    (record,) = [r for r in caplog.records if "pace slot" in r.getMessage()]
    assert record.getMessage() == f"send {message.id}: the pace slot could not be given back"
    assert record.levelname == "WARNING"
    assert record.exc_info
    assert record.exc_info[0] is ConnectionError, "with the error that stopped it"


async def test_a_failing_probe_holds_and_is_logged(
    connector: RecordingConnector, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = MemoryLedger()
    message = sms("+15550000066")
    await _added(ledger, message)
    connector.script["+15550000066"] = ["created_no_answer"]
    pipeline = _pipeline(connector, ledger, in_doubt="probe_then_resend")
    assert (await pipeline.process(message)).state is SendState.UNKNOWN

    async def broken(probed: Message, since: datetime) -> list[str] | None:
        raise ConnectionError("provider API down")

    connector.find_sent = broken  # type: ignore[method-assign, assignment]
    assert await pipeline.reconcile(message) is None
    assert await _state(ledger, message.id) is SendState.UNKNOWN
    (record,) = [r for r in caplog.records if "probing" in r.getMessage()]
    assert record.getMessage() == f"send {message.id}: probing the provider failed; the message stays in doubt"
    assert record.exc_info
    assert record.exc_info[0] is ConnectionError


async def test_another_message_in_doubt_to_the_receiver_with_other_content_is_no_twin(
    connector: RecordingConnector,
) -> None:
    ledger = MemoryLedger()
    created, other = sms("+15550000067", "first text"), sms("+15550000067", "second text")
    await _added(ledger, created, other)
    connector.script["+15550000067"] = ["created_no_answer", "lost_before"]
    connector.probe = "by_content"
    pipeline = _pipeline(connector, ledger, in_doubt="probe_then_resend")
    for message in (created, other):
        assert (await pipeline.process(message)).state is SendState.UNKNOWN
    verdict = await pipeline.reconcile(created)
    assert verdict is not None
    assert verdict.state is SendState.ACCEPTED, "the other message in doubt could not be the one listed"


async def test_a_message_without_a_receiver_is_never_matched_by_a_probe(connector: RecordingConnector) -> None:
    clock = FakeClock()
    ledger = MemoryLedger(clock=clock)
    message = Message(uuid.uuid4().hex, Endpoint.phone(SENDER), None, TextContent("hello"))
    await _added(ledger, message)
    assert isinstance(await ledger.claim(message.id, lease=60.0, request_timeout=10.0), Claim)
    clock.now += 61
    assert await ledger.mark_unknown(message.id, 1)
    connector.probe = "truthful"
    connector.created[message.id] = ["SM1"]
    assert await _pipeline(connector, ledger, in_doubt="probe_then_resend").reconcile(message) is None
    assert await _state(ledger, message.id) is SendState.UNKNOWN, "no receiver: no way to rule out a twin"


async def test_a_message_reopened_by_a_collision_has_no_quiet_period(connector: RecordingConnector) -> None:
    """Settled by a status callback without a claim, then in doubt again: it has no lease to wait out."""
    ledger = MemoryLedger()
    reopened, answered = sms("+15550000068"), sms("+15550000069")
    await _added(ledger, reopened, answered)
    assert await ledger.resolve(reopened.id, provider_id="SM1")  # a status callback named it (a probe's word)
    claim = await ledger.claim(answered.id, lease=60.0, request_timeout=10.0)
    assert isinstance(claim, Claim)
    assert await ledger.record(claim, SendOutcome(SendState.ACCEPTED, provider_id="SM1"))  # the provider's answer
    entry = await ledger.get(reopened.id)
    assert entry is not None
    assert (entry.state, entry.claimed_at) == (SendState.UNKNOWN, None)
    connector.probe = "truthful"
    pipeline = _pipeline(connector, ledger, in_doubt="probe_then_resend", absent_after=300.0, probe_skew=0.0)
    before = datetime.now(UTC)
    verdict = await pipeline.reconcile(reopened)
    assert verdict is not None
    assert verdict.state is SendState.PENDING, "two empty probes, no quiet period to wait for"
    assert verdict.message_id == reopened.id
    assert verdict.result.error is not None
    assert verdict.result.error.message == "the provider has no trace of it; resending before this message was sent"
    assert len(connector.probes) == 2
    assert all(since >= before for _, since in connector.probes), "looked back from now: it has no claim"


async def test_a_run_ends_on_an_attempt_in_doubt_that_another_worker_made(connector: RecordingConnector) -> None:
    """A's "absent" is refused (B resent it meanwhile, in doubt again): A's run ends there, in doubt."""
    clock = FakeClock()
    ledger = MemoryLedger(clock=clock)
    message = sms("+15550000070")
    await _added(ledger, message)
    assert isinstance(await ledger.claim(message.id, lease=60.0, request_timeout=10.0), Claim)  # a worker that died
    clock.now += 61
    connector.script["+15550000070"] = ["lost_before"]
    connector.probe = "truthful"
    worker_a = _pipeline(connector, ledger, in_doubt="probe_then_resend")
    worker_b = _pipeline(connector, ledger, in_doubt="probe_then_resend")
    probe = connector.find_sent
    interleaved = False

    async def b_acts_during_a_probe(probed: Message, since: datetime) -> list[str] | None:
        nonlocal interleaved
        if not interleaved:
            interleaved = True
            reopened = await worker_b.reconcile(message)
            assert reopened is not None
            assert reopened.state is SendState.PENDING
            assert (await worker_b.process(message)).state is SendState.UNKNOWN
        return await probe(probed, since)

    connector.find_sent = b_acts_during_a_probe  # type: ignore[method-assign, assignment]
    async with asyncio.timeout(5):
        attempt = await worker_a.run(message)
    assert (attempt.message_id, attempt.state) == (message.id, SendState.UNKNOWN)
    assert attempt.retry_after is None
    assert connector.call_count(message.id) == 1, "B's one call; A sent nothing"


async def test_a_cancel_wakes_a_run_waiting_out_the_quiet_period(connector: RecordingConnector) -> None:
    ledger = MemoryLedger()
    message = sms("+15550000071")
    await _added(ledger, message)
    connector.script["+15550000071"] = ["lost_before"]
    connector.probe = "truthful"
    pipeline = _pipeline(connector, ledger, in_doubt="probe_then_resend", absent_after=60.0)
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, cancel.set)
    async with asyncio.timeout(5):
        attempt = await pipeline.run(message, cancel=cancel)
    assert attempt.state is SendState.UNKNOWN
    assert connector.call_count(message.id) == 1


async def test_status_received_says_whether_anything_changed(connector: RecordingConnector) -> None:
    ledger = MemoryLedger()
    message = sms("+15550000072")
    await _added(ledger, message)
    connector.script["+15550000072"] = ["created_no_answer"]
    pipeline = _pipeline(connector, ledger)  # no status store: only the ledger
    assert (await pipeline.process(message)).state is SendState.UNKNOWN
    assert await pipeline.status_received(StatusUpdate(message.id, MessageStatus.SENT)) is False
    sid = connector.created[message.id][0]
    assert await pipeline.status_received(StatusUpdate(message.id, MessageStatus.SENT, remote_message_id=sid)) is True
    assert await _state(ledger, message.id) is SendState.ACCEPTED


async def test_a_status_callback_delivered_twice_is_applied_once(connector: RecordingConnector) -> None:
    """The idempotency key names the delivery: the same key again is the same callback, whatever it says."""
    store = MemoryStatusStore()
    pipeline = _pipeline(connector, MemoryLedger(), status_store=store)
    assert await pipeline.status_received(StatusUpdate("m1", MessageStatus.SENT), idempotency_key="k1")
    assert not await pipeline.status_received(StatusUpdate("m1", MessageStatus.DELIVERED), idempotency_key="k1")
    assert await store.get("m1") is MessageStatus.SENT


@pytest.mark.parametrize(
    ("first", "again", "existing"),
    [
        ("a", "b", {"a": 2}),  # every id held by another campaign: none is new, none this one's
        ("a", "a", {"a": 2}),
    ],
)
async def test_add_messages_counts_the_ids_another_submission_holds(
    connector: RecordingConnector, first: str, again: str, existing: dict[str, int]
) -> None:
    ledger = MemoryLedger()
    messages = [sms("+15550000073"), sms("+15550000074")]
    assert (await add_messages(ledger, connector, first, messages)).new == 2
    submission = await add_messages(ledger, connector, again, messages)
    assert (submission.new, dict(submission.existing)) == (0, existing)


async def test_add_messages_counts_one_id_the_campaign_holds_already(connector: RecordingConnector) -> None:
    ledger = MemoryLedger()
    held, fresh = sms("+15550000075"), sms("+15550000076")
    await add_messages(ledger, connector, "a", [held])
    submission = await add_messages(ledger, connector, "a", [held, fresh])
    assert (submission.new, dict(submission.existing)) == (1, {"a": 1})


async def test_the_pace_is_paid_at_the_cost_of_each_message() -> None:
    class CostByText(RecordingConnector):
        def send_cost(self, message: Message) -> int:
            assert isinstance(message.content, TextContent)
            return len(message.content.text)

    registry = ChannelRegistry()
    connector = CostByText(registry.schema("memory"), {"Mailbox": uuid.uuid4().hex}, plugins=registry.host)
    await connector.initialize()
    ledger, limiter = MemoryLedger(), RecordingLimiter()
    message = sms("+15550000077", "four")
    await _added(ledger, message)
    await _pipeline(connector, ledger, limiter=limiter).process(message)
    assert limiter.calls == [(SENDER, 4, None)]
    await connector.shutdown()


def test_pipeline_arguments_say_what_is_wrong_and_defaults_hold(connector: RecordingConnector) -> None:
    ledger = MemoryLedger()
    with pytest.raises(ValueError, match=r"^lease \(10.0 s\) must exceed the request timeout \(10.0 s\)$"):
        SendPipeline(connector, ledger=ledger, lease=10.0, request_timeout=10)
    with pytest.raises(ValueError, match=r"^in_doubt must be 'hold' or 'probe_then_resend', not 'resend'$"):
        SendPipeline(connector, ledger=ledger, in_doubt="resend")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^max_attempts must be at least 1$"):
        SendPipeline(connector, ledger=ledger, max_attempts=0)
    with pytest.raises(ValueError, match=r"^defer_beyond must be >= 0$"):
        SendPipeline(connector, ledger=ledger, defer_beyond=-0.5)
    with pytest.raises(ValueError, match=r"^absent_after must be >= 0$"):
        SendPipeline(connector, ledger=ledger, absent_after=-0.5)
    smallest = SendPipeline(
        connector, ledger=ledger, lease=10.5, request_timeout=10, max_attempts=1, defer_beyond=0.0, absent_after=0.0
    )
    assert (smallest.lease, smallest.request_timeout, smallest.max_attempts) == (10.5, 10.0, 1)
    assert (smallest.defer_beyond, smallest.absent_after) == (0.0, 0.0)
    default = SendPipeline(connector, ledger=ledger)
    assert (default.request_timeout, default.lease, default.in_doubt) == (30.0, 300.0, "hold")  # no send_timeout
    assert (default.max_attempts, default.backoff, default.max_backoff) == (5, 1.0, 300.0)
    assert (default.probe_grace, default.probe_skew, default.absent_after) == (5.0, 60.0, 300.0)
    assert default.suppressions is None
    assert default.cancel_reason == "cancelled"

    class Bounded(RecordingConnector):
        def send_timeout(self) -> float | None:
            return 12

    registry = ChannelRegistry()
    bounded = Bounded(registry.schema("memory"), {"Mailbox": uuid.uuid4().hex}, plugins=registry.host)
    assert SendPipeline(bounded, ledger=ledger).request_timeout == 12.0
    assert SendPipeline(bounded, ledger=ledger, request_timeout=7).request_timeout == 7.0
    assert SendPipeline(connector, ledger=ledger, status_store=MemoryStatusStore()).suppressions is not None


def test_pipeline_repr_and_settled_attempts(connector: RecordingConnector) -> None:
    ledger, limiter = MemoryLedger(), MemoryRateLimiter(1.0)
    pipeline = SendPipeline(connector, ledger=ledger, limiter=limiter)
    assert repr(pipeline) == f"<SendPipeline {connector.name!r} ledger={ledger!r} limiter={limiter!r}>"
    result: ConnectorResult[SendResult] = ConnectorResult.failure(ConnectorErrorCodes.NOT_ATTEMPTED, "x")
    settled = {state: SendAttempt("m", result, state).settled for state in SendState}
    assert settled == {
        SendState.PENDING: False,
        SendState.SUBMITTING: False,
        SendState.UNKNOWN: True,
        SendState.ACCEPTED: True,
        SendState.FAILED: True,
        SendState.CANCELLED: True,
    }


async def test_a_paused_pass_waits_for_running(connector: RecordingConnector) -> None:
    ledger = MemoryLedger()
    message = sms("+15550000080")
    await _added(ledger, message)
    running = asyncio.Event()
    passing = asyncio.create_task(_pipeline(connector, ledger).process(message, running=running))
    for _ in range(10):
        await asyncio.sleep(0)
    assert not passing.done()
    assert await _state(ledger, message.id) is SendState.PENDING, "paused: not even claimed"
    running.set()
    assert (await passing).state is SendState.ACCEPTED


@pytest.mark.parametrize(("wait", "deferred"), [(5.0, True), (0.05, False)])
async def test_defer_beyond_returns_at_once_instead_of_sleeping(
    connector: RecordingConnector, wait: float, deferred: bool
) -> None:
    ledger = MemoryLedger()
    message = sms("+15550000081")
    await _added(ledger, message)
    pipeline = _pipeline(connector, ledger, limiter=RecordingLimiter(wait), defer_beyond=1.0)
    started = time.monotonic()
    attempt = await pipeline.process(message)
    entry = await ledger.get(message.id)
    assert entry is not None
    if deferred:
        assert (attempt.state, attempt.deferred, attempt.retry_after) == (SendState.PENDING, True, 5.0)
        assert attempt.message_id == message.id
        assert attempt.result.error is not None
        assert attempt.result.error.message.startswith("the sender's pace would have needed too long a wait")
        assert (entry.state, entry.attempts) == (SendState.PENDING, 0), "nothing claimed"
        assert time.monotonic() - started < 1.0
    else:
        assert (attempt.state, attempt.deferred) == (SendState.ACCEPTED, False)
        assert time.monotonic() - started >= 0.05, "a short pace wait is slept in the pass"
    other = sms("+15550000090")
    await _added(ledger, other)
    at_the_bound = _pipeline(connector, ledger, limiter=RecordingLimiter(0.0), defer_beyond=0.0)
    assert (await at_the_bound.process(other)).state is SendState.ACCEPTED, "a wait of defer_beyond is slept"


@pytest.mark.parametrize("admitted", [True, False])
async def test_admit_is_asked_after_the_pace_right_before_the_claim(
    connector: RecordingConnector, admitted: bool
) -> None:
    ledger = MemoryLedger()
    message = sms("+15550000082")
    await _added(ledger, message)
    limiter = RecordingLimiter(0.0)
    asked: list[int] = []

    async def admit() -> bool:
        asked.append(len(limiter.calls))
        return admitted

    attempt = await _pipeline(connector, ledger, limiter=limiter).process(message, admit=admit)
    assert asked == [1], "asked once, after the pace"
    entry = await ledger.get(message.id)
    assert entry is not None
    if admitted:
        assert attempt.state is SendState.ACCEPTED
    else:
        assert (attempt.message_id, attempt.state, entry.attempts) == (message.id, SendState.PENDING, 0)
        assert attempt.result.error is not None
        assert attempt.result.error.message == "held back before the claim before this message was sent"
        assert connector.calls == []


async def test_the_call_slot_is_held_around_the_claim_and_the_call(connector: RecordingConnector) -> None:
    ledger = MemoryLedger()
    message = sms("+15550000083")
    await _added(ledger, message)
    seen: list[tuple[str, SendState, int]] = []

    @contextlib.asynccontextmanager
    async def slot() -> AsyncIterator[None]:
        seen.append(("enter", await _state(ledger, message.id), len(connector.calls)))
        yield
        seen.append(("exit", await _state(ledger, message.id), len(connector.calls)))

    attempt = await _pipeline(connector, ledger, call_slot=slot).process(message)
    assert attempt.state is SendState.ACCEPTED
    assert seen == [("enter", SendState.PENDING, 0), ("exit", SendState.SUBMITTING, 1)]


async def test_a_pass_frozen_after_its_deadline_check_writes_nothing(
    connector: RecordingConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thawed past the deadline between the pipeline's check and the call: nothing is written."""
    ledger = MemoryLedger()
    message = sms("+15550000084")
    await _added(ledger, message)
    readings: list[float] = []

    class Thawing:
        @staticmethod
        def monotonic() -> float:
            readings.append(time.monotonic())
            return readings[-1] + (3600.0 if len(readings) > 1 else 0.0)  # the first reading is the check

    monkeypatch.setattr("messaging_core.campaigns.pipeline.time", Thawing)
    attempt = await _pipeline(connector, ledger).process(message)
    assert connector.calls == []
    assert (attempt.state, attempt.result.error_code) == (SendState.PENDING, ConnectorErrorCodes.NOT_ATTEMPTED)
    assert attempt.result.error is not None
    assert attempt.result.error.message == "the claim's deadline passed before this message was sent"


async def test_a_suppressed_recipient_fails_without_a_call(connector: RecordingConnector) -> None:
    ledger, store = MemoryLedger(), MemoryStatusStore()
    message = sms("+15550000085")
    await _added(ledger, message)
    await store.suppress("+15550000085", ConnectorErrorCodes.RECIPIENT_UNSUBSCRIBED)
    attempt = await _pipeline(connector, ledger, status_store=store).process(message)
    assert connector.calls == []
    assert (attempt.state, attempt.result.error_code) == (SendState.FAILED, ConnectorErrorCodes.RECIPIENT_UNSUBSCRIBED)
    assert attempt.result.error is not None
    assert attempt.result.error.message == "the recipient is on the suppression list (they opted out); nothing was sent"


async def test_a_run_whose_cancel_is_set_sends_nothing(connector: RecordingConnector) -> None:
    ledger = MemoryLedger()
    message = sms("+15550000086")
    await _added(ledger, message)  # PENDING in the ledger: only the signal says stop
    cancel = asyncio.Event()
    cancel.set()
    attempt = await _pipeline(connector, ledger).run(message, cancel=cancel)
    assert (attempt.state, attempt.called_provider) == (SendState.PENDING, False)
    assert connector.calls == []


async def test_a_cancel_wakes_a_run_waiting_for_a_retry(connector: RecordingConnector) -> None:
    ledger = MemoryLedger()
    message = sms("+15550000087")
    await _added(ledger, message)
    connector.script["+15550000087"] = ["rate_limited"]
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, cancel.set)
    async with asyncio.timeout(5):
        attempt = await _pipeline(connector, ledger, backoff=60.0).run(message, cancel=cancel)
    assert attempt.state is SendState.PENDING
    assert connector.call_count(message.id) == 1


async def test_a_run_sleeps_through_the_retry_hint(connector: RecordingConnector) -> None:
    class Counting(MemoryLedger):
        claims = 0

        async def claim(
            self, message_id: str, *, lease: float, request_timeout: float, token: str | None = None
        ) -> Claim | LedgerEntry:
            self.claims += 1
            return await super().claim(message_id, lease=lease, request_timeout=request_timeout, token=token)

    ledger = Counting()
    message = sms("+15550000088")
    await _added(ledger, message)
    connector.script["+15550000088"] = ["rate_limited"]
    async with asyncio.timeout(5):
        attempt = await _pipeline(connector, ledger, backoff=0.2).run(message)
    assert attempt.state is SendState.ACCEPTED
    assert ledger.claims < 6, "a pass per hint, not a pass per loop turn"


@pytest.mark.parametrize("release_failures", [2, 100])
async def test_a_claim_whose_answer_was_lost_is_given_back_while_the_ledger_recovers(
    connector: RecordingConnector, caplog: pytest.LogCaptureFixture, release_failures: int
) -> None:
    """The give-back is tried again with a backoff for up to a lease, under the claim's own token."""

    class LostAnswerFlakyRelease(ClaimAnswerLost):
        tokens: list[str | None] = []
        released: list[str] = []
        failures = release_failures

        async def claim(
            self, message_id: str, *, lease: float, request_timeout: float, token: str | None = None
        ) -> Claim | LedgerEntry:
            self.tokens.append(token)
            return await super().claim(message_id, lease=lease, request_timeout=request_timeout, token=token)

        async def release(self, message_id: str, token: str) -> bool:
            self.released.append(token)
            if self.failures:
                self.failures -= 1
                raise ConnectionError("still restarting")
            return await super().release(message_id, token)

    ledger = LostAnswerFlakyRelease()
    message = sms("+15550000089")
    await _added(ledger, message)
    with pytest.raises(ConnectionError, match="server closed"):
        await _pipeline(connector, ledger, lease=0.3, request_timeout=0.1).process(message)
    (token,) = ledger.tokens
    assert isinstance(token, str)
    assert len(token) == 32
    assert set(ledger.released) == {token}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if release_failures == 2:
        assert len(ledger.released) == 3
        assert await _state(ledger, message.id) is SendState.PENDING, "given back once the ledger answered"
        assert warnings == [f"send {message.id}: the claim's answer was lost; given back, nothing was sent"]
    else:
        assert 2 <= len(ledger.released) < 10, "tried again with a backoff, for a lease"
        assert await _state(ledger, message.id) is SendState.SUBMITTING, "left to expire into doubt"
        assert warnings == [f"send {message.id}: a claim whose answer was lost could not be given back"]
    assert connector.calls == []


async def test_a_limiter_key_paces_every_message_under_it(connector: RecordingConnector) -> None:
    ledger, limiter = MemoryLedger(), RecordingLimiter()
    message = sms("+15550000091")
    await _added(ledger, message)
    await _pipeline(connector, ledger, limiter=limiter, limiter_key="batch-7").process(message)
    assert limiter.calls == [("batch-7", 1, None)]


async def test_a_status_store_without_a_suppression_list_is_not_asked_for_one(connector: RecordingConnector) -> None:
    class StatusesOnly:
        async def apply(self, update: StatusUpdate, *, idempotency_key: str | None = None) -> bool:
            return True

        async def get(self, message_id: str) -> MessageStatus | None:
            return None

    ledger = MemoryLedger()
    message = sms("+15550000092")
    await _added(ledger, message)
    pipeline = _pipeline(connector, ledger, status_store=StatusesOnly())
    assert pipeline.suppressions is None
    assert (await pipeline.process(message)).state is SendState.ACCEPTED


# -- exact instants and the pace of retries, on a clock the test moves ----------------------------------------------


class SteppedClock:
    """The monotonic clock of the pipeline, the connector and the memory ledger, moved only by the test.

    Each ``asyncio.sleep`` of the pipeline moves it on by its length at once (``sleeps`` lists
    them), so a test can put a deadline on an exact instant, or read the pace of a retry loop,
    without waiting.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await _real_sleep(0)


_real_sleep = asyncio.sleep


@pytest.fixture
def stepped_clock(monkeypatch: pytest.MonkeyPatch) -> SteppedClock:
    clock = SteppedClock()
    its_asyncio = types.SimpleNamespace(**{name: getattr(asyncio, name) for name in asyncio.__all__})
    its_asyncio.sleep = clock.sleep
    monkeypatch.setattr(pipeline_module, "asyncio", its_asyncio)
    for module in (pipeline_module, memory_module, connector_module):
        monkeypatch.setattr(module, "time", clock)
    return clock


@pytest.mark.parametrize("late", [False, True], ids=["at-the-deadline", "one-tick-after"])
async def test_a_claim_allows_the_call_up_to_the_instant_of_its_deadline(
    connector: RecordingConnector, stepped_clock: SteppedClock, late: bool
) -> None:
    """The deadline is the last instant a call may start: the pipeline and the connector agree on it."""
    stepped_clock.now = 100.0

    class DeadlineNow(MemoryLedger):
        async def claim(
            self, message_id: str, *, lease: float, request_timeout: float, token: str | None = None
        ) -> Claim | LedgerEntry:
            claim = await super().claim(message_id, lease=lease, request_timeout=request_timeout, token=token)
            assert isinstance(claim, Claim)
            deadline = math.nextafter(stepped_clock.now, 0.0) if late else stepped_clock.now
            return attrs.evolve(claim, deadline=deadline)

    ledger = DeadlineNow(clock=stepped_clock.monotonic)
    message = sms("+15550000093")
    await _added(ledger, message)
    attempt = await _pipeline(connector, ledger).process(message)
    if late:
        assert connector.calls == []
        assert (attempt.state, attempt.called_provider) == (SendState.PENDING, False)
        assert attempt.result.error_code == ConnectorErrorCodes.NOT_ATTEMPTED
    else:
        assert connector.call_count(message.id) == 1
        assert (attempt.state, attempt.called_provider) == (SendState.ACCEPTED, True)


async def test_an_unrecorded_failure_is_logged_with_its_error_code_and_the_tries_pace_down(
    connector: RecordingConnector, stepped_clock: SteppedClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Tries double from 50 ms up to 1 s, never past half of what is left, until a lease after the claim's."""

    ledger = RecordsNothing(clock=stepped_clock.monotonic)
    message = sms("+15550000094")
    connector.script[message.receiver.address] = ["invalid"]
    await _added(ledger, message)
    with pytest.raises(ConnectionError):
        await _pipeline(connector, ledger, lease=2.0, request_timeout=1.0).process(message)
    (line,) = [r.getMessage() for r in caplog.records if "NOT RECORDED" in r.getMessage()]
    assert line == (
        f"send {message.id}: the ledger did not answer for a lease after the claim's lease; outcome NOT RECORDED: "
        "state=failed provider_id=None error_code=INVALID_RECIPIENT attempt=1 (settle it with ledger.resolve)"
    )
    waits = [r.args[1] for r in caplog.records if "recording the outcome failed" in r.getMessage()]
    # 4 s from the claim to the give-up point (its deadline 1 s on, plus the request timeout and a lease).
    # The last wait decided, 0.725 s (half of the 1.45 s then left), is not taken: 0.45 s are left after it.
    assert [f"{wait:.3f}" for wait in waits] == ["0.050", "0.100", "0.200", "0.400", "0.800", "1.000", "1.000"]
    assert stepped_clock.sleeps == waits
    assert stepped_clock.now == pytest.approx(3.55)


async def test_a_try_that_would_end_at_the_give_up_point_is_not_made(
    connector: RecordingConnector, stepped_clock: SteppedClock, caplog: pytest.LogCaptureFixture
) -> None:
    lease, request_timeout = 0.05, 0.025  # values whose sums below are exact in binary

    class DownAtTheEdge(MemoryLedger):
        tries = 0
        left = 0.0

        async def record(self, claim: Claim, outcome: SendOutcome) -> bool:
            self.tries += 1
            if self.tries == 1:  # the first try fails with exactly one first wait (50 ms) left
                stepped_clock.now = claim.deadline + request_timeout + lease - 0.05
                self.left = claim.deadline + request_timeout + lease - stepped_clock.now
            raise ConnectionError("database down")

    ledger = DownAtTheEdge(clock=stepped_clock.monotonic)
    message = sms("+15550000095")
    await _added(ledger, message)
    with pytest.raises(ConnectionError):
        await _pipeline(connector, ledger, lease=lease, request_timeout=request_timeout).process(message)
    assert ledger.left == 0.05, "the instant under test: exactly the first wait left"
    assert ledger.tries == 1
    assert stepped_clock.sleeps == []
    assert [r.getMessage() for r in caplog.records if "NOT RECORDED" in r.getMessage()] != []


async def test_the_give_back_of_a_lost_claim_paces_down_and_stops_at_one_lease(
    connector: RecordingConnector, stepped_clock: SteppedClock
) -> None:
    """Waits double from 50 ms up to 1 s; a wait that would end past one lease after the claim is not taken."""
    waits = [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    lease = 0.0
    for wait in waits:
        lease += wait  # the give-up point falls exactly at the end of the last wait

    class LostAnswerDown(ClaimAnswerLost):
        releases = 0

        async def release(self, message_id: str, token: str) -> bool:
            self.releases += 1
            raise ConnectionError("still down")

    ledger = LostAnswerDown(clock=stepped_clock.monotonic)
    message = sms("+15550000096")
    await _added(ledger, message)
    with pytest.raises(ConnectionError, match="server closed"):
        await _pipeline(connector, ledger, lease=lease, request_timeout=0.5).process(message)
    assert stepped_clock.sleeps == waits
    assert ledger.releases == len(waits) + 1
    assert stepped_clock.now == lease


async def test_after_a_lost_fence_the_ledger_sets_the_pace(
    connector: RecordingConnector, stepped_clock: SteppedClock
) -> None:
    """Our lease ran out while we sent; reconciliation elsewhere found the message unsent: due at once, sent at once."""
    lease = 1.0

    class TakenOver(MemoryLedger):
        taken_at: float | None = None

        async def record(self, claim: Claim, outcome: SendOutcome) -> bool:
            if self.taken_at is None:
                stepped_clock.now += lease  # our worker stalled past its lease
                self.taken_at = stepped_clock.now
                assert await self.resolve(claim.message_id, provider_id=None), "proven absent by another worker"
            return await super().record(claim, outcome)

    ledger = TakenOver(clock=stepped_clock.monotonic)
    message = sms("+15550000097")
    connector.script[message.receiver.address] = ["rate_limited"]  # the first call sent nothing
    await _added(ledger, message)
    final = await _pipeline(connector, ledger, lease=lease).run(message)
    assert final.state is SendState.ACCEPTED
    assert connector.call_count(message.id) == 2
    assert stepped_clock.now == ledger.taken_at, "no pause of the pipeline's own before the pass the ledger allows"
