"""Shared pieces of the benchmarks: server processes, connectors, messages, timing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from messaging_core import Message, MessageBuilder
from messaging_twilio_sms import TwilioChannelSchemas, TwilioSmsConnector

ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "benchmark-token-0123456789abcdef"
SENDER = "+15005550006"


@contextmanager
def server_process(module: str, *args: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """Start ``python -m module args`` (prints ``PORT n``); yield (port, process); always stop it."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args], stdout=subprocess.PIPE, text=True, env={**os.environ}
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"{module} did not start: {line!r}")
        yield int(line.split()[1]), process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def connector(base_url: str, *, concurrency: int = 32, schema: Any = None, **extra: Any) -> TwilioSmsConnector:
    return TwilioSmsConnector(
        schema or TwilioChannelSchemas.TWILIO_SMS,
        {
            "AccountSid": ACCOUNT_SID,
            "AuthToken": AUTH_TOKEN,
            "ApiBaseUrl": base_url,
            "MaxConcurrency": concurrency,
            "MaxRetries": 0,
            **extra,
        },
    )


def message(index: int) -> Message:
    return (
        MessageBuilder()
        .with_phone_sender(SENDER)
        .with_phone_receiver(f"+1555{index % 10_000_000:07d}")
        .with_text_content("Benchmark message")
        .build()
    )


async def run_workers(n: int, concurrency: int, one: Callable[[int], Awaitable[Any]]) -> None:
    """Call ``one(i)`` for i in range(n) with ``concurrency`` workers."""
    counter = iter(range(n))

    async def worker() -> None:
        for index in counter:
            await one(index)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))


async def timed(coroutine: Awaitable[Any]) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) spent awaiting ``coroutine``."""
    wall, cpu = time.perf_counter(), time.process_time()
    await coroutine
    return time.perf_counter() - wall, time.process_time() - cpu


def rss_kib(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default), KiB, from /proc."""
    with open(f"/proc/{pid or 'self'}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
