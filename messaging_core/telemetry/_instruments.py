"""The metrics, the tracer and the instrumentation points (the API is ``messaging_core.telemetry``'s)."""

from __future__ import annotations

import contextlib
import enum
import sys
import time
from collections.abc import Awaitable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from messaging_core.errors import ConfigurationError
from messaging_core.results import ConnectorResult, SendResult

if TYPE_CHECKING:
    from aiohttp import web
    from opentelemetry.trace import Span, Tracer, TracerProvider
    from prometheus_client import CollectorRegistry

    from messaging_core.connector import ChannelConnector

METRICS_EXTRA = "pluggable-messaging[metrics]"
"""What to install for metrics (it brings ``prometheus-client``)."""

_TRACER_NAME = "messaging_core"

# Seconds: a provider call is tens to hundreds of milliseconds; a timeout is tens of seconds.
_SEND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Seconds: most sends wait nothing; a sender's pace spreads a campaign over seconds to minutes.
_PACE_BUCKETS = (0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class _Metrics:
    """The framework's metrics, in their own registry."""

    def __init__(self) -> None:
        self._children: dict[tuple[object, ...], Any] = {}
        """Labelled children by (metric, labels...): ``labels()`` locks and checks on every call."""
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.sends = Counter(
            "messaging_sends",
            "Sends (ChannelConnector.attempt: single, batch and campaign), by outcome and error code.",
            ["channel", "connector", "outcome", "error_code"],
            registry=registry,
        )
        self.send_duration = Histogram(
            "messaging_send_duration_seconds",
            "Duration of provider calls (validation and pace waits excluded).",
            ["channel", "connector"],
            buckets=_SEND_BUCKETS,
            registry=registry,
        )
        self.webhook_requests = Counter(
            "messaging_webhook_requests",
            "Webhooks handled by the webhook service, by route kind and answer status.",
            ["connector", "kind", "status"],
            registry=registry,
        )
        self.signatures_refused = Counter(
            "messaging_webhook_signatures_refused",
            "Webhooks refused because the provider's signature or account did not check out (answered 403).",
            ["connector", "reason"],
            registry=registry,
        )
        self.campaign_passes = Counter(
            "messaging_campaign_passes",
            "Passes of campaign messages through the send pipeline, by the message's ledger state after the pass.",
            ["connector", "state"],
            registry=registry,
        )
        self.campaign_in_progress = Gauge(
            "messaging_campaign_passes_in_progress",
            "Passes of campaign messages running in this process (pace wait included).",
            ["connector"],
            registry=registry,
        )
        self.pace_wait = Histogram(
            "messaging_pace_wait_seconds",
            "Seconds a send waited for its rate limiter's slot (campaigns and batches).",
            ["connector"],
            buckets=_PACE_BUCKETS,
            registry=registry,
        )

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, made once."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found


_metrics: _Metrics | None = None
"""Set by ``enable_metrics()``; None: nothing is recorded."""

_tracer: tuple[TracerProvider, Tracer] | None = None
"""The application's tracer provider and the framework's tracer from it."""


# -- public API --------------------------------------------------------------------------------------------


def enable_metrics() -> CollectorRegistry:
    """Record the framework's metrics from now on, in its own registry, and return that registry.

    Idempotent: the webhook host and the workers call it when ``[metrics] enabled = true``; an
    application may call it itself and expose the registry where it likes (it is not the global
    default: ``prometheus_client.REGISTRY.register(enable_metrics())`` merges it there). Raises
    ``ConfigurationError`` naming the extra to install when ``prometheus-client`` is missing.
    """
    global _metrics
    if _metrics is None:
        try:
            import prometheus_client  # noqa: F401 - only to tell a missing extra from other errors
        except ImportError as err:
            raise ConfigurationError(
                f"metrics are enabled but prometheus-client is not installed: pip install '{METRICS_EXTRA}'"
            ) from err
        _metrics = _Metrics()
    return _metrics.registry


def metrics_enabled() -> bool:
    """Whether the framework records metrics (``enable_metrics()`` ran)."""
    return _metrics is not None


def metrics_registry() -> CollectorRegistry | None:
    """The framework's ``CollectorRegistry``, or None while metrics are not enabled."""
    return _metrics.registry if _metrics is not None else None


def render_metrics() -> tuple[bytes, str]:
    """The framework's metrics in the Prometheus text format, and its content type (enables metrics)."""
    registry = enable_metrics()
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(registry), CONTENT_TYPE_LATEST


async def metrics_view(request: web.Request) -> web.Response:
    """An aiohttp handler answering ``render_metrics()`` (the webhook host's ``GET /metrics``)."""
    from aiohttp import web

    body, content_type = render_metrics()
    return web.Response(body=body, headers={"Content-Type": content_type})


class MetricsServer:
    """``GET /metrics`` on a socket of its own (a worker process); ``close()`` stops it."""

    def __init__(self, runner: web.AppRunner, url: str) -> None:
        self._runner = runner
        self.url = url
        """``http://host:port/metrics`` actually bound (with port 0, the port the system picked)."""

    def __repr__(self) -> str:
        return f"<MetricsServer {self.url}>"

    async def close(self) -> None:
        await self._runner.cleanup()


async def serve_metrics(host: str, port: int) -> MetricsServer:
    """Enable metrics and answer ``GET /metrics`` on ``host:port`` until ``close()`` (port 0: any free port).

    Raises ``OSError`` naming the address when it cannot listen (the port is in use).
    """
    from aiohttp import web

    enable_metrics()
    app = web.Application()
    app.router.add_get("/metrics", metrics_view)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as err:
        await runner.cleanup()
        raise OSError(err.errno, f"metrics: cannot listen on {host}:{port}: {err.strerror or err}") from err
    bound_host, bound_port = runner.addresses[0][:2]
    where = f"[{bound_host}]" if ":" in bound_host else bound_host
    return MetricsServer(runner, f"http://{where}:{bound_port}/metrics")


# -- instrumentation points --------------------------------------------------------------------------------


def _current_tracer() -> Tracer | None:
    """The tracer of the application's tracer provider; None until it configured one.

    Without OpenTelemetry imported this is one dictionary lookup. Imported (by the application,
    or by another library) but with no provider set, the API's proxy would make non-recording
    spans: none is made at all.
    """
    global _tracer
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    if _tracer is None or _tracer[0] is not provider:
        _tracer = (provider, provider.get_tracer(_TRACER_NAME))
    return _tracer[1]


def _span_kind(name: str) -> Any:
    return getattr(sys.modules["opentelemetry.trace"].SpanKind, name)


def _set_error(span: Span, error_type: str) -> None:
    """Mark ``span`` failed with a code or an exception's class name (never an error's text: it may quote input)."""
    trace = sys.modules["opentelemetry.trace"]
    span.set_attribute("error.type", error_type)
    span.set_status(trace.Status(trace.StatusCode.ERROR))


def _outcome(result: ConnectorResult[SendResult]) -> tuple[str, str]:
    error = result.error
    if error is None:
        return "sent", ""
    return error.outcome.value, error.code


def _connector_attributes(connector: ChannelConnector) -> dict[str, str]:
    return {
        "messaging.system": connector.schema.provider,
        "messaging_core.channel": connector.channel_name,
        "messaging_core.connector": connector.name,
    }


async def provider_call(
    connector: ChannelConnector, call: Awaitable[ConnectorResult[SendResult]]
) -> ConnectorResult[SendResult]:
    """Await ``call``, one provider call of ``connector``, inside a ``send`` span and timed.

    An exception from the call is marked on the span by its class name and propagates.
    """
    metrics = _metrics
    tracer = _current_tracer()
    if metrics is None and tracer is None:
        return await call
    started = time.perf_counter()
    try:
        if tracer is None:
            return await call
        attributes = {
            **_connector_attributes(connector),
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
        }
        with tracer.start_as_current_span(
            f"send {connector.name}",
            kind=_span_kind("CLIENT"),
            attributes=attributes,
            record_exception=False,  # an exception's text may quote the message: only its class is kept
            set_status_on_exception=False,
        ) as span:
            try:
                result = await call
            except Exception as err:
                _set_error(span, type(err).__qualname__)
                raise
            outcome, code = _outcome(result)
            span.set_attribute("messaging_core.outcome", outcome)
            if code:
                _set_error(span, code)
            return result
    finally:
        if metrics is not None:
            duration = metrics.child(metrics.send_duration, connector.channel_name, connector.name)
            duration.observe(time.perf_counter() - started)


def send_attempted(connector: ChannelConnector, result: ConnectorResult[SendResult]) -> None:
    """Count one send's outcome (``ChannelConnector.attempt``: provider called or not)."""
    metrics = _metrics
    if metrics is not None:
        outcome, code = _outcome(result)
        metrics.child(metrics.sends, connector.channel_name, connector.name, outcome, code).inc()


def paced(connector: ChannelConnector, seconds: float) -> None:
    """A send waits ``seconds`` for its rate limiter's slot (0: none)."""
    metrics = _metrics
    if metrics is not None:
        metrics.child(metrics.pace_wait, connector.name).observe(max(0.0, seconds))


class _Pass(Protocol):
    @property
    def state(self) -> enum.Enum: ...


P = TypeVar("P", bound=_Pass)


async def campaign_pass(connector: ChannelConnector, passing: Awaitable[P]) -> P:
    """Await one pass of a campaign message (``SendPipeline.process``): counted by the state it leaves."""
    metrics = _metrics
    if metrics is None:
        return await passing
    in_progress = metrics.child(metrics.campaign_in_progress, connector.name)
    in_progress.inc()
    try:
        attempt = await passing
    finally:
        in_progress.dec()
    metrics.child(metrics.campaign_passes, connector.name, str(attempt.state.value)).inc()
    return attempt


@contextlib.contextmanager
def campaign_chunk(size: int) -> Iterator[None]:
    """A ``process chunk`` span around a dispatcher's work on a chunk of ``size`` campaign messages."""
    tracer = _current_tracer()
    if tracer is None:
        yield
        return
    attributes: dict[str, str | int] = {
        "messaging.operation.type": "process",
        "messaging.operation.name": "send_chunk",
        "messaging.batch.message_count": size,
    }
    with tracer.start_as_current_span(
        "process chunk",
        kind=_span_kind("CONSUMER"),
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield
        except Exception as err:
            _set_error(span, type(err).__qualname__)
            raise


class _Answer(Protocol):
    @property
    def status(self) -> int: ...


A = TypeVar("A", bound=_Answer)


async def webhook_handled(connector: ChannelConnector | None, route: str, kind: str, handling: Awaitable[A]) -> A:
    """Await the handling of one webhook for route ``route`` (``connector`` None: no such route).

    Counted by answer status; the span is ``webhook <kind>``.
    """
    metrics = _metrics
    tracer = _current_tracer()
    # A route no connector serves is counted without its name: whoever posts there picks it.
    name = route if connector is not None else ""
    if tracer is None:
        answer = await handling
    else:
        attributes = {
            "messaging.operation.type": "process",
            "messaging.operation.name": f"webhook {kind}",
            "messaging_core.webhook.kind": kind,
        }
        if connector is not None:
            attributes.update(_connector_attributes(connector))
        with tracer.start_as_current_span(
            f"webhook {kind}",
            kind=_span_kind("CONSUMER"),
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                answer = await handling
            except Exception as err:
                _set_error(span, type(err).__qualname__)
                raise
            span.set_attribute("http.response.status_code", answer.status)
            if answer.status >= 500:
                _set_error(span, str(answer.status))
    if metrics is not None:
        metrics.child(metrics.webhook_requests, name, kind, str(answer.status)).inc()
    return answer


def webhook_refused(route: str, code: str) -> None:
    """A webhook of route ``route`` was refused for ``code`` (``INVALID_SIGNATURE``, ``UNEXPECTED_ACCOUNT``)."""
    metrics = _metrics
    if metrics is not None:
        metrics.child(metrics.signatures_refused, route, code).inc()
    tracer = _current_tracer()
    if tracer is not None:
        span = sys.modules["opentelemetry.trace"].get_current_span()
        span.set_attribute("messaging_core.webhook.refused", code)
