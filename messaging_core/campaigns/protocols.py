"""The send pipeline's contracts: ledger, rate limiter, status store, dispatcher.

One send pipeline, written once (``SendPipeline``), runs every message of a campaign through::

    pace (RateLimiter.reserve) → claim (SendLedger.claim) → connector.send_message → record (fenced) → ack

The embedded default keeps everything in memory (``MemoryLedger``, ``MemoryRateLimiter``,
``MemoryStatusStore``, ``InProcessDispatcher``); the scale-out distribution provides PostgreSQL,
Redis and Taskiq implementations of the same protocols. The guarantee (``docs/scale-out.md``): at
most one provider call per message id, always; exactly one for every message whose fate can be
established. A message whose outcome is unknown (the request may have reached the provider) is
never resent blindly: it is reconciled.

This module holds the protocols and the value types they exchange; implementations live beside it
(``messaging_core.stores``, ``messaging_core.sending``, ``messaging_core.dispatcher``). The
conformance suites in ``messaging_core.testing`` pin the semantics every implementation shares.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from attrs import field, frozen

from messaging_core.connector import ChannelConnector
from messaging_core.message import Message, MessageStream
from messaging_core.results import (
    ConnectorErrorCodes,
    ConnectorResult,
    FailureOutcome,
    MessageStatus,
    SendResult,
    StatusUpdate,
)

__all__ = [
    "LEASE_EXPIRED",
    "PROVIDER_ID_COLLISION",
    "CampaignHandle",
    "CampaignProgress",
    "Claim",
    "Dispatcher",
    "InDoubtPolicy",
    "LedgerEntry",
    "RateLimiter",
    "SendLedger",
    "SendOutcome",
    "SendState",
    "StatusStore",
    "Submission",
]


class SendState(enum.StrEnum):
    """Where a message is in the ledger (sending only; delivery status is kept apart)."""

    PENDING = "pending"
    """Waiting to be sent (or to be retried at ``retry_at``)."""
    SUBMITTING = "submitting"
    """Claimed by a worker whose lease has not expired; a provider call may be in flight."""
    ACCEPTED = "accepted"
    """The provider created it (``provider_id`` set). Final for sending."""
    FAILED = "failed"
    """The provider refused it permanently, or the input was invalid. Final for sending."""
    UNKNOWN = "unknown"
    """The request may have reached the provider: reconcile, never resend blindly."""
    CANCELLED = "cancelled"
    """The campaign was cancelled before this message was sent. Final."""

    @property
    def is_final(self) -> bool:
        """Nothing more will be sent for this message."""
        return self in (SendState.ACCEPTED, SendState.FAILED, SendState.CANCELLED)


InDoubtPolicy = Literal["probe_then_resend", "hold"]
"""What the pipeline does with an UNKNOWN message: ask the provider (``ChannelConnector.find_sent``)
and resend only when the message is proven absent, or hold it for a status callback or an operator."""


@frozen
class LedgerEntry:
    """One message's row in the ledger."""

    message_id: str
    campaign_id: str
    state: SendState
    sender_key: str
    """Rate-limit key: the sender number or Messaging Service."""
    cost: int = 1
    """What sending it costs against the sender's rate limit (``ChannelConnector.send_cost``: SMS segments)."""
    attempts: int = 0
    fence: int = 0
    """Incremented by every claim; a result write must carry the current value."""
    provider_id: str | None = None
    error_code: str | None = None
    reconciled: bool = False
    error: str | None = None
    """What went wrong, for people, when the ledger keeps it (a message failed after the same error
    ``max_attempts`` times without a provider call: an unreadable row, a connector that raises)."""
    status: MessageStatus | None = None
    """Latest delivery status (monotonic), kept apart from the sending state.

    Filled by ledgers that keep the status in the same row (PostgreSQL); ``MemoryLedger`` leaves
    it None (its ``StatusStore`` has it)."""
    claimed_at: datetime | None = None
    lease_until: datetime | None = None
    retry_at: datetime | None = None
    lease_left: float | None = None
    """Seconds until ``lease_until`` on the ledger's own clock, as of when the ledger produced the
    entry (negative once the lease ended); None without a lease. Waits are computed from this, not
    from ``lease_until`` and the worker's wall clock, which may be skewed against the ledger's."""
    retry_in: float | None = None
    """Seconds until ``retry_at`` on the ledger's own clock, as of when the ledger produced the entry
    (negative once it passed); None without one."""

    def to_result(self) -> ConnectorResult[SendResult] | None:
        """The entry as a send result, or None while the message is PENDING (not sent yet).

        ACCEPTED is a success (the provider's id, status ``queued``); CANCELLED is
        ``NOT_ATTEMPTED``; UNKNOWN and SUBMITTING are ``OUTCOME_UNKNOWN`` (outcome
        ``MAY_HAVE_BEEN_SENT``: never resend blindly); FAILED carries the recorded error code.
        """
        state = self.state
        if state is SendState.ACCEPTED:
            status = self.status or MessageStatus.QUEUED
            return ConnectorResult.success(SendResult(self.message_id, self.provider_id, status))
        if state is SendState.FAILED:
            code = self.error_code or ConnectorErrorCodes.SEND_MESSAGE_ERROR
            why = f": {self.error}" if self.error else ""
            return ConnectorResult.failure(code, f"the message failed ({code}){why}")
        if state is SendState.CANCELLED:
            return ConnectorResult.failure(
                ConnectorErrorCodes.NOT_ATTEMPTED,
                "the campaign was cancelled before this message was sent",
                retryable=True,
            )
        if state is SendState.PENDING:
            return None
        what = "is being sent by another worker" if state is SendState.SUBMITTING else "may have been sent"
        return ConnectorResult.failure(
            ConnectorErrorCodes.OUTCOME_UNKNOWN,
            f"the message {what}; it is reconciled, never resent blindly",
            details={"ledger_state": state.value},
            outcome=FailureOutcome.MAY_HAVE_BEEN_SENT,
        )


