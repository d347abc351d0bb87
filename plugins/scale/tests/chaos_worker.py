"""Worker processes with a faulty ledger, for the chaos tests T3 and T4 (``test_campaigns.py``).

Not a test module (pytest collects ``test_*.py`` only), and nothing outside the tests uses it.
The tests start it with Taskiq's own worker, the way ``messaging worker`` starts
``messaging_scale.worker:broker_from_environment``, each broker factory here giving the worker
its ledger through ``ledger_factory``::

    MESSAGING_WORKER_CONFIG=messaging.toml CHAOS_CRASH_LOG=crashes.txt \
        taskiq worker chaos_worker:crash_after_accept --app-dir plugins/scale/tests -w 2

- ``crash_after_accept``: the process ends with ``os._exit(1)`` right after the provider accepted
  the first attempt of a message whose SHA-1 is 0 modulo ``CRASH_MODULUS``, before the ledger
  records it (the crash window of the design). ``$CHAOS_CRASH_LOG`` names a file that gets the
  message id first.
- ``unsafe_claim``: the same crashes, with a claim that ignores the message's state (the ledger
  check disabled): the control run that must show duplicates.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from taskiq import AsyncBroker

from messaging_core.campaigns import Claim, SendOutcome, SendState
from messaging_scale import PostgresLedger
from messaging_scale.worker import broker_from_environment

CRASH_MODULUS = 50  # about 2 % of the ids
CRASH_LOG_ENV = "CHAOS_CRASH_LOG"


def crash_hit(message_id: str) -> bool:
    """Whether the crashing ledger ends the process on this message's first accepted attempt."""
    return int(hashlib.sha1(message_id.encode()).hexdigest(), 16) % CRASH_MODULUS == 0


def _note_crash(message_id: str) -> None:
    # Synchronous on purpose: the process ends right after, nothing else may run in between.
    crash_log = os.environ.get(CRASH_LOG_ENV)
    if crash_log:
        with Path(crash_log).open("a", encoding="utf-8") as file:
            file.write(message_id + "\n")
            file.flush()
            os.fsync(file.fileno())


class CrashAfterAcceptLedger(PostgresLedger):
    """Ends the process between the provider's 201 and the ledger write, for some first attempts."""

    async def record(self, claim: Claim, outcome: SendOutcome) -> bool:
        if outcome.state is SendState.ACCEPTED and claim.attempts == 1 and crash_hit(claim.message_id):
            _note_crash(claim.message_id)
            os._exit(1)
        return await super().record(claim, outcome)


class UnsafeClaimLedger(CrashAfterAcceptLedger):
    """The control: a claim that ignores the state (a live lease, a message in doubt), crashes included."""

    def __init__(self, pool: Any, *, schema: str = "messaging", page_size: int = 1000, **batching: Any) -> None:
        # Claims one at a time, through the one statement replaced below (a batch would claim safely).
        super().__init__(pool, schema=schema, page_size=page_size, batch_size=1)
        self._sql.claim = (
            f"update {self.schema}.sends set state = 'submitting', attempts = attempts + 1, fence = fence + 1, "
            "claimed_at = now(), lease_until = now() + make_interval(secs => $2), updated_at = now(), "
            "claim_token = $3 where message_id = $1 and state <> 'cancelled' returning fence, attempts, lease_until"
        )


def crash_after_accept() -> AsyncBroker:
    """The broker of a worker process whose ledger crashes after some accepted first attempts."""
    return broker_from_environment(ledger_factory=CrashAfterAcceptLedger.from_url)


def unsafe_claim() -> AsyncBroker:
    """The broker of a worker process whose ledger crashes likewise and claims whatever the state."""
    return broker_from_environment(ledger_factory=UnsafeClaimLedger.from_url)
