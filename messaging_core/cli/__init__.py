"""The ``messaging`` command line (click for parsing, rich for tables and progress).

Thin by design: every command calls the library (registry, connectors, ``WebhookHost``), one
module per command group. Plugins add commands through the ``register_commands`` hook and
emulators through ``register_emulators``. A user mistake prints one clear line and exits
non-zero; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

from rich.markup import escape

# Importing a command module registers its commands on the group.
from messaging_core.cli import channels, config, demo, emulator, send, serve
from messaging_core.cli._app import cli, err_console
from messaging_core.errors import MessagingError
from messaging_core.registry import ChannelRegistry

__all__ = ["cli", "main"]

_COMMAND_MODULES = (channels, config, demo, emulator, send, serve)


def _load_plugin_commands() -> None:
    try:
        registry = ChannelRegistry.discover()
        registry.host.register_commands(cli)
    except MessagingError as err:  # a broken plugin must not break the CLI
        err_console.print(f"[yellow]warning:[/] plugin commands not loaded: {escape(str(err))}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    _load_plugin_commands()
    cli.main(args=argv, prog_name="messaging")
