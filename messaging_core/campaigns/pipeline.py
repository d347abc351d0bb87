"""The send pipeline, written once: pace → claim → send → record (fenced) → report.

``SendPipeline`` runs one message of a campaign through the protocol of ``docs/scale-out.md``
(§ "The send pipeline"): no provider call starts without a committed claim, results are written
fenced, and a message whose outcome is unknown is reconciled, never resent blindly. The provider
call is the connector's seam, ``ChannelConnector.attempt``; the pipeline fires ``message_sent``
once the call is over. ``InProcessDispatcher`` and the scale-out workers run it; ``send_batch``
(no ledger, nothing recorded) does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from attrs import frozen

from messaging_core import telemetry
from messaging_core._batching import not_attempted
from messaging_core.campaigns.protocols import (
    Claim,
    InDoubtPolicy,
    LedgerEntry,
    RateLimiter,
    SendLedger,
    SendOutcome,
    SendState,
    StatusStore,
    Submission,
    SuppressionList,
)
from messaging_core.message import Message
from messaging_core.results import (
    ConnectorErrorCodes,
    ConnectorResult,
    FailureOutcome,
    SendResult,
    StatusUpdate,
    utc_now,
)

if TYPE_CHECKING:
    from messaging_core.connector import ChannelConnector

__all__ = ["SendAttempt", "SendPipeline", "add_messages"]

log = logging.getLogger(__name__)


@frozen
class SendAttempt:
    """What one pass of a message through the pipeline did."""

    message_id: str
    result: ConnectorResult[SendResult]
    """The provider's answer when it was called, else what the ledger says (``LedgerEntry.to_result``)."""
    state: SendState
    """The message's ledger state after the pass."""
    retry_after: float | None = None
    """For PENDING and SUBMITTING (another worker's lease): seconds before another pass makes sense."""
    called_provider: bool = False
    """Whether this pass called the provider."""
    deferred: bool = False
    """The pace wait exceeded ``defer_beyond``: nothing claimed, the slot kept for the message, ``retry_after`` away."""

    @property
    def settled(self) -> bool:
        """Nothing more to do without outside help: final, or in doubt."""
        return self.state.is_final or self.state is SendState.UNKNOWN


