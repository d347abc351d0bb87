"""``messaging demo``: the whole system end to end, offline.

Starts each configured channel's emulator (found through ``register_emulators``) and the webhook
host on free loopback ports, creates the connectors of the example configuration pointed at the
emulators, then: sends a text message, an MMS and a bulk batch, waits for the signed status
callbacks to come back through the webhook host, simulates an inbound message and answers it with
an auto-reply, queries a status, and prints a summary. Returns True only if every step did what it
should.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import click
from rich.console import Console
from rich.table import Table

from messaging_core.cli._app import cli, console, registry_of, run_async
from messaging_core.cli.send import print_batch_summary, send_with_progress
from messaging_core.config import ConnectorSpec, MessagingConfig, WebhookSettings, load_config
from messaging_core.connector import ChannelConnector
from messaging_core.emulation import RunningEmulator
from messaging_core.errors import ConfigurationError, MessagingError
from messaging_core.hookspecs import hookimpl
from messaging_core.message import Message, MessageBatch, MessageBuilder
from messaging_core.registry import ChannelRegistry
from messaging_core.results import MessageStatus, StatusUpdate
from messaging_core.schema import Capability
from messaging_core.webhooks.host import WebhookHost

__all__ = ["run_demo"]

CHECKOUT_CONFIG = Path("examples/messaging.toml")
"""The example configuration of a checkout, relative to its root: what the demo uses when it is there."""
PACKAGED_CONFIG = resources.files("messaging_core") / "examples" / "messaging.toml"
"""The same file, shipped in the package (a copy, pinned identical by a test): the demo's default elsewhere."""
AUTO_REPLY = "Thanks! We got your message."


class _DemoObserver:
    """A plugin: records statuses and inbound messages, and answers inbound messages."""

    def __init__(self) -> None:
        self.final: dict[str, MessageStatus] = {}
        self.updates = 0
        self.received: list[Message] = []
        self.replies: list[Any] = []
        self.reply_tasks: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Event()

    @hookimpl
    def message_status_changed(self, connector: ChannelConnector, update: StatusUpdate) -> None:
        self.updates += 1
        if update.status.is_final:
            self.final[update.message_id] = update.status
        self.changed.set()

    @hookimpl
    async def message_received(self, connector: ChannelConnector, message: Message) -> None:
        self.received.append(message)
        reply = MessageBuilder().with_sender(message.receiver).with_receiver(message.sender)  # type: ignore[arg-type]
        reply.with_text_content(AUTO_REPLY)
        # Reply after acknowledging the webhook: the provider should not wait for our send.
        task = asyncio.get_running_loop().create_task(self._reply(connector, reply.build()))
        self.reply_tasks.add(task)
        task.add_done_callback(self.reply_tasks.discard)

    async def _reply(self, connector: ChannelConnector, message: Message) -> None:
        self.replies.append(await connector.send_message(message))
        self.changed.set()

    async def wait_for(self, predicate: Any, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.5))
        return True


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _pick(connectors: dict[str, ChannelConnector], capability: Capability, prefer: str) -> tuple[str, ChannelConnector]:
    if prefer in connectors and capability in connectors[prefer].schema.capabilities:
        return prefer, connectors[prefer]
    for name, connector in connectors.items():
        if capability in connector.schema.capabilities:
            return name, connector
    raise ConfigurationError(f"the demo configuration has no connector with {capability.name}")


class _Steps:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.results: list[tuple[str, bool, str]] = []

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.results.append((name, ok, detail))
        mark = "[green]✔[/]" if ok else "[red]✘[/]"
        self.console.print(f"{mark} {name}" + (f" — {detail}" if detail else ""), highlight=False)
        return ok


async def run_demo(
    registry: ChannelRegistry,
    config_file: Path | None,
    *,
    console: Console,
    bulk: int = 200,
    wait_seconds: float = 30.0,
) -> bool:
    """Run the demo; True when every step succeeded.

    Without ``config_file``: ``examples/messaging.toml`` when run from a checkout's root (edit it
    there), else the copy shipped in the package (an installed wheel, any directory).
    """
    with _demo_config(config_file) as path:
        return await _run_demo(registry, path, console=console, bulk=bulk, wait_seconds=wait_seconds)


