"""Chaos campaigns for both in-doubt policies, with Twilio's ambiguity turned on (issue #12).

Real ``messaging worker`` processes, real PostgreSQL, Redis and RabbitMQ; the Twilio emulator of
``test_campaigns.py``'s scene (loaded from its file: test modules cannot import each other under
``--import-mode=importlib``), with its list lagging behind its creates by ``LIST_LAG`` seconds
(longer than ``probe_grace``, so an early probe sees nothing) and, on a known set of receivers,
the faults that leave the client in doubt:

- ``create_then_timeout``: created, the 201 held past the client's request timeout;
- ``timeout_before_create``: nothing stored, the request held past the timeout, then dropped;
- ``500_after_create``: created, answered 500.

One worker process is SIGKILLed mid-campaign (Taskiq's manager starts it again). Then, per message
id, from the emulator's ``creates_by_message_id()`` and the ledger's rows:

- nothing created twice, nothing ACCEPTED without its own create at the emulator;
- ``probe_then_resend``: every message ACCEPTED and created once (the never-created ones resent
  once, after the quiet period);
- ``hold``: every faulted message stays UNKNOWN (reported ``OUTCOME_UNKNOWN``, the connector's error
  code kept as the reason), never resent; any other UNKNOWN is a claim the killed worker held;
  everything else ACCEPTED and created once.

Each run prints one summary line (created, duplicates, recorded without a create, in doubt, lost,
seconds to settle after the SIGKILL).
"""

from __future__ import annotations

import asyncio
import collections
import importlib.util
import time
from pathlib import Path
from typing import Any

import pytest

from messaging_core import ConnectorErrorCodes
from messaging_core.campaigns import SendState

_spec = importlib.util.spec_from_file_location("_scale_campaigns", Path(__file__).with_name("test_campaigns.py"))
assert _spec is not None
assert _spec.loader is not None
_campaigns: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_campaigns)

scene = _campaigns.scene  # the fixture, registered for this module
campaign = _campaigns.campaign

pytestmark = pytest.mark.services

N = 300
PACE = 50  # per sender; 2 senders: 100 messages/s, about 3 s of sending
LEASE = 4.0
ABSENT_AFTER = 1.0
PROBE_GRACE = 0.5
REQUEST_TIMEOUT = 2  # the scene's connector; the emulator holds faulted requests for 3 s (fault_delay)
LIST_LAG = 3.0  # > probe_grace and the request timeout; < lease + absent_after (the residual window)
FAULTS = ("create_then_timeout", "timeout_before_create", "500_after_create")
CREATING = {"create_then_timeout", "500_after_create"}
LATENCY = 0.5  # per answer: each worker always holds claims in flight, so the SIGKILL cuts some off


def _faulted(ids: list[str]) -> dict[str, str]:
    """Message id -> fault: every 25th message from the 7th, the three faults in turn (4 of each)."""
    return {ids[i]: FAULTS[k % len(FAULTS)] for k, i in enumerate(range(7, len(ids), 25))}


async def _snapshot(scene: Any, campaign_id: str, state: str) -> set[str]:
    async with scene.pool.acquire() as conn:
        rows = await conn.fetch(
            f"select message_id from {scene.schema}.sends where campaign_id = $1 and state = $2", campaign_id, state
        )
    return {row["message_id"] for row in rows}


async def _wait_settled(scene: Any, campaign_id: str, open_states: tuple[str, ...], within: float) -> dict[str, int]:
    """Until no row is in ``open_states``; the counts by state."""
    try:
        async with asyncio.timeout(within):
            while True:
                counts = dict((await scene.ledger.progress(campaign_id)).counts)
                if not any(counts.get(state) for state in open_states):
                    return counts
                await asyncio.sleep(0.1)
    except TimeoutError:
        counts = dict((await scene.ledger.progress(campaign_id)).counts)
        logs = "\n".join(group.tail() for group in scene.workers)
        raise AssertionError(f"campaign {campaign_id} not settled after {within} s: {counts}\n{logs}") from None


