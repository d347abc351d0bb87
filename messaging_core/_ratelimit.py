"""``MemoryRateLimiter``: GCRA pacing per key, in this process's memory.

Low level on purpose: ``ChannelConnector.send_batch`` paces with it, and the campaign machinery
exports it as the in-memory ``RateLimiter`` (``messaging_core.campaigns``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

__all__ = ["MemoryRateLimiter"]

Clock = Callable[[], float]


class MemoryRateLimiter:
    """A ``RateLimiter``: GCRA "reserve a slot" per key, on a monotonic clock.

    ``rate`` is the units per second of every key (None: unlimited), ``rates`` overrides it per
    key (a short code's 100 MPS beside long codes at 1). ``burst`` units may go back to back
    before the spacing applies (1: strict spacing). Keys whose schedule lies in the past are
    forgotten, so memory stays bounded by the senders active within the last interval.
    """

    _PRUNE_AT = 1024

    def __init__(
        self,
        rate: float | None = None,
        *,
        rates: Mapping[str, float] | None = None,
        burst: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst}")
        self._rate = rate
        self._rates = dict(rates or {})
        self._burst = burst
        self._clock = clock
        self._tat: dict[str, float] = {}
        """Theoretical arrival time of the next unit, per key."""
        self._booked: dict[tuple[str, str], float] = {}
        """Slot start per (key, token), until the slot starts."""
        self._last: dict[str, tuple[str, float, float]] = {}
        """The last booking per key made under a token: ``(token, tat before it, tat after it)``."""

    def __repr__(self) -> str:
        return f"<MemoryRateLimiter rate={self._rate} burst={self._burst} keys={len(self._tat)}>"

    def __len__(self) -> int:
        """How many keys the limiter currently tracks."""
        return len(self._tat)

    def set_rate(self, key: str, rate: float | None) -> None:
        """Change one key's rate (None: back to the default), e.g. to slow a sender the provider throttles."""
        if rate is None:
            self._rates.pop(key, None)
        elif rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        else:
            self._rates[key] = rate

    async def reserve(
        self, key: str, cost: float = 1.0, *, max_wait: float | None = None, token: str | None = None
    ) -> float | None:
        rate = self._rates.get(key, self._rate)
        if rate is None:
            return 0.0
        interval = 1.0 / rate
        now = self._clock()
        if token is not None:
            booked = self._booked.get((key, token))
            if booked is not None and booked > now:
                left = booked - now
                if max_wait is not None and left > max_wait:
                    return None
                if key in self._last and self._last[key][0] == token:
                    del self._last[key]  # shared by two passes now: one may use it, so it is never given back
                return left
        tat = max(self._tat.get(key, now), now)
        wait = max(0.0, tat - now - (self._burst - 1.0) * interval)
        if max_wait is not None and wait > max_wait:
            return None
        if len(self._tat) >= self._PRUNE_AT and key not in self._tat:
            self._tat = {k: t for k, t in self._tat.items() if t > now}
        self._tat[key] = tat + cost * interval
        if token is None:
            self._last.pop(key, None)
        else:
            if len(self._last) >= self._PRUNE_AT and key not in self._last:
                self._last = {k: last for k, last in self._last.items() if last[2] > now}
            self._last[key] = (token, tat, tat + cost * interval)
        if token is not None and wait > 0:
            if len(self._booked) >= self._PRUNE_AT:
                self._booked = {k: t for k, t in self._booked.items() if t > now}
            self._booked[(key, token)] = now + wait
        return wait

    async def release(self, key: str, token: str) -> bool:
        """Give back the slot booked under ``token`` if it is still ``key``'s last one (see ``RateLimiter.release``)."""
        last = self._last.get(key)
        if last is None or last[0] != token or self._tat.get(key) != last[2]:
            return False
        del self._last[key]
        self._tat[key] = last[1]
        self._booked.pop((key, token), None)
        return True
