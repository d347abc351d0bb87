"""The emulator on its own event loop in a background thread, for synchronous code.

Handy where the code under test is synchronous and would block the test's event loop: a CLI run
through click's ``CliRunner``, the official (sync) ``twilio`` client, a Django view::

    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    from messaging_twilio_sms.emulator import ThreadedTwilioEmulator

    with ThreadedTwilioEmulator() as running:
        emu = running.emulator
        client = Client(emu.account_sid, emu.auth_token, http_client=TwilioHttpClient(timeout=10))
        client.api.base_url = emu.base_url  # instead of https://api.twilio.com
        message = client.messages.create(to="+15551230001", from_="+15005550006", body="Hello")
        running.wait_for_status(message.sid, "delivered")
        assert [m.sid for m in running.messages()] == [message.sid]
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ._resources import EmulatedMessage
from ._server import TwilioEmulator

__all__ = ["ThreadedTwilioEmulator"]

T = TypeVar("T")


class ThreadedTwilioEmulator:
    """A ``TwilioEmulator`` (built with ``options``) served from a daemon thread's event loop.

    ``options`` are :class:`TwilioEmulator`'s (``fault_delay``, ``list_lag``, ``clock``...); the
    methods here read or change the emulator on its own loop, safely from any thread.
    """

    def __init__(self, **options: Any) -> None:
        self._options = {"status_interval": 0.01, **options}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="twilio-emulator", daemon=True)
        self.emulator: TwilioEmulator

    def run(self, make: Callable[[], Awaitable[T]], timeout: float = 5.0) -> T:
        """Run a coroutine on the emulator's loop and wait (bounded) for its result."""

        async def call() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout)

    def __enter__(self) -> ThreadedTwilioEmulator:
        self._thread.start()

        async def start() -> TwilioEmulator:
            emulator = TwilioEmulator(**self._options)
            await emulator.start()
            return emulator

        self.emulator = self.run(start)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self.emulator.stop)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()

    def messages(self) -> list[EmulatedMessage]:
        """The outbound messages created so far (a snapshot taken on the emulator's loop)."""

        async def snapshot() -> list[EmulatedMessage]:
            return [m for m in self.emulator.messages.values() if m.direction != "inbound"]

        return self.run(snapshot)

    def create_requests(self) -> int:
        """How many create requests reached the emulator."""

        async def count() -> int:
            return self.emulator.create_requests

        return self.run(count)

    def creates_by_message_id(self) -> Counter[str]:
        """:meth:`TwilioEmulator.creates_by_message_id`, read on the emulator's loop."""

        async def count() -> Counter[str]:
            return self.emulator.creates_by_message_id()

        return self.run(count)

    def inject(self, fault: str, *, count: int = 1, match_to: str | None = None) -> None:
        """:meth:`TwilioEmulator.inject`, queued on the emulator's loop (the queue is not thread-safe)."""

        async def inject() -> None:
            self.emulator.inject(fault, count=count, match_to=match_to)

        self.run(inject)

    def wait_for_status(self, sid: str, status: str, timeout: float = 4.0) -> None:
        """Block until message ``sid`` reaches ``status`` (bounded)."""
        self.run(lambda: self.emulator.wait_for_status(sid, status, timeout=timeout), timeout=timeout + 1)
