"""``PostgresLedger``: the send ledger in PostgreSQL (asyncpg).

Every method is one short transaction on one pooled connection, released before the method
returns (or, for ``results``, before each page is yielded). Concurrent claims, and concurrent
records, are coalesced into one statement each (``batch_size``, ``batch_wait``): a chunk's claims
cost one round trip and one commit, and every caller hears back only once its batch committed.
Nothing here holds a connection while acquiring another one, waiting on the rate limiter or
calling the provider: the prototype's reconciliation did, and 100 concurrent tasks deadlocked a
10-connection pool (``docs/scale-out.md``).

State transitions are single ``update ... where`` statements whose conditions are the rules of
the protocol (claim only PENDING and due rows; result writes only with the current fence), so two
workers racing for one message are ordered by PostgreSQL's row lock and the loser's statement
simply matches no row. The campaign counters follow by trigger, in the same transaction. The
statements are in ``messaging_scale._ledger_sql``, the tables in ``messaging_scale._schema``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
from attrs import frozen

from messaging_core.campaigns import (
    PROVIDER_ID_COLLISION,
    CampaignProgress,
    Claim,
    LedgerEntry,
    SendOutcome,
    SendState,
)
from messaging_core.converters import structure, unstructure
from messaging_core.message import Message
from messaging_core.results import MessageStatus
from messaging_scale._coalesce import Coalescer
from messaging_scale._ledger_sql import CREATE_STAGING_TABLE, STAGING_COLUMNS, STAGING_TABLE, LedgerSql
from messaging_scale._schema import check_schema_name, migrate, row_count
from messaging_scale._urls import POSTGRES_OPTIONS, postgres_pool, split_options

log = logging.getLogger(__name__)

__all__ = ["CampaignInfo", "OpenMessage", "PostgresLedger"]

BATCH_SIZE = 100
"""The most claims (or records) ``PostgresLedger`` writes in one statement, by default."""

BATCH_WAIT = 0.002
"""Seconds a claim or record waits at most for others to share its statement, by default."""

_RETRIES = 5
"""Attempts of a batch of records that lost a deadlock to another transaction."""

# What ``record`` may write: the outcomes of one provider call.
_RECORDABLE = frozenset({SendState.ACCEPTED, SendState.FAILED, SendState.PENDING, SendState.UNKNOWN})


@frozen
class CampaignInfo:
    """A campaign of the distributed dispatcher: who sends it, and the flags workers obey."""

    campaign_id: str
    connector: str
    """The connector's name in the configuration file every worker reads."""
    paused: bool = False
    """Workers start no provider call for it (calls in flight finish)."""
    cancelled: bool = False
    """Workers cancel what is still PENDING instead of sending it."""
    created_at: datetime | None = None
    failure: str | None = None
    """Why workers cannot send it (set with ``paused``; ``resume`` or a new submission clears it)."""


@frozen
class OpenMessage:
    """A message of a chunk that still needs work, with what a worker must know to send it."""

    message: Message
    campaign_id: str
    connector: str | None
    """The campaign's connector name; None for a campaign not submitted by the distributed dispatcher."""
    paused: bool = False
    cancelled: bool = False


@frozen
class _ClaimRequest:
    message_id: str
    lease: float
    token: str | None


_ClaimAnswer = tuple[int, int, datetime] | LedgerEntry
"""A claim's ``(fence, attempts, lease_until)``, or the current entry when the row could not be claimed."""


async def _or_error(call: Awaitable[bool]) -> bool | Exception:
    try:
        return await call
    except Exception as err:
        return err


def _entry(row: Mapping[str, Any]) -> LedgerEntry:
    return LedgerEntry(
        message_id=row["message_id"],
        campaign_id=row["campaign_id"],
        state=SendState(row["state"]),
        sender_key=row["sender_key"],
        cost=row["cost"],
        attempts=row["attempts"],
        fence=row["fence"],
        provider_id=row["provider_id"],
        error_code=row["error_code"],
        reconciled=row["reconciled"],
        error=row["last_error"] if row["state"] == SendState.FAILED.value else None,
        status=None if row["status"] is None else MessageStatus(row["status"]),
        claimed_at=row["claimed_at"],
        lease_until=row["lease_until"],
        retry_at=row["retry_at"],
        lease_left=row["lease_left"],
        retry_in=row["retry_in"],
    )


