"""Campaign throughput on worker processes: 1, 2 and 4 ``messaging worker`` processes, emulator at 50 ms.

    .venv/bin/python -m benchmarks.scale            # about 4 minutes; writes benchmarks/results/scale.md

Needs PostgreSQL, Redis and RabbitMQ on loopback (``plugins/scale/ci_services.sh`` starts them);
everything it creates (a PostgreSQL database and schemas, Redis keys, RabbitMQ queues) is its own
and removed at the end. The Twilio emulator runs in its own process (``python -m
messaging_twilio_sms.emulator --fast --latency 0.05``), the workers in theirs (``messaging worker
-w N``, Taskiq's manager and its children, in a session of their own), the submitter and the clock
here. Each run is bounded
(``--run-timeout``); a run that does not finish is reported as such.

For each concurrency, first the baseline: the same kind of messages through bare ``send_stream``
from this process (no ledger, no limiter, no broker), the connector built from the workers'
configuration file, against the same emulator process with the same calls in flight. Then for each
worker count: a warm-up campaign (connections, imports), then the measured campaign, timed from
``submit`` (``COPY`` + chunks on the queue) until the ledger's counters say every message is
accepted. The pace (the Redis limiter, its reservations batched per round trip) is set far above
what the machine can send, so the workers, not the pace, are measured. CPU is sampled per process kind
(workers, PostgreSQL, ``redis-server``, emulator, this driver) from ``/proc``. The campaigns run in
a PostgreSQL database of their own, so its counters (transactions, row updates, and statements
when ``pg_stat_statements`` is loaded) are theirs; Redis's ``INFO commandstats`` gives its
commands. Afterwards the emulator's message list is read back: every message must have been
created exactly once.

Two more measurements follow (``--no-extras`` skips them):

- limiter accuracy, as the campaign tests' T9 measures it: 3 worker processes, 2 senders paced at
  ``--limiter-rate`` segments/s, one with 1-segment bodies, the other with half its bodies 3
  segments; an emulator in this process stamps every create, and the busiest sliding 1 s window
  per sender is compared with T9's bound;
- status-store updates per second, as ``test_postgres_status_store.py`` measures them:
  ``PostgresStatusStore.apply`` of 3 callbacks per message, shuffled, 10 % replayed with their
  idempotency token, by 50 concurrent writers; the final status of every message is checked.
  Measured with the store's batches (the default) and, in the same run, with each update in a
  transaction of its own (``batch_size=1``, the former path; ``--no-status-unbatched`` skips it).

The sections ``benchmarks.sweep`` and the ``--million`` run (``benchmarks/million.py``: one large
campaign from the command line with a worker killed midway; never part of the default run) write
into the same file are kept.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiohttp
import asyncpg
import redis.asyncio as aioredis

from benchmarks import sweep
from benchmarks.__main__ import machine
from messaging_core import ChannelRegistry, Endpoint, Message, TextContent, load_config
from messaging_core.campaigns import CampaignProgress, SendState
from messaging_core.results import MessageStatus, StatusUpdate
from messaging_scale import PostgresLedger, PostgresStatusStore, TaskiqDispatcher
from messaging_twilio_sms.emulator import TwilioEmulator

PG_DSN = os.environ.get("MESSAGING_SCALE_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MESSAGING_SCALE_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("MESSAGING_SCALE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MESSAGING = str(Path(sys.executable).with_name("messaging"))
ACCOUNT_SID = "AC" + "c" * 32
AUTH_TOKEN = "d" * 32
SENDERS = tuple(f"+1415555{i:04d}" for i in range(10))
RESULTS = Path(__file__).with_name("results") / "scale.md"


_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int | str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int | str) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    fields = _stat(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / _TICK


def children_of(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat(stat.parent.name)
        if fields is not None and int(fields[1]) == parent and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def pids_named(name: str) -> list[int]:
    """Every process whose command name (``/proc/<pid>/comm``) is ``name``."""
    found = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == name:
                found.append(int(comm.parent.name))
        except OSError:
            continue
    return found


def postgres_pids() -> list[int]:
    """PostgreSQL's processes: every backend and the background ones (WAL writer, checkpointer...)."""
    return pids_named("postgres")


def redis_pids() -> list[int]:
    """The Redis server's process (the limiter's)."""
    return pids_named("redis-server")


