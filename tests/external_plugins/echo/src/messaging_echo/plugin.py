"""Entry-point target of the echo plugin: hook implementations only."""

from __future__ import annotations

from collections.abc import Callable

from messaging_core import ChannelConnector, hookimpl


@hookimpl
def register_connectors(register: Callable[[type[ChannelConnector]], None]) -> None:
    from messaging_echo.connector import EchoConnector

    register(EchoConnector)
