"""``PostgresStatusStore``: delivery statuses that webhook hosts on several machines update.

Statuses live in the ledger's ``sends`` rows (``status``/``status_rank``), so one store serves the
send pipeline and every webhook host. Each callback is one call of the ``apply_status`` SQL
function (one round trip):

1. the idempotency token (Twilio's ``I-Twilio-Idempotency-Token``) is inserted into
   ``webhook_events``; a token seen before ends it (``DUPLICATE``);
2. the message is found by our id (the ``mid`` of the callback URL), else by the provider's id;
3. the status is written only if it moves the message forward (``MessageStatus.can_become``),
   checked in the ``update``'s own ``where`` so that concurrent callbacks can't move it back;
   a send still in doubt (SUBMITTING/UNKNOWN) becomes ACCEPTED, since the callback proves the
   provider created it;
4. a callback for a message not (yet) known by that id is kept in ``orphan_status`` and merged
   into the message when its provider id is stored (a trigger on ``sends``).

Under load, callbacks are applied in batches: concurrent updates (``messaging_scale._coalesce``,
at most ``batch_size`` of them) go to the database in one call of ``apply_statuses``, one
statement per step and one commit for all. Each caller still gets the outcome ``apply_status``
would have given it, in arrival order, and only once the batch committed. An update whose message
is not found (an orphan) and the later updates naming one of its ids go through ``apply_status``
alone, after the batch, so orphan storage keeps its locks and retry.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import asyncpg
from attrs import frozen

from messaging_core.results import MessageStatus, StatusUpdate
from messaging_scale._coalesce import Coalescer
from messaging_scale._schema import check_schema_name, migrate, row_count
from messaging_scale._urls import POSTGRES_OPTIONS, postgres_pool, split_options

__all__ = ["WEBHOOK_EVENTS_RETENTION", "PostgresStatusStore", "StatusWrite"]

WEBHOOK_EVENTS_RETENTION = 3 * 86_400.0
"""Seconds an idempotency token is kept (``webhook_events``): Twilio retries a callback for hours
at most, so every retry is still deduplicated. A replay after that is applied only if its status
moves the message forward, the rule every callback obeys anyway."""

BATCH_SIZE = 100
"""The most status updates ``PostgresStatusStore`` writes in one transaction, by default."""

BATCH_WAIT = 0.002
"""Seconds an update waits at most for others to share its transaction, by default."""

_RETRIES = 5
"""Attempts of one update when the message appeared in the middle of it (see ``apply_status``), and
of one batch that lost a deadlock to another transaction."""

_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)
"""Errors after which the whole transaction rolled back and trying again is safe and may succeed."""

_UPDATE_DEFECTS = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError)
"""Errors that one update of a batch may cause (a provider id another message holds): the batch's
updates are then applied one by one, so that only the offending caller gets the error."""


class StatusWrite(enum.StrEnum):
    """What became of one status update."""

    APPLIED = "applied"
    """The message's status moved forward."""
    ORPHANED = "orphaned"
    """No message is known by this id yet; kept, and merged when the provider id is stored."""
    STALE = "stale"
    """The message already has this status or a later one."""
    DUPLICATE = "duplicate"
    """The idempotency token was seen before."""

    @property
    def changed(self) -> bool:
        """Whether anything was recorded."""
        return self in (StatusWrite.APPLIED, StatusWrite.ORPHANED)


@frozen
class _Update:
    """One ``write`` in a batch."""

    update: StatusUpdate
    key: str | None


