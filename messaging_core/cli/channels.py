"""``messaging channels`` and ``messaging schema show|export``: what the installed plugins offer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from messaging_core import converters
from messaging_core.cli._app import cli, console, registry_of
from messaging_core.schema import ChannelSchema, ParameterSpec, PropertySpec


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
@click.option("--markdown", is_flag=True, help="Print Markdown tables (for a plugin's documentation).")
@click.pass_context
def schema_show(ctx: click.Context, channel: str, variant: str | None, as_json: bool, markdown: bool) -> None:
    """Capabilities, limits, endpoints, parameters and properties of a channel schema.

    \b
    Examples:
      messaging schema show twilio_sms SimpleSms
      messaging schema show twilio_sms --json
      messaging schema show twilio_sms --markdown > docs/twilio-tables.md
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
    if markdown:
        click.echo(schema_markdown(found), nl=False)
        return
    console.print(f"[bold]{escape(found.display_name)}[/] ({escape(found.logical_identity)})")
    for label, value in _summary(found):
        console.print(f"{label}: {escape(value)}")
    endpoints = Table(title="Endpoints")
    for column in _ENDPOINT_COLUMNS:
        endpoints.add_column(column)
    for row in _endpoint_rows(found):
        endpoints.add_row(*map(escape, row))
    console.print(endpoints)
    for title, specs in (("Parameters", found.parameters), ("Message properties", found.properties)):
        table = Table(title=title)
        for column in _SPEC_COLUMNS:
            table.add_column(column)
        for row in _spec_rows(specs):
            table.add_row(*map(escape, row))
        console.print(table)


_SPEC_COLUMNS = ("name", "type", "required", "default", "constraints", "description")
_ENDPOINT_COLUMNS = ("type", "sends", "receives", "sender only", "address")


def _summary(found: ChannelSchema) -> list[tuple[str, str]]:
    limits = [f"text <= {found.max_text_length} characters"] if found.max_text_length is not None else []
    limits += [f"media <= {found.max_media}"] if found.max_media is not None else []
    return [
        ("capabilities", ", ".join(found.capabilities.names())),
        ("content types", ", ".join(sorted(c.value for c in found.content_types))),
        ("limits", ", ".join(limits) or "none"),
    ]


def _endpoint_rows(found: ChannelSchema) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for spec in found.endpoints:
        rules = [f"pattern {spec.address_pattern}"] if spec.address_pattern else []
        rules += [f"at most {spec.max_length} characters"] if spec.max_length is not None else []
        rules += [meaning for _, meaning in spec.address_rules]
        role = "sender (required)" if spec.required else "yes"
        rows.append(
            (
                spec.type.value,
                role if spec.can_send else "",
                "yes" if spec.can_receive else "",
                "yes" if spec.sender_only else "",
                "; ".join(rules),
            )
        )
    return rows


def _spec_rows(specs: Sequence[ParameterSpec | PropertySpec]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for spec in specs:
        constraints = ", ".join(
            f"{k}={v}"
            for k, v in (
                ("min", spec.minimum),
                ("max", spec.maximum),
                ("min length", spec.min_length),
                ("max length", spec.max_length),
                ("pattern", _pattern(spec.pattern)),
                ("allowed", list(spec.allowed_values) if spec.allowed_values is not None else None),
            )
            if v is not None
        )
        sensitive = " (secret)" if getattr(spec, "sensitive", False) else ""
        kind = spec.data_type.value + ("[]" if spec.repeated else "")
        if spec.repeated and spec.single_allowed:
            kind = f"{spec.data_type.value} | {kind}"
        default = "" if spec.default is None else str(spec.default)
        rows.append(
            (spec.name + sensitive, kind, "yes" if spec.required else "", default, constraints, spec.description)
        )
    return rows


def _pattern(pattern: str | None) -> str | None:
    """A pattern short enough to read, or where to read it (URL patterns run to hundreds of characters)."""
    if pattern is None or len(pattern) <= 60:
        return pattern
    return f"({len(pattern)} characters: see --json)"


def schema_markdown(found: ChannelSchema) -> str:
    """The schema as Markdown: a summary, then tables of endpoints, parameters and properties.

    Plugin authors paste it into their documentation (between markers a test compares with this
    output, so the tables cannot drift from the schema).
    """

    def cell(text: str, code: bool = False) -> str:
        text = text.replace("|", "\\|")
        return f"`{text}`" if code and text else text

    def table(columns: Sequence[str], rows: list[tuple[str, ...]], code: tuple[int, ...]) -> list[str]:
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for row in rows:
            lines.append("| " + " | ".join(cell(v, i in code) for i, v in enumerate(row)) + " |")
        return lines

    lines = [f"**{found.display_name}** (`{found.logical_identity}`)", ""]
    lines += [f"- {label}: {value}" for label, value in _summary(found)]
    lines += ["", "Endpoints:", "", *table(_ENDPOINT_COLUMNS, _endpoint_rows(found), (0,))]
    for title, specs in (("Connection parameters", found.parameters), ("Message properties", found.properties)):
        lines += ["", f"{title}:", "", *table(_SPEC_COLUMNS, _spec_rows(specs), (0, 1, 3, 4))]
    return "\n".join(lines) + "\n"


@schema.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--channel", "channels", multiple=True, help="Export only this channel's variants (repeatable; a name or alias)."
)
@click.pass_context
def schema_export(ctx: click.Context, directory: Path, channels: tuple[str, ...]) -> None:
    """Write the JSON Schema exports: every channel and the meta-schemas, or only the channels named.

    \b
    Examples:
      messaging schema export schemas/
      messaging schema export --channel twilio_sms out/
    """
    written = registry_of(ctx).export_schemas(directory, channels=channels)
    console.print(f"wrote {len(written)} files to {escape(str(directory))}", soft_wrap=True)
