"""The ``[dispatcher]`` table of ``kind = "taskiq"``, checked once and typed.

Submitters and workers read the same file, so both sides agree on the queue, the chunk size and
the send pipeline's options. Every problem is reported at once, naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from messaging_core.campaigns import DispatcherSettings, InDoubtPolicy
from messaging_core.errors import ConfigurationError
from messaging_scale._status import WEBHOOK_EVENTS_RETENTION

__all__ = ["TaskiqSettings"]


def _rates(value: Any) -> dict[str, float]:
    return dict(value)


@frozen
class TaskiqSettings:
    """Options of the ``taskiq`` dispatcher kind (the ``[dispatcher]`` keys besides the URLs)."""

    broker: str = field(repr=False)
    """``amqp://user:password@host:5672/vhost`` (RabbitMQ)."""
    ledger: str = field(repr=False)
    """``postgresql://…`` (the ledger, campaign flags and counters)."""
    limiter: str | None = field(default=None, repr=False)
    """``redis://…`` (the shared pace per sender), or None: no pacing."""
    queue: str = "messaging.send"
    """The work queue (a RabbitMQ quorum queue)."""
    exchange: str = "messaging"
    dead_letter_queue: str | None = None
    """Default ``<queue>.dead``."""
    delivery_limit: int = 5
    """Deliveries of one chunk before it is dead-lettered (``x-delivery-limit``)."""
    qos: int = 4
    """Chunks a worker process holds unacknowledged (prefetch)."""
    chunk_size: int = 500
    """Message ids per task."""
    concurrency: int | None = None
    """Provider calls in flight per worker process, over all its chunks (default 100)."""
    messages_per_second: float | None = None
    """Pace of each sender (segments per second), shared by every worker through the limiter."""
    rates: Mapping[str, float] = field(factory=dict, converter=_rates)
    """Pace of particular senders (a short code beside long codes)."""
    account_concurrency: int | None = None
    """Provider calls in flight across every worker (Twilio's REST concurrency limit); None: no cap."""
    in_doubt: InDoubtPolicy = "hold"
    lease: float = 300.0
    request_timeout: float | None = None
    max_attempts: int = 5
    backoff: float = 1.0
    max_backoff: float = 300.0
    probe_grace: float = 5.0
    absent_after: float = 300.0
    """With ``probe_then_resend``: seconds after the end of a call's lease before "not found" may mean
    "never created" (``SendPipeline``'s quiet period)."""
    max_wait: float | None = None
    sweep_interval: float = 10.0
    """Seconds between two sweeps (one process sweeps per interval, whichever it is)."""
    stale_after: float = 300.0
    """A row needing work that nobody touched for this long is kicked again by the sweeper."""
    max_inline_wait: float = 30.0
    """The longest wait (a pace slot, a retry) a worker sleeps through holding the chunk; a longer one is
    recorded in the ledger and the sweeper kicks the message again when it is due. Above ``sweep_interval``."""
    poll_interval: float = 0.5
    """How often campaign handles read the ledger's counters while waiting."""
    suppressions: bool = False
    """Workers consult the suppression list (the ledger's ``suppressions`` table, which a PostgreSQL
    status store fills from STOP/START webhooks) before every provider call: one indexed read per send."""
    webhook_events_retention: float = WEBHOOK_EVENTS_RETENTION
    """Seconds a status callback's idempotency token is kept (3 days: Twilio's retries span hours at
    most); the sweeper deletes older ones in batches."""

    _NUMBERS = (
        "lease",
        "request_timeout",
        "backoff",
        "max_backoff",
        "probe_grace",
        "absent_after",
        "max_wait",
        "sweep_interval",
        "stale_after",
        "max_inline_wait",
        "poll_interval",
        "messages_per_second",
        "webhook_events_retention",
    )
    _COUNTS = ("delivery_limit", "qos", "chunk_size", "concurrency", "account_concurrency", "max_attempts")
    _NAMES = ("queue", "exchange", "dead_letter_queue")

    @classmethod
    def known_options(cls) -> frozenset[str]:
        return frozenset((*cls._NUMBERS, *cls._COUNTS, *cls._NAMES, "rates", "in_doubt", "suppressions"))

    @classmethod
    def from_dispatcher(cls, settings: DispatcherSettings) -> TaskiqSettings:
        """Check the table; raises ``ConfigurationError`` listing every problem."""
        problems: list[str] = []
        if settings.broker is None:
            problems.append("'broker' is required (amqp://…)")
        elif settings.broker.split("://", 1)[0].lower() not in ("amqp", "amqps", "redis", "rediss", "nats", "tls"):
            problems.append("'broker' must be an amqp:// (RabbitMQ), redis:// (Redis Streams) or nats:// URL")
        if settings.ledger is None or not settings.ledger.lower().startswith(("postgresql://", "postgres://")):
            problems.append("'ledger' must be a postgresql:// URL (workers on several machines share it)")
        if settings.limiter is not None and not settings.limiter.lower().startswith(("redis://", "rediss://")):
            problems.append("'limiter' must be a redis:// URL (a pace shared by every worker)")
        options = dict(settings.options)
        unknown = set(options) - cls.known_options()
        if unknown:
            problems.append(f"unknown option(s) {sorted(unknown)} (known: {', '.join(sorted(cls.known_options()))})")
        values: dict[str, Any] = {}
        for key in cls._NUMBERS:
            value = options.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                problems.append(f"{key!r} must be a positive number")
            else:
                values[key] = float(value)
        for key in cls._COUNTS:
            value = options.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{key!r} must be a positive integer")
            else:
                values[key] = value
        for key in cls._NAMES:
            value = options.get(key)
            if value is None:
                continue
            if not isinstance(value, str) or not value:
                problems.append(f"{key!r} must be a non-empty string")
            else:
                values[key] = value
        rates = options.get("rates", {})
        if not isinstance(rates, Mapping) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in rates.values()
        ):
            problems.append("'rates' must be a table of sender = messages per second (positive numbers)")
        else:
            values["rates"] = {str(k): float(v) for k, v in rates.items()}
        suppressions = options.get("suppressions", False)
        if not isinstance(suppressions, bool):
            problems.append("'suppressions' must be true or false")
        else:
            values["suppressions"] = suppressions
        in_doubt = options.get("in_doubt", "hold")
        if in_doubt not in ("hold", "probe_then_resend"):
            problems.append('\'in_doubt\' must be "hold" or "probe_then_resend"')
        else:
            values["in_doubt"] = in_doubt
        if settings.limiter is not None and not values.get("messages_per_second"):
            problems.append("a limiter needs 'messages_per_second' (each sender's pace)")
        if (values.get("messages_per_second") or values.get("rates")) and settings.limiter is None:
            problems.append("'messages_per_second' needs a shared 'limiter' (redis://…) with the taskiq kind")
        inline, sweep = values.get("max_inline_wait", 30.0), values.get("sweep_interval", 10.0)
        if inline <= sweep:
            problems.append(
                f"'max_inline_wait' ({inline:g} s) must exceed 'sweep_interval' ({sweep:g} s): a message "
                "deferred to its pace slot is kicked again by a sweep before the slot"
            )
        lease, timeout = values.get("lease", 300.0), values.get("request_timeout")
        if timeout is not None and lease <= timeout:
            problems.append(f"'lease' ({lease:g} s) must exceed 'request_timeout' ({timeout:g} s)")
        if problems:
            lines = "\n".join(f"  - {problem}" for problem in problems)
            raise ConfigurationError(f'[dispatcher] kind = "taskiq": {len(problems)} problem(s)\n{lines}')
        assert settings.broker is not None
        assert settings.ledger is not None
        return cls(broker=settings.broker, ledger=settings.ledger, limiter=settings.limiter, **values)

    def settle_time(self) -> float:
        """How long an unchanged number of UNKNOWN messages means they are held (``probe_then_resend``).

        Longer than a sweep, the quiet period and two probes: by then every one of them was
        reconciled at least once.
        """
        return self.stale_after + 2 * self.sweep_interval + 2 * self.probe_grace + self.absent_after

    def pipeline_options(self) -> dict[str, Any]:
        """The ``SendPipeline`` keyword arguments these settings name."""
        options: dict[str, Any] = {
            "in_doubt": self.in_doubt,
            "lease": self.lease,
            "max_attempts": self.max_attempts,
            "backoff": self.backoff,
            "max_backoff": self.max_backoff,
            "probe_grace": self.probe_grace,
            "absent_after": self.absent_after,
        }
        if self.request_timeout is not None:
            options["request_timeout"] = self.request_timeout
        if self.max_wait is not None:
            options["max_wait"] = self.max_wait
        options["defer_beyond"] = self.max_inline_wait
        return options

    def defer_lead(self) -> float:
        """How long before its pace slot a deferred message is due again (between a sweep and the inline limit).

        The sweeper kicks it within ``sweep_interval`` after that; the new pass then sleeps the
        rest (at most ``max_inline_wait``) and keeps the slot booked under its id.
        """
        return (self.max_inline_wait + self.sweep_interval) / 2