@pytest.mark.parametrize("policy", ["hold", "probe_then_resend"])
async def test_chaos_campaign_under_list_lag_ambiguous_faults_and_a_sigkill(scene: Any, policy: str) -> None:
    emu = scene.emulator
    emu.list_lag = LIST_LAG
    emu.latency = LATENCY
    campaign_id = f"chaos-{policy}"
    messages = campaign(campaign_id, N)
    ids = [m.id for m in messages]
    receiver_of = {m.id: m.receiver.address for m in messages if m.receiver is not None}
    faulted = _faulted(ids)
    for mid, fault in faulted.items():
        emu.inject(fault, match_to=receiver_of[mid])
    scene.write_config(
        in_doubt=policy,
        messages_per_second=PACE,
        chunk_size=10,
        lease=LEASE,
        absent_after=ABSENT_AFTER,
        probe_grace=PROBE_GRACE,
    )
    workers = scene.start_workers(2)
    await workers.wait_children(2)
    await scene.submit(messages, campaign_id)

    # SIGKILL a busy worker once a quarter of the campaign is sent; its manager starts it again.
    async with asyncio.timeout(30):
        while True:
            if (await scene.ledger.progress(campaign_id)).count("accepted") >= N // 4:
                break
            await asyncio.sleep(0.05)
    victim = workers.kill_child()
    killed_at = time.monotonic()
    held_by_victim = await _snapshot(scene, campaign_id, "submitting")  # superset of the victim's claims
    await workers.wait_children(2)

    open_states = ("pending", "submitting") if policy == "hold" else ("pending", "submitting", "unknown")
    counts = await _wait_settled(scene, campaign_id, open_states, within=60)
    settle = time.monotonic() - killed_at

    rows = {row["message_id"]: row for row in await scene.rows(campaign_id)}
    assert sorted(rows) == sorted(ids)
    creates = emu.creates_by_message_id()
    message_of_sid = {sid: _campaigns._message_id(m.status_callback) for sid, m in emu.messages.items()}
    duplicates = {mid: n for mid, n in creates.items() if n > 1}
    accepted = {mid for mid, row in rows.items() if row["state"] == "accepted"}
    without_create = {
        mid: rows[mid]["provider_id"]
        for mid in accepted
        if creates[mid] == 0 or message_of_sid.get(rows[mid]["provider_id"]) != mid
    }
    in_doubt = {mid for mid, row in rows.items() if row["state"] == "unknown"}
    lost = {mid for mid in ids if mid not in accepted and mid not in in_doubt}
    reasons = collections.Counter(str(rows[mid]["error_code"]) for mid in in_doubt)
    print(
        f"\nchaos {policy}: {N} messages, {len(faulted)} faulted, worker {victim} SIGKILLed "
        f"({len(held_by_victim)} claims open at the kill); created {sum(creates.values())}, "
        f"duplicates {len(duplicates)}, recorded-without-create {len(without_create)}, in doubt {len(in_doubt)} "
        f"({sum(creates[mid] for mid in in_doubt)} of them created; reasons {dict(reasons)}), "
        f"lost {len(lost)}, settled {settle:.1f} s after the SIGKILL; counts {counts}"
    )

    assert duplicates == {}
    assert without_create == {}
    assert lost == set(), {mid: dict(rows[mid]) for mid in lost}
    assert set(creates) <= set(ids)
    for mid in accepted:
        assert creates[mid] == 1, (mid, dict(rows[mid]))
    if policy == "probe_then_resend":
        assert counts == {"accepted": N}
        for mid, fault in faulted.items():
            row = rows[mid]
            if mid in held_by_victim:
                # Cut off by the kill, perhaps before the emulator read it (the fault then still
                # waits for the next attempt): only "created once", checked above.
                continue
            if fault in CREATING:  # found by the probe once the list showed it: never resent
                assert (row["reconciled"], row["attempts"]) == (True, 1), (fault, dict(row))
            else:  # proven absent after the quiet period, then sent once
                assert row["attempts"] == 2, (fault, dict(row))
    else:
        assert set(faulted) <= in_doubt
        # Any other message in doubt was claimed by the killed worker, its lease ran out.
        assert in_doubt - set(faulted) <= held_by_victim
        for mid in in_doubt:
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
        for mid, fault in faulted.items():
            if mid in held_by_victim:
                continue  # cut off by the kill, perhaps before the emulator read it: created once at most
            assert creates[mid] == (1 if fault in CREATING else 0), (fault, creates[mid])
            assert rows[mid]["error_code"], (fault, dict(rows[mid]))  # its call's answer, kept as the reason
    await scene.assert_counters_match_rows(campaign_id)
