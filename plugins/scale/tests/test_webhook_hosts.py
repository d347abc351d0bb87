"""T10: three webhook host processes share one PostgreSQL status store (design §7, §5.3).

Three real ``messaging serve --status-store postgresql://…`` processes on different loopback ports,
behind one public URL as a load balancer would put them (``[webhooks] public_url``: each host
checks signatures against the URL the provider called), share the ledger's tables in the test's
schema. The ledger holds 6,667 messages (20,001 callbacks, then 2,000 replays): most accepted
with their SID, some in doubt (UNKNOWN)
and some still SUBMITTING without a SID. This process posts their status callbacks, signed as
Twilio signs them: queued, sent, then delivered or undelivered per message, shuffled, 10 %
replayed with the same idempotency token, spread at random over the three hosts at bounded
concurrency. Callbacks of the SUBMITTING messages carry no ``MessageId`` (as when the callback is
set on a Messaging Service): they are orphans until the worker records the SID, which happens
while the second part of the callbacks is being posted.

Dispatches are counted by an observer plugin that the hosts load the ordinary way, through an
entry point (a ``.dist-info`` on ``PYTHONPATH``): each host writes one line per dispatched
callback to a file of its own, naming the callback's token.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

import aiohttp
import pytest

from messaging_core import Message, MessageStatus
from messaging_core.campaigns import Claim, SendOutcome, SendState
from messaging_scale import PostgresLedger
from messaging_twilio_sms.webhooks import SIGNATURE_HEADER, compute_signature

pytestmark = pytest.mark.services

HOSTS = 3
MESSAGES = 6_667  # three callbacks each: 20,001 signed callbacks, then 10 % replayed (22,001)
REPLAYED = 0.10
CONCURRENCY = 48
"""Callbacks in flight at once, over the three hosts."""
POOL_PER_HOST = 6
PUBLIC_URL = "https://hooks.example.test"
ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "t10-auth-token"
STARTUP_SECONDS = 20.0
TEST_SECONDS = 90.0
STATUS = {
    "queued": MessageStatus.QUEUED,
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "undelivered": MessageStatus.DELIVERY_FAILED,
}

OBSERVER = '''"""Test observer: one line per dispatched status callback (its token, ids and status)."""
import os

from messaging_core import hookimpl

_log = open(os.environ["T10_DISPATCH_LOG"], "a", buffering=1, encoding="utf-8")


@hookimpl
async def message_status_changed(connector, update):
    token = update.additional_data.get("TestToken", "")
    _log.write(f"{token}\\t{update.message_id}\\t{update.remote_message_id}\\t{update.status.value}\\n")
'''


def _messaging() -> str:
    script = Path(sys.executable).parent / "messaging"
    if not script.exists():
        pytest.fail("the `messaging` console script is not installed beside this Python (pip install -e .)")
    return str(script)


def observer_plugin(directory: Path) -> Path:
    """A directory that, on ``PYTHONPATH``, installs the observer as plugin ``t10_observer``."""
    directory.mkdir()
    (directory / "t10_observer.py").write_text(OBSERVER, encoding="utf-8")
    info = directory / "t10_observer-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: t10-observer\nVersion: 1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[messaging_core]\nt10_observer = t10_observer\n", encoding="utf-8")
    return directory


def sid(index: int) -> str:
    return f"SM{index:032x}"


class ServeProcess:
    """``messaging serve`` in a process of its own; stdout is read by a thread, so every wait is bounded."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True)
        self._reader.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, seconds: float = STARTUP_SECONDS) -> re.Match[str]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if found := re.search(pattern, line):
                return found
        self.stop(signal.SIGKILL)
        stderr = self.process.stderr.read() if self.process.stderr else ""
        pytest.fail(f"no line matching {pattern!r}; stdout: {self.seen}; stderr: {stderr[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the process (by its own pid) and wait, bounded; kill it if it does not go."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._reader.join(timeout=2)
        return self.process.returncode


@pytest.fixture
def hosts(tmp_path: Path, pg_dsn: str, pg_schema: str) -> Iterator[tuple[list[str], list[Path], list[ServeProcess]]]:
    """Three ``messaging serve`` processes on the test's schema: (base URLs, dispatch logs, processes)."""
    config = tmp_path / "hosts.toml"
    config.write_text(
        f'[webhooks]\npublic_url = "{PUBLIC_URL}"\n'
        f'[connectors.sms]\nchannel = "twilio_sms"\n[connectors.sms.parameters]\n'
        f'AccountSid = "{ACCOUNT_SID}"\nAuthToken = "{AUTH_TOKEN}"\nApiBaseUrl = "http://127.0.0.1:9"\n',
        encoding="utf-8",
    )
    plugin_dir = observer_plugin(tmp_path / "observer")
    store_url = f"{pg_dsn}{'&' if '?' in pg_dsn else '?'}schema={pg_schema}&pool_max_size={POOL_PER_HOST}"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "MESSAGING_"))}
    base_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")]))
    logs = [tmp_path / f"dispatched-{n}.tsv" for n in range(HOSTS)]
    processes = []
    try:
        for log in logs:
            args = [_messaging(), "serve", "--config", str(config), "--port", "0", "--status-store", store_url]
            processes.append(ServeProcess(args, {**base_env, "T10_DISPATCH_LOG": str(log)}))
        bases = [process.wait_for(r"listening on (http://127\.0\.0\.1:\d+)").group(1) for process in processes]
        yield bases, logs, processes
    finally:
        for process in processes:
            process.stop(signal.SIGKILL)


