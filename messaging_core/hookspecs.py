"""Hook specifications: the promises a plugin can make to messaging_core.

Plugins implement these with ``@messaging_core.hookimpl`` in a module named by an entry point in
the ``messaging_core`` group. Contribution hooks (``register_*``) run once when the registry loads;
observer hooks (``<subject>_<past participle>``) run after the fact, may be ``async def``, and an
observer that raises is logged and never breaks the operation it observes.

Only ``messaging_core.plugins.PluginHost`` calls these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from messaging_core.campaigns.registrations import DispatcherRegistration, StoreRegistration
    from messaging_core.connector import ChannelConnector, ConnectorState
    from messaging_core.emulation import EmulatorRegistration
    from messaging_core.message import Content, Message
    from messaging_core.results import ConnectorResult, SendResult, StatusUpdate
    from messaging_core.schema import ChannelSchema
    from messaging_core.validation import ValidationIssue

PROJECT_NAME = "messaging_core"
"""pluggy project name, and the entry-point group plugins are discovered in."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_connectors(register: Callable[[type[ChannelConnector]], None]) -> None:
    """Register connector classes.

    Each class declares ``channel_name``, ``master_schema`` and ``schema_variants`` (a mapping of
    variant names to schemas, each a restriction of the master schema); the registry checks them.

    :param register: call it once per connector class.
    """


@hookspec(firstresult=True)
def resolve_parameter(schema: ChannelSchema, parameter: str, value: Any) -> Any:
    """Resolve a connection parameter: a ``${VAR}`` reference, or a missing value.

    Called for every parameter of ``schema`` when a connector initializes. The built-in
    ``environment`` plugin expands ``${VAR}`` references and reads a missing value from the
    environment variable ``<PROVIDER>_<PARAMETER_IN_SNAKE_CASE>`` (``TWILIO_AUTH_TOKEN``).
    Stops at first non-None result.

    :param schema: the schema of the connector being configured.
    :param parameter: the parameter name.
    :param value: the value given in the settings, or None when absent.
    :returns: the value to use, or None to leave it to other plugins (and then to the default).
    """


@hookspec
def validate_message(connector: ChannelConnector, message: Message) -> list[ValidationIssue] | None:
    """Add policy checks to message validation (opt-out lists, quiet hours, content rules).

    Runs before any I/O, after the schema validation passed. Every issue returned by every plugin
    is reported; any issue makes the send fail with ``MESSAGE_VALIDATION_FAILED``.

    :param connector: the connector about to send.
    :param message: the message.
    :returns: the problems found, or None / an empty list.
    """


@hookspec
def connector_state_changed(connector: ChannelConnector, previous: ConnectorState, current: ConnectorState) -> None:
    """Observe a lifecycle transition (may be ``async def``).

    :param connector: the connector.
    :param previous: the state it left.
    :param current: the state it entered.
    """


@hookspec
def message_sent(connector: ChannelConnector, message: Message, result: ConnectorResult[SendResult]) -> None:
    """Observe the outcome of every send attempt, successful or not (may be ``async def``).

    :param connector: the connector that sent.
    :param message: the message.
    :param result: the outcome (check ``result.is_success``).
    """


@hookspec
def message_status_changed(connector: ChannelConnector, update: StatusUpdate) -> None:
    """Observe a delivery status reported by the provider (a status callback; may be ``async def``).

    :param connector: the connector that received the callback.
    :param update: the normalized status update.
    """


@hookspec
def message_received(connector: ChannelConnector, message: Message) -> None:
    """Observe an inbound message (may be ``async def``).

    :param connector: the connector that received it.
    :param message: the message, with the provider's fields in ``properties``.
    """


@hookspec(firstresult=True)
def reply_to_message(connector: ChannelConnector, message: Message) -> str | Content | None:
    """Answer an inbound message in the webhook's own response (may be ``async def``).

    Called by the webhook service after ``message_received``, once per new message, for channels
    that can answer that way (``ChannelConnector.webhook_reply``; Twilio renders TwiML
    ``<Message>``). Stops at first non-None result.

    :param connector: the connector that received it.
    :param message: the inbound message.
    :returns: the reply (text, or a ``TextContent``/``MediaContent``/``MultipartContent``), or None.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``messaging`` command line.

    :param cli: the top-level click group; add commands or sub-groups to it.
    """


@hookspec
def register_emulators(register: Callable[[EmulatorRegistration], None]) -> None:
    """Register a local emulator of a channel's provider (for the demo, tests, offline work).

    :param register: call it with an ``EmulatorRegistration`` per emulated channel.
    """


@hookspec
def register_dispatchers(register: Callable[[DispatcherRegistration | StoreRegistration], None]) -> None:
    """Register dispatcher kinds, and stores reachable by URL, for ``[dispatcher]`` configurations.

    A ``DispatcherRegistration`` names a kind (``[dispatcher] kind = "taskiq"``) and builds a
    dispatcher for a connector from the table; a ``StoreRegistration`` names a URL scheme
    (``postgresql``) and builds ledgers, rate limiters or status stores from its URLs. The
    built-in ``dispatchers`` plugin registers the ``inprocess`` kind and the ``memory`` stores.

    :param register: call it once per registration.
    """