class CpuMeter:
    """CPU seconds spent by each side of the benchmark between ``start`` and ``stop``.

    *workers*: the worker processes (Taskiq's manager excluded: it only watches them); *PostgreSQL*:
    every PostgreSQL process on the machine; *Redis*: the ``redis-server`` process; *emulator*: the
    Twilio emulator's process; *submitter*: this process (``submit`` and the clock).
    """

    def __init__(self, workers: int, emulator: int) -> None:
        self.groups: dict[str, Callable[[], list[int]]] = {
            "workers": lambda: children_of(workers),
            "emulator": lambda: [emulator],
            "PostgreSQL (all backends)": postgres_pids,
            "Redis": redis_pids,
            "submitter (this process)": lambda: [os.getpid()],
        }
        self._start: dict[str, dict[int, float]] = {}

    def _sample(self) -> dict[str, dict[int, float]]:
        return {name: {pid: cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()}

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> dict[str, float]:
        end = self._sample()
        return {name: sum(cpu - self._start[name].get(pid, 0.0) for pid, cpu in end[name].items()) for name in end}


STATS_DELAY = 11.0
"""Seconds to wait before reading PostgreSQL's counters after work: an idle backend may hold its
counts for up to 10 s before reporting them (``PGSTAT_IDLE_INTERVAL``); an exiting one reports at once."""


def database_url(name: str) -> str:
    """``PG_DSN`` with its database replaced by ``name``."""
    parts = urlsplit(PG_DSN)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.asynccontextmanager
async def bench_database(name: str) -> AsyncIterator[str]:
    """A database of its own for the campaigns (its counters are then theirs alone); its URL, dropped at the end.

    ``pg_stat_statements`` is created in it when the server can (the library must be preloaded);
    without it statements per message are not reported.
    """
    await execute(PG_DSN, f'create database "{name}"')
    url = database_url(name)
    try:
        with contextlib.suppress(asyncpg.PostgresError):  # not installed: no statements per message
            await execute(url, "create extension if not exists pg_stat_statements")
        yield url
    finally:
        # A connection of its own: the run's may be gone (a restarted server), the database must still go.
        await execute(PG_DSN, f'drop database if exists "{name}" with (force)')


async def execute(url: str, statement: str) -> None:
    """Run one statement on a connection of its own."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def server_counters(url: str, schema: str, redis: Any) -> dict[str, float | None]:
    """The cumulative counters the round trips per message are differences of.

    *transactions*: ``xact_commit + xact_rollback`` of the database (every statement outside an
    explicit transaction is one); *statements*: ``pg_stat_statements`` calls in the database, or
    None when the extension is not loaded; *row updates* and *HOT updates*: ``n_tup_upd`` and
    ``n_tup_hot_upd`` of the schema's tables; *Redis commands*: every call in ``INFO commandstats``
    (the whole server; the commands a Lua script runs count too), *Redis scripts*: the ``EVAL``,
    ``EVALSHA`` and ``FCALL`` calls among them (one round trip each).
    """
    conn = await asyncpg.connect(url)
    try:
        transactions = await conn.fetchval(
            "select xact_commit + xact_rollback from pg_stat_database where datname = current_database()"
        )
        updates = await conn.fetchrow(
            "select coalesce(sum(n_tup_upd), 0) as updates, coalesce(sum(n_tup_hot_upd), 0) as hot "
            "from pg_stat_user_tables where schemaname = $1",
            schema,
        )
        try:
            statements = await conn.fetchval(
                "select coalesce(sum(calls), 0) from pg_stat_statements "
                "where dbid = (select oid from pg_database where datname = current_database())"
            )
        except asyncpg.PostgresError:  # not created, or not in shared_preload_libraries
            statements = None
    finally:
        await conn.close()
    stats = await redis.info("commandstats")
    commands = sum(command["calls"] for command in stats.values())
    scripts = sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("eval", "evalsha", "fcall"))
    return {
        "transactions": float(transactions),
        "statements": None if statements is None else float(statements),
        "row updates": float(updates["updates"]),
        "HOT updates": float(updates["hot"]),
        "Redis commands": float(commands),
        "Redis scripts": float(scripts),
    }


async def _no_reset(conn: Any) -> None:
    """The observer's pool hands its connection back as it is (asyncpg's reset is a statement of its own)."""


class Observer:
    """Reads a campaign's counters for this driver, on a connection of its own, counting its reads.

    Every read is exactly one statement and one transaction (no reset on release), so the
    driver's own share can be taken out of the database's counters: *polls* of each.
    """

    def __init__(self, pool: Any, schema: str) -> None:
        self.pool = pool
        self.ledger = PostgresLedger(pool, schema=schema)
        self.polls = 0

    @classmethod
    async def open(cls, url: str, schema: str) -> Observer:
        return cls(await asyncpg.create_pool(url, min_size=1, max_size=1, reset=_no_reset), schema)

    async def progress(self, campaign_id: str) -> CampaignProgress:
        self.polls += 1
        return await self.ledger.progress(campaign_id)

    async def close(self) -> None:
        """Close the connection: its backend exits and reports its counters at once."""
        await self.pool.close()


class Emulator:
    """The Twilio emulator in its own process (``python -m module --fast ...``; another module may wrap it)."""

    def __init__(self, latency: float, module: str = "messaging_twilio_sms.emulator", *extra: str) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                *extra,
                "--fast",
                "--latency",
                str(latency),
                "--account-sid",
                ACCOUNT_SID,
                "--auth-token",
                AUTH_TOKEN,
            ],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"the emulator did not start: {line!r}")
        self.base_url = line.rsplit(" ", 1)[1].strip()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    async def created_per_receiver(self) -> collections.Counter[str]:
        """Every message the emulator created, counted per receiver (each receiver got one message)."""
        counts: collections.Counter[str] = collections.Counter()
        url: str | None = f"{self.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json?PageSize=1000"
        headers = {"Authorization": aiohttp.encode_basic_auth(ACCOUNT_SID, AUTH_TOKEN)}
        async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=60)) as session:
            while url:
                async with session.get(url) as response:
                    page = await response.json()
                counts.update(message["to"] for message in page["messages"])
                url = f"{self.base_url}{page['next_page_uri']}" if page.get("next_page_uri") else None
        return counts


class Workers:
    """``messaging worker -w N`` in a session of its own."""

    def __init__(self, config: Path, workers: int, log: Path) -> None:
        self.count = workers
        self.log = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [MESSAGING, "worker", "--config", str(config), "--workers", str(workers), "--log-level", "INFO"],
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def children(self) -> int:
        return len(children_of(self.process.pid))

    async def started(self) -> None:
        """Every worker process has started (stores open, connectors tested): it logged "worker ready"."""
        async with asyncio.timeout(60):
            while self.log.read_text(errors="replace").count("worker ready") < self.count:
                if self.process.poll() is not None:
                    raise RuntimeError("the worker manager exited:\n" + self.log.read_text(errors="replace")[-2000:])
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def write_config(
    path: Path,
    base_url: str,
    schema: str,
    prefix: str,
    queue: str,
    concurrency: int,
    *,
    credentials: tuple[str, str] = (ACCOUNT_SID, AUTH_TOKEN),
    dsn: str = PG_DSN,
    **options: Any,
) -> None:
    connector = {
        "AccountSid": credentials[0],
        "AuthToken": credentials[1],
        "ApiBaseUrl": base_url,
        "StatusCallback": "http://hooks.example.com/webhooks/sms/status",
        "RequestTimeout": 10,
        "MaxConcurrency": concurrency,
        "MaxRetries": 0,
    }
    dispatcher = {
        "kind": "taskiq",
        "broker": AMQP_URL,
        "ledger": f"{dsn}?schema={schema}&pool_max_size=16",
        "limiter": f"{REDIS_URL}?prefix={prefix}",
        "queue": queue,
        "exchange": queue,
        "messages_per_second": 100_000,
        "chunk_size": 100,
        "concurrency": concurrency,
        "lease": 60,
        "poll_interval": 0.05,
        **options,
    }
    lines = ["[connectors.sms]", 'channel = "twilio_sms"', 'schema = "TwilioSms"', "", "[connectors.sms.parameters]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in connector.items()]
    lines += ["", "[dispatcher]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in dispatcher.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


class Numbers:
    """A fresh receiver for every message of the whole benchmark (duplicates then show per receiver)."""

    def __init__(self) -> None:
        self.next = 0

    def campaign(self, prefix: str, n: int) -> list[Message]:
        messages = []
        for _ in range(n):
            i = self.next
            self.next += 1
            messages.append(
                Message(
                    f"{prefix}-{i:07d}",
                    Endpoint.phone(SENDERS[i % len(SENDERS)]),
                    Endpoint.phone(f"+1416{i:07d}"),
                    TextContent("Benchmark campaign message"),
                )
            )
        return messages


async def run_campaign(
    dispatcher: TaskiqDispatcher, observer: Observer, messages: list[Message], campaign_id: str, limit: float
) -> dict[str, Any]:
    """Submit ``messages``, then read the ledger's counters every 50 ms until every one is accepted.

    *submit* is the time ``submit`` took (``COPY`` + chunks published), *elapsed* the time from
    the submit until the last acceptance was seen, *polls* how many times the counters were read.
    """
    started = time.perf_counter()
    polls_before = observer.polls
    handle = await dispatcher.submit(messages, campaign_id=campaign_id)
    submitted = time.perf_counter() - started
    try:
        async with asyncio.timeout(limit):
            while True:
                progress = await observer.progress(campaign_id)
                if progress.count("accepted") == len(messages):
                    break
                await asyncio.sleep(0.05)
    except TimeoutError:
        return {"finished": False, "counts": dict((await handle.progress()).counts)}
    elapsed = time.perf_counter() - started
    return {
        "finished": True,
        "submit": submitted,
        "elapsed": elapsed,
        "rate": len(messages) / elapsed,
        "polls": observer.polls - polls_before,
    }


async def run_bare_stream(
    config: Path, warm: list[Message], measured: list[Message], concurrency: int, emulator: int
) -> dict[str, Any]:
    """The baseline: the same messages through ``send_stream`` from this process, no ledger, no limiter, no broker.

    The connector is built from the same configuration file as the workers' (same parameters,
    ``MaxConcurrency`` = ``concurrency``) and sends to the same emulator process with
    ``concurrency`` calls in flight, as one worker process would. Timed from the first send to
    the last result; *client CPU* is this process's CPU time over that span, *emulator CPU* the
    emulator process's.
    """
    registry = ChannelRegistry.discover()
    connector = registry.create_connector(load_config(config).connectors["sms"])
    await connector.initialize()
    try:
        async for _ in connector.send_stream(warm, concurrency=concurrency):  # connections opened, caches filled
            pass
        emulator_cpu = cpu_seconds(emulator)
        wall, cpu = time.perf_counter(), time.process_time()
        sent = 0
        async for _, result in connector.send_stream(measured, concurrency=concurrency):
            sent += result.is_success
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        emulator_cpu = cpu_seconds(emulator) - emulator_cpu
    finally:
        await connector.shutdown()
    return {
        "concurrency": concurrency,
        "messages": len(measured),
        "sent": sent,
        "rate": len(measured) / wall,
        "client_ms": cpu * 1000 / len(measured),
        "emulator_ms": emulator_cpu * 1000 / len(measured),
    }


async def attempts_of(url: str, schema: str, campaign_id: str) -> int:
    """Provider calls the ledger counted for a campaign (its rows' ``attempts``)."""
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(f"select sum(attempts) from {schema}.sends where campaign_id = $1", campaign_id))
    finally:
        await conn.close()


