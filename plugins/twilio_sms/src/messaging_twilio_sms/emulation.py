"""The Twilio emulator as the core's CLI and demo see it (``register_emulators``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from messaging_twilio_sms.emulator import TwilioEmulator

__all__ = ["RunningTwilioEmulator", "start_emulator"]

_DEMO_SERVICE_SID = "MG" + b"d3m0".hex() * 4  # any well-formed SID: the emulator accepts it


class RunningTwilioEmulator:
    """A started ``TwilioEmulator`` behind the core's ``RunningEmulator`` protocol."""

    def __init__(self, emulator: TwilioEmulator) -> None:
        self.emulator = emulator

    @property
    def base_url(self) -> str:
        return self.emulator.base_url

    def connector_parameters(self) -> dict[str, Any]:
        return {
            "ApiBaseUrl": self.emulator.base_url,
            "AccountSid": self.emulator.account_sid,
            "AuthToken": self.emulator.auth_token,
        }

    def environment(self) -> dict[str, str]:
        """Environment variables a config file may reference (``${TWILIO_ACCOUNT_SID}``...)."""
        return {
            "TWILIO_ACCOUNT_SID": self.emulator.account_sid,
            "TWILIO_AUTH_TOKEN": self.emulator.auth_token,
            "TWILIO_API_BASE_URL": self.emulator.base_url,
            "TWILIO_MESSAGING_SERVICE_SID": _DEMO_SERVICE_SID,
        }

    def describe(self) -> dict[str, str]:
        # The emulator's credentials are throwaway values made up at start: printing them is the point.
        return {
            "base URL (ApiBaseUrl)": self.emulator.base_url,
            "AccountSid": self.emulator.account_sid,
            "AuthToken": self.emulator.auth_token,
        }

    def demo_endpoints(self) -> dict[str, str]:
        """Addresses the demo uses: a sender the emulator accepts, receivers, a media URL."""
        return {
            "sender": "+15005550006",  # Twilio's test-credential "valid From" number
            "receiver": "+15551230001",
            "receiver_prefix": "+1555123",
            "media_url": "https://demo.twilio.com/owl.png",
        }

    def set_webhook_urls(self, *, messages_url: str | None, status_url: str | None) -> None:
        # Status callbacks go to each message's StatusCallback (set by the connector); inbound
        # messages to the number's SMS URL, which is this.
        self.emulator.sms_url = messages_url

    async def simulate_inbound(self, from_: str, to: str, body: str, media_urls: Sequence[str] = ()) -> tuple[int, str]:
        return await self.emulator.simulate_inbound(from_, to, body, media_urls)

    def stats(self) -> dict[str, int]:
        log = self.emulator.callback_log
        return {
            "messages": len(self.emulator.messages),
            "callbacks": len(log),
        }


@asynccontextmanager
async def start_emulator(
    *, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> AsyncIterator[RunningTwilioEmulator]:
    """``async with start_emulator(port=0) as emulator:`` — a running emulator on loopback."""
    async with TwilioEmulator(host=host, port=port, **options) as emulator:
        yield RunningTwilioEmulator(emulator)
