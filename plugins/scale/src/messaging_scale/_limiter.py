"""Rate and concurrency limits shared by every worker, in Redis.

``RedisGcraLimiter`` paces sends per sender with GCRA in "reserve" form: one Lua call, run
atomically on the Redis server's clock, books the next slot and says how long to wait for it. The
caller sleeps that long, then sends. Spacing is exact across any number of processes and machines
(there is one clock: the server's), and nobody polls.

A worker has up to a hundred passes in flight, often of one sender, and a chunk starts them
together: concurrent reservations are coalesced (``messaging_scale._coalesce``: the calls of one
turn of the event loop, and those that wait behind a batch in flight, at most ``batch_size``) and go
to Redis in one round trip, one script call per sender that books its reservations one
after the other in arrival order. Each caller gets the wait it would have got alone, in that order.

``RedisConcurrencyLimit`` caps how many provider calls an account has in flight (Twilio answers
20429 past its REST concurrency limit): a semaphore whose holders expire, so a killed worker's
slot comes back by itself.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from attrs import frozen
from redis.exceptions import NoScriptError

from messaging_scale._coalesce import Coalescer
from messaging_scale._urls import REDIS_OPTIONS, redis_client, split_options

__all__ = ["BATCH_SIZE", "BATCH_WAIT", "RedisConcurrencyLimit", "RedisGcraLimiter"]

BATCH_SIZE = 100
"""The most reservations ``RedisGcraLimiter`` sends in one round trip, by default."""

BATCH_WAIT = 0.001
"""Seconds a reservation waits at most for others to share its round trip, by default."""

# KEYS[1]: the sender's schedule, its theoretical arrival time (TAT, µs since the epoch).
# KEYS[2]: the sender's temporary rate (units per second), set by set_rate; absent: ARGV[1] applies.
# KEYS[3]: the sender's last booking made under a token, "<token> <TAT before> <TAT after>", so
# that it can be given back (_RELEASE_LUA) while it is still the last one and nobody shares it.
# KEYS[4], KEYS[5], ...: the bookings of the items that carry a token, in item order: the start
# of each one's slot (µs), kept until the slot starts.
# ARGV[1..3]: interval (µs per unit of cost), burst (units), start delay (µs: an idle schedule
# starts this far ahead, at most 5 intervals); then three per item, in arrival order: cost
# (units), max wait (µs; -1: no limit), token ('' if none).
# Books the items one after the other at one instant (the server's clock, read once), exactly as
# that many calls in a row would. Returns one wait per item in µs, or -1 for an item whose wait
# would exceed its max wait (nothing is booked for it then).
_RESERVE_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local override = redis.call('GET', KEYS[2])
if override then interval = 1000000 / tonumber(override) end
local tolerance = (tonumber(ARGV[2]) - 1) * interval
local start_delay = tonumber(ARGV[3])

local function reserve(cost, max_wait, token, booking)
  if booking then
    local booked = tonumber(redis.call('GET', booking) or '0')
    if booked > now then
      if max_wait >= 0 and booked - now > max_wait then return -1 end
      -- Shared by two passes now: one of them may use it, so it is never given back.
      local last = redis.call('GET', KEYS[3])
      if last and string.sub(last, 1, #token + 1) == token .. ' ' then redis.call('DEL', KEYS[3]) end
      return booked - now
    end
  end
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now + math.min(start_delay, 5 * interval) end
  local wait = math.floor(tat - now - tolerance)
  if wait < 0 then wait = 0 end
  if max_wait >= 0 and wait > max_wait then return -1 end
  local new_tat = math.ceil(tat + cost * interval)
  local ttl = math.ceil((new_tat - now) / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl)
  if token ~= '' then
    local record = token .. ' ' .. string.format('%.0f', tat) .. ' ' .. string.format('%.0f', new_tat)
    redis.call('SET', KEYS[3], record, 'PX', ttl)
  else
    redis.call('DEL', KEYS[3])
  end
  if booking and wait > 0 then
    redis.call('SET', booking, string.format('%.0f', now + wait), 'PX', math.ceil(wait / 1000))
  end
  return wait
end

local waits = {}
local bookings = 3
for item = 4, #ARGV, 3 do
  local token = ARGV[item + 2]
  local booking = nil
  if token ~= '' then
    bookings = bookings + 1
    booking = KEYS[bookings]
  end
  waits[#waits + 1] = reserve(tonumber(ARGV[item]), tonumber(ARGV[item + 1]), token, booking)
end
return waits
"""

