"""``TaskiqCampaign``: the handle of a campaign that workers send, read from the ledger.

Everything it reads and writes is in the PostgreSQL ledger (counters, rows, the campaign's pause
and cancel flags that every worker obeys), so any process that reaches the database follows or
controls a campaign: the process that submitted it, or ``messaging campaign`` on another machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from messaging_core.campaigns import (
    CampaignProgress,
    InDoubtPolicy,
    LedgerEntry,
    SendState,
    Submission,
    not_attempted,
)
from messaging_core.results import ConnectorResult, SendResult
from messaging_scale._chunks import ChunkKicker
from messaging_scale._ledger import CampaignInfo, PostgresLedger

__all__ = ["TaskiqCampaign"]


class TaskiqCampaign:
    """A campaign sent by workers (the ``CampaignHandle`` of ``TaskiqDispatcher``), read from the ledger.

    :param campaign_id: the campaign.
    :param ledger: the ledger the workers use.
    :param kicker: publishes chunks again on ``resume``.
    :param in_doubt: the workers' policy: with ``hold``, an UNKNOWN message is settled (held for
        a callback or an operator); with ``probe_then_resend`` workers reconcile it, and ``wait``
        waits for that unless the number of UNKNOWN messages has not moved for ``settle_time``.
    :param poll_interval: seconds between two reads of the counters while waiting.
    """

    def __init__(
        self,
        campaign_id: str,
        *,
        ledger: PostgresLedger,
        kicker: ChunkKicker | None = None,
        in_doubt: InDoubtPolicy = "hold",
        poll_interval: float = 0.5,
        settle_time: float = 30.0,
    ) -> None:
        self.campaign_id = campaign_id
        self.ledger = ledger
        self._kicker = kicker
        self.in_doubt: InDoubtPolicy = in_doubt
        self.poll_interval = poll_interval
        self.settle_time = settle_time
        self.submission: Submission | None = None
        """From ``TaskiqDispatcher.submit``: ids new to the ledger and ids it already held; None for other handles."""
        self._unknown: tuple[int, float] = (-1, 0.0)
        """The last UNKNOWN count seen, and since when (``time.monotonic``)."""

    def __repr__(self) -> str:
        return f"<TaskiqCampaign {self.campaign_id!r} in_doubt={self.in_doubt!r}>"

    async def progress(self) -> CampaignProgress:
        """Counts by ledger state, from the counters the transitions keep (no scan of the rows).

        ``failure`` says why, when workers could not send the campaign at all.
        """
        progress = await self.ledger.progress(self.campaign_id)
        info = await self.ledger.campaign(self.campaign_id)
        if info is None or info.failure is None:
            return progress
        return CampaignProgress(self.campaign_id, progress.counts, failure=info.failure)

    def is_settled(self, progress: CampaignProgress) -> bool:
        """Whether no message is left to work on: each final, or held in doubt.

        A paused campaign is not settled while it has PENDING messages, unless it failed
        (``progress.failure``: nothing will happen until someone fixes it and resumes it).
        """
        if progress.failure is not None:
            return True
        if progress.count(SendState.PENDING) or progress.count(SendState.SUBMITTING):
            return False
        unknown = progress.count(SendState.UNKNOWN)
        if unknown == 0 or self.in_doubt == "hold":
            return True
        now = time.monotonic()
        if unknown != self._unknown[0]:
            self._unknown = (unknown, now)
        # Workers reconcile these; the ones left after settle_time are held (several candidates,
        # or a provider that cannot tell).
        return now - self._unknown[1] >= self.settle_time

    async def wait(self) -> CampaignProgress:
        """Until no message is left to work on, or the campaign failed (``failure``); bound it with a timeout."""
        while True:
            progress = await self.progress()
            if self.is_settled(progress):
                return progress
            await asyncio.sleep(self.poll_interval)

    async def results(self) -> AsyncIterator[tuple[str, ConnectorResult[SendResult]]]:
        """``(message_id, result)`` in input order, each once it is settled (see ``CampaignHandle.results``)."""
        async for entry in self.ledger.results(self.campaign_id):
            current: LedgerEntry | None = entry
            while current is not None and not self._entry_settled(current):
                if self.is_settled(await self.progress()):
                    break
                await asyncio.sleep(self.poll_interval)
                current = await self.ledger.get(entry.message_id)
            final = current or entry
            yield final.message_id, final.to_result() or not_attempted("the campaign ended")

    def _entry_settled(self, entry: LedgerEntry) -> bool:
        return entry.state.is_final or (entry.state is SendState.UNKNOWN and self.in_doubt == "hold")

    async def info(self) -> CampaignInfo | None:
        """The campaign as ``TaskiqDispatcher.submit`` registered it (connector, flags); None when it did not.

        Rows added by another dispatcher kind have no registration: ``cancel`` still works on
        them, ``pause`` and ``resume`` do nothing (workers read the flags from the registration).
        """
        return await self.ledger.campaign(self.campaign_id)

    async def cancel(self) -> None:
        """PENDING messages become CANCELLED; workers cancel the ones that come back to PENDING."""
        await self.cancel_and_count()

    async def cancel_and_count(self) -> int:
        """``cancel``, and how many PENDING messages this call moved to CANCELLED (the command line says it)."""
        await self.ledger.set_campaign_flags(self.campaign_id, cancelled=True)
        return await self.ledger.cancel(self.campaign_id)

    async def pause(self) -> None:
        """Workers start no new provider call for this campaign (calls in flight finish)."""
        await self.ledger.set_campaign_flags(self.campaign_id, paused=True)

    async def resume(self) -> None:
        """Clear the pause and publish the campaign's PENDING messages again."""
        await self.ledger.set_campaign_flags(self.campaign_id, paused=False)
        if self._kicker is None:
            return  # the sweeper picks them up
        after = 0
        while page := await self.ledger.open_page(self.campaign_id, after=after):
            await self._kicker.kick([message_id for _, message_id in page])
            after = page[-1][0]
