"""In-memory send ledger, rate limiter and status store: the embedded defaults.

They implement the protocols of ``messaging_core.pipeline`` exactly as the distributed ones do
(the conformance suites in ``messaging_core.testing`` run against both), for one process: state
lives in dicts and is gone when the process ends. Every method completes without awaiting
anything, so each is atomic under asyncio. Each takes an injectable ``clock`` (seconds,
``time.monotonic`` by default) so tests can move time without sleeping.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta

from messaging_core.campaigns.protocols import (
    LEASE_EXPIRED,
    PROVIDER_ID_COLLISION,
    CampaignProgress,
    Claim,
    LedgerEntry,
    SendOutcome,
    SendState,
)
from messaging_core.message import Message
from messaging_core.results import MessageStatus, StatusUpdate, utc_now

__all__ = ["MemoryLedger", "MemoryStatusStore"]

Clock = Callable[[], float]


class _Row:
    """One ledger row; ``lease_end``/``retry_due`` are on the ledger's clock, the datetimes are for people."""

    __slots__ = (
        "attempts",
        "campaign_id",
        "claim_token",
        "claimed_at",
        "cost",
        "error_code",
        "fence",
        "lease_end",
        "lease_until",
        "message",
        "provider_id",
        "reconciled",
        "retry_at",
        "retry_due",
        "sender_key",
        "state",
    )

    def __init__(self, message: Message, campaign_id: str, sender_key: str, cost: int) -> None:
        self.message = message
        self.campaign_id = campaign_id
        self.sender_key = sender_key
        self.cost = cost
        self.state = SendState.PENDING
        self.claim_token: str | None = None
        self.attempts = 0
        self.fence = 0
        self.provider_id: str | None = None
        self.error_code: str | None = None
        self.reconciled = False
        self.claimed_at: datetime | None = None
        self.lease_until: datetime | None = None
        self.lease_end = 0.0
        self.retry_at: datetime | None = None
        self.retry_due = 0.0

    def entry(self, now: float) -> LedgerEntry:
        """The row as an entry; ``now`` is the ledger's clock, for the durations left."""
        return LedgerEntry(
            message_id=self.message.id,
            campaign_id=self.campaign_id,
            state=self.state,
            sender_key=self.sender_key,
            cost=self.cost,
            attempts=self.attempts,
            fence=self.fence,
            provider_id=self.provider_id,
            error_code=self.error_code,
            reconciled=self.reconciled,
            claimed_at=self.claimed_at,
            lease_until=self.lease_until,
            retry_at=self.retry_at,
            lease_left=None if self.lease_until is None else self.lease_end - now,
            retry_in=None if self.retry_at is None else self.retry_due - now,
        )


