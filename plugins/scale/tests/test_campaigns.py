"""Campaigns on worker processes, under fire: the chaos scenarios of the design's test plan.

T1 several workers, every message exactly once; T2 workers killed with SIGKILL at random
instants; T3 crashes right after the provider accepted, reconciled with 0 duplicates; T4 the
same with the ledger check disabled, which must show duplicates; T5 ambiguous answers against
429 / 21211 / 21611; T6 a worker frozen (SIGSTOP) past its lease; T9 the pace per sender
measured at the provider; T11 the progress counters equal a ``group by state`` of the rows
(checked after every campaign here). Plus pause / resume / cancel across processes, and the
command line.

Real PostgreSQL, Redis and RabbitMQ on loopback, each test in its own schema, key prefix and
queue. The Twilio emulator runs in the test's event loop (so every wait here is an ``await``);
it counts creates per ``MessageId`` (our id, carried in the StatusCallback URL). Workers are real
``messaging worker`` processes (Taskiq's process manager and its children) started in a session of
their own; a test kills children by their pids, and the whole group by its id when it ends. T3 and
T4 start ``taskiq worker`` on a broker factory of ``chaos_worker.py`` instead, whose ledger crashes
(and, for T4, claims unsafely): the fault lives in the tests, never in the worker's code.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.util
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from messaging_core import ChannelRegistry, Endpoint, Message, TextContent, load_config
from messaging_core.campaigns import Claim, SendOutcome, SendState
from messaging_scale import PostgresLedger, TaskiqDispatcher, queued_chunks
from messaging_scale.worker import CONFIG_ENV
from messaging_twilio_sms.emulator import TwilioEmulator

pytestmark = pytest.mark.services

MESSAGING = str(Path(sys.executable).with_name("messaging"))
TASKIQ = str(Path(sys.executable).with_name("taskiq"))
HERE = Path(__file__).parent
SENDERS = ("+14155550100", "+14155550101")

# The chaos workers' module, loaded from its file (it is not importable under --import-mode=importlib).
_spec = importlib.util.spec_from_file_location("_scale_chaos_worker", HERE / "chaos_worker.py")
assert _spec is not None
assert _spec.loader is not None
chaos: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chaos)

# The per-id checks of both in-doubt policies (T6 here; T7, T8 and the SIGKILL campaign elsewhere).
_spec = importlib.util.spec_from_file_location("_scale_policy_checks", HERE / "policy_checks.py")
assert _spec is not None
assert _spec.loader is not None
checks: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(checks)


# -- the scene: emulator, configuration, workers -------------------------------------------------------


class Workers:
    """One ``messaging worker`` process group (the Taskiq manager and its children)."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log
        self.killed: list[int] = []

    def children(self) -> list[int]:
        """Pids of the manager's live children (from /proc)."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == self.process.pid and fields[0] != "Z":
                found.append(int(stat.parent.name))
        return found

    async def wait_children(self, count: int, within: float = 30.0) -> list[int]:
        async with asyncio.timeout(within):
            while len(children := self.children()) < count:
                assert self.process.poll() is None, f"the worker manager exited:\n{self.tail()}"
                await asyncio.sleep(0.05)
        return children

    def kill_child(self) -> int:
        """SIGKILL one child (the manager starts a new one)."""
        pid = random.choice(self.children())
        os.kill(pid, signal.SIGKILL)
        self.killed.append(pid)
        return pid

    def stop(self) -> None:
        # The whole session, even when the manager already exited: its children may still run.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Scene:
    """Everything one campaign test needs, torn down by the fixture."""

    def __init__(
        self,
        emulator: TwilioEmulator,
        tmp_path: Path,
        pool: Any,
        schema: str,
        names: Mapping[str, str],
    ) -> None:
        self.emulator = emulator
        self.tmp_path = tmp_path
        self.pool = pool
        self.schema = schema
        self.names = names
        self.ledger = PostgresLedger(pool, schema=schema)
        self.config_path = tmp_path / "messaging.toml"
        self.workers: list[Workers] = []
        self.registry = ChannelRegistry.discover()

    def write_config(self, **options: Any) -> Path:
        """The configuration every process reads: the emulator's connector and the taskiq table."""
        emu = self.emulator
        connector = {
            "AccountSid": emu.account_sid,
            "AuthToken": emu.auth_token,
            "ApiBaseUrl": emu.base_url,
            "StatusCallback": "http://hooks.example.com/webhooks/sms/status",
            "RequestTimeout": 2,
            "MaxConcurrency": 100,
            "MaxRetries": 0,
        }
        dispatcher: dict[str, Any] = {
            "kind": "taskiq",
            "broker": self.names["amqp"],
            "ledger": f"{self.names['pg']}?schema={self.schema}&pool_max_size=8",
            "limiter": f"{self.names['redis']}?prefix={self.names['prefix']}",
            "queue": self.names["queue"],
            "exchange": self.names["queue"],
            "messages_per_second": 400,
            "in_doubt": "probe_then_resend",
            "lease": 4,
            "probe_grace": 0.5,
            "absent_after": 1,
            "chunk_size": 50,
            "concurrency": 50,
            "backoff": 0.2,
            "max_attempts": 3,
            "sweep_interval": 1,
            "stale_after": 5,
            "poll_interval": 0.2,
        }
        dispatcher.update(options)
        lines = [
            "[connectors.sms]",
            'channel = "twilio_sms"',
            'schema = "TwilioSms"',
            "",
            "[connectors.sms.parameters]",
        ]
        lines += [f"{key} = {json.dumps(value)}" for key, value in connector.items()]
        lines += ["", "[dispatcher]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in dispatcher.items()]
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return self.config_path

    def start_workers(
        self, workers: int = 2, chaos_broker: str | None = None, env: Mapping[str, str] | None = None
    ) -> Workers:
        """``messaging worker``; with ``chaos_broker`` (a factory of ``chaos_worker.py``), ``taskiq worker``.

        The chaos workers get the options ``messaging worker`` gives Taskiq (its defaults,
        ``when_executed`` acks) and the same configuration file, without the start-up checks.
        """
        log = self.tmp_path / f"workers-{len(self.workers)}.log"
        if chaos_broker is None:
            command = [MESSAGING, "worker", "--config", str(self.config_path), "--workers", str(workers)]
        else:
            command = [
                TASKIQ, "worker", f"chaos_worker:{chaos_broker}", "--app-dir", str(HERE), "--workers", str(workers),
                "--max-async-tasks", "100", "--shutdown-timeout", "30", "--ack-type", "when_executed",
            ]  # fmt: skip
        with log.open("wb") as output:
            process = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", CONFIG_ENV: str(self.config_path), **(env or {})},
                start_new_session=True,
            )
        group = Workers(process, log)
        self.workers.append(group)
        return group

    async def dispatcher(self) -> TaskiqDispatcher:
        config = load_config(self.config_path)
        connector = self.registry.create_connector(config.connectors["sms"])
        result = await connector.initialize()
        assert result.error is None, result.error
        dispatcher = self.registry.create_dispatcher(config, connector)
        assert isinstance(dispatcher, TaskiqDispatcher)
        return dispatcher

    async def submit(self, messages: list[Message], campaign_id: str) -> None:
        dispatcher = await self.dispatcher()
        try:
            await dispatcher.submit(messages, campaign_id=campaign_id)
        finally:
            await dispatcher.close()
            await dispatcher.connector.shutdown()

    async def wait_done(self, campaign_id: str, within: float) -> dict[str, int]:
        """Until no message is PENDING, SUBMITTING or UNKNOWN; the counts by state."""
        try:
            async with asyncio.timeout(within):
                while True:
                    counts = dict((await self.ledger.progress(campaign_id)).counts)
                    if not any(counts.get(state) for state in ("pending", "submitting", "unknown")):
                        return counts
                    await asyncio.sleep(0.2)
        except TimeoutError:
            logs = "\n".join(group.tail() for group in self.workers)
            counts = dict((await self.ledger.progress(campaign_id)).counts)
            raise AssertionError(f"campaign {campaign_id} not done after {within} s: {counts}\n{logs}") from None

    def creates(self) -> collections.Counter[str]:
        """Messages the emulator created, per our message id (from the StatusCallback URL)."""
        counts: collections.Counter[str] = collections.Counter()
        for message in self.emulator.messages.values():
            url = message.status_callback
            assert url is not None
            counts[parse_qs(urlsplit(url).query)["MessageId"][0]] += 1
        return counts

    async def rows(self, campaign_id: str) -> list[Any]:
        async with self.pool.acquire() as conn:
            return list(
                await conn.fetch(
                    f"select message_id, state, attempts, reconciled, provider_id, error_code "
                    f"from {self.schema}.sends where campaign_id = $1 order by seq",
                    campaign_id,
                )
            )

    async def assert_counters_match_rows(self, campaign_id: str) -> None:
        """T11: the counters the transitions keep equal a count of the rows by state."""
        async with self.pool.acquire() as conn:
            grouped = await conn.fetch(
                f"select state, count(*) as n from {self.schema}.sends where campaign_id = $1 group by state",
                campaign_id,
            )
        progress = await self.ledger.progress(campaign_id)
        assert dict(progress.counts) == {row["state"]: row["n"] for row in grouped}

    async def assert_each_sent_exactly_once(self, campaign_id: str, ids: list[str]) -> list[Any]:
        """T1's criterion: every row accepted with the id of the one message the emulator created for it."""
        rows = await self.rows(campaign_id)
        assert [row["message_id"] for row in rows] == ids
        assert {row["state"] for row in rows} == {"accepted"}
        creates = self.creates()
        duplicated = {mid: n for mid, n in creates.items() if n > 1}
        assert duplicated == {}
        assert set(creates) == set(ids)
        sid_of = {sid: _message_id(message.status_callback) for sid, message in self.emulator.messages.items()}
        assert all(sid_of[row["provider_id"]] == row["message_id"] for row in rows)
        await self.assert_counters_match_rows(campaign_id)
        return rows


