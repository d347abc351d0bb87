"""Testing tools for plugin authors and host applications.

- ``ConnectorConformance``: the conformance suite a connector's tests inherit (lifecycle,
  capability gating, validation before I/O, batch accounting, secrets redaction).
- ``LedgerConformance``, ``RateLimiterConformance``, ``StatusStoreConformance`` (all three:
  ``StoreConformance``): the contracts of the send pipeline's stores, run against the in-memory
  stores here and against distributed ones by their distributions.
- ``HookRecorder``: a plugin recording every observer hook call.
- ``find_secrets``: where sensitive values show in rendered texts (without echoing them).
- The pytest plugin ``messaging_core.testing.pytest_plugin`` (loaded automatically through the
  ``pytest11`` entry point) provides the fixtures ``messaging_registry``, ``messaging_hooks`` and
  ``memory_connector``.

Names are imported on first use: the pytest plugin lives in this package and is loaded in every
pytest run, so importing the package must not import the suite (nor pytest-asyncio).
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

import pytest

if _typing.TYPE_CHECKING:
    from messaging_core.testing._conformance import (
        VALIDATION_ERROR_CODES,
        ConnectorConformance,
        ConnectorFactory,
    )
    from messaging_core.testing._recorder import HookCall, HookRecorder, find_secrets
    from messaging_core.testing._stores import (
        LedgerConformance,
        LedgerFactory,
        RateLimiterConformance,
        RateLimiterFactory,
        StatusStoreConformance,
        StatusStoreFactory,
        StoreConformance,
    )

# The suite's assertions get pytest's detailed failure messages.
pytest.register_assert_rewrite("messaging_core.testing._conformance", "messaging_core.testing._stores")

__all__ = [
    "VALIDATION_ERROR_CODES",
    "ConnectorConformance",
    "ConnectorFactory",
    "HookCall",
    "HookRecorder",
    "LedgerConformance",
    "LedgerFactory",
    "RateLimiterConformance",
    "RateLimiterFactory",
    "StatusStoreConformance",
    "StatusStoreFactory",
    "StoreConformance",
    "find_secrets",
]

_MODULES = {
    "VALIDATION_ERROR_CODES": "_conformance",
    "ConnectorConformance": "_conformance",
    "ConnectorFactory": "_conformance",
    "HookCall": "_recorder",
    "HookRecorder": "_recorder",
    "find_secrets": "_recorder",
    "LedgerConformance": "_stores",
    "LedgerFactory": "_stores",
    "RateLimiterConformance": "_stores",
    "RateLimiterFactory": "_stores",
    "StatusStoreConformance": "_stores",
    "StatusStoreFactory": "_stores",
    "StoreConformance": "_stores",
}


def __getattr__(name: str) -> _typing.Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