class MemoryLedger:
    """A ``SendLedger`` in a dict: every message of every campaign, until the process ends.

    Memory grows with the messages added (each row keeps its ``Message``); use a persistent
    ledger for campaigns that must survive a restart.
    """

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._rows: dict[str, _Row] = {}
        self._campaigns: dict[str, list[str]] = {}
        self._owners: dict[str, str] = {}
        """Provider id → the message id recorded with it (unique, as PostgreSQL's index makes it)."""

    def __repr__(self) -> str:
        return f"<MemoryLedger {len(self._rows)} message(s), {len(self._campaigns)} campaign(s)>"

    def __len__(self) -> int:
        return len(self._rows)

    async def add(self, campaign_id: str, entries: list[tuple[Message, str, int]]) -> int:
        order = self._campaigns.setdefault(campaign_id, [])
        added = 0
        for message, sender_key, cost in entries:
            if message.id in self._rows:
                continue
            self._rows[message.id] = _Row(message, campaign_id, sender_key, cost)
            order.append(message.id)
            added += 1
        return added

    async def campaigns_of(self, message_ids: Sequence[str]) -> dict[str, int]:
        held: dict[str, int] = {}
        for message_id in dict.fromkeys(message_ids):
            row = self._rows.get(message_id)
            if row is not None:
                held[row.campaign_id] = held.get(row.campaign_id, 0) + 1
        return held

    async def load(self, message_id: str) -> Message | None:
        row = self._rows.get(message_id)
        return None if row is None else row.message

    async def get(self, message_id: str) -> LedgerEntry | None:
        row = self._rows.get(message_id)
        return None if row is None else row.entry(self._clock())

    async def claim(
        self, message_id: str, *, lease: float, request_timeout: float, token: str | None = None
    ) -> Claim | LedgerEntry:
        deadline = time.monotonic() + lease - request_timeout
        row = self._rows[message_id]  # KeyError for an unknown id, as the protocol says
        now = self._clock()
        if row.state is not SendState.PENDING or row.retry_due > now:
            return row.entry(now)
        wall = utc_now()
        row.state = SendState.SUBMITTING
        row.claim_token = token
        row.attempts += 1
        row.fence += 1
        row.claimed_at = wall
        row.lease_until = wall + timedelta(seconds=lease)
        row.lease_end = now + lease
        return Claim(message_id, row.fence, row.attempts, row.lease_until, deadline)

    async def record(self, claim: Claim, outcome: SendOutcome) -> bool:
        if outcome.state in (SendState.SUBMITTING, SendState.CANCELLED):
            raise ValueError(f"a provider call cannot end in {outcome.state.value}")
        row = self._rows.get(claim.message_id)
        if row is None or row.state is not SendState.SUBMITTING or row.fence != claim.fence:
            return False
        owner = self._owners.get(outcome.provider_id) if outcome.provider_id is not None else None
        if owner is not None and owner != claim.message_id:
            self._collision(row, self._rows[owner])
            return True
        row.state = outcome.state
        row.error_code = outcome.error_code
        if outcome.provider_id is not None:
            self._own(row, outcome.provider_id)
        if outcome.state is SendState.PENDING:
            delay = outcome.retry_after or 0.0
            row.retry_due = self._clock() + delay
            row.retry_at = utc_now() + timedelta(seconds=delay)
        return True

    async def release(self, message_id: str, token: str) -> bool:
        row = self._rows.get(message_id)
        if row is None or row.state is not SendState.SUBMITTING or row.claim_token != token:
            return False
        row.state = SendState.PENDING
        row.claim_token = None
        row.attempts -= 1
        row.fence += 1
        row.retry_due = 0.0
        row.retry_at = None
        return True

    async def mark_unknown(self, message_id: str, fence: int) -> bool:
        row = self._rows.get(message_id)
        if row is None or row.state is not SendState.SUBMITTING or row.fence != fence:
            return False
        if row.lease_end > self._clock():
            return False
        row.state = SendState.UNKNOWN
        row.error_code = LEASE_EXPIRED
        return True

    async def resolve(
        self, message_id: str, *, provider_id: str | None, reconciled: bool = True, fence: int | None = None
    ) -> bool:
        row = self._rows.get(message_id)
        if row is None or (fence is not None and row.fence != fence):
            return False
        if provider_id is not None:
            if row.state not in (SendState.PENDING, SendState.SUBMITTING, SendState.UNKNOWN):
                return False
            if self._owners.get(provider_id, message_id) != message_id:
                return False  # another message holds that provider id: this one is not proven by it
            row.state = SendState.ACCEPTED
            self._own(row, provider_id)
            row.error_code = None
        else:
            expired = row.state is SendState.SUBMITTING and row.lease_end <= self._clock()
            if not (row.state is SendState.UNKNOWN or expired):
                return False
            row.state = SendState.PENDING
            row.retry_due = 0.0
            row.retry_at = None
        row.fence += 1
        row.reconciled = reconciled
        return True

    async def owner(self, provider_id: str) -> str | None:
        return self._owners.get(provider_id)

    async def open_to(self, receiver: str) -> list[str]:
        open_states = (SendState.SUBMITTING, SendState.UNKNOWN)
        return [
            message_id
            for message_id, row in self._rows.items()
            if row.state in open_states
            and row.message.receiver is not None
            and row.message.receiver.address == receiver
        ]

    def _own(self, row: _Row, provider_id: str) -> None:
        row.provider_id = provider_id
        self._owners[provider_id] = row.message.id

    def _collision(self, recording: _Row, holder: _Row) -> None:
        """A provider call answered with a provider id another message already holds.

        The answer of a call is the provider's word; a holder that got the id from a probe was
        matched to a message that was not its own: it is in doubt again. A holder that got it
        otherwise (its own answer, a status callback naming it) contradicts the answer: both are
        held, with a reason an operator can read.
        """
        provider_id = holder.provider_id
        assert provider_id is not None
        holder.fence += 1
        holder.state = SendState.UNKNOWN
        holder.error_code = PROVIDER_ID_COLLISION
        holder.provider_id = None
        del self._owners[provider_id]
        if holder.reconciled:
            holder.reconciled = False
            self._own(recording, provider_id)
            recording.state = SendState.ACCEPTED
            recording.error_code = None
        else:
            recording.state = SendState.UNKNOWN
            recording.error_code = PROVIDER_ID_COLLISION

    async def cancel(self, campaign_id: str) -> int:
        cancelled = 0
        for message_id in self._campaigns.get(campaign_id, ()):
            row = self._rows[message_id]
            if row.state is SendState.PENDING:
                row.state = SendState.CANCELLED
                cancelled += 1
        return cancelled

    async def due(self, *, campaign_id: str | None = None, limit: int = 500) -> list[str]:
        now = self._clock()
        ids = self._rows if campaign_id is None else self._campaigns.get(campaign_id, ())
        found: list[str] = []
        for message_id in ids:
            row = self._rows[message_id]
            state = row.state
            if (
                (state is SendState.PENDING and row.retry_due <= now)
                or state is SendState.UNKNOWN
                or (state is SendState.SUBMITTING and row.lease_end <= now)
            ):
                found.append(message_id)
                if len(found) >= limit:
                    break
        return found

    async def progress(self, campaign_id: str) -> CampaignProgress:
        counts: dict[str, int] = {}
        for message_id in self._campaigns.get(campaign_id, ()):
            state = self._rows[message_id].state.value
            counts[state] = counts.get(state, 0) + 1
        return CampaignProgress(campaign_id, counts)

    async def results(self, campaign_id: str) -> AsyncIterator[LedgerEntry]:
        order = self._campaigns.get(campaign_id, [])
        index = 0
        while index < len(order):  # by index: rows added while iterating are included
            yield self._rows[order[index]].entry(self._clock())
            index += 1


