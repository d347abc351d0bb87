"""Status by our own id across processes: a campaign's ledger keeps our id → the provider's id.

A connector remembers the ids of its own recent sends only; a dispatcher attaches its ledger to
its connector (``connector.provider_ids``), and ``messaging status`` attaches the configured one,
so a connector built later (another process, after a restart) still finds the message.
"""

from __future__ import annotations

import asyncio
import uuid

from messaging_core import ConnectorErrorCodes, Endpoint, Message, MessageStatus, TextContent
from messaging_core.campaigns import InProcessDispatcher, LedgerProviderIds, MemoryLedger
from messaging_twilio_sms import TwilioChannelSchemas, TwilioSmsConnector
from messaging_twilio_sms.emulator import TwilioEmulator


def _connector(emulator: TwilioEmulator) -> TwilioSmsConnector:
    settings = {"ApiBaseUrl": emulator.base_url, "AccountSid": emulator.account_sid, "AuthToken": emulator.auth_token}
    return TwilioSmsConnector(TwilioChannelSchemas.TWILIO_SMS, settings)


async def test_a_later_connector_finds_a_campaign_message_by_our_id_through_the_ledger() -> None:
    async with TwilioEmulator(auto_advance=False) as emulator:
        ledger = MemoryLedger()
        message = Message(
            uuid.uuid4().hex, Endpoint.phone("+15005550006"), Endpoint.phone("+15551230001"), TextContent("x")
        )
        async with _connector(emulator) as sender:
            dispatcher = InProcessDispatcher(sender, ledger=ledger)
            assert isinstance(sender.provider_ids, LedgerProviderIds)  # attached by the dispatcher
            handle = await dispatcher.submit([message])
            async with asyncio.timeout(10):
                await handle.wait()
        (sid,) = emulator.messages
        await emulator.set_status(sid, "delivered")

        async with _connector(emulator) as forgetful:  # a new process: it never sent anything
            unknown = await forgetful.get_message_status(message.id)
            assert unknown.error_code == "STATUS_QUERY_FAILED"
            assert unknown.error is not None
            assert "no ledger is attached" in unknown.error.message

        async with _connector(emulator) as later:
            later.provider_ids = LedgerProviderIds(ledger)
            found = await later.get_message_status(message.id)
            assert found.is_success, found.error
            assert found.value is not None
            latest = found.value.latest
            assert latest is not None
            assert (latest.message_id, latest.remote_message_id, latest.status) == (
                message.id,
                sid,
                MessageStatus.DELIVERED,
            )
            missing = await later.get_message_status("not-in-the-ledger")
            assert missing.error is not None
            assert "nor in the attached ledger" in missing.error.message
            assert (await later.cancel_scheduled("not-in-the-ledger")).error_code == ConnectorErrorCodes.NOT_CANCELLABLE
