"""Local emulators of providers, contributed by plugins through ``register_emulators``.

An emulator is a real HTTP server on loopback that behaves like a provider's API, so the demo,
the tests and offline development need no account and no network. The core never imports a
plugin: the CLI (``messaging emulator``, ``messaging demo``) finds emulators through this hook.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, runtime_checkable

from attrs import frozen

__all__ = ["EmulatorRegistration", "RunningEmulator"]


@runtime_checkable
class RunningEmulator(Protocol):
    """What a started emulator offers to the CLI and the demo."""

    base_url: str

    def connector_parameters(self) -> dict[str, Any]:
        """Parameters that point a connector of this channel at the emulator (base URL, credentials)."""

    def describe(self) -> dict[str, str]:
        """Human-readable facts to print (base URL, credentials); no real secrets involved."""

    def environment(self) -> dict[str, str]:
        """Environment variables a configuration file may reference to reach the emulator."""

    def demo_endpoints(self) -> dict[str, str]:
        """Addresses for the demo: ``sender``, ``receiver``, ``receiver_prefix``, ``media_url``."""

    def set_webhook_urls(self, *, messages_url: str | None, status_url: str | None) -> None:
        """Where the emulator sends inbound messages and status callbacks."""

    async def simulate_inbound(self, from_: str, to: str, body: str, media_urls: Sequence[str] = ()) -> tuple[int, str]:
        """Deliver an inbound message to the messages webhook; returns (HTTP status, response body)."""


@frozen
class EmulatorRegistration:
    """A plugin's emulator for one channel."""

    channel: str
    """The channel it emulates (``twilio_sms``)."""
    start: Callable[..., AbstractAsyncContextManager[Any]]
    """``async with start(host=..., port=..., **options) as emulator:`` yields a ``RunningEmulator``."""
    description: str = ""
