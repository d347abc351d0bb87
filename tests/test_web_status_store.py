"""Webhook hosts sharing a status store: ``create_webhook_app(status_store=…, pipeline=…)``, ``serve --status-store``.

Two hosts in this process, each served on its own loopback socket with its own registry and
observer, share one ``MemoryStatusStore``: the store decides what is new, so each callback is
dispatched by one host, once, and never backwards. Callbacks are signed as Twilio signs them
(``compute_signature``, for the URL each host is posted to). The same across processes and
PostgreSQL is ``plugins/scale/tests/test_webhook_hosts.py`` (T10).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import random
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner, Result

from messaging_core import (
    ChannelConnector,
    ChannelRegistry,
    Message,
    MessageBuilder,
    MessageStatus,
    StatusUpdate,
    WebhookSettings,
    hookimpl,
)
from messaging_core.campaigns import (
    Claim,
    InProcessDispatcher,
    MemoryLedger,
    MemoryStatusStore,
    SendOutcome,
    SendPipeline,
    SendState,
    StoreRegistration,
)
from messaging_core.cli import cli
from messaging_core.webhooks import WebhookStats, create_webhook_app
from messaging_core.webhooks.app import STATS_KEY
from messaging_twilio_sms.webhooks import SIGNATURE_HEADER, compute_signature

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token"
TOKEN_HEADER = "I-Twilio-Idempotency-Token"
STATUS_PATH = "/webhooks/sms/status"
DEADLINE = 5.0


def sid(n: int) -> str:
    return f"SM{n:032x}"


class Recorder:
    """An observer plugin: records every status dispatched to it; can be told to fail once."""

    def __init__(self) -> None:
        self.statuses: list[StatusUpdate] = []
        self.fail_next = 0

    @hookimpl
    async def message_status_changed(self, connector: ChannelConnector, update: StatusUpdate) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("observer boom")
        self.statuses.append(update)

    def of(self, remote_id: str) -> list[MessageStatus]:
        return [u.status for u in self.statuses if u.remote_message_id == remote_id]


class FlakyStore:
    """A ``MemoryStatusStore`` whose next ``fail_next`` writes raise (nothing recorded), or take ``delay`` seconds."""

    def __init__(self) -> None:
        self.inner = MemoryStatusStore()
        self.fail_next = 0
        self.delay = 0.0
        self.calls = 0

    async def apply(self, update: StatusUpdate, *, idempotency_key: str | None = None) -> bool:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionResetError("database connection lost")
        return await self.inner.apply(update, idempotency_key=idempotency_key)

    async def get(self, message_id: str) -> MessageStatus | None:
        return await self.inner.get(message_id)


class Host:
    """A served webhook host: its app, its own observer, and a session to post signed callbacks with."""

    def __init__(self, base: str, app: web.Application, recorder: Recorder, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.app = app
        self.recorder = recorder
        self.session = session

    @property
    def stats(self) -> WebhookStats:
        return self.app[STATS_KEY]

    async def status(self, raw: str, remote_id: str, *, token: str | None = None, mid: str | None = None) -> int:
        """POST a signed status callback (our id in the URL when ``mid``); returns the HTTP status."""
        path = STATUS_PATH + (f"?{urlencode({'MessageId': mid})}" if mid else "")
        form = {"MessageSid": remote_id, "MessageStatus": raw, "AccountSid": ACCOUNT_SID}
        headers = {
            SIGNATURE_HEADER: compute_signature(AUTH_TOKEN, self.base + path, form),
            TOKEN_HEADER: token or str(uuid.uuid4()),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        async with self.session.post(self.base + path, data=urlencode(form), headers=headers) as response:
            await response.read()
            return response.status


HostFactory = Callable[..., Awaitable[Host]]


def sms_connector(registry: ChannelRegistry) -> ChannelConnector:
    spec = {
        "channel": "twilio_sms",
        "parameters": {"AccountSid": ACCOUNT_SID, "AuthToken": AUTH_TOKEN, "ApiBaseUrl": "http://127.0.0.1:9"},
    }
    return registry.create_connector(spec, name="sms")


@pytest.fixture
async def make_host() -> AsyncIterator[HostFactory]:
    """Serves a host for connector ``sms`` with the given ``create_webhook_app`` options."""
    cleanups: list[Callable[[], Awaitable[Any]]] = []

    async def make(
        *, connector: ChannelConnector | None = None, recorder: Recorder | None = None, **options: Any
    ) -> Host:
        recorder = recorder or Recorder()
        if connector is None:
            registry = ChannelRegistry.discover()
            registry.host.register(recorder, name=f"recorder-{uuid.uuid4().hex}")  # before the connector
            connector = sms_connector(registry)
        (await connector.initialize()).unwrap()
        cleanups.append(connector.shutdown)
        app = create_webhook_app({"sms": connector}, **options)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        cleanups.append(runner.cleanup)
        await web.SockSite(runner, sock).start()
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEADLINE))
        cleanups.append(session.close)
        return Host(base, app, recorder, session)

    yield make
    for cleanup in reversed(cleanups):
        await cleanup()


async def two_hosts(make_host: HostFactory, store: Any, **options: Any) -> tuple[Host, Host]:
    return await make_host(status_store=store, **options), await make_host(status_store=store, **options)


# -- shared store: once across hosts, never backwards -------------------------------------------------------


async def test_a_redelivery_to_the_other_host_is_acknowledged_and_not_dispatched_again(make_host: HostFactory) -> None:
    store = MemoryStatusStore()
    a, b = await two_hosts(make_host, store)
    token = str(uuid.uuid4())
    assert await a.status("sent", sid(1), token=token) == 204
    assert await b.status("sent", sid(1), token=token) == 204
    assert await a.status("sent", sid(1), token=token) == 204
    assert a.recorder.of(sid(1)) == [MessageStatus.SENT]
    assert b.recorder.statuses == []
    assert await store.get(sid(1)) is MessageStatus.SENT
    assert (a.stats.dispatched, a.stats.not_applied, b.stats.dispatched, b.stats.not_applied) == (1, 1, 0, 1)


async def test_concurrent_copies_on_both_hosts_are_dispatched_once(make_host: HostFactory) -> None:
    a, b = await two_hosts(make_host, MemoryStatusStore())
    token = str(uuid.uuid4())
    answers = await asyncio.gather(*(host.status("delivered", sid(2), token=token) for host in (a, b) * 5))
    assert answers == [204] * 10
    assert len(a.recorder.statuses) + len(b.recorder.statuses) == 1
    # The same status under new tokens (the provider sent it twice) is not new either.
    assert await b.status("delivered", sid(2)) == 204
    assert await a.status("delivered", sid(2)) == 204
    assert len(a.recorder.statuses) + len(b.recorder.statuses) == 1


async def test_a_stale_status_on_the_other_host_is_not_dispatched(make_host: HostFactory) -> None:
    store = MemoryStatusStore()
    a, b = await two_hosts(make_host, store)
    assert await a.status("delivered", sid(3)) == 204
    for raw in ("sent", "queued"):
        assert await b.status(raw, sid(3)) == 204
    assert b.recorder.statuses == []
    assert b.stats.not_applied == 2
    assert await store.get(sid(3)) is MessageStatus.DELIVERED
    # Forward progress after a final status is still possible where the channel allows it.
    assert await b.status("read", sid(3)) == 204
    assert b.recorder.of(sid(3)) == [MessageStatus.READ]


async def test_shuffled_callbacks_spread_over_two_hosts_end_at_the_last_status(make_host: HostFactory) -> None:
    store = MemoryStatusStore()
    hosts = await two_hosts(make_host, store)
    rng = random.Random(20240611)
    final = {sid(n): rng.choice(["delivered", "undelivered"]) for n in range(100, 160)}
    callbacks = [(raw, remote, str(uuid.uuid4())) for remote, last in final.items() for raw in ("queued", "sent", last)]
    callbacks += rng.sample(callbacks, len(callbacks) // 10)  # replays with the same token
    rng.shuffle(callbacks)
    gate = asyncio.Semaphore(16)

    async def post(raw: str, remote: str, token: str) -> int:
        async with gate:
            return await rng.choice(hosts).status(raw, remote, token=token)

    answers = await asyncio.gather(*(post(*callback) for callback in callbacks))
    assert set(answers) == {204}
    for remote, last in final.items():
        assert (await store.get(remote)) is (
            MessageStatus.DELIVERED if last == "delivered" else MessageStatus.DELIVERY_FAILED
        )
        # Each host dispatched this message's statuses in the order the store applied them...
        for host in hosts:
            ranks = [s.rank for s in host.recorder.of(remote)]
            assert ranks == sorted(set(ranks)), (remote, ranks)
        # ...and no status of it was dispatched twice, by either host.
        both = [*hosts[0].recorder.of(remote), *hosts[1].recorder.of(remote)]
        assert len(both) == len(set(both)), (remote, both)
    dispatched = sum(len(host.recorder.statuses) for host in hosts)
    assert dispatched == sum(host.stats.dispatched for host in hosts)
    assert dispatched + sum(host.stats.not_applied for host in hosts) == len(callbacks)
    assert dispatched >= len(final)  # at least every message's first status


# -- failures: never 200 for a status the store did not record ---------------------------------------------


async def test_a_store_failure_is_a_500_and_the_retry_records_and_dispatches(
    make_host: HostFactory, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore()
    a, b = await two_hosts(make_host, store)
    store.fail_next = 1
    token = str(uuid.uuid4())
    assert await a.status("sent", sid(4), token=token) == 500
    assert "the status store failed" in caplog.text
    assert a.recorder.statuses == []
    assert await store.get(sid(4)) is None
    assert a.stats.errors == 1
    # The provider retries (the same token), here on the other host.
    assert await b.status("sent", sid(4), token=token) == 204
    assert b.recorder.of(sid(4)) == [MessageStatus.SENT]
    assert await store.get(sid(4)) is MessageStatus.SENT
    assert await a.status("sent", sid(4), token=token) == 204
    assert len(a.recorder.statuses) + len(b.recorder.statuses) == 1


async def test_a_store_slower_than_the_request_timeout_is_a_503_and_the_retry_records(make_host: HostFactory) -> None:
    store = FlakyStore()
    host = await make_host(status_store=store, settings=WebhookSettings(request_timeout=0.1))
    store.delay = 0.5
    token = str(uuid.uuid4())
    assert await host.status("delivered", sid(5), token=token) == 503
    assert await store.get(sid(5)) is None
    assert host.recorder.statuses == []
    store.delay = 0.0
    assert await host.status("delivered", sid(5), token=token) == 204
    assert host.recorder.of(sid(5)) == [MessageStatus.DELIVERED]


async def test_an_observer_failure_is_a_500_the_status_is_recorded_and_its_retry_dispatched(
    make_host: HostFactory,
) -> None:
    """The one rule for observers: recorded first; a failure is a 500; the provider's retry is dispatched."""
    store = MemoryStatusStore()
    host = await make_host(status_store=store)
    host.recorder.fail_next = 1
    token = str(uuid.uuid4())
    assert await host.status("sent", sid(6), token=token) == 500
    assert await store.get(sid(6)) is MessageStatus.SENT
    # The store has it (a replay for the store), but its observers never finished: dispatched again.
    assert await host.status("sent", sid(6), token=token) == 204
    assert host.recorder.of(sid(6)) == [MessageStatus.SENT]
    # Once dispatched, a further copy is a plain replay.
    assert await host.status("sent", sid(6), token=token) == 204
    assert host.recorder.of(sid(6)) == [MessageStatus.SENT]
    assert await host.status("delivered", sid(6)) == 204
    assert host.recorder.of(sid(6)) == [MessageStatus.SENT, MessageStatus.DELIVERED]