# KEYS[1]: the sender's schedule; KEYS[2]: its last booking under a token; KEYS[3]: the token's
# booking. ARGV[1]: the token. Gives the booking back only while it is the last one: the schedule
# returns to where it was before it. Returns 1 when it did, 0 otherwise.
_RELEASE_LUA = """
local last = redis.call('GET', KEYS[2])
if not last then return 0 end
local token, before, after = string.match(last, '^(.*) (%d+) (%d+)$')
if token ~= ARGV[1] or redis.call('GET', KEYS[1]) ~= after then return 0 end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
redis.call('DEL', KEYS[2], KEYS[3])
if tonumber(before) > now then
  redis.call('SET', KEYS[1], before, 'PX', math.ceil((tonumber(before) - now) / 1000) + 1000)
else
  redis.call('DEL', KEYS[1])
end
return 1
"""

# KEYS[1]: the holders, a sorted set scored by expiry (µs). ARGV: holder id, limit, ttl (µs).
# Returns 1 when the holder got a slot, 0 when all slots are taken.
_ACQUIRE_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) / 1000) + 1000)
return 1
"""


@frozen
class _Reservation:
    """One ``reserve`` call, in the units of the script."""

    key: str
    cost: float
    max_wait: int
    """Microseconds; -1: no limit."""
    token: str | None


class RedisGcraLimiter:
    """``RateLimiter`` shared through Redis: one key per (account, sender), GCRA on the server clock.

    Usage::

        limiter = RedisGcraLimiter(redis.asyncio.Redis(), rate=1.0, rates={"+15005550006": 100.0})
        wait = await limiter.reserve("+15005550006", cost=segments)
        await asyncio.sleep(wait)

    :param redis: a ``redis.asyncio.Redis`` client.
    :param rate: units per second for a key without its own entry in ``rates`` (Twilio counts
        message segments per second per sender).
    :param rates: per-key rates (a short code's 100/s, a Messaging Service's pool rate).
    :param burst: units that may go at once before the spacing applies (1: strict spacing). It
        bounds how much we queue at the provider.
    :param account: the provider account the keys belong to.
    :param prefix: first part of every Redis key (tests isolate themselves with their own).
    :param start_delay: seconds ahead an idle sender's schedule starts, at most 5 intervals (so
        a sender far below its rate pays next to nothing). A worker receiving a chunk starts many
        passes at once; without it, the first (wait 0) leaves late, behind that burst of work,
        and bunches with the next ones at the provider. Workers use 0.1 s.
    :param batch_size: the most reservations sent in one round trip; 1 sends each one alone, at once.
    :param batch_wait: the longest a reservation waits behind a batch in flight, seconds.
    """

    def __init__(
        self,
        redis: Any,
        *,
        rate: float,
        rates: Mapping[str, float] | None = None,
        burst: float = 1.0,
        account: str = "default",
        prefix: str = "messaging:rl",
        start_delay: float = 0.0,
        batch_size: int = BATCH_SIZE,
        batch_wait: float = BATCH_WAIT,
    ) -> None:
        if rate <= 0 or any(value <= 0 for value in (rates or {}).values()):
            raise ValueError("rates must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        if start_delay < 0:
            raise ValueError("start_delay must not be negative")
        self.start_delay = start_delay
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self._batches: Coalescer[_Reservation, int] = Coalescer(self._book, size=batch_size, wait=batch_wait)
        self._redis = redis
        self._owns_client = False
        self._script = redis.register_script(_RESERVE_LUA)
        self._release_script = redis.register_script(_RELEASE_LUA)
        self.rate = rate
        self.rates = dict(rates or {})
        self.burst = burst
        self.account = account
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"<RedisGcraLimiter rate={self.rate} burst={self.burst} account={self.account!r} prefix={self.prefix!r}>"

    @classmethod
    def from_url(
        cls, url: str, *, rate: float, rates: Mapping[str, float] | None = None, start_delay: float = 0.0
    ) -> RedisGcraLimiter:
        """A limiter with a client of its own (it connects on first use).

        ``redis://host:6379/0?prefix=messaging:rl&account=AC123&burst=1&max_connections=100&start_delay=0.1``
        (``start_delay`` in the URL overrides the argument), plus ``batch_size`` and ``batch_wait``
        (seconds; ``batch_size=1``: every reservation in a round trip of its own); ``close()`` it
        when done. Callers wait for one of ``max_connections`` connections.
        """
        address, options = split_options(url, REDIS_OPTIONS)
        limiter = cls(
            redis_client(address, options),
            rate=rate,
            rates=rates,
            burst=float(options.get("burst", 1.0)),
            account=options.get("account", "default"),
            prefix=options.get("prefix", "messaging:rl"),
            start_delay=float(options.get("start_delay", start_delay)),
            batch_size=int(options.get("batch_size", BATCH_SIZE)),
            batch_wait=float(options.get("batch_wait", BATCH_WAIT)),
        )
        limiter._owns_client = True
        return limiter

    async def close(self) -> None:
        """Send the reservations still waiting, then close the client if this limiter made it (``from_url``)."""
        await self._batches.close()
        if self._owns_client:
            await self._redis.aclose()

    def redis_key(self, key: str) -> str:
        """The Redis key holding ``key``'s schedule."""
        # The braces are a Redis Cluster hash tag: a sender's two keys live on one node.
        return f"{self.prefix}:{self.account}:{{{key}}}:tat"

    def _rate_key(self, key: str) -> str:
        return f"{self.prefix}:{self.account}:{{{key}}}:rate"

    def _last_key(self, key: str) -> str:
        return f"{self.prefix}:{self.account}:{{{key}}}:last"

    def _booking_key(self, key: str, token: str) -> str:
        return f"{self.prefix}:{self.account}:{{{key}}}:b:{token}"

    async def reserve(
        self, key: str, cost: float = 1.0, *, max_wait: float | None = None, token: str | None = None
    ) -> float | None:
        """Book ``cost`` units for ``key``.

        ``token`` (the message id): until its slot starts, booking again with it books nothing
        and returns the time left to the slot (see ``RateLimiter.reserve``); any worker, any
        process, since the booking is in Redis beside the schedule. An empty token is no token.

        Concurrent calls share a round trip (``messaging_scale._coalesce``); each gets the answer
        it would have got alone, in the order of the calls.

        :returns: seconds to wait before sending (0 when a slot is free now), or None when the wait
            would exceed ``max_wait`` (nothing is booked then).
        """
        limit = -1 if max_wait is None else math.floor(max_wait * 1_000_000)
        reservation = _Reservation(key, cost, limit, token or None)
        if self.batch_size == 1:
            keys, arguments = self._script_call(key, [reservation])
            [wait_us] = await self._script(keys=keys, args=arguments)
        else:
            wait_us = await self._batches.submit(reservation)
        return None if wait_us < 0 else wait_us / 1_000_000

    async def _book(self, batch: list[_Reservation]) -> list[int | Exception]:
        """Book ``batch`` in one round trip: one script call per key, booking its items in arrival order.

        :returns: each item's wait (µs, -1: refused), or the error of its key's call (the other
            keys' calls ran: their items got their slots).
        """
        groups = _group_by_key(batch)
        calls = [self._script_call(key, [batch[i] for i in indexes]) for key, indexes in groups.items()]
        results = await self._call_pipelined(calls)
        answers: list[int | Exception] = [-1] * len(batch)
        for indexes, result in zip(groups.values(), results, strict=True):
            for position, index in enumerate(indexes):
                answers[index] = result if isinstance(result, Exception) else int(result[position])
        return answers

    def _script_call(self, key: str, items: Sequence[_Reservation]) -> tuple[list[str], list[Any]]:
        """The keys and arguments of the script call booking ``items`` (all of ``key``), in order."""
        keys = [self.redis_key(key), self._rate_key(key), self._last_key(key)]
        keys += [self._booking_key(key, item.token) for item in items if item.token is not None]
        interval = 1_000_000 / self.rates.get(key, self.rate)
        arguments: list[Any] = [interval, self.burst, math.floor(self.start_delay * 1_000_000)]
        for item in items:
            arguments += [item.cost, item.max_wait, item.token or ""]
        return keys, arguments

    async def _call_pipelined(self, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run the script once per call, all in one pipeline; each call's result or its error."""
        results: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        for _ in range(2):
            async with self._redis.pipeline(transaction=False) as pipe:
                for index in pending:
                    keys, arguments = calls[index]
                    pipe.evalsha(self._script.sha, len(keys), *keys, *arguments)
                for index, result in zip(pending, await pipe.execute(raise_on_error=False), strict=True):
                    results[index] = result
            pending = [index for index in pending if isinstance(results[index], NoScriptError)]
            if not pending:
                break
            # The server lost its scripts (a restart, SCRIPT FLUSH), so none of these ran: load
            # the script and run them again. redis-py's own reloading in pipelines would ask
            # SCRIPT EXISTS before every batch, one more round trip each time.
            self._script.sha = await self._redis.script_load(self._script.script)
        return results

    async def release(self, key: str, token: str) -> bool:
        """Give back ``token``'s slot while it is ``key``'s last booking (see ``RateLimiter.release``).

        Atomic on the server: a reservation made meanwhile (by any worker) keeps its slot, and
        this one is then not given back.
        """
        keys = [self.redis_key(key), self._last_key(key), self._booking_key(key, token)]
        return bool(await self._release_script(keys=keys, args=[token]))

    async def set_rate(self, key: str, rate: float | None, *, duration: float = 300.0) -> None:
        """Change ``key``'s rate for every worker during ``duration`` seconds (None: back to the configured rate).

        For a sender the provider throttles (Twilio's 21611, "queue full"): the slower rate is
        stored in Redis beside the schedule, so every worker's next reservation uses it.
        """
        if rate is None:
            await self._redis.delete(self._rate_key(key))
            return
        if rate <= 0 or duration <= 0:
            raise ValueError("rate and duration must be positive")
        await self._redis.set(self._rate_key(key), repr(float(rate)), px=math.ceil(duration * 1000))


def _group_by_key(batch: Sequence[_Reservation]) -> dict[str, list[int]]:
    """The positions of ``batch``'s items per key, in arrival order."""
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(batch):
        groups.setdefault(item.key, []).append(index)
    return groups


class RedisConcurrencyLimit:
    """At most ``limit`` holders at once across every worker; a holder's slot expires after ``ttl``.

    Usage::

        cap = RedisConcurrencyLimit(redis, key="AC123", limit=100, ttl=30)
        async with asyncio.timeout(10), cap.slot():
            await connector.send_message(message)

    The ttl must exceed the longest call made under a slot (the HTTP timeout); it only matters
    for holders that die without releasing.

    :param redis: a ``redis.asyncio.Redis`` client.
    :param key: what is limited (an account id).
    :param limit: the number of slots.
    :param ttl: seconds after which an unreleased slot is free again.
    :param prefix: first part of the Redis key.
    """

    def __init__(self, redis: Any, *, key: str, limit: int, ttl: float = 30.0, prefix: str = "messaging:cc") -> None:
        if limit < 1 or ttl <= 0:
            raise ValueError("limit must be at least 1 and ttl positive")
        self._redis = redis
        self._script = redis.register_script(_ACQUIRE_LUA)
        self.redis_key = f"{prefix}:{key}"
        self.limit = limit
        self.ttl = ttl

    async def try_acquire(self) -> str | None:
        """A holder id when a slot was free (pass it to ``release``), else None."""
        holder = uuid.uuid4().hex
        acquired = await self._script(keys=[self.redis_key], args=[holder, self.limit, math.ceil(self.ttl * 1e6)])
        return holder if int(acquired) else None

    async def release(self, holder: str) -> None:
        """Give a slot back (a no-op when it already expired)."""
        await self._redis.zrem(self.redis_key, holder)

    async def in_use(self) -> int:
        """Slots currently held (expired holders included until the next acquire sweeps them)."""
        return int(await self._redis.zcard(self.redis_key))

    @asynccontextmanager
    async def slot(self, *, poll: float = 0.005) -> AsyncIterator[None]:
        """Hold a slot for the duration of the block.

        Waits for a free slot, polling with a growing pause (capped at 50 ms); bound the wait
        with ``asyncio.timeout`` around the block.
        """
        while (holder := await self.try_acquire()) is None:
            await asyncio.sleep(poll)
            poll = min(poll * 2, 0.05)
        try:
            yield
        finally:
            await self.release(holder)
