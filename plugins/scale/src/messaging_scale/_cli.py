"""Commands the plugin adds to ``messaging`` (``register_commands``): ``worker`` and ``campaign …``.

Thin, like the core's commands: each reads the configuration file's ``[dispatcher]`` table
(``kind = "taskiq"``) and calls the public API (``TaskiqDispatcher``, ``TaskiqCampaign``,
``PostgresLedger``). Everything a campaign command shows comes from the ledger, so they work
from any machine that reaches the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from messaging_core.campaigns import CampaignProgress, LedgerEntry, SendState, Submission
from messaging_core.config import MessagingConfig, load_config
from messaging_core.connector import ChannelConnector
from messaging_core.errors import ConfigurationError
from messaging_core.message import Message, MessageBuilder
from messaging_core.registry import ChannelRegistry
from messaging_core.schema import Capability
from messaging_scale._brokers import broker_from_settings
from messaging_scale._campaign import TaskiqCampaign
from messaging_scale._chunks import ChunkKicker
from messaging_scale._dispatcher import TaskiqDispatcher
from messaging_scale._ledger import PostgresLedger
from messaging_scale._problems import service_problem
from messaging_scale._settings import TaskiqSettings
from messaging_scale.worker import CONFIG_ENV, preflight, taskiq_settings

__all__ = ["campaign", "message_id_for", "worker"]

T = TypeVar("T")

console = Console()

_config_option = click.option(
    "--config",
    "config_file",
    required=True,
    envvar="MESSAGING_CONFIG",
    type=click.Path(dir_okay=False, path_type=Path),
    help='Configuration file with a [dispatcher] kind = "taskiq" table (or $MESSAGING_CONFIG).',
)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; a service that cannot be reached or refuses is one line, not a traceback."""
    try:
        return asyncio.run(coroutine)
    except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, ConfigurationError):
        raise
    except Exception as err:
        problem = service_problem(err)
        if problem is None:
            raise
        raise click.ClickException(problem) from err


def _settings(config_file: Path) -> tuple[MessagingConfig, ChannelRegistry, TaskiqSettings]:
    config = load_config(config_file)
    registry = ChannelRegistry.discover()
    _, settings = taskiq_settings(config, registry)
    return config, registry, settings


class _Campaigns:
    """The ledger and a chunk publisher for one command, closed at the end."""

    def __init__(self, settings: TaskiqSettings) -> None:
        self.settings = settings
        self.ledger = PostgresLedger.from_url(settings.ledger)
        broker = broker_from_settings(settings)
        self.kicker = ChunkKicker(broker, chunk_size=settings.chunk_size)

    def handle(self, campaign_id: str) -> TaskiqCampaign:
        return TaskiqCampaign(
            campaign_id,
            ledger=self.ledger,
            kicker=self.kicker,
            in_doubt=self.settings.in_doubt,
            poll_interval=self.settings.poll_interval,
            settle_time=self.settings.settle_time(),
        )

    async def close(self) -> None:
        await self.kicker.close()
        await self.ledger.close()


@contextlib.asynccontextmanager
async def _campaigns(settings: TaskiqSettings) -> AsyncIterator[_Campaigns]:
    campaigns = _Campaigns(settings)
    try:
        yield campaigns
    finally:
        await campaigns.close()


async def _require_known(handle: TaskiqCampaign) -> None:
    """The campaign is in the ledger: registered, or with messages (added by another dispatcher kind)."""
    if await handle.info() is None and not (await handle.progress()).total:
        raise click.ClickException(f"no campaign {handle.campaign_id!r} in the ledger")


async def _require_submitted(handle: TaskiqCampaign) -> None:
    """Pause and resume need a campaign the taskiq dispatcher registered (its flags live there)."""
    if await handle.info() is None:
        raise click.ClickException(f"no campaign {handle.campaign_id!r} was submitted through the taskiq dispatcher")


