"""Shutdown while sends are in flight: they finish truthfully, nothing leaks, nothing escapes."""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest

from messaging_core import ConnectorErrorCodes, ConnectorState, ConnectorStateError, MessageBatch, MessageBuilder
from messaging_twilio_sms import TwilioChannelSchemas, TwilioSmsConnector
from messaging_twilio_sms.emulator import TwilioEmulator


async def test_shutdown_during_a_batch_leaves_truthful_results_and_no_leaks() -> None:
    async with TwilioEmulator(auto_advance=False, latency=0.05) as emu:
        connector = TwilioSmsConnector(
            TwilioChannelSchemas.TWILIO_SMS,
            {
                "AccountSid": emu.account_sid,
                "AuthToken": emu.auth_token,
                "ApiBaseUrl": emu.base_url,
                "MaxConcurrency": 8,
            },
        )
        await connector.initialize()
        batch = MessageBatch(
            [
                MessageBuilder()
                .with_phone_sender("+15005550006")
                .with_phone_receiver(f"+1555000{i:04d}")
                .with_text_content("x")
                .build()
                for i in range(200)
            ]
        )
        tasks_before = set(asyncio.all_tasks())
        sending = asyncio.create_task(connector.send_batch(batch))
        async with asyncio.timeout(10):
            while emu.create_requests < 20:  # noqa: ASYNC110 - polling the emulator's counter, bounded
                await asyncio.sleep(0.01)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await connector.shutdown()
            result = await sending  # no exception escapes
            gc.collect()
        assert connector.state is ConnectorState.SHUTDOWN
        counts = result.counts()
        assert set(counts) <= {"sent", ConnectorErrorCodes.NOT_ATTEMPTED}, counts
        assert counts["sent"] == len(emu.messages), "every send in flight finished and was reported"
        assert counts.get(ConnectorErrorCodes.NOT_ATTEMPTED, 0) == 200 - len(emu.messages)
        assert counts[ConnectorErrorCodes.NOT_ATTEMPTED] > 0
        # The emulator's own server-side handlers share this loop; only the client side is judged.
        leaked = (
            {
                t
                for t in asyncio.all_tasks()
                if not t.done() and "RequestHandler" not in t.get_coro().__qualname__  # type: ignore[union-attr]
            }
            - tasks_before
            - {asyncio.current_task()}
        )
        assert not leaked, leaked
        unclosed = [w for w in caught if "Unclosed" in str(w.message) or issubclass(w.category, ResourceWarning)]
        assert not unclosed, [str(w.message) for w in unclosed]


async def test_send_after_shutdown_raises_a_state_error_not_a_network_error() -> None:
    async with TwilioEmulator() as emu:
        connector = TwilioSmsConnector(
            TwilioChannelSchemas.SIMPLE_SMS,
            {"AccountSid": emu.account_sid, "AuthToken": emu.auth_token, "ApiBaseUrl": emu.base_url},
        )
        async with connector:
            pass
        message = MessageBuilder().with_phone_sender("+15005550006").with_phone_receiver("+15551230001")
        with pytest.raises(ConnectorStateError):
            await connector.send_message(message.with_text_content("x").build())
        assert emu.create_requests == 0
