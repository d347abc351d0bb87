"""``messaging emulator CHANNEL``: a channel's local emulator, for offline work."""

from __future__ import annotations

import asyncio
import json

import click
from rich.markup import escape

from messaging_core.cli._app import cli, console, fail, registry_of, run_async


@cli.command()
@click.argument("channel")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=0, type=int, help="0 picks a free port.")
@click.pass_context
def emulator(ctx: click.Context, channel: str, host: str, port: int) -> None:
    """Run a channel's local emulator until Ctrl-C, and print how to point a connector at it.

    CHANNEL is a channel's name or one of its aliases (``messaging channels`` lists both).

    \b
    Example:
      messaging emulator twilio_sms --port 8099
    """
    registry = registry_of(ctx)
    registrations = registry.emulators()
    channel = registry.channel_name(channel)
    if channel not in registrations:
        fail(f"no emulator for channel {channel!r} (emulators: {', '.join(registrations) or 'none'})")

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
        run_async(ctx, run())
    except KeyboardInterrupt:
        console.print("stopped")
