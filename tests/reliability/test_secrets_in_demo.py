"""With DEBUG logging on across a whole demo run, no secret and no full phone number leaks.

The AuthToken and the Basic auth header value must appear in no log record, no console line and
no repr of the objects involved; phone numbers are masked in logs unless LogPhoneNumbers is on.
"""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from messaging_core import ChannelConnector, ChannelRegistry, Message, hookimpl
from messaging_core.cli.demo import run_demo
from messaging_twilio_sms._api import mask_phone

ROOT = Path(__file__).resolve().parents[2]


class SecretCollector:
    """Learns the secrets in play (the demo makes up the emulator's credentials at start)."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.reprs: list[str] = []

    @hookimpl
    def message_sent(self, connector: ChannelConnector, message: Message, result: Any) -> None:
        token = connector.parameters["AuthToken"]
        account = connector.parameters["AccountSid"]
        self.secrets.add(token)
        self.secrets.add(base64.b64encode(f"{account}:{token}".encode()).decode())
        self.reprs.extend([repr(connector), repr(connector.settings), str(connector.settings), repr(result)])


async def test_debug_logs_of_a_demo_run_hold_no_secret_and_no_full_number(caplog: pytest.LogCaptureFixture) -> None:
    collector = SecretCollector()
    registry = ChannelRegistry.discover()
    registry.host.register(collector)
    output = io.StringIO()
    caplog.set_level(logging.DEBUG)
    ok = await run_demo(
        registry, ROOT / "examples" / "messaging.toml", console=Console(file=output, width=200), bulk=20
    )
    assert ok, output.getvalue()
    assert len(collector.secrets) == 2, "the collector never saw a send"
    texts = {
        "logs": "\n".join(record.getMessage() for record in caplog.records)
        + "\n".join(str(record.exc_info) for record in caplog.records if record.exc_info),
        "console": output.getvalue(),
        "reprs": "\n".join(collector.reprs),
    }
    assert len(caplog.records) > 20, "DEBUG logging captured too little to prove anything"
    for where, text in texts.items():
        for secret in collector.secrets:
            assert secret not in text, f"a secret appears in the {where}"
    # The demo sends to +1555123xxxx numbers; logs show them masked only.
    assert "+15551230001" not in texts["logs"]
    assert mask_phone("+15551230001") in texts["logs"], "the masked number should be what the logs show"
