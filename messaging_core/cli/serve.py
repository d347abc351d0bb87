"""``messaging serve``: the webhook host for every connector of a configuration file."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import click
from rich.markup import escape

from messaging_core.cli._app import cli, config_option, console, fail, registry_of, run_async
from messaging_core.config import load_config
from messaging_core.errors import ConfigurationError
from messaging_core.webhooks.host import WebhookHost


@cli.command()
@config_option
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
    loaded = load_config(config_file)
    registry = registry_of(ctx)
    connectors = registry.create_connectors(loaded)
    try:
        store = registry.create_status_store(loaded, status_store_url)
    except ConfigurationError as err:
        if status_store_url is None:
            raise
        fail(f"--status-store: {str(err).removeprefix('[dispatcher]: ')}", 2)

    async def serve_until_stopped() -> None:
        async with WebhookHost(
            connectors, settings=loaded.webhooks, status_store=store, host=host, port=port, metrics=loaded.metrics
        ) as served:
            base = served.base_url
            where = repr(store) if store is not None else "this process's memory (one host only)"
            console.print(f"status store: {escape(where)}", soft_wrap=True, highlight=False)
            console.print(f"webhook host listening on {base}", soft_wrap=True)
            for name, kinds in served.service.routes().items():
                # Only the routes the connector's capabilities allow (the others answer 404).
                routes = ", ".join(f"POST {base}/webhooks/{escape(name)}/{kind}" for kind in kinds)
                console.print(f"connector {escape(name)}: {routes or 'no webhooks (send only)'}", soft_wrap=True)
            console.print(f"health: GET {base}/healthz (liveness), GET {base}/readyz (connectors)", soft_wrap=True)
            if loaded.metrics.enabled:
                console.print(f"metrics: GET {base}/metrics", soft_wrap=True)
            stopped = asyncio.Event()
            with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows' loop
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
            await stopped.wait()
        console.print("stopped")

    try:
        run_async(ctx, serve_until_stopped())
    except KeyboardInterrupt:
        console.print("stopped")
