"""Test helpers: a plugin that records observer hook calls, and a secrets scanner."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from messaging_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from messaging_core import (
        ChannelConnector,
        ConnectorResult,
        ConnectorState,
        Message,
        SendResult,
        StatusUpdate,
    )

__all__ = ["HookCall", "HookRecorder", "find_secrets"]


def _mapping(value: Mapping[str, Any]) -> dict[str, Any]:
    return dict(value)


@frozen
class HookCall:
    """One call of an observer hook."""

    name: str
    """The hook's name (``message_sent``)."""
    arguments: Mapping[str, Any] = field(converter=_mapping)
    """The keyword arguments it was called with."""


class HookRecorder:
    """A plugin that records every observer hook call, in order.

    Register it on a host before creating connectors (connectors look up their ``message_sent``
    observers when they are built)::

        recorder = HookRecorder()
        registry = ChannelRegistry(plugins=[recorder])
    """

    def __init__(self) -> None:
        self.calls: list[HookCall] = []

    def named(self, name: str) -> list[HookCall]:
        """The calls of one hook."""
        return [call for call in self.calls if call.name == name]

    def transitions(self, connector: ChannelConnector | None = None) -> list[tuple[ConnectorState, ConnectorState]]:
        """``(previous, current)`` of every ``connector_state_changed`` call (of ``connector`` only, if given)."""
        return [
            (call.arguments["previous"], call.arguments["current"])
            for call in self.named("connector_state_changed")
            if connector is None or call.arguments["connector"] is connector
        ]

    def sent(self, connector: ChannelConnector | None = None) -> list[tuple[Message, ConnectorResult[SendResult]]]:
        """``(message, result)`` of every ``message_sent`` call."""
        return [
            (call.arguments["message"], call.arguments["result"])
            for call in self.named("message_sent")
            if connector is None or call.arguments["connector"] is connector
        ]

    def clear(self) -> None:
        self.calls.clear()

    @hookimpl
    def connector_state_changed(
        self, connector: ChannelConnector, previous: ConnectorState, current: ConnectorState
    ) -> None:
        self.calls.append(
            HookCall("connector_state_changed", {"connector": connector, "previous": previous, "current": current})
        )

    @hookimpl
    def message_sent(self, connector: ChannelConnector, message: Message, result: ConnectorResult[SendResult]) -> None:
        self.calls.append(HookCall("message_sent", {"connector": connector, "message": message, "result": result}))

    @hookimpl
    def message_status_changed(self, connector: ChannelConnector, update: StatusUpdate) -> None:
        self.calls.append(HookCall("message_status_changed", {"connector": connector, "update": update}))

    @hookimpl
    def message_received(self, connector: ChannelConnector, message: Message) -> None:
        self.calls.append(HookCall("message_received", {"connector": connector, "message": message}))


MIN_SECRET_LENGTH = 6
"""Shorter values are not looked for: they would match ordinary text by chance."""


def find_secrets(texts: Iterable[tuple[str, str]], secrets: Iterable[str]) -> list[str]:
    """Where any of ``secrets`` shows in ``texts`` (pairs of *where*, *text*).

    Returns one ``"<where>: sensitive value #<n>"`` per leak; the secret itself is never echoed,
    so a failing assertion does not print it into the CI log.
    """
    wanted = [s for s in dict.fromkeys(secrets) if len(s) >= MIN_SECRET_LENGTH]
    return [
        f"{where}: sensitive value #{number}"
        for where, text in texts
        for number, secret in enumerate(wanted, start=1)
        if secret in text
    ]