class Callback:
    """One status callback as the provider sends it (and resends it, with the same token)."""

    __slots__ = ("body", "headers", "index", "path", "raw", "token")

    def __init__(self, index: int, message_id: str, raw: str, *, with_mid: bool) -> None:
        self.index = index
        self.raw = raw
        self.token = uuid.uuid4().hex
        self.path = "/webhooks/sms/status" + (f"?{urlencode({'MessageId': message_id})}" if with_mid else "")
        form = {
            "MessageSid": sid(index),
            "MessageStatus": raw,
            "AccountSid": ACCOUNT_SID,
            "To": "+15551230001",
            "TestToken": self.token,
        }
        self.body = urlencode(form).encode()
        # Every host checks against the public URL, so one signature serves whichever host gets it.
        self.headers = {
            SIGNATURE_HEADER: compute_signature(AUTH_TOKEN, PUBLIC_URL + self.path, form),
            "I-Twilio-Idempotency-Token": self.token,
            "Content-Type": "application/x-www-form-urlencoded",
        }


async def post_all(
    session: aiohttp.ClientSession, bases: list[str], callbacks: list[Callback], rng: random.Random
) -> Counter[int]:
    """Post every callback to a random host, ``CONCURRENCY`` at a time; counts of the HTTP answers."""
    answers: Counter[int] = Counter()
    pending = iter(callbacks)

    async def worker() -> None:
        for callback in pending:  # one shared iterator: each callback goes to one worker
            base = rng.choice(bases)
            async with session.post(base + callback.path, data=callback.body, headers=callback.headers) as response:
                await response.read()
                answers[response.status] += 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return answers


async def _prepare_ledger(
    ledger: PostgresLedger, messages: list[tuple[Message, str, int]]
) -> tuple[dict[int, str], dict[int, Claim]]:
    """Add the messages; leave each in its group's state. Returns each message's group and the open claims."""
    await ledger.add("t10", messages)
    groups: dict[int, str] = {}
    open_claims: dict[int, Claim] = {}
    gate = asyncio.Semaphore(16)

    async def prepare(index: int, message: Message) -> None:
        group = {7: "in_doubt", 8: "orphan", 9: "by_sid"}.get(index % 10, "by_mid")
        groups[index] = group
        async with gate:
            claim = await ledger.claim(message.id, lease=600.0, request_timeout=10.0)
            assert isinstance(claim, Claim)
            if group == "orphan":
                open_claims[index] = claim  # SUBMITTING, no SID yet: recorded during the callbacks
            elif group == "in_doubt":
                assert await ledger.record(claim, SendOutcome(SendState.UNKNOWN, error_code="TIMEOUT"))
            else:
                assert await ledger.record(claim, SendOutcome(SendState.ACCEPTED, provider_id=sid(index)))

    await asyncio.gather(*(prepare(i, message) for i, (message, _, _) in enumerate(messages)))
    return groups, open_claims


async def _healthz(session: aiohttp.ClientSession, base: str) -> dict[str, int]:
    async with session.get(base + "/healthz") as response:
        body: dict[str, Any] = await response.json()
    counters: dict[str, int] = body["webhooks"]
    return counters