def _message_id(url: str | None) -> str:
    assert url is not None
    return parse_qs(urlsplit(url).query)["MessageId"][0]


def campaign(prefix: str, n: int, senders: tuple[str, ...] = SENDERS) -> list[Message]:
    """``n`` SMS, one per receiver, spread over ``senders``."""
    return [
        Message(
            id=f"{prefix}-{i:05d}",
            sender=Endpoint.phone(senders[i % len(senders)]),
            receiver=Endpoint.phone(f"+1415{i:07d}"),
            content=TextContent(f"campaign {prefix} message {i}"),
        )
        for i in range(n)
    ]


def crash_hits(ids: list[str]) -> set[str]:
    """The ids the chaos workers' ledger crashes on (``chaos_worker.crash_hit``)."""
    return {mid for mid in ids if chaos.crash_hit(mid)}


@pytest.fixture
async def scene(
    tmp_path: Path,
    pg_pool: Any,
    pg_schema: str,
    pg_dsn: str,
    redis_url: str,
    redis_prefix: str,
    amqp_names: tuple[str, str],
) -> AsyncIterator[Scene]:
    amqp_url, queue = amqp_names
    names = {"amqp": amqp_url, "queue": queue, "pg": pg_dsn, "redis": redis_url, "prefix": redis_prefix}
    async with TwilioEmulator(fast=True, latency=0.02, fault_delay=3.0) as emulator:
        scene = Scene(emulator, tmp_path, pg_pool, pg_schema, names)
        scene.write_config()
        try:
            yield scene
        finally:
            for group in scene.workers:
                group.stop()


