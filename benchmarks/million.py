"""One large campaign through the command line, one worker process SIGKILLed midway (#15's 1M-message run).

    .venv/bin/python -m benchmarks.scale --million                           # 1,000,000 receivers, 2 workers
    .venv/bin/python -m benchmarks.scale --million --million-messages 20000  # a quick try

A benchmark, never part of CI nor of the default ``benchmarks.scale`` run. It writes its own section
of ``benchmarks/results/scale.md`` (``HEADING``), which the default run keeps. Everything is bounded
by ``--run-timeout`` (3 hours by default here).

What it does, as a user would:

1. writes ``--million-messages`` distinct receivers to a file;
2. starts ``messaging worker -w W`` (Taskiq's manager and W processes) and the emulator in its own
   process (``--fast``, ``--latency``);
3. runs ``messaging campaign submit --to-file FILE --from ... --campaign-id million`` (it checks every
   line, then ``COPY`` and chunks on the queue) and follows the ledger's counters;
4. at half the messages accepted, SIGKILLs one worker process (a child of the manager). Taskiq's
   manager checks its children every second and starts a new process in place of a dead one
   (``max_fails`` is unlimited): the run records that restart, it does not start one itself. The
   killed process's chunks come back from RabbitMQ; its rows claimed with a live lease are settled
   once the lease expires (``in_doubt = "hold"``: held in doubt, never sent blindly again);
5. waits until the campaign is settled (no row PENDING or SUBMITTING), then reports wall time, CPU
   per message of each process kind, the peak memory of each process (``VmHWM``, sampled every
   0.5 s; a killed process's last sample), the ledger's size on disk, the final states, the
   messages in doubt, and the duplicates at the emulator (must be 0).

The emulator runs wrapped by this module's ``__main__`` (``python -m benchmarks.million``): the same
``TwilioEmulator`` with ``fast=True``, which, when stopped, writes how many messages it created per
receiver to a file. Reading a million messages back through the Messages list instead would cost
a scan of every message per page of 1,000 (a thousand pages).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import resource
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.__main__ import machine
from benchmarks.scale import (
    MESSAGING,
    SENDERS,
    Emulator,
    Observer,
    Workers,
    bench_database,
    children_of,
    cpu_seconds,
    join_sections,
    postgres_pids,
    redis_pids,
    split_sections,
    write_config,
)
from messaging_core.campaigns import CampaignProgress, SendState

HEADING = "## One large campaign from the command line, one worker killed midway"
CAMPAIGN = "million"
TEXT = "Benchmark campaign message"
SAMPLE_INTERVAL = 0.5


def vm_hwm_kib(pid: int) -> int | None:
    """Peak resident set size of a process so far (``VmHWM``, KiB); None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class Sampled:
    """What the sampler saw of one process."""

    kind: str
    pid: int
    cpu_first: float
    """CPU seconds at the first sample: 0 for a process started after the sampler did (its whole life counts)."""
    cpu_last: float
    hwm_kib: int
    alive: bool = True


@dataclass
class Sampler:
    """CPU seconds and peak memory of every process of each kind, sampled every ``SAMPLE_INTERVAL``.

    A process that dies keeps its last sample (its last half second of CPU is lost).
    """

    manager: int
    emulator: int
    submit: int | None = None
    seen: dict[int, Sampled] = field(default_factory=dict)

    def kinds(self) -> dict[str, list[int]]:
        kinds = {
            "workers": children_of(self.manager),
            "worker manager (Taskiq)": [self.manager],
            "PostgreSQL (all processes)": postgres_pids(),
            "Redis": redis_pids(),
            "emulator": [self.emulator],
            "this driver": [os.getpid()],
        }
        if self.submit is not None:
            kinds["submit (CLI)"] = [self.submit]
        return kinds

    def sample(self, *, started: bool = True) -> None:
        """Read every process once; ``started=False`` marks the baseline (CPU so far is not counted)."""
        alive = set()
        for kind, pids in self.kinds().items():
            for pid in pids:
                cpu, hwm = cpu_seconds(pid), vm_hwm_kib(pid)
                if hwm is None:
                    continue
                alive.add(pid)
                entry = self.seen.get(pid)
                if entry is None:
                    self.seen[pid] = Sampled(kind, pid, cpu if not started else 0.0, cpu, hwm)
                else:
                    entry.cpu_last, entry.hwm_kib = cpu, hwm
        for entry in self.seen.values():
            entry.alive = entry.pid in alive

    async def run(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL)
            self.sample()

    def cpu_by_kind(self) -> dict[str, float]:
        totals: dict[str, float] = collections.defaultdict(float)
        for entry in self.seen.values():
            totals[entry.kind] += entry.cpu_last - entry.cpu_first
        return dict(totals)