def message_id_for(campaign_id: str, sender: str | None, receiver: str, text: str) -> str:
    """The id of a message a command line campaign builds: the same inputs give the same id.

    So submitting the same file again with the same ``--campaign-id`` sends nothing twice (the
    ledger keeps the first of two equal ids: a number listed twice gets one message).
    """
    digest = hashlib.sha256("\n".join((campaign_id, sender or "", receiver, text)).encode()).hexdigest()
    return f"{campaign_id}-{digest[:20]}"


# -- worker ----------------------------------------------------------------------------------------------


@click.command()
@_config_option
@click.option("-w", "--workers", default=2, show_default=True, type=click.IntRange(1, 256), help="Worker processes.")
@click.option(
    "--max-async-tasks",
    default=100,
    show_default=True,
    type=click.IntRange(1),
    help="Chunks one process runs at once (the table's qos and concurrency bound the sends).",
)
@click.option("--shutdown-timeout", default=30.0, show_default=True, help="Seconds to finish on SIGTERM.")
@click.option(
    "--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default="INFO", show_default=True
)
@click.option(
    "--no-checks",
    is_flag=True,
    help="Start without first connecting to the ledger, limiter, broker and connectors.",
)
def worker(
    config_file: Path, workers: int, max_async_tasks: int, shutdown_timeout: float, log_level: str, no_checks: bool
) -> None:
    """Run worker processes that send the campaigns of the [dispatcher] queue (until SIGTERM or Ctrl-C).

    This is Taskiq's own worker: a process manager starts WORKERS processes and restarts any
    that dies; each runs chunks of message ids through the send pipeline with the ledger,
    limiter and connectors named in the file. Run it on as many machines as you like.

    \b
    Examples:
      messaging worker --config messaging.toml --workers 4
      MESSAGING_WORKER_CONFIG=messaging.toml taskiq worker messaging_scale.worker:broker_from_environment -w 4
    """
    from taskiq.acks import AcknowledgeType
    from taskiq.cli.common_args import LogLevel
    from taskiq.cli.worker.args import WorkerArgs
    from taskiq.cli.worker.run import run_worker

    config, registry, _ = _settings(config_file)  # every configuration problem now, not once per worker
    if not no_checks:
        # Every service and connector once, here: a wrong password is one error, not a fleet of
        # workers failing chunk after chunk.
        problems = _run(preflight(config, registry))
        if problems:
            lines = "\n".join(f"  - {problem}" for problem in problems)
            raise click.ClickException(f"the workers cannot start:\n{lines}")
    os.environ[CONFIG_ENV] = str(config_file.resolve())
    # The command line configured logging already (WARNING unless -v): the worker's level wins.
    logging.getLogger().setLevel(log_level)
    args = WorkerArgs(
        broker="messaging_scale.worker:broker_from_environment",
        modules=[],
        workers=workers,
        max_async_tasks=max_async_tasks,
        shutdown_timeout=shutdown_timeout,
        log_level=LogLevel[log_level],
        ack_type=AcknowledgeType.WHEN_EXECUTED,
    )
    status = run_worker(args)
    sys.exit(0 if not status else 1)


# -- campaigns -------------------------------------------------------------------------------------------


@click.group()
def campaign() -> None:
    """Submit and follow campaigns sent by workers ([dispatcher] kind = "taskiq").

    \b
    Examples:
      messaging campaign submit --config messaging.toml --connector bulk --to-file numbers.txt --text "Sale"
      messaging campaign progress --config messaging.toml spring-sale
      messaging campaign results --config messaging.toml spring-sale --json
      messaging campaign reconcile --config messaging.toml
    """