class SendPipeline:
    """One message at a time through pace → claim → deadline check → send → record → report.

    :param connector: sends through its seam (``ChannelConnector.attempt``: validation and the
        provider call; the pipeline fires ``message_sent`` once the call is over), and provides
        the rate-limit key, the cost, the request timeout and the probe (``rate_limit_key``,
        ``send_cost``, ``send_timeout``, ``find_sent``).
    :param ledger: the send ledger: no provider call starts without a committed claim in it.
    :param limiter: paces sends; None sends as fast as the callers go.
    :param limiter_key: one key for every message (a batch-wide pace); None: the connector's
        ``rate_limit_key(message)`` (the sender).
    :param max_wait: the longest pace wait accepted; beyond it the message is deferred (PENDING,
        nothing reserved, not claimed).
    :param defer_beyond: with a ledger, the longest pace wait slept in the pass; beyond it the pass
        returns at once, PENDING with ``deferred`` and ``retry_after`` = the wait, nothing
        claimed, the slot booked under the message id: a pass of the message before that slot
        starts gets the slot back. For workers that should not hold a message for minutes.
    :param lease: seconds a claim holds a message; must exceed the request timeout.
    :param request_timeout: the provider call's timeout (default: ``connector.send_timeout()``, else 30 s).
    :param max_attempts: claims per message before a retryable failure becomes FAILED.
    :param backoff: seconds before the first retry of a retryable failure; doubles per attempt, up to ``max_backoff``.
    :param in_doubt: ``"hold"`` (default) leaves UNKNOWN messages for a status callback or an
        operator; ``"probe_then_resend"`` asks ``connector.find_sent`` and resends only when two
        probes ``probe_grace`` seconds apart found nothing after the quiet period (``reconcile``).
    :param absent_after: the quiet period, in seconds from the end of the call's lease, before
        "not found" may mean "never created" (default 300: a request that timed out may still be
        processed, and Twilio documents no bound on how soon a new message is listed; minutes
        leave room for both, and a status callback settles the message sooner when it comes).
    :param status_store: where ``status_received`` records delivery statuses. When it also keeps a
        suppression list (``SuppressionList``), a message to a suppressed recipient fails at once as
        ``RECIPIENT_UNSUBSCRIBED`` with no provider call, and a send the provider refuses with that
        code adds its recipient.
    :param cancel_reason: how a message skipped by a cancellation is described.
    :param call_slot: with a ledger, a context manager factory held around the claim and the
        provider call (never around the pace wait): an account-wide cap on calls in flight, such
        as the scale-out plugin's ``RedisConcurrencyLimit.slot``. None: no cap.
    """

    def __init__(
        self,
        connector: ChannelConnector,
        *,
        ledger: SendLedger,
        limiter: RateLimiter | None = None,
        limiter_key: str | None = None,
        max_wait: float | None = None,
        defer_beyond: float | None = None,
        lease: float = 300.0,
        request_timeout: float | None = None,
        max_attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        in_doubt: InDoubtPolicy = "hold",
        probe_grace: float = 5.0,
        probe_skew: float = 60.0,
        absent_after: float = 300.0,
        status_store: StatusStore | None = None,
        cancel_reason: str = "cancelled",
        call_slot: Callable[[], AbstractAsyncContextManager[object]] | None = None,
    ) -> None:
        if in_doubt not in ("hold", "probe_then_resend"):
            raise ValueError(f"in_doubt must be 'hold' or 'probe_then_resend', not {in_doubt!r}")
        timeout = request_timeout if request_timeout is not None else connector.send_timeout()
        self.request_timeout = 30.0 if timeout is None else float(timeout)
        if lease <= self.request_timeout:
            raise ValueError(f"lease ({lease} s) must exceed the request timeout ({self.request_timeout} s)")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.connector = connector
        self.ledger = ledger
        self.limiter = limiter
        self.limiter_key = limiter_key
        self.max_wait = max_wait
        if defer_beyond is not None and defer_beyond < 0:
            raise ValueError("defer_beyond must be >= 0")
        self.defer_beyond = defer_beyond
        self.lease = lease
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.in_doubt: InDoubtPolicy = in_doubt
        self.probe_grace = probe_grace
        self.probe_skew = probe_skew
        if absent_after < 0:
            raise ValueError("absent_after must be >= 0")
        self.absent_after = absent_after
        self.status_store = status_store
        self.suppressions: SuppressionList | None = status_store if isinstance(status_store, SuppressionList) else None
        self.cancel_reason = cancel_reason
        self.call_slot = call_slot

    def __repr__(self) -> str:
        return f"<SendPipeline {self.connector.name!r} ledger={self.ledger!r} limiter={self.limiter!r}>"

    # -- one pass ------------------------------------------------------------------------------------

    async def process(
        self,
        message: Message,
        *,
        cancel: asyncio.Event | None = None,
        running: asyncio.Event | None = None,
        admit: Callable[[], Awaitable[bool]] | None = None,
    ) -> SendAttempt:
        """One pass: pace, claim, check the deadline, send, record. Never retries, never probes.

        :param cancel: when set (before the claim), the message is not sent.
        :param running: cleared while paused: the pass waits for it before pacing.
        :param admit: asked after the pace wait and the slots, right before the claim; False
            leaves the message PENDING, unclaimed (a campaign paused or cancelled while the pass
            was waiting).
        """
        passing = self._pass(message, cancel=cancel, running=running, admit=admit)
        return await telemetry.campaign_pass(self.connector, passing)

    async def _pass(
        self,
        message: Message,
        *,
        cancel: asyncio.Event | None,
        running: asyncio.Event | None,
        admit: Callable[[], Awaitable[bool]] | None,
    ) -> SendAttempt:
        if running is not None and not running.is_set():
            await running.wait()
        ledger = self.ledger
        if self.limiter is not None:
            # Message ids are unique in the ledger: a message paced twice (a redelivered chunk) keeps one slot.
            wait = await self._reserve(message)
            if wait is None:
                return SendAttempt(message.id, _deferred(), SendState.PENDING, self.max_wait)
            if self.defer_beyond is not None and wait > self.defer_beyond:
                return SendAttempt(message.id, _deferred(), SendState.PENDING, wait, deferred=True)
            telemetry.paced(self.connector, wait)
            if wait > 0:
                await asyncio.sleep(wait)
        if cancel is not None and cancel.is_set():
            return await self._cancelled(message)
        # The slot is taken before the claim, so that waiting for it does not use up the lease.
        async with self.call_slot() if self.call_slot is not None else contextlib.nullcontext():
            # Asked after every wait (the pace, the account slot), right before the claim.
            if admit is not None and not await admit():
                return SendAttempt(message.id, not_attempted("held back before the claim"), SendState.PENDING)
            claim = await self._claim(message.id)
            if isinstance(claim, Claim):
                called = claim.attempts <= self.max_attempts and time.monotonic() <= claim.deadline
                if called:
                    result = await self._send_within_lease(message, claim)
                elif claim.attempts > self.max_attempts:
                    # Every attempt was used (a message proven absent again and again by reconciliation).
                    result = not_attempted(f"all {self.max_attempts} attempts were used")
                else:
                    # I2: a call starting now might outlive the lease. Nothing was sent: a retry is safe.
                    result = not_attempted("the claim's deadline passed")
        if not isinstance(claim, Claim):
            if self.limiter is not None:
                await self._give_back_slot(message)
            return await self._unclaimable(claim)
        outcome = SendOutcome.from_result(result)
        if claim.attempts > self.max_attempts:
            outcome = SendOutcome(SendState.FAILED, error_code=ConnectorErrorCodes.NOT_ATTEMPTED)
        elif outcome.state is SendState.PENDING:
            if claim.attempts >= self.max_attempts:
                outcome = SendOutcome(SendState.FAILED, error_code=outcome.error_code)
            else:
                delay = min(self.max_backoff, self.backoff * 2 ** (claim.attempts - 1))
                outcome = SendOutcome(SendState.PENDING, error_code=outcome.error_code, retry_after=delay)
        if await self._record(claim, outcome):
            return SendAttempt(message.id, result, outcome.state, outcome.retry_after, called)
        # The fence moved while we sent: a status callback settled the message, or our lease ran
        # out and another worker took it over. The ledger's state is the truth; keep our answer.
        entry = await ledger.get(message.id)
        log.warning("send %s: result not recorded (the claim's fence was lost)", message.id)
        return SendAttempt(message.id, result, entry.state if entry else outcome.state, None, called)

    async def _send_within_lease(self, message: Message, claim: Claim) -> ConnectorResult[SendResult]:
        """The provider call, cut off when the claim's lease ends (I2).

        A connector may queue the call behind its own concurrency limit or retry what it knows
        to be safe (a 429, a refused connection) after a backoff: all of it must be over before
        another worker may find the lease expired and settle the message. What is still running
        then is cancelled, and its outcome is unknown (the request may have left).
        """
        connector = self.connector
        refused = await self._suppressed(message)
        if refused is not None:
            return refused
        now = time.monotonic()
        if now > claim.deadline:
            # Past the deadline already (a process frozen after the check, thawed now): nothing is
            # written. ``attempt`` checks the deadline once more right before the provider call.
            # The deadline's own instant still allows the call, here as in ``_pass`` and ``attempt``.
            return not_attempted("the claim's deadline passed")
        try:
            async with asyncio.timeout(claim.deadline + self.request_timeout - now):
                result = await connector.attempt(message, deadline=claim.deadline)
        except TimeoutError:
            log.warning("send %s: still running when its lease ended; cut off, outcome unknown", message.id)
            result = ConnectorResult.failure(
                ConnectorErrorCodes.SEND_MESSAGE_ERROR,
                "the provider call outlasted the claim's lease and was cut off; the message may have been sent",
                outcome=FailureOutcome.MAY_HAVE_BEEN_SENT,
            )
        await self._learn_opt_out(message, result)
        # The hook runs after the call, outside the cut-off: a slow observer cannot turn a known
        # answer into an unknown one.
        if connector.plugins.has_observers("message_sent"):
            await connector.plugins.message_sent(connector, message, result)
        return result

    async def _suppressed(self, message: Message) -> ConnectorResult[SendResult] | None:
        """A failure when the recipient is on the suppression list (nothing is sent), else None."""
        if self.suppressions is None or message.receiver is None:
            return None
        reason = await self.suppressions.suppressed(message.receiver.address)
        if reason is None:
            return None
        return ConnectorResult.failure(
            reason, "the recipient is on the suppression list (they opted out); nothing was sent"
        )

    async def _learn_opt_out(self, message: Message, result: ConnectorResult[SendResult]) -> None:
        """A send refused because the recipient opted out puts them on the suppression list."""
        unsubscribed = result.error_code == ConnectorErrorCodes.RECIPIENT_UNSUBSCRIBED
        if unsubscribed and self.suppressions is not None and message.receiver is not None:
            await self.suppressions.suppress(message.receiver.address, ConnectorErrorCodes.RECIPIENT_UNSUBSCRIBED)

    async def _claim(self, message_id: str) -> Claim | LedgerEntry:
        """``ledger.claim`` under a token; a claim whose answer is lost is given back, not left to expire.

        A ledger may commit a claim and lose the connection before answering (a database
        restart): the row is SUBMITTING although nobody will call the provider. Left alone it
        would expire into UNKNOWN, in doubt for no reason. So the claim carries a token and, when
        it raises, the pass gives it back (``ledger.release``) as soon as the ledger answers,
        within a lease; then the error goes on.
        """
        token = uuid.uuid4().hex
        try:
            return await self.ledger.claim(
                message_id, lease=self.lease, request_timeout=self.request_timeout, token=token
            )
        except Exception:
            give_up = time.monotonic() + self.lease
            delay = 0.05
            while True:
                try:
                    if await self.ledger.release(message_id, token):
                        log.warning("send %s: the claim's answer was lost; given back, nothing was sent", message_id)
                    break
                except Exception:
                    if time.monotonic() + delay > give_up:
                        log.warning("send %s: a claim whose answer was lost could not be given back", message_id)
                        break
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
            raise

    async def _record(self, claim: Claim, outcome: SendOutcome) -> bool:
        """``ledger.record``, tried again with a backoff while the ledger does not answer.

        The outcome of a provider call (or the fact that none was made) is known only here:
        dropping it would leave a message in doubt that need not be. The write is fenced, so it
        is safe however late it lands (a row another worker has since put in doubt or settled
        refuses it); it is tried until one more lease has passed after the claim's lease ended
        (a database restart, a failover). Then the outcome is logged, with what an operator needs
        to settle it (``ledger.resolve``), and the error is raised.
        """
        delay = 0.05
        while True:
            try:
                return await self.ledger.record(claim, outcome)
            except Exception:
                left = claim.deadline + self.request_timeout + self.lease - time.monotonic()
                if left <= delay:
                    log.error(
                        "send %s: the ledger did not answer for a lease after the claim's lease; outcome NOT RECORDED: "
                        "state=%s provider_id=%s error_code=%s attempt=%d (settle it with ledger.resolve)",
                        claim.message_id,
                        outcome.state.value,
                        outcome.provider_id,
                        outcome.error_code,
                        claim.attempts,
                    )
                    raise
                log.warning("send %s: recording the outcome failed; trying again in %.2f s", claim.message_id, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0, left / 2)

    async def _reserve(self, message: Message) -> float | None:
        """Reserve the message's slot; the wait until it, or None when it would exceed ``max_wait``.

        The slot is booked under the message id, so another pass of the same message before the
        slot starts gets that slot instead of a second one.
        """
        assert self.limiter is not None
        connector = self.connector
        key = self.limiter_key or connector.rate_limit_key(message)
        cost = connector.send_cost(message)
        return await self.limiter.reserve(key, cost, max_wait=self.max_wait, token=message.id)

    async def _give_back_slot(self, message: Message) -> None:
        """The claim was refused: nothing was sent in the message's pace slot, so the next message may take it.

        ``RateLimiter.release`` gives it back only if it is the key's last slot and no other pass
        of the message shares it; a limiter without the method keeps it (the default).
        """
        release = getattr(self.limiter, "release", None)
        if release is None:
            return
        key = self.limiter_key or self.connector.rate_limit_key(message)
        try:
            await release(key, message.id)
        except Exception:  # the slot is only lost time: never fail the pass for it
            log.warning("send %s: the pace slot could not be given back", message.id, exc_info=True)

    async def _cancelled(self, message: Message) -> SendAttempt:
        state = SendState.CANCELLED
        entry = await self.ledger.get(message.id)
        if entry is not None:
            state = entry.state
        return SendAttempt(message.id, not_attempted(self.cancel_reason), state)

    async def _unclaimable(self, entry: LedgerEntry) -> SendAttempt:
        """Someone else owns the message, or it needs no pass (final, in doubt, not due)."""
        state = entry.state
        if state is SendState.SUBMITTING:
            if await self.ledger.mark_unknown(entry.message_id, entry.fence):
                # Its worker's lease ran out: it may have sent. In doubt from now on (I3).
                state = SendState.UNKNOWN
            else:
                remaining = _seconds_left(entry.lease_left, entry.lease_until, self.lease)
                return SendAttempt(
                    entry.message_id, _result_of(entry), SendState.SUBMITTING, min(max(remaining, 0.01), self.lease)
                )
        if state is SendState.PENDING:
            # Not due yet. The ledger's own count of the time left (our wall clock may be skewed
            # against it); a floor keeps a zero from spinning.
            remaining = _seconds_left(entry.retry_in, entry.retry_at, 0.0)
            return SendAttempt(
                entry.message_id, not_attempted("waiting for a retry"), SendState.PENDING, max(remaining, 0.01)
            )
        fresh = await self.ledger.get(entry.message_id) if state is not entry.state else entry
        return SendAttempt(entry.message_id, _result_of(fresh or entry), state)

    # -- until settled ---------------------------------------------------------------------------------

    async def run(
        self,
        message: Message,
        *,
        cancel: asyncio.Event | None = None,
        running: asyncio.Event | None = None,
    ) -> SendAttempt:
        """Passes until the message is settled: retries when due, reconciles when in doubt.

        A cancellation ends it at the next pass.
        """
        while True:
            attempt = await self.process(message, cancel=cancel, running=running)
            if attempt.state.is_final or (cancel is not None and cancel.is_set()):
                return attempt
            if attempt.state is not SendState.UNKNOWN:
                await _sleep(attempt.retry_after or 0.0, cancel)
                continue
            settled = await self._settle(message, cancel)
            if settled is None or settled.state is not SendState.PENDING:
                return settled or attempt
            # proven absent: send again

    async def _settle(self, message: Message, cancel: asyncio.Event | None) -> SendAttempt | None:
        """``reconcile`` until it has a verdict, sleeping through the quiet period it asks for."""
        while True:
            reconciled = await self.reconcile(message)
            waiting = reconciled is not None and reconciled.state is SendState.UNKNOWN
            if not waiting or reconciled is None or reconciled.retry_after is None:
                return reconciled
            await _sleep(reconciled.retry_after, cancel)
            if cancel is not None and cancel.is_set():
                return reconciled

    async def reconcile(self, message: Message) -> SendAttempt | None:
        """Settle an UNKNOWN message by the in-doubt policy; None when it stays held.

        ``probe_then_resend`` asks ``connector.find_sent`` which provider messages could be this
        one, and holds whenever it is not sure:

        - the connector cannot tell (None), or the probe fails: held;
        - candidates whose provider id the ledger records for another message are never taken;
        - one candidate left, and no other message to the same receiver whose call may be under
          way or in doubt (``SendLedger.open_to``) that has the same sender and content (it could
          equally be that one's): ACCEPTED (reconciled); such a twin, or several candidates: held;
        - none: the message is proven absent only once ``absent_after`` seconds have passed since
          the end of the call's lease (a request that timed out may still be processed, and the
          provider's list may lag), by two empty probes ``probe_grace`` apart, both after that
          quiet period: then PENDING, resend allowed. Before that, the answer is UNKNOWN with
          ``retry_after`` = the quiet time left (probe again then).
        """
        ledger = self.ledger
        if self.in_doubt == "hold":
            return None
        entry = await ledger.get(message.id)
        fetched = time.monotonic()
        if entry is None or entry.state is not SendState.UNKNOWN:
            return None if entry is None else SendAttempt(message.id, _result_of(entry), entry.state)
        since = (entry.claimed_at or utc_now()) - timedelta(seconds=self.probe_skew)
        for probe in range(2):
            if probe:
                # The provider's list may lag behind its creates: look once more before resending.
                await asyncio.sleep(self.probe_grace)
            found = await self._candidates(message, since)
            if found is None or len(found) > 1:
                return None
            if found:
                if await self._twin_in_doubt(message):
                    log.warning("send %s: a probe candidate could be another message in doubt; held", message.id)
                    return None
                await ledger.resolve(message.id, provider_id=found[0], fence=entry.fence)
                return await self._entry_attempt(message.id)
            quiet_left = self._quiet_left(entry, fetched)
            if quiet_left > 0:
                return SendAttempt(message.id, _result_of(entry), SendState.UNKNOWN, quiet_left)
        # Only the attempt we probed: if another worker resent it meanwhile (a new fence), "absent"
        # says nothing about that attempt.
        if not await ledger.resolve(message.id, provider_id=None, fence=entry.fence):
            return await self._entry_attempt(message.id)  # a status callback or another worker settled it
        return SendAttempt(message.id, not_attempted("the provider has no trace of it; resending"), SendState.PENDING)

    async def _candidates(self, message: Message, since: datetime) -> list[str] | None:
        """The provider ids the probe found that no other message of the ledger holds; None: cannot tell."""
        try:
            found = await self.connector.find_sent(message, since)
        except Exception:
            log.exception("send %s: probing the provider failed; the message stays in doubt", message.id)
            return None
        if found is None:
            return None
        owners = [await self.ledger.owner(provider_id) for provider_id in found]
        return [pid for pid, owner in zip(found, owners, strict=True) if owner in (None, message.id)]

    async def _twin_in_doubt(self, message: Message) -> bool:
        """Whether another message to the same receiver, same sender and content, may be under way or in doubt."""
        if message.receiver is None:
            return True
        for other_id in await self.ledger.open_to(message.receiver.address):
            if other_id == message.id:
                continue
            other = await self.ledger.load(other_id)
            if other is None or (other.sender, other.content) == (message.sender, message.content):
                return True
        return False

    def _quiet_left(self, entry: LedgerEntry, fetched: float) -> float:
        """Seconds until ``absent_after`` has passed since the end of the call's lease (0 when it has).

        ``fetched`` is when ``entry`` was read (``time.monotonic()``): its ``lease_left`` is on the
        ledger's clock as of then, so the skew of our wall clock does not shorten the quiet period.
        """
        if entry.lease_left is not None:
            return max(0.0, self.absent_after + entry.lease_left - (time.monotonic() - fetched))
        ended = entry.lease_until or entry.claimed_at
        if ended is None:
            return 0.0
        return max(0.0, self.absent_after - (utc_now() - ended).total_seconds())

    async def _entry_attempt(self, message_id: str) -> SendAttempt:
        entry = await self.ledger.get(message_id)
        assert entry is not None
        return SendAttempt(message_id, _result_of(entry), entry.state)

    # -- status callbacks ------------------------------------------------------------------------------

    async def status_received(self, update: StatusUpdate, *, idempotency_key: str | None = None) -> bool:
        """Record a delivery status, and settle the message if it was in doubt (the fast path of reconciliation).

        A status naming one of our message ids with the provider's id proves the provider
        created it: an UNKNOWN (or still SUBMITTING) message becomes ACCEPTED.

        :returns: whether the status store or the ledger changed.
        """
        changed = False
        if self.status_store is not None:
            changed = await self.status_store.apply(update, idempotency_key=idempotency_key)
        if update.remote_message_id:
            changed = await self.ledger.resolve(update.message_id, provider_id=update.remote_message_id) or changed
        return changed


