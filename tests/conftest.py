"""Test channels with precise behaviour, shared through fixtures.

Tests run with ``--import-mode=importlib``: test modules cannot import this file, so the classes
below reach them through fixtures (``acme``, ``probe_class``, ``make_probe``...).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import sysconfig
import time
import types
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from messaging_core import (
    Capability,
    ChannelConnector,
    ChannelRegistry,
    ChannelSchema,
    ConnectorErrorCodes,
    ConnectorResult,
    EndpointSpec,
    Message,
    MessageStatus,
    ParameterSpec,
    PluginHost,
    PropertySpec,
    SendResult,
    StatusUpdate,
    StatusUpdatesResult,
    hookimpl,
)

# -- acme: a provider-like channel with credentials, typed parameters and variants --------------------

ACME_SCHEMA = ChannelSchema(
    provider="acme",
    channel_type="sms",
    version="1.0.0",
    display_name="Acme SMS",
    capabilities=Capability.SEND_MESSAGES
    | Capability.BULK_MESSAGING
    | Capability.MESSAGE_STATUS_QUERY
    | Capability.MEDIA_ATTACHMENTS
    | Capability.HEALTH_CHECK,
    parameters=[
        ParameterSpec("AccountId", required=True, pattern="^AC[0-9a-f]{8}$", description="The account."),
        ParameterSpec("AuthToken", required=True, sensitive=True, min_length=8),
        ParameterSpec("ValidityPeriod", "integer", minimum=1, maximum=14400, default=3600),
        ParameterSpec("Region", allowed_values=["us1", "ie1"], default="us1"),
        ParameterSpec("Sandbox", "boolean", default=False),
    ],
    properties=[
        PropertySpec("MaxPrice", "number", minimum=0, maximum=1),
        PropertySpec("Tags", repeated=True, max_length=10),
        PropertySpec("Priority", "integer", allowed_values=[1, 2, 3]),
    ],
    content_types=["text", "media", "multipart"],
    endpoints=[
        EndpointSpec("phone", required=True, address_pattern=r"^\+[1-9][0-9]{6,14}$"),
        EndpointSpec("label", can_receive=False),
    ],
    auth_types=["basic"],
    max_text_length=160,
    max_media=2,
)

ACME_TEXT_ONLY = ACME_SCHEMA.derive(
    "Acme SMS, text only",
    remove_capabilities=Capability.MEDIA_ATTACHMENTS | Capability.BULK_MESSAGING,
    remove_content_types=["media", "multipart"],
    remove_endpoints=["label"],
)

ACME_SETTINGS = {"AccountId": "AC0123abcd", "AuthToken": "acme-secret-token-42"}


class AcmeConnector(ChannelConnector):
    """Sends into ``self.sent``; status queries answer from it."""

    channel_name: ClassVar[str] = "acme_sms"
    master_schema: ClassVar[ChannelSchema] = ACME_SCHEMA
    schema_variants: ClassVar[dict[str, ChannelSchema]] = {"Full": ACME_SCHEMA, "TextOnly": ACME_TEXT_ONLY}
    credential_parameters: ClassVar[frozenset[str]] = frozenset({"AccountId"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[Message] = []

    async def _send_message(self, message: Message) -> ConnectorResult[SendResult]:
        self.sent.append(message)
        return ConnectorResult.success(SendResult(message.id, f"AM{len(self.sent):06d}", MessageStatus.QUEUED))

    async def _get_message_status(self, message_id: str) -> ConnectorResult[StatusUpdatesResult]:
        if not any(m.id == message_id for m in self.sent):
            return ConnectorResult.failure(ConnectorErrorCodes.STATUS_QUERY_ERROR, "unknown message")
        return ConnectorResult.success(StatusUpdatesResult(message_id, [StatusUpdate(message_id, MessageStatus.SENT)]))


def acme_plugin() -> types.SimpleNamespace:
    """A plugin object (like a module) registering the acme channel."""

    @hookimpl
    def register_connectors(register: Callable[[type[ChannelConnector]], None]) -> None:
        register(AcmeConnector)

    return types.SimpleNamespace(register_connectors=register_connectors)


# -- probe: a channel that measures how it is driven ---------------------------------------------------

PROBE_SCHEMA = ChannelSchema(
    provider="probe",
    channel_type="probe",
    version="1.0.0",
    display_name="Probe",
    capabilities=Capability.SEND_MESSAGES | Capability.BULK_MESSAGING | Capability.HEALTH_CHECK,
    endpoints=[EndpointSpec("id")],
)


class ProbeConnector(ChannelConnector):
    """Records send start times and in-flight counts; can be told to fail or to hold sends."""

    channel_name: ClassVar[str] = "probe"
    master_schema: ClassVar[ChannelSchema] = PROBE_SCHEMA
    default_batch_concurrency: ClassVar[int] = 4

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started: list[tuple[float, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.yields_per_send = 3
        self.fail_initialize = False
        self.raise_on: set[str] = set()
        self.initialize_calls = 0
        self.shutdown_calls = 0

    async def _initialize(self) -> ConnectorResult[bool]:
        self.initialize_calls += 1
        if self.fail_initialize:
            raise ConnectionError("probe: provider unreachable")
        return ConnectorResult.success(True)

    async def _send_message(self, message: Message) -> ConnectorResult[SendResult]:
        self.started.append((time.monotonic(), message.id))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(self.yields_per_send):
                await asyncio.sleep(0)
            if message.id in self.raise_on:
                raise RuntimeError("probe: boom")
            return ConnectorResult.success(SendResult(message.id, f"P-{message.id}", MessageStatus.SENT))
        finally:
            self.in_flight -= 1

    async def _shutdown(self) -> None:
        self.shutdown_calls += 1

    @property
    def sent_ids(self) -> list[str]:
        return [mid for _, mid in self.started]


# -- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture
def acme() -> types.SimpleNamespace:
    """The acme channel: ``schema``, ``text_only``, ``connector_class``, ``settings``, ``plugin()``."""
    return types.SimpleNamespace(
        schema=ACME_SCHEMA,
        text_only=ACME_TEXT_ONLY,
        connector_class=AcmeConnector,
        settings=dict(ACME_SETTINGS),
        plugin=acme_plugin,
    )


@pytest.fixture
def probe_class() -> type[ProbeConnector]:
    return ProbeConnector


@pytest.fixture
def plugin_host() -> PluginHost:
    """A host with the built-in plugins only."""
    return PluginHost()


@pytest.fixture
def make_probe(plugin_host: PluginHost) -> Callable[..., ProbeConnector]:
    """Builds an uninitialized probe connector on ``plugin_host``."""

    def make(schema: ChannelSchema = PROBE_SCHEMA, **kwargs: Any) -> ProbeConnector:
        return ProbeConnector(schema, {}, plugins=kwargs.pop("plugins", plugin_host), **kwargs)

    return make


@pytest.fixture
async def probe(make_probe: Callable[..., ProbeConnector]) -> AsyncIterator[ProbeConnector]:
    """An initialized probe connector; shut down after the test."""
    async with make_probe() as connector:
        assert isinstance(connector, ProbeConnector)
        yield connector


@pytest.fixture
def acme_registry() -> ChannelRegistry:
    """Built-in plugins plus acme."""
    return ChannelRegistry(plugins=[acme_plugin()])


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ACME_* variable leaks in from the environment running the tests."""
    import os

    for name in list(os.environ):
        if name.startswith("ACME_") or name.startswith("MEMORY_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture(autouse=True)
def _no_messaging_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment plugin reads TWILIO_* for missing parameters and MESSAGING_* steers plugins:
    keep the developer's variables out of every core test (tests set what they need)."""
    for name in list(os.environ):
        if name.startswith(("TWILIO_", "MESSAGING_")):
            monkeypatch.delenv(name)


# -- Django without a project on disk ---------------------------------------------------------------------

UrlConf = Callable[[list[Any]], contextlib.AbstractContextManager[None]]


@pytest.fixture
def django_urls() -> UrlConf:
    """Serves the given URL patterns in Django for a ``with`` block: ``with django_urls(urlpatterns): ...``.

    Django is configured once, here, with the settings a webhook needs (allowed hosts, the CSRF
    middleware, so that the views prove they are exempt); the URLconf is a module object swapped
    in by ``override_settings``. Imported only by the tests that use it.
    """
    import django
    from django.conf import settings
    from django.test.utils import override_settings

    if not settings.configured:
        settings.configure(
            ALLOWED_HOSTS=["hooks.example.com", "internal", "testserver"],
            ROOT_URLCONF=types.ModuleType("no_urls"),
            MIDDLEWARE=["django.middleware.common.CommonMiddleware", "django.middleware.csrf.CsrfViewMiddleware"],
            SECRET_KEY="test-only; signs nothing here",
            USE_TZ=True,
        )
        django.setup()

    @contextlib.contextmanager
    def serve(urlpatterns: list[Any]) -> Iterator[None]:
        urls = types.ModuleType("test_urls")
        urls.urlpatterns = urlpatterns  # type: ignore[attr-defined]
        with override_settings(ROOT_URLCONF=urls):
            yield

    return serve


@pytest.fixture
def twilio_config(tmp_path: Any) -> Callable[..., Any]:
    """Writes ``messaging.toml`` in ``tmp_path``: one Twilio SMS connector, ``sms``, and the ``[webhooks]`` lines given.

    ``twilio_config(account, token, webhooks="")`` returns the file's path. The API base URL is a
    closed loopback port: these connectors verify and parse webhooks, and never call Twilio.
    """

    def write(account: str, token: str, webhooks: str = "") -> Any:
        config = tmp_path / "messaging.toml"
        config.write_text(
            f'[webhooks]\n{webhooks}\n\n[connectors.sms]\nchannel = "twilio_sms"\n\n[connectors.sms.parameters]\n'
            f'AccountSid = "{account}"\nAuthToken = "{token}"\nApiBaseUrl = "http://127.0.0.1:9"\n',
            encoding="utf-8",
        )
        return config

    return write


# -- fresh virtual environments (installed as users install) -----------------------------------------

_OURS = ("pluggable_messaging", "messaging_core", "messaging_twilio_sms", "messaging_scale", "__editable__")
"""What the test environment holds of this project (editable installs): never visible to a fresh one."""


@pytest.fixture(scope="session")
def make_venv(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], Path]:
    """``make_venv(path)``: a new virtual environment (no pip) that also sees the test environment's
    third-party packages, linked one by one into a directory on its path, leaving this project's own
    distributions out, so that only the wheels installed into it provide them (nothing downloaded)."""
    third_party = tmp_path_factory.mktemp("third_party")
    for directory in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        for entry in Path(directory).iterdir():
            if entry.name.startswith(_OURS) or entry.suffix == ".pth" or (third_party / entry.name).exists():
                continue
            (third_party / entry.name).symlink_to(entry)

    def make(venv: Path) -> Path:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
        purelib = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        (Path(purelib) / "third_party.pth").write_text(f"{third_party}\n", encoding="utf-8")
        return venv

    return make
