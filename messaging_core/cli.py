"""The ``messaging`` command line (click for parsing, rich for tables and progress).

Thin by design: every command calls the public API. Plugins add commands through the
``register_commands`` hook and emulators through ``register_emulators``. A user mistake prints one
clear line and exits non-zero; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from messaging_core import converters
from messaging_core.config import MessagingConfig, config_error, load_config
from messaging_core.connector import BatchProgress, ChannelConnector
from messaging_core.dispatcher import DispatcherSettings
from messaging_core.errors import ConfigurationError, MessagingError
from messaging_core.message import Endpoint, MessageBatch, MessageBuilder
from messaging_core.pipeline import StatusStore
from messaging_core.registry import ChannelRegistry
from messaging_core.results import ConnectorResult
from messaging_core.schema import Capability
from messaging_core.validation import ValidationIssue

__all__ = ["cli", "main"]

T = TypeVar("T")

console = Console()
# Errors and warnings are lines meant for people and for grep: never wrapped at the terminal width.
err_console = Console(stderr=True, soft_wrap=True)


class _State:
    def __init__(self, debug: bool) -> None:
        self.debug = debug
        self._registry: ChannelRegistry | None = None

    @property
    def registry(self) -> ChannelRegistry:
        if self._registry is None:
            self._registry = ChannelRegistry.discover()
            for failure in self._registry.load_errors:
                err_console.print(
                    f"[yellow]warning:[/] plugin {escape(failure.name)} failed to load: {escape(failure.error)}"
                )
        return self._registry


def _fail(message: str, code: int = 1) -> NoReturn:
    # Messages carry user input (addresses, file names, provider texts): never read them as markup.
    err_console.print(f"[red]error:[/] {escape(message)}", highlight=False)
    sys.exit(code)


def _print_issue(text: str) -> None:
    err_console.print(escape(text), highlight=False)


def _run(ctx: click.Context, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; a MessagingError becomes one line (a traceback with --debug)."""
    try:
        return asyncio.run(coroutine)
    except MessagingError as err:
        if ctx.find_object(_State) and ctx.find_object(_State).debug:  # type: ignore[union-attr]
            raise
        _fail(str(err), 2)


