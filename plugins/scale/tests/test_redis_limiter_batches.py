"""RedisGcraLimiter's batches: concurrent reservations share one round trip, and get the answers they would alone.

Round trips and script calls are counted on the client's connections (``counted_redis``): each
write to the socket is one round trip, and the commands packed into it are listed. The server's
``INFO commandstats`` would count other clients of the shared test server too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from messaging_scale import RedisGcraLimiter

pytestmark = pytest.mark.services


class Writes(list[list[str]]):
    """The commands of each write a client made to Redis, one list per write (a round trip)."""

    def round_trips(self, command: str = "EVALSHA") -> int:
        """The writes holding at least one ``command``."""
        return sum(1 for write in self if command in write)

    def calls(self, command: str = "EVALSHA") -> int:
        """How many ``command``\\s were sent, whichever write held them."""
        return sum(write.count(command) for write in self)


def _name(command: Any) -> str:
    return (command.decode() if isinstance(command, bytes) else str(command)).upper()


@pytest.fixture
async def counted_redis(redis_url: str, redis_client: Any) -> AsyncIterator[tuple[Any, Writes]]:
    """A client on the test server whose connections list the commands of every write."""
    writes = Writes()

    class CountingConnection(aioredis.Connection):
        packing_several = False  # pack_commands packs each command with pack_command

        def pack_command(self, *args: Any) -> list[bytes]:
            if not self.packing_several:
                writes.append([_name(args[0])])
            return super().pack_command(*args)

        def pack_commands(self, commands: Any) -> list[bytes]:
            commands = list(commands)
            writes.append([_name(command[0]) for command in commands])
            self.packing_several = True
            try:
                return super().pack_commands(commands)
            finally:
                self.packing_several = False

    pool = aioredis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    client = aioredis.Redis.from_pool(pool)
    await client.ping()  # the handshake's writes are not the limiter's
    writes.clear()
    try:
        yield client, writes
    finally:
        await client.aclose()


def exact(waits: Sequence[float | None], expected: Sequence[float | None]) -> bool:
    """The same waits to the microsecond (the script's unit), None where refused."""
    return len(waits) == len(expected) and all(
        (wait is None and ideal is None) or (wait is not None and ideal is not None and abs(wait - ideal) < 2e-6)
        for wait, ideal in zip(waits, expected, strict=True)
    )


def near(waits: Sequence[float | None], expected: Sequence[float | None], elapsed: float) -> bool:
    """The same waits, less at most the time that passed between the calls (a sequence of round trips)."""
    return len(waits) == len(expected) and all(
        (wait is None and ideal is None)
        or (wait is not None and ideal is not None and ideal - elapsed - 0.002 <= wait <= ideal + 0.001)
        for wait, ideal in zip(waits, expected, strict=True)
    )


def spaced(waits: Sequence[float | None]) -> list[float]:
    """Each wait less the first one: the batch's instant cancels out, the spacing remains."""
    assert all(wait is not None for wait in waits), waits
    first = cast(float, waits[0])
    return [cast(float, wait) - first for wait in waits]


async def loaded(limiter: RedisGcraLimiter, writes: Writes) -> None:
    """Make sure the server has the script (a first call may load it: one more round trip), then forget the writes."""
    await limiter.reserve("warm-up")
    writes.clear()


def test_rejects_bad_batch_settings(redis_client: Any) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        RedisGcraLimiter(redis_client, rate=1, batch_size=0)
    with pytest.raises(ValueError, match="batch_wait"):
        RedisGcraLimiter(redis_client, rate=1, batch_wait=-0.001)


async def test_url_options_set_the_batches(redis_url: str) -> None:
    limiter = RedisGcraLimiter.from_url(f"{redis_url}?batch_size=7&batch_wait=0.004", rate=1)
    plain = RedisGcraLimiter.from_url(redis_url, rate=1)
    try:
        assert (limiter.batch_size, limiter.batch_wait) == (7, 0.004)
        assert (plain.batch_size, plain.batch_wait) == (100, 0.001)
    finally:
        await limiter.close()
        await plain.close()


async def test_concurrent_reservations_of_one_key_are_one_script_call(
    counted_redis: tuple[Any, Writes], redis_prefix: str
) -> None:
    client, writes = counted_redis
    limiter = RedisGcraLimiter(client, rate=100, prefix=redis_prefix)
    await loaded(limiter, writes)
    waits = await asyncio.gather(*(limiter.reserve("k", token=f"m{i}") for i in range(50)))
    assert (writes.round_trips(), writes.calls()) == (1, 1), writes
    assert exact(waits, [i * 0.01 for i in range(50)]), waits

    writes.clear()
    alone = RedisGcraLimiter(client, rate=100, prefix=redis_prefix, batch_size=1)
    await asyncio.gather(*(alone.reserve("other") for _ in range(50)))
    assert (writes.round_trips(), writes.calls()) == (50, 50)


async def test_the_keys_of_one_batch_share_one_round_trip(counted_redis: tuple[Any, Writes], redis_prefix: str) -> None:
    client, writes = counted_redis
    limiter = RedisGcraLimiter(client, rate=10, rates={"k3": 100}, prefix=redis_prefix)
    await loaded(limiter, writes)
    keys = [f"k{i % 5}" for i in range(50)]  # 5 keys, interleaved
    waits = await asyncio.gather(*(limiter.reserve(key) for key in keys))
    assert (writes.round_trips(), writes.calls()) == (1, 5), writes
    # Each key books its own reservations in arrival order, at its own rate.
    for index, (key, wait) in enumerate(zip(keys, waits, strict=True)):
        interval = 0.01 if key == "k3" else 0.1
        assert exact([wait], [index // 5 * interval]), (key, index, wait)


async def test_a_full_batch_and_one_with_nothing_in_flight_leave_at_once(redis_client: Any, redis_prefix: str) -> None:
    limiter = RedisGcraLimiter(redis_client, rate=100, prefix=redis_prefix, batch_size=10, batch_wait=30.0)
    started = time.monotonic()
    async with asyncio.timeout(5):
        waits = await asyncio.gather(*(limiter.reserve("k") for _ in range(10)))
    assert time.monotonic() - started < 1.0, "a full batch waited for batch_wait"
    assert exact(waits, [i * 0.01 for i in range(10)])
    # Nothing in flight: three more go together at once, without waiting for batch_wait (30 s).
    async with asyncio.timeout(5):
        later = await asyncio.gather(*(limiter.reserve("k") for _ in range(3)))
    assert exact(spaced(later), [0.0, 0.01, 0.02]), later
    assert 0.0 <= cast(float, later[0]) <= 0.1, later
    await limiter.close()


async def test_batched_waits_are_the_single_path_waits(redis_client: Any, redis_prefix: str) -> None:
    """Mixed costs, a burst and an idle schedule's start delay: the spacing is exact within a batch."""
    costs = [1.0, 3.0, 1.0, 2.0, 1.0, 1.0, 3.0, 1.0]
    settings: dict[str, Any] = {"rate": 10, "burst": 2, "start_delay": 0.05, "prefix": redis_prefix}
    batched = RedisGcraLimiter(redis_client, **settings)
    alone = RedisGcraLimiter(redis_client, **settings, batch_size=1)
    # The schedule starts 0.05 s ahead; burst 2 lets a unit (0.1 s) go early: the waits are
    # max(0, 0.05 + (units booked before) × 0.1 − 0.1).
    expected = [0.0, 0.05, 0.35, 0.45, 0.65, 0.75, 0.85, 1.15]
    waits = await asyncio.gather(*(batched.reserve("k", cost) for cost in costs))
    assert exact(waits, expected), waits
    started = time.monotonic()
    one_by_one = [await alone.reserve("k-alone", cost) for cost in costs]
    assert near(one_by_one, expected, time.monotonic() - started), one_by_one
    # A second batch continues the schedule the first one left.
    more = await asyncio.gather(batched.reserve("k"), batched.reserve("k", 2.0), batched.reserve("k"))
    assert exact(spaced(more), [0.0, 0.1, 0.3]), more
    assert 1.1 <= cast(float, more[0]) <= 1.25, more


async def test_a_refusal_in_a_batch_books_nothing(redis_client: Any, redis_prefix: str) -> None:
    limiter = RedisGcraLimiter(redis_client, rate=10, prefix=redis_prefix)
    await asyncio.gather(*(limiter.reserve("k") for _ in range(5)))  # booked up to 0.5 s ahead
    waits = await asyncio.gather(
        limiter.reserve("k", max_wait=1.0),
        limiter.reserve("k", max_wait=0.2, token="refused"),
        limiter.reserve("k", 3.0, max_wait=0.3),
        limiter.reserve("k", max_wait=1.0),
        limiter.reserve("k", max_wait=0.5),
        limiter.reserve("k"),
    )
    first = waits[0]
    assert first is not None
    assert 0.4 <= first <= 0.5, waits
    # The refused ones took no slot: the others follow each other 1 interval apart.
    assert exact(waits, [first, None, None, first + 0.1, None, first + 0.2]), waits
    # Nor a booking for the refused token, nor a 'last' record naming it.
    assert await limiter.release("k", "refused") is False
    assert await redis_client.exists(f"{limiter.redis_key('k')[: -len(':tat')]}:b:refused") == 0
    again = await limiter.reserve("k", token="refused")
    assert again is not None
    assert first + 0.3 - 0.05 <= again <= first + 0.3, again


async def run_token_scenario(limiter: RedisGcraLimiter, key: str, batched: bool) -> list[Any]:
    """A plain reservation, then m1, m2 and m1 again (concurrently, or one by one), then releases."""
    results: list[Any] = [await limiter.reserve(key)]
    calls = [("m1", 1.0), ("m2", 2.0), ("m1", 1.0)]
    if batched:
        results += await asyncio.gather(*(limiter.reserve(key, cost, token=token) for token, cost in calls))
    else:
        results += [await limiter.reserve(key, cost, token=token) for token, cost in calls]
    results.append(await limiter.release(key, "m1"))  # shared by two reservations, and not the last
    results.append(await limiter.release(key, "m2"))  # the last booking: given back
    results.append(await limiter.release(key, "m2"))  # once
    results.append(await limiter.reserve(key, token="m3"))  # takes m2's slot
    return results


async def test_tokens_rebook_and_release_in_batches(redis_client: Any, redis_prefix: str) -> None:
    batched = RedisGcraLimiter(redis_client, rate=10, prefix=redis_prefix)
    alone = RedisGcraLimiter(redis_client, rate=10, prefix=redis_prefix, batch_size=1)
    for limiter, key, together in ((alone, "k-alone", False), (batched, "k", True)):
        started = time.monotonic()
        found = await run_token_scenario(limiter, key, batched=together)
        elapsed = time.monotonic() - started
        assert found[4:7] == [False, True, False], (key, found)
        assert near(found[:4] + found[7:], [0.0, 0.1, 0.2, 0.1, 0.2], elapsed), (key, found)
    # One batch, one instant: m2 exactly one interval after m1, and m1 again m1's slot.
    assert exact(spaced(found[1:4]), [0.0, 0.1, 0.0]), found


async def test_the_last_item_of_a_batch_is_the_one_given_back(redis_client: Any, redis_prefix: str) -> None:
    limiter = RedisGcraLimiter(redis_client, rate=10, prefix=redis_prefix)
    waits = await asyncio.gather(*(limiter.reserve("k", token=f"m{i}") for i in range(4)))
    assert exact(waits, [0.0, 0.1, 0.2, 0.3])
    assert [await limiter.release("k", f"m{i}") for i in range(3)] == [False, False, False]
    assert await limiter.release("k", "m3") is True
    wait = await limiter.reserve("k")
    assert wait is not None
    assert 0.2 <= wait <= 0.3, wait


async def test_a_failed_call_reaches_every_caller_of_its_key(redis_client: Any, redis_prefix: str) -> None:
    limiter = RedisGcraLimiter(redis_client, rate=10, prefix=redis_prefix)
    await redis_client.rpush(limiter.redis_key("broken"), "not a schedule")  # GET fails: WRONGTYPE
    found = await asyncio.gather(
        *(limiter.reserve(key, token=f"{key}-{i}") for i in range(3) for key in ("broken", "fine")),
        return_exceptions=True,
    )
    broken, fine = found[0::2], found[1::2]
    assert all(isinstance(error, redis.exceptions.ResponseError) for error in broken), broken
    # The other key's call, in the same round trip, booked its reservations.
    assert exact(fine, [0.0, 0.1, 0.2]), fine


async def test_a_failed_round_trip_reaches_every_caller(redis_prefix: str) -> None:
    # Nothing listens on port 1; no retries, so that the error comes at once.
    client = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    limiter = RedisGcraLimiter(client, rate=10, prefix=redis_prefix)
    try:
        async with asyncio.timeout(10):
            found = await asyncio.gather(
                *(limiter.reserve(f"k{i % 3}") for i in range(9)),
                return_exceptions=True,
            )
    finally:
        await client.aclose()
    assert all(isinstance(error, redis.exceptions.ConnectionError) for error in found), found


async def test_a_script_the_server_lost_is_loaded_again(counted_redis: tuple[Any, Writes], redis_prefix: str) -> None:
    client, writes = counted_redis
    limiter = RedisGcraLimiter(client, rate=10, prefix=redis_prefix)
    started = time.monotonic()
    assert await limiter.reserve("k") == 0.0
    # As after a restart or a SCRIPT FLUSH (which would disturb other clients of the test server).
    limiter._script.sha = "0" * 40
    writes.clear()
    waits = await asyncio.gather(*(limiter.reserve(key) for key in ("k", "k", "other")))
    assert near(waits, [0.1, 0.2, 0.0], time.monotonic() - started), waits
    assert writes.calls("SCRIPT LOAD") == 1
    assert writes.round_trips() == 2  # refused, then run again
    writes.clear()
    await asyncio.gather(*(limiter.reserve(key) for key in ("k", "other")))
    assert (writes.round_trips(), writes.calls("SCRIPT LOAD")) == (1, 0)


async def test_a_batch_is_a_plain_pipeline_not_a_transaction(
    counted_redis: tuple[Any, Writes], redis_prefix: str
) -> None:
    """Each script call is atomic by itself: MULTI/EXEC would only add two commands to the round trip."""
    client, writes = counted_redis
    limiter = RedisGcraLimiter(client, rate=10, prefix=redis_prefix)
    await loaded(limiter, writes)
    await asyncio.gather(*(limiter.reserve(key) for key in ("a", "b")))
    assert writes == [["EVALSHA", "EVALSHA"]]


async def test_a_script_lost_again_after_loading_fails_the_batch_after_two_tries(
    counted_redis: tuple[Any, Writes], redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that keeps losing the script (a fault shape: every load answered with a sha it forgets)."""
    client, writes = counted_redis
    limiter = RedisGcraLimiter(client, rate=10, prefix=redis_prefix)
    load = client.script_load

    async def forgotten(script: str) -> str:
        await load(script)
        return "0" * 40

    monkeypatch.setattr(client, "script_load", forgotten)
    limiter._script.sha = "0" * 40
    writes.clear()
    found = await asyncio.gather(limiter.reserve("k"), limiter.reserve("other"), return_exceptions=True)
    assert all(isinstance(error, redis.exceptions.NoScriptError) for error in found), found
    assert writes.round_trips() == 2, "tried, loaded the script once, tried again: then the error"


@pytest.mark.parametrize(("batch_size", "round_trips"), [(1, 2), (2, 1)])
async def test_a_batch_size_of_one_books_alone_and_of_two_shares(
    counted_redis: tuple[Any, Writes], redis_prefix: str, batch_size: int, round_trips: int
) -> None:
    client, writes = counted_redis
    limiter = RedisGcraLimiter(client, rate=10, prefix=redis_prefix, batch_size=batch_size, batch_wait=0.05)
    await loaded(limiter, writes)
    await asyncio.gather(*(limiter.reserve(key) for key in ("a", "b")))
    assert writes.round_trips() == round_trips
