"""``messaging status OUR_ID`` in a fresh process finds a campaign's message through the PostgreSQL ledger.

A campaign is sent by an in-process dispatcher whose ledger is PostgreSQL (``[dispatcher] ledger``
of a configuration file); then the command line, another process with a connector that never
sent anything, asks for the message's status by our id: the configured ledger gives the SID.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from messaging_core import ChannelRegistry, Endpoint, Message, TextContent
from messaging_core.config import load_config
from messaging_twilio_sms.emulator import ThreadedTwilioEmulator

pytestmark = pytest.mark.services


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


async def test_status_by_our_id_from_another_process(pg_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    with ThreadedTwilioEmulator(auto_advance=False) as running:
        emulator = running.emulator
        config = tmp_path / "messaging.toml"
        config.write_text(
            "[connectors.sms]\n"
            'channel = "twilio_sms"\n'
            "[connectors.sms.parameters]\n"
            f'ApiBaseUrl = "{emulator.base_url}"\nAccountSid = "{emulator.account_sid}"\n'
            f'AuthToken = "{emulator.auth_token}"\n'
            "[dispatcher]\n"
            'kind = "inprocess"\n'
            f'ledger = "{pg_dsn}?schema={pg_schema}"\n'
        )
        registry = ChannelRegistry.discover()
        loaded = load_config(config)
        message = Message(
            uuid.uuid4().hex, Endpoint.phone("+15005550006"), Endpoint.phone("+15551230001"), TextContent("hi")
        )
        connector = registry.create_connector(loaded.connectors["sms"])
        async with connector:
            dispatcher: Any = registry.create_dispatcher(loaded, connector)
            handle = await dispatcher.submit([message])
            async with asyncio.timeout(20):
                await handle.wait()
            close = getattr(dispatcher.ledger, "close", None)
            if close is not None:
                await close()
        (sent,) = running.messages()
        sid = sent.sid
        messaging = str(Path(sys.executable).with_name("messaging"))  # the installed command
        command = [messaging, "status", "--config", str(config), "--connector", "sms"]
        found = await asyncio.to_thread(_run, [*command, message.id])
        assert found.returncode == 0, found.stderr
        assert f"{sid}: queued" in found.stdout
        unknown = await asyncio.to_thread(_run, [*command, "never-sent"])
        assert unknown.returncode != 0
        assert "nor in the attached ledger" in unknown.stderr + unknown.stdout