async def test_without_a_store_each_host_has_its_own_memory_store(make_host: HostFactory) -> None:
    # The default is a MemoryStatusStore per host: each reconciles on its own, so both dispatch.
    a, b = await make_host(), await make_host()
    token = str(uuid.uuid4())
    assert await a.status("sent", sid(7), token=token) == 204
    assert await b.status("sent", sid(7), token=token) == 204
    assert a.recorder.of(sid(7)) == [MessageStatus.SENT]
    assert b.recorder.of(sid(7)) == [MessageStatus.SENT]
    assert a.stats.not_applied == 0


# -- pipeline: a callback settles a send held in doubt ---------------------------------------------------------


def text_message() -> Message:
    return (
        MessageBuilder()
        .with_phone_sender("+15005550006")
        .with_phone_receiver("+15551230001")
        .with_text_content("hi")
        .build()
    )


async def in_doubt(ledger: MemoryLedger, message: Message) -> None:
    """Add ``message`` to the ledger and leave it UNKNOWN (the provider call's outcome was lost)."""
    await ledger.add("c1", [(message, "+15005550006", 1)])
    claim = await ledger.claim(message.id, lease=60.0, request_timeout=10.0)
    assert isinstance(claim, Claim)
    assert await ledger.record(claim, SendOutcome(SendState.UNKNOWN))


