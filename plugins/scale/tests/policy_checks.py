"""Per-message-id checks of a chaos campaign, for either in-doubt policy (issue #12).

Shared by ``test_chaos_policies.py`` (SIGKILL under Twilio's ambiguity), ``test_campaigns.py`` (T6,
a worker frozen past its lease) and ``test_service_restarts.py`` (T7, T8), which load this file the
way they load ``test_campaigns.py`` (test modules cannot import each other under
``--import-mode=importlib``). ``scene`` is ``test_campaigns.py``'s ``Scene``.

From the emulator's ``creates_by_message_id()`` and the ledger's rows, per message id:

- nothing created twice, nothing ACCEPTED without its own create at the emulator (the provider id
  recorded is the one message the emulator created for that id), nothing lost (every row either
  ACCEPTED or, under ``hold``, UNKNOWN), the counters equal to the rows (T11);
- ``probe_then_resend``: every message ACCEPTED, created once;
- ``hold``: every message in doubt stays UNKNOWN (reported ``OUTCOME_UNKNOWN``), was claimed once and
  never resent (created at most once), and is one the test allows to be in doubt (``may_be_in_doubt``:
  the claims open at the fault); everything else ACCEPTED, created once.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from messaging_core import ConnectorErrorCodes
from messaging_core.campaigns import SendState

POLICIES = ("hold", "probe_then_resend")


def open_states(policy: str) -> tuple[str, ...]:
    """The states a settled campaign has left: under ``hold``, UNKNOWN is where a doubt stays."""
    return ("pending", "submitting") if policy == "hold" else ("pending", "submitting", "unknown")


async def read_counts(scene: Any, campaign_id: str, within: float) -> dict[str, int]:
    """The campaign's counts, retried while the test's pool reconnects (after a PostgreSQL restart)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return dict((await scene.ledger.progress(campaign_id)).counts)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def wait_settled(scene: Any, campaign_id: str, policy: str, within: float) -> dict[str, int]:
    """Until no row is in ``open_states(policy)``; the counts by state."""
    states = open_states(policy)
    try:
        async with asyncio.timeout(within):
            while True:
                counts = await read_counts(scene, campaign_id, within)
                if not any(counts.get(state) for state in states):
                    return counts
                await asyncio.sleep(0.1)
    except TimeoutError:
        counts = await read_counts(scene, campaign_id, 10)
        logs = "\n".join(group.tail() for group in scene.workers)
        message = f"campaign {campaign_id} not settled after {within} s ({policy}): {counts}\n{logs}"
        raise AssertionError(message) from None


async def snapshot(scene: Any, campaign_id: str, *states: str, within: float = 20) -> set[str]:
    """Ids of the campaign's rows in ``states`` (retried while the pool reconnects)."""
    deadline = time.monotonic() + within
    while True:
        try:
            async with scene.pool.acquire() as conn:
                rows = await conn.fetch(
                    f"select message_id from {scene.schema}.sends where campaign_id = $1 and state = any($2::text[])",
                    campaign_id,
                    list(states),
                )
            return {row["message_id"] for row in rows}
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def _message_id(url: str | None) -> str:
    assert url is not None
    return parse_qs(urlsplit(url).query)["MessageId"][0]


class Verdict(NamedTuple):
    """What a settled campaign shows, per message id."""

    policy: str
    rows: dict[str, Any]
    creates: collections.Counter[str]
    counts: dict[str, int]
    duplicates: dict[str, int]
    without_create: dict[str, Any]
    accepted: set[str]
    in_doubt: set[str]
    lost: set[str]
    settle: float

    def summary(self, label: str) -> str:
        created_in_doubt = sum(self.creates[mid] for mid in self.in_doubt)
        return (
            f"{label} {self.policy}: {len(self.rows)} messages; created {sum(self.creates.values())}, "
            f"duplicates {len(self.duplicates)}, recorded-without-create {len(self.without_create)}, "
            f"in doubt {len(self.in_doubt)} ({created_in_doubt} of them created), lost {len(self.lost)}, "
            f"settled {self.settle:.1f} s after the fault; counts {self.counts}"
        )


async def verdict(scene: Any, campaign_id: str, ids: list[str], policy: str, settle: float) -> Verdict:
    """Read the rows and the emulator's creates of a settled campaign."""
    rows = {row["message_id"]: row for row in await scene.rows(campaign_id)}
    creates = collections.Counter(scene.emulator.creates_by_message_id())
    message_of_sid = {sid: _message_id(m.status_callback) for sid, m in scene.emulator.messages.items()}
    accepted = {mid for mid, row in rows.items() if row["state"] == "accepted"}
    in_doubt = {mid for mid, row in rows.items() if row["state"] == "unknown"}
    return Verdict(
        policy=policy,
        rows=rows,
        creates=creates,
        counts=dict((await scene.ledger.progress(campaign_id)).counts),
        duplicates={mid: n for mid, n in creates.items() if n > 1},
        without_create={
            mid: rows[mid]["provider_id"]
            for mid in accepted
            if creates[mid] == 0 or message_of_sid.get(rows[mid]["provider_id"]) != mid
        },
        accepted=accepted,
        in_doubt=in_doubt,
        lost={mid for mid in ids if mid not in accepted and mid not in in_doubt},
        settle=settle,
    )


async def check(scene: Any, campaign_id: str, ids: list[str], v: Verdict, may_be_in_doubt: set[str]) -> None:
    """The per-id criteria (module docstring); ``may_be_in_doubt``: the ids allowed to stay UNKNOWN under hold."""
    rows, creates = v.rows, v.creates
    assert sorted(rows) == sorted(ids)
    assert v.duplicates == {}
    assert v.without_create == {}
    assert v.lost == set(), {mid: dict(rows[mid]) for mid in v.lost}
    assert set(creates) <= set(ids)
    for mid in v.accepted:
        assert creates[mid] == 1, (mid, dict(rows[mid]))
    if v.policy == "probe_then_resend":
        assert v.counts == {"accepted": len(ids)}
    else:
        assert v.in_doubt <= may_be_in_doubt, {mid: dict(rows[mid]) for mid in v.in_doubt - may_be_in_doubt}
        for mid in v.in_doubt:
            row = rows[mid]
            assert row["attempts"] == 1, dict(row)  # held: never resent
            assert creates[mid] <= 1, dict(row)
            entry = await scene.ledger.get(mid)
            assert entry is not None
            assert entry.state is SendState.UNKNOWN
            result = entry.to_result()
            assert result is not None
            assert result.error is not None
            assert result.error.code == ConnectorErrorCodes.OUTCOME_UNKNOWN
    await scene.assert_counters_match_rows(campaign_id)
