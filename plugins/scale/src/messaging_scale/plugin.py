"""Entry-point target of the scale-out plugin: hook implementations only.

Registers the ``taskiq`` dispatcher kind and the stores reachable by URL in a ``[dispatcher]``
table (``postgresql://`` and ``postgres://`` for the ledger and the status store, ``redis://``
for the rate limiter), and the ``messaging worker`` and ``messaging campaign`` commands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from messaging_core.campaigns import DispatcherRegistration, StoreRegistration
from messaging_core.hookspecs import hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def register_dispatchers(register: Callable[[DispatcherRegistration | StoreRegistration], None]) -> None:
    from messaging_scale._config import POSTGRES_STORES, REDIS_STORES, TASKIQ

    register(TASKIQ)
    for registration in (*POSTGRES_STORES, *REDIS_STORES):
        register(registration)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from messaging_scale._cli import campaign, worker

    cli.add_command(worker)
    cli.add_command(campaign)
