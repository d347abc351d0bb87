"""Campaigns across service restarts: T7 (RabbitMQ ``stop_app; start_app``) and T8 (PostgreSQL restart).

Both restart a shared loopback service in the middle of a campaign run by real ``messaging worker``
processes, under each in-doubt policy, then check per message id (``policy_checks.py``): nothing
created twice at the emulator, nothing ACCEPTED without its own create, nothing lost, the counters
equal to the rows (T11); under ``probe_then_resend`` every row ``accepted``, under ``hold`` the
messages in doubt (only claims open at the restart) stay ``unknown``, never resent, and every
other row ``accepted``. The scene (emulator, configuration, workers) is ``test_campaigns.py``'s and
the checks are ``policy_checks.py``, loaded from their files (test modules cannot import each other
under ``--import-mode=importlib``).

The service is always brought back in ``finally`` (``start_app`` + ``await_startup``; ``pg_isready``)
so that later tests never see it stopped. The service control commands need root, as on the CI
machine: when they are missing or not permitted, or the service is not running, the test goes
through ``cannot_run`` (the root conftest): a failure under CI, a skip with the reason elsewhere.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

_spec = importlib.util.spec_from_file_location("_scale_campaigns", Path(__file__).with_name("test_campaigns.py"))
assert _spec is not None
assert _spec.loader is not None
_campaigns: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_campaigns)

scene = _campaigns.scene  # the fixture, registered for this module
campaign = _campaigns.campaign
Scene = _campaigns.Scene
checks = _campaigns.checks  # policy_checks.py, as test_campaigns.py loaded it

pytestmark = pytest.mark.services

N = 500
PACE = 50  # per sender; 2 senders: 100 messages/s, about 5 s of sending


def _run(*command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


async def _run_aside(*command: str, limit: float = 30) -> subprocess.CompletedProcess[str]:
    """``_run`` in a thread: the emulator shares this event loop and must keep answering meanwhile.

    Run inline, a restart that takes seconds freezes the emulator too: every provider call in
    flight then times out unanswered and is rightly held in doubt, which is the emulator's
    outage, not the service's (it showed as ~25 never-created messages held in T8 under hold).
    """
    return await asyncio.to_thread(_run, *command, timeout=limit)


CannotRun = Callable[[str], NoReturn]


def _require(command: str, cannot_run: CannotRun) -> None:
    """``command`` is on PATH and this process may use it (root)."""
    if shutil.which(command) is None:
        cannot_run(f"{command} not found on PATH: cannot restart the service")
    if os.geteuid() != 0:
        cannot_run(f"{command} needs root to restart the service (running as uid {os.geteuid()}); CI runs as root")


def _pg_cluster(cannot_run: CannotRun) -> tuple[str, str]:
    """``(version, name)`` of the one local PostgreSQL cluster (``pg_lsclusters``)."""
    _require("pg_ctlcluster", cannot_run)
    _require("pg_isready", cannot_run)
    listed = _run("pg_lsclusters", "--no-header") if shutil.which("pg_lsclusters") else None
    if listed is None or listed.returncode != 0:
        cannot_run("pg_lsclusters is missing or failed: cannot find the PostgreSQL cluster to restart")
    clusters = [line.split()[:2] for line in listed.stdout.splitlines() if line.strip()]
    if len(clusters) != 1:
        cannot_run(f"expected one local PostgreSQL cluster, pg_lsclusters lists {clusters}")
    version, name = clusters[0]
    return version, name


def _pg_ready() -> bool:
    return _run("pg_isready", "-h", "127.0.0.1", timeout=10).returncode == 0


def _wait_pg_ready(within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not _pg_ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"PostgreSQL not ready {within} s after its restart")
        time.sleep(0.2)


def _rabbit_up() -> bool:
    return _run("rabbitmqctl", "await_startup", "--timeout", "30", timeout=40).returncode == 0


async def _wait_some_sent(scene: Any, campaign_id: str, at_least: int, within: float = 20) -> dict[str, int]:
    """Until ``at_least`` messages are accepted: the campaign is under way."""
    async with asyncio.timeout(within):
        while True:
            counts = await checks.read_counts(scene, campaign_id, within)
            if counts.get("accepted", 0) >= at_least:
                return counts
            await asyncio.sleep(0.05)


# -- T7: RabbitMQ stopped and started mid-campaign ----------------------------------------------------------


@pytest.mark.parametrize("policy", checks.POLICIES)
async def test_t7_rabbitmq_stop_start_mid_campaign(scene: Any, cannot_run: CannotRun, policy: str) -> None:
    """T7: ``rabbitmqctl stop_app`` for 3 s while 2 worker processes send, then ``start_app``.

    Pass: the per-id checks of ``policy`` (no loss, 0 duplicates at the emulator, nothing recorded
    without a create, counters == rows; under ``hold`` only claims open at the stop may stay in
    doubt), and the same worker processes finish the campaign after RabbitMQ is back (no worker
    restarted).
    """
    _require("rabbitmqctl", cannot_run)
    if not _rabbit_up():
        cannot_run(
            "rabbitmqctl await_startup failed before the test: RabbitMQ is not running under rabbitmqctl; "
            "start it with `rabbitmq-server -detached`"
        )
    # Small chunks and prefetch: most of the campaign is still on the queue when RabbitMQ stops
    # (2 processes x qos 2 x 10 ids = 40 messages held by the workers), so it must be delivered
    # after start_app, to the same worker processes.
    scene.write_config(messages_per_second=PACE, chunk_size=10, qos=2, in_doubt=policy)
    messages = campaign("t7", N)
    ids = [m.id for m in messages]
    workers = scene.start_workers(2)
    children = await workers.wait_children(2)
    await scene.submit(messages, "t7")
    await _wait_some_sent(scene, "t7", at_least=N // 5)
    open_at_stop = await checks.snapshot(scene, "t7", "submitting")
    stopped = time.monotonic()
    stopped_at = time.time()
    try:
        result = await _run_aside("rabbitmqctl", "stop_app")
        assert result.returncode == 0, result.stderr
        await asyncio.sleep(3)
    finally:
        started = await _run_aside("rabbitmqctl", "start_app")
        assert started.returncode == 0, started.stderr
        assert _rabbit_up(), "RabbitMQ did not come back after start_app"
    back = time.monotonic()
    back_at = time.time()
    await checks.wait_settled(scene, "t7", policy, within=60)
    done = time.monotonic()
    v = await checks.verdict(scene, "t7", ids, policy, settle=done - stopped)
    print(f"\n{v.summary('T7')}; {len(open_at_stop)} claims open at stop_app")
    await checks.check(scene, "t7", ids, v, may_be_in_doubt=open_at_stop)
    rows = list(v.rows.values())
    assert workers.process.poll() is None, f"the worker manager exited:\n{workers.tail()}"
    stamps = [message.date_created for message in scene.emulator.messages.values()]
    while_down = sum(stopped_at <= t < back_at for t in stamps)
    after = sum(t >= back_at for t in stamps)
    # The workers resumed on their own: most messages were created after start_app, by the
    # processes that were running before the stop.
    assert after >= N // 2, (while_down, after)
    assert set(children) <= set(workers.children()), "a worker process was restarted"
    log = workers.log.read_text(errors="replace")
    print(
        f"T7: ChannelInvalidStateError (taskiq-aio-pika#46) in the log: {log.count('ChannelInvalidStateError')}; "
        f"{log.count('Traceback')} traceback(s)"
    )
    print(
        f"T7: {while_down} created while RabbitMQ was down, {after} after start_app; "
        f"RabbitMQ down {back - stopped:.1f} s; campaign done {done - back:.1f} s after start_app; "
        f"attempts {sum(row['attempts'] for row in rows)}; reconciled {sum(bool(row['reconciled']) for row in rows)}; "
        f"children before {sorted(children)} after {sorted(workers.children())}"
    )


# -- T8: PostgreSQL restarted mid-campaign ------------------------------------------------------------------


@pytest.mark.parametrize("policy", checks.POLICIES)
async def test_t8_postgresql_restart_mid_campaign(scene: Any, cannot_run: CannotRun, policy: str) -> None:
    """T8: restart PostgreSQL (``pg_ctlcluster … restart``) while 2 worker processes send.

    Pass: the chunks that fail while PostgreSQL is away are requeued after a backoff
    (``send_chunk: … requeued in … s after an error`` in the workers' log) and redelivered; the
    per-id checks of ``policy`` (no loss, 0 duplicates at the emulator, nothing recorded without a
    create, counters == rows; under ``hold`` only claims open around the restart may stay in
    doubt); the same worker manager finishes the campaign. The sweeper's ``stale_after`` is set
    beyond the test's length, so the requeued copies alone must carry the campaign through the
    restart.
    """
    version, name = _pg_cluster(cannot_run)
    if not _pg_ready():
        cannot_run(
            "pg_isready -h 127.0.0.1 fails before the test: PostgreSQL is not running; "
            f"start it with `pg_ctlcluster --skip-systemctl-redirect {version} {name} start`"
        )
    scene.write_config(messages_per_second=PACE, stale_after=600, in_doubt=policy)
    messages = campaign("t8", N)
    ids = [m.id for m in messages]
    workers = scene.start_workers(2)
    await workers.wait_children(2)
    await scene.submit(messages, "t8")
    await _wait_some_sent(scene, "t8", at_least=N // 5)
    open_before = await checks.snapshot(scene, "t8", "submitting")
    restarted = time.monotonic()
    try:
        result = await _run_aside("pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart", limit=60)
        assert result.returncode == 0, result.stderr
    finally:
        if not _pg_ready():
            _run("pg_ctlcluster", "--skip-systemctl-redirect", version, name, "start", timeout=60)
        _wait_pg_ready()
    back = time.monotonic()
    # The test's own pool reconnects. Claims made after the first snapshot and cut off by the
    # restart are still open now (their leases end, and only then are they marked in doubt).
    open_after = await checks.snapshot(scene, "t8", "submitting", "unknown", within=20)
    await checks.wait_settled(scene, "t8", policy, within=60)
    done = time.monotonic()
    v = await checks.verdict(scene, "t8", ids, policy, settle=done - restarted)
    print(
        f"\n{v.summary('T8')}; {len(open_before)} claims open before the restart, "
        f"{len(open_after)} open or in doubt once PostgreSQL was back"
    )
    await checks.check(scene, "t8", ids, v, may_be_in_doubt=open_before | open_after)
    rows = list(v.rows.values())
    assert workers.process.poll() is None, f"the worker manager exited:\n{workers.tail()}"
    log = workers.log.read_text(errors="replace")
    requeued = log.count("s after an error")
    assert requeued > 0, f"no chunk failed while PostgreSQL restarted:\n{workers.tail()}"
    print(
        f"T8: PostgreSQL restart took {back - restarted:.1f} s; campaign done {done - back:.1f} s later; "
        f"{requeued} chunk(s) requeued; attempts {sum(row['attempts'] for row in rows)}; "
        f"reconciled {sum(bool(row['reconciled']) for row in rows)}"
    )