def busiest_second(stamps: list[tuple[float, int]]) -> int:
    """The most segments created in any 1 s window (sliding over the creation times), as T9 counts them."""
    stamps = sorted(stamps)
    most = total = start = 0
    for end in range(len(stamps)):
        total += stamps[end][1]
        while stamps[end][0] - stamps[start][0] >= 1.0:
            total -= stamps[start][1]
            start += 1
        most = max(most, total)
    return most


async def measure_limiter(args: argparse.Namespace, directory: Path, schema: str, prefix: str, queue: str) -> Any:
    """T9's measurement: 3 worker processes share each sender's pace; the busiest second per sender."""
    senders = SENDERS[:2]
    long_text = "x" * 400  # GSM-7, 3 segments
    # senders[0]: 1-segment bodies only; senders[1]: every other body 3 segments.
    messages = [
        Message(
            f"lim-{i:05d}",
            Endpoint.phone(senders[i % 2]),
            Endpoint.phone(f"+1417{i:07d}"),
            TextContent(long_text if i % 4 == 1 else f"short {i}"),
        )
        for i in range(args.limiter_messages)
    ]
    async with TwilioEmulator(fast=True, latency=0.02) as emulator:
        config = directory / "limiter.toml"
        write_config(
            config, emulator.base_url, schema, prefix, queue, 50,
            credentials=(emulator.account_sid, emulator.auth_token),
            messages_per_second=args.limiter_rate, chunk_size=10,
        )  # fmt: skip
        dispatcher, connector = await open_dispatcher(config)
        # The campaign is loaded paused and released once every worker runs: the emulator stamps
        # creates on this process's event loop, which must not be busy submitting meanwhile, and
        # the workers' own start-up (imports, connections) must not share the cores with the sends.
        handle = await dispatcher.submit(messages, campaign_id="limiter")
        await handle.pause()
        workers = Workers(config, args.limiter_workers, directory / "workers-limiter.log")
        try:
            await workers.started()
            await asyncio.sleep(1.0)  # the workers take the paused chunks and put them down
            started = time.perf_counter()
            await handle.resume()
            async with asyncio.timeout(args.run_timeout):
                progress = await handle.wait()
            elapsed = time.perf_counter() - started
            result = {"finished": progress.count("accepted") == len(messages), "elapsed": elapsed}
        finally:
            workers.stop()
            await dispatcher.close()
            await connector.shutdown()
        per_sender: dict[str, list[tuple[float, int]]] = {sender: [] for sender in senders}
        for message in emulator.messages.values():
            per_sender[message.from_ or ""].append((message.date_created, message.segments))
    created = collections.Counter(message.to for message in emulator.messages.values())
    rows = []
    for sender, stamps in per_sender.items():
        segments = sum(cost for _, cost in stamps)
        span = max(t for t, _ in stamps) - min(t for t, _ in stamps) if stamps else 0.0
        largest = max((cost for _, cost in stamps), default=1)
        bound = args.limiter_rate * 1.05 + largest - 1  # T9's bound (docs/scale-out.md, "Rate limiting")
        rows.append(
            {
                "sender": sender,
                "busiest": busiest_second(stamps),
                "segments": segments,
                "span": span,
                "largest": largest,
                "bound": bound,
            }
        )
    print(f"limiter: {result} {rows}", flush=True)
    return {"campaign": result, "senders": rows, "duplicates": sum(n - 1 for n in created.values() if n > 1)}