@campaign.command("submit")
@_config_option
@click.option("--connector", "connector_name", required=True, help="Connector name in the config (workers use it).")
@click.option("--to-file", required=True, type=click.File("r"), help="One receiver per line ('-' for stdin).")
@click.option("--text", required=True, help="Message text.")
@click.option("--from", "senders", multiple=True, help="Sender address; repeat it to spread receivers over senders.")
@click.option("--campaign-id", help="Campaign id (default: a new one). Submitting again with it resumes the campaign.")
@click.option("--follow", is_flag=True, help="Show the progress bar until the campaign is settled.")
@click.option(
    "--fail-on-existing",
    is_flag=True,
    help="Submit nothing (exit 1) when any message id is already in the ledger (this campaign run before, or another).",
)
def submit(
    config_file: Path,
    connector_name: str,
    to_file: Any,
    text: str,
    senders: tuple[str, ...],
    campaign_id: str | None,
    follow: bool,
    fail_on_existing: bool,
) -> None:
    """Load a campaign into the ledger and queue it for the workers; prints the campaign id.

    Message ids are derived from the campaign id, sender, receiver and text, so running the
    same command again with the same --campaign-id sends nothing twice. It prints how many ids
    were new and how many the ledger already held (by campaign); --fail-on-existing refuses the
    whole submission instead.
    """
    config, registry, _ = _settings(config_file)
    connector = _connector(config, registry, connector_name)
    campaign_id = campaign_id or f"c-{os.urandom(6).hex()}"
    lines = _rereadable(to_file)

    def messages() -> Iterator[tuple[int, str, Message]]:
        """``(line number, receiver, message)`` for every receiver of the file, read as it goes."""
        lines.seek(0)
        index = 0
        for number, line in enumerate(lines, start=1):
            receiver = line.strip()
            if not receiver or receiver.startswith("#"):
                continue
            sender = senders[index % len(senders)] if senders else None
            index += 1
            builder = MessageBuilder().with_phone_receiver(receiver).with_text_content(text)
            if sender:
                builder.with_phone_sender(sender)
            builder.with_id(message_id_for(campaign_id, sender, receiver, text))
            yield number, receiver, builder.build()

    # First pass: every message is checked against the connector before anything is loaded, so a
    # bad line sends nothing; the file is read again to submit (memory stays flat for any size).
    count, problems = 0, []
    for number, receiver, message in messages():
        count += 1
        issues = connector.validate_message(message)
        if issues:
            problems.append(f"line {number} ({receiver}): {issues[0]}")
    if not count:
        raise click.ClickException("--to-file has no receivers")
    if problems:
        shown = "\n".join(f"  - {problem}" for problem in problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise click.ClickException(f"{len(problems)} invalid message(s), nothing submitted:\n{shown}{more}")

    async def run() -> None:
        try:
            result = await connector.initialize()
            if result.error is not None:
                raise click.ClickException(f"connector {connector_name!r}: {result.error.code}: {result.error.message}")
            dispatcher = registry.create_dispatcher(config, connector)
        except BaseException:
            await connector.shutdown()
            raise
        assert isinstance(dispatcher, TaskiqDispatcher)
        try:
            if fail_on_existing:
                await _refuse_existing(dispatcher.ledger, (message.id for _, _, message in messages()))
            handle = await dispatcher.submit((message for _, _, message in messages()), campaign_id=campaign_id)
            progress = await handle.progress()
            assert handle.submission is not None
            console.print(
                f"campaign {escape(campaign_id)}: {count} message(s) submitted: {escape(handle.submission.describe())}",
                soft_wrap=True,
                highlight=False,
            )
            console.print(f"  {_counts(progress)}", soft_wrap=True, highlight=False)
            click.echo(campaign_id)
            if follow and _failed(await _follow(handle)):
                raise click.exceptions.Exit(1)
        finally:
            await dispatcher.close()
            await connector.shutdown()

    _run(run())


async def _refuse_existing(ledger: PostgresLedger, ids: Iterable[str], batch: int = 10_000) -> None:
    """Raise (nothing submitted) when the ledger already holds any of ``ids``; the ids are read once, in batches.

    A check before the submission: ids another submitter adds meanwhile are counted by the
    submission's own report, not refused.
    """
    held = Submission()
    iterator = iter(ids)
    while chunk := list(itertools.islice(iterator, batch)):
        held = held.plus(Submission(0, await ledger.campaigns_of(chunk)))
    if held.existing_total:
        campaigns = ", ".join(f"{escape(c)}: {n}" for c, n in sorted(held.existing.items()))
        raise click.ClickException(
            f"{held.existing_total} message id(s) already in the ledger (campaign {campaigns}); "
            "nothing submitted (--fail-on-existing)"
        )


def _rereadable(file: Any) -> Any:
    """``file`` if it can be read twice, else a temporary copy (stdin), read line by line."""
    if file.seekable():
        return file
    spool = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed by click's context
    copy = click.get_current_context().with_resource(spool)
    shutil.copyfileobj(file, copy)
    return copy


def _connector(config: MessagingConfig, registry: ChannelRegistry, name: str) -> ChannelConnector:
    spec = config.connectors.get(name)
    if spec is None:
        raise ConfigurationError(f"{config.where}: no connector {name!r} (connectors: {', '.join(config.connectors)})")
    if not spec.enabled:
        raise ConfigurationError(f"{config.where}: connector {name!r} is disabled (enabled = false)")
    connector = registry.create_connector(spec)
    if Capability.BULK_MESSAGING not in connector.schema.capabilities:
        raise ConfigurationError(
            f"connector {name!r} ({connector.schema.display_name}) does not support bulk messaging"
        )
    return connector


def _counts(progress: CampaignProgress) -> str:
    order = [state.value for state in SendState]
    return "  ".join(f"{state} {progress.counts.get(state, 0)}" for state in order if progress.counts.get(state))


def _failed(progress: CampaignProgress) -> bool:
    """Print why the campaign failed as a whole, if it did (the command then exits 1)."""
    if progress.failure is None:
        return False
    console.print(f"FAILED: {escape(progress.failure)} (fix it, then `messaging campaign resume`)", soft_wrap=True)
    return True


async def _follow(handle: TaskiqCampaign, *, limit: float | None = None) -> CampaignProgress:
    """A progress bar following the ledger's counters until the campaign is settled."""
    with Progress(
        TextColumn(f"[bold]{escape(handle.campaign_id)}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("campaign", total=None, counts="")
        async with asyncio.timeout(limit):
            while True:
                progress = await handle.progress()
                settled = handle.is_settled(progress)
                done = progress.done + (progress.count(SendState.UNKNOWN) if handle.in_doubt == "hold" else 0)
                bar.update(task, total=progress.total, completed=done, counts=_counts(progress))
                if settled:
                    return progress
                await asyncio.sleep(handle.poll_interval)


@campaign.command("progress")
@_config_option
@click.argument("campaign_id")
@click.option("--no-follow", is_flag=True, help="Print the counts once instead of following them.")
@click.option("--timeout", type=click.FloatRange(0), help="Stop following after this many seconds (exit code 1).")
def progress_command(config_file: Path, campaign_id: str, no_follow: bool, timeout: float | None) -> None:
    """A progress bar following the campaign's ledger counters until it is settled.

    Settled: every message final, or held in doubt (see `messaging campaign reconcile`).
    """
    _, _, settings = _settings(config_file)

    async def run() -> bool:
        async with _campaigns(settings) as campaigns:
            handle = campaigns.handle(campaign_id)
            await _require_known(handle)
            if no_follow:
                progress = await handle.progress()
                console.print(f"{escape(campaign_id)}: {progress.done}/{progress.total} done", soft_wrap=True)
                console.print(f"  {_counts(progress)}", soft_wrap=True, highlight=False)
                return not _failed(progress)
            try:
                progress = await _follow(handle, limit=timeout)
            except TimeoutError:
                return False
            console.print(f"settled: {_counts(progress)}", soft_wrap=True, highlight=False)
            return not _failed(progress)

    if not _run(run()):
        sys.exit(1)


@campaign.command("results")
@_config_option
@click.argument("campaign_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--state", "states", multiple=True, type=click.Choice([s.value for s in SendState]), help="Only these.")
def results_command(config_file: Path, campaign_id: str, as_json: bool, states: tuple[str, ...]) -> None:
    """Every message of a campaign as the ledger has it now, in submission order.

    Tab-separated columns: message id, state, provider id, error code, delivery status, attempts,
    reconciled.
    """
    _, _, settings = _settings(config_file)

    async def run() -> None:
        async with _campaigns(settings) as campaigns:
            await _require_known(campaigns.handle(campaign_id))
            if not as_json:
                click.echo("message_id\tstate\tprovider_id\terror_code\tstatus\tattempts\treconciled")
            async for entry in campaigns.ledger.results(campaign_id):
                if states and entry.state.value not in states:
                    continue
                fields = {
                    "message_id": entry.message_id,
                    "state": entry.state.value,
                    "provider_id": entry.provider_id,
                    "error_code": entry.error_code,
                    "status": entry.status.value if entry.status else None,
                    "attempts": entry.attempts,
                    "reconciled": entry.reconciled,
                }
                if as_json:
                    click.echo(json.dumps(fields))
                else:
                    click.echo("\t".join("" if value is None else str(value) for value in fields.values()))

    _run(run())


@campaign.command("cancel")
@_config_option
@click.argument("campaign_id")
def cancel_command(config_file: Path, campaign_id: str) -> None:
    """Cancel a campaign: PENDING messages become CANCELLED; sends in flight keep their outcome."""
    _, _, settings = _settings(config_file)

    async def run() -> None:
        async with _campaigns(settings) as campaigns:
            handle = campaigns.handle(campaign_id)
            await _require_known(handle)
            cancelled = await handle.cancel_and_count()
            progress = await handle.progress()
            console.print(f"{escape(campaign_id)}: {cancelled} message(s) cancelled", soft_wrap=True)
            console.print(f"  {_counts(progress)}", soft_wrap=True, highlight=False)

    _run(run())


@campaign.command("pause")
@_config_option
@click.argument("campaign_id")
def pause_command(config_file: Path, campaign_id: str) -> None:
    """Pause a campaign: workers start no new provider call for it (calls in flight finish)."""
    _, _, settings = _settings(config_file)

    async def run() -> None:
        async with _campaigns(settings) as campaigns:
            handle = campaigns.handle(campaign_id)
            await _require_submitted(handle)
            await handle.pause()
            console.print(f"{escape(campaign_id)}: paused", soft_wrap=True)

    _run(run())


@campaign.command("resume")
@_config_option
@click.argument("campaign_id")
def resume_command(config_file: Path, campaign_id: str) -> None:
    """Resume a paused campaign: its PENDING messages are queued again."""
    _, _, settings = _settings(config_file)

    async def run() -> None:
        async with _campaigns(settings) as campaigns:
            handle = campaigns.handle(campaign_id)
            await _require_submitted(handle)
            await handle.resume()
            console.print(f"{escape(campaign_id)}: resumed", soft_wrap=True)

    _run(run())


@campaign.command("reconcile")
@_config_option
@click.option("--campaign", "campaign_id", help="Only this campaign's messages.")
@click.option("--sent", nargs=2, metavar="MESSAGE_ID PROVIDER_ID", help="Settle: the provider created it (its id).")
@click.option("--absent", metavar="MESSAGE_ID", help="Settle: the provider has no such message; send it again.")
@click.option("--probe", is_flag=True, help="Ask the provider about each held message (its connector's find_sent).")
@click.option(
    "--limit", default=1000, show_default=True, type=click.IntRange(1), help="Held messages to list or probe."
)
def reconcile_command(
    config_file: Path,
    campaign_id: str | None,
    sent: tuple[str, str] | None,
    absent: str | None,
    probe: bool,
    limit: int,
) -> None:
    """List messages held in doubt (UNKNOWN), or settle them.

    A message is held when its provider call may have created it but no answer says so. It is
    never resent blindly: settle it with the provider's id (--sent), declare it absent after
    checking the provider's log (--absent: it is queued again), or let the connector's probe
    decide (--probe: exactly one matching message at the provider settles it as sent).

    \b
    Examples:
      messaging campaign reconcile --config messaging.toml
      messaging campaign reconcile --config messaging.toml --probe --campaign spring-sale
      messaging campaign reconcile --config messaging.toml --sent spring-sale-1a2b SM0123...
      messaging campaign reconcile --config messaging.toml --absent spring-sale-1a2b
    """
    if sum(bool(option) for option in (sent, absent, probe)) > 1:
        raise click.UsageError("use one of --sent, --absent and --probe")
    config, registry, settings = _settings(config_file)

    async def run() -> None:
        async with _campaigns(settings) as campaigns:
            ledger = campaigns.ledger
            if sent:
                message_id, provider_id = sent
                if not await ledger.resolve(message_id, provider_id=provider_id):
                    raise click.ClickException(f"{message_id}: not settled (unknown id, or already final)")
                console.print(f"{escape(message_id)}: accepted as {escape(provider_id)}", soft_wrap=True)
                return
            if absent:
                if not await ledger.resolve(absent, provider_id=None):
                    raise click.ClickException(f"{absent}: not settled (not in doubt, or its lease is still live)")
                await campaigns.kicker.kick([absent])
                console.print(f"{escape(absent)}: pending again, queued for sending", soft_wrap=True)
                return
            held = await ledger.held(campaign_id=campaign_id, limit=limit)
            if probe:
                await _probe(campaigns, config, registry, held)
                return
            table = Table(title=f"Held in doubt: {len(held)}")
            for column in ("message", "campaign", "attempts", "claimed at", "error"):
                table.add_column(column)
            for entry in held:
                claimed = entry.claimed_at.isoformat(timespec="seconds") if entry.claimed_at else ""
                table.add_row(
                    escape(entry.message_id),
                    escape(entry.campaign_id),
                    str(entry.attempts),
                    claimed,
                    escape(entry.error_code or ""),
                )
            console.print(table)

    _run(run())


async def _probe(
    campaigns: _Campaigns, config: MessagingConfig, registry: ChannelRegistry, held: list[LedgerEntry]
) -> None:
    ledger = campaigns.ledger
    connectors: dict[str, ChannelConnector] = {}
    settled = 0
    try:
        for entry in held:
            info = await ledger.campaign(entry.campaign_id)
            message = await ledger.load(entry.message_id)
            if info is None or message is None:
                console.print(f"{escape(entry.message_id)}: no connector known for its campaign", soft_wrap=True)
                continue
            connector = connectors.get(info.connector)
            if connector is None:
                connector = _connector(config, registry, info.connector)
                connectors[info.connector] = connector  # shut down in finally, even if it fails to start
                result = await connector.initialize()
                if result.error is not None:
                    raise click.ClickException(f"connector {info.connector!r}: {result.error.message}")
            if entry.claimed_at is None:
                console.print(f"{escape(entry.message_id)}: never claimed; nothing to reconcile", soft_wrap=True)
                continue
            since = entry.claimed_at - timedelta(seconds=60)
            found = await connector.find_sent(message, since)
            if found is None:
                verdict = "the provider cannot tell; settle it by hand"
            elif len(found) == 1:
                if await ledger.resolve(entry.message_id, provider_id=found[0]):
                    settled += 1
                verdict = f"sent as {found[0]}: accepted"
            elif not found:
                verdict = "no trace at the provider (check again later, then --absent to send it)"
            else:
                verdict = f"{len(found)} candidates ({', '.join(found)}); settle it by hand"
            console.print(f"{escape(entry.message_id)}: {escape(verdict)}", soft_wrap=True)
    finally:
        for connector in connectors.values():
            await connector.shutdown()
    console.print(f"{settled} of {len(held)} held message(s) settled", soft_wrap=True)
