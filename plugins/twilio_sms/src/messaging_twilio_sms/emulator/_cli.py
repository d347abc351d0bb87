"""Command line: serve the emulator standalone until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import Sequence

_FAULT_SPEC = re.compile(r"(?P<name>[^:@]+)(?::(?P<count>\d+))?(?:@(?P<to>.+))?")


def _fault_spec(text: str) -> tuple[str, int, str | None]:
    """Read `--fault NAME[:COUNT][@TO]` as the arguments of `TwilioEmulator.inject`."""
    match = _FAULT_SPEC.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME[:COUNT][@TO]")
    return match["name"], int(match["count"] or 1), match["to"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m messaging_twilio_sms.emulator",
        description="Serve a local emulator of Twilio's Messages API (2010-04-01) until Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--account-sid", help="account SID (AC + 32 hex); random by default")
    parser.add_argument("--auth-token", help="auth token (32 hex); random by default")
    parser.add_argument(
        "--status-interval",
        type=float,
        default=0.05,
        help="seconds between message status changes (default: %(default)s)",
    )
    parser.add_argument("--sms-url", help="incoming-message webhook URL for simulated inbound messages")
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to every API answer (default: %(default)s)"
    )
    parser.add_argument(
        "--list-lag",
        type=float,
        default=0.0,
        help="seconds before a new message shows in the Messages list; fetch finds it at once (default: %(default)s)",
    )
    parser.add_argument(
        "--fault-delay",
        type=float,
        default=30.0,
        help="seconds a timeout fault holds a create request (default: %(default)s)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        type=_fault_spec,
        metavar="NAME[:COUNT][@TO]",
        help="queue a fault for the next COUNT (1) creates, to TO only if given; repeatable, applied in order",
    )
    parser.add_argument("--fast", action="store_true", help="benchmark mode: no status lifecycle, no callbacks")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    from ._server import TwilioEmulator  # the server pulls in aiohttp; keep --help instant

    emulator = TwilioEmulator(
        host=args.host,
        port=args.port,
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        status_interval=args.status_interval,
        sms_url=args.sms_url,
        latency=args.latency,
        list_lag=args.list_lag,
        fault_delay=args.fault_delay,
        fast=args.fast,
    )
    for name, count, to in args.fault:
        emulator.inject(name, count=count, match_to=to)
    async with emulator:
        # Printing the token is the point here: it is a throw-away credential for a local emulator.
        print(f"Twilio emulator listening on {emulator.base_url}")
        print(f"  TWILIO_ACCOUNT_SID={emulator.account_sid}")
        print(f"  TWILIO_AUTH_TOKEN={emulator.auth_token}")
        print("Press Ctrl-C to stop.", flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator from the command line; returns the process exit status."""
    args = _parser().parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        print("stopped")
    except ValueError as err:  # bad --account-sid and the like
        print(f"error: {err}")
        return 2
    return 0