@dataclass
class Kill:
    """The worker process killed midway and what Taskiq's manager did about it."""

    pid: int
    at: float
    """Seconds after the submit started."""
    accepted: int
    """Messages accepted when it was killed."""
    replacement: int | None = None
    restarted_after: float | None = None
    """Seconds from the kill until a new worker process appeared; None: none did within a minute."""


async def kill_one_worker(workers: Workers, started: float, accepted: int) -> Kill | None:
    """SIGKILL one worker process; wait (a minute at most) for the manager to start another in its place.

    None when the manager has no child at this moment (being replaced): the caller tries again.
    """
    before = set(children_of(workers.process.pid))
    if not before:
        return None
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    kill = Kill(victim, time.perf_counter() - started, accepted)
    print(f"killed worker process {victim} at {accepted:,} accepted", flush=True)
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:
        new = set(children_of(workers.process.pid)) - before
        if new:
            kill.replacement = new.pop()
            kill.restarted_after = time.perf_counter() - started - kill.at
            print(f"the manager started worker process {kill.replacement}", flush=True)
            break
        await asyncio.sleep(0.1)
    return kill


def settled(progress: CampaignProgress, n: int) -> bool:
    """Every message is in the ledger and none is left to work on (each final, or held in doubt)."""
    return progress.total == n and not progress.count(SendState.PENDING) and not progress.count(SendState.SUBMITTING)


def submit_command(config: Path, receivers: Path) -> list[str]:
    """``messaging campaign submit``, as a user types it."""
    senders = [argument for sender in SENDERS for argument in ("--from", sender)]
    return [
        MESSAGING, "campaign", "submit", "--config", str(config), "--connector", "sms",
        "--to-file", str(receivers), "--text", TEXT, *senders, "--campaign-id", CAMPAIGN,
    ]  # fmt: skip