# -- T1, T2: several workers, and workers killed ---------------------------------------------------------


async def test_t1_two_workers_send_every_message_exactly_once(scene: Scene) -> None:
    messages = campaign("t1", 2000)
    ids = [m.id for m in messages]
    workers = scene.start_workers(2)
    started = time.monotonic()
    await scene.submit(messages, "t1")
    counts = await scene.wait_done("t1", within=90)
    elapsed = time.monotonic() - started
    assert counts == {"accepted": 2000}
    rows = await scene.assert_each_sent_exactly_once("t1", ids)
    assert sum(row["attempts"] for row in rows) == 2000  # nothing killed: one claim each
    assert len(await workers.wait_children(2)) == 2
    # Both senders were paced independently (400/s each): 1,000 messages each take ≥ 2.5 s.
    assert elapsed >= 2.4


async def test_t2_workers_killed_at_random_instants(scene: Scene) -> None:
    messages = campaign("t2", 2000)
    ids = [m.id for m in messages]
    scene.write_config(messages_per_second=250)  # at least 4 s of sending: time for three kills
    workers = scene.start_workers(2)
    await workers.wait_children(2)
    await scene.submit(messages, "t2")
    # Three SIGKILLs while the campaign runs, each once its victim is busy sending.
    for _ in range(3):
        await asyncio.sleep(random.uniform(0.4, 1.0))
        if (await scene.ledger.progress("t2")).count("pending") < 200:
            break
        workers.kill_child()
        await workers.wait_children(2)  # Taskiq's manager starts a new one
    counts = await scene.wait_done("t2", within=120)
    assert len(workers.killed) >= 2
    assert counts == {"accepted": 2000}
    rows = await scene.assert_each_sent_exactly_once("t2", ids)
    # Redelivery really happened: the killed workers' messages were taken over by other workers,
    # which reconciled them with the provider's list (found: accepted; absent: claimed again).
    assert any(row["reconciled"] for row in rows)
    assert sum(row["attempts"] for row in rows) > 2000


