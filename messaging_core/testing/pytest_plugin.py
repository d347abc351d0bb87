"""pytest plugin of messaging_core (entry point ``pytest11``): fixtures for tests of hosts and plugins.

pytest loads this module in every run of anyone who installs the core, so it imports nothing beyond
pytest and the standard library at import time; the framework is imported inside the fixtures.

Fixtures:

``messaging_registry``
    A ``ChannelRegistry(plugins=[])``: the built-in plugins (environment, memory) only, no entry
    points, its own plugin host.
``messaging_hooks``
    A ``HookRecorder`` registered on ``messaging_registry``'s host, recording every observer call.
``memory_connector``
    An initialized memory connector of ``messaging_registry`` with a mailbox of its own (so tests
    never see each other's messages), observed by ``messaging_hooks``; shut down after the test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from messaging_core import ChannelConnector, ChannelRegistry
    from messaging_core.testing import HookRecorder

try:  # async fixtures that also work in pytest-asyncio's strict mode
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover - without pytest-asyncio, async tests cannot run anyway
    _async_fixture = pytest.fixture  # type: ignore[assignment]  # same decorator shape for our fixtures


@pytest.fixture
def messaging_registry() -> ChannelRegistry:
    """A registry with the built-in plugins only (no entry points are loaded)."""
    from messaging_core import ChannelRegistry

    return ChannelRegistry(plugins=[])


@pytest.fixture
def messaging_hooks(messaging_registry: ChannelRegistry) -> HookRecorder:
    """Records every observer hook call of ``messaging_registry``'s connectors."""
    from messaging_core.testing import HookRecorder

    recorder = HookRecorder()
    messaging_registry.host.register(recorder, name="messaging-hook-recorder")
    return recorder


@_async_fixture
async def memory_connector(
    messaging_registry: ChannelRegistry, messaging_hooks: HookRecorder
) -> AsyncIterator[ChannelConnector]:
    """An initialized memory connector with a private mailbox; shut down after the test.

    Depends on ``messaging_hooks`` so that the recorder is registered before the connector is
    created (connectors look up their ``message_sent`` observers once, when they are built).
    """
    connector = messaging_registry.create_connector(
        {"channel": "memory", "parameters": {"Mailbox": f"test-{uuid.uuid4().hex}"}}, name="memory"
    )
    async with connector:
        yield connector
