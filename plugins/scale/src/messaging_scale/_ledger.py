"""``PostgresLedger``: the send ledger in PostgreSQL (asyncpg).

Every method is one short transaction on one pooled connection, released before the method
returns (or, for ``results``, before each page is yielded). Nothing here holds a connection while
acquiring another one, waiting on the rate limiter or calling the provider: the prototype's
reconciliation did, and 100 concurrent tasks deadlocked a 10-connection pool
(``docs/scale-out.md``).

State transitions are single ``update ... where`` statements whose conditions are the rules of
the protocol (claim only PENDING and due rows; result writes only with the current fence), so two
workers racing for one message are ordered by PostgreSQL's row lock and the loser's statement
simply matches no row. The campaign counters follow by trigger, in the same transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from attrs import frozen

from messaging_core.campaigns import CampaignProgress, Claim, LedgerEntry, SendOutcome, SendState
from messaging_core.converters import structure, unstructure
from messaging_core.message import Message
from messaging_core.results import MessageStatus
from messaging_scale._schema import OPEN_STATES, check_schema_name, migrate
from messaging_scale._urls import postgres_pool

__all__ = ["CampaignInfo", "OpenMessage", "PostgresLedger"]

_ENTRY_COLUMNS = (
    "message_id, campaign_id, state, sender_key, segments, attempts, fence, provider_id, error_code, "
    "reconciled, status, claimed_at, lease_until, retry_at"
)

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


@frozen
class OpenMessage:
    """A message of a chunk that still needs work, with what a worker must know to send it."""

    message: Message
    campaign_id: str
    connector: str | None
    """The campaign's connector name; None for a campaign not submitted by the distributed dispatcher."""
    paused: bool = False
    cancelled: bool = False


def _entry(row: Mapping[str, Any]) -> LedgerEntry:
    return LedgerEntry(
        message_id=row["message_id"],
        campaign_id=row["campaign_id"],
        state=SendState(row["state"]),
        sender_key=row["sender_key"],
        segments=row["segments"],
        attempts=row["attempts"],
        fence=row["fence"],
        provider_id=row["provider_id"],
        error_code=row["error_code"],
        reconciled=row["reconciled"],
        status=None if row["status"] is None else MessageStatus(row["status"]),
        claimed_at=row["claimed_at"],
        lease_until=row["lease_until"],
        retry_at=row["retry_at"],
    )