@pytest.mark.parametrize("policy", checks.POLICIES)
async def test_t6_frozen_worker_past_its_lease_sends_nothing_twice(scene: Scene, policy: str) -> None:
    """SIGSTOP a busy worker longer than its lease; the other one takes its messages over; SIGCONT.

    Under both in-doubt policies, per message id (``policy_checks.py``): nothing created twice,
    nothing recorded without its create, nothing lost. ``probe_then_resend``: the frozen worker's
    expired claims are reconciled by the other worker, everything ACCEPTED. ``hold``: they stay
    UNKNOWN, never resent; everything else ACCEPTED. Either way the thawed worker's late results
    are refused by the fence.
    """
    # Each worker keeps 50 calls in flight (its concurrency) for about 4.5 s: whichever worker
    # freezes, it holds claims. (Under a tight pace, one worker's slots may all lie ahead.)
    scene.emulator.latency = 0.5
    scene.write_config(messages_per_second=5000, in_doubt=policy)
    messages = campaign("t6", 900)
    ids = [m.id for m in messages]
    workers = scene.start_workers(2)
    await workers.wait_children(2)
    await scene.submit(messages, "t6")
    await asyncio.sleep(1.5)
    frozen = random.choice(workers.children())
    os.kill(frozen, signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        open_at_freeze = await checks.snapshot(scene, "t6", "submitting")  # a superset of the frozen claims
        # Lease (4 s) + stale_after (5 s) + a sweep: the sweeper has kicked the frozen worker's
        # claims and chunks again, and the other worker has reconciled, sent or held them.
        await asyncio.sleep(12)
    finally:
        os.kill(frozen, signal.SIGCONT)
    await checks.wait_settled(scene, "t6", policy, within=90)
    v = await checks.verdict(scene, "t6", ids, policy, settle=time.monotonic() - frozen_at)
    print(f"\n{v.summary('T6')}; worker {frozen} frozen 12 s with {len(open_at_freeze)} claims open")
    await checks.check(scene, "t6", ids, v, may_be_in_doubt=open_at_freeze)
    assert frozen in workers.children()  # frozen and thawed, never restarted
    if policy == "probe_then_resend":
        assert any(row["reconciled"] for row in v.rows.values())  # its expired claims, reconciled by the other
    else:
        assert v.in_doubt  # its expired claims, held by the other (never resent: checked above)
    log = workers.log.read_text()
    assert "sweeper:" in log  # which kicked the frozen worker's messages again
    assert "the claim's fence was lost" in log  # and the thawed worker's late results were refused


# -- T3, T4: the crash window, and the control run -------------------------------------------------------


async def test_t3_crash_after_provider_accepted_is_reconciled_without_duplicates(scene: Scene) -> None:
    messages = campaign("t3", 600)
    ids = [m.id for m in messages]
    hits = crash_hits(ids)
    assert len(hits) >= 5
    crash_log = scene.tmp_path / "crashes.txt"
    workers = scene.start_workers(2, chaos_broker="crash_after_accept", env={chaos.CRASH_LOG_ENV: str(crash_log)})
    await workers.wait_children(2)
    await scene.submit(messages, "t3")
    counts = await scene.wait_done("t3", within=150)
    assert counts == {"accepted": 600}
    rows = await scene.assert_each_sent_exactly_once("t3", ids)
    crashed = crash_log.read_text().split()
    assert crashed, "the crash hook never fired"
    assert len(crashed) == len(set(crashed))  # each id crashes its first attempt only
    assert set(crashed) <= hits
    reconciled = {row["message_id"] for row in rows if row["reconciled"]}
    assert len(reconciled) >= len(crashed)
    assert set(crashed) <= reconciled  # every crash was settled by the probe, never by a resend
    by_id = {row["message_id"]: row for row in rows}
    assert all(by_id[mid]["attempts"] == 1 for mid in crashed)


async def test_t4_control_without_the_ledger_check_shows_duplicates(scene: Scene) -> None:
    messages = campaign("t4", 600)
    ids = [m.id for m in messages]
    crash_log = scene.tmp_path / "crashes.txt"
    # The unsafe claim counts an attempt for every copy of a chunk that reaches a message, so the
    # attempt cap (3 here) would fail messages unsent and hide what the control must show.
    scene.write_config(max_attempts=100)
    workers = scene.start_workers(2, chaos_broker="unsafe_claim", env={chaos.CRASH_LOG_ENV: str(crash_log)})
    await workers.wait_children(2)
    await scene.submit(messages, "t4")
    await scene.wait_done("t4", within=150)
    crashed = crash_log.read_text().split()
    assert crashed
    creates = scene.creates()
    duplicated = {mid for mid, n in creates.items() if n > 1}
    # The same crashes as T3, with the claim no longer refusing a message in flight: what T3's
    # checks would have caught (so T1–T3 can see a double send when there is one).
    assert duplicated
    assert set(crashed) <= duplicated
    assert set(creates) == set(ids)
    await scene.assert_counters_match_rows("t4")


# -- T5: ambiguous answers against definite ones ---------------------------------------------------------


async def test_t5_ambiguous_answers_are_reconciled_definite_ones_are_not(scene: Scene) -> None:
    emu = scene.emulator
    messages = campaign("t5", 30)  # message i is sent from SENDERS[i % 2]
    special = {
        "reset_after_create": messages[1],
        "500": messages[2],
        "truncated_json": messages[3],
        "timeout": messages[4],
        "429": messages[5],
        "500_after_create": messages[6],
        "21611": messages[8],
    }
    for fault, message in special.items():
        assert message.receiver is not None
        emu.inject(fault, match_to=message.receiver.address)
    invalid = Message("t5-invalid", Endpoint.phone(SENDERS[0]), Endpoint.phone("+15005550001"), TextContent("x"))
    queue_full = Message(
        "t5-queue-full", Endpoint.phone("+15005550008"), Endpoint.phone("+14150009999"), TextContent("y")
    )
    workers = scene.start_workers(1)
    await workers.wait_children(1)
    await scene.submit([*messages, invalid, queue_full], "t5")
    counts = await scene.wait_done("t5", within=60)
    assert counts == {"accepted": 30, "failed": 2}
    rows = {row["message_id"]: row for row in await scene.rows("t5")}
    creates = scene.creates()
    assert max(creates.values()) == 1  # nothing created twice
    assert set(creates) == {m.id for m in messages}
    # Ambiguous: the request may have created the message. Settled by the probe of the provider's
    # list: found (reset after create, a 500 after create, truncated 201, timeout), or proven
    # absent and sent again (a 500 that created nothing).
    for fault in ("reset_after_create", "500_after_create", "truncated_json", "timeout"):
        row = rows[special[fault].id]
        assert (row["state"], row["reconciled"], row["attempts"]) == ("accepted", True, 1), fault
    row = rows[special["500"].id]
    assert (row["state"], row["reconciled"], row["attempts"]) == ("accepted", True, 2)
    # Definite: 20429 was never processed, so it is retried (and created once); so is a 21611
    # (the From number's queue was full), which also slows its sender down; 21211 fails at once.
    for fault in ("429", "21611"):
        row = rows[special[fault].id]
        assert (row["state"], row["reconciled"], row["attempts"]) == ("accepted", False, 2), fault
    row = rows["t5-invalid"]
    assert (row["state"], row["attempts"], row["error_code"]) == ("failed", 1, "INVALID_RECIPIENT")
    # A From number whose queue stays full (the magic +15005550008): retried up to max_attempts,
    # never created.
    row = rows["t5-queue-full"]
    assert (row["state"], row["attempts"], row["error_code"]) == ("failed", 3, "RATE_LIMITED")
    assert "t5-queue-full" not in creates
    # 21611 halved the pace (400/s) of its sender for every worker, in Redis; the account's
    # concurrency limit (20429, on the other sender) did not touch that sender's pace.
    client = aioredis.Redis.from_url(scene.names["redis"])
    try:
        rates = {
            sender: await client.get(f"{scene.names['prefix']}:default:{{{sender}}}:rate")
            for sender in (*SENDERS, "+15005550008")
        }
    finally:
        await client.aclose()
    assert rates == {SENDERS[0]: b"200.0", SENDERS[1]: None, "+15005550008": b"200.0"}
    await scene.assert_counters_match_rows("t5")


# -- T9: the shared pace, measured at the provider -----------------------------------------------------


def _busiest_second(stamps: list[tuple[float, int]]) -> int:
    """The most segments created in any 1 s window (sliding over the creation times)."""
    stamps.sort()
    most = total = start = 0
    for end in range(len(stamps)):
        total += stamps[end][1]
        while stamps[end][0] - stamps[start][0] >= 1.0:
            total -= stamps[start][1]
            start += 1
        most = max(most, total)
    return most


async def test_t9_pace_per_sender_holds_across_three_workers(scene: Scene) -> None:
    """50 segments per second per sender, shared by three processes; a 3-segment body costs 3.

    SENDERS[0] sends 1-segment bodies only: no sliding second at the provider may exceed 50 × 1.05.
    SENDERS[1] mixes 1- and 3-segment bodies. A message's segments arrive at one instant, so a
    window can end just after a 3-segment message that started on the last free slot: exact
    spacing then gives 49 + 3 (see docs/scale-out.md, "Rate limiter"). Its bound is 50 × 1.05
    plus the largest message's extra segments (3 − 1).
    """
    # A pass holds one of the process's `concurrency` slots during its pace wait: the worker
    # default (100) lets each worker hold all its messages of both senders at once.
    scene.write_config(messages_per_second=50, concurrency=100)
    long_text = "x" * 400  # GSM-7, 3 segments
    messages = [
        Message(f"t9-a{i:04d}", Endpoint.phone(SENDERS[0]), Endpoint.phone(f"+1415{i:07d}"), TextContent(f"a {i}"))
        for i in range(100)
    ]
    for i in range(60):
        text = long_text if i % 2 else f"short {i}"
        messages.append(
            Message(f"t9-b{i:04d}", Endpoint.phone(SENDERS[1]), Endpoint.phone(f"+1416{i:07d}"), TextContent(text))
        )
    workers = scene.start_workers(3)
    await workers.wait_children(3)
    started = time.time()
    await scene.submit(messages, "t9")
    counts = await scene.wait_done("t9", within=60)
    assert counts == {"accepted": 160}
    per_sender: dict[str, list[tuple[float, int]]] = {sender: [] for sender in SENDERS}
    for message in scene.emulator.messages.values():
        per_sender[message.from_ or ""].append((message.date_created, message.segments))
    bounds = {SENDERS[0]: (100, 1, 50 * 1.05), SENDERS[1]: (30 * 3 + 30, 3, 50 * 1.05 + 3 - 1)}
    for sender, (expected_segments, largest, bound) in bounds.items():
        stamps = per_sender[sender]
        segments = sum(cost for _, cost in stamps)
        assert segments == expected_segments
        span = max(t for t, _ in stamps) - started
        # GCRA spacing: one message's cost after another, at 50 units/s (the first goes at once).
        assert span >= (segments - largest) / 50 - 0.1, (sender, span)
        busiest = _busiest_second(stamps)
        print(f"\n[T9] {sender}: busiest sliding second {busiest} segments (bound {bound:g}), span {span:.2f}s")
        assert busiest <= bound, (sender, busiest)
        assert busiest >= 45, (sender, busiest)  # the limiter, not the workers, set the pace
    # The senders proceed independently: while both are sending, each keeps its own full pace
    # (one schedule shared by both would give each about half).
    start = max(min(t for t, _ in per_sender[sender]) for sender in SENDERS)
    end = min(max(t for t, _ in per_sender[sender]) for sender in SENDERS)
    assert end - start >= 0.5, (start, end)
    for sender in SENDERS:
        during = sum(cost for t, cost in per_sender[sender] if start <= t <= end)
        assert during >= 0.85 * 50 * (end - start), (sender, during, end - start)
    await scene.assert_counters_match_rows("t9")


# -- pause, resume, cancel: flags every worker obeys -----------------------------------------------------


async def test_pause_resume_and_cancel_reach_the_workers(scene: Scene) -> None:
    paused = campaign("pa", 200)
    cancelled = campaign("ca", 100, senders=(SENDERS[1],))
    dispatcher = await scene.dispatcher()
    try:
        handle = await dispatcher.submit(paused, campaign_id="pa")
        await handle.pause()
        other = await dispatcher.submit(cancelled, campaign_id="ca")
        await other.pause()
        workers = scene.start_workers(1)
        await workers.wait_children(1)
        # The worker takes the chunks (the queue drains) and leaves every message alone.
        for _ in range(300):  # 30 s at most
            if await queued_chunks(dispatcher.kicker.broker, scene.names["queue"]) == 0:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"the worker did not take the paused campaign's chunks:\n{workers.tail()}")
        await asyncio.sleep(1)
        assert (await handle.progress()).counts == {"pending": 200}
        assert scene.creates() == collections.Counter()
        await other.cancel()
        assert (await other.progress()).counts == {"cancelled": 100}
        await handle.resume()
        async with asyncio.timeout(60):
            progress = await handle.wait()
        assert progress.counts == {"accepted": 200}
        results = [item async for item in handle.results()]
        assert [message_id for message_id, _ in results] == [m.id for m in paused]
        assert all(result.is_success for _, result in results)
        assert set(scene.creates()) == {m.id for m in paused}
        await scene.assert_counters_match_rows("pa")
        await scene.assert_counters_match_rows("ca")
    finally:
        await dispatcher.close()
        await dispatcher.connector.shutdown()


