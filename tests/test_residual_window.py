"""The residual window of ``probe_then_resend``, shown: docs/scale-out.md says a provider whose list
lags behind its creates by more than the lease plus the quiet period (``absent_after``) can still
yield a duplicate. These tests make that window small (a 1 s lease, a 0.2 s quiet period) and put a
message in doubt against the real Twilio connector and the emulator, whose list shows a new message
``list_lag`` seconds late:

- a lag inside the window's bound (0.3 s): the probe finds the message, one create, reconciled;
- a lag beyond it (4 s): the probe sees nothing for the whole quiet period, concludes "absent" and
  sends again, two creates: the duplicate the docs promise is possible, and nothing worse (the
  message ends ACCEPTED, once in the ledger);
- either lag under ``hold``: nothing is resent, the message stays in doubt.

No status callbacks here (the emulator does not advance), so the probe is the only way to settle.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest

from messaging_core import Endpoint, Message, TextContent
from messaging_core.campaigns import InProcessDispatcher
from messaging_twilio_sms import TwilioChannelSchemas, TwilioSmsConnector
from messaging_twilio_sms.emulator import TwilioEmulator

SENDER = "+15005550006"
LEASE, ABSENT_AFTER = 1.0, 0.2


async def _run(list_lag: float, in_doubt: str) -> tuple[Counter[str], str, bool]:
    emulator = TwilioEmulator(auto_advance=False, fault_delay=1.0, list_lag=list_lag)
    await emulator.start()
    connector = TwilioSmsConnector(
        TwilioChannelSchemas.TWILIO_SMS,
        {
            "ApiBaseUrl": emulator.base_url,
            "AccountSid": emulator.account_sid,
            "AuthToken": emulator.auth_token,
            "RequestTimeout": 0.3,
        },
    )
    try:
        assert (await connector.initialize()).is_success
        dispatcher = InProcessDispatcher(
            connector,
            in_doubt=in_doubt,
            lease=LEASE,
            request_timeout=0.3,
            absent_after=ABSENT_AFTER,
            probe_grace=0.05,
        )
        message = Message(uuid.uuid4().hex, Endpoint.phone(SENDER), Endpoint.phone("+15551230077"), TextContent("hi"))
        # Created, then the answer comes after the client gave up: the message is in doubt.
        emulator.inject("create_then_timeout", match_to="+15551230077")
        handle = await dispatcher.submit([message])
        async with asyncio.timeout(20):
            await handle.wait()
        entry = await dispatcher.ledger.get(message.id)
        assert entry is not None
        created = Counter(m.to for m in emulator.messages.values())
        return created, entry.state.value, entry.reconciled
    finally:
        await connector.shutdown()
        await emulator.stop()


async def test_a_lag_inside_the_window_is_reconciled_without_a_second_create() -> None:
    created, state, reconciled = await _run(list_lag=0.3, in_doubt="probe_then_resend")
    assert created == Counter({"+15551230077": 1})
    assert (state, reconciled) == ("accepted", True)


async def test_a_lag_beyond_lease_plus_quiet_period_can_duplicate() -> None:
    lag = 4.0
    assert lag > LEASE + ABSENT_AFTER + 1.0  # beyond the window, with room for the probes' own timing
    created, state, _ = await _run(list_lag=lag, in_doubt="probe_then_resend")
    assert created == Counter({"+15551230077": 2}), "the residual window: proven 'absent' too early, sent again"
    assert state == "accepted"


@pytest.mark.parametrize("lag", [0.3, 4.0])
async def test_hold_never_resends_whatever_the_lag(lag: float) -> None:
    """Under hold a message in doubt waits for a callback or an operator (``campaign reconcile``)."""
    created, state, _ = await _run(list_lag=lag, in_doubt="hold")
    assert created == Counter({"+15551230077": 1})
    assert state == "unknown"
