"""The senders compared against the same server in the same run."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from benchmarks._common import ACCOUNT_SID, AUTH_TOKEN, SENDER, connector, message, run_workers, timed
from messaging_core import MessageBatch

Sender = Callable[[str, int, int], Awaitable[tuple[float, float]]]


async def raw_aiohttp(base_url: str, n: int, concurrency: int) -> tuple[float, float]:
    """The practical limit: one session, a form post, a JSON decode; nothing else."""
    url = f"{base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    auth = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    connector_ = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector_, headers={"Authorization": auth}) as session:

        async def one(index: int) -> None:
            form = {"To": f"+1555{index:07d}", "From": SENDER, "Body": "Benchmark message"}
            async with session.post(url, data=form) as response:
                data = await response.json()
                assert data["sid"]

        return await timed(run_workers(n, concurrency, one))


async def connector_send_message(base_url: str, n: int, concurrency: int) -> tuple[float, float]:
    """``TwilioSmsConnector.send_message`` driven by the caller's workers."""
    messages = [message(i) for i in range(n)]
    async with connector(base_url, concurrency=concurrency) as sms:

        async def one(index: int) -> None:
            result = await sms.send_message(messages[index])
            assert result.is_success, result.error

        return await timed(run_workers(n, concurrency, one))


async def connector_send_batch(base_url: str, n: int, concurrency: int) -> tuple[float, float]:
    """``TwilioSmsConnector.send_batch`` with the same concurrency."""
    batch = MessageBatch([message(i) for i in range(n)])
    async with connector(base_url, concurrency=concurrency) as sms:
        outcome: list[Any] = []

        async def run() -> None:
            outcome.append(await sms.send_batch(batch, concurrency=concurrency))

        measured = await timed(run())
        assert len(outcome[0].succeeded) == n, outcome[0].counts()
        return measured


async def twilio_official_async(base_url: str, n: int, concurrency: int) -> tuple[float, float]:
    """The official ``twilio`` client with its aiohttp-based ``AsyncTwilioHttpClient``."""
    from twilio.http.async_http_client import AsyncTwilioHttpClient
    from twilio.rest import Client

    http_client = AsyncTwilioHttpClient()
    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http_client)
    client.api.base_url = base_url
    try:

        async def one(index: int) -> None:
            created = await client.messages.create_async(to=f"+1555{index:07d}", from_=SENDER, body="Benchmark message")
            assert created.sid

        return await timed(run_workers(n, concurrency, one))
    finally:
        await http_client.close()


SENDERS: dict[str, Sender] = {
    "raw aiohttp loop": raw_aiohttp,
    "TwilioSmsConnector.send_message": connector_send_message,
    "TwilioSmsConnector.send_batch": connector_send_batch,
    "official twilio async client": twilio_official_async,
}