async def test_a_callback_through_the_dispatcher_settles_a_send_in_doubt(make_host: HostFactory) -> None:
    registry = ChannelRegistry.discover()
    recorder = Recorder()
    registry.host.register(recorder, name="recorder")
    connector = sms_connector(registry)
    ledger, store = MemoryLedger(), MemoryStatusStore()
    dispatcher = InProcessDispatcher(connector, ledger=ledger, status_store=store)
    message = text_message()
    await in_doubt(ledger, message)
    host = await make_host(connector=connector, recorder=recorder, pipeline=dispatcher)

    token = str(uuid.uuid4())
    assert await host.status("sent", sid(8), token=token, mid=message.id) == 204
    entry = await ledger.get(message.id)
    assert entry is not None
    assert (entry.state, entry.provider_id, entry.reconciled) == (SendState.ACCEPTED, sid(8), True)
    assert await store.get(message.id) is MessageStatus.SENT
    assert [u.message_id for u in recorder.statuses] == [message.id]
    # A replay changes nothing and dispatches nothing.
    assert await host.status("sent", sid(8), token=token, mid=message.id) == 204
    assert len(recorder.statuses) == 1
    assert host.stats.not_applied == 1


def test_a_pipeline_without_a_status_store_is_refused() -> None:
    connector = sms_connector(ChannelRegistry.discover())
    with pytest.raises(ValueError, match="has no status store"):
        create_webhook_app({"sms": connector}, pipeline=SendPipeline(connector, ledger=MemoryLedger()))


