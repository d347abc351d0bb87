"""Metrics and traces: Prometheus metrics in a registry of the framework's own, OpenTelemetry spans.

Both cost nothing until asked for, and neither is a dependency of the core:

- **Metrics** are recorded once ``enable_metrics()`` ran: ``[metrics] enabled = true`` makes the
  webhook host (``/metrics``) and the workers (a small HTTP endpoint) call it. It imports
  ``prometheus_client`` (the extra ``pluggable-messaging[metrics]``) and creates the metrics in a
  ``CollectorRegistry`` of the framework's own, never the global default, so that an application
  exposes it where it likes: ``prometheus_client.REGISTRY.register(enable_metrics())`` merges it
  into the default one. Until then nothing is imported and every instrumentation point returns at
  once.
- **Spans** go through the OpenTelemetry API once the application configured a tracer provider
  (``trace.set_tracer_provider``, or the ``opentelemetry-instrument`` launcher): it imported
  ``opentelemetry.trace``, which is looked up in ``sys.modules``, never imported here. Until
  then, and without OpenTelemetry installed, no span is made at all.

Labels and attributes say which connector, which channel, which outcome and which error code;
never a phone number, a message body, a message id (one may be chosen by the caller) or a
setting. ``docs/observability.md`` lists every metric and span.

The instrumentation points (``provider_call``, ``send_attempted``, ``paced``, ``campaign_pass``,
``campaign_chunk``, ``webhook_handled``, ``webhook_refused``) are called by the framework; a
dispatcher of a plugin calls ``campaign_chunk`` around the chunks it works on.
"""

from __future__ import annotations

from messaging_core.telemetry._instruments import (
    METRICS_EXTRA,
    MetricsServer,
    campaign_chunk,
    campaign_pass,
    enable_metrics,
    metrics_enabled,
    metrics_registry,
    metrics_view,
    paced,
    provider_call,
    render_metrics,
    send_attempted,
    serve_metrics,
    webhook_handled,
    webhook_refused,
)

__all__ = [
    "METRICS_EXTRA",
    "MetricsServer",
    "campaign_chunk",
    "campaign_pass",
    "enable_metrics",
    "metrics_enabled",
    "metrics_registry",
    "metrics_view",
    "paced",
    "provider_call",
    "render_metrics",
    "send_attempted",
    "serve_metrics",
    "webhook_handled",
    "webhook_refused",
]
