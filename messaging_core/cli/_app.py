"""The ``messaging`` group and what every command group shares: one-line errors, the registry, options."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from messaging_core.config import config_error, load_config
from messaging_core.connector import ChannelConnector
from messaging_core.errors import MessagingError
from messaging_core.registry import ChannelRegistry
from messaging_core.results import ConnectorResult

T = TypeVar("T")

console = Console()
# Errors and warnings are lines meant for people and for grep: never wrapped at the terminal width.
err_console = Console(stderr=True, soft_wrap=True)


class _State:
    def __init__(self, debug: bool, registry: ChannelRegistry | None = None) -> None:
        self.debug = debug
        self._registry = registry
        self._warned = 0

    @property
    def registry(self) -> ChannelRegistry:
        """The installed plugins' registry, discovered once; each plugin problem is printed once, as a warning."""
        if self._registry is None:
            self._registry = ChannelRegistry.discover()
        self.warn_about_plugins()
        return self._registry

    def warn_about_plugins(self) -> None:
        """Print the plugin problems not printed yet (one line each); commands that do not need them go on."""
        assert self._registry is not None
        failures = self._registry.load_errors
        for failure in failures[self._warned :]:
            err_console.print(f"[yellow]warning:[/] {escape(str(failure))}", highlight=False)
        self._warned = len(failures)


def fail(message: str, code: int = 1) -> NoReturn:
    # Messages carry user input (addresses, file names, provider texts): never read them as markup.
    err_console.print(f"[red]error:[/] {escape(message)}", highlight=False)
    sys.exit(code)


def print_issue(text: str) -> None:
    err_console.print(escape(text), highlight=False)


def run_async(ctx: click.Context, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; a MessagingError becomes one line (a traceback with --debug)."""
    try:
        return asyncio.run(coroutine)
    except MessagingError as err:
        if ctx.find_object(_State) and ctx.find_object(_State).debug:  # type: ignore[union-attr]
            raise
        fail(str(err), 2)


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
                fail(str(err), 2)
            if isinstance(err, OSError):  # a file, a port, a host: the user's environment
                fail(f"{err.strerror or err}" + (f": {err.filename}" if err.filename else ""), 2)
            fail(f"unexpected {type(err).__name__}: {err} (run with --debug for the traceback)", 3)


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
    state = ctx.find_object(_State)
    if state is None:
        ctx.obj = _State(debug)
    else:
        state.debug = debug


def registry_of(ctx: click.Context) -> ChannelRegistry:
    state = ctx.find_object(_State)
    assert state is not None
    return state.registry


def connector_from_config(ctx: click.Context, config_file: Path, name: str) -> ChannelConnector:
    """The one connector ``name`` of a configuration file (the others need not be usable)."""
    loaded = load_config(config_file, only=[name])
    spec = loaded.connectors.get(name)
    if spec is None:
        fail(f"{config_file}: no connector {name!r} (connectors: {', '.join(loaded.connectors)})")
    if not spec.enabled:
        fail(f"{config_file}: connector {name!r} is disabled (enabled = false)")
    registry = registry_of(ctx)
    issues = registry.spec_issues(spec, root=f"$.connectors.{name}")
    if issues:
        raise config_error(loaded, issues)
    return registry.create_connector(spec)


def message_properties(pairs: tuple[str, ...]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            fail(f"--property {pair!r}: expected NAME=VALUE")
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


async def open_connector(connector: ChannelConnector) -> None:
    result = await connector.initialize()
    if not result.is_success:
        assert result.error is not None
        await connector.shutdown()
        fail(f"{result.error.code}: {result.error.message}", 2)


def report_failure(result: ConnectorResult[Any]) -> NoReturn:
    assert result.error is not None
    for issue in result.error.issues:
        print_issue(f"  {issue.path}: {issue.message}")
    fail(f"{result.error.code}: {result.error.message}", 1)


config_option = click.option(
    "--config",
    "config_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Configuration file.",
)
connector_option = click.option("--connector", "connector_name", required=True, help="Connector name in the config.")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: the plugins are discovered once, their commands added, then the command runs.

    A plugin that fails is reported once (a warning naming it) and left out; with
    ``MESSAGING_STRICT_PLUGINS=1`` any plugin problem is an error instead.
    """
    # Discovery runs before logging is set up, so Python's last-resort handler would print each
    # load failure's log record beside the CLI's own warning line: collect them quietly here (the
    # registry keeps them in load_errors, and the CLI reports each once).
    quiet = logging.NullHandler()
    plugins_log = logging.getLogger("messaging_core.plugins")
    plugins_log.addHandler(quiet)
    try:
        registry = ChannelRegistry.discover()
    except MessagingError as err:  # strict mode: a plugin problem is an error
        fail(str(err), 2)
    finally:
        plugins_log.removeHandler(quiet)
    registry.host.register_commands(cli)
    cli.main(args=argv, prog_name="messaging", obj=_State(False, registry))
