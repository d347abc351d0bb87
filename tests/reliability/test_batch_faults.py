"""A 5,000-message batch with 10 % injected faults, cancelled halfway: nothing lost, nothing doubled.

Every message id appears exactly once in the result with a truthful outcome: sent (with the SID the
emulator created for that receiver), failed (with a stable code; outcome ``MAY_HAVE_BEEN_SENT`` exactly where
the emulator did create the message), or not attempted (and then the emulator never saw it).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from messaging_core import BatchProgress, ConnectorErrorCodes, FailureOutcome, MessageBatch, MessageBuilder
from messaging_twilio_sms import TwilioChannelSchemas, TwilioSmsConnector
from messaging_twilio_sms.emulator import POST_CREATE_FAULTS, TwilioEmulator

TOTAL = 5_000
SENDER = "+15005550006"
FAULTS = ["429", "500", "502", "503", "html_error", "malformed_json", "truncated_json", "no_sid", "reset_after_create"]


def receiver(index: int) -> str:
    return f"+1555{index:07d}"


async def test_batch_with_faults_and_cancellation_accounts_for_every_message() -> None:
    rng = random.Random(20261126)
    faulted = {index: rng.choice(FAULTS) for index in rng.sample(range(TOTAL), TOTAL // 10)}
    async with TwilioEmulator(auto_advance=False) as emu:
        for index, fault in faulted.items():
            # 429 twice: more than the connector's retries (MaxRetries=1), so it surfaces as a failure.
            emu.inject(fault, count=2 if fault == "429" else 1, match_to=receiver(index))
        connector = TwilioSmsConnector(
            TwilioChannelSchemas.TWILIO_SMS,
            {
                "AccountSid": emu.account_sid,
                "AuthToken": emu.auth_token,
                "ApiBaseUrl": emu.base_url,
                "MaxRetries": 1,
                "MaxConcurrency": 32,
            },
        )
        batch = MessageBatch(
            [
                MessageBuilder()
                .with_phone_sender(SENDER)
                .with_phone_receiver(receiver(i))
                .with_text_content("x")
                .build()
                for i in range(TOTAL)
            ]
        )
        cancel = asyncio.Event()

        def on_progress(progress: BatchProgress) -> None:
            if progress.done >= TOTAL // 2:
                cancel.set()

        async with connector:
            result = await connector.send_batch(batch, on_progress=on_progress, cancel=cancel)

        # Every message exactly once, in input order.
        assert list(result.results) == [m.id for m in batch.messages]
        created_by_receiver = Counter(m.to for m in emu.messages.values())
        assert max(created_by_receiver.values()) == 1, "a message was created twice"
        sid_of = {m.to: sid for sid, m in emu.messages.items()}

        outcomes: Counter[str] = Counter()
        for index, message in enumerate(batch.messages):
            outcome = result.results[message.id]
            to = receiver(index)
            if outcome.is_success:
                outcomes["sent"] += 1
                assert outcome.value is not None
                assert outcome.value.remote_message_id == sid_of[to]
                assert index not in faulted or faulted[index] == "429"  # 429 only consumed retries
            elif outcome.error_code == ConnectorErrorCodes.NOT_ATTEMPTED:
                outcomes["not attempted"] += 1
                assert to not in created_by_receiver
                assert outcome.error is not None
                assert outcome.error.retryable
            else:
                outcomes["failed"] += 1
                assert index in faulted, f"message {index} failed without a fault: {outcome.error}"
                assert outcome.error is not None
                created = to in created_by_receiver
                assert created == (faulted[index] in POST_CREATE_FAULTS)
                assert (outcome.error.outcome is FailureOutcome.MAY_HAVE_BEEN_SENT) == created or faulted[index] in (
                    "500",
                    "502",
                    "503",
                    "html_error",
                ), (faulted[index], outcome.error)
                assert not outcome.error.retryable or not created

        assert outcomes["sent"] + outcomes["failed"] + outcomes["not attempted"] == TOTAL
        assert outcomes["not attempted"] > 0, "the cancellation stopped nothing"
        assert outcomes["sent"] >= TOTAL // 3
        created_failures = sum(
            1
            for index, fault in faulted.items()
            if fault in POST_CREATE_FAULTS and receiver(index) in created_by_receiver
        )
        # What the emulator holds = what we report as sent + what we report as "outcome unknown".
        assert len(emu.messages) == outcomes["sent"] + created_failures
