"""Webhook benchmarks: in-process cost of ``receive_messages``, and the webhook host under load."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from urllib.parse import urlencode

import aiohttp

from benchmarks._common import ACCOUNT_SID, AUTH_TOKEN, connector
from messaging_core import WebhookRequest
from messaging_twilio_sms.webhooks import SIGNATURE_HEADER, SignatureValidator, compute_signature

PUBLIC_URL = "http://bench.example.com/webhooks/sms/messages"


def inbound_form(index: int) -> list[tuple[str, str]]:
    """A realistic 12-field inbound SMS form."""
    sid = f"SM{index:032x}"
    return [
        ("MessageSid", sid),
        ("SmsSid", sid),
        ("SmsMessageSid", sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", "+14155550100"),
        ("To", "+15005550006"),
        ("Body", f"Hello number {index}"),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("SmsStatus", "received"),
        ("ApiVersion", "2010-04-01"),
        ("ToCountry", "US"),
    ]


def signed(index: int) -> tuple[bytes, dict[str, str]]:
    form = inbound_form(index)
    body = urlencode(form).encode()
    return body, {
        SIGNATURE_HEADER: compute_signature(AUTH_TOKEN, PUBLIC_URL, form),
        "Content-Type": "application/x-www-form-urlencoded",
        "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
    }


async def receive_cost(n: int = 20_000, rounds: int = 5) -> dict[str, float]:
    """µs per webhook, median of ``rounds``: (a) receive_messages on a built source, (b) from_form + it."""
    prepared = [signed(i) for i in range(n)]
    sms = connector("http://127.0.0.1:9", WebhookUrl=PUBLIC_URL)
    await sms.initialize()
    receive_only: list[float] = []
    with_parse: list[float] = []
    try:
        sources = [WebhookRequest.from_form(body, url=PUBLIC_URL, headers=headers) for body, headers in prepared]
        for _ in range(rounds):
            started = time.perf_counter()
            for source in sources:
                result = await sms.receive_messages(source)
                assert result.is_success, result.error
            receive_only.append((time.perf_counter() - started) / n * 1e6)
            started = time.perf_counter()
            for body, headers in prepared:
                result = await sms.receive_messages(WebhookRequest.from_form(body, url=PUBLIC_URL, headers=headers))
                assert result.is_success
            with_parse.append((time.perf_counter() - started) / n * 1e6)
    finally:
        await sms.shutdown()
    validator = SignatureValidator(AUTH_TOKEN)
    signature_only = []
    for _ in range(rounds):
        started = time.perf_counter()
        for source in sources:
            validator.validate(PUBLIC_URL, source.form, source.header(SIGNATURE_HEADER))
        signature_only.append((time.perf_counter() - started) / n * 1e6)
    return {
        "signature_us": statistics.median(signature_only),
        "receive_messages_us": statistics.median(receive_only),
        "receive_messages_min_us": min(receive_only),
        "from_form_plus_receive_us": statistics.median(with_parse),
    }


async def host_load(port: int, n: int = 20_000, concurrency: int = 100) -> dict[str, float]:
    """Signed inbound webhooks at the host in another process; requests/s and errors."""
    prepared = [signed(i) for i in range(n)]
    url = f"http://127.0.0.1:{port}/webhooks/sms/messages"
    errors = 0
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async with session.get(f"http://127.0.0.1:{port}/bench/counts") as response:
            before = await response.json()
        counter = iter(range(n))

        async def worker() -> None:
            nonlocal errors
            for index in counter:
                body, headers = prepared[index]
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        statuses[response.status] = statuses.get(response.status, 0) + 1
                        if response.status != 200:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        async with session.get(f"http://127.0.0.1:{port}/bench/counts") as response:
            after = await response.json()
    return {
        "requests": n,
        "rps": n / elapsed,
        "errors": errors,
        "dispatched_distinct": after["distinct"] - before["distinct"],
        "max_dispatch_per_message": after["max_per_message"],
        "rss_before_kib": before["rss_kib"],
        "rss_after_kib": after["rss_kib"],
    }
