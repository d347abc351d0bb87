"""Entry-point target of the Twilio SMS plugin: hook implementations only."""

from __future__ import annotations

from collections.abc import Callable

from messaging_core import ChannelConnector, EmulatorRegistration, hookimpl


@hookimpl
def register_connectors(register: Callable[[type[ChannelConnector]], None]) -> None:
    from messaging_twilio_sms.connector import TwilioSmsConnector

    register(TwilioSmsConnector)


@hookimpl
def register_emulators(register: Callable[[EmulatorRegistration], None]) -> None:
    from messaging_twilio_sms.emulation import start_emulator

    register(EmulatorRegistration("twilio_sms", start_emulator, "Local Twilio Messages API (offline)"))