class PostgresStatusStore:
    """``StatusStore`` on PostgreSQL, sharing the ledger's tables (run ``migrate`` once).

    :param pool: an ``asyncpg.Pool``.
    :param schema: the PostgreSQL schema of the ledger's tables.
    :param batch_size: the most updates written in one transaction; 1 writes each update alone.
    :param batch_wait: the longest an update waits behind a batch in flight, seconds.
    """

    def __init__(
        self, pool: Any, *, schema: str = "messaging", batch_size: int = BATCH_SIZE, batch_wait: float = BATCH_WAIT
    ) -> None:
        self._batches = Coalescer(self._write_batch, size=batch_size, wait=batch_wait)  # checks both
        self._pool = pool
        self._owns_pool = False
        self.schema = check_schema_name(schema)
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        s = self.schema
        self._sql_apply = f"select {s}.apply_status($1, $2, $3, $4, $5, $6)"
        self._sql_apply_batch = f"select {s}.apply_statuses($1, $2, $3, $4, $5, $6)"
        self._sql_get = (
            "select status from ("
            f"select 1 as pick, status from {s}.sends where message_id = $1 "
            f"union all select 2, status from {s}.sends where provider_id = $1 "
            f"union all select 3, status from {s}.orphan_status where ref = $1"
            ") as found where status is not null order by pick limit 1"
        )
        self._sql_prune_tokens = f"delete from {s}.webhook_events where received_at < now() - make_interval(secs => $1)"
        self._sql_prune_orphans = f"delete from {s}.orphan_status where received_at < now() - make_interval(secs => $1)"
        self._sql_prune_token_batch = (
            f"delete from {s}.webhook_events where token in (select token from {s}.webhook_events "
            "where received_at < now() - make_interval(secs => $1) order by received_at limit $2)"
        )

    def __repr__(self) -> str:
        return f"<PostgresStatusStore schema={self.schema!r} pool={self._pool!r}>"

    @classmethod
    def from_url(cls, url: str) -> PostgresStatusStore:
        """A store with a pool of its own, opened (and the schema migrated) on first use.

        Same URL as ``PostgresLedger.from_url``, plus ``batch_size`` and ``batch_wait`` (seconds)
        in its query (``batch_size=1``: every update in a transaction of its own); ``close()`` it
        when done.
        """
        pool, schema = postgres_pool(url)
        _, options = split_options(url, POSTGRES_OPTIONS)
        batch_size = int(options.get("batch_size", BATCH_SIZE))
        batch_wait = float(options.get("batch_wait", BATCH_WAIT))
        store = cls(pool, schema=schema, batch_size=batch_size, batch_wait=batch_wait)
        store._owns_pool = True
        return store

    async def close(self) -> None:
        """Write the updates still waiting, then close the pool if this store opened it (``from_url``)."""
        await self._batches.close()
        if self._owns_pool:
            await self._pool.close()

    async def migrate(self) -> None:
        """Create the schema, tables, functions and triggers if missing; idempotent."""
        await migrate(self._pool, self.schema)

    async def write(self, update: StatusUpdate, *, idempotency_key: str | None = None) -> StatusWrite:
        """Record ``update`` unless it is stale or its key was seen; says which.

        ``update.message_id`` is our id when the callback carried it, otherwise the provider's id;
        ``update.remote_message_id`` is the provider's id when known. Returns once the update is
        committed (with its batch); raises if it was not.
        """
        if self.batch_size == 1:
            return await self._write_alone(update, idempotency_key)
        return await self._batches.submit(_Update(update, idempotency_key))

    async def _write_batch(self, batch: Sequence[_Update]) -> list[StatusWrite | Exception]:
        """Each update's outcome: the batch's, or (orphans, a batch one update spoils) ``apply_status``'s alone."""
        try:
            outcomes = await self._apply_batch(batch)
        except _UPDATE_DEFECTS:
            outcomes = [None] * len(batch)  # one of them is at fault: each alone, below
        # Left to apply_status (orphans and the updates after them that name the same ids), one
        # after the other in arrival order.
        answers: list[StatusWrite | Exception] = []
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if outcome is not None:
                answers.append(StatusWrite(outcome))
                continue
            try:
                answers.append(await self._write_alone(waiting.update, waiting.key))
            except Exception as err:
                answers.append(err)
        return answers

    async def _apply_batch(self, batch: Sequence[_Update]) -> list[str | None]:
        """One call of ``apply_statuses``: each update's outcome, None for those to apply alone."""
        arguments = (
            [waiting.update.message_id for waiting in batch],
            [waiting.update.remote_message_id for waiting in batch],
            [waiting.update.status.value for waiting in batch],
            [waiting.update.status.rank for waiting in batch],
            [waiting.update.timestamp for waiting in batch],
            [waiting.key for waiting in batch],
        )
        # A deadlock with another transaction (a ledger operation locking several rows in its own
        # order) rolls the whole batch back, tokens included: it is run again.
        outcomes: list[str | None] = await self._fetchval_retrying(self._sql_apply_batch, *arguments)
        return outcomes

    async def _write_alone(self, update: StatusUpdate, idempotency_key: str | None) -> StatusWrite:
        """One call of ``apply_status``: the update in a transaction of its own."""
        status = update.status
        # The message may appear while the update is being stored as an orphan: the whole call
        # rolls back (token included), and the next attempt finds the message.
        outcome: str = await self._fetchval_retrying(
            self._sql_apply,
            update.message_id,
            update.remote_message_id,
            status.value,
            status.rank,
            update.timestamp,
            idempotency_key,
        )
        return StatusWrite(outcome)

    async def _fetchval_retrying(self, sql: str, *arguments: Any) -> Any:
        """``fetchval`` in a transaction of its own, run again (``_RETRIES`` times in all) while it rolls back whole."""
        attempt = 1
        while True:
            try:
                async with self._pool.acquire() as conn:
                    return await conn.fetchval(sql, *arguments)
            except _RETRYABLE:
                if attempt >= _RETRIES:
                    raise
                attempt += 1

    async def prune_webhook_events(self, *, older_than: float = WEBHOOK_EVENTS_RETENTION, limit: int = 5000) -> int:
        """Forget at most ``limit`` idempotency tokens older than ``older_than`` seconds, oldest first; how many.

        One short statement (the sweeper runs it every sweep): a backlog shrinks batch by batch
        instead of in one long delete that holds its locks.
        """
        async with self._pool.acquire() as conn:
            deleted: str = await conn.execute(self._sql_prune_token_batch, float(older_than), limit)
        return row_count(deleted)

    async def prune(
        self, *, tokens_older_than: float = WEBHOOK_EVENTS_RETENTION, orphans_older_than: float = 7 * 86_400.0
    ) -> tuple[int, int]:
        """Forget old idempotency tokens and orphan statuses; returns how many of each.

        Tokens only need to outlive the provider's retries of one callback (hours); orphans
        whose provider id never appeared belong to messages sent by something else.
        """
        async with self._pool.acquire() as conn:
            tokens: str = await conn.execute(self._sql_prune_tokens, float(tokens_older_than))
            orphans: str = await conn.execute(self._sql_prune_orphans, float(orphans_older_than))
        return row_count(tokens), row_count(orphans)

    async def apply(self, update: StatusUpdate, *, idempotency_key: str | None = None) -> bool:
        """Record ``update`` if it moves the message forward and the key was not seen; whether it did."""
        return (await self.write(update, idempotency_key=idempotency_key)).changed

    async def suppressed(self, address: str) -> str | None:
        """Why nothing is sent to ``address`` (``SuppressionList``), or None."""
        async with self._pool.acquire() as conn:
            reason: str | None = await conn.fetchval(
                f"select reason from {self.schema}.suppressions where address = $1", address
            )
        return reason

    async def suppress(self, address: str, reason: str) -> None:
        """Put ``address`` on the suppression list (again: the reason and time are updated)."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                f"insert into {self.schema}.suppressions (address, reason) values ($1, $2) "
                "on conflict (address) do update set reason = excluded.reason, since = now()",
                address,
                reason,
            )

    async def lift(self, address: str) -> None:
        """Take ``address`` off the suppression list."""
        async with self._pool.acquire() as conn:
            await conn.execute(f"delete from {self.schema}.suppressions where address = $1", address)

    async def get(self, message_id: str) -> MessageStatus | None:
        """The reconciled status by our id (or the provider's), or None when unknown."""
        async with self._pool.acquire() as conn:
            status = await conn.fetchval(self._sql_get, message_id)
        return None if status is None else MessageStatus(status)