async def measure_status_store(args: argparse.Namespace, schema: str, batch_size: int) -> dict[str, Any]:
    """``test_postgres_status_store.py``'s measurement: shuffled, 10 % duplicated updates, 50 writers."""
    import random

    n, writers = args.status_messages, 50
    rng = random.Random(11)
    pool = await asyncpg.create_pool(PG_DSN, min_size=1, max_size=writers)
    try:
        ledger = PostgresLedger(pool, schema=schema)
        await ledger.migrate()
        store = PostgresStatusStore(pool, schema=schema, batch_size=batch_size)
        entries = [
            (Message(f"s-{i:06d}", Endpoint.phone(SENDERS[0]), Endpoint.phone(f"+1418{i:07d}"), TextContent("x")),
             SENDERS[0], 1)
            for i in range(n)
        ]  # fmt: skip
        await ledger.add("status", entries)
        async with pool.acquire() as conn:  # every message accepted with its SID, as after a campaign
            ids = [message.id for message, _, _ in entries]
            for start in range(0, n, 1000):  # batches: storing a SID takes a lock per row (orphan merge)
                await conn.execute(
                    f"update {schema}.sends set state = 'accepted', provider_id = 'SM' || message_id, fence = 1, "
                    "attempts = 1 where message_id = any($1::text[])",
                    ids[start : start + 1000],
                )
        final: dict[str, MessageStatus] = {}
        events: list[tuple[str, StatusUpdate]] = []
        for i in range(n):
            mid, sid = f"s-{i:06d}", f"SMs-{i:06d}"
            final[mid] = MessageStatus.DELIVERED if rng.random() < 0.9 else MessageStatus.DELIVERY_FAILED
            for status in (MessageStatus.QUEUED, MessageStatus.SENT, final[mid]):
                update = StatusUpdate(sid if rng.random() < 0.5 else mid, status, remote_message_id=sid)
                events.append((f"tok-{mid}-{status.value}", update))
        deliveries = events + rng.sample(events, len(events) // 10)
        rng.shuffle(deliveries)
        queue: asyncio.Queue[tuple[str, StatusUpdate]] = asyncio.Queue()
        for delivery in deliveries:
            queue.put_nowait(delivery)
        applied = 0

        async def writer() -> None:
            nonlocal applied
            while not queue.empty():
                token, update = queue.get_nowait()
                changed = await store.apply(update, idempotency_key=token)
                applied += changed  # after the await: ``applied += await …`` loses concurrent increments

        started = time.perf_counter()
        async with asyncio.timeout(args.run_timeout):
            await asyncio.gather(*(writer() for _ in range(writers)))
        elapsed = time.perf_counter() - started
        statuses = {entry.message_id: (entry.status, entry.state) async for entry in ledger.results("status")}
        correct = sum(statuses.get(mid) == (status, SendState.ACCEPTED) for mid, status in final.items())
    finally:
        async with pool.acquire() as conn:
            await conn.execute(f"drop schema if exists {schema} cascade")
        await pool.close()
    result = {
        "messages": n,
        "updates": len(deliveries),
        "elapsed": elapsed,
        "rate": len(deliveries) / elapsed,
        "applied": applied,
        "correct": correct,
        "writers": writers,
        "batch_size": batch_size,
    }
    print(f"status store: {result}", flush=True)
    return result


@dataclass
class Matrix:
    """What every run of the matrix shares: the files, the emulator, the database, the receivers."""

    directory: Path
    config: Path
    emulator: Emulator
    url: str
    """The campaigns' database (``bench_database``)."""
    schema: str
    redis: Any
    numbers: Numbers
    expected: int = 0
    """Messages sent to the emulator so far (warm-ups included)."""


async def open_dispatcher(config: Path) -> tuple[TaskiqDispatcher, Any]:
    """A dispatcher for this driver's submits, and its connector (the dispatcher checks messages against it)."""
    registry = ChannelRegistry.discover()
    loaded = load_config(config)
    connector = registry.create_connector(loaded.connectors["sms"])
    await connector.initialize()
    dispatcher = registry.create_dispatcher(loaded, connector)
    assert isinstance(dispatcher, TaskiqDispatcher)
    return dispatcher, connector


def round_trips(before: dict[str, float | None], after: dict[str, float | None], polls: int) -> dict[str, Any]:
    """Counter differences over the measured run, the driver's own polls (one statement each) taken out."""
    deltas: dict[str, Any] = {}
    for name, start in before.items():
        end = after[name]
        deltas[name] = None if start is None or end is None else end - start
    for name in ("transactions", "statements"):
        if deltas[name] is not None:
            deltas[name] -= polls
    return deltas


async def measure_workers(args: argparse.Namespace, matrix: Matrix, concurrency: int, count: int) -> dict[str, Any]:
    """One row of the matrix: ``count`` worker processes, ``concurrency`` sends in flight in each.

    A warm-up campaign first; then, once PostgreSQL's counters are reported (``STATS_DELAY``),
    the measured campaign. CPU is sampled over the campaign; the database's and Redis's counters
    from before it until the workers and this driver's connections are gone (so every count is
    reported), which adds the idle sweeps of a few seconds.
    """
    name = f"{concurrency}-{count}"
    workers = Workers(matrix.config, count, matrix.directory / f"workers-{name}.log")
    dispatcher, connector = await open_dispatcher(matrix.config)
    try:
        await workers.started()
        warm = matrix.numbers.campaign(f"warm{name}", 50 * count)
        matrix.expected += len(warm)
        observer = await Observer.open(matrix.url, matrix.schema)
        try:
            await run_campaign(dispatcher, observer, warm, f"warm-{name}", args.run_timeout)
        finally:
            await observer.close()
        await asyncio.sleep(STATS_DELAY)
        messages = matrix.numbers.campaign(f"run{name}", args.messages)
        matrix.expected += len(messages)
        before = await server_counters(matrix.url, matrix.schema, matrix.redis)
        meter = CpuMeter(workers.process.pid, matrix.emulator.process.pid)
        observer = await Observer.open(matrix.url, matrix.schema)
        try:
            meter.start()
            result = await run_campaign(dispatcher, observer, messages, f"run-{name}", args.run_timeout)
            result["cpu"] = meter.stop()
        finally:
            await observer.close()
    finally:
        await dispatcher.close()
        await connector.shutdown()
        workers.stop()
    await asyncio.sleep(0.5)  # the exiting backends report their counters
    after = await server_counters(matrix.url, matrix.schema, matrix.redis)
    result["round_trips"] = round_trips(before, after, result.get("polls", 0))
    result["workers"], result["concurrency"] = count, concurrency
    if result["finished"]:
        result["attempts"] = await attempts_of(matrix.url, matrix.schema, f"run-{name}")
    print(f"concurrency {concurrency}, {count} worker process(es): {result}", flush=True)
    return result


async def measure_matrix(args: argparse.Namespace, matrix: Matrix) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """For each concurrency: bare ``send_stream``, then the campaign with each worker count."""
    rows: list[dict[str, Any]] = []
    bares: list[dict[str, Any]] = []
    for concurrency in args.concurrency:
        write_config(
            matrix.config, matrix.emulator.base_url, matrix.schema, matrix.schema, matrix.schema, concurrency,
            dsn=matrix.url,
        )  # fmt: skip
        bare = await run_bare_stream(
            matrix.config,
            matrix.numbers.campaign(f"warmbare{concurrency}", 200),
            matrix.numbers.campaign(f"bare{concurrency}", args.messages),
            concurrency,
            matrix.emulator.process.pid,
        )
        matrix.expected += 200 + args.messages
        bares.append(bare)
        print(f"concurrency {concurrency}, bare send_stream: {bare}", flush=True)
        for count in args.workers:
            rows.append(await measure_workers(args, matrix, concurrency, count))
    return rows, bares


async def main(args: argparse.Namespace) -> None:
    token = uuid.uuid4().hex[:12]
    schema, prefix, queue = f"bench_{token}", f"bench_{token}", f"bench_{token}"
    pool = await asyncpg.create_pool(PG_DSN, min_size=1, max_size=2)
    redis = aioredis.Redis.from_url(REDIS_URL)
    emulator = Emulator(args.latency)
    extras: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as directory:
            async with bench_database(f"bench_{token}") as url:
                matrix = Matrix(
                    Path(directory), Path(directory) / "messaging.toml", emulator, url, schema, redis, Numbers()
                )
                rows, bares = await measure_matrix(args, matrix)
            created = await emulator.created_per_receiver()
            if args.extras:
                await PostgresLedger(pool, schema=schema).migrate()
                extras["limiter"] = await measure_limiter(
                    args, Path(directory), schema, f"{prefix}-lim", f"{queue}-lim"
                )
                sizes = (100, 1) if args.status_unbatched else (100,)
                extras["status"] = [await measure_status_store(args, f"{schema}_status{size}", size) for size in sizes]
    finally:
        emulator.stop()
        async with pool.acquire() as conn:
            await conn.execute(f"drop schema if exists {schema} cascade")
        await pool.close()
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            for base in (queue, f"{queue}-lim"):
                for name in (base, f"{base}.dead"):
                    await channel.queue_delete(name)
                await channel.exchange_delete(base)
    duplicates = sum(n - 1 for n in created.values() if n > 1)
    write_results(args, rows, bares, sum(created.values()), matrix.expected, duplicates, extras)


def extra_lines(args: argparse.Namespace, extras: dict[str, Any]) -> list[str]:
    """The limiter-accuracy and status-store sections."""
    lines: list[str] = []
    if "limiter" in extras:
        limiter = extras["limiter"]
        rate = args.limiter_rate
        lines += [
            "## Limiter accuracy across worker processes",
            "",
            f"As the campaign tests' T9: {args.limiter_messages} SMS over 2 senders, the first with 1-segment "
            "bodies, the second with every other body 3 segments, sent by "
            f"`messaging worker -w {args.limiter_workers}` with every sender paced at {rate:g} segments/s "
            "(Redis GCRA, shared by the processes; chunks of 10 ids). The emulator runs in this process (20 ms "
            "answers) and stamps every create; *busiest second* is the most segments created in any sliding 1 s "
            f"window. T9's bound is {rate:g} × 1.05 plus the largest message's extra segments (a message's "
            'segments arrive at one instant; docs/scale-out.md, "Rate limiting"). *Mean rate* is '
            "(segments − the largest message's) / span.",
            "",
        ]
        if not limiter["campaign"]["finished"]:
            lines += [f"Not finished in {args.run_timeout:.0f} s: {limiter['campaign']['counts']}.", ""]
        lines += [
            "| sender | bodies | configured segments/s | busiest 1 s window | bound | within | segments | span s "
            "| mean rate |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in limiter["senders"]:
            mean = (row["segments"] - row["largest"]) / row["span"] if row["span"] else 0.0
            bodies = "1 segment" if row["largest"] == 1 else f"1 and {row['largest']} segments"
            within = "yes" if row["busiest"] <= row["bound"] else "**no**"
            lines.append(
                f"| {row['sender']} | {bodies} | {rate:g} | {row['busiest']} | {row['bound']:g} | {within} | "
                f"{row['segments']} | {row['span']:.2f} | {mean:.1f} |"
            )
        lines += ["", f"Duplicates at the emulator: {limiter['duplicates']}.", ""]
    if "status" in extras:
        runs = extras["status"]
        first = runs[0]
        lines += [
            "## Status-store updates per second",
            "",
            f"As `test_postgres_status_store.py`: {first['messages']:,} accepted messages × 3 callbacks (queued, "
            "sent, delivered or failed), half addressed by the provider's SID only, 10 % replayed with their "
            f"idempotency token, shuffled, applied with `PostgresStatusStore.apply` by {first['writers']} "
            "concurrent writers (one asyncpg pool of 50) on loopback PostgreSQL. *Batched*: the store's default "
            "(concurrent updates, at most 100, in one transaction); *alone*: `batch_size=1`, one "
            "transaction per update (the store before batching). Same run, one after the other.",
            "",
            "| path | updates | seconds | updates/s | applied (moved a status) "
            "| messages with the right final status |",
            "|---|---|---|---|---|---|",
        ]
        for status in runs:
            size = status["batch_size"]
            path = "alone (`batch_size=1`)" if size == 1 else f"batched (`batch_size={size}`)"
            lines.append(
                f"| {path} | {status['updates']:,} | {status['elapsed']:.2f} | {status['rate']:,.0f} | "
                f"{status['applied']:,} | {status['correct']:,} of {status['messages']:,} |"
            )
        lines.append("")
    return lines


def one_worker_rate(rows: list[dict[str, Any]], concurrency: int) -> float | None:
    """msg/s of the finished campaign with one worker process at ``concurrency``, if there is one."""
    return next(
        (r["rate"] for r in rows if r["concurrency"] == concurrency and r["workers"] == 1 and r["finished"]), None
    )


def campaign_lines(args: argparse.Namespace, rows: list[dict[str, Any]]) -> list[str]:
    """The throughput table: msg/s and CPU per message of each side, per worker count and concurrency.

    *total* is workers + PostgreSQL + Redis: what a durable campaign costs beyond the send itself
    (the emulator stands for Twilio; the submitter is this driver).
    """
    lines = [
        "| concurrency | worker processes | msg/s | vs 1 process | ideal msg/s | total s | submit s "
        "| claims per message | CPU ms/msg: workers | PostgreSQL | Redis | total | emulator |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        concurrency, count = row["concurrency"], row["workers"]
        ideal = count * concurrency / args.latency
        if not row["finished"]:
            unfinished = f"not finished in {args.run_timeout:.0f} s"
            lines.append(
                f"| {concurrency} | {count} | — | — | {ideal:,.0f} | {unfinished} | — | — | — | — | — | — | — |"
            )
            continue
        base = one_worker_rate(rows, concurrency)
        ratio = f"{row['rate'] / base:.2f}×" if base else "—"
        cpu = {name: seconds * 1000 / args.messages for name, seconds in row["cpu"].items()}
        postgres = cpu["PostgreSQL (all backends)"]
        total = cpu["workers"] + postgres + cpu["Redis"]
        lines.append(
            f"| {concurrency} | {count} | {row['rate']:,.0f} | {ratio} | {ideal:,.0f} | {row['elapsed']:.2f} | "
            f"{row['submit']:.2f} | {row['attempts'] / args.messages:.3f} | {cpu['workers']:.2f} | "
            f"{postgres:.2f} | {cpu['Redis']:.2f} | **{total:.2f}** | {cpu['emulator']:.2f} |"
        )
    return lines


def bare_lines(args: argparse.Namespace, rows: list[dict[str, Any]], bares: list[dict[str, Any]]) -> list[str]:
    """The baseline table: bare ``send_stream`` next to the campaign with one worker process."""
    lines = [
        "### Next to bare `send_stream`",
        "",
        f"The same emulator process, {args.messages:,} other receivers, sent from this process with "
        "`TwilioSmsConnector.send_stream` (the core's batch send: no ledger, no limiter, no broker), the "
        "connector built from the workers' configuration file (same parameters, `MaxConcurrency` = "
        "concurrency) and *concurrency* calls in flight, after 200 warm-up sends. *Client CPU* is this "
        "process's CPU per message. The issue's target: one worker process ≥ 60 % of bare `send_stream`.",
        "",
        "| concurrency | bare msg/s | client CPU ms/msg | emulator CPU ms/msg | campaign, 1 worker process, msg/s "
        "| campaign ÷ bare | ≥ 60 % |",
        "|---|---|---|---|---|---|---|",
    ]
    for bare in bares:
        campaign = one_worker_rate(rows, bare["concurrency"])
        ratio = campaign / bare["rate"] if campaign else None
        shown = "—" if ratio is None else f"{ratio:.0%}"
        met = "—" if ratio is None else ("yes" if ratio >= 0.6 else "**no**")
        lines.append(
            f"| {bare['concurrency']} | {bare['rate']:,.0f} | {bare['client_ms']:.3f} | {bare['emulator_ms']:.3f} | "
            f"{'—' if campaign is None else f'{campaign:,.0f}'} | {shown} | {met} |"
        )
    unsent = sum(bare["messages"] - bare["sent"] for bare in bares)
    if unsent:
        lines += ["", f"**{unsent} bare send(s) failed**: the baseline is not comparable."]
    return [*lines, ""]


def round_trip_lines(args: argparse.Namespace, rows: list[dict[str, Any]]) -> list[str]:
    """The ledger's and the limiter's work per message, from the servers' own counters."""
    lines = [
        "### Ledger and limiter round trips per message",
        "",
        "Differences of the servers' counters over each measured campaign, divided by its messages. The "
        "campaigns have a database of their own, so *PostgreSQL transactions* (`pg_stat_database`: "
        "`xact_commit + xact_rollback`; each statement outside an explicit transaction is one, so is a pool's "
        "reset query where a pool runs one) are theirs: the submit (`COPY`, chunks), the workers' claims, records and "
        "sweeps; this driver's progress reads (one statement each, *polls*) are taken out. *Statements*: "
        "`pg_stat_statements` calls in that database, when the server loads the extension. *Row updates*: "
        "`n_tup_upd` of the ledger's tables, *HOT*: the share of them that were heap-only "
        "(`n_tup_hot_upd`). *Redis commands*: `INFO commandstats` calls of the whole server (the commands a "
        "Lua script runs count too; so does anything else using the server), *scripts*: the `EVAL`/`EVALSHA`/"
        "`FCALL` calls among them. Counted from before the campaign until its workers have stopped.",
        "",
        "| concurrency | worker processes | PostgreSQL transactions/msg | statements/msg | row updates/msg | HOT "
        "| Redis commands/msg | Redis scripts/msg | polls taken out |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        trips = row.get("round_trips")
        if not row["finished"] or trips is None:
            continue
        per = {name: None if value is None else value / args.messages for name, value in trips.items()}
        statements = "n/a (no pg_stat_statements)" if per["statements"] is None else f"{per['statements']:.2f}"
        hot = f"{trips['HOT updates'] / trips['row updates']:.0%}" if trips["row updates"] else "—"
        lines.append(
            f"| {row['concurrency']} | {row['workers']} | {per['transactions']:.2f} | {statements} | "
            f"{per['row updates']:.2f} | {hot} | {per['Redis commands']:.2f} | {per['Redis scripts']:.2f} | "
            f"{row['polls']} |"
        )
    return [*lines, ""]


def write_results(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    bares: list[dict[str, Any]],
    created: int,
    expected: int,
    dups: int,
    extras: dict[str, Any],
) -> None:
    lines = [
        f"# Campaign throughput on worker processes — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {machine()}. Written by `python -m benchmarks.scale` (`benchmarks/scale.py`).",
        "",
        f"Each run: {args.messages:,} SMS to distinct receivers over {len(SENDERS)} senders, submitted with "
        "`TaskiqDispatcher.submit` (COPY into PostgreSQL, chunks of 100 ids on a RabbitMQ quorum queue) and sent "
        "by `messaging worker -w N` (Taskiq's worker) with *concurrency* sends in flight per process. The Twilio "
        f"emulator runs in its own process and holds every answer {args.latency * 1000:.0f} ms (`--fast`: no "
        "status callbacks). The pace limiter (Redis GCRA, concurrent reservations batched into one round trip) "
        "is on, far above what the "
        "machine sends. Timed from `submit` until the ledger counts every message accepted; *ideal* is "
        "processes × concurrency / latency. CPU is what each side used during the measured run, per message "
        "(*workers*: the worker processes; *PostgreSQL*: every PostgreSQL process on the machine; *Redis*: the "
        "`redis-server` process; *total*: workers + PostgreSQL + Redis, the issue's measure, whose target is "
        "≤ 1.0 ms at 100 in flight). PostgreSQL, Redis, RabbitMQ, the emulator, the workers and this driver all "
        "share the machine's CPUs.",
        "",
        *campaign_lines(args, rows),
        "",
        *bare_lines(args, rows, bares),
        *round_trip_lines(args, rows),
    ]
    lines += [
        "",
        f"Read back from the emulator afterwards: {created:,} messages created for {expected:,} submitted "
        f"(warm-up campaigns and bare sends included), {dups} duplicate(s).",
        "",
    ]
    lines += extra_lines(args, extras)
    from benchmarks.million import HEADING as MILLION  # imported here: benchmarks.million imports this module

    previous = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
    _, sections = split_sections(previous)
    kept = [sections[heading] for heading in (sweep.HEADING, MILLION) if heading in sections]  # not measured here
    args.output.write_text(join_sections("\n".join(lines), kept), encoding="utf-8")
    print(f"written to {args.output}")


def split_sections(text: str) -> tuple[str, dict[str, str]]:
    """A results file: what comes before its first ``## `` heading, and each ``## `` section by its heading line."""
    head, *sections = re.split(r"^(?=## )", text, flags=re.MULTILINE)
    return head, {section.split("\n", 1)[0]: section for section in sections}


def join_sections(head: str, sections: Iterable[str]) -> str:
    """The inverse of ``split_sections``: one blank line between the parts."""
    parts = [part.strip("\n") for part in (head, *sections) if part.strip()]
    return "\n\n".join(parts) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000, help="messages per measured campaign")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker process counts")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[10, 100], help="sends in flight per worker process"
    )
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the emulator holds each answer")
    parser.add_argument(
        "--run-timeout", type=float, help="bound of each run, seconds (default 180; with --million: 10800)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--limiter-rate", type=float, default=50.0, help="segments/s per sender (limiter run)")
    parser.add_argument("--limiter-workers", type=int, default=3, help="worker processes of the limiter run")
    parser.add_argument("--limiter-messages", type=int, default=240, help="messages of the limiter run")
    parser.add_argument("--status-messages", type=int, default=10_000, help="messages of the status-store run")
    parser.add_argument(
        "--no-extras", dest="extras", action="store_false", help="skip the limiter and status-store measurements"
    )
    parser.add_argument(
        "--no-status-unbatched",
        dest="status_unbatched",
        action="store_false",
        help="measure the status store with its batches only, not also with batch_size=1",
    )
    million = parser.add_argument_group("the --million run (not part of the default run; a benchmark, never CI)")
    million.add_argument(
        "--million",
        action="store_true",
        help="only the large campaign through the command line, one worker killed midway (benchmarks/million.py)",
    )
    million.add_argument("--million-messages", type=int, default=1_000_000, help="receivers in the file")
    million.add_argument("--million-workers", type=int, default=2, help="worker processes (messaging worker -w)")
    million.add_argument("--million-concurrency", type=int, default=100, help="sends in flight per worker process")
    args = parser.parse_args()
    if args.run_timeout is None:
        args.run_timeout = 10_800.0 if args.million else 180.0
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.million:
        from benchmarks import million

        asyncio.run(million.main(arguments))
    else:
        asyncio.run(main(arguments))
