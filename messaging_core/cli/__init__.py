"""The ``messaging`` command line (click for parsing, rich for tables and progress).

Thin by design: every command calls the library (registry, connectors, ``WebhookHost``), one
module per command group: ``channels`` (channels, schema show/export), ``config``, ``send``
(send, send-batch, status), ``serve``, ``emulator``, ``demo``. Plugins add commands through the
``register_commands`` hook and emulators through ``register_emulators``. A user mistake prints
one clear line and exits non-zero; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

# Importing a command module registers its commands on the group.
from messaging_core.cli import channels as _channels
from messaging_core.cli import config as _config
from messaging_core.cli import demo as _demo
from messaging_core.cli import emulator as _emulator
from messaging_core.cli import send as _send
from messaging_core.cli import serve as _serve
from messaging_core.cli._app import cli, main

__all__ = ["cli", "main"]

_COMMAND_MODULES = (_channels, _config, _demo, _emulator, _send, _serve)
