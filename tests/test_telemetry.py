"""Metrics and spans (``messaging_core.telemetry``), through the paths a user takes.

Sends go through the memory channel and through the Twilio connector against its emulator;
webhooks through a ``WebhookHost`` on a loopback socket, signed as Twilio signs them. Metrics are
read from the framework's registry and from ``GET /metrics``; spans are captured with the
OpenTelemetry SDK's in-memory exporter (the SDK is a test dependency only). Metrics are
process-wide, as Prometheus metrics are: each test compares values before and after.

What must never be recorded (a phone number, a message body, a credential) is checked on every
label value and every span attribute, after a send that fails with a provider message quoting the
number and an inbound webhook carrying both.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from messaging_core import (
    ChannelConnector,
    ChannelRegistry,
    ConfigurationError,
    Message,
    MessageBuilder,
    MetricsSettings,
    enable_metrics,
    load_config,
    metrics_registry,
)
from messaging_core.campaigns import MemoryLedger, MemoryRateLimiter, SendPipeline, SendState, add_messages
from messaging_core.telemetry import campaign_chunk, metrics_enabled, serve_metrics
from messaging_core.webhooks import WebhookHost, create_webhook_app
from messaging_twilio_sms.emulator import TwilioEmulator
from messaging_twilio_sms.webhooks import SIGNATURE_HEADER, compute_signature

ACCOUNT = "AC" + "d" * 32
SENDER = "+15005550006"
SECRET_NUMBER = "+15557654321"
"""A receiver to look for everywhere afterwards."""
SECRET_BODY = "the-secret-body-7f3a9c"
INVALID_TO = "+15005550001"
"""Twilio's magic number for an invalid receiver: the provider's error message quotes it."""


# -- spans: the SDK's provider, set once for the process, recording only inside ``spans`` ------------------


class _Capture(SpanProcessor):
    """Keeps the spans that end while ``recording`` (the provider stays installed for the whole run)."""

    def __init__(self) -> None:
        self.recording = False
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        if self.recording:
            self.spans.append(span)


_CAPTURE = _Capture()


@pytest.fixture
def spans() -> Iterator[list[ReadableSpan]]:
    """The spans ended during the test (OpenTelemetry's global provider can be set only once a process)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(_CAPTURE)
        trace.set_tracer_provider(provider)
    _CAPTURE.spans = []
    _CAPTURE.recording = True
    yield _CAPTURE.spans
    _CAPTURE.recording = False


@pytest.fixture
def registry() -> CollectorRegistry:
    return enable_metrics()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


# -- helpers ------------------------------------------------------------------------------------------------


def sms(receiver: str = SECRET_NUMBER, text: str = SECRET_BODY) -> Message:
    return MessageBuilder().with_phone_sender(SENDER).with_phone_receiver(receiver).with_text_content(text).build()


@pytest.fixture
async def memory() -> AsyncIterator[ChannelConnector]:
    channels = ChannelRegistry.discover()
    parameters = {"Mailbox": uuid.uuid4().hex, "FailAddresses": [INVALID_TO]}
    connector = channels.create_connector({"channel": "memory", "parameters": parameters}, name="mem")
    async with connector:
        yield connector


@pytest.fixture
async def emulator() -> AsyncIterator[TwilioEmulator]:
    async with TwilioEmulator(status_interval=0.01, account_sid=ACCOUNT) as emu:
        yield emu


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


class Served:
    """A webhook host for Twilio connector ``sms`` (on the emulator), and a client session."""

    def __init__(self, host: WebhookHost, session: aiohttp.ClientSession, emulator: TwilioEmulator) -> None:
        self.host = host
        self.session = session
        self.emulator = emulator

    @property
    def sms(self) -> ChannelConnector:
        return self.host.connectors["sms"]

    async def get(self, path: str) -> tuple[int, str, str]:
        async with self.session.get(self.host.base_url + path) as response:
            return response.status, await response.text(), response.headers.get("Content-Type", "")

    async def post_inbound(self, *, token: str | None = None) -> int:
        """An inbound SMS from ``SECRET_NUMBER`` saying ``SECRET_BODY``, signed with ``token`` (default: right)."""
        url = self.host.base_url + "/webhooks/sms/messages"
        params = {
            "MessageSid": "SM" + uuid.uuid4().hex,
            "AccountSid": ACCOUNT,
            "From": SECRET_NUMBER,
            "To": SENDER,
            "Body": SECRET_BODY,
            "NumMedia": "0",
        }
        signature = compute_signature(token or self.emulator.auth_token, url, params)
        headers = {SIGNATURE_HEADER: signature, "Content-Type": "application/x-www-form-urlencoded"}
        async with self.session.post(url, data=urlencode(params), headers=headers) as response:
            return response.status


async def _serve(emulator: TwilioEmulator, metrics: MetricsSettings | None) -> AsyncIterator[Served]:
    sock = _bound_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    parameters = {
        "AccountSid": emulator.account_sid,
        "AuthToken": emulator.auth_token,
        "ApiBaseUrl": emulator.base_url,
        "StatusCallback": f"{base}/webhooks/sms/status",
    }
    channels = ChannelRegistry.discover()
    spec = {"channel": "twilio_sms", "schema": "TwilioSms", "parameters": parameters}
    connector = channels.create_connector(spec, name="sms")
    async with (
        WebhookHost({"sms": connector}, sock=sock, metrics=metrics) as host,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
    ):
        yield Served(host, session, emulator)


@pytest.fixture
async def served(emulator: TwilioEmulator) -> AsyncIterator[Served]:
    async for item in _serve(emulator, MetricsSettings(enabled=True)):
        yield item


@pytest.fixture
async def served_without_metrics(emulator: TwilioEmulator) -> AsyncIterator[Served]:
    async for item in _serve(emulator, None):
        yield item


# -- metrics ------------------------------------------------------------------------------------------------


async def test_sends_through_the_memory_channel_are_counted(
    registry: CollectorRegistry, memory: ChannelConnector
) -> None:
    sent = {"channel": "memory", "connector": "mem", "outcome": "sent", "error_code": ""}
    refused = {"channel": "memory", "connector": "mem", "outcome": "rejected", "error_code": "INVALID_RECIPIENT"}
    before = {
        "sent": value(registry, "messaging_sends_total", **sent),
        "refused": value(registry, "messaging_sends_total", **refused),
        "calls": value(registry, "messaging_send_duration_seconds_count", channel="memory", connector="mem"),
    }

    assert (await memory.send_message(sms())).is_success
    assert (await memory.send_message(sms())).is_success
    assert not (await memory.send_message(sms(INVALID_TO))).is_success  # the provider refuses it

    assert value(registry, "messaging_sends_total", **sent) == before["sent"] + 2
    assert value(registry, "messaging_sends_total", **refused) == before["refused"] + 1
    # Three provider calls were timed.
    calls = value(registry, "messaging_send_duration_seconds_count", channel="memory", connector="mem")
    assert calls == before["calls"] + 3


async def test_an_invalid_message_is_counted_without_a_provider_call(
    registry: CollectorRegistry, memory: ChannelConnector
) -> None:
    # No receiver: refused by validation, before any provider call.
    labels = {"channel": "memory", "connector": "mem", "outcome": "rejected", "error_code": "INVALID_RECIPIENT"}
    before = value(registry, "messaging_sends_total", **labels)
    calls = value(registry, "messaging_send_duration_seconds_count", channel="memory", connector="mem")

    result = await memory.send_message(MessageBuilder().with_phone_sender(SENDER).with_text_content("x").build())

    assert result.error is not None
    assert result.error.code == "INVALID_RECIPIENT"
    assert value(registry, "messaging_sends_total", **labels) == before + 1
    assert value(registry, "messaging_send_duration_seconds_count", channel="memory", connector="mem") == calls


async def test_a_batch_counts_each_send_and_its_pace_wait(
    registry: CollectorRegistry, memory: ChannelConnector
) -> None:
    sent = {"channel": "memory", "connector": "mem", "outcome": "sent", "error_code": ""}
    before = value(registry, "messaging_sends_total", **sent)
    waits = value(registry, "messaging_pace_wait_seconds_count", connector="mem")

    result = await memory.send_batch([sms(f"+1555000{i:04d}") for i in range(5)], messages_per_second=1000)

    assert all(r.is_success for r in result.results.values())
    assert value(registry, "messaging_sends_total", **sent) == before + 5
    assert value(registry, "messaging_pace_wait_seconds_count", connector="mem") == waits + 5


async def test_campaign_passes_are_counted_by_ledger_state(
    registry: CollectorRegistry, memory: ChannelConnector
) -> None:
    ledger = MemoryLedger()
    pipeline = SendPipeline(memory, ledger=ledger, limiter=MemoryRateLimiter(1000))
    messages = [sms(f"+1555100{i:04d}") for i in range(3)] + [sms(INVALID_TO)]
    await add_messages(ledger, memory, "campaign-1", messages)
    accepted = value(registry, "messaging_campaign_passes_total", connector="mem", state=SendState.ACCEPTED.value)
    failed = value(registry, "messaging_campaign_passes_total", connector="mem", state=SendState.FAILED.value)
    waits = value(registry, "messaging_pace_wait_seconds_count", connector="mem")

    attempts = [await pipeline.process(m) for m in messages]

    assert [a.state for a in attempts] == [SendState.ACCEPTED] * 3 + [SendState.FAILED]
    assert value(registry, "messaging_campaign_passes_total", connector="mem", state="accepted") == accepted + 3
    assert value(registry, "messaging_campaign_passes_total", connector="mem", state="failed") == failed + 1
    assert value(registry, "messaging_pace_wait_seconds_count", connector="mem") == waits + 4
    assert value(registry, "messaging_campaign_passes_in_progress", connector="mem") == 0


async def test_sends_through_the_twilio_emulator_are_counted(registry: CollectorRegistry, served: Served) -> None:
    sent = {"channel": "twilio_sms", "connector": "sms", "outcome": "sent", "error_code": ""}
    before = value(registry, "messaging_sends_total", **sent)
    failures = [
        s.labels
        for metric in registry.collect()
        if metric.name == "messaging_sends"
        for s in metric.samples
        if s.name == "messaging_sends_total" and s.labels["connector"] == "sms" and s.labels["error_code"]
    ]
    failed_before = sum(value(registry, "messaging_sends_total", **labels) for labels in failures)

    assert (await served.sms.send_message(sms())).is_success
    refused = await served.sms.send_message(sms(INVALID_TO))

    assert refused.error is not None
    assert value(registry, "messaging_sends_total", **sent) == before + 1
    failed = {**sent, "outcome": refused.error.outcome.value, "error_code": refused.error.code}
    assert value(registry, "messaging_sends_total", **failed) >= 1
    failed_after = sum(
        s.value
        for metric in registry.collect()
        if metric.name == "messaging_sends"
        for s in metric.samples
        if s.name == "messaging_sends_total" and s.labels["connector"] == "sms" and s.labels["error_code"]
    )
    assert failed_after == failed_before + 1
    assert value(registry, "messaging_send_duration_seconds_count", channel="twilio_sms", connector="sms") >= 2


async def test_webhooks_are_counted_by_kind_and_status_and_refusals_by_reason(
    registry: CollectorRegistry, served: Served
) -> None:
    accepted = value(registry, "messaging_webhook_requests_total", connector="sms", kind="messages", status="200")
    forbidden = value(registry, "messaging_webhook_requests_total", connector="sms", kind="messages", status="403")
    refusals = value(
        registry, "messaging_webhook_signatures_refused_total", connector="sms", reason="INVALID_SIGNATURE"
    )

    assert await served.post_inbound() == 200
    assert await served.post_inbound(token="not-the-auth-token") == 403

    assert value(registry, "messaging_webhook_requests_total", connector="sms", kind="messages", status="200") == (
        accepted + 1
    )
    assert value(registry, "messaging_webhook_requests_total", connector="sms", kind="messages", status="403") == (
        forbidden + 1
    )
    assert value(
        registry, "messaging_webhook_signatures_refused_total", connector="sms", reason="INVALID_SIGNATURE"
    ) == (refusals + 1)


async def test_metrics_answers_on_the_webhook_host_when_enabled(served: Served) -> None:
    assert (await served.sms.send_message(sms())).is_success

    status, text, content_type = await served.get("/metrics")

    assert status == 200
    assert content_type.startswith("text/plain")
    assert 'messaging_sends_total{channel="twilio_sms",connector="sms",error_code="",outcome="sent"}' in text
    for declared in (
        "# TYPE messaging_sends_total counter",
        "# TYPE messaging_send_duration_seconds histogram",
        "# TYPE messaging_webhook_requests_total counter",
        "# TYPE messaging_webhook_signatures_refused_total counter",
        "# TYPE messaging_campaign_passes_total counter",
        "# TYPE messaging_campaign_passes_in_progress gauge",
        "# TYPE messaging_pace_wait_seconds histogram",
    ):
        assert declared in text


async def test_metrics_is_404_on_the_webhook_host_when_not_enabled(served_without_metrics: Served) -> None:
    status, _, _ = await served_without_metrics.get("/metrics")
    assert status == 404
    status, _, _ = await served_without_metrics.get("/healthz")
    assert status == 200


async def test_the_framework_registry_is_its_own_and_merges_into_the_default() -> None:
    import prometheus_client

    registry = enable_metrics()

    assert metrics_enabled()
    assert metrics_registry() is registry
    assert enable_metrics() is registry  # idempotent
    assert registry is not prometheus_client.REGISTRY
    merged = CollectorRegistry(auto_describe=True)
    merged.register(registry)  # what an application does with prometheus_client.REGISTRY
    assert b"messaging_sends_total" in prometheus_client.generate_latest(merged)


async def test_a_worker_style_metrics_endpoint_answers_until_closed() -> None:
    server = await serve_metrics("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session, session.get(server.url) as response:
            assert response.status == 200
            assert "messaging_sends_total" in await response.text()
    finally:
        await server.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session, session.get(server.url):
            pass


async def test_a_metrics_port_in_use_is_one_clear_error() -> None:
    with _bound_socket() as taken:
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"metrics: cannot listen on 127.0.0.1:{port}"):
            await serve_metrics("127.0.0.1", port)


# -- spans --------------------------------------------------------------------------------------------------


async def test_one_send_span_per_provider_call(spans: list[ReadableSpan], memory: ChannelConnector) -> None:
    await memory.send_message(sms())
    await memory.send_message(sms(INVALID_TO))
    await memory.send_message(MessageBuilder().with_phone_sender(SENDER).with_text_content("x").build())  # invalid

    sends = [s for s in spans if s.name == "send mem"]
    assert len(sends) == 2  # the invalid message made no provider call
    ok, refused = sends
    assert ok.kind is SpanKind.CLIENT
    assert dict(ok.attributes or {}) == {
        "messaging.system": "memory",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging_core.channel": "memory",
        "messaging_core.connector": "mem",
        "messaging_core.outcome": "sent",
    }
    assert ok.status.status_code is StatusCode.UNSET
    assert (refused.attributes or {})["error.type"] == "INVALID_RECIPIENT"
    assert (refused.attributes or {})["messaging_core.outcome"] == "rejected"
    assert refused.status.status_code is StatusCode.ERROR


async def test_webhook_spans_say_the_kind_and_answer(spans: list[ReadableSpan], served: Served) -> None:
    assert await served.post_inbound() == 200
    assert await served.post_inbound(token="not-the-auth-token") == 403

    webhooks = [s for s in spans if s.name == "webhook messages"]
    assert len(webhooks) == 2
    accepted, refused = webhooks
    assert accepted.kind is SpanKind.CONSUMER
    assert (accepted.attributes or {})["http.response.status_code"] == 200
    assert (accepted.attributes or {})["messaging.system"] == "twilio"
    assert (accepted.attributes or {})["messaging_core.connector"] == "sms"
    assert (refused.attributes or {})["http.response.status_code"] == 403
    assert (refused.attributes or {})["messaging_core.webhook.refused"] == "INVALID_SIGNATURE"


async def test_a_campaign_chunk_span_holds_its_sends(spans: list[ReadableSpan], memory: ChannelConnector) -> None:
    ledger = MemoryLedger()
    pipeline = SendPipeline(memory, ledger=ledger)
    messages = [sms(f"+1555200{i:04d}") for i in range(2)]
    await add_messages(ledger, memory, "campaign-2", messages)

    with campaign_chunk(len(messages)):
        for message in messages:
            await pipeline.process(message)

    (chunk,) = [s for s in spans if s.name == "process chunk"]
    assert (chunk.attributes or {})["messaging.batch.message_count"] == 2
    sends = [s for s in spans if s.name == "send mem"]
    assert len(sends) == 2
    assert all(s.parent is not None and s.parent.span_id == chunk.context.span_id for s in sends)


async def test_an_exception_in_a_provider_marks_the_span_by_class_only(spans: list[ReadableSpan]) -> None:
    channels = ChannelRegistry.discover()
    connector = channels.create_connector({"channel": "memory"}, name="boom")

    async def explode(message: Message) -> Any:
        raise ValueError(f"cannot send to {SECRET_NUMBER}")  # a careless provider quoting its input

    connector._send_message = explode  # type: ignore[method-assign]
    async with connector:
        result = await connector.send_message(sms())

    assert result.error is not None
    (span,) = [s for s in spans if s.name == "send boom"]
    assert (span.attributes or {})["error.type"] == "ValueError"
    assert not span.events  # no exception event: its text would quote the number
    assert SECRET_NUMBER not in json.dumps([dict(span.attributes or {}), span.status.description])


# -- nothing secret anywhere --------------------------------------------------------------------------------


async def test_no_number_body_or_secret_in_any_label_or_attribute(
    spans: list[ReadableSpan], registry: CollectorRegistry, served: Served, memory: ChannelConnector
) -> None:
    await served.sms.send_message(sms())
    refused = await served.sms.send_message(sms(INVALID_TO))
    assert refused.error is not None
    assert INVALID_TO in refused.error.message
    await memory.send_message(sms())
    assert await served.post_inbound() == 200
    assert await served.post_inbound(token="not-the-auth-token") == 403
    assert spans  # something was recorded

    forbidden = [SECRET_NUMBER, SECRET_BODY, INVALID_TO, SENDER, served.emulator.auth_token, ACCOUNT]
    labels = [v for metric in registry.collect() for s in metric.samples for v in s.labels.values()]
    recorded = [
        *labels,
        *(s.name for s in spans),
        *(str(v) for s in spans for v in (s.attributes or {}).values()),
        *(str(v) for s in spans for e in s.events for v in (e.attributes or {}).values()),
        *(s.status.description or "" for s in spans),
    ]
    leaks = [(secret, text) for secret in forbidden for text in recorded if secret in text]
    assert leaks == []
    status, text, _ = await served.get("/metrics")
    assert status == 200
    assert [secret for secret in forbidden if secret in text] == []


# -- configuration and imports ------------------------------------------------------------------------------


def _run_python(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def test_metrics_off_imports_neither_prometheus_nor_opentelemetry() -> None:
    done = _run_python(
        """
        import asyncio, sys
        from messaging_core import ChannelRegistry, MessageBuilder, MetricsSettings
        from messaging_core.webhooks import create_webhook_app

        async def main():
            # The built-in channels only: a plugin's own dependencies may import OpenTelemetry
            # (FastAPI does when it is installed, and taskiq imports FastAPI).
            registry = ChannelRegistry()
            async with registry.create_connector({"channel": "memory"}, name="m") as connector:
                message = MessageBuilder().with_phone_sender("+15005550006").with_phone_receiver("+15551230001") \\
                    .with_text_content("hi").build()
                assert (await connector.send_message(message)).is_success
                create_webhook_app({"m": connector}, metrics=MetricsSettings(enabled=False))

        asyncio.run(main())
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("prometheus_client", "opentelemetry"))
        print(loaded)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


BLOCK_PROMETHEUS = "import sys; sys.modules['prometheus_client'] = None  # as if the extra were not installed\n"


def test_metrics_enabled_without_the_extra_names_it() -> None:
    done = _run_python(
        BLOCK_PROMETHEUS
        + """
from messaging_core import ConfigurationError, MetricsSettings
from messaging_core.webhooks import create_webhook_app
try:
    create_webhook_app({}, metrics=MetricsSettings(enabled=True))
except ConfigurationError as err:
    print(err)
"""
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "metrics are enabled but prometheus-client is not installed: pip install 'pluggable-messaging[metrics]'"
    )


def test_messaging_serve_with_metrics_and_without_the_extra_fails_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "messaging.toml"
    config.write_text('[connectors.m]\nchannel = "memory"\n\n[metrics]\nenabled = true\n')
    done = _run_python(
        BLOCK_PROMETHEUS + "from messaging_core.cli import main; main()",
        "serve",
        "--config",
        str(config),
        "--port",
        "0",
    )
    assert done.returncode != 0
    assert "pip install 'pluggable-messaging[metrics]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_metrics_table_is_read_with_its_defaults(tmp_path: Path) -> None:
    config = tmp_path / "messaging.toml"
    config.write_text('[connectors.m]\nchannel = "memory"\n')
    assert load_config(config).metrics == MetricsSettings(enabled=False, host="127.0.0.1", port=9464)
    config.write_text(
        '[connectors.m]\nchannel = "memory"\n\n[metrics]\nenabled = true\nhost = "0.0.0.0"\nport = 9500\n'
    )
    assert load_config(config).metrics == MetricsSettings(enabled=True, host="0.0.0.0", port=9500)


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"enabled": "yes"}, "$.metrics.enabled: must be of type boolean"),
        ({"port": 70000}, "$.metrics.port: "),
        ({"port": "9464"}, "$.metrics.port: must be of type integer"),
        ({"enable": True}, "$.metrics.enable: "),
        ({"host": ""}, "$.metrics.host: "),
    ],
)
def test_a_bad_metrics_table_names_the_key(tmp_path: Path, table: Mapping[str, Any], problem: str) -> None:
    config = tmp_path / "messaging.json"
    config.write_text(json.dumps({"connectors": {"m": {"channel": "memory"}}, "metrics": table}))
    with pytest.raises(ConfigurationError) as caught:
        load_config(config)
    assert f"{config}: {problem}" in str(caught.value)


async def test_create_webhook_app_adds_metrics_only_when_enabled(memory: ChannelConnector) -> None:
    def paths(metrics: MetricsSettings | None) -> set[str]:
        app = create_webhook_app({"mem": memory}, metrics=metrics)
        return {r.resource.canonical for r in app.router.routes() if r.resource is not None}

    assert "/metrics" not in paths(None)
    assert "/metrics" not in paths(MetricsSettings())
    assert "/metrics" in paths(MetricsSettings(enabled=True))


# -- the docs list every metric and span --------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "observability.md"


def test_every_metric_and_span_is_documented(registry: CollectorRegistry) -> None:
    text = DOCS.read_text(encoding="utf-8")
    exposed = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in registry.collect()
        if family.name.startswith("messaging_")
    }
    assert len(exposed) == 7
    assert [name for name in sorted(exposed) if f"| `{name}` |" not in text] == []
    for span in ("`send <connector>`", "`webhook <kind>`", "`process chunk`"):
        assert f"| {span} |" in text
