"""The send pipeline's contracts: ledger, rate limiter, status store, dispatcher.

One send pipeline, written once (``SendPipeline``), runs every message of a campaign through::

    pace (RateLimiter.reserve) → claim (SendLedger.claim) → connector.send_message → record (fenced) → ack

The embedded default keeps everything in memory (``MemoryLedger``, ``MemoryRateLimiter``,
``MemoryStatusStore``, ``InProcessDispatcher``); the scale-out distribution provides PostgreSQL,
Redis and Taskiq implementations of the same protocols. The guarantee (``docs/scale-out.md``): at
most one provider call per message id, always; exactly one for every message whose fate can be
established. A message whose outcome is unknown (the request may have reached the provider) is
never resent blindly: it is reconciled.

This module holds the protocols and the value types they exchange; implementations live beside it.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from attrs import field, frozen

from messaging_core.message import Message, MessageStream
from messaging_core.results import ConnectorResult, MessageStatus, SendResult, StatusUpdate

__all__ = [
    "CampaignHandle",
    "CampaignProgress",
    "Claim",
    "Dispatcher",
    "LedgerEntry",
    "RateLimiter",
    "SendLedger",
    "SendOutcome",
    "SendState",
    "StatusStore",
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
        return self in (SendState.ACCEPTED, SendState.FAILED, SendState.CANCELLED)


@frozen
class LedgerEntry:
    """One message's row in the ledger."""

    message_id: str
    campaign_id: str
    state: SendState
    sender_key: str
    """Rate-limit key: the sender number or Messaging Service."""
    segments: int = 1
    """Cost for the rate limiter."""
    attempts: int = 0
    fence: int = 0
    """Incremented by every claim; a result write must carry the current value."""
    provider_id: str | None = None
    error_code: str | None = None
    reconciled: bool = False
    status: MessageStatus | None = None
    """Latest delivery status (monotonic), kept apart from the sending state."""
    claimed_at: datetime | None = None
    lease_until: datetime | None = None
    retry_at: datetime | None = None


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
        """Classify a connector result (see the table in ``docs/scale-out.md``)."""
        if result.value is not None:
            return cls(SendState.ACCEPTED, provider_id=result.value.remote_message_id)
        error = result.error
        assert error is not None
        if error.details.get("outcome_unknown"):
            return cls(SendState.UNKNOWN, error_code=error.code)
        if error.retryable:
            return cls(SendState.PENDING, error_code=error.code, retry_after=1.0)
        return cls(SendState.FAILED, error_code=error.code)


@frozen
class CampaignProgress:
    """Counts of a campaign's messages by sending state."""

    campaign_id: str
    counts: Mapping[str, int] = field(factory=dict, converter=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        return sum(n for state, n in self.counts.items() if SendState(state).is_final)

    @property
    def is_complete(self) -> bool:
        return self.done == self.total


@runtime_checkable
class SendLedger(Protocol):
    """Durable record of every message of every campaign; the source of the no-double-send guarantee."""

    async def add(self, campaign_id: str, entries: list[tuple[Message, str, int]]) -> int:
        """Insert ``(message, sender_key, segments)`` rows as PENDING; existing ids are left alone.

        :returns: how many rows were new.
        """

    async def load(self, message_id: str) -> Message | None:
        """The message as it was added (workers receive ids, not messages)."""

    async def claim(self, message_id: str, *, lease: float, request_timeout: float) -> Claim | LedgerEntry:
        """Claim a PENDING (and due) message for one provider call.

        :returns: a ``Claim``, or the current entry when the message cannot be claimed (already
            final, claimed by a live lease, in doubt, or not due yet).
        """

    async def record(self, claim: Claim, outcome: SendOutcome) -> bool:
        """Write the outcome if ``claim.fence`` is still current; False when the fence was lost."""

    async def mark_unknown(self, message_id: str, fence: int) -> bool:
        """Move a SUBMITTING entry whose lease expired to UNKNOWN (fenced)."""

    async def resolve(self, message_id: str, *, provider_id: str | None, reconciled: bool = True) -> bool:
        """Settle an UNKNOWN/SUBMITTING entry: ACCEPTED with ``provider_id``, or PENDING (resend allowed) when None."""

    async def cancel(self, campaign_id: str) -> int:
        """Move the campaign's PENDING entries to CANCELLED; returns how many."""

    async def get(self, message_id: str) -> LedgerEntry | None:
        """One entry."""

    async def due(self, *, campaign_id: str | None = None, limit: int = 500) -> list[str]:
        """Ids that need work: PENDING and due, SUBMITTING with an expired lease, UNKNOWN."""

    async def progress(self, campaign_id: str) -> CampaignProgress:
        """Counts by state."""

    def results(self, campaign_id: str) -> AsyncIterator[LedgerEntry]:
        """Every entry of a campaign, in insertion order (keyset-paginated by implementations)."""


@runtime_checkable
class RateLimiter(Protocol):
    """Shared pace per sender key (GCRA "reserve a slot")."""

    async def reserve(self, key: str, cost: float = 1.0, *, max_wait: float | None = None) -> float | None:
        """Reserve ``cost`` units for ``key``.

        :returns: seconds to wait before sending (0 when a slot is free now), or None when the wait
            would exceed ``max_wait`` (nothing is reserved then).
        """


@runtime_checkable
class StatusStore(Protocol):
    """Delivery statuses by message id; monotonic (a status never moves backwards)."""

    async def apply(self, update: StatusUpdate, *, idempotency_key: str | None = None) -> bool:
        """Record ``update`` if it moves the message forward and the key was not seen; whether it did."""

    async def get(self, message_id: str) -> MessageStatus | None:
        """The reconciled status, or None when unknown."""


@runtime_checkable
class CampaignHandle(Protocol):
    """A submitted campaign."""

    campaign_id: str

    async def progress(self) -> CampaignProgress: ...

    def results(self) -> AsyncIterator[tuple[str, ConnectorResult[SendResult]]]: ...

    async def wait(self) -> CampaignProgress:
        """Until every message is final (wrap in ``asyncio.timeout`` to bound it)."""
        ...

    async def cancel(self) -> None: ...

    async def pause(self) -> None: ...

    async def resume(self) -> None: ...


@runtime_checkable
class Dispatcher(Protocol):
    """Runs campaigns: in this process (``InProcessDispatcher``) or on workers elsewhere."""

    async def submit(
        self, messages: MessageStream, *, campaign_id: str | None = None, **options: Any
    ) -> CampaignHandle:
        """Record the messages in the ledger and start sending them; returns at once."""
