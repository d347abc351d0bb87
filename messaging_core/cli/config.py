"""``messaging config validate``: every problem of a configuration file, with its path."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from messaging_core.cli._app import cli, console, fail, print_issue, registry_of
from messaging_core.settings import environment_sources


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
    loaded, issues = registry_of(ctx).check_config_file(file)
    if issues:
        for issue in issues:
            parts = issue.path.split(".")
            who = f"connector {parts[2]!r}, " if len(parts) > 2 and parts[1] == "connectors" else ""
            print_issue(f"{file}: {who}{issue.path}: {issue.message}")
        fail(f"{len(issues)} problem(s) in {file}")
    assert loaded is not None
    console.print(f"{escape(str(file))}: OK ({len(loaded.connectors)} connector(s))", soft_wrap=True)
    registry = registry_of(ctx)
    for name, spec in loaded.connectors.items():
        schema = registry.schema(spec.channel, spec.schema)
        for parameter, variable in environment_sources(schema, spec.settings()).items():
            console.print(
                f"connector {escape(name)!r}: {escape(parameter)} from environment variable {escape(variable)}",
                soft_wrap=True,
            )
