"""A worker process of the limiter test: reserve, sleep, stamp; the stamps go to a JSON file.

Run as ``python limiter_worker.py CONFIG_JSON OUTPUT_PATH`` (not a test module: pytest does not
collect it). It waits until the wall-clock ``start_at`` so that every process competes at once.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from messaging_scale import RedisGcraLimiter


async def main(config: dict[str, Any]) -> dict[str, list[float]]:
    client = aioredis.Redis.from_url(config["redis_url"])
    limiter = RedisGcraLimiter(client, rate=config["rate"], prefix=config["prefix"])
    stamps: dict[str, list[float]] = {key: [] for key in config["keys"]}

    async def send(key: str) -> None:
        for _ in range(config["sends_per_task"]):
            wait = await limiter.reserve(key)
            assert wait is not None
            await asyncio.sleep(wait)
            stamps[key].append(time.time())

    await asyncio.sleep(max(0.0, config["start_at"] - time.time()))
    await asyncio.gather(*(send(key) for key in stamps for _ in range(config["tasks_per_key"])))
    await client.aclose()
    return stamps


if __name__ == "__main__":
    result = asyncio.run(asyncio.wait_for(main(json.loads(sys.argv[1])), timeout=60))
    Path(sys.argv[2]).write_text(json.dumps(result), encoding="utf-8")