def _updated(status: str) -> bool:
    # asyncpg returns the command tag, e.g. "UPDATE 1".
    return status.rsplit(" ", 1)[-1] != "0"


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
    """

    def __init__(self, pool: Any, *, schema: str = "messaging", page_size: int = 1000) -> None:
        self._pool = pool
        self._owns_pool = False
        self.schema = check_schema_name(schema)
        self._page_size = page_size
        s = self.schema
        self._sql_insert = (
            f"insert into {s}.sends (message_id, campaign_id, sender_key, to_address, payload, segments) "
            "select message_id, $1, sender_key, to_address, payload::jsonb, segments "
            "from sends_staging order by ord on conflict (message_id) do nothing"
        )
        self._sql_claim = (
            f"update {s}.sends set state = 'submitting', attempts = attempts + 1, fence = fence + 1, "
            "claimed_at = now(), lease_until = now() + make_interval(secs => $2), updated_at = now(), "
            "deferred = false "
            "where message_id = $1 and state = 'pending' and (retry_at is null or retry_at <= now()) "
            "returning fence, attempts, lease_until"
        )
        # Only the holder of the current claim writes, and only while the row is SUBMITTING: once
        # mark_unknown or a status callback has moved it, reconciliation owns the message.
        self._sql_record = (
            f"update {s}.sends set state = $3, provider_id = coalesce($4, provider_id), error_code = $5, "
            "retry_at = case when $3 = 'pending' then now() + make_interval(secs => $6) else retry_at end, "
            "updated_at = now() "
            "where message_id = $1 and fence = $2 and state = 'submitting'"
        )
        self._sql_mark_unknown = (
            f"update {s}.sends set state = 'unknown', updated_at = now() "
            "where message_id = $1 and fence = $2 and state = 'submitting' and lease_until <= now()"
        )
        # Both settle by a new fence, so the worker that held the claim can no longer write.
        # Proof of existence settles any message not final; "absent" never releases a live lease.
        self._sql_resolve_accepted = (
            f"update {s}.sends set state = 'accepted', provider_id = $2, reconciled = $3, error_code = null, "
            "fence = fence + 1, updated_at = now() "
            "where message_id = $1 and state in ('pending', 'submitting', 'unknown') "
            "and ($4::bigint is null or fence = $4)"
        )
        self._sql_resolve_absent = (
            f"update {s}.sends set state = 'pending', retry_at = null, reconciled = $2, "
            "fence = fence + 1, updated_at = now() "
            "where message_id = $1 and (state = 'unknown' or (state = 'submitting' and lease_until <= now())) "
            "and ($3::bigint is null or fence = $3)"
        )
        self._sql_cancel = (
            f"update {s}.sends set state = 'cancelled', updated_at = now() where campaign_id = $1 and state = 'pending'"
        )
        self._sql_get = f"select {_ENTRY_COLUMNS} from {s}.sends where message_id = $1"
        self._sql_load = f"select payload::text from {s}.sends where message_id = $1"
        open_states = ", ".join(f"'{state.value}'" for state in OPEN_STATES)
        self._sql_due = (
            f"select message_id from {s}.sends "
            f"where state in ({open_states}) and ($1::text is null or campaign_id = $1) and ("
            "(state = 'pending' and (retry_at is null or retry_at <= now())) "
            "or (state = 'submitting' and lease_until <= now()) "
            "or state = 'unknown') "
            "order by seq limit $2"
        )
        self._sql_progress = (
            f"select state, sum(n)::bigint as n from {s}.campaign_counters "
            "where campaign_id = $1 group by state having sum(n) <> 0"
        )
        self._sql_page = (
            f"select seq, {_ENTRY_COLUMNS} from {s}.sends where campaign_id = $1 and seq > $2 order by seq limit $3"
        )

        # -- campaign control (the distributed dispatcher) --
        self._sql_open_ids = (
            f"select message_id from {s}.sends where message_id = any($1::text[]) and state in ({open_states})"
        )
        self._sql_open_messages = (
            "select s.message_id, s.campaign_id, s.payload::text as payload, c.connector, "
            "coalesce(c.paused, false) as paused, coalesce(c.cancelled, false) as cancelled "
            f"from {s}.sends s left join {s}.campaigns c on c.campaign_id = s.campaign_id "
            f"where s.message_id = any($1::text[]) and s.state in ({open_states})"
        )
        self._sql_campaign_connector = f"select connector from {s}.campaigns where campaign_id = $1 for update"
        self._sql_campaign_upsert = (
            f"insert into {s}.campaigns (campaign_id, connector) values ($1, $2) "
            "on conflict (campaign_id) do update set paused = false, cancelled = false, updated_at = now()"
        )
        self._sql_campaign = (
            f"select campaign_id, connector, paused, cancelled, created_at from {s}.campaigns where campaign_id = $1"
        )
        self._sql_campaign_flags = (
            f"update {s}.campaigns set paused = coalesce($2, paused), cancelled = coalesce($3, cancelled), "
            "updated_at = now() where campaign_id = $1"
        )
        self._sql_take_turn = (
            f"insert into {s}.sweeps as w (name, next_at) values ($1, now() + make_interval(secs => $2)) "
            "on conflict (name) do update set next_at = excluded.next_at where w.next_at <= now() returning 1"
        )
        # Rows nobody has worked on for ``stale_after`` seconds although they need work. Paused
        # campaigns are left alone; UNKNOWN rows only when the policy lets a worker reconcile them;
        # never-claimed PENDING rows only when the caller knows their chunks are not still queued.
        # A row kicked by a sweep is left alone for ``stale_after`` (kicked_at): a row that stays in
        # doubt, or held, does not crowd out the others sweep after sweep.
        self._sql_stale = (
            f"with picked as (select s.message_id from {s}.sends s "
            f"left join {s}.campaigns c on c.campaign_id = s.campaign_id "
            f"where s.state in ({open_states}) and not coalesce(c.paused, false) "
            "and ($5::text is null or s.campaign_id = $5) "
            "and (s.kicked_at is null or s.kicked_at <= now() - make_interval(secs => $1)) and ("
            "(s.state = 'submitting' and s.lease_until <= now() - make_interval(secs => $1)) "
            "or ($2 and s.state = 'unknown' and s.updated_at <= now() - make_interval(secs => $1)) "
            "or (s.state = 'pending' and (s.attempts > 0 or $3) "
            "and coalesce(s.retry_at, s.updated_at) <= now() - make_interval(secs => $1))"
            ") order by s.seq limit $4 for update of s skip locked) "
            f"update {s}.sends t set kicked_at = now() from picked where t.message_id = picked.message_id "
            "returning t.message_id"
        )
        # Deferred rows whose time has come: a pace slot too far for a worker to sleep through, a
        # retry due later than it would hold a chunk. Earliest first.
        self._sql_defer = (
            f"update {s}.sends set retry_at = now() + make_interval(secs => $2), deferred = true, updated_at = now() "
            "where message_id = any($1::text[]) and state = 'pending'"
        )
        self._sql_wake = (
            f"with picked as (select s.message_id from {s}.sends s "
            f"left join {s}.campaigns c on c.campaign_id = s.campaign_id "
            "where s.deferred and s.state = 'pending' and s.retry_at <= now() and not coalesce(c.paused, false) "
            "and (s.kicked_at is null or s.kicked_at < s.retry_at or s.kicked_at <= now() - make_interval(secs => $2)) "
            "order by s.retry_at limit $1 for update of s skip locked) "
            f"update {s}.sends t set kicked_at = now() from picked "
            "where t.message_id = picked.message_id returning t.message_id"
        )
        self._sql_open_page = (
            f"select seq, message_id from {s}.sends where campaign_id = $1 and seq > $2 "
            f"and state in ({open_states}) order by seq limit $3"
        )
        self._sql_held = (
            f"select {_ENTRY_COLUMNS} from {s}.sends where state = 'unknown' "
            "and ($1::text is null or campaign_id = $1) order by seq limit $2"
        )

    def __repr__(self) -> str:
        return f"<PostgresLedger schema={self.schema!r} pool={self._pool!r}>"

    @classmethod
    def from_url(cls, url: str) -> PostgresLedger:
        """A ledger with a pool of its own, opened (and the schema migrated) on first use.

        ``postgresql://user@host/db?schema=messaging&pool_max_size=10``; ``close()`` it when done.
        """
        pool, schema = postgres_pool(url)
        ledger = cls(pool, schema=schema)
        ledger._owns_pool = True
        return ledger

    async def close(self) -> None:
        """Close the pool if this ledger opened it (``from_url``); a pool passed in is the caller's."""
        if self._owns_pool:
            await self._pool.close()

    async def migrate(self) -> None:
        """Create the schema, tables, functions and triggers if missing; idempotent."""
        await migrate(self._pool, self.schema)

    async def add(self, campaign_id: str, entries: list[tuple[Message, str, int]]) -> int:
        """Insert ``(message, sender_key, segments)`` rows as PENDING; existing ids are left alone.

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
                segments,
            )
            for index, (message, sender_key, segments) in enumerate(entries)
        ]
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "create temp table sends_staging (ord int, message_id text, sender_key text, "
                "to_address text, payload text, segments int) on commit drop"
            )
            await conn.copy_records_to_table(
                "sends_staging",
                records=records,
                columns=["ord", "message_id", "sender_key", "to_address", "payload", "segments"],
            )
            status: str = await conn.execute(self._sql_insert, campaign_id)
        return int(status.rsplit(" ", 1)[-1])

    async def load(self, message_id: str) -> Message | None:
        """The message as it was added (workers receive ids, not messages)."""
        async with self._pool.acquire() as conn:
            payload = await conn.fetchval(self._sql_load, message_id)
        return None if payload is None else structure(json.loads(payload), Message)

    async def claim(self, message_id: str, *, lease: float, request_timeout: float) -> Claim | LedgerEntry:
        """Claim a PENDING (and due) message for one provider call.

        The lease is measured on the database's clock (every worker sees the same one); the
        returned ``deadline`` is on this process's monotonic clock, taken before the claim was
        sent, so it errs on the early side.

        :returns: a ``Claim``, or the current entry when the message cannot be claimed.
        :raises KeyError: when no message has this id.
        """
        started = time.monotonic()
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(self._sql_claim, message_id, float(lease))
            if row is None:
                current = await conn.fetchrow(self._sql_get, message_id)
        if row is None:
            if current is None:
                raise KeyError(message_id)
            return _entry(current)
        return Claim(
            message_id=message_id,
            fence=row["fence"],
            attempts=row["attempts"],
            lease_until=row["lease_until"],
            deadline=started + lease - request_timeout,
        )

    async def record(self, claim: Claim, outcome: SendOutcome) -> bool:
        """Write the outcome if ``claim.fence`` is still current; False when the fence was lost."""
        if outcome.state not in _RECORDABLE:
            raise ValueError(f"record() takes the outcome of a provider call, not {outcome.state!r}")
        retry_after = float(outcome.retry_after or 0.0)
        async with self._pool.acquire() as conn:
            status: str = await conn.execute(
                self._sql_record,
                claim.message_id,
                claim.fence,
                outcome.state.value,
                outcome.provider_id,
                outcome.error_code,
                retry_after,
            )
        return _updated(status)

    async def mark_unknown(self, message_id: str, fence: int) -> bool:
        """Move a SUBMITTING entry whose lease expired to UNKNOWN (fenced)."""
        async with self._pool.acquire() as conn:
            status: str = await conn.execute(self._sql_mark_unknown, message_id, fence)
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
                status: str = await conn.execute(self._sql_resolve_accepted, message_id, provider_id, reconciled, fence)
            else:
                status = await conn.execute(self._sql_resolve_absent, message_id, reconciled, fence)
        return _updated(status)

    async def cancel(self, campaign_id: str) -> int:
        """Move the campaign's PENDING entries to CANCELLED; returns how many."""
        async with self._pool.acquire() as conn:
            status: str = await conn.execute(self._sql_cancel, campaign_id)
        return int(status.rsplit(" ", 1)[-1])

    async def get(self, message_id: str) -> LedgerEntry | None:
        """One entry."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(self._sql_get, message_id)
        return None if row is None else _entry(row)

    async def due(self, *, campaign_id: str | None = None, limit: int = 500) -> list[str]:
        """Ids that need work: PENDING and due, SUBMITTING with an expired lease, UNKNOWN (oldest first)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(self._sql_due, campaign_id, limit)
        return [row["message_id"] for row in rows]

    async def progress(self, campaign_id: str) -> CampaignProgress:
        """Counts by state, from the sharded counters (no scan of ``sends``)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(self._sql_progress, campaign_id)
        return CampaignProgress(campaign_id, {row["state"]: row["n"] for row in rows})

    async def results(self, campaign_id: str) -> AsyncIterator[LedgerEntry]:
        """Every entry of a campaign, in insertion order, one page per query (keyset on ``seq``)."""
        after = 0
        while True:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(self._sql_page, campaign_id, after, self._page_size)
            for row in rows:
                yield _entry(row)
            if len(rows) < self._page_size:
                return
            after = rows[-1]["seq"]

    # -- campaign control (the distributed dispatcher; not part of the SendLedger protocol) --------

    async def open_ids(self, ids: Sequence[str]) -> list[str]:
        """The ids among ``ids`` that still need work (PENDING, SUBMITTING or UNKNOWN), in no particular order."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(self._sql_open_ids, list(ids))
        return [row["message_id"] for row in rows]

    async def open_messages(self, ids: Sequence[str]) -> list[OpenMessage]:
        """The messages of a chunk that still need work, in the order of ``ids``, in one query.

        Final messages (a redelivered or overlapping chunk) are left out: they cost nothing more.
        """
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(self._sql_open_messages, list(ids))
        by_id = {row["message_id"]: row for row in rows}
        found = []
        for message_id in dict.fromkeys(ids):
            row = by_id.get(message_id)
            if row is not None:
                found.append(
                    OpenMessage(
                        message=structure(json.loads(row["payload"]), Message),
                        campaign_id=row["campaign_id"],
                        connector=row["connector"],
                        paused=row["paused"],
                        cancelled=row["cancelled"],
                    )
                )
        return found

    async def register_campaign(self, campaign_id: str, connector: str) -> None:
        """Record that ``connector`` (a name in the workers' configuration) sends the campaign.

        Registering it again (a resubmission) clears the pause and cancel flags.

        :raises ValueError: the campaign is registered with another connector.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            current = await conn.fetchval(self._sql_campaign_connector, campaign_id)
            if current is not None and current != connector:
                raise ValueError(f"campaign {campaign_id!r} is sent by connector {current!r}, not {connector!r}")
            await conn.execute(self._sql_campaign_upsert, campaign_id, connector)

    async def campaign(self, campaign_id: str) -> CampaignInfo | None:
        """The registered campaign, or None (not submitted through the distributed dispatcher)."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(self._sql_campaign, campaign_id)
        if row is None:
            return None
        return CampaignInfo(row["campaign_id"], row["connector"], row["paused"], row["cancelled"], row["created_at"])

    async def set_campaign_flags(
        self, campaign_id: str, *, paused: bool | None = None, cancelled: bool | None = None
    ) -> bool:
        """Set a registered campaign's flags (None: unchanged); False when it is not registered."""
        async with self._pool.acquire() as conn:
            status: str = await conn.execute(self._sql_campaign_flags, campaign_id, paused, cancelled)
        return _updated(status)

    async def take_turn(self, name: str, interval: float) -> bool:
        """Whether this caller runs the periodic job ``name`` now; the next turn is ``interval`` seconds later.

        Every process may ask as often as it likes: one wins per interval, on the database's clock.
        """
        async with self._pool.acquire() as conn:
            won = await conn.fetchval(self._sql_take_turn, name, float(interval))
        return won is not None

    async def defer(self, message_ids: Sequence[str], delay: float) -> int:
        """Leave PENDING messages for ``delay`` seconds; ``due`` hands them out again then. Returns how many.

        For a worker that would otherwise hold its chunk through a long wait (a pace slot far
        ahead, a late retry). Nothing is claimed; the claim refuses the row until then.
        """
        async with self._pool.acquire() as conn:
            status: str = await conn.execute(self._sql_defer, list(message_ids), max(0.0, float(delay)))
        return int(status.rsplit(" ", 1)[-1])

    async def wake_deferred(self, *, limit: int = 5000, again_after: float = 300.0) -> list[str]:
        """Deferred messages whose time has come, earliest first.

        Each is handed out once per ``defer``, and again every ``again_after`` seconds while no
        worker has claimed it (the publication was lost): a row stays deferred until its claim.
        """
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(self._sql_wake, limit, float(again_after))
        return [row["message_id"] for row in rows]

    async def stale(
        self,
        *,
        stale_after: float,
        unknown: bool,
        unclaimed: bool,
        campaign_id: str | None = None,
        limit: int = 5000,
    ) -> list[str]:
        """Ids that need work but nobody touched for ``stale_after`` seconds (the sweeper's re-kicks).

        SUBMITTING rows whose lease expired that long ago; UNKNOWN rows when ``unknown``;
        PENDING rows due that long ago that were tried before, or, when ``unclaimed``, never
        tried (their chunk may have been lost). Paused campaigns are skipped.
        """
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(self._sql_stale, float(stale_after), unknown, unclaimed, limit, campaign_id)
        return [row["message_id"] for row in rows]

    async def open_page(self, campaign_id: str, *, after: int = 0, limit: int = 10_000) -> list[tuple[int, str]]:
        """``(seq, message_id)`` of a campaign's messages that still need work, after ``seq`` ``after`` (keyset)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(self._sql_open_page, campaign_id, after, limit)
        return [(row["seq"], row["message_id"]) for row in rows]

    async def held(self, *, campaign_id: str | None = None, limit: int = 1000) -> list[LedgerEntry]:
        """UNKNOWN entries (in doubt, waiting for a callback, a probe or an operator), oldest first."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(self._sql_held, campaign_id, limit)
        return [_entry(row) for row in rows]