def start_command(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` with its output in ``log``."""
    with log.open("wb") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


async def run_submit(command: list[str], log: Path, sampler: Sampler) -> dict[str, Any]:
    """Run the submit command to its end: its wall time, and its CPU and peak memory from the kernel (exact)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = start_command(command, log)
    sampler.submit = process.pid
    try:
        status = await asyncio.to_thread(process.wait)
    except asyncio.CancelledError:  # the run's bound: the waiting thread returns once the command is gone
        process.kill()
        raise
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # only this child was reaped in between
    return {
        "status": status,
        "seconds": time.perf_counter() - started,
        "cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "peak_kib": after.ru_maxrss,
        "output": tail(log),
    }


async def follow(
    args: argparse.Namespace, observer: Observer, workers: Workers, submit: asyncio.Task[dict[str, Any]]
) -> dict[str, Any]:
    """Follow the ledger's counters until the campaign is settled; kill one worker at half the messages."""
    n = args.million_messages
    started = time.perf_counter()
    kill: Kill | None = None
    progress = CampaignProgress(CAMPAIGN, {})
    accepted, last_accepted = 0, 0.0
    try:
        async with asyncio.timeout(args.run_timeout):
            while not (submit.done() and settled(progress, n)):
                await asyncio.sleep(1.0)
                if submit.done() and submit.result()["status"] != 0:
                    break
                progress = await observer.progress(CAMPAIGN)
                if progress.count(SendState.ACCEPTED) > accepted:
                    accepted, last_accepted = progress.count(SendState.ACCEPTED), time.perf_counter() - started
                if kill is None and accepted >= n // 2:
                    kill = await kill_one_worker(workers, started, accepted)
        finished = submit.result()["status"] == 0
    except TimeoutError:
        finished = False
    return {
        "finished": finished,
        "wall": time.perf_counter() - started,
        "last_accepted": last_accepted,
        "counts": dict(progress.counts),
        "kill": kill,
    }


async def ledger_facts(url: str, schema: str, n: int) -> dict[str, Any]:
    """Read once the workers stopped: the sends table's size on disk, its rows by state, the receivers held in doubt.

    *heap*, *indexes* and *total* (with TOAST) are ``pg_relation_size``, ``pg_indexes_size`` and
    ``pg_total_relation_size`` of the table; the states are counted from the rows themselves (not
    the counters the progress reads), a cross-check of the run.
    """
    conn = await asyncpg.connect(url)
    try:
        sizes = await conn.fetchrow(
            "select pg_relation_size($1::regclass) as heap, pg_indexes_size($1::regclass) as indexes, "
            "pg_total_relation_size($1::regclass) as total",
            f"{schema}.sends",
        )
        states = await conn.fetch(
            f"select state, count(*) as n from {schema}.sends where campaign_id = $1 group by state", CAMPAIGN
        )
        in_doubt = await conn.fetch(
            f"select to_address from {schema}.sends where campaign_id = $1 and state = $2",
            CAMPAIGN,
            SendState.UNKNOWN.value,
        )
    finally:
        await conn.close()
    return {
        **dict(sizes),
        "per_message": sizes["total"] / n,
        "states": {row["state"]: row["n"] for row in states},
        "in_doubt": [row["to_address"] for row in in_doubt],
    }


async def main(args: argparse.Namespace) -> None:
    token = uuid.uuid4().hex[:12]
    name = f"bench_{token}"
    n = args.million_messages
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        receivers = directory / "receivers.txt"
        with receivers.open("w") as file:
            file.writelines(f"+1416{i:07d}\n" for i in range(n))
        counts_file = directory / "emulator-counts.json"
        emulator = Emulator(args.latency, "benchmarks.million", "--counts", str(counts_file))
        try:
            async with bench_database(name) as url:
                config = directory / "messaging.toml"
                write_config(config, emulator.base_url, name, name, name, args.million_concurrency, dsn=url)
                result = await measure(args, directory, config, url, name, receivers, emulator)
                result["ledger"] = await ledger_facts(url, name, n)
                (directory / "emulator-lookup.txt").write_text("\n".join(result["ledger"]["in_doubt"]))
        finally:
            emulator.stop(timeout=120)
            await cleanup(name)
        result["emulator"] = json.loads(counts_file.read_text()) if counts_file.exists() else None
    shown = ("finished", "wall", "last_accepted", "counts", "kill", "workers_ready", "emulator")
    print(json.dumps({key: result[key] for key in shown}, default=str), flush=True)
    write_section(args.output, section(args, result))
    print(f"written to {args.output}")


def write_section(path: Path, text: str) -> None:
    """Replace this run's section of ``path`` (or append it), leaving the rest as it is."""
    head, sections = split_sections(path.read_text(encoding="utf-8") if path.exists() else "")
    sections[HEADING] = text
    path.write_text(join_sections(head, sections.values()), encoding="utf-8")


async def measure(
    args: argparse.Namespace, directory: Path, config: Path, url: str, schema: str, receivers: Path, emulator: Emulator
) -> dict[str, Any]:
    """Workers up, the submit command, the campaign followed to its end; CPU and memory sampled throughout."""
    workers = Workers(config, args.million_workers, directory / "workers.log")
    try:
        await workers.started()
        sampler = Sampler(workers.process.pid, emulator.process.pid)
        sampler.sample(started=False)
        sampling = asyncio.create_task(sampler.run())
        observer = await Observer.open(url, schema)
        try:
            command = submit_command(config, receivers)
            submit = asyncio.create_task(run_submit(command, directory / "submit.log", sampler))
            followed = await follow(args, observer, workers, submit)
            if not submit.done():
                submit.cancel()
            sampler.sample()
        finally:
            sampling.cancel()
            await observer.close()
        submitted = await submit if submit.done() and not submit.cancelled() else None
    finally:
        workers.stop()
    ready = workers.log.read_text(errors="replace").count("worker ready")
    return {**followed, "submit": submitted, "sampler": sampler, "workers_ready": ready}


async def cleanup(name: str) -> None:
    """Remove the Redis keys and RabbitMQ queues named after the run (the database goes with ``bench_database``)."""
    import aio_pika
    import redis.asyncio as aioredis

    from benchmarks.scale import AMQP_URL, REDIS_URL

    redis = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{name}*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        for queue in (name, f"{name}.dead"):
            await channel.queue_delete(queue)
        await channel.exchange_delete(name)


def section(args: argparse.Namespace, result: dict[str, Any]) -> str:
    """The section of scale.md: the run, CPU per message per process kind, peak memory per process, ledger size."""
    n = args.million_messages
    sampler: Sampler = result["sampler"]
    submit, ledger = result["submit"], result["ledger"]
    lines = [
        HEADING,
        "",
        f"`python -m benchmarks.scale --million` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}): "
        f"{n:,} receivers from a file, submitted with `messaging campaign submit --to-file` over {len(SENDERS)} "
        f"senders and sent by `messaging worker -w {args.million_workers}` with {args.million_concurrency} sends "
        f"in flight per process, against the emulator in its own process (`--fast`, "
        f"{args.latency * 1000:.0f} ms per answer). At half the messages accepted one worker process was "
        "SIGKILLed; Taskiq's manager starts a new one in its place (it checks its children every second). "
        "*Wall*: from starting the submit command until the ledger has no message PENDING or SUBMITTING; "
        "the killed process's messages claimed in flight wait for their lease (60 s) to end and are then held "
        'in doubt (`in_doubt = "hold"`). *Last acceptance*: when the ledger\'s count of accepted messages last '
        "rose (read every second).",
        "",
    ]
    if not result["finished"]:
        lines += [
            f"**Not finished** (bound {args.run_timeout:.0f} s, or the submit failed); the counters then: "
            f"{result['counts']}.",
            "",
        ]
    lines += summary_lines(result)
    lines += ["", *cpu_lines(sampler, submit, n), "", *memory_lines(sampler, submit), "", *ledger_lines(ledger), ""]
    return "\n".join(lines)


def summary_lines(result: dict[str, Any]) -> list[str]:
    """Wall time, the submit, the rows by state, doubt and duplicates, and what became of the killed worker."""
    submit, kill, ledger = result["submit"], result["kill"], result["ledger"]
    emulator = result["emulator"] or {}
    wall, last = result["wall"], result["last_accepted"]
    states = ledger["states"]
    by_state = ", ".join(f"{state} {count:,}" for state, count in sorted(states.items()))
    accepted = result["counts"].get(SendState.ACCEPTED.value, 0)
    created = emulator.get("created")
    lines = [
        "| | |",
        "|---|---|",
        f"| wall | {wall:,.0f} s |",
        f"| last acceptance | at {last:,.0f} s: {accepted / last if last else 0:,.0f} msg/s accepted |",
        f"| submit command | {submit['seconds']:,.1f} s, exit status {submit['status']} |"
        if submit
        else "| submit command | — |",
        f"| rows by state, workers stopped | {by_state} |",
        f"| in doubt (UNKNOWN, held) | {states.get(SendState.UNKNOWN.value, 0):,}; created at the emulator: "
        f"{emulator.get('looked_up_created', '—')} |",
        f"| created at the emulator | {'—' if created is None else f'{created:,}'} |",
        f"| duplicates at the emulator | **{emulator.get('duplicates', '—')}** |",
    ]
    if kill is not None:
        restart = (
            f"new process {kill.replacement} after {kill.restarted_after:.1f} s (Taskiq's manager)"
            if kill.replacement
            else "no new process within 60 s"
        )
        lines.append(
            f"| worker killed | pid {kill.pid} at {kill.at:,.0f} s, {kill.accepted:,} accepted; {restart}; "
            f"`worker ready` logged {result['workers_ready']} times |"
        )
    return lines


def cpu_lines(sampler: Sampler, submit: dict[str, Any] | None, n: int) -> list[str]:
    """CPU per message of each process kind; *total* is workers + PostgreSQL + Redis, as in the table above."""
    cpu = sampler.cpu_by_kind()
    if submit is not None:
        cpu["submit (CLI)"] = submit["cpu"]  # exact, from the kernel's accounting of the reaped child
    total = sum(cpu.get(kind, 0.0) for kind in ("workers", "PostgreSQL (all processes)", "Redis"))
    lines = [
        "CPU over the run (sampled from `/proc`; the killed worker's last half second is lost):",
        "",
        "| process kind | CPU s | ms per message |",
        "|---|---|---|",
    ]
    lines += [f"| {kind} | {seconds:,.1f} | {seconds * 1000 / n:.3f} |" for kind, seconds in cpu.items()]
    lines.append(f"| **total: workers + PostgreSQL + Redis** | {total:,.1f} | **{total * 1000 / n:.3f}** |")
    return lines


def memory_lines(sampler: Sampler, submit: dict[str, Any] | None) -> list[str]:
    """Peak resident memory of each process (PostgreSQL: its largest process; shared buffers count when touched)."""
    lines = ["Peak memory (`VmHWM`) of each process:", "", "| process | pid | peak MiB |", "|---|---|---|"]
    postgres = [entry for entry in sampler.seen.values() if entry.kind.startswith("PostgreSQL")]
    for entry in sorted(sampler.seen.values(), key=lambda entry: (entry.kind, entry.pid)):
        if entry.kind.startswith("PostgreSQL") or entry.kind == "submit (CLI)":
            continue
        note = "" if entry.alive else " (gone: last sample)"
        lines.append(f"| {entry.kind}{note} | {entry.pid} | {entry.hwm_kib / 1024:,.0f} |")
    if postgres:
        largest = max(postgres, key=lambda entry: entry.hwm_kib)
        lines.append(
            f"| PostgreSQL, the largest of {len(postgres)} processes | {largest.pid} | {largest.hwm_kib / 1024:,.0f} |"
        )
    if submit is not None:
        lines.append(f"| submit (CLI), from the kernel | — | {submit['peak_kib'] / 1024:,.0f} |")
    return lines


def ledger_lines(ledger: dict[str, Any]) -> list[str]:
    mib = 1024 * 1024
    return [
        "The ledger's `sends` table on disk: "
        f"heap {ledger['heap'] / mib:,.0f} MiB, indexes {ledger['indexes'] / mib:,.0f} MiB, "
        f"total with TOAST {ledger['total'] / mib:,.0f} MiB ({ledger['per_message']:,.0f} bytes per message)."
    ]


# -- the emulator's process --------------------------------------------------------------------------


async def serve_emulator(args: argparse.Namespace) -> None:
    """``TwilioEmulator(fast=True)`` until SIGTERM; then its counts per receiver, written to ``--counts``.

    The file says how many messages were created, how many receivers got more than one (the
    duplicates, a few shown), and, for the receivers listed in ``<counts>`` with ``lookup`` in
    place of its suffix (the messages held in doubt), how many were created.
    """
    from messaging_twilio_sms.emulator import TwilioEmulator

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with TwilioEmulator(
        fast=args.fast, latency=args.latency, account_sid=args.account_sid, auth_token=args.auth_token
    ) as emulator:
        print(f"Twilio emulator listening on {emulator.base_url}", flush=True)
        await stop.wait()
        per_receiver = collections.Counter(message.to for message in emulator.messages.values() if not message.deleted)
    write_counts(Path(args.counts), per_receiver)


def write_counts(path: Path, per_receiver: collections.Counter[str]) -> None:
    """The emulator's counts, and how many of the receivers in ``emulator-lookup.txt`` beside it got a message."""
    lookup = path.with_name("emulator-lookup.txt")
    looked_up = lookup.read_text().split() if lookup.exists() else []
    twice = {to: count for to, count in per_receiver.items() if count > 1}
    summary = {
        "created": sum(per_receiver.values()),
        "duplicates": sum(count - 1 for count in twice.values()),
        "receivers_twice": dict(list(twice.items())[:10]),
        "looked_up": len(looked_up),
        "looked_up_created": sum(per_receiver[to] > 0 for to in looked_up),
    }
    path.write_text(json.dumps(summary))


def emulator_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.million", description=serve_emulator.__doc__)
    parser.add_argument("--counts", required=True, help="file the counts per receiver are written to on SIGTERM")
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--account-sid")
    parser.add_argument("--auth-token")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(serve_emulator(emulator_arguments()))