LEASE_EXPIRED = "LEASE_EXPIRED"
"""Error code of a message put in doubt because its claim's lease ended before its outcome was
recorded (a worker killed or frozen mid-call): why it is UNKNOWN, for an operator."""

PROVIDER_ID_COLLISION = "PROVIDER_ID_COLLISION"
"""Error code of a message held because a provider call answered with a provider id another message
holds (``SendLedger.record``): an operator settles both."""


@frozen
class Claim:
    """Permission to call the provider once for a message, until ``lease_until``."""

    message_id: str
    fence: int
    attempts: int
    lease_until: datetime
    deadline: float
    """``time.monotonic()`` after which the provider call must not start (lease minus request timeout)."""


@frozen
class SendOutcome:
    """What the provider call established, as the ledger records it (fenced by the claim)."""

    state: SendState
    """ACCEPTED, FAILED, PENDING (safe to retry at ``retry_at``) or UNKNOWN (reconcile)."""
    provider_id: str | None = None
    error_code: str | None = None
    retry_after: float | None = None
    """Seconds before a PENDING message may be claimed again."""

    @classmethod
    def from_result(cls, result: ConnectorResult[SendResult]) -> SendOutcome:
        """Classify a connector result (see the table in ``docs/scale-out.md``).

        A success is ACCEPTED. A failure that may have sent the message (``outcome`` is
        ``MAY_HAVE_BEEN_SENT``: a timeout or a reset after the request left, a 5xx, an unreadable
        201, an unexpected error inside the connector) is UNKNOWN. Other retryable failures (429,
        connection refused, ``NOT_ATTEMPTED``) are PENDING; the rest FAILED.
        """
        if result.value is not None:
            return cls(SendState.ACCEPTED, provider_id=result.value.remote_message_id)
        error = result.error
        assert error is not None
        if error.outcome is FailureOutcome.MAY_HAVE_BEEN_SENT:
            return cls(SendState.UNKNOWN, error_code=error.code)
        if error.retryable:
            return cls(SendState.PENDING, error_code=error.code, retry_after=1.0)
        return cls(SendState.FAILED, error_code=error.code)


def _counts(value: Mapping[str, int]) -> dict[str, int]:
    return dict(value)


