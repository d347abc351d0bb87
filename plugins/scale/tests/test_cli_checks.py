"""The command line before any work starts: `messaging worker` checks every service and connector once,
and a service that cannot be reached is one line, never a traceback, never a secret.

Each test writes its own configuration (its own schema name, key prefix and queue) against the
real services on loopback, with a Twilio emulator in the test's event loop; the commands run as
subprocesses, as a user runs them.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from messaging_twilio_sms.emulator import TwilioEmulator

pytestmark = pytest.mark.services

MESSAGING = shutil.which("messaging") or str(Path(sys.executable).with_name("messaging"))


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def emulator() -> AsyncIterator[TwilioEmulator]:
    async with TwilioEmulator(port=0, auto_advance=False) as emu:
        yield emu


@pytest.fixture
def services(
    pg_dsn: str, pg_schema: str, redis_url: str, redis_prefix: str, amqp_names: tuple[str, str]
) -> dict[str, str]:
    """The test's own schema, key prefix and queue on the real services (removed afterwards)."""
    amqp_url, name = amqp_names
    return {
        "broker": amqp_url,
        "ledger": f"{pg_dsn}?schema={pg_schema}",
        "limiter": f"{redis_url}?prefix={redis_prefix}",
        "queue": name,
    }


def _write_config(
    path: Path, emu: TwilioEmulator, services: dict[str, str], *, auth_token: str | None = None, **urls: str
) -> Path:
    dispatcher: dict[str, Any] = {
        "kind": "taskiq",
        **services,
        "exchange": services["queue"],
        **urls,
        "messages_per_second": 10,
    }
    connector = {
        "AccountSid": emu.account_sid,
        "AuthToken": auth_token or emu.auth_token,
        "ApiBaseUrl": emu.base_url,
        "MaxRetries": 0,
    }
    lines = ["[connectors.sms]", 'channel = "twilio_sms"', "", "[connectors.sms.parameters]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in connector.items()]
    lines += ["", "[dispatcher]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in dispatcher.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def _messaging(*args: str, stdin: bytes | None = None, within: float = 60) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        MESSAGING,
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(within):
            output, _ = await process.communicate(stdin)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def _submit_from_stdin(config: Path, campaign_id: str, receivers: int) -> tuple[int, str]:
    """``messaging campaign submit`` of ``receivers`` numbers read from stdin."""
    numbers = "".join(f"+1415555{i:04d}\n" for i in range(receivers)).encode()
    return await _messaging(
        "campaign", "submit", "--config", str(config), "--connector", "sms", "--to-file", "-",
        "--text", "hi", "--from", "+15005550006", "--campaign-id", campaign_id,
        stdin=numbers,
    )  # fmt: skip


async def test_worker_refuses_to_start_naming_every_unreachable_service(
    emulator: TwilioEmulator, services: dict[str, str], tmp_path: Path
) -> None:
    wrong_token = uuid.uuid4().hex
    config = _write_config(
        tmp_path / "messaging.toml",
        emulator,
        services,
        auth_token=wrong_token,
        ledger=f"postgresql://postgres:hunter2-secret@127.0.0.1:{_closed_port()}/test",
        limiter=f"redis://:redis-secret@127.0.0.1:{_closed_port()}/0",
        broker=f"amqp://guest:amqp-secret@127.0.0.1:{_closed_port()}/",
    )
    code, output = await _messaging("worker", "--config", str(config), "--workers", "1", within=90)
    assert code == 1, output
    assert "the workers cannot start" in output
    lines = [line for line in output.splitlines() if line.startswith("  - ")]
    assert len(lines) == 4, output
    services_named = ("the ledger (PostgreSQL)", "the limiter (Redis)", "the broker (RabbitMQ)", "connector 'sms'")
    assert [line[4:].split(":")[0] for line in lines] == list(services_named), output
    assert any("connector 'sms'" in line and "AUTHENTICATION_FAILED" in line for line in lines), output
    assert "Traceback" not in output
    for secret in ("hunter2-secret", "redis-secret", "amqp-secret", wrong_token, emulator.auth_token):
        assert secret not in output
    assert emulator.messages == {}


async def test_worker_checks_pass_then_the_worker_runs(
    emulator: TwilioEmulator, services: dict[str, str], tmp_path: Path
) -> None:
    """With every service up the checks pass and Taskiq's worker starts (stopped by SIGTERM here)."""
    config = _write_config(tmp_path / "messaging.toml", emulator, services)
    process = await asyncio.create_subprocess_exec(
        MESSAGING, "worker", "--config", str(config), "--workers", "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not any("worker ready" in line for line in seen):
                line = await process.stdout.readline()
                assert line, "the worker exited:\n" + "".join(seen)
                seen.append(line.decode(errors="replace"))
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(30):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
    assert not any("cannot start" in line for line in seen)


async def test_campaign_commands_report_an_unreachable_ledger_in_one_line(
    emulator: TwilioEmulator, services: dict[str, str], tmp_path: Path
) -> None:
    ledger = f"postgresql://postgres:pg-secret@127.0.0.1:{_closed_port()}/x"
    config = _write_config(tmp_path / "messaging.toml", emulator, services, ledger=ledger)
    code, output = await _messaging("campaign", "progress", "--config", str(config), "nope", within=60)
    assert code == 1, output
    assert output.startswith("Error: "), output
    assert len(output.strip().splitlines()) == 1, output
    assert "Traceback" not in output
    assert "pg-secret" not in output


async def test_submit_checks_every_line_first_and_sends_nothing_for_a_bad_one(
    emulator: TwilioEmulator, services: dict[str, str], tmp_path: Path, ledger: Any
) -> None:
    config = _write_config(tmp_path / "messaging.toml", emulator, services)
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("+14155550001\n# a comment\nhello\n+14155550002\n4155550003\n", encoding="utf-8")
    code, output = await _messaging(
        "campaign", "submit", "--config", str(config), "--connector", "sms", "--to-file", str(numbers),
        "--text", "hi", "--from", "+15005550006", "--campaign-id", "bad-lines",
    )  # fmt: skip
    assert code == 1, output
    assert "2 invalid message(s), nothing submitted" in output
    assert "line 3 (hello)" in output
    assert "line 5 (4155550003)" in output
    assert "Traceback" not in output
    assert await ledger.campaign("bad-lines") is None
    assert (await ledger.progress("bad-lines")).total == 0


async def test_submit_reads_receivers_from_stdin(
    emulator: TwilioEmulator, services: dict[str, str], tmp_path: Path, ledger: Any
) -> None:
    config = _write_config(tmp_path / "messaging.toml", emulator, services)
    code, output = await _submit_from_stdin(config, "from-stdin", 30)
    assert code == 0, output
    assert "30 message(s) submitted" in output
    assert output.strip().splitlines()[-1] == "from-stdin"
    assert (await ledger.progress("from-stdin")).counts == {"pending": 30}  # no worker runs here


async def test_pause_resume_and_cancel_commands(
    emulator: TwilioEmulator, services: dict[str, str], tmp_path: Path, ledger: Any
) -> None:
    """The commands act through the campaign handle; no worker runs, so nothing is sent."""
    config = _write_config(tmp_path / "messaging.toml", emulator, services)
    code, output = await _submit_from_stdin(config, "control", 12)
    assert code == 0, output
    code, output = await _messaging("campaign", "pause", "--config", str(config), "control")
    assert code == 0, output
    assert "control: paused" in output
    assert (info := await ledger.campaign("control")) is not None
    assert info.paused
    code, output = await _messaging("campaign", "resume", "--config", str(config), "control")
    assert code == 0, output
    assert "control: resumed" in output
    assert (info := await ledger.campaign("control")) is not None
    assert not info.paused
    code, output = await _messaging("campaign", "cancel", "--config", str(config), "control")
    assert code == 0, output
    assert "control: 12 message(s) cancelled" in output
    assert "cancelled 12" in output
    assert (await ledger.progress("control")).counts == {"cancelled": 12}
    for command in ("pause", "resume"):
        code, output = await _messaging("campaign", command, "--config", str(config), "nope")
        assert code == 1, output
        assert "no campaign 'nope' was submitted through the taskiq dispatcher" in output
    code, output = await _messaging("campaign", "cancel", "--config", str(config), "nope")
    assert code == 1, output
    assert "no campaign 'nope' in the ledger" in output
    assert emulator.messages == {}


async def test_worker_with_metrics_and_without_the_extra_names_the_extra(
    emulator: TwilioEmulator, services: dict[str, str], tmp_path: Path
) -> None:
    config = _write_config(tmp_path / "messaging.toml", emulator, services)
    config.write_text(config.read_text() + "\n[metrics]\nenabled = true\n", encoding="utf-8")
    # `messaging worker` in an interpreter where prometheus_client cannot be imported.
    without_extra = "import sys; sys.modules['prometheus_client'] = None; from messaging_core.cli import main; main()"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", without_extra, "worker", "--config", str(config), "--workers", "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(90):
        output = (await process.communicate())[0].decode()
    assert process.returncode == 1, output
    lines = [line for line in output.splitlines() if line.startswith("  - ")]
    assert lines == [
        f"  - {config}: [metrics] metrics are enabled but prometheus-client is not installed: "
        "pip install 'pluggable-messaging[metrics]'"
    ], output
    assert "Traceback" not in output
