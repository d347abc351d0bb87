"""A minimal Twilio-like HTTP server for benchmarks, run in its own process.

It answers every request with a 201 and a realistic Message JSON (a fresh SID each time), as fast
as one core allows: a bare ``asyncio.Protocol`` parsing only what HTTP/1.1 keep-alive needs. With
``--latency`` it holds each answer that long (the latency-bound bulk benchmark). With ``--signed``
nothing changes here: webhook benchmarks use the webhook host, not this server.

Prints ``PORT <n>`` on stdout once listening; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import signal

_CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")
_ACCOUNT = "AC" + "b" * 32

_TEMPLATE = json.dumps(
    {
        "account_sid": _ACCOUNT,
        "api_version": "2010-04-01",
        "body": "Benchmark message",
        "date_created": "Thu, 26 Nov 2026 18:00:00 +0000",
        "date_sent": None,
        "date_updated": "Thu, 26 Nov 2026 18:00:00 +0000",
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": "+15005550006",
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": "SID_PLACEHOLDER",
        "status": "queued",
        "subresource_uris": {"media": f"/2010-04-01/Accounts/{_ACCOUNT}/Messages/SID_PLACEHOLDER/Media.json"},
        "to": "+15551230000",
        "uri": f"/2010-04-01/Accounts/{_ACCOUNT}/Messages/SID_PLACEHOLDER.json",
        "tags": None,
    }
).replace("SID_PLACEHOLDER", "%s")
_HEAD = (
    b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nConnection: keep-alive\r\nContent-Length: %d\r\n\r\n"
)


class _Protocol(asyncio.Protocol):
    counter = itertools.count()

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            match = _CONTENT_LENGTH.search(self.buffer, 0, end + 2)
            total = end + 4 + (int(match.group(1)) if match else 0)
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            self._answer()

    def _answer(self) -> None:
        body = (_TEMPLATE % ((f"SM{next(self.counter):032x}",) * 3)).encode()
        response = _HEAD % len(body) + body
        assert self.transport is not None
        if self.latency:
            asyncio.get_running_loop().call_later(self.latency, self._write, response)
        else:
            self.transport.write(response)

    def _write(self, response: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response)


async def serve(port: int, latency: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Protocol(latency), "127.0.0.1", port, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.latency))


if __name__ == "__main__":
    main()