@frozen
class CampaignProgress:
    """Counts of a campaign's messages by sending state."""

    campaign_id: str
    counts: Mapping[str, int] = field(factory=dict, converter=_counts)
    """Messages per ``SendState`` value; states with no message may be absent."""
    failure: str | None = None
    """Why the campaign stopped as a whole (its workers cannot send it: a connector they lack), or None.

    A failed campaign is settled: nothing more happens until it is fixed and resumed or submitted again."""

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        return sum(n for state, n in self.counts.items() if SendState(state).is_final)

    @property
    def is_complete(self) -> bool:
        return self.done == self.total

    def count(self, state: SendState | str) -> int:
        """How many messages are in ``state`` (0 when none)."""
        return self.counts.get(str(state), 0)


@frozen
class Submission:
    """What adding a campaign's messages to the ledger found: ids new to it, and ids it already held.

    Message ids are global in a ledger: an id already there (from another campaign, or this one
    submitted before) is never added or sent again, and is counted here instead.
    """

    new: int = 0
    """Ids added by this submission."""
    existing: Mapping[str, int] = field(factory=dict, converter=_counts)
    """Ids the ledger already held, per campaign holding them (this campaign's own: a resubmission)."""

    @property
    def existing_total(self) -> int:
        return sum(self.existing.values())

    def plus(self, other: Submission) -> Submission:
        """Both submissions' counts together (one campaign added in several batches)."""
        existing = dict(self.existing)
        for campaign_id, count in other.existing.items():
            existing[campaign_id] = existing.get(campaign_id, 0) + count
        return Submission(self.new + other.new, existing)

    def describe(self) -> str:
        """One line for people: ``"3 new, 2 already in the ledger (campaign c1: 2)"``."""
        if not self.existing_total:
            return f"{self.new} new"
        held = ", ".join(f"campaign {campaign_id}: {n}" for campaign_id, n in sorted(self.existing.items()))
        return f"{self.new} new, {self.existing_total} already in the ledger ({held})"


