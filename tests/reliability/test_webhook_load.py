"""The webhook host under a bounded load from another process: 0 errors, each webhook dispatched once.

20,000 signed inbound webhooks at concurrency 100; the host and the load generator each run in
their own process (``benchmarks/webhook_host.py``, ``benchmarks/webhooks.py``). Memory must stay
stable (RSS growth reported and bounded).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 20_000


def test_webhook_host_takes_20000_signed_webhooks_without_error() -> None:
    host = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.webhook_host"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert host.stdout is not None
        line = host.stdout.readline()
        assert line.startswith("PORT "), line
        port = int(line.split()[1])
        load = subprocess.run(
            [
                sys.executable,
                "-c",
                "import asyncio, json; from benchmarks.webhooks import host_load; "
                f"print(json.dumps(asyncio.run(host_load({port}, {REQUESTS}, 100))))",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    finally:
        host.terminate()
        host.wait(timeout=30)
    report = json.loads(load.stdout.strip().splitlines()[-1])
    print(f"webhook load: {report}")
    assert report["errors"] == 0
    assert report["dispatched_distinct"] == REQUESTS
    assert report["max_dispatch_per_message"] == 1
    growth_mib = (report["rss_after_kib"] - report["rss_before_kib"]) / 1024
    # The dedup table keeps up to 100,000 keys by design (~tens of MB at most); far from unbounded.
    assert growth_mib < 60, f"RSS grew {growth_mib:.1f} MiB over {REQUESTS} webhooks"
