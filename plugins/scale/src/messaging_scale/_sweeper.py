"""``Sweeper``: publishes again the rows that need work but that nobody touched for a while."""

from __future__ import annotations

import asyncio
import logging

from messaging_scale._brokers import queued_chunks
from messaging_scale._chunks import ChunkKicker
from messaging_scale._ledger import PostgresLedger
from messaging_scale._status import PostgresStatusStore

__all__ = ["Sweeper"]

log = logging.getLogger(__name__)


class Sweeper:
    """Re-kicks the rows that need work but nobody touched for ``stale_after`` seconds.

    Every worker process runs one (``run``); the ledger gives one turn per ``interval`` to
    whichever asks first, so a fleet sweeps once per interval. The usual paths need no sweeper
    (a dead worker's chunks come back from RabbitMQ); it catches what they miss: a dead-lettered
    chunk, a retry left for later, a chunk lost by a submitter that died between ``COPY`` and
    publishing, rows in doubt to reconcile with ``probe_then_resend``. Never-tried PENDING rows
    are re-kicked only while the work queue is empty (their chunks may still be queued).

    :param ledger: the PostgreSQL ledger.
    :param kicker: publishes the re-kicked ids.
    :param queue: the work queue's name (to read its depth).
    :param interval: seconds between sweeps of the fleet.
    :param stale_after: seconds without a change before a row needing work is re-kicked.
    :param reconcile: whether UNKNOWN rows are re-kicked (``in_doubt = "probe_then_resend"``).
    :param lease_grace: seconds after a lease ended before its row is re-kicked (a killed worker's
        messages are taken up within lease + ``lease_grace`` + one ``interval``, not ``stale_after``).
    :param webhook_events_retention: seconds a status callback's idempotency token is kept; each
        sweep deletes up to ``batch`` older ones. None: tokens are kept (pruned elsewhere).
    """

    name = "sweeper"

    def __init__(
        self,
        ledger: PostgresLedger,
        kicker: ChunkKicker,
        *,
        queue: str,
        interval: float = 10.0,
        stale_after: float = 300.0,
        reconcile: bool = False,
        batch: int = 5000,
        lease_grace: float = 5.0,
        webhook_events_retention: float | None = None,
    ) -> None:
        self.ledger = ledger
        self.kicker = kicker
        self.queue = queue
        self.interval = interval
        self.stale_after = stale_after
        self.reconcile = reconcile
        self.batch = batch
        self.lease_grace = lease_grace
        self.webhook_events_retention = webhook_events_retention
        self._status_store = PostgresStatusStore(ledger.pool, schema=ledger.schema)

    async def sweep(self) -> int:
        """One sweep if it is this process's turn; returns how many ids were published again."""
        if not await self.ledger.take_turn(f"{self.name}:{self.queue}", self.interval):
            return 0
        woken = await self.ledger.wake_deferred(limit=self.batch, again_after=self.stale_after)
        if woken:
            chunks = await self.kicker.kick(woken)
            log.info("sweeper: %d deferred message(s) due, published in %d chunk(s)", len(woken), chunks)
        unclaimed = await queued_chunks(self.kicker.broker, self.queue) == 0
        ids = await self.ledger.stale(
            stale_after=self.stale_after,
            unknown=self.reconcile,
            unclaimed=unclaimed,
            limit=self.batch,
            expired_after=min(self.lease_grace, self.stale_after),
        )
        if ids:
            chunks = await self.kicker.kick(ids)
            log.info("sweeper: %d message(s) kicked again in %d chunk(s)", len(ids), chunks)
        if self.webhook_events_retention is not None:
            pruned = await self._status_store.prune_webhook_events(
                older_than=self.webhook_events_retention, limit=self.batch
            )
            if pruned:
                log.info("sweeper: %d webhook idempotency token(s) past retention deleted", pruned)
        return len(woken) + len(ids)

    async def run(self) -> None:
        """Sweep every ``interval`` seconds until cancelled; errors are logged, never fatal."""
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("sweeper: the sweep failed; trying again in %g s", self.interval)
            await asyncio.sleep(self.interval)
