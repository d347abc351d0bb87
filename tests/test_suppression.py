"""The suppression list: a recipient who replied STOP is sent nothing until they reply START.

The webhook service puts the sender of an opting-out inbound message on the status store's list
(``connector.opt_out_change``), a send the provider refuses as ``RECIPIENT_UNSUBSCRIBED`` (Twilio's
21610) puts its recipient there, and the send pipeline fails a message to a listed recipient at
once, with that code and no provider call. Real Twilio connector, the emulator (which refuses
sends to a number that texted STOP with 21610, as Twilio does), the in-process dispatcher.
"""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlencode

from messaging_core import ConnectorErrorCodes, Endpoint, Message, TextContent, WebhookRequest
from messaging_core.campaigns import InProcessDispatcher, LedgerEntry, MemoryStatusStore
from messaging_core.webhooks import WebhookService
from messaging_twilio_sms import TwilioChannelSchemas, TwilioSmsConnector
from messaging_twilio_sms.emulator import TwilioEmulator
from messaging_twilio_sms.webhooks import SIGNATURE_HEADER, compute_signature

OUR_NUMBER, CUSTOMER = "+15005550006", "+15551230042"
URL = "https://hooks.example.com/webhooks/sms/messages"


def _inbound(emulator: TwilioEmulator, body: str, **extra: str) -> WebhookRequest:
    fields = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": emulator.account_sid,
        "From": CUSTOMER,
        "To": OUR_NUMBER,
        "Body": body,
        **extra,
    }
    signature = compute_signature(emulator.auth_token, URL, fields)
    return WebhookRequest.from_form(urlencode(fields), url=URL, headers={SIGNATURE_HEADER: signature})


def _connector(emulator: TwilioEmulator) -> TwilioSmsConnector:
    settings = {"ApiBaseUrl": emulator.base_url, "AccountSid": emulator.account_sid, "AuthToken": emulator.auth_token}
    return TwilioSmsConnector(TwilioChannelSchemas.TWILIO_SMS, settings)


async def _send(dispatcher: InProcessDispatcher) -> LedgerEntry:
    message = Message(uuid.uuid4().hex, Endpoint.phone(OUR_NUMBER), Endpoint.phone(CUSTOMER), TextContent("Offer"))
    handle = await dispatcher.submit([message])
    async with asyncio.timeout(10):
        await handle.wait()
    entry = await dispatcher.ledger.get(message.id)
    assert entry is not None
    return entry


async def test_stop_suppresses_and_start_lifts_without_provider_calls_in_between() -> None:
    async with TwilioEmulator(auto_advance=False) as emulator, _connector(emulator) as connector:
        store = MemoryStatusStore()
        dispatcher = InProcessDispatcher(connector, status_store=store)
        service = WebhookService({"sms": connector}, pipeline=dispatcher)

        answer = await service.handle("sms", "messages", _inbound(emulator, "STOP"))
        assert answer.status == 200
        assert await store.suppressed(CUSTOMER) == ConnectorErrorCodes.RECIPIENT_UNSUBSCRIBED

        before = emulator.create_requests
        refused = await _send(dispatcher)
        assert (refused.state.value, refused.error_code) == ("failed", "RECIPIENT_UNSUBSCRIBED")
        assert emulator.create_requests == before, "a suppressed recipient cost a provider call"

        await service.handle("sms", "messages", _inbound(emulator, "start"))
        assert await store.suppressed(CUSTOMER) is None
        sent = await _send(dispatcher)
        assert sent.state.value == "accepted"


async def test_a_21610_refusal_suppresses_the_recipient_for_later_sends() -> None:
    async with TwilioEmulator(auto_advance=False) as emulator:
        emulator.opted_out.add(CUSTOMER)  # they texted STOP to another of our numbers, say
        async with _connector(emulator) as connector:
            store = MemoryStatusStore()
            dispatcher = InProcessDispatcher(connector, status_store=store)
            first = await _send(dispatcher)
            assert (first.state.value, first.error_code) == ("failed", "RECIPIENT_UNSUBSCRIBED")
            assert emulator.create_requests == 1
            assert await store.suppressed(CUSTOMER) == ConnectorErrorCodes.RECIPIENT_UNSUBSCRIBED
            second = await _send(dispatcher)
            assert second.error_code == "RECIPIENT_UNSUBSCRIBED"
            assert emulator.create_requests == 1, "the second send reached the provider"


def test_the_twilio_connector_tells_opt_outs_from_other_messages() -> None:
    connector = TwilioSmsConnector(TwilioChannelSchemas.TWILIO_SMS, {"AccountSid": "AC" + "0" * 32, "AuthToken": "t"})

    def inbound(body: str, **properties: object) -> Message:
        return Message("SM1", Endpoint.phone(CUSTOMER), Endpoint.phone(OUR_NUMBER), TextContent(body), properties)

    assert connector.opt_out_change(inbound("Stop")) is True
    assert connector.opt_out_change(inbound(" unsubscribe ")) is True
    assert connector.opt_out_change(inbound("START")) is False
    assert connector.opt_out_change(inbound("stop sending me offers")) is None
    assert connector.opt_out_change(inbound("HELP")) is None
    assert connector.opt_out_change(inbound("arrêtez", OptOutType="STOP")) is True  # a keyword set on the service
    assert connector.opt_out_change(inbound("STOP", OptOutType="HELP")) is None
