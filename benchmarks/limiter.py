"""Pace reservations per second and Redis round trips per reservation: batched against ``batch_size=1``.

    .venv/bin/python -m benchmarks.limiter      # about 40 seconds; writes benchmarks/results/limiter.md

Needs Redis on loopback (``MESSAGING_SCALE_REDIS_URL``). ``--reservers`` tasks (100, a worker's
default concurrency) spread over ``--keys`` senders (10) call ``RedisGcraLimiter.reserve`` as the
send pipeline does (cost 1, a token per message, the senders paced at 100/s) without sleeping the
wait, so the limiter, not the pace, is measured: back to back (every reserver calls again as soon as
it has its answer: the batches fill up), then with ``--think`` seconds between a reserver's calls
(uniformly 0 to twice that: a pass sending its message; the batches are what arrives within
``batch_wait``). Each round runs ``--reservations`` reservations with the limiter's batches (the
default) and with ``batch_size=1`` (one script call per reservation, the former path), alternating,
on a client like a worker's (a blocking pool of 100 connections). Counted on the client's
connections: writes to Redis (round trips) and ``EVALSHA`` calls; the caller's latency is from the
``reserve`` call to its answer; CPU is this process's and the Redis server's (``INFO cpu``, which
counts other clients of the server too). Keys are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from benchmarks.__main__ import machine
from messaging_scale import RedisGcraLimiter

REDIS_URL = os.environ.get("MESSAGING_SCALE_REDIS_URL", "redis://127.0.0.1:6379/0")
RESULTS = Path(__file__).with_name("results") / "limiter.md"


class Counts:
    """Writes to Redis (each one a round trip) and the ``EVALSHA`` calls they carried."""

    def __init__(self) -> None:
        self.writes = 0
        self.scripts = 0


def counting_client(url: str, counts: Counts) -> Any:
    """A client like ``messaging_scale``'s for workers (blocking pool, 100 connections) that counts its writes."""

    class CountingConnection(aioredis.Connection):
        packing_several = False  # pack_commands packs each command with pack_command

        def pack_command(self, *args: Any) -> list[bytes]:
            if not self.packing_several:
                counts.writes += 1
                counts.scripts += args[0] == "EVALSHA"
            return super().pack_command(*args)

        def pack_commands(self, commands: Any) -> list[bytes]:
            commands = list(commands)
            counts.writes += 1
            counts.scripts += sum(command[0] == "EVALSHA" for command in commands)
            self.packing_several = True
            try:
                return super().pack_commands(commands)
            finally:
                self.packing_several = False

    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=100, timeout=30, connection_class=CountingConnection
    )
    return aioredis.Redis.from_pool(pool)


async def redis_cpu(client: Any) -> float:
    """Seconds of CPU the Redis server used so far (user + system, every client's)."""
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def run(
    url: str, prefix: str, *, batch_size: int, reservers: int, keys: int, total: int, think: float
) -> dict[str, float]:
    """``total`` reservations by ``reservers`` concurrent tasks over ``keys`` senders; rates and counts."""
    counts = Counts()
    client = counting_client(url, counts)
    limiter = RedisGcraLimiter(client, rate=100.0, prefix=prefix, batch_size=batch_size)
    try:
        await asyncio.gather(*(limiter.reserve(f"warm-{i}", token=f"warm-{i}") for i in range(reservers)))
        latencies: list[float] = []
        left = total

        async def reserver(key: str) -> None:
            nonlocal left
            while left > 0:
                left -= 1
                started = time.perf_counter()
                await limiter.reserve(key, 1.0, token=uuid.uuid4().hex)
                latencies.append(time.perf_counter() - started)
                if think:
                    await asyncio.sleep(random.uniform(0, 2 * think))

        counts.writes = counts.scripts = 0
        server_before = await redis_cpu(client)
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        await asyncio.gather(*(reserver(f"+1500555{i % keys:04d}") for i in range(reservers)))
        wall, cpu = time.perf_counter() - wall_before, time.process_time() - cpu_before
        writes, scripts = counts.writes, counts.scripts
        server = await redis_cpu(client) - server_before
    finally:
        await limiter.close()
        await client.aclose()
    latencies.sort()
    return {
        "per_second": total / wall,
        "round_trips": writes / total,
        "scripts": scripts / total,
        "client_cpu_us": cpu / total * 1e6,
        "redis_cpu_us": server / total * 1e6,
        "latency_p50_ms": latencies[len(latencies) // 2] * 1e3,
        "latency_p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
    }


def median(rounds: Sequence[dict[str, float]], name: str) -> str:
    values = [result[name] for result in rounds]
    middle = statistics.median(values)
    digits = 0 if middle >= 100 else 3 if middle < 1 else 2
    return f"{middle:,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def section(found: dict[tuple[float, str], list[dict[str, float]]], args: argparse.Namespace) -> str:
    rows = [
        ("reservations/s", "per_second"),
        ("round trips per reservation", "round_trips"),
        ("script calls (EVALSHA) per reservation", "scripts"),
        ("client CPU per reservation, µs", "client_cpu_us"),
        ("Redis server CPU per reservation, µs", "redis_cpu_us"),
        ("caller's latency p50, ms", "latency_p50_ms"),
        ("caller's latency p99, ms", "latency_p99_ms"),
    ]
    lines = [
        "# Pace reservations: batched against one call each",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}, load average {os.getloadavg()[0]:.1f} at the end; "
        "`python -m benchmarks.limiter`.",
        f"{args.reservers} concurrent reservers over {args.keys} senders (100/s each, a token per reservation, "
        f"the wait not slept), {args.reservations:,} reservations per round, {args.rounds} rounds alternating; "
        "median (min–max). Redis server CPU counts every client of the server.",
    ]
    for think in (0.0, args.think):
        lines += [
            "",
            "Back to back:" if not think else f"{think * 1000:g} ms on average between a reserver's calls:",
            "",
            "| | batched (`batch_size=100`, `batch_wait=0.001`) | `batch_size=1` |",
            "|---|---|---|",
        ]
        lines += [
            f"| {label} | {median(found[think, 'batched'], name)} | {median(found[think, 'alone'], name)} |"
            for label, name in rows
        ]
    return "\n".join(lines) + "\n"


async def main(args: argparse.Namespace) -> None:
    prefix = f"bench-limiter-{uuid.uuid4().hex}"
    found: dict[tuple[float, str], list[dict[str, float]]] = {}
    try:
        for _ in range(args.rounds):
            for think in (0.0, args.think):
                for name, batch_size in (("batched", 100), ("alone", 1)):
                    result = await run(
                        args.redis_url,
                        prefix,
                        batch_size=batch_size,
                        reservers=args.reservers,
                        keys=args.keys,
                        total=args.reservations,
                        think=think,
                    )
                    found.setdefault((think, name), []).append(result)
                    summary = ", ".join(f"{key} {value:,.3f}" for key, value in result.items())
                    print(f"think {think:g} s, {name}: {summary}", flush=True)
    finally:
        client = aioredis.Redis.from_url(args.redis_url)
        doomed = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(doomed), 1000):
            await client.delete(*doomed[start : start + 1000])
        await client.aclose()
    text = section(found, args)
    print(text)
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument("--reservers", type=int, default=100)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--reservations", type=int, default=20_000, help="per round and path")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--think", type=float, default=0.02, help="mean seconds between a reserver's calls")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the table goes")
    parser.add_argument("--no-output", dest="output", action="store_const", const=None, help="print only")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