async def add_messages(
    ledger: SendLedger, connector: ChannelConnector, campaign_id: str, messages: Sequence[Message]
) -> Submission:
    """Add ``messages`` to the ledger as ``connector`` sends them; which ids were new and which were there.

    Each row keeps the connector's ``rate_limit_key`` and ``send_cost``. Ids already in the
    ledger are left alone (``SendLedger.add``) and counted per campaign holding them, asked after
    the add so that a concurrent submission of the same ids is counted once, by whoever lost.
    """
    if not messages:
        return Submission()
    entries = [(m, connector.rate_limit_key(m), connector.send_cost(m)) for m in messages]
    new = await ledger.add(campaign_id, entries)
    held = await ledger.campaigns_of(list(dict.fromkeys(m.id for m in messages)))
    own = held.pop(campaign_id, 0) - new  # the rows just added are this campaign's too
    if own > 0:
        held[campaign_id] = own
    return Submission(new, held)


def _deferred() -> ConnectorResult[SendResult]:
    return not_attempted("the sender's pace would have needed too long a wait")


def _seconds_left(left: float | None, until: datetime | None, default: float) -> float:
    """``left`` (the ledger's count, on its own clock), else ``until`` against our wall clock, else ``default``.

    The fallback serves ledgers that report only timestamps; a skewed clock shifts its answer.
    """
    if left is not None:
        return left
    if until is not None:
        return (until - utc_now()).total_seconds()
    return default


def _result_of(entry: LedgerEntry) -> ConnectorResult[SendResult]:
    result = entry.to_result()
    return result if result is not None else not_attempted("waiting to be sent")


async def _sleep(seconds: float, cancel: asyncio.Event | None) -> None:
    """Sleep, waking early when ``cancel`` is set."""
    if cancel is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(cancel.wait(), seconds)