@runtime_checkable
class SendLedger(Protocol):
    """Durable record of every message of every campaign; the source of the no-double-send guarantee.

    Transitions (anything else is refused: the method returns False, or the current entry)::

        add ─▶ PENDING ──claim──▶ SUBMITTING ──record──▶ ACCEPTED | FAILED | PENDING (retry_at) | UNKNOWN
               PENDING ──cancel──▶ CANCELLED
               SUBMITTING (lease expired) ──mark_unknown──▶ UNKNOWN
               SUBMITTING | UNKNOWN ──resolve(provider_id)──▶ ACCEPTED;  PENDING ──resolve(provider_id)──▶ ACCEPTED
               SUBMITTING (lease expired) | UNKNOWN ──resolve(None)──▶ PENDING

    Every claim and every resolve increments ``fence``; ``record`` and ``mark_unknown`` only
    act on the fence they name. Message ids are unique across campaigns.
    """

    async def add(self, campaign_id: str, entries: list[tuple[Message, str, int]]) -> int:
        """Insert ``(message, sender_key, cost)`` rows as PENDING; existing ids are left alone.

        :returns: how many rows were new.
        """

    async def campaigns_of(self, message_ids: Sequence[str]) -> dict[str, int]:
        """How many of ``message_ids`` the ledger holds, per campaign holding them (each id counted once).

        Asked after ``add``, it tells a submitter which ids were already there (``Submission``);
        before, whether a submission would add nothing new.
        """

    async def load(self, message_id: str) -> Message | None:
        """The message as it was added (workers receive ids, not messages)."""

    async def claim(
        self, message_id: str, *, lease: float, request_timeout: float, token: str | None = None
    ) -> Claim | LedgerEntry:
        """Claim a PENDING (and due) message for one provider call, atomically.

        The claim moves the entry to SUBMITTING, increments ``attempts`` and ``fence``, and
        holds a lease of ``lease`` seconds. ``Claim.deadline`` is ``time.monotonic()`` (taken
        before the claim) + ``lease`` − ``request_timeout``. An expired SUBMITTING entry or an
        UNKNOWN one is never claimed: it needs ``mark_unknown``/``resolve`` first.

        ``token`` names this claim, so that a claim whose answer was lost (the ledger committed
        it, the connection dropped before the caller heard) can be given back (``release``).

        :returns: a ``Claim``, or the current entry when the message cannot be claimed (already
            final, claimed by a live or expired lease, in doubt, or not due yet).
        :raises KeyError: the message id is not in the ledger.
        """

    async def release(self, message_id: str, token: str) -> bool:
        """Give back a claim made with ``token`` whose answer the caller never got: nothing was sent.

        Only a SUBMITTING entry holding that token goes back to PENDING (due now, the attempt not
        counted, the fence moved); anything else (not claimed with it, already recorded, in
        doubt) is left alone: False.
        """

    async def record(self, claim: Claim, outcome: SendOutcome) -> bool:
        """Write the outcome if the entry is SUBMITTING with ``claim.fence``; False when the fence was lost.

        PENDING sets ``retry_at`` to now + ``outcome.retry_after`` (now when None).

        A provider id is recorded for one message only. When the call answers with an id another
        message holds: if that message got it from a probe, it was matched wrongly and goes back
        to UNKNOWN (its fence moves), and this one is ACCEPTED; otherwise both are held UNKNOWN
        with ``error_code`` ``PROVIDER_ID_COLLISION``. Nothing is left stuck. Returns True then.

        :raises ValueError: ``outcome.state`` is SUBMITTING or CANCELLED.
        """

    async def mark_unknown(self, message_id: str, fence: int) -> bool:
        """Move a SUBMITTING entry with this ``fence`` whose lease expired to UNKNOWN (error code ``LEASE_EXPIRED``)."""

    async def resolve(
        self, message_id: str, *, provider_id: str | None, reconciled: bool = True, fence: int | None = None
    ) -> bool:
        """Settle a message in doubt; increments the fence, so a late ``record`` of the old claim is refused.

        With a ``provider_id`` (a status callback or a probe found it): PENDING, SUBMITTING or
        UNKNOWN become ACCEPTED, unless another message holds that provider id (False). With None
        (a probe proved it absent): UNKNOWN or an expired SUBMITTING become PENDING, resend
        allowed. Final entries are never changed.

        ``fence``: only when the entry still has this fence (the one the probe looked at). A
        verdict of "absent" must not apply to a later attempt another worker made meanwhile.
        """

    async def cancel(self, campaign_id: str) -> int:
        """Move the campaign's PENDING entries to CANCELLED (in-flight ones keep their outcome); returns how many."""

    async def get(self, message_id: str) -> LedgerEntry | None:
        """One entry."""

    async def owner(self, provider_id: str) -> str | None:
        """The message id recorded with this provider id, if any (a probe never takes another's)."""

    async def open_to(self, receiver: str) -> list[str]:
        """Ids of the messages to ``receiver`` whose provider call may be under way or in doubt (SUBMITTING, UNKNOWN).

        A probe candidate that one of them could equally be is nobody's proof: the probe holds.
        """

    async def due(self, *, campaign_id: str | None = None, limit: int = 500) -> list[str]:
        """Ids that need work: PENDING and due, SUBMITTING with an expired lease, UNKNOWN."""

    async def progress(self, campaign_id: str) -> CampaignProgress:
        """Counts by state (states with no message may be absent); an unknown campaign counts nothing."""

    def results(self, campaign_id: str) -> AsyncIterator[LedgerEntry]:
        """Every entry of a campaign, in insertion order (keyset-paginated by implementations)."""


@runtime_checkable
class RateLimiter(Protocol):
    """Shared pace per sender key (GCRA "reserve a slot")."""

    async def reserve(
        self, key: str, cost: float = 1.0, *, max_wait: float | None = None, token: str | None = None
    ) -> float | None:
        """Reserve ``cost`` units for ``key``: the slot starts after the wait, the next one ``cost`` intervals later.

        GCRA: with ``interval = 1 / rate`` and ``burst`` units allowed back to back,
        ``wait = max(0, tat − now − (burst − 1) · interval)``, then ``tat = max(tat, now) + cost · interval``.

        ``token`` names what the slot is for (the pipeline passes the message id). Until its slot
        starts, a reservation with the same token reserves nothing more and returns the time left
        to that slot: a message paced twice (a redelivered or re-kicked chunk, a pass deferred to
        its slot) takes one slot. Once the slot has started, the token books anew (a retry pays
        again).

        :returns: seconds to wait before sending (0 when a slot is free now), or None when the wait
            would exceed ``max_wait`` (nothing is reserved then).
        """

    async def release(self, key: str, token: str) -> bool:
        """Give back the slot booked for ``key`` under ``token``, which its message did not use.

        The pipeline calls it when the claim after the pace wait was refused (another worker
        holds the message, or it is not due): nothing was sent in that slot. Only the last slot
        booked for the key can be given back; the next reservation then starts where it started.
        A later slot is left alone: moving the schedule back under it would let two sends share
        an instant. The default gives nothing back; ``SendPipeline`` also calls limiters that
        lack the method as if they had the default.

        :returns: whether the slot was given back.
        """
        return False


