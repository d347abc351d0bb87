"""Peak RSS of a streamed batch, in a fresh process: ``python -m benchmarks.memory --port P --n N --mode M``.

Messages come from an async generator (never all in memory). ``--mode stream`` consumes
``send_stream`` (results are not kept); ``--mode batch`` collects a ``BatchSendResult`` (one result per
message, by definition). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
from collections.abc import AsyncIterator

from benchmarks._common import connector, message, rss_kib
from messaging_core import Message


async def messages(n: int) -> AsyncIterator[Message]:
    for index in range(n):
        yield message(index)


async def run(port: int, n: int, mode: str, concurrency: int) -> dict[str, object]:
    base = rss_kib()
    async with connector(f"http://127.0.0.1:{port}", concurrency=concurrency) as sms:
        sent = 0
        if mode == "stream":
            async for _, result in sms.send_stream(messages(n), concurrency=concurrency):
                sent += result.is_success
        else:
            outcome = await sms.send_batch(messages(n), concurrency=concurrency)
            sent = len(outcome.succeeded)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"n": n, "mode": mode, "sent": sent, "rss_before_kib": base, "peak_rss_kib": peak}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--mode", choices=("stream", "batch"), default="stream")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.port, args.n, args.mode, args.concurrency))))


if __name__ == "__main__":
    main()