class _Group(click.Group):
    """Turns errors escaping a command into one clear line (a traceback with ``--debug``)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click prints these itself (usage errors, --help, Ctrl-C)
        except Exception as err:
            state = ctx.find_object(_State)
            if state is not None and state.debug:
                raise
            if isinstance(err, MessagingError):
                _fail(str(err), 2)
            if isinstance(err, OSError):  # a file, a port, a host: the user's environment
                _fail(f"{err.strerror or err}" + (f": {err.filename}" if err.filename else ""), 2)
            _fail(f"unexpected {type(err).__name__}: {err} (run with --debug for the traceback)", 3)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and DEBUG logs.")
@click.option("-v", "--verbose", is_flag=True, help="INFO logs.")
@click.version_option(package_name="pluggable-messaging")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: bool) -> None:
    """Send and receive messages through pluggable channels.

    \b
    Examples:
      messaging channels
      messaging demo
      messaging send --config messaging.toml --connector sms --to +15551234567 --text "Hello"
    """
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = _State(debug)


def _registry(ctx: click.Context) -> ChannelRegistry:
    state = ctx.find_object(_State)
    assert state is not None
    return state.registry


# -- channels and schemas ----------------------------------------------------------------------------


@cli.command()
@click.pass_context
def channels(ctx: click.Context) -> None:
    """List installed channels, their schema variants and capabilities.

    \b
    Example:
      messaging channels
    """
    registry = _registry(ctx)
    table = Table(title="Channels")
    table.add_column("channel", style="bold")
    table.add_column("plugin")
    table.add_column("variant")
    table.add_column("capabilities")
    for info in registry.channels():
        for index, (variant, schema) in enumerate(info.variants.items()):
            table.add_row(
                escape(info.name) if index == 0 else "",
                escape(info.plugin) if index == 0 else "",
                escape(variant),
                ", ".join(c.lower() for c in schema.capabilities.names()),
            )
    console.print(table)
    for failure in registry.load_errors:
        console.print(f"[red]failed plugin[/] {escape(failure.name)}: {escape(failure.error)}", soft_wrap=True)


@cli.group()
def schema() -> None:
    """Show or export channel schemas.

    \b
    Examples:
      messaging schema show twilio_sms SimpleSms
      messaging schema show twilio_sms --json
      messaging schema export schemas/
    """


@schema.command("show")
@click.argument("channel")
@click.argument("variant", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON Schema documents.")
@click.pass_context
def schema_show(ctx: click.Context, channel: str, variant: str | None, as_json: bool) -> None:
    """Parameters, properties and capabilities of a channel schema.

    \b
    Examples:
      messaging schema show twilio_sms SimpleSms
      messaging schema show twilio_sms --json
    """
    found = _registry(ctx).schema(channel, variant)
    if as_json:
        documents = {
            "schema": converters.schema_to_document(found),
            "settings": found.settings_json_schema(),
            "properties": found.properties_json_schema(),
            "message": found.message_json_schema(),
        }
        click.echo(json.dumps(documents, indent=2, sort_keys=True))
        return
    console.print(f"[bold]{escape(found.display_name)}[/] ({escape(found.logical_identity)})")
    console.print("capabilities: " + ", ".join(found.capabilities.names()))
    console.print("content types: " + ", ".join(sorted(c.value for c in found.content_types)))
    for title, specs in (("Parameters", found.parameters), ("Message properties", found.properties)):
        table = Table(title=title)
        for column in ("name", "type", "required", "default", "constraints", "description"):
            table.add_column(column)
        for spec in specs:
            constraints = ", ".join(
                f"{k}={v}"
                for k, v in (
                    ("min", spec.minimum),
                    ("max", spec.maximum),
                    ("pattern", spec.pattern),
                    ("allowed", spec.allowed_values),
                )
                if v is not None
            )
            sensitive = " (secret)" if getattr(spec, "sensitive", False) else ""
            kind = spec.data_type.value + ("[]" if spec.repeated else "")
            table.add_row(
                escape(spec.name + sensitive),
                kind,
                "yes" if spec.required else "",
                "" if spec.default is None else escape(str(spec.default)),
                escape(constraints),
                escape(spec.description),
            )
        console.print(table)


def export_schemas(registry: ChannelRegistry, directory: Path) -> list[Path]:
    """Write the JSON exports of every registered schema and the meta-schemas into ``directory``."""
    from messaging_core.config import config_json_schema

    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def write(name: str, document: Any) -> None:
        path = directory / name
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)

    write("channel-schema.schema.json", converters.meta_schema())
    write("config.schema.json", config_json_schema())
    for info in registry.channels():
        for variant, found in info.variants.items():
            write(
                f"{info.name}.{variant}.json",
                {
                    "channel": info.name,
                    "variant": variant,
                    "schema": converters.schema_to_document(found),
                    "settings": found.settings_json_schema(),
                    "message": found.message_json_schema(),
                },
            )
    return written


@schema.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def schema_export(ctx: click.Context, directory: Path) -> None:
    """Regenerate the JSON Schema exports (the repository's schemas/ folder).

    \b
    Example:
      messaging schema export schemas/
    """
    written = export_schemas(_registry(ctx), directory)
    console.print(f"wrote {len(written)} files to {escape(str(directory))}", soft_wrap=True)


# -- config --------------------------------------------------------------------------------------------


@cli.group()
def config() -> None:
    """Work with configuration files.

    \b
    Example:
      messaging config validate examples/messaging.toml
    """


@config.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def config_validate(ctx: click.Context, file: Path) -> None:
    """Check a configuration file; lists every problem with file, connector and JSON path.

    \b
    Example:
      messaging config validate examples/messaging.toml
    """
    loaded, issues = _config_problems(_registry(ctx), file)
    if issues:
        for issue in issues:
            parts = issue.path.split(".")
            who = f"connector {parts[2]!r}, " if len(parts) > 2 and parts[1] == "connectors" else ""
            _print_issue(f"{file}: {who}{issue.path}: {issue.message}")
        _fail(f"{len(issues)} problem(s) in {file}")
    assert loaded is not None
    console.print(f"{escape(str(file))}: OK ({len(loaded.connectors)} connector(s))", soft_wrap=True)


_MISSING_VARIABLE = re.compile(r"environment variable ([A-Za-z_][A-Za-z0-9_]*) is not set")


class _StandIns(Mapping[str, str]):
    """The environment, plus a stand-in value for each of ``missing`` (variables that are not set)."""

    def __init__(self, missing: set[str]) -> None:
        self._missing = missing

    def __getitem__(self, name: str) -> str:
        if name in os.environ:
            return os.environ[name]
        if name in self._missing:
            return "unset"
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter({*os.environ, *self._missing})

    def __len__(self) -> int:
        return len({*os.environ, *self._missing})


def _config_problems(registry: ChannelRegistry, file: Path) -> tuple[MessagingConfig | None, list[ValidationIssue]]:
    """Every problem of a configuration file: structure, unset variables and channel-level checks.

    Loading stops at unset variables; to report the channel-level problems of the rest of the file
    too, it is loaded again with stand-ins for them (and problems of those values are left out).
    """
    try:
        loaded = load_config(file)
    except ConfigurationError as err:
        if not err.issues:
            raise  # unreadable, not TOML/YAML/JSON...: one line
        issues = list(err.issues)
    else:
        return loaded, registry.check_config(loaded)
    unset = {issue.path for issue in issues if issue.code == "MISSING_ENV"}
    names = {m.group(1) for issue in issues if (m := _MISSING_VARIABLE.search(issue.message))}
    if len(unset) != len(issues) or not names:
        return None, issues  # structural problems: the channel checks need a well-formed file
    try:
        loaded = load_config(file, environ=_StandIns(names))
    except ConfigurationError:
        return None, issues

    def affected(path: str) -> bool:
        return any(path == p or path.startswith((p + ".", p + "[")) for p in unset)

    issues += [issue for issue in registry.check_config(loaded) if not affected(issue.path)]
    return None, sorted(issues, key=lambda issue: issue.path)


# -- sending -------------------------------------------------------------------------------------------


def _connector(ctx: click.Context, config_file: Path, name: str) -> ChannelConnector:
    """The one connector ``name`` of a configuration file (the others need not be usable)."""
    loaded = load_config(config_file, only=[name])
    spec = loaded.connectors.get(name)
    if spec is None:
        _fail(f"{config_file}: no connector {name!r} (connectors: {', '.join(loaded.connectors)})")
    if not spec.enabled:
        _fail(f"{config_file}: connector {name!r} is disabled (enabled = false)")
    registry = _registry(ctx)
    issues = registry.spec_issues(spec, root=f"$.connectors.{name}")
    if issues:
        raise config_error(loaded, issues)
    return registry.create_connector(spec)


def _properties(pairs: tuple[str, ...]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            _fail(f"--property {pair!r}: expected NAME=VALUE")
        key, raw = pair.split("=", 1)
        try:
            value: Any = json.loads(raw)  # 3600 → int, true → bool, "x" → str
        except json.JSONDecodeError:
            value = raw
        if key in result:  # repeated → list (PersistentAction=a --property PersistentAction=b)
            previous = result[key]
            result[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            result[key] = value
    return result


async def _open(connector: ChannelConnector) -> None:
    result = await connector.initialize()
    if not result.is_success:
        assert result.error is not None
        await connector.shutdown()
        _fail(f"{result.error.code}: {result.error.message}", 2)


def _report_failure(result: ConnectorResult[Any]) -> NoReturn:
    assert result.error is not None
    for issue in result.error.issues:
        _print_issue(f"  {issue.path}: {issue.message}")
    _fail(f"{result.error.code}: {result.error.message}", 1)


_config_option = click.option(
    "--config",
    "config_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Configuration file.",
)
_connector_option = click.option("--connector", "connector_name", required=True, help="Connector name in the config.")


@cli.command()
@_config_option
@_connector_option
@click.option("--to", "to", required=True, help="Receiver address (E.164 for SMS).")
@click.option("--from", "from_", help="Sender address.")
@click.option("--text", help="Message text.")
@click.option("--media", multiple=True, help="Media URL (repeatable).")
@click.option("--property", "properties", multiple=True, help="Message property NAME=VALUE (repeatable).")
@click.option("--dry-run", is_flag=True, help="Validate and print the request; send nothing.")
@click.pass_context
def send(
    ctx: click.Context,
    config_file: Path,
    connector_name: str,
    to: str,
    from_: str | None,
    text: str | None,
    media: tuple[str, ...],
    properties: tuple[str, ...],
    dry_run: bool,
) -> None:
    """Send one message.

    \b
    Examples:
      messaging send --config messaging.toml --connector sms --from +15005550006 --to +15551234567 --text Hi
      messaging send --config messaging.toml --connector sms --to +15551234567 --text Hi --dry-run
    """
    connector = _connector(ctx, config_file, connector_name)
    builder = MessageBuilder().with_receiver(Endpoint.phone(to) if to.startswith("+") else Endpoint("any", to))
    if from_:
        builder.with_sender(Endpoint.phone(from_) if from_.startswith("+") else Endpoint("label", from_))
    if text:
        builder.with_text_content(text)
    for url in media:
        builder.with_media_content(url)
    if not text and not media:
        _fail("give --text and/or --media")
    message = builder.with_properties(_properties(properties)).build()

    async def run() -> None:
        await _open(connector)
        try:
            if dry_run:
                issues = connector.validate_message(message)
                if issues:
                    for issue in issues:
                        _print_issue(f"  {issue.path}: {issue.message}")
                    _fail(f"MESSAGE_VALIDATION_FAILED: {len(issues)} problem(s); nothing sent", 1)
                click.echo(json.dumps(connector.preview_message(message), indent=2, default=str))
                console.print("[green]valid[/] (dry run: nothing sent)")
                return
            result = await connector.send_message(message)
            if not result.is_success:
                _report_failure(result)
            assert result.value is not None
            console.print(
                f"[green]sent[/] {escape(str(result.value.remote_message_id))} status={result.value.status.value} "
                f"id={escape(result.value.message_id)}",
                soft_wrap=True,
            )
        finally:
            await connector.shutdown()

    _run(ctx, run())


@cli.command("send-batch")
@_config_option
@_connector_option
@click.option("--to-file", required=True, type=click.File("r"), help="One receiver per line ('-' for stdin).")
@click.option("--from", "from_", help="Sender address.")
@click.option("--text", required=True, help="Message text.")
@click.option("--concurrency", type=click.IntRange(1, 1000), help="Sends in flight.")
@click.option("--rate", type=click.FloatRange(0.01), help="Messages per second.")
@click.pass_context
def send_batch(
    ctx: click.Context,
    config_file: Path,
    connector_name: str,
    to_file: Any,
    from_: str | None,
    text: str,
    concurrency: int | None,
    rate: float | None,
) -> None:
    """Send the same text to many receivers, with a progress bar and a summary.

    \b
    Example:
      messaging send-batch --config messaging.toml --connector bulk --to-file numbers.txt --text "Sale today"
    """
    numbers = [line.strip() for line in to_file if line.strip() and not line.startswith("#")]
    if not numbers:
        _fail("--to-file has no receivers")
    connector = _connector(ctx, config_file, connector_name)
    if Capability.BULK_MESSAGING not in connector.schema.capabilities:
        _fail(f"connector {connector_name!r} ({connector.schema.display_name}) does not support bulk messaging")
    messages = []
    for number in numbers:
        builder = MessageBuilder().with_phone_receiver(number).with_text_content(text)
        if from_:
            builder.with_phone_sender(from_)
        messages.append(builder.build())
    batch = MessageBatch(messages)

    async def run() -> None:
        await _open(connector)
        try:
            result = await send_with_progress(connector, batch, concurrency=concurrency, rate=rate)
        finally:
            await connector.shutdown()
        print_batch_summary(batch, result)
        if result.failed:
            sys.exit(1)

    _run(ctx, run())


async def send_with_progress(
    connector: ChannelConnector,
    batch: MessageBatch,
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    output: Console | None = None,
) -> Any:
    """``send_batch`` with a rich progress bar."""
    with Progress(
        TextColumn("[bold]sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ok {task.fields[ok]} failed {task.fields[failed]}"),
        TimeElapsedColumn(),
        console=output or console,
        transient=False,
    ) as progress:
        task = progress.add_task("send", total=len(batch), ok=0, failed=0)

        def on_progress(state: BatchProgress) -> None:
            progress.update(task, completed=state.done, ok=state.succeeded, failed=state.failed)

        return await connector.send_batch(
            batch, concurrency=concurrency, messages_per_second=rate, on_progress=on_progress
        )


def print_batch_summary(batch: MessageBatch, result: Any, output: Console | None = None) -> None:
    out = output or console
    table = Table(title="Batch summary")
    table.add_column("outcome")
    table.add_column("messages", justify="right")
    for outcome, count in sorted(result.counts().items()):
        table.add_row(outcome, str(count))
    out.print(table)
    receivers = {m.id: m.receiver.address if m.receiver else "-" for m in batch.messages}
    failures = [(mid, r) for mid, r in result.results.items() if not r.is_success]
    for message_id, failure in failures[:20]:
        out.print(
            f"[red]failed[/] {escape(str(receivers.get(message_id)))}: "
            f"{escape(str(failure.error_code))}: {escape(str(failure.error_message))}",
            soft_wrap=True,
        )
    if len(failures) > 20:
        out.print(f"... and {len(failures) - 20} more failures")


@cli.command()
@_config_option
@_connector_option
@click.argument("message_id")
@click.pass_context
def status(ctx: click.Context, config_file: Path, connector_name: str, message_id: str) -> None:
    """Ask the provider for a message's status (by provider id, e.g. a Twilio SID).

    \b
    Example:
      messaging status --config messaging.toml --connector sms SM0123456789abcdef0123456789abcdef
    """
    connector = _connector(ctx, config_file, connector_name)

    async def run() -> None:
        await _open(connector)
        try:
            result = await connector.get_message_status(message_id)
        finally:
            await connector.shutdown()
        if not result.is_success:
            _report_failure(result)
        assert result.value is not None
        for update in result.value.status_updates:
            console.print(
                f"{escape(update.remote_message_id or update.message_id)}: [bold]{update.status.value}[/] "
                f"(raw {escape(str(update.raw_status))}) at {update.timestamp.isoformat()}",
                soft_wrap=True,
            )
            for key, value in sorted(update.additional_data.items()):
                console.print(f"  {escape(key)}: {escape(str(value))}", soft_wrap=True)

    _run(ctx, run())


# -- serving -------------------------------------------------------------------------------------------


@cli.command()
@_config_option
@click.option("--host", help="Interface (default: the config's webhooks.host, else 127.0.0.1).")
@click.option("--port", type=int, help="Port (default: the config's webhooks.port, else 8080).")
@click.option(
    "--status-store",
    "status_store_url",
    metavar="URL",
    help="Status store shared by every webhook host, e.g. postgresql://db/app?schema=messaging "
    "(default: the config's [dispatcher] status_store, else this process's memory).",
)
@click.pass_context
def serve(
    ctx: click.Context, config_file: Path, host: str | None, port: int | None, status_store_url: str | None
) -> None:
    """Run the webhook host for every connector of a configuration file (until Ctrl-C or SIGTERM).

    With a shared status store, several hosts (behind one public URL) dispatch each status
    callback once; a store on the ledger's tables (PostgreSQL) also settles sends held in doubt.

    \b
    Examples:
      messaging serve --config messaging.toml --port 8080
      messaging serve --config messaging.toml --host 0.0.0.0 --port 0   # 0: any free port
      messaging serve --config messaging.toml --status-store "postgresql://db/app?schema=messaging"
    """
    from aiohttp import web

    from messaging_core.web import create_webhook_app

    loaded = load_config(config_file)
    registry = _registry(ctx)
    connectors = registry.create_connectors(loaded)
    store = _status_store(registry, loaded, status_store_url)
    app = create_webhook_app(connectors, settings=loaded.webhooks, status_store=store)
    bind_host = host or loaded.webhooks.host
    bind_port = loaded.webhooks.port if port is None else port

    async def run() -> None:
        async with contextlib.AsyncExitStack() as stack:
            if store is not None:
                # Registered first, so closed last: after the runner has finished the requests in flight.
                stack.push_async_callback(_close_store, store)
                await _check_store(store, loaded.webhooks.request_timeout)
            for connector in connectors.values():
                stack.push_async_callback(connector.shutdown)
                result = await connector.initialize()
                if result.error is not None:
                    _fail(f"connector {connector.name!r}: {result.error.code}: {result.error.message}", 2)
            runner = web.AppRunner(app)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            try:
                await web.TCPSite(runner, bind_host, bind_port).start()
            except OSError as err:  # port in use, unknown host...
                _fail(f"cannot listen on {bind_host}:{bind_port}: {err.strerror or err}", 2)
            # The address actually bound (with --port 0, the port the system picked).
            address_host, address_port = runner.addresses[0][:2]
            base = (
                f"http://[{address_host}]:{address_port}"
                if ":" in address_host
                else f"http://{address_host}:{address_port}"
            )
            where = repr(store) if store is not None else "this process's memory (one host only)"
            console.print(f"status store: {escape(where)}", soft_wrap=True, highlight=False)
            console.print(f"webhook host listening on {base}", soft_wrap=True)
            for name in connectors:
                console.print(
                    f"connector {escape(name)}: POST {base}/webhooks/{escape(name)}/{{messages,status}}", soft_wrap=True
                )
            console.print(f"health: GET {base}/healthz (liveness), GET {base}/readyz (connectors)", soft_wrap=True)
            stopped = asyncio.Event()
            with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows' loop
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
            await stopped.wait()
        console.print("stopped")

    try:
        _run(ctx, run())
    except KeyboardInterrupt:
        console.print("stopped")


def _status_store(registry: ChannelRegistry, loaded: MessagingConfig, url: str | None) -> StatusStore | None:
    """The store ``--status-store`` names, else the ``[dispatcher]`` table's, else None (memory, one host).

    Built by the store schemes plugins register (``postgresql://`` comes with pluggable-messaging-scale),
    with the table's other keys as options.
    """
    table = dict(loaded.dispatcher or {"kind": "inprocess"})
    if url is not None:
        table["status_store"] = url
    if table.get("status_store") is None:
        return None
    try:
        return DispatcherSettings.from_mapping(table, registry.store_schemes()).create_status_store()
    except ConfigurationError as err:
        if url is None:
            raise
        _fail(f"--status-store: {str(err).removeprefix('[dispatcher]: ')}", 2)


async def _check_store(store: StatusStore, seconds: float) -> None:
    """Reach the store once before listening: an unreachable database is one clear error, not a flood of 500s."""
    try:
        async with asyncio.timeout(seconds):
            await store.get("messaging-serve-startup-check")
    except Exception as err:  # whatever the driver raises (refused, unknown database, auth): the store is unusable
        reason = f"no answer within {seconds:g} s" if isinstance(err, TimeoutError) else f"{type(err).__name__}: {err}"
        _fail(f"status store {store!r} is unreachable ({reason})", 2)


async def _close_store(store: StatusStore) -> None:
    """Close a store that has a ``close()`` (stores made from URLs own a connection pool); the protocol has none."""
    close = getattr(store, "close", None)
    if close is None:
        return
    result = close()
    if inspect.isawaitable(result):
        await result


@cli.command()
@click.argument("channel")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=0, type=int, help="0 picks a free port.")
@click.pass_context
def emulator(ctx: click.Context, channel: str, host: str, port: int) -> None:
    """Run a channel's local emulator until Ctrl-C, and print how to point a connector at it.

    \b
    Example:
      messaging emulator twilio_sms --port 8099
    """
    registrations = _registry(ctx).emulators()
    if channel not in registrations:
        _fail(f"no emulator for channel {channel!r} (emulators: {', '.join(registrations) or 'none'})")

    async def run() -> None:
        async with registrations[channel].start(host=host, port=port) as running:
            # One line each (never wrapped): scripts read the base URL and credentials from here.
            console.print(f"[bold]{escape(channel)}[/] emulator running", soft_wrap=True)
            for key, value in running.describe().items():
                console.print(f"  {escape(key)}: {escape(str(value))}", soft_wrap=True)
            parameters = json.dumps(running.connector_parameters())
            console.print("connector parameters: " + escape(parameters), soft_wrap=True, highlight=False)
            console.print("Ctrl-C to stop")
            await asyncio.Event().wait()

    try:
        _run(ctx, run())
    except KeyboardInterrupt:
        console.print("stopped")


@cli.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Configuration (default: examples/messaging.toml).",
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
    from messaging_core._demo import run_demo

    ok = _run(ctx, run_demo(_registry(ctx), config_file, console=console, bulk=bulk, wait_seconds=timeout))
    sys.exit(0 if ok else 1)


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