def test_a_status_store_other_than_the_pipelines_is_refused() -> None:
    connector = sms_connector(ChannelRegistry.discover())
    store = MemoryStatusStore()
    pipeline = SendPipeline(connector, ledger=MemoryLedger(), status_store=store)
    with pytest.raises(ValueError, match="pipeline's own status store"):
        create_webhook_app({"sms": connector}, pipeline=pipeline, status_store=MemoryStatusStore())
    assert isinstance(create_webhook_app({"sms": connector}, pipeline=pipeline, status_store=store), web.Application)


# -- messaging serve --status-store ---------------------------------------------------------------------------------


def write_config(tmp_path: Path, dispatcher: Mapping[str, str] | None = None) -> Path:
    path = tmp_path / "serve.toml"
    text = (
        f'[connectors.sms]\nchannel = "twilio_sms"\n[connectors.sms.parameters]\n'
        f'AccountSid = "{ACCOUNT_SID}"\nAuthToken = "{AUTH_TOKEN}"\nApiBaseUrl = "http://127.0.0.1:9"\n'
    )
    if dispatcher:
        text += "[dispatcher]\n" + "".join(f'{key} = "{value}"\n' for key, value in dispatcher.items())
    path.write_text(text, encoding="utf-8")
    return path


def serve(*args: str) -> Result:
    return CliRunner().invoke(cli, ["serve", "--port", "0", *args], env={"COLUMNS": "200"}, prog_name="messaging")


