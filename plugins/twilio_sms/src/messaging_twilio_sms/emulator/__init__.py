"""A local Twilio emulator: the parts of the 2010-04-01 Messages API an SMS connector uses.

Runs offline on loopback so the connector, the examples and the tests have a real HTTP counterpart::

    import asyncio

    from messaging_twilio_sms.emulator import TwilioEmulator


    async def main() -> None:
        async with TwilioEmulator() as emu:
            # Point a Twilio client (or the connector's ApiBaseUrl) here, with these credentials.
            print(emu.base_url, emu.account_sid, emu.auth_token)


    asyncio.run(main())

:class:`TwilioEmulator` shows the official async client against it; synchronous code (the official
sync client, a CLI under test) uses :class:`ThreadedTwilioEmulator`, which serves it from a thread.

Standalone: ``python -m messaging_twilio_sms.emulator --port 8099`` (see :func:`main`).

Modules: ``_server`` (the aiohttp application and :class:`TwilioEmulator`), ``_rules`` (validation,
test numbers, lifecycle and webhook fields), ``_resources`` (records and JSON shapes), ``_faults``
(fault injection), ``_cli`` (command line).
"""

from __future__ import annotations

from ._cli import main
from ._faults import FAULTS, HELD_FAULTS, POST_CREATE_FAULTS, PRE_CREATE_FAULTS
from ._resources import CallbackRecord, EmulatedMedia, EmulatedMessage
from ._rules import DEFAULT_FAILED_NUMBERS, DEFAULT_UNDELIVERED_NUMBERS
from ._server import TwilioEmulator
from ._threaded import ThreadedTwilioEmulator

__all__ = [
    "DEFAULT_FAILED_NUMBERS",
    "DEFAULT_UNDELIVERED_NUMBERS",
    "FAULTS",
    "HELD_FAULTS",
    "POST_CREATE_FAULTS",
    "PRE_CREATE_FAULTS",
    "CallbackRecord",
    "EmulatedMedia",
    "EmulatedMessage",
    "ThreadedTwilioEmulator",
    "TwilioEmulator",
    "main",
]