# -- the command line ------------------------------------------------------------------------------------


async def _messaging(*args: str, within: float = 60) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        MESSAGING, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(within):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_command_line_submit_progress_results_reconcile(scene: Scene) -> None:
    numbers = scene.tmp_path / "numbers.txt"
    numbers.write_text("".join(f"+1415{i:07d}\n" for i in range(40)) + "# a comment\n+14150000002\n")
    config = str(scene.config_path)
    workers = scene.start_workers(1)
    code, output = await _messaging(
        "campaign", "submit", "--config", config, "--connector", "sms", "--to-file", str(numbers),
        "--text", "hello from the command line", "--from", SENDERS[0], "--from", SENDERS[1], "--campaign-id", "cli",
    )  # fmt: skip
    assert code == 0, output
    assert output.strip().splitlines()[-1] == "cli"
    await workers.wait_children(1)
    code, output = await _messaging("campaign", "progress", "--config", config, "cli", "--timeout", "60")
    assert code == 0, output
    assert "accepted 40" in output
    code, output = await _messaging("campaign", "results", "--config", config, "cli", "--json")
    assert code == 0, output
    results = [json.loads(line) for line in output.splitlines()]
    assert len(results) == 40  # the number listed twice is one message
    assert {r["state"] for r in results} == {"accepted"}
    assert all(r["provider_id"].startswith("SM") for r in results)
    assert sorted(scene.creates().values()) == [1] * 40
    # Submitting the same file again with the same campaign id sends nothing more.
    code, output = await _messaging(
        "campaign", "submit", "--config", config, "--connector", "sms", "--to-file", str(numbers),
        "--text", "hello from the command line", "--from", SENDERS[0], "--from", SENDERS[1], "--campaign-id", "cli",
    )  # fmt: skip
    assert code == 0, output
    code, output = await _messaging("campaign", "reconcile", "--config", config)
    assert code == 0, output
    assert "Held in doubt: 0" in output
    await asyncio.sleep(1.0)
    assert sum(scene.creates().values()) == 40
    code, output = await _messaging("campaign", "progress", "--config", config, "nope", "--no-follow")
    assert code != 0
    assert "no campaign 'nope'" in output
    await scene.assert_counters_match_rows("cli")