async def test_three_hosts_share_one_status_store(
    hosts: tuple[list[str], list[Path], list[ServeProcess]],
    ledger: PostgresLedger,
    pg_pool: Any,
    pg_schema: str,
    make_messages: Callable[..., list[tuple[Message, str, int]]],
) -> None:
    bases, logs, processes = hosts
    assert len(set(bases)) == HOSTS
    rng = random.Random(10)
    async with asyncio.timeout(TEST_SECONDS):
        messages = make_messages(MESSAGES, prefix="t10")
        groups, open_claims = await _prepare_ledger(ledger, messages)
        final = {index: rng.choice(["delivered", "undelivered"]) for index in range(MESSAGES)}
        originals = [
            Callback(index, message.id, raw, with_mid=groups[index] in ("by_mid", "in_doubt"))
            for index, (message, _, _) in enumerate(messages)
            for raw in ("queued", "sent", final[index])
        ]
        callbacks = originals + rng.sample(originals, int(len(originals) * REPLAYED))
        rng.shuffle(callbacks)
        first_part = len(callbacks) // 3

        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15)) as session:
            started = time.perf_counter()
            answers = await post_all(session, bases, callbacks[:first_part], rng)
            async with pg_pool.acquire() as conn:
                orphans_before = await conn.fetchval(f"select count(*) from {pg_schema}.orphan_status")

            async def record_sids() -> None:
                # The worker learns the SIDs while callbacks keep arriving: orphans merge into their rows.
                for index, claim in open_claims.items():
                    outcome = SendOutcome(SendState.ACCEPTED, provider_id=sid(index))
                    assert await ledger.record(claim, outcome)

            more, _ = await asyncio.gather(post_all(session, bases, callbacks[first_part:], rng), record_sids())
            answers += more
            elapsed = time.perf_counter() - started
            counters = [await _healthz(session, base) for base in bases]

        async with pg_pool.acquire() as conn:
            rows = await conn.fetch(f"select message_id, state, provider_id, status from {pg_schema}.sends")
            orphans_after = await conn.fetchval(f"select count(*) from {pg_schema}.orphan_status")

    rate = len(callbacks) / elapsed
    print(f"\nT10: {len(callbacks)} callbacks over {HOSTS} hosts in {elapsed:.1f} s = {rate:.0f} callbacks/s")

    # Every host answered every callback with Twilio's 204: no 500, no refused signature.
    assert answers == Counter({204: len(callbacks)}), answers
    assert sum(c["received"] for c in counters) == len(callbacks)
    assert all(c["received"] > len(callbacks) / HOSTS / 2 for c in counters), counters  # spread over all three
    assert sum(c["errors"] + c["forbidden"] + c["rejected"] for c in counters) == 0, counters

    # Every message ends at its last status, accepted with its SID: in-doubt sends were settled
    # by their callbacks, and orphans merged once the SID was recorded.
    assert orphans_before > 0
    assert orphans_after == 0
    by_id = {row["message_id"]: row for row in rows}
    assert len(by_id) == MESSAGES
    wrong = [
        (message.id, groups[index], dict(by_id[message.id]))
        for index, (message, _, _) in enumerate(messages)
        if (by_id[message.id]["status"], by_id[message.id]["state"], by_id[message.id]["provider_id"])
        != (STATUS[final[index]].value, SendState.ACCEPTED.value, sid(index))
    ]
    assert wrong == [], f"{len(wrong)} messages wrong, e.g. {wrong[:3]}"

    # Each callback was dispatched by one host, at most once; each message's last status exactly once.
    lines = [line.split("\t") for log in logs for line in log.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == sum(c["dispatched"] for c in counters) > 0
    assert sum(c["dispatched"] + c["not_applied"] for c in counters) == len(callbacks)
    dispatched = Counter(token for token, *_ in lines)
    assert max(dispatched.values()) == 1, dispatched.most_common(3)
    by_token = {callback.token: callback for callback in originals}
    assert set(dispatched) <= set(by_token)
    finals = [c for c in originals if c.raw == final[c.index]]
    assert [c.token for c in finals if dispatched[c.token] != 1] == []
    # And a host never dispatched a message backwards (the store applies forward moves only).
    for log in logs:
        ranks: dict[str, int] = {}
        for token, _, remote_id, status in (line.split("\t") for line in log.read_text(encoding="utf-8").splitlines()):
            assert MessageStatus(status) is STATUS[by_token[token].raw]
            rank = MessageStatus(status).rank
            assert rank > ranks.get(remote_id, 0), (remote_id, status)
            ranks[remote_id] = rank

    # SIGTERM: each host stops cleanly (requests finished, store closed).
    for process in processes:
        assert process.stop() == 0
        assert "stopped" in "\n".join([*process.seen, *iter(process.lines.queue)])
    print(json.dumps({"callbacks": len(callbacks), "seconds": round(elapsed, 2), "per_second": round(rate)}))
