"""``messaging channels`` and ``messaging schema show|export``: what the installed plugins offer."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from messaging_core import converters
from messaging_core.cli._app import cli, console, registry_of


@cli.command()
@click.pass_context
def channels(ctx: click.Context) -> None:
    """List installed channels, their aliases, schema variants and capabilities.

    \b
    Example:
      messaging channels
    """
    registry = registry_of(ctx)
    table = Table(title="Channels")
    table.add_column("channel", style="bold")
    table.add_column("aliases")
    table.add_column("plugin")
    table.add_column("variant")
    table.add_column("capabilities")
    for info in registry.channels():
        for index, (variant, schema) in enumerate(info.variants.items()):
            table.add_row(
                escape(info.name) if index == 0 else "",
                escape(", ".join(info.aliases)) if index == 0 else "",
                escape(info.plugin) if index == 0 else "",
                escape(variant),
                ", ".join(c.lower() for c in schema.capabilities.names()),
            )
    console.print(table)


@cli.command()
@click.pass_context
def plugins(ctx: click.Context) -> None:
    """List every plugin: where it comes from, the hooks it implements, its channels, its problems.

    \b
    Example:
      messaging plugins
    """
    registry = registry_of(ctx)
    table = Table(title="Plugins")
    for column in ("plugin", "distribution", "hooks", "channels", "problems"):
        table.add_column(column)
    for info in registry.plugins():
        origin = f"{info.distribution} {info.version or ''}".strip() if info.distribution else "built in"
        table.add_row(
            escape(info.name),
            escape(origin),
            escape(", ".join(info.hooks)),
            escape(", ".join(info.channels)),
            "[red]" + escape("; ".join(info.problems)) + "[/]" if info.problems else "",
        )
    console.print(table)


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
    found = registry_of(ctx).schema(channel, variant)
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
            if spec.repeated and spec.single_allowed:
                kind = f"{spec.data_type.value} | {kind}"
            table.add_row(
                escape(spec.name + sensitive),
                kind,
                "yes" if spec.required else "",
                "" if spec.default is None else escape(str(spec.default)),
                escape(constraints),
                escape(spec.description),
            )
        console.print(table)


@schema.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def schema_export(ctx: click.Context, directory: Path) -> None:
    """Regenerate the JSON Schema exports (the repository's schemas/ folder).

    \b
    Example:
      messaging schema export schemas/
    """
    written = registry_of(ctx).export_schemas(directory)
    console.print(f"wrote {len(written)} files to {escape(str(directory))}", soft_wrap=True)