async def test_reconcile_command_settles_held_messages(scene: Scene) -> None:
    """With ``in_doubt = "hold"`` an ambiguous answer is held; the operator's probe settles it."""
    scene.write_config(in_doubt="hold")
    messages = campaign("ho", 5)
    for message in messages[:2]:
        assert message.receiver is not None
        scene.emulator.inject("reset_after_create", match_to=message.receiver.address)
    workers = scene.start_workers(1)
    await workers.wait_children(1)
    await scene.submit(messages, "ho")
    async with asyncio.timeout(30):
        while True:
            if (await scene.ledger.progress("ho")).counts == {"accepted": 3, "unknown": 2}:
                break
            await asyncio.sleep(0.2)
    config = str(scene.config_path)
    code, output = await _messaging("campaign", "reconcile", "--config", config, "--campaign", "ho")
    assert code == 0, output
    assert "Held in doubt: 2" in output
    code, output = await _messaging("campaign", "reconcile", "--config", config, "--probe", "--campaign", "ho")
    assert code == 0, output
    assert "2 of 2 held message(s) settled" in output
    rows = {row["message_id"]: row for row in await scene.rows("ho")}
    assert {row["state"] for row in rows.values()} == {"accepted"}
    assert [mid for mid, row in rows.items() if row["reconciled"]] == [m.id for m in messages[:2]]
    assert sorted(scene.creates().values()) == [1] * 5
    await scene.assert_counters_match_rows("ho")


