"""The built-in ``inprocess`` dispatcher kind and the ``memory`` stores (``register_dispatchers``)."""

from __future__ import annotations

from collections.abc import Callable

from messaging_core.campaigns.inprocess import INPROCESS, MEMORY_STORES
from messaging_core.campaigns.registrations import DispatcherRegistration, StoreRegistration
from messaging_core.hookspecs import hookimpl


@hookimpl
def register_dispatchers(register: Callable[[DispatcherRegistration | StoreRegistration], None]) -> None:
    register(INPROCESS)
    register(MEMORY_STORES)
