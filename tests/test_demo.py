"""``run_demo`` in-process: the whole system end to end, offline."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from messaging_core import ChannelRegistry, ConfigurationError
from messaging_core.cli.demo import run_demo

REPO = Path(__file__).resolve().parent.parent
STEPS = (
    "initialize sms",
    "initialize bulk",
    "send text via sms",
    "send MMS via sms",
    "bulk batch of 20 via bulk",
    "status callbacks received and verified",
    "inbound SMS accepted by the webhook host",
    "auto-reply sent",
    "status query",
)


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200), out


async def test_demo_passes_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the default configuration is examples/messaging.toml
    console, out = _console()
    ok = await run_demo(ChannelRegistry.discover(), None, console=console, bulk=20, wait_seconds=10)
    text = out.getvalue()
    assert ok is True, text
    for step in STEPS:
        assert f"✔ {step}" in text
    assert "✘" not in text
    assert "22/22 delivered" in text
    assert "demo passed" in text


async def test_demo_with_an_explicit_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # nothing relative to the working directory is needed
    console, out = _console()
    ok = await run_demo(
        ChannelRegistry.discover(), REPO / "examples" / "messaging.toml", console=console, bulk=5, wait_seconds=10
    )
    assert ok is True, out.getvalue()
    assert "bulk batch of 5 via bulk — 5 sent, 0 failed" in out.getvalue()


async def test_demo_with_metrics_enabled_checks_the_metrics_endpoint(tmp_path: Path) -> None:
    config = tmp_path / "messaging.toml"
    example = (REPO / "examples" / "messaging.toml").read_text(encoding="utf-8")
    config.write_text(example + "\n[metrics]\nenabled = true\n", encoding="utf-8")
    console, out = _console()
    ok = await run_demo(ChannelRegistry.discover(), config, console=console, bulk=5, wait_seconds=10)
    assert ok is True, out.getvalue()
    assert "/metrics — HTTP 200" in out.getvalue()


def test_the_package_ships_the_repositorys_example_configuration() -> None:
    """``messaging demo`` outside a checkout runs the copy in the package: it must be the documented one."""
    shipped = REPO / "messaging_core" / "examples" / "messaging.toml"
    assert shipped.read_bytes() == (REPO / "examples" / "messaging.toml").read_bytes(), (
        "copy examples/messaging.toml to messaging_core/examples/messaging.toml"
    )


async def test_demo_without_its_configuration_says_where_to_run_it(tmp_path: Path) -> None:
    console, _ = _console()
    with pytest.raises(ConfigurationError, match="not found"):
        await run_demo(ChannelRegistry.discover(), tmp_path / "nope.toml", console=console, bulk=1)


async def test_demo_refuses_a_channel_without_an_emulator(tmp_path: Path) -> None:
    path = tmp_path / "memory.toml"
    path.write_text('[connectors.mem]\nchannel = "memory"\n', encoding="utf-8")
    console, _ = _console()
    with pytest.raises(ConfigurationError, match="no emulator for channel 'memory'"):
        await run_demo(ChannelRegistry.discover(), path, console=console, bulk=1)


async def test_the_demo_can_run_twice_on_one_registry() -> None:
    registry = ChannelRegistry.discover()
    for _ in range(2):
        output = io.StringIO()
        config = REPO / "examples" / "messaging.toml"
        assert await run_demo(registry, config, console=Console(file=output, width=200), bulk=5), output.getvalue()
