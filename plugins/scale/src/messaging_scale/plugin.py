"""Entry-point target of the scale-out plugin: hook implementations only.

Registers the stores reachable by URL in a ``[dispatcher]`` table: ``postgresql://`` (and
``postgres://``) for the ledger and the status store, ``redis://`` for the rate limiter.
"""

from __future__ import annotations

from collections.abc import Callable

from messaging_core.dispatcher import DispatcherRegistration, StoreRegistration
from messaging_core.hookspecs import hookimpl


@hookimpl
def register_dispatchers(register: Callable[[DispatcherRegistration | StoreRegistration], None]) -> None:
    from messaging_scale._config import POSTGRES_STORES, REDIS_STORES

    for registration in (*POSTGRES_STORES, *REDIS_STORES):
        register(registration)