async def test_chaos_ledger_crashes_the_first_accepted_attempt_of_predicted_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """T3's premises, in this process: the crash picks ``crash_hits``, on an accepted first attempt only."""

    class Crashed(Exception):
        pass

    def crash(code: int) -> None:
        raise Crashed(code)

    async def recorded(self: Any, claim: Any, outcome: Any) -> bool:
        return True

    crash_log = tmp_path / "crashes.txt"
    monkeypatch.setenv(chaos.CRASH_LOG_ENV, str(crash_log))
    monkeypatch.setattr(chaos.os, "_exit", crash)
    monkeypatch.setattr(PostgresLedger, "record", recorded)  # the write that the crash cuts off
    ledger = chaos.CrashAfterAcceptLedger(None, schema="t_chaos")
    ids = [f"p-{i:05d}" for i in range(2000)]
    hits = crash_hits(ids)
    assert 20 <= len(hits) <= 60  # about 2 %
    accepted = SendOutcome(SendState.ACCEPTED, provider_id="SM1")
    lease = datetime.now(UTC)
    for mid in ids:
        first = Claim(mid, fence=1, attempts=1, lease_until=lease, deadline=0.0)
        if mid in hits:
            with pytest.raises(Crashed):
                await ledger.record(first, accepted)
        else:
            assert await ledger.record(first, accepted)
        # A later attempt, or an outcome other than accepted, never crashes.
        assert await ledger.record(Claim(mid, fence=2, attempts=2, lease_until=lease, deadline=0.0), accepted)
        assert await ledger.record(first, SendOutcome(SendState.UNKNOWN, error_code="TIMEOUT"))
    assert crash_log.read_text().split() == [mid for mid in ids if mid in hits]