def test_serve_with_an_unknown_store_scheme_is_one_line(tmp_path: Path) -> None:
    result = serve("--config", str(write_config(tmp_path)), "--status-store", "nosuch://db")
    assert result.exit_code == 2
    assert "error: --status-store: no installed plugin provides a status_store for 'nosuch' URLs" in result.stderr
    assert "Traceback" not in result.output


def test_serve_takes_the_status_store_of_the_dispatcher_table(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"kind": "inprocess", "status_store": "nosuch://db"})
    result = serve("--config", str(config))
    assert result.exit_code == 2
    assert "error: [dispatcher]: no installed plugin provides a status_store for 'nosuch' URLs" in result.stderr


def test_serve_with_an_unreachable_store_fails_before_listening(tmp_path: Path, cannot_run: Any) -> None:
    if importlib.util.find_spec("messaging_scale") is None:  # the plugin behind postgresql:// status stores
        cannot_run("messaging_scale is not installed; install it with `pip install -e plugins/scale`")
    # The option wins over the table's (unusable) URL; port 1 refuses connections.
    config = write_config(tmp_path, {"kind": "inprocess", "status_store": "nosuch://db"})
    result = serve("--config", str(config), "--status-store", "postgresql://u:secret@127.0.0.1:1/db")
    assert result.exit_code == 2
    assert "is unreachable (ConnectionRefusedError" in result.stderr
    assert "listening" not in result.stdout
    assert "secret" not in result.output


class ClosingStore(MemoryStatusStore):
    """A store that records ``close()``, and stops ``serve`` with SIGTERM once serve listens."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def __repr__(self) -> str:
        return "<ClosingStore>"

    async def get(self, message_id: str) -> MessageStatus | None:
        # serve's start-up check. Its SIGTERM handler comes later: wait for it, or SIGTERM would end pytest.
        asyncio.get_running_loop().create_task(self._terminate_when_serving(signal.getsignal(signal.SIGTERM)))
        return await super().get(message_id)

    async def _terminate_when_serving(self, before: Any) -> None:
        async with asyncio.timeout(DEADLINE):
            while signal.getsignal(signal.SIGTERM) == before:  # noqa: ASYNC110 (no event to wait on: a process-wide setting)
                await asyncio.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    async def close(self) -> None:
        self.closed = True


class ClosingStores:
    """A plugin: ``closing://`` URLs build a ``ClosingStore`` (each one kept in ``built``)."""

    def __init__(self) -> None:
        self.built: list[ClosingStore] = []

    def _create(self, url: str, options: Mapping[str, Any]) -> ClosingStore:
        store = ClosingStore()
        self.built.append(store)
        return store

    @hookimpl
    def register_dispatchers(self, register: Callable[[StoreRegistration], None]) -> None:
        register(StoreRegistration("closing", status_store=self._create))


def test_serve_closes_the_status_store_on_shutdown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = ClosingStores()
    discover = ChannelRegistry.discover
    monkeypatch.setattr(ChannelRegistry, "discover", classmethod(lambda cls, **kw: discover(plugins=[plugin], **kw)))
    result = serve("--config", str(write_config(tmp_path)), "--status-store", "closing://")
    assert result.exit_code == 0, result.output
    assert "status store: <ClosingStore>" in result.stdout
    assert "stopped" in result.stdout
    [store] = plugin.built
    assert store.closed
