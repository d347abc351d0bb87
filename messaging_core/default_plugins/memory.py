"""Built-in plugin: the ``memory`` channel.

Sends succeed and are kept in memory; connectors that share a ``Mailbox`` name see each other's
messages (``mailbox(name).inbox(address)``); a sent message's status moves queued → sent →
delivered, reported through the ``message_status_changed`` hook as a provider would. It is the
smallest complete plugin, and a stand-in for real channels in host applications' tests.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any, ClassVar

from messaging_core.connector import ChannelConnector
from messaging_core.hookspecs import hookimpl
from messaging_core.message import ContentType, EndpointType, Message
from messaging_core.results import (
    ConnectorErrorCodes,
    ConnectorResult,
    MessageStatus,
    ReceiveResult,
    SendResult,
    StatusUpdate,
    StatusUpdatesResult,
)
from messaging_core.schema import Capability, ChannelSchema, EndpointSpec, ParameterSpec, PropertySpec
from messaging_core.webhook_request import WebhookRequest

__all__ = ["MEMORY_SCHEMA", "Mailbox", "MemoryConnector", "mailbox"]

MEMORY_SCHEMA = ChannelSchema(
    provider="memory",
    channel_type="memory",
    version="1.0.0",
    display_name="In-memory channel",
    capabilities=Capability.SEND_MESSAGES
    | Capability.RECEIVE_MESSAGES
    | Capability.MESSAGE_STATUS_QUERY
    | Capability.HANDLE_MESSAGE_STATE
    | Capability.MEDIA_ATTACHMENTS
    | Capability.TEMPLATES
    | Capability.BULK_MESSAGING
    | Capability.HEALTH_CHECK,
    parameters=[
        ParameterSpec(
            "Mailbox",
            default="default",
            description="Connectors sharing a mailbox see each other's messages.",
        ),
        ParameterSpec("Latency", "number", default=0, minimum=0, maximum=10, description="Seconds added to each send."),
        ParameterSpec(
            "FailAddresses", repeated=True, default=(), description="Receivers whose sends fail (for tests)."
        ),
    ],
    properties=[PropertySpec("Tag", description="A free label kept with the message.")],
    content_types=list(ContentType),
    endpoints=[EndpointSpec(t) for t in EndpointType],
)

_STEPS = (MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED)


class Mailbox:
    """Messages sent through memory connectors sharing a name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[Message] = []
        self.statuses: dict[str, list[StatusUpdate]] = {}
        self._ids = itertools.count(1)

    def inbox(self, address: str) -> list[Message]:
        """Messages sent to ``address``."""
        return [m for m in self.sent if m.receiver is not None and m.receiver.address == address]

    def next_remote_id(self) -> str:
        return f"MEM{next(self._ids):08d}"

    def clear(self) -> None:
        self.sent.clear()
        self.statuses.clear()


_MAILBOXES: dict[str, Mailbox] = {}


def mailbox(name: str = "default") -> Mailbox:
    """The mailbox named ``name`` (created on first use)."""
    return _MAILBOXES.setdefault(name, Mailbox(name))


class MemoryConnector(ChannelConnector):
    """A connector that delivers into an in-process ``Mailbox``."""

    channel_name: ClassVar[str] = "memory"
    master_schema: ClassVar[ChannelSchema] = MEMORY_SCHEMA
    schema_variants: ClassVar[dict[str, ChannelSchema]] = {"Memory": MEMORY_SCHEMA}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tasks: set[asyncio.Task[None]] = set()
        self.mailbox = mailbox("default")

    async def _initialize(self) -> ConnectorResult[bool]:
        self.mailbox = mailbox(str(self.parameters["Mailbox"]))
        return ConnectorResult.success(True)

    async def _send_message(self, message: Message) -> ConnectorResult[SendResult]:
        latency = float(self.parameters.get("Latency", 0))
        if latency:
            await asyncio.sleep(latency)
        if message.receiver is not None and message.receiver.address in self.parameters.get("FailAddresses", ()):
            return ConnectorResult.failure(ConnectorErrorCodes.INVALID_RECIPIENT, "receiver refused (FailAddresses)")
        remote_id = self.mailbox.next_remote_id()
        self.mailbox.sent.append(message)
        first = StatusUpdate(message.id, MessageStatus.QUEUED, raw_status="queued", remote_message_id=remote_id)
        self.mailbox.statuses[message.id] = [first]
        task = asyncio.get_running_loop().create_task(self._advance(message.id, remote_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return ConnectorResult.success(SendResult(message.id, remote_id, MessageStatus.QUEUED))

    async def _advance(self, message_id: str, remote_id: str) -> None:
        for status in _STEPS[1:]:
            await asyncio.sleep(0)
            update = StatusUpdate(message_id, status, raw_status=status.value, remote_message_id=remote_id)
            self.mailbox.statuses[message_id].append(update)
            await self.plugins.message_status_changed(self, update)

    async def drain(self) -> None:
        """Wait until every sent message reached its final status."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _get_message_status(self, message_id: str) -> ConnectorResult[StatusUpdatesResult]:
        key = next(
            (mid for mid, ups in self.mailbox.statuses.items() if message_id in (mid, ups[0].remote_message_id)),
            None,
        )
        if key is None:
            return ConnectorResult.failure(ConnectorErrorCodes.STATUS_QUERY_ERROR, "unknown message id")
        return ConnectorResult.success(StatusUpdatesResult(key, self.mailbox.statuses[key]))

    async def _receive_messages(self, source: WebhookRequest) -> ConnectorResult[ReceiveResult]:
        from messaging_core import converters

        try:
            data = source.json()
            items = data if isinstance(data, list) else [data]
            messages = [converters.structure(item, Message) for item in items]
        except Exception as err:  # any shape problem of the payload is the sender's mistake
            return ConnectorResult.failure(ConnectorErrorCodes.RECEIVE_ERROR, f"invalid payload: {type(err).__name__}")
        return ConnectorResult.success(ReceiveResult(messages[0].id if messages else "", messages))

    async def _receive_message_status(self, source: WebhookRequest) -> ConnectorResult[StatusUpdate]:
        from messaging_core import converters

        try:
            return ConnectorResult.success(converters.structure(source.json(), StatusUpdate))
        except Exception as err:
            return ConnectorResult.failure(ConnectorErrorCodes.RECEIVE_ERROR, f"invalid payload: {type(err).__name__}")

    async def _check_health(self) -> tuple[list[str], dict[str, Any]]:
        return [], {"sent": len(self.mailbox.sent), "pending_status_tasks": len(self._tasks)}

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@hookimpl
def register_connectors(register: Callable[[type[ChannelConnector]], None]) -> None:
    register(MemoryConnector)