# -- metrics: each worker process answers GET /metrics on [metrics] port + its index ----------------------


def _two_free_ports() -> int:
    """A port ``p`` such that ``p`` and ``p + 1`` are free now (worker-0 and worker-1 listen there)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise AssertionError("no two consecutive free ports")


async def _metrics_text(url: str, workers: Workers, within: float = 30.0) -> str:
    async with asyncio.timeout(within), aiohttp.ClientSession() as session:
        while True:
            assert workers.process.poll() is None, f"the worker manager exited:\n{workers.tail()}"
            try:
                async with session.get(url) as response:
                    assert response.status == 200
                    return await response.text()
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)  # not listening yet


def _sample(text: str, name: str, labels: Mapping[str, str]) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


async def test_each_worker_answers_metrics_on_its_port(scene: Scene) -> None:
    port = _two_free_ports()
    config = scene.config_path
    config.write_text(config.read_text() + f"\n[metrics]\nenabled = true\nport = {port}\n", encoding="utf-8")
    messages = campaign("metrics", 60)
    workers = scene.start_workers(2)
    await scene.submit(messages, "metrics")

    assert await scene.wait_done("metrics", within=60) == {"accepted": 60}

    texts = [await _metrics_text(f"http://127.0.0.1:{port + index}/metrics", workers) for index in range(2)]
    accepted = {"connector": "sms", "state": "accepted"}
    sent = {"channel": "twilio_sms", "connector": "sms", "outcome": "sent", "error_code": ""}
    # Every message had one pass, on one worker or the other: the two endpoints add up to the campaign.
    assert sum(_sample(text, "messaging_campaign_passes_total", accepted) for text in texts) == 60
    assert sum(_sample(text, "messaging_sends_total", sent) for text in texts) == 60
    assert sum(_sample(text, "messaging_pace_wait_seconds_count", {"connector": "sms"}) for text in texts) == 60


async def test_workers_send_nothing_to_a_suppressed_recipient(scene: Scene, pg_pool: Any) -> None:
    """``suppressions = true``: a recipient who replied STOP (listed by a status store) gets no provider call."""
    from messaging_scale import PostgresStatusStore

    scene.write_config(suppressions=True)
    messages = campaign("sup", 20)
    listed = messages[7].receiver
    assert listed is not None
    await PostgresStatusStore(pg_pool, schema=scene.schema).suppress(listed.address, "RECIPIENT_UNSUBSCRIBED")
    scene.start_workers(1)
    await scene.submit(messages, "sup")
    counts = await scene.wait_done("sup", within=60)
    assert counts == {"accepted": 19, "failed": 1}
    entry = await scene.ledger.get(messages[7].id)
    assert entry is not None
    assert (entry.state.value, entry.error_code, entry.provider_id) == ("failed", "RECIPIENT_UNSUBSCRIBED", None)
    assert listed.address not in {m.to for m in scene.emulator.messages.values()}, "the provider was called"