def _demo_config(config_file: Path | None) -> contextlib.AbstractContextManager[Path]:
    """The configuration file to run the demo with, as a real file for the time of the demo."""
    if config_file is not None:
        if not config_file.exists():
            raise ConfigurationError(f"{config_file}: not found")
        return contextlib.nullcontext(config_file)
    if CHECKOUT_CONFIG.is_file():
        return contextlib.nullcontext(CHECKOUT_CONFIG)
    return resources.as_file(PACKAGED_CONFIG)  # a file even when the package is zipped


async def _run_demo(registry: ChannelRegistry, path: Path, *, console: Console, bulk: int, wait_seconds: float) -> bool:
    console.print(f"configuration: {path}", soft_wrap=True, highlight=False)
    observer = _DemoObserver()
    registry.host.register(observer)
    emulators = registry.emulators()
    sock = _free_socket()
    webhook_base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    steps = _Steps(console)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(registry.host.unregister, observer)  # the registry may run the demo again
        # Closed here when a step fails before the webhook host takes it over (closing twice is harmless).
        stack.callback(sock.close)
        # 1. Emulators for the configured channels, and the configuration pointed at them.
        raw = load_config(path, environ=_AnyEnvironment(MESSAGING_PUBLIC_URL=webhook_base))
        running: dict[str, RunningEmulator] = {}
        for spec in raw.connectors.values():
            channel = registry.channel_name(spec.channel)  # an alias means its channel's emulator
            if channel not in running:
                if channel not in emulators:
                    raise ConfigurationError(f"{path}: no emulator for channel {spec.channel!r}; the demo runs offline")
                running[channel] = await stack.enter_async_context(emulators[channel].start(host="127.0.0.1", port=0))
        environ = {**os.environ, "MESSAGING_PUBLIC_URL": webhook_base}
        for emulator in running.values():
            environ.update(emulator.environment())
        loaded = load_config(path, environ=environ)
        specs = {
            name: ConnectorSpec(
                name,
                spec.channel,
                spec.schema,
                # never the real provider
                {**spec.parameters, **running[registry.channel_name(spec.channel)].connector_parameters()},
                spec.enabled,
            )
            for name, spec in loaded.connectors.items()
        }
        config = MessagingConfig(specs, WebhookSettings(public_url=webhook_base), path, metrics=loaded.metrics)
        connectors = registry.create_connectors(config)
        for emulator in running.values():
            console.print(f"emulator at {emulator.base_url}; webhook host at {webhook_base}")

        # 2. The webhook host on its socket, the connectors ready.
        try:
            host = WebhookHost(connectors, settings=config.webhooks, sock=sock, metrics=config.metrics)
            served = await stack.enter_async_context(host)
        except MessagingError as err:
            steps.check("start the webhook host and initialize the connectors", False, str(err))
            return False
        for connector in connectors.values():
            steps.check(f"initialize {connector.name}", connector.is_ready)

        sms_name, sms = _pick(connectors, Capability.SEND_MESSAGES, "sms")
        bulk_name, bulk_connector = _pick(connectors, Capability.BULK_MESSAGING, "bulk")
        inbound_name, _ = _pick(connectors, Capability.RECEIVE_MESSAGES, "sms")
        emulator = running[sms.channel_name]
        addresses = emulator.demo_endpoints()
        for channel_emulator in running.values():
            channel_emulator.set_webhook_urls(
                messages_url=f"{webhook_base}/webhooks/{inbound_name}/messages",
                status_url=f"{webhook_base}/webhooks/{inbound_name}/status",
            )

        # 3. A text message and an MMS.
        sent_ids: list[str] = []
        text = (
            MessageBuilder()
            .with_phone_sender(addresses["sender"])
            .with_phone_receiver(addresses["receiver"])
            .with_text_content("Hello from pluggable-messaging!")
            .with_property("ProvideCallback", True)
            .build()
        )
        result = await sms.send_message(text)
        steps.check(f"send text via {sms_name}", result.is_success, _describe(result))
        if result.is_success:
            sent_ids.append(text.id)
        mms = (
            MessageBuilder()
            .with_phone_sender(addresses["sender"])
            .with_phone_receiver(addresses["receiver"])
            .with_text_content("A picture for you")
            .with_media_content(addresses["media_url"], "image/png")
            .build()
        )
        result = await sms.send_message(mms)
        steps.check(f"send MMS via {sms_name}", result.is_success, _describe(result))
        if result.is_success:
            sent_ids.append(mms.id)

        # 4. A bulk batch with a progress bar.
        batch = MessageBatch(
            [
                MessageBuilder()
                .with_phone_sender(addresses["sender"])
                .with_phone_receiver(f"{addresses['receiver_prefix']}{index:04d}")
                .with_text_content(f"Campaign message {index}")
                .build()
                for index in range(bulk)
            ]
        )
        batch_result = await send_with_progress(bulk_connector, batch, output=console)
        print_batch_summary(batch, batch_result, console)
        steps.check(
            f"bulk batch of {bulk} via {bulk_name}",
            len(batch_result.succeeded) == bulk,
            f"{len(batch_result.succeeded)} sent, {len(batch_result.failed)} failed",
        )
        sent_ids.extend(batch_result.succeeded)

        # 5. Signed status callbacks through the webhook host.
        arrived = await observer.wait_for(lambda: all(i in observer.final for i in sent_ids), wait_seconds)
        delivered = sum(1 for i in sent_ids if observer.final.get(i) is MessageStatus.DELIVERED)
        stats = served.stats
        steps.check(
            "status callbacks received and verified",
            arrived and delivered == len(sent_ids) and stats.forbidden == 0,
            f"{delivered}/{len(sent_ids)} delivered, {observer.updates} updates dispatched, "
            f"{stats.forbidden} rejected signatures",
        )

        # 6. An inbound message, answered automatically.
        status, body = await emulator.simulate_inbound(addresses["receiver"], addresses["sender"], "HELLO")
        steps.check("inbound SMS accepted by the webhook host", status == 200, f"HTTP {status} {body[:60]}")
        replied = await observer.wait_for(lambda: bool(observer.replies), wait_seconds)
        reply_ok = replied and all(r.is_success for r in observer.replies)
        steps.check("auto-reply sent", reply_ok, _describe(observer.replies[0]) if observer.replies else "no reply")

        # 7. Status query.
        query = await sms.get_message_status(text.id)
        latest = query.value.latest if query.value else None
        steps.check(
            "status query",
            latest is not None and latest.status is MessageStatus.DELIVERED,
            f"{latest.remote_message_id}: {latest.status.value}" if latest else (query.error_message or ""),
        )
        if observer.reply_tasks:
            await asyncio.gather(*observer.reply_tasks, return_exceptions=True)

        # 8. With [metrics] enabled: the webhook host's /metrics counts what the demo did.
        if config.metrics.enabled:
            status, exposed = await _get(f"{webhook_base}/metrics")
            counted = "messaging_sends_total{" in exposed and "messaging_webhook_requests_total{" in exposed
            steps.check(f"metrics at {webhook_base}/metrics", status == 200 and counted, f"HTTP {status}")

        summary = Table(title="Demo summary")
        summary.add_column("what")
        summary.add_column("count", justify="right")
        failed = len(batch_result.failed) + (2 - len([i for i in (text.id, mms.id) if i in sent_ids]))
        for label, value in (
            ("sent", len(sent_ids) + sum(1 for r in observer.replies if r.is_success)),
            ("delivered", delivered),
            ("failed", failed),
            ("received", len(observer.received)),
            ("webhooks verified and dispatched", stats.dispatched),
            ("signatures rejected", stats.forbidden),
        ):
            summary.add_row(label, str(value))
        console.print(summary)
    ok = all(result_ok for _, result_ok, _ in steps.results)
    console.print("[bold green]demo passed[/]" if ok else "[bold red]demo failed[/]")
    return ok


class _AnyEnvironment(dict[str, str]):
    """Every variable is "set": the first read of the config only needs the channel names."""

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> str:
        return "placeholder"


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, session.get(url) as response:
        return response.status, await response.text()


def _describe(result: Any) -> str:
    if result.is_success:
        value = result.value
        return f"{value.remote_message_id} {value.status.value}"
    return f"{result.error_code}: {result.error_message}"


@cli.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Configuration (default: examples/messaging.toml in a checkout, else the example shipped in the package).",
)
@click.option("--bulk", default=200, show_default=True, type=click.IntRange(1, 100_000), help="Bulk batch size.")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for status callbacks.")
@click.pass_context
def demo(ctx: click.Context, config_file: Path | None, bulk: int, timeout: float) -> None:
    """The end-to-end demo, offline: emulator + webhook host + SMS, MMS, bulk, callbacks, inbound, auto-reply.

    \b
    Example:
      messaging demo
    """
    ok = run_async(ctx, run_demo(registry_of(ctx), config_file, console=console, bulk=bulk, wait_seconds=timeout))
    sys.exit(0 if ok else 1)