class MemoryStatusStore:
    """A ``StatusStore`` in a dict: the latest status per message, monotonic, deduplicated by key.

    Bounded: at most ``max_messages`` statuses (the least recently updated are forgotten first)
    and ``max_keys`` idempotency keys (the oldest first). A forgotten message starts over from
    its next update, which can only move it forward from nothing.
    """

    def __init__(self, *, max_messages: int = 100_000, max_keys: int = 100_000) -> None:
        if max_messages < 1 or max_keys < 1:
            raise ValueError("max_messages and max_keys must be at least 1")
        self.max_messages = max_messages
        self.max_keys = max_keys
        self._statuses: OrderedDict[str, MessageStatus] = OrderedDict()
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._suppressed: dict[str, str] = {}
        """The suppression list (``SuppressionList``): address → reason; not bounded, never forgotten."""

    def __repr__(self) -> str:
        return f"<MemoryStatusStore {len(self._statuses)} message(s)>"

    async def suppressed(self, address: str) -> str | None:
        return self._suppressed.get(address)

    async def suppress(self, address: str, reason: str) -> None:
        self._suppressed[address] = reason

    async def lift(self, address: str) -> None:
        self._suppressed.pop(address, None)

    def __len__(self) -> int:
        return len(self._statuses)

    async def apply(self, update: StatusUpdate, *, idempotency_key: str | None = None) -> bool:
        if idempotency_key is not None:
            if idempotency_key in self._keys:
                return False
            self._keys[idempotency_key] = None
            if len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
        message_id = update.message_id
        current = self._statuses.get(message_id)
        if current is not None and not current.can_become(update.status):
            return False
        self._statuses[message_id] = update.status
        self._statuses.move_to_end(message_id)
        if len(self._statuses) > self.max_messages:
            self._statuses.popitem(last=False)
        return True

    async def get(self, message_id: str) -> MessageStatus | None:
        return self._statuses.get(message_id)
