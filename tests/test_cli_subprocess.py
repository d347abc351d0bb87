"""The real ``messaging`` console script, run as a subprocess (exit codes, stdout/stderr, signals).

Every wait is bounded; long-running commands (``emulator``, ``serve``) are always killed in a
``finally``. Emulators the commands talk to run in this process, in a thread with their own loop.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from messaging_twilio_sms.emulator import ThreadedTwilioEmulator as ThreadedEmulator

REPO = Path(__file__).resolve().parent.parent
SENDER = "+15005550006"
RECEIVER = "+15551230001"
SID = re.compile(r"\b(?:SM|MM)[0-9a-f]{32}\b")
URL = re.compile(r"http://127\.0\.0\.1:\d+")
STARTUP_SECONDS = 10.0


def _console_script() -> str:
    beside_python = Path(sys.executable).parent / "messaging"
    found = str(beside_python) if beside_python.exists() else shutil.which("messaging")
    if found is None:
        pytest.fail("the `messaging` console script is not installed (pip install -e .)")
    return found


MESSAGING = _console_script()


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "MESSAGING_"))}
    env.update(COLUMNS="200", PYTHONUNBUFFERED="1")
    return env


def run(*args: str, timeout: float = 20.0, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MESSAGING, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=_environment(), check=False
    )


class Background:
    """A long-running command; its stdout lines are read by a thread so that waits stay bounded."""

    def __init__(self, *args: str, program: tuple[str, ...] = (MESSAGING,)) -> None:
        self.process = subprocess.Popen(
            [*program, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=_environment(),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert self.process.stdout is not None
        self._pump_thread = threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True)
        self._pump_thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def wait_for_line(self, pattern: str, seconds: float = STARTUP_SECONDS) -> str:
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.process.poll() is not None and self.lines.empty()):
                self.stop()
                pytest.fail(f"no line matching {pattern!r}; output so far: {self.seen}; stderr: {self.stderr()}")
            try:
                line = self.lines.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return "(still running)"
        return self.process.stderr.read()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the process and wait (bounded); kill it if it does not go."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._pump_thread.join(timeout=2)  # the pipe is at its end once the process is gone
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return self.process.returncode


@pytest.fixture
def emu() -> Iterator[ThreadedEmulator]:
    with ThreadedEmulator() as running:
        yield running


@pytest.fixture
def config_file(tmp_path: Path, emu: ThreadedEmulator) -> Path:
    e = emu.emulator
    path = tmp_path / "messaging.toml"
    path.write_text(
        f'[connectors.sms]\nchannel = "twilio_sms"\n[connectors.sms.parameters]\n'
        f'AccountSid = "{e.account_sid}"\nAuthToken = "{e.auth_token}"\nApiBaseUrl = "{e.base_url}"\n',
        encoding="utf-8",
    )
    return path


def http(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


# -- one-shot commands ---------------------------------------------------------------------------------


def test_channels() -> None:
    result = run("channels")
    assert result.returncode == 0, result.stderr
    assert "twilio_sms" in result.stdout
    assert "SimpleSms" in result.stdout


def test_config_validate_of_a_bad_file_is_a_clean_failure(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[connectors.sms]\nchannel = "twilio_sms"\n[connectors.sms.parameters]\n'
        'AccountSid = "AC0123456789abcdef0123456789abcdef"\nAuthToken = "t"\nValidityPeriod = "soon"\n',
        encoding="utf-8",
    )
    result = run("config", "validate", str(path))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    problem, summary = result.stderr.strip().splitlines()
    assert problem == (
        f"{path}: connector 'sms', $.connectors.sms.parameters.ValidityPeriod: must be of type integer (got string)"
    )
    assert summary == f"error: 1 problem(s) in {path}"


def test_config_validate_of_an_unparsable_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[connectors\n", encoding="utf-8")
    result = run("config", "validate", str(path))
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: not valid TOML")


def test_send_against_an_emulator(config_file: Path, emu: ThreadedEmulator) -> None:
    result = run(
        "send", "--config", str(config_file), "--connector", "sms", "--from", SENDER, "--to", RECEIVER, "--text", "Hi"
    )
    assert result.returncode == 0, result.stderr
    match = SID.search(result.stdout)
    assert match is not None, result.stdout
    [message] = emu.messages()
    assert (message.sid, message.to, message.body) == (match.group(0), RECEIVER, "Hi")


def test_send_failure_exits_non_zero_with_the_error_code(config_file: Path, emu: ThreadedEmulator) -> None:
    result = run(
        "send",
        "--config",
        str(config_file),
        "--connector",
        "sms",
        "--from",
        SENDER,
        "--to",
        "+15005550001",
        "--text",
        "x",
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: INVALID_RECIPIENT: ")
    assert emu.messages() == []


def test_demo_passes() -> None:
    result = run("demo", "--bulk", "20", timeout=30)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "demo passed" in result.stdout
    assert "bulk batch of 20" in result.stdout
    assert "configuration: examples/messaging.toml" in result.stdout, "in a checkout, its own example"


def test_demo_runs_outside_a_checkout_with_the_configuration_shipped_in_the_package(tmp_path: Path) -> None:
    result = run("demo", "--bulk", "5", timeout=30, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "demo passed" in result.stdout
    shipped = next(line for line in result.stdout.splitlines() if line.startswith("configuration: "))
    assert shipped.endswith("messaging_core/examples/messaging.toml"), shipped


# -- long-running commands ----------------------------------------------------------------------------


def test_emulator_prints_its_credentials_and_serves_the_api() -> None:
    command = Background("emulator", "twilio_sms", "--port", "0")
    try:
        base = URL.search(command.wait_for_line(r"base URL"))
        assert base is not None
        account_sid = command.wait_for_line(r"AccountSid: AC").split(": ")[-1]
        auth_token = command.wait_for_line(r"AuthToken: ").split(": ")[-1]
        parameters = json.loads(command.wait_for_line(r"^connector parameters: ").split(": ", 1)[1])
        assert parameters == {"ApiBaseUrl": base.group(0), "AccountSid": account_sid, "AuthToken": auth_token}
        account_url = f"{base.group(0)}/2010-04-01/Accounts/{account_sid}.json"
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        status, body = http(account_url, headers={"Authorization": f"Basic {credentials}"})
        assert status == 200
        assert json.loads(body)["sid"] == account_sid
        status, _ = http(account_url)
        assert status == 401
    finally:
        command.stop()


def test_emulator_runs_by_a_channel_alias() -> None:
    command = Background("emulator", "twilio", "--port", "0")  # the plugin declares the alias "twilio"
    try:
        assert command.wait_for_line(r"emulator running") == "twilio_sms emulator running"
        assert URL.search(command.wait_for_line(r"base URL"))
        command.wait_for_line(r"^connector parameters: ")
    finally:
        command.stop()


def test_an_unknown_emulator_names_the_known_ones() -> None:
    result = run("emulator", "twilioo")
    assert result.returncode == 1
    assert result.stderr.startswith("error: no emulator for channel 'twilioo' (emulators: twilio_sms")


def test_serve_answers_health_probes_and_webhooks(config_file: Path, emu: ThreadedEmulator) -> None:
    command = Background("serve", "--config", str(config_file), "--port", "0")
    try:
        base = URL.search(command.wait_for_line(r"listening on"))
        assert base is not None
        routes = command.wait_for_line(r"connector sms:")
        assert routes.endswith(f"POST {base.group(0)}/webhooks/sms/messages, POST {base.group(0)}/webhooks/sms/status")
        health: dict[str, Any] = {}
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            try:
                status, body = http(base.group(0) + "/readyz")
            except OSError:  # not accepting yet
                time.sleep(0.05)
                continue
            health = json.loads(body)
            if status == 200:
                break
            time.sleep(0.05)
        assert health.get("ready") is True, health
        assert health["connectors"]["sms"]["state"] == "ready"
        status, body = http(base.group(0) + "/healthz")
        assert (status, json.loads(body)["alive"]) == (200, True)
        # A signed inbound message from the emulator is accepted; an unsigned one is not.
        url = base.group(0) + "/webhooks/sms/messages"
        status_code, text = emu.run(lambda: emu.emulator.simulate_inbound(RECEIVER, SENDER, "Hi", url=url))
        assert status_code == 200
        assert "<Response/>" in text
        status_code, _ = http(url, data=b"MessageSid=SMx&From=%2B1&To=%2B2")
        assert status_code == 403
        # A JSON body signed over the bare URL (no bodySHA256) would let one signature cover any body.
        forged = json.dumps({"MessageSid": "SM" + "f" * 32, "From": RECEIVER, "To": SENDER, "Body": "forged"})
        signature = RequestValidator(emu.emulator.auth_token).compute_signature(url, {})
        headers = {"Content-Type": "application/json", "X-Twilio-Signature": signature}
        status_code, _ = http(url, data=forged.encode(), headers=headers)
        assert status_code == 403
        # SIGTERM stops it cleanly (connectors shut down, exit code 0).
        assert command.stop() == 0
    finally:
        command.stop(signal.SIGKILL)


def test_serve_with_metrics_enabled_answers_metrics(config_file: Path, emu: ThreadedEmulator) -> None:
    with config_file.open("a", encoding="utf-8") as config:
        config.write("\n[metrics]\nenabled = true\n")
    command = Background("serve", "--config", str(config_file), "--port", "0")
    try:
        announced = URL.search(command.wait_for_line(r"metrics: GET"))
        assert announced is not None
        metrics_url = announced.group(0) + "/metrics"
        url = announced.group(0) + "/webhooks/sms/messages"
        status_code, _ = emu.run(lambda: emu.emulator.simulate_inbound(RECEIVER, SENDER, "Hi", url=url))
        assert status_code == 200
        assert http(url, data=b"MessageSid=SMx&From=%2B1&To=%2B2")[0] == 403  # unsigned
        status, body = http(metrics_url)
        assert status == 200
        text = body.decode()
        assert 'messaging_webhook_requests_total{connector="sms",kind="messages",status="200"} 1.0' in text
        assert 'messaging_webhook_signatures_refused_total{connector="sms",reason="INVALID_SIGNATURE"} 1.0' in text
        assert command.stop() == 0
    finally:
        command.stop(signal.SIGKILL)
