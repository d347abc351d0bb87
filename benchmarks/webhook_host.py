"""The webhook host in its own process for load tests: ``python -m benchmarks.webhook_host``.

Serves a Twilio connector's webhooks (signatures checked) with an observer that counts
dispatches per MessageSid; ``GET /bench/counts`` reports them (and RSS). Prints ``PORT n``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections import Counter

from aiohttp import web

from benchmarks._common import ACCOUNT_SID, AUTH_TOKEN, rss_kib
from messaging_core import ChannelRegistry, Message, WebhookSettings, hookimpl
from messaging_core.webhooks import create_webhook_app


class CountingObserver:
    def __init__(self) -> None:
        self.dispatched: Counter[str] = Counter()

    @hookimpl
    def message_received(self, message: Message) -> None:
        self.dispatched[message.id] += 1


async def serve(port: int) -> None:
    observer = CountingObserver()
    registry = ChannelRegistry.discover()
    registry.host.register(observer)
    sms = registry.create_connector(
        {
            "channel": "twilio_sms",
            "schema": "TwilioSms",
            "parameters": {"AccountSid": ACCOUNT_SID, "AuthToken": AUTH_TOKEN, "ApiBaseUrl": "http://127.0.0.1:9"},
        },
        name="sms",
    )
    await sms.initialize()
    app = create_webhook_app({"sms": sms}, settings=WebhookSettings(public_url="http://bench.example.com"))

    async def counts(_: web.Request) -> web.Response:
        values = observer.dispatched.values()
        return web.json_response(
            {
                "distinct": len(observer.dispatched),
                "total": sum(values),
                "max_per_message": max(values, default=0),
                "rss_kib": rss_kib(),
            }
        )

    app.router.add_get("/bench/counts", counts)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"PORT {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await sms.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
