"""RedisGcraLimiter and RedisConcurrencyLimit against a real Redis.

The accuracy test runs three worker processes against one sender key (and a second key at the
same time) and checks the send timestamps they record: no sliding 1-second window may hold more
than the rate × 1.05, and each key proceeds at its own rate regardless of the other.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from messaging_core.campaigns import RateLimiter
from messaging_scale import RedisConcurrencyLimit, RedisGcraLimiter

pytestmark = pytest.mark.services

WORKER = Path(__file__).with_name("limiter_worker.py")


def max_in_window(stamps: list[float], window: float = 1.0) -> int:
    """The most stamps in any half-open window ``[t, t + window)`` starting at a stamp."""
    ordered = sorted(stamps)
    return max(bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered))


def near(value: float | None, expected: float, tolerance: float = 0.03) -> bool:
    """A wait computed a few ms after the schedule was set is slightly below the ideal one."""
    return value is not None and expected - tolerance <= value <= expected + 0.001


def test_max_in_window() -> None:
    assert max_in_window([0.0, 0.5, 0.99, 1.0, 1.5]) == 3
    assert max_in_window([0.0]) == 1


def test_rejects_bad_settings(redis_client: Any) -> None:
    with pytest.raises(ValueError):
        RedisGcraLimiter(redis_client, rate=0)
    with pytest.raises(ValueError):
        RedisGcraLimiter(redis_client, rate=1, rates={"x": -1})
    with pytest.raises(ValueError):
        RedisGcraLimiter(redis_client, rate=1, burst=0.5)
    with pytest.raises(ValueError):
        RedisConcurrencyLimit(redis_client, key="a", limit=0)


async def test_reservations_are_spaced_by_the_interval(redis_client: Any, redis_prefix: str) -> None:
    limiter = RedisGcraLimiter(redis_client, rate=10, prefix=redis_prefix)
    assert isinstance(limiter, RateLimiter)
    waits = [await limiter.reserve("+1500") for _ in range(5)]
    assert all(near(wait, 0.1 * i) for i, wait in enumerate(waits)), waits
    # The schedule lives on the server, under the test's prefix, and expires by itself.
    assert limiter.redis_key("+1500").startswith(f"{redis_prefix}:default:")
    ttl = await redis_client.pttl(limiter.redis_key("+1500"))
    assert 0 < ttl <= 1500


async def test_cost_counts_units(redis_client: Any, redis_prefix: str) -> None:
    limiter = RedisGcraLimiter(redis_client, rate=10, prefix=redis_prefix)
    assert near(await limiter.reserve("k", cost=3), 0.0)  # a 3-segment message
    assert near(await limiter.reserve("k"), 0.3)
    assert near(await limiter.reserve("k", cost=2), 0.4)
    assert near(await limiter.reserve("k"), 0.6)


async def test_max_wait_books_nothing(redis_client: Any, redis_prefix: str) -> None:
    limiter = RedisGcraLimiter(redis_client, rate=10, prefix=redis_prefix)
    for _ in range(5):
        await limiter.reserve("k")  # booked up to 0.5 s ahead
    assert await limiter.reserve("k", max_wait=0.2) is None
    assert await limiter.reserve("k", max_wait=0.2) is None
    assert near(await limiter.reserve("k", max_wait=1.0), 0.5)  # the refusals took no slot
    assert near(await limiter.reserve("k", max_wait=10), 0.6)


async def reserve_timed(limiter: RedisGcraLimiter, key: str, count: int) -> list[tuple[float | None, float]]:
    """(wait, seconds since the first call started) for ``count`` back-to-back reservations."""
    started = time.monotonic()
    found = []
    for _ in range(count):
        elapsed = time.monotonic() - started
        found.append((await limiter.reserve(key), elapsed))
    return found


def on_schedule(found: list[tuple[float | None, float]], expected: tuple[float, ...]) -> bool:
    """Each wait is the ideal one less the time that already passed (a loaded machine is slow, not wrong)."""
    return all(
        wait is not None and max(0.0, ideal - elapsed) - 0.005 <= wait <= ideal + 0.001
        for (wait, elapsed), ideal in zip(found, expected, strict=True)
    )


async def test_an_idle_schedule_starts_start_delay_ahead(redis_client: Any, redis_prefix: str) -> None:
    limiter = RedisGcraLimiter(redis_client, rate=20, start_delay=0.1, prefix=redis_prefix)
    first = await limiter.reserve("k")
    second = await limiter.reserve("k")
    assert first is not None
    assert second is not None
    assert 0.09 <= first <= 0.1  # the Redis clock moved a little between the calls
    assert 0.14 <= second <= 0.15  # then the usual spacing (1/20 s)
    with pytest.raises(ValueError, match="start_delay"):
        RedisGcraLimiter(redis_client, rate=1, start_delay=-1)


async def test_burst_and_per_key_rates(redis_client: Any, redis_prefix: str) -> None:
    limiter = RedisGcraLimiter(redis_client, rate=10, rates={"short-code": 100}, burst=3, prefix=redis_prefix)
    found = await reserve_timed(limiter, "long-code", 5)
    assert on_schedule(found, (0, 0, 0, 0.1, 0.2)), found
    found = await reserve_timed(limiter, "short-code", 5)
    assert on_schedule(found, (0, 0, 0, 0.01, 0.02)), found


async def test_keys_accounts_and_prefixes_are_independent(redis_client: Any, redis_prefix: str) -> None:
    first = RedisGcraLimiter(redis_client, rate=1, prefix=redis_prefix, account="AC1")
    other_account = RedisGcraLimiter(redis_client, rate=1, prefix=redis_prefix, account="AC2")
    other_prefix = RedisGcraLimiter(redis_client, rate=1, prefix=f"{redis_prefix}-b", account="AC1")
    assert await first.reserve("k") == 0
    assert near(await first.reserve("k"), 1.0)
    assert await first.reserve("other-key") == 0
    assert await other_account.reserve("k") == 0
    assert await other_prefix.reserve("k") == 0


async def test_set_rate_slows_every_worker(redis_client: Any, redis_prefix: str) -> None:
    first = RedisGcraLimiter(redis_client, rate=100, prefix=redis_prefix)
    second = RedisGcraLimiter(redis_client, rate=100, prefix=redis_prefix)  # another worker
    await first.set_rate("k", 10, duration=0.5)  # the provider said 21611
    assert near(await second.reserve("k"), 0.0)
    assert near(await second.reserve("k"), 0.1)
    assert near(await first.reserve("other"), 0.0)
    assert near(await first.reserve("other"), 0.01, 0.005)  # other senders keep their pace
    await second.set_rate("k", None)
    assert near(await first.reserve("k"), 0.2)  # booked at 10/s before the reset...
    assert near(await first.reserve("k"), 0.21)  # ...then 100/s again
    with pytest.raises(ValueError):
        await first.set_rate("k", 0)


def test_three_processes_share_one_rate(redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    """3 processes × 2 tasks per key, two keys at 50/s, 150 sends per key (~3 s)."""
    rate, processes, tasks_per_key, sends_per_task = 50, 3, 2, 25
    keys = ["+15005550006", "+15005550007"]
    config = {
        "redis_url": redis_url,
        "prefix": redis_prefix,
        "rate": rate,
        "keys": keys,
        "tasks_per_key": tasks_per_key,
        "sends_per_task": sends_per_task,
        "start_at": time.time() + 2.0,  # after every interpreter has started
    }
    outputs = [tmp_path / f"stamps-{i}.json" for i in range(processes)]
    workers = [
        subprocess.Popen([sys.executable, str(WORKER), json.dumps(config), str(output)], start_new_session=True)
        for output in outputs
    ]
    try:
        codes = [worker.wait(timeout=60) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)
    assert codes == [0] * processes

    stamps: dict[str, list[float]] = {key: [] for key in keys}
    for output in outputs:
        for key, values in json.loads(output.read_text()).items():
            stamps[key].extend(values)
    total = processes * tasks_per_key * sends_per_task
    for key in keys:
        assert len(stamps[key]) == total
        busiest = max_in_window(stamps[key])
        span = max(stamps[key]) - min(stamps[key])
        print(f"\n[limiter] {key}: {total} sends over {span:.2f}s, max {busiest} in any 1 s window (limit {rate}/s)")
        assert busiest <= rate * 1.05
        assert busiest >= rate * 0.9  # the limiter was the bottleneck, not the workers
        # 150 sends at 50/s take (150 - 1) / 50 = 2.98 s, whichever key or process sends them.
        assert (total - 1) / rate - 0.05 <= span <= (total - 1) / rate + 0.5


async def test_concurrency_limit_caps_holders(redis_client: Any, redis_prefix: str) -> None:
    cap = RedisConcurrencyLimit(redis_client, key="AC1", limit=3, prefix=redis_prefix)
    holders = [await cap.try_acquire() for _ in range(4)]
    assert [holder is not None for holder in holders] == [True, True, True, False]
    assert await cap.in_use() == 3
    first = holders[0]
    assert first is not None
    await cap.release(first)
    assert await cap.try_acquire() is not None
    assert await cap.try_acquire() is None


async def test_concurrency_limit_slots_expire(redis_client: Any, redis_prefix: str) -> None:
    cap = RedisConcurrencyLimit(redis_client, key="AC1", limit=2, ttl=0.2, prefix=redis_prefix)
    assert await cap.try_acquire() is not None
    assert await cap.try_acquire() is not None
    assert await cap.try_acquire() is None
    await asyncio.sleep(0.3)  # holders that died without releasing
    assert await cap.try_acquire() is not None


async def test_concurrency_limit_slot_waits_and_times_out(redis_client: Any, redis_prefix: str) -> None:
    cap = RedisConcurrencyLimit(redis_client, key="AC1", limit=4, prefix=redis_prefix)
    running = peak = done = 0

    async def call() -> None:
        nonlocal running, peak, done
        async with cap.slot():
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.03)
            running -= 1
        done += 1

    async with asyncio.timeout(20):
        await asyncio.gather(*(call() for _ in range(20)))
    assert (peak, done) == (4, 20)
    assert await cap.in_use() == 0

    blocker = RedisConcurrencyLimit(redis_client, key="AC2", limit=1, prefix=redis_prefix)
    assert await blocker.try_acquire() is not None
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2), blocker.slot():
            pytest.fail("no slot was free")
    assert time.monotonic() - started < 1.0


# -- what mutation testing found unchecked (#18) ------------------------------------------------------------------


def test_bad_settings_are_named(redis_client: Any) -> None:
    for rates in ({"x": 0.0}, {"x": -1.0}):
        with pytest.raises(ValueError, match=r"^rates must be positive$"):
            RedisGcraLimiter(redis_client, rate=1, rates=rates)
    assert RedisGcraLimiter(redis_client, rate=1, rates={"x": 0.5}).rates == {"x": 0.5}, "below 1/s is a rate too"
    with pytest.raises(ValueError, match=r"^burst must be at least 1$"):
        RedisGcraLimiter(redis_client, rate=1, burst=0.5)
    with pytest.raises(ValueError, match=r"^start_delay must not be negative$"):
        RedisGcraLimiter(redis_client, rate=1, start_delay=-0.1)
    for limit, ttl in ((0, 30.0), (1, 0.0)):
        with pytest.raises(ValueError, match=r"^limit must be at least 1 and ttl positive$"):
            RedisConcurrencyLimit(redis_client, key="a", limit=limit, ttl=ttl)


def test_default_keys_and_settings(redis_client: Any) -> None:
    limiter = RedisGcraLimiter(redis_client, rate=1)
    assert limiter.redis_key("+1500") == "messaging:rl:default:{+1500}:tat"
    assert (limiter.burst, limiter.start_delay) == (1.0, 0.0)
    cap = RedisConcurrencyLimit(redis_client, key="AC1", limit=1)
    assert (cap.redis_key, cap.ttl) == ("messaging:cc:AC1", 30.0)


async def test_the_url_sets_every_option(redis_url: str) -> None:
    options = "prefix=p:rl&account=AC9&burst=3&start_delay=0.25"
    limiter = RedisGcraLimiter.from_url(f"{redis_url}?{options}", rate=2, rates={"+1": 5.0}, start_delay=0.5)
    plain = RedisGcraLimiter.from_url(redis_url, rate=2, start_delay=0.5)
    try:
        assert (limiter.prefix, limiter.account, limiter.burst, limiter.start_delay) == ("p:rl", "AC9", 3.0, 0.25)
        assert limiter.rates == {"+1": 5.0}
        assert limiter.redis_key("k") == "p:rl:AC9:{k}:tat"
        assert (plain.prefix, plain.account, plain.burst, plain.start_delay) == ("messaging:rl", "default", 1.0, 0.5)
        assert RedisGcraLimiter.from_url(redis_url, rate=2).start_delay == 0.0
    finally:
        await limiter.close()
        await plain.close()


async def test_close_closes_only_a_client_the_limiter_made(
    redis_client: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[Any] = []

    def recording(client: Any) -> None:
        close = client.aclose

        async def aclose() -> None:
            closed.append(client)
            await close()

        monkeypatch.setattr(client, "aclose", aclose)

    recording(redis_client)
    await RedisGcraLimiter(redis_client, rate=1).close()
    assert closed == [], "the caller's client is the caller's"
    own = RedisGcraLimiter.from_url(redis_url, rate=1)
    recording(own._redis)
    await own.close()
    assert closed == [own._redis]


@pytest.mark.parametrize("batch_size", [1, 100])
async def test_waits_are_counted_to_the_microsecond(redis_client: Any, redis_prefix: str, batch_size: int) -> None:
    """An idle schedule's first wait is exactly ``start_delay`` (no clock in it): the units convert exactly."""
    limiter = RedisGcraLimiter(redis_client, rate=1, start_delay=1.25, prefix=redis_prefix, batch_size=batch_size)
    assert await limiter.reserve("a") == 1.25
    assert await limiter.reserve("b", max_wait=1.25 - 2**-20) is None, "1 µs over the longest wait"
    assert await limiter.reserve("c", max_wait=1.25) == 1.25


