"""Campaigns: the send pipeline, its stores and the dispatchers that run it (the campaign SPI).

One pipeline, written once (``SendPipeline``), runs every message of a campaign through::

    pace (RateLimiter.reserve) → claim (SendLedger.claim) → connector.attempt → record (fenced) → report

Modules, from the contracts up:

- ``protocols``: what a ledger, a rate limiter, a status store, a dispatcher and a campaign handle
  promise, and the values they exchange (``SendState``, ``Claim``, ``SendOutcome``...);
- ``pipeline``: ``SendPipeline``, one message through that protocol;
- ``memory``: the in-memory ledger and status store (``MemoryRateLimiter`` is the one
  ``send_batch`` paces with);
- ``inprocess``: ``InProcessDispatcher``, campaigns on asyncio tasks of this process (the default kind);
- ``registrations``: how plugins contribute dispatcher kinds and stores, and the ``[dispatcher]`` table.

The scale-out distribution implements the same protocols on PostgreSQL, Redis and Taskiq; the
conformance suites in ``messaging_core.testing`` pin what every implementation shares.
"""

from __future__ import annotations

from messaging_core._batching import not_attempted
from messaging_core._ratelimit import MemoryRateLimiter
from messaging_core.campaigns.inprocess import InProcessCampaign, InProcessDispatcher
from messaging_core.campaigns.memory import MemoryLedger, MemoryStatusStore
from messaging_core.campaigns.pipeline import SendAttempt, SendPipeline, add_messages
from messaging_core.campaigns.protocols import (
    LEASE_EXPIRED,
    PROVIDER_ID_COLLISION,
    CampaignHandle,
    CampaignProgress,
    Claim,
    Dispatcher,
    InDoubtPolicy,
    LedgerEntry,
    LedgerProviderIds,
    RateLimiter,
    SendLedger,
    SendOutcome,
    SendState,
    StatusStore,
    Submission,
    attach_provider_ids,
)
from messaging_core.campaigns.registrations import DispatcherRegistration, DispatcherSettings, StoreRegistration

__all__ = [
    "LEASE_EXPIRED",
    "PROVIDER_ID_COLLISION",
    "CampaignHandle",
    "CampaignProgress",
    "Claim",
    "Dispatcher",
    "DispatcherRegistration",
    "DispatcherSettings",
    "InDoubtPolicy",
    "InProcessCampaign",
    "InProcessDispatcher",
    "LedgerEntry",
    "LedgerProviderIds",
    "MemoryLedger",
    "MemoryRateLimiter",
    "MemoryStatusStore",
    "RateLimiter",
    "SendAttempt",
    "SendLedger",
    "SendOutcome",
    "SendPipeline",
    "SendState",
    "StatusStore",
    "StoreRegistration",
    "Submission",
    "add_messages",
    "attach_provider_ids",
    "not_attempted",
]