@runtime_checkable
class StatusStore(Protocol):
    """Delivery statuses by message id; monotonic (a status never moves backwards)."""

    async def apply(self, update: StatusUpdate, *, idempotency_key: str | None = None) -> bool:
        """Record ``update`` if it moves the message forward and the key was not seen; whether it did.

        "Forward" is ``MessageStatus.can_become``; a key is remembered even when its update did
        not move the status.
        """

    async def get(self, message_id: str) -> MessageStatus | None:
        """The reconciled status, or None when unknown."""


@runtime_checkable
class SuppressionList(Protocol):
    """Recipients nothing is sent to (they opted out); kept by a status store that offers it.

    The webhook service adds a sender whose inbound message opts out (``connector.opt_out_change``:
    a STOP) and lifts one that opts back in; a send refused as ``RECIPIENT_UNSUBSCRIBED`` adds its
    receiver; the send pipeline consults it before every provider call and fails such a message
    at once with that code.
    """

    async def suppressed(self, address: str) -> str | None:
        """Why nothing is sent to ``address`` (an error code), or None."""
        ...

    async def suppress(self, address: str, reason: str) -> None:
        """Send nothing more to ``address`` (``reason``: an error code such as ``RECIPIENT_UNSUBSCRIBED``)."""
        ...

    async def lift(self, address: str) -> None:
        """Send to ``address`` again (it opted back in)."""
        ...


@runtime_checkable
class CampaignHandle(Protocol):
    """A submitted campaign."""

    campaign_id: str

    async def progress(self) -> CampaignProgress:
        """Counts of the campaign's messages by ledger state."""
        ...

    def results(self) -> AsyncIterator[tuple[str, ConnectorResult[SendResult]]]:
        """``(message_id, result)`` per message, in input order, each once it is settled.

        Settled: final, or in doubt with nothing left to try (held for reconciliation, reported
        as ``OUTCOME_UNKNOWN``). Results are rebuilt from the ledger (``LedgerEntry.to_result``),
        so iterating again later shows reconciled outcomes.
        """
        ...

    async def wait(self) -> CampaignProgress:
        """Until no message is left to work on: each is final or held in doubt (bound it with ``asyncio.timeout``)."""
        ...

    async def cancel(self) -> None:
        """Stop sending: PENDING messages become CANCELLED; sends in flight keep their true outcome."""
        ...

    async def pause(self) -> None:
        """Start no new provider call until ``resume()`` (calls in flight finish)."""
        ...

    async def resume(self) -> None: ...


@runtime_checkable
class Dispatcher(Protocol):
    """Runs campaigns: in this process (``InProcessDispatcher``) or on workers elsewhere."""

    async def submit(
        self, messages: MessageStream, *, campaign_id: str | None = None, **options: Any
    ) -> CampaignHandle:
        """Record the messages in the ledger and start sending them; returns at once."""


@frozen
class LedgerProviderIds:
    """A ``ProviderIdLookup`` on a send ledger: the provider id it recorded for a message of ours.

    With a persistent ledger, status queries by our id work from any process and after restarts;
    dispatchers attach one to their connector (``connector.provider_ids``) unless one is set.
    """

    ledger: SendLedger

    async def provider_id(self, message_id: str) -> str | None:
        entry = await self.ledger.get(message_id)
        return None if entry is None else entry.provider_id


def attach_provider_ids(connector: ChannelConnector, ledger: SendLedger) -> None:
    """Give ``connector`` the ledger's provider ids, unless it already has a lookup."""
    if connector.provider_ids is None:
        connector.provider_ids = LedgerProviderIds(ledger)