def _updated(status: str) -> bool:
    return row_count(status) > 0


class PostgresLedger:
    """``SendLedger`` on PostgreSQL: claim-before-send, fenced results, sharded campaign counters.

    Usage::

        pool = await asyncpg.create_pool("postgresql://127.0.0.1/messaging")
        ledger = PostgresLedger(pool, schema="messaging")
        await ledger.migrate()

    The pool belongs to the caller (share it with ``PostgresStatusStore``; the two use the same
    tables). Size it for the worker's concurrency: each operation holds one connection for one
    short transaction.

    :param pool: an ``asyncpg.Pool``.
    :param schema: the PostgreSQL schema holding the tables (created by ``migrate``); a plain
        lower-case identifier. Tests use one schema each.
    :param page_size: rows per query when ``results`` streams a campaign.
    :param batch_size: the most claims (and, apart, records) written in one statement; 1 writes
        each alone. Concurrent claims and records are coalesced (``messaging_scale._coalesce``):
        a chunk's claims become one statement and one commit, its records another, each row
        still fenced, and no caller hears back before its batch is committed.
    :param batch_wait: the longest a claim or record waits behind a batch in flight, seconds.
    """

    def __init__(
        self,
        pool: Any,
        *,
        schema: str = "messaging",
        page_size: int = 1000,
        batch_size: int = BATCH_SIZE,
        batch_wait: float = BATCH_WAIT,
    ) -> None:
        self._pool = pool
        self._owns_pool = False
        self.schema = check_schema_name(schema)
        self._page_size = page_size
        self._sql = LedgerSql(self.schema)
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self._claims: Coalescer[_ClaimRequest, _ClaimAnswer] = Coalescer(
            self._claim_batch, size=batch_size, wait=batch_wait
        )
        self._records: Coalescer[tuple[Claim, SendOutcome], bool] = Coalescer(
            self._record_batch, size=batch_size, wait=batch_wait
        )

    @property
    def pool(self) -> Any:
        """The ``asyncpg.Pool`` (a ``PostgresStatusStore`` on the same tables may share it)."""
        return self._pool

    def __repr__(self) -> str:
        return f"<PostgresLedger schema={self.schema!r} pool={self._pool!r}>"

    @classmethod
    def from_url(cls, url: str) -> PostgresLedger:
        """A ledger with a pool of its own, opened (and the schema migrated) on first use.

        ``postgresql://user@host/db?schema=messaging&pool_max_size=10&batch_size=100&batch_wait=0.002``
        (``batch_size=1``: every claim and record in a statement of its own); ``close()`` it when done.
        """
        pool, schema = postgres_pool(url)
        _, options = split_options(url, POSTGRES_OPTIONS)
        batch_size = int(options.get("batch_size", BATCH_SIZE))
        batch_wait = float(options.get("batch_wait", BATCH_WAIT))
        ledger = cls(pool, schema=schema, batch_size=batch_size, batch_wait=batch_wait)
        ledger._owns_pool = True
        return ledger

    async def close(self) -> None:
        """Finish the batches in flight, then close the pool if this ledger opened it (``from_url``).

        A pool passed in is the caller's."""
        await self._claims.close()
        await self._records.close()
        if self._owns_pool:
            await self._pool.close()

    async def migrate(self) -> None:
        """Create the schema, tables, functions and triggers if missing; idempotent."""
        await migrate(self._pool, self.schema)

    async def add(self, campaign_id: str, entries: list[tuple[Message, str, int]]) -> int:
        """Insert ``(message, sender_key, cost)`` rows as PENDING; existing ids are left alone.

        Rows go in with ``COPY`` into a temporary staging table, then one ``insert ... on conflict
        do nothing``: re-submitting a campaign inserts nothing twice, and the first occurrence of
        an id repeated in ``entries`` wins.

        :returns: how many rows were new.
        """
        if not entries:
            return 0
        records = [
            (
                index,
                message.id,
                sender_key,
                message.receiver.address if message.receiver is not None else "",
                json.dumps(unstructure(message)),
                cost,
            )
            for index, (message, sender_key, cost) in enumerate(entries)
        ]
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(CREATE_STAGING_TABLE)
            await conn.copy_records_to_table(STAGING_TABLE, records=records, columns=list(STAGING_COLUMNS))
            status: str = await conn.execute(self._sql.insert, campaign_id)
        return row_count(status)

    async def campaigns_of(self, message_ids: Sequence[str]) -> dict[str, int]:
        """How many of ``message_ids`` the ledger holds, per campaign holding them (one indexed query)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(self._sql.campaigns_of, list(dict.fromkeys(message_ids)))
        return {row["campaign_id"]: row["n"] for row in rows}

    async def load(self, message_id: str) -> Message | None:
        """The message as it was added (workers receive ids, not messages)."""
        async with self._pool.acquire() as conn:
            payload = await conn.fetchval(self._sql.load, message_id)
        return None if payload is None else structure(json.loads(payload), Message)

    async def claim(
        self, message_id: str, *, lease: float, request_timeout: float, token: str | None = None
    ) -> Claim | LedgerEntry:
        """Claim a PENDING (and due) message for one provider call.

        The lease is measured on the database's clock (every worker sees the same one); the
        returned ``deadline`` is on this process's monotonic clock, taken before the claim was
        sent, so it errs on the early side.

        :returns: a ``Claim``, or the current entry when the message cannot be claimed.
        :raises KeyError: when no message has this id.
        """
        started = time.monotonic()
        if self.batch_size == 1:
            answer = await self._claim_alone(message_id, float(lease), token)
        else:
            answer = await self._claims.submit(_ClaimRequest(message_id, float(lease), token))
        if isinstance(answer, LedgerEntry):
            return answer
        fence, attempts, lease_until = answer
        return Claim(
            message_id=message_id,
            fence=fence,
            attempts=attempts,
            lease_until=lease_until,
            deadline=started + lease - request_timeout,
        )

    async def _claim_alone(self, message_id: str, lease: float, token: str | None) -> _ClaimAnswer:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(self._sql.claim, message_id, lease, token)
            if row is None:
                current = await conn.fetchrow(self._sql.get, message_id)
        if row is not None:
            return row["fence"], row["attempts"], row["lease_until"]
        if current is None:
            raise KeyError(message_id)
        return _entry(current)

    async def _claim_batch(self, requests: list[_ClaimRequest]) -> list[_ClaimAnswer | Exception]:
        """One statement claims every claimable row of the batch; the others get their current entry.

        An id asked twice in one batch is claimed for its first request only.
        """
        first = {request.message_id: request for request in reversed(requests)}
        ids = list(first)
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                self._sql.claim_batch,
                ids,
                [first[message_id].token for message_id in ids],
                [first[message_id].lease for message_id in ids],
            )
            claimed = {row["message_id"]: (row["fence"], row["attempts"], row["lease_until"]) for row in rows}
            current: dict[str, LedgerEntry] = {}
            if len(claimed) < len(requests):
                refused = [message_id for message_id in ids if message_id not in claimed]
                refused += [r.message_id for r in requests if first[r.message_id] is not r]
                for row in await conn.fetch(self._sql.get_many, list(dict.fromkeys(refused))):
                    current[row["message_id"]] = _entry(row)
        answers: list[_ClaimAnswer | Exception] = []
        for request in requests:
            won = claimed.get(request.message_id) if first[request.message_id] is request else None
            if won is not None:
                answers.append(won)
            elif request.message_id in current:
                answers.append(current[request.message_id])
            else:
                answers.append(KeyError(request.message_id))
        return answers

    async def record(self, claim: Claim, outcome: SendOutcome) -> bool:
        """Write the outcome if ``claim.fence`` is still current; False when the fence was lost."""
        if outcome.state not in _RECORDABLE:
            raise ValueError(f"record() takes the outcome of a provider call, not {outcome.state!r}")
        if self.batch_size == 1:
            return await self._record_alone(claim, outcome)
        return await self._records.submit((claim, outcome))

    async def _record_alone(self, claim: Claim, outcome: SendOutcome) -> bool:
        arguments = (
            claim.message_id,
            claim.fence,
            outcome.state.value,
            outcome.provider_id,
            outcome.error_code,
            float(outcome.retry_after or 0.0),
        )
        async with self._pool.acquire() as conn:
            try:
                status: str = await conn.execute(self._sql.record, *arguments)
            except asyncpg.UniqueViolationError:
                assert outcome.provider_id is not None
                return await self._collision(conn, claim, outcome.provider_id, arguments)
        return _updated(status)

    async def _record_batch(self, batch: list[tuple[Claim, SendOutcome]]) -> list[bool | Exception]:
        """One statement writes every outcome of the batch whose fence is still current.

        A provider id another message holds spoils the statement (a unique violation): the
        batch's outcomes are then written one by one, each as ``record`` writes it alone.
        """
        claims = [claim for claim, _ in batch]
        outcomes = [outcome for _, outcome in batch]
        arguments = (
            [claim.message_id for claim in claims],
            [claim.fence for claim in claims],
            [outcome.state.value for outcome in outcomes],
            [outcome.provider_id for outcome in outcomes],
            [outcome.error_code for outcome in outcomes],
            [float(outcome.retry_after or 0.0) for outcome in outcomes],
        )
        for attempt in range(_RETRIES):
            try:
                async with self._pool.acquire() as conn:
                    rows = await conn.fetch(self._sql.record_batch, *arguments)
                break
            except asyncpg.UniqueViolationError:
                return [await _or_error(self._record_alone(claim, outcome)) for claim, outcome in batch]
            except asyncpg.DeadlockDetectedError:
                # Another batch locked some of the same rows in another order; ours rolled back whole.
                if attempt == _RETRIES - 1:
                    raise
        written = {(row["message_id"], row["fence"]) for row in rows}
        return [(claim.message_id, claim.fence) in written for claim in claims]

    async def _collision(self, conn: Any, claim: Claim, provider_id: str, arguments: tuple[Any, ...]) -> bool:
        """The call answered with a provider id another message holds: see ``SendLedger.record``."""
        async with conn.transaction():
            holder = await conn.fetchrow(self._sql.holder_for_update, provider_id, claim.message_id)
            if holder is None:  # released meanwhile: record as usual
                return _updated(await conn.execute(self._sql.record, *arguments))
            await conn.execute(self._sql.reopen_holder, holder["message_id"], PROVIDER_ID_COLLISION)
            if holder["reconciled"]:
                log.warning(
                    "send %s: a probe had matched %s's provider id to it; in doubt again",
                    holder["message_id"],
                    claim.message_id,
                )
                return _updated(await conn.execute(self._sql.record, *arguments))
            log.error(
                "sends %s and %s: the provider answered one with the id the other holds; both held for an operator",
                holder["message_id"],
                claim.message_id,
            )
            status: str = await conn.execute(
                self._sql.hold_recording, claim.message_id, claim.fence, PROVIDER_ID_COLLISION
            )
            return _updated(status)

    async def release(self, message_id: str, token: str) -> bool:
        """Give back a claim made with ``token`` whose answer was lost: PENDING again, nothing was sent."""
        async with self._pool.acquire() as conn:
            status: str = await conn.execute(self._sql.release, message_id, token)
        return _updated(status)

    async def mark_unknown(self, message_id: str, fence: int) -> bool:
        """Move a SUBMITTING entry whose lease expired to UNKNOWN (fenced)."""
        async with self._pool.acquire() as conn:
            status: str = await conn.execute(self._sql.mark_unknown, message_id, fence)
        return _updated(status)

    async def resolve(
        self, message_id: str, *, provider_id: str | None, reconciled: bool = True, fence: int | None = None
    ) -> bool:
        """Settle an entry in doubt: ACCEPTED with ``provider_id``, or PENDING (resend allowed) when None.

        ACCEPTED (the provider has the message: a status callback or a probe found it) applies to
        any entry not final. PENDING needs the entry UNKNOWN, or SUBMITTING with an expired lease:
        absence is never concluded for a call that may still be in flight. Either way the fence
        moves, so the claim's holder can no longer record. With ``fence``, only an entry that
        still has it (the attempt a probe looked at) is settled.
        """
        async with self._pool.acquire() as conn:
            if provider_id is not None:
                try:
                    status: str = await conn.execute(
                        self._sql.resolve_accepted, message_id, provider_id, reconciled, fence
                    )
                except asyncpg.UniqueViolationError:
                    return False  # another message took that provider id at the same moment
            else:
                status = await conn.execute(self._sql.resolve_absent, message_id, reconciled, fence)
        return _updated(status)

    async def owner(self, provider_id: str) -> str | None:
        """The message id recorded with this provider id, if any."""
        async with self._pool.acquire() as conn:
            found: str | None = await conn.fetchval(self._sql.owner, provider_id)
        return found

    async def open_to(self, receiver: str) -> list[str]:
        """Ids of the messages to ``receiver`` that are SUBMITTING or UNKNOWN."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(self._sql.open_to, receiver)
        return [row["message_id"] for row in rows]

    async def cancel(self, campaign_id: str) -> int:
        """Move the campaign's PENDING entries to CANCELLED; returns how many."""
        async with self._pool.acquire() as conn:
            status: str = await conn.execute(self._sql.cancel, campaign_id)
        return row_count(status)

    async def get(self, message_id: str) -> LedgerEntry | None:
        """One entry."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(self._sql.get, message_id)
        return None if row is None else _entry(row)

    async def due(self, *, campaign_id: str | None = None, limit: int = 500) -> list[str]:
        """Ids that need work: PENDING and due, SUBMITTING with an expired lease, UNKNOWN (oldest first)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(self._sql.due, campaign_id, limit)
        return [row["message_id"] for row in rows]

    async def progress(self, campaign_id: str) -> CampaignProgress:
        """Counts by state, from the sharded counters (no scan of ``sends``)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(self._sql.progress, campaign_id)
        return CampaignProgress(campaign_id, {row["state"]: row["n"] for row in rows})

    async def results(self, campaign_id: str) -> AsyncIterator[LedgerEntry]:
        """Every entry of a campaign, in insertion order, one page per query (keyset on ``seq``)."""
        after = 0
        while True:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(self._sql.page, campaign_id, after, self._page_size)
            for row in rows:
                yield _entry(row)
            if len(rows) < self._page_size:
                return
            after = rows[-1]["seq"]

    # -- campaign control (the distributed dispatcher; not part of the SendLedger protocol) --------

    async def open_ids(self, ids: Sequence[str]) -> list[str]:
        """The ids among ``ids`` that still need work (PENDING, SUBMITTING or UNKNOWN), in no particular order."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(self._sql.open_ids, list(ids))
        return [row["message_id"] for row in rows]

    async def open_messages(self, ids: Sequence[str]) -> list[OpenMessage]:
        """The messages of a chunk that still need work, in the order of ``ids``, in one query.

        Final messages (a redelivered or overlapping chunk) are left out: they cost nothing more.

        :raises ValueError: a row's message cannot be read (``open_chunk`` reports it instead).
        """
        found, unreadable = await self.open_chunk(ids)
        if unreadable:
            message_id, error = next(iter(unreadable.items()))
            raise ValueError(f"message {message_id} cannot be read from the ledger: {error}")
        return found

    async def open_chunk(self, ids: Sequence[str]) -> tuple[list[OpenMessage], dict[str, str]]:
        """``open_messages``, and the open rows whose message cannot be read (id → the error), apart.

        One unreadable row must not fail the rest of its chunk.
        """
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(self._sql.open_messages, list(ids))
        by_id = {row["message_id"]: row for row in rows}
        found = []
        unreadable: dict[str, str] = {}
        for message_id in dict.fromkeys(ids):
            row = by_id.get(message_id)
            if row is None:
                continue
            try:
                message = structure(json.loads(row["payload"]), Message)
            except Exception as err:  # any defect of the stored payload is this row's alone
                unreadable[message_id] = f"unreadable message: {type(err).__name__}: {err}"[:500]
                continue
            found.append(
                OpenMessage(
                    message=message,
                    campaign_id=row["campaign_id"],
                    connector=row["connector"],
                    paused=row["paused"],
                    cancelled=row["cancelled"],
                )
            )
        return found, unreadable

    async def note_failure(self, message_id: str, error: str, *, give_up_after: int, error_code: str) -> bool:
        """Count a pass of a PENDING message that raised ``error``; FAILED with it after ``give_up_after`` in a row.

        The count restarts when the error changes. Rows not PENDING are left alone (a claimed
        message may have been sent: reconciliation settles it). Returns whether it is FAILED now.
        """
        async with self._pool.acquire() as conn:
            state = await conn.fetchval(self._sql.note_failure, message_id, error[:500], give_up_after, error_code)
        return bool(state == SendState.FAILED.value)

    async def fail_campaign(self, campaign_id: str, reason: str) -> bool:
        """Stop a registered campaign that workers cannot send (paused, with ``reason`` for people)."""
        async with self._pool.acquire() as conn:
            status: str = await conn.execute(self._sql.fail_campaign, campaign_id, reason)
        return _updated(status)

    async def register_campaign(self, campaign_id: str, connector: str) -> None:
        """Record that ``connector`` (a name in the workers' configuration) sends the campaign.

        Registering it again (a resubmission) clears the pause and cancel flags.

        :raises ValueError: the campaign is registered with another connector.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            current = await conn.fetchval(self._sql.campaign_connector, campaign_id)
            if current is not None and current != connector:
                raise ValueError(f"campaign {campaign_id!r} is sent by connector {current!r}, not {connector!r}")
            await conn.execute(self._sql.campaign_upsert, campaign_id, connector)

    async def campaign(self, campaign_id: str) -> CampaignInfo | None:
        """The registered campaign, or None (not submitted through the distributed dispatcher)."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(self._sql.campaign, campaign_id)
        if row is None:
            return None
        return CampaignInfo(
            row["campaign_id"], row["connector"], row["paused"], row["cancelled"], row["created_at"], row["failure"]
        )

    async def set_campaign_flags(
        self, campaign_id: str, *, paused: bool | None = None, cancelled: bool | None = None
    ) -> bool:
        """Set a registered campaign's flags (None: unchanged); False when it is not registered."""
        async with self._pool.acquire() as conn:
            status: str = await conn.execute(self._sql.campaign_flags, campaign_id, paused, cancelled)
        return _updated(status)

    async def take_turn(self, name: str, interval: float) -> bool:
        """Whether this caller runs the periodic job ``name`` now; the next turn is ``interval`` seconds later.

        Every process may ask as often as it likes: one wins per interval, on the database's clock.
        """
        async with self._pool.acquire() as conn:
            won = await conn.fetchval(self._sql.take_turn, name, float(interval))
        return won is not None

    async def defer(self, message_ids: Sequence[str], delay: float) -> int:
        """Leave PENDING messages for ``delay`` seconds; ``due`` hands them out again then. Returns how many.

        For a worker that would otherwise hold its chunk through a long wait (a pace slot far
        ahead, a late retry). Nothing is claimed; the claim refuses the row until then.
        """
        async with self._pool.acquire() as conn:
            status: str = await conn.execute(self._sql.defer, list(message_ids), max(0.0, float(delay)))
        return row_count(status)

    async def wake_deferred(self, *, limit: int = 5000, again_after: float = 300.0) -> list[str]:
        """Deferred messages whose time has come, earliest first.

        Each is handed out once per ``defer``, and again every ``again_after`` seconds while no
        worker has claimed it (the publication was lost): a row stays deferred until its claim.
        """
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(self._sql.wake, limit, float(again_after))
        return [row["message_id"] for row in rows]

    async def stale(
        self,
        *,
        stale_after: float,
        unknown: bool,
        unclaimed: bool,
        campaign_id: str | None = None,
        limit: int = 5000,
        expired_after: float | None = None,
    ) -> list[str]:
        """Ids that need work but nobody touched for ``stale_after`` seconds (the sweeper's re-kicks).

        SUBMITTING rows whose lease expired ``expired_after`` seconds ago (default
        ``stale_after``; each once after its lease ended, then once per ``stale_after``); UNKNOWN rows when ``unknown``;
        PENDING rows due that long ago that were tried before, or, when ``unclaimed``, never
        tried (their chunk may have been lost). Paused campaigns are skipped.
        """
        async with self._pool.acquire() as conn:
            expired = float(stale_after if expired_after is None else expired_after)
            rows = await conn.fetch(
                self._sql.stale, float(stale_after), unknown, unclaimed, limit, campaign_id, expired
            )
        return [row["message_id"] for row in rows]

    async def open_page(self, campaign_id: str, *, after: int = 0, limit: int = 10_000) -> list[tuple[int, str]]:
        """``(seq, message_id)`` of a campaign's messages that still need work, after ``seq`` ``after`` (keyset)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(self._sql.open_page, campaign_id, after, limit)
        return [(row["seq"], row["message_id"]) for row in rows]

    async def held(self, *, campaign_id: str | None = None, limit: int = 1000) -> list[LedgerEntry]:
        """UNKNOWN entries (in doubt, waiting for a callback, a probe or an operator), oldest first."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(self._sql.held, campaign_id, limit)
        return [_entry(row) for row in rows]