async def test_release_forgets_the_booking_of_its_token(redis_client: Any, redis_prefix: str) -> None:
    limiter = RedisGcraLimiter(redis_client, rate=10, prefix=redis_prefix, batch_size=1)
    await limiter.reserve("k")
    assert await limiter.reserve("k", token="m1") == pytest.approx(0.1, abs=0.03)
    booking = f"{redis_prefix}:default:{{k}}:b:m1"
    assert await redis_client.exists(booking)
    assert await limiter.release("k", "m1")
    assert not await redis_client.exists(booking)


async def test_a_rate_set_for_a_while_expires(redis_client: Any, redis_prefix: str) -> None:
    limiter = RedisGcraLimiter(redis_client, rate=10, prefix=redis_prefix)
    rate_key = f"{redis_prefix}:default:{{k}}:rate"
    await limiter.set_rate("k", 1.0)
    assert 299_000 <= await redis_client.pttl(rate_key) <= 300_000, "five minutes by default"
    await limiter.set_rate("k", 0.5, duration=2.5)
    assert 2_000 <= await redis_client.pttl(rate_key) <= 2_500
    for rate, duration in ((0.0, 1.0), (1.0, 0.0)):
        with pytest.raises(ValueError, match=r"^rate and duration must be positive$"):
            await limiter.set_rate("k", rate, duration=duration)


async def test_a_holder_expires_after_the_ttl_on_the_server_clock(redis_client: Any, redis_prefix: str) -> None:
    """The expiry is stored in µs: a ttl of a million seconds lands a million seconds ahead, not a second more."""
    cap = RedisConcurrencyLimit(redis_client, key="AC1", limit=1, ttl=1_000_000.0, prefix=redis_prefix)
    holder = await cap.try_acquire()
    assert holder is not None
    seconds, micros = await redis_client.time()
    expires = await redis_client.zscore(cap.redis_key, holder)
    ahead = expires / 1e6 - (seconds + micros / 1e6)
    assert 1_000_000.0 - 0.5 <= ahead <= 1_000_000.0
