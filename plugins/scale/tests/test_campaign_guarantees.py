"""Campaign guarantees on every path (issue #12), through the dispatcher, the handle and the command line.

Real PostgreSQL, Redis and RabbitMQ; each test in its own schema, key prefix and queue. Worker
processes are not started here: a chunk is run by a ``ChunkSender`` in the test's process, and
the command line runs as a subprocess, as a user runs it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from messaging_core import ChannelConnector, ConfigurationError, Endpoint, Message, TextContent
from messaging_core.campaigns import Claim, SendPipeline, SendState
from messaging_scale import ChunkSender, PostgresLedger, TaskiqCampaign, TaskiqDispatcher, create_broker
from messaging_scale._chunks import WORKER_ERROR
from messaging_twilio_sms.emulator import TwilioEmulator

pytestmark = pytest.mark.services

SENDER = "+15550001111"
MESSAGING = shutil.which("messaging") or str(Path(sys.executable).with_name("messaging"))


def _messages(n: int, prefix: str) -> list[Message]:
    return [
        Message(f"{prefix}-{i:04d}", Endpoint.phone(SENDER), Endpoint.phone(f"+1555000{i:04d}"), TextContent("hi"))
        for i in range(n)
    ]


@pytest.fixture
async def emulator() -> AsyncIterator[TwilioEmulator]:
    async with TwilioEmulator(port=0, auto_advance=False) as emu:
        yield emu


def _config(path: Path, emu: TwilioEmulator, pg_dsn: str, pg_schema: str, amqp_names: tuple[str, str]) -> Path:
    amqp_url, name = amqp_names
    dispatcher = {
        "kind": "taskiq",
        "broker": amqp_url,
        "ledger": f"{pg_dsn}?schema={pg_schema}",
        "queue": name,
        "exchange": name,
    }
    connector = {"AccountSid": emu.account_sid, "AuthToken": emu.auth_token, "ApiBaseUrl": emu.base_url}
    lines = ["[connectors.sms]", 'channel = "twilio_sms"', "", "[connectors.sms.parameters]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in connector.items()]
    lines += ["", "[dispatcher]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in dispatcher.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


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


# -- 1. reused ids are reported -------------------------------------------------------------------------


async def test_submit_reports_ids_already_in_the_ledger(
    amqp_names: tuple[str, str], memory_connector: ChannelConnector, ledger: PostgresLedger
) -> None:
    url, name = amqp_names
    prefix = uuid.uuid4().hex[:8]
    broker = create_broker(url, queue=name, exchange=name)
    dispatcher = TaskiqDispatcher(memory_connector, ledger=ledger, broker=broker, chunk_size=4, copy_size=4)
    try:
        first = await dispatcher.submit(_messages(6, prefix), campaign_id="first")
        assert first.submission is not None
        assert (first.submission.new, first.submission.existing_total) == (6, 0)
        # Ten ids over three COPY batches: four held by "first", six new.
        second = await dispatcher.submit(_messages(10, prefix)[2:] + _messages(2, "x" + prefix), campaign_id="second")
        assert second.submission is not None
        assert (second.submission.new, dict(second.submission.existing)) == (6, {"first": 4})
        again = await dispatcher.submit(_messages(10, prefix)[2:], campaign_id="second")
        assert again.submission is not None
        assert (again.submission.new, dict(again.submission.existing)) == (0, {"first": 4, "second": 4})
        assert dispatcher.campaign("second").submission is None, "a handle not from submit knows nothing of it"
    finally:
        await dispatcher.close()


async def test_the_command_line_reports_reused_ids_and_can_refuse_them(
    emulator: TwilioEmulator, pg_dsn: str, pg_schema: str, amqp_names: tuple[str, str], tmp_path: Path, ledger: Any
) -> None:
    config = _config(tmp_path / "messaging.toml", emulator, pg_dsn, pg_schema, amqp_names)
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("".join(f"+1415555{i:04d}\n" for i in range(5)), encoding="utf-8")
    submit = ("campaign", "submit", "--config", str(config), "--connector", "sms", "--to-file", str(numbers))
    submit += ("--text", "hi", "--from", "+15005550006", "--campaign-id", "reused")
    code, output = await _messaging(*submit)
    assert code == 0, output
    assert "5 message(s) submitted: 5 new" in output
    code, output = await _messaging(*submit)
    assert code == 0, output
    assert "5 message(s) submitted: 0 new, 5 already in the ledger (campaign reused: 5)" in output
    numbers.write_text("".join(f"+1415555{i:04d}\n" for i in range(3, 8)), encoding="utf-8")
    code, output = await _messaging(*submit, "--fail-on-existing")
    assert code == 1, output
    assert "2 message id(s) already in the ledger (campaign reused: 2); nothing submitted" in output
    assert (await ledger.progress("reused")).total == 5, "nothing submitted"
    code, output = await _messaging(*submit)
    assert "3 new, 2 already in the ledger (campaign reused: 2)" in output
    assert (await ledger.progress("reused")).total == 8


# -- 2. poison isolation ----------------------------------------------------------------------------------


async def test_an_unreadable_row_fails_alone_after_max_attempts(
    memory_connector: ChannelConnector, ledger: PostgresLedger, pg_pool: Any, pg_schema: str
) -> None:
    prefix = uuid.uuid4().hex[:8]
    messages = _messages(5, prefix)
    await ledger.register_campaign(prefix, memory_connector.name)
    await ledger.add(prefix, [(m, SENDER, 1) for m in messages])
    poison = messages[2].id
    async with pg_pool.acquire() as conn:
        await conn.execute(f"update {pg_schema}.sends set payload = '{{\"id\": 1}}' where message_id = $1", poison)
    sender = ChunkSender(ledger, SendPipeline(memory_connector, ledger=ledger), max_attempts=3)
    ids = [m.id for m in messages]
    for _ in range(2):  # the chunk is tried again (its task raises), the others are sent the first time
        with pytest.raises(RuntimeError, match="cannot be read"):
            await sender.send(ids)
        assert (await ledger.progress(prefix)).counts == {"accepted": 4, "pending": 1}
    assert await sender.send(ids) == {poison: "failed"}
    entry = await ledger.get(poison)
    assert entry is not None
    assert (entry.state, entry.error_code) == (SendState.FAILED, WORKER_ERROR)
    assert entry.error is not None
    assert "unreadable message" in entry.error
    progress = await TaskiqCampaign(prefix, ledger=ledger, poll_interval=0.05).wait()
    assert progress.counts == {"accepted": 4, "failed": 1}
    results = dict([item async for item in TaskiqCampaign(prefix, ledger=ledger).results()])
    error = results[poison].error
    assert error is not None
    assert "unreadable message" in error.message


async def test_a_campaign_whose_connector_is_missing_fails_visibly(
    emulator: TwilioEmulator,
    memory_connector: ChannelConnector,
    ledger: PostgresLedger,
    pg_dsn: str,
    pg_schema: str,
    amqp_names: tuple[str, str],
    tmp_path: Path,
) -> None:
    prefix = uuid.uuid4().hex[:8]
    messages = _messages(4, prefix)
    await ledger.register_campaign(prefix, "bulk-eu")
    await ledger.add(prefix, [(m, SENDER, 1) for m in messages])
    pipeline = SendPipeline(memory_connector, ledger=ledger)

    async def pipelines(name: str | None) -> SendPipeline:
        if name != memory_connector.name:
            raise ConfigurationError(f"messaging.toml: no enabled connector {name!r} (a campaign names it)")
        return pipeline

    assert await ChunkSender(ledger, pipelines).send([m.id for m in messages]) == {m.id: "paused" for m in messages}
    handle = TaskiqCampaign(prefix, ledger=ledger, poll_interval=0.05)
    async with asyncio.timeout(5):
        progress = await handle.wait()
    assert progress.counts == {"pending": 4}, "nothing was sent, nothing is lost"
    assert progress.failure is not None
    assert "no enabled connector 'bulk-eu'" in progress.failure
    config = _config(tmp_path / "messaging.toml", emulator, pg_dsn, pg_schema, amqp_names)
    code, output = await _messaging("campaign", "progress", "--config", str(config), prefix, "--timeout", "10")
    assert code == 1, output
    assert "FAILED: no worker can send it" in output
    assert "bulk-eu" in output
    await handle.resume()
    assert (await handle.progress()).failure is None, "resuming clears the failure"


# -- 3. recovery in about one lease -----------------------------------------------------------------------


async def test_an_expired_claim_is_swept_about_one_lease_after_it(ledger: PostgresLedger) -> None:
    """A killed worker's claim: the sweeper's query hands it out lease + grace after the claim, not stale_after."""
    prefix = uuid.uuid4().hex[:8]
    (message,) = _messages(1, prefix)
    await ledger.add(prefix, [(message, SENDER, 1)])
    lease, grace = 1.0, 0.5
    claimed_at = time.monotonic()
    assert isinstance(await ledger.claim(message.id, lease=lease, request_timeout=0.5), Claim)  # and the worker dies
    found: list[str] = []
    async with asyncio.timeout(10):
        while not found:
            await asyncio.sleep(0.05)
            found = await ledger.stale(stale_after=300, unknown=False, unclaimed=False, expired_after=grace)
    taken_up = time.monotonic() - claimed_at
    print(f"expired claim taken up {taken_up:.2f} s after the claim (lease {lease} s, grace {grace} s)")
    assert found == [message.id]
    assert lease + grace - 0.05 <= taken_up <= lease + grace + 0.5, taken_up
    assert await ledger.stale(stale_after=300, unknown=False, unclaimed=False, expired_after=grace) == [], "once"
