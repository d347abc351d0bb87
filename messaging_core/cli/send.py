"""``messaging send``, ``send-batch`` and ``status``: one message, many, and what became of one."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from messaging_core.campaigns.protocols import LedgerProviderIds
from messaging_core.cli._app import (
    cli,
    config_option,
    connector_from_config,
    connector_option,
    console,
    fail,
    message_properties,
    open_connector,
    print_issue,
    registry_of,
    report_failure,
    run_async,
)
from messaging_core.config import load_config
from messaging_core.connector import BatchProgress, ChannelConnector
from messaging_core.message import Endpoint, EndpointType, MessageBatch, MessageBuilder
from messaging_core.schema import Capability, ChannelSchema, EndpointSpec


@cli.command()
@config_option
@connector_option
@click.option(
    "--to",
    "to",
    required=True,
    help="Receiver: TYPE:ADDRESS (user_id:alice, email:a@b.c, phone:+1555...), or a plain address "
    "(+… phone, …@… e-mail, http(s)://… URL, else the channel's one endpoint type).",
)
@click.option("--from", "from_", help="Sender, written as --to is.")
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
    connector = connector_from_config(ctx, config_file, connector_name)
    builder = MessageBuilder().with_receiver(endpoint_of(to, connector.schema, "--to"))
    if from_:
        builder.with_sender(endpoint_of(from_, connector.schema, "--from"))
    if text:
        builder.with_text_content(text)
    for url in media:
        builder.with_media_content(url)
    if not text and not media:
        fail("give --text and/or --media")
    message = builder.with_properties(message_properties(properties)).build()

    if dry_run:  # settings resolved and checked, the request shown; no initialize(), no I/O
        resolved = connector.resolve_settings()
        if not resolved.is_success:
            assert resolved.error is not None
            fail(f"{resolved.error.code}: {resolved.error.message}", 2)
        issues = connector.validate_message(message)
        if issues:
            for issue in issues:
                print_issue(f"  {issue.path}: {issue.message}")
            fail(f"MESSAGE_VALIDATION_FAILED: {len(issues)} problem(s); nothing sent", 1)
        click.echo(json.dumps(connector.preview_message(message), indent=2, default=str))
        console.print("[green]valid[/] (dry run: nothing sent)")
        return

    async def run() -> None:
        await open_connector(connector)
        try:
            result = await connector.send_message(message)
            if not result.is_success:
                report_failure(result)
            assert result.value is not None
            console.print(
                f"[green]sent[/] {escape(str(result.value.remote_message_id))} status={result.value.status.value} "
                f"id={escape(result.value.message_id)}",
                soft_wrap=True,
            )
        finally:
            await connector.shutdown()

    run_async(ctx, run())


@cli.command("send-batch")
@config_option
@connector_option
@click.option(
    "--to-file", required=True, type=click.File("r"), help="One receiver per line, written as --to is ('-' for stdin)."
)
@click.option("--from", "from_", help="Sender, written as --to is.")
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
        fail("--to-file has no receivers")
    connector = connector_from_config(ctx, config_file, connector_name)
    if Capability.BULK_MESSAGING not in connector.schema.capabilities:
        fail(f"connector {connector_name!r} ({connector.schema.display_name}) does not support bulk messaging")
    messages = []
    for number in numbers:
        builder = (
            MessageBuilder().with_receiver(endpoint_of(number, connector.schema, "--to-file")).with_text_content(text)
        )
        if from_:
            builder.with_sender(endpoint_of(from_, connector.schema, "--from"))
        messages.append(builder.build())
    batch = MessageBatch(messages)

    async def run() -> None:
        await open_connector(connector)
        try:
            result = await send_with_progress(connector, batch, concurrency=concurrency, rate=rate)
        finally:
            await connector.shutdown()
        print_batch_summary(batch, result)
        if result.failed:
            sys.exit(1)

    run_async(ctx, run())


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
@config_option
@connector_option
@click.argument("message_id")
@click.pass_context
def status(ctx: click.Context, config_file: Path, connector_name: str, message_id: str) -> None:
    """Ask the provider for a message's status, by provider id (a Twilio SID) or by our id.

    Our id is looked up in the configuration's ledger ([dispatcher] ledger) when it names one, so a
    campaign's message is found from any process.

    \b
    Example:
      messaging status --config messaging.toml --connector sms SM0123456789abcdef0123456789abcdef
    """
    connector = connector_from_config(ctx, config_file, connector_name)
    ledger = registry_of(ctx).create_ledger(load_config(config_file, only=[connector_name]))
    if ledger is not None:
        connector.provider_ids = LedgerProviderIds(ledger)

    async def run() -> None:
        await open_connector(connector)
        try:
            result = await connector.get_message_status(message_id)
        finally:
            await connector.shutdown()
            close = getattr(ledger, "close", None)
            if close is not None:
                await close()
        if not result.is_success:
            report_failure(result)
        assert result.value is not None
        for update in result.value.status_updates:
            console.print(
                f"{escape(update.remote_message_id or update.message_id)}: [bold]{update.status.value}[/] "
                f"(raw {escape(str(update.raw_status))}) at {update.timestamp.isoformat()}",
                soft_wrap=True,
            )
            for key, value in sorted(update.additional_data.items()):
                console.print(f"  {escape(key)}: {escape(str(value))}", soft_wrap=True)

    run_async(ctx, run())


def endpoint_of(text: str, schema: ChannelSchema, option: str) -> Endpoint:
    """An address from the command line: ``type:address`` (``user_id:alice``), or a plain one inferred.

    A plain ``+…`` is a phone number, ``…@…`` an e-mail address, ``http(s)://…`` a URL; anything
    else takes the one endpoint type of the channel's schema that can be used there (``--from``:
    any that sends; otherwise not a sender-only one) and whose address rules it meets, or the one
    such type there is (``any`` when that does not settle it: validation then names the types).
    """
    kind, colon, address = text.partition(":")
    if colon and kind in set(EndpointType) and not address.startswith("//"):
        return Endpoint(EndpointType(kind), address)
    if text.startswith("+"):
        return Endpoint(EndpointType.PHONE, text)
    if "@" in text:
        return Endpoint(EndpointType.EMAIL, text)
    if text.startswith(("http://", "https://")):
        return Endpoint(EndpointType.URL, text)
    if not schema.endpoints:
        fail(f"{option} {text!r}: the channel declares no endpoint type; write it as TYPE:ADDRESS")
    usable = [spec for spec in schema.endpoints if option == "--from" or not spec.sender_only]
    fitting = [spec for spec in usable if spec.can_send and _fits(text, spec)]
    if len(fitting) == 1:
        return Endpoint(fitting[0].type, text)
    types = {spec.type for spec in usable}
    if len(types) == 1:
        return Endpoint(types.pop(), text)
    return Endpoint(EndpointType.ANY, text)


def _fits(address: str, spec: EndpointSpec) -> bool:
    """Whether ``address`` meets the address rules of ``spec`` (pattern, rules, length)."""
    if spec.max_length is not None and len(address) > spec.max_length:
        return False
    patterns = [spec.address_pattern] if spec.address_pattern else []
    return all(re.search(p, address) for p in [*patterns, *(rule for rule, _ in spec.address_rules)])
