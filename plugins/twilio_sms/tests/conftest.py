"""Fixtures shared by the Twilio SMS plugin tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from messaging_twilio_sms.emulator import TwilioEmulator


@pytest.fixture
async def emulator() -> AsyncIterator[TwilioEmulator]:
    """A started Twilio emulator on loopback with a fast status lifecycle (10 ms per step)."""
    async with TwilioEmulator(status_interval=0.01) as emu:
        yield emu
