"""The connector lifecycle and the batch pipeline, driven through probe connectors."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from messaging_core import (
    BatchProgress,
    Capability,
    CapabilityNotSupportedError,
    ConnectorErrorCodes,
    ConnectorState,
    ConnectorStateError,
    Endpoint,
    FailureOutcome,
    Message,
    MessageBatch,
    PluginHost,
    ProviderError,
    TextContent,
    ValidationFailedError,
    WebhookRequest,
)
from messaging_core.testing import HookRecorder

S = ConnectorState
Probe = Any  # the ProbeConnector class lives in conftest.py (tests cannot import it)
MakeProbe = Callable[..., Any]


def _message(i: int | str, text: str = "hi") -> Message:
    return Message(f"m{i}", None, Endpoint.id(f"user-{i}"), TextContent(text))


def _invalid(i: int | str) -> Message:
    return Message(f"m{i}", None, Endpoint.id(f"user-{i}"), TextContent(""))  # empty text


# -- lifecycle ---------------------------------------------------------------------------------------


async def test_lifecycle_fires_state_hooks_in_order(make_probe: MakeProbe, plugin_host: PluginHost) -> None:
    recorder = HookRecorder()
    plugin_host.register(recorder)
    probe = make_probe()
    assert probe.state is S.UNINITIALIZED
    assert not probe.is_ready
    result = await probe.initialize()
    assert result.is_success
    assert result.value is True
    assert probe.state is S.READY
    assert probe.is_ready
    await probe.shutdown()
    await probe.shutdown()  # idempotent: no second set of transitions
    assert recorder.transitions(probe) == [
        (S.UNINITIALIZED, S.INITIALIZING),
        (S.INITIALIZING, S.READY),
        (S.READY, S.SHUTTING_DOWN),
        (S.SHUTTING_DOWN, S.SHUTDOWN),
    ]
    assert (probe.initialize_calls, probe.shutdown_calls) == (1, 1)


async def test_failed_initialize_goes_to_error_and_may_be_retried(
    make_probe: MakeProbe, plugin_host: PluginHost, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = HookRecorder()
    plugin_host.register(recorder)
    probe = make_probe()
    probe.fail_initialize = True
    with caplog.at_level(logging.ERROR):
        failed = await probe.initialize()
    assert failed.error_code == ConnectorErrorCodes.INITIALIZATION_ERROR
    assert failed.error_message == "initialization failed: ConnectionError: probe: provider unreachable"
    assert probe.state is S.ERROR
    assert any("initialization failed" in r.getMessage() for r in caplog.records)
    with pytest.raises(ConnectorStateError):
        await probe.send_message(_message(1))
    probe.fail_initialize = False
    assert (await probe.initialize()).is_success
    assert recorder.transitions(probe) == [
        (S.UNINITIALIZED, S.INITIALIZING),
        (S.INITIALIZING, S.ERROR),
        (S.ERROR, S.INITIALIZING),
        (S.INITIALIZING, S.READY),
    ]
    await probe.shutdown()


async def test_error_state_can_shut_down(make_probe: MakeProbe) -> None:
    probe = make_probe()
    probe.fail_initialize = True
    await probe.initialize()
    await probe.shutdown()
    assert probe.state is S.SHUTDOWN
    assert probe.shutdown_calls == 1


async def test_second_initialize_and_initialize_after_shutdown(probe: Probe) -> None:
    again = await probe.initialize()
    assert again.error_code == ConnectorErrorCodes.ALREADY_INITIALIZED
    assert probe.initialize_calls == 1
    await probe.shutdown()
    with pytest.raises(ConnectorStateError, match="was shut down; create a new connector"):
        await probe.initialize()


async def test_concurrent_initialize_runs_once(make_probe: MakeProbe) -> None:
    probe = make_probe()
    results = await asyncio.gather(probe.initialize(), probe.initialize())
    assert sorted(r.error_code or "" for r in results) == ["", ConnectorErrorCodes.ALREADY_INITIALIZED]
    assert probe.initialize_calls == 1
    await probe.shutdown()


async def test_shutdown_of_an_uninitialized_connector(make_probe: MakeProbe) -> None:
    probe = make_probe()
    await probe.shutdown()
    assert probe.state is S.SHUTDOWN
    with pytest.raises(ConnectorStateError):
        await probe.initialize()


async def test_async_with(make_probe: MakeProbe) -> None:
    probe = make_probe()
    async with probe as entered:
        assert entered is probe
        assert probe.is_ready
    assert probe.state is S.SHUTDOWN

    failing = make_probe()
    failing.fail_initialize = True
    with pytest.raises(ProviderError) as raised:
        async with failing:
            pytest.fail("the body must not run")  # pragma: no cover
    assert raised.value.code == ConnectorErrorCodes.INITIALIZATION_ERROR
    assert failing.state is S.SHUTDOWN


async def test_async_with_refuses_invalid_settings(make_probe: MakeProbe) -> None:
    probe = make_probe()
    probe.settings.add_parameter("Unexpected", 1)
    with pytest.raises(ValidationFailedError) as raised:
        async with probe:
            pass  # pragma: no cover
    assert [i.path for i in raised.value.error.issues] == ["$.Unexpected"]
    assert probe.state is S.SHUTDOWN


async def test_resolve_settings_checks_without_initializing(make_probe: MakeProbe, plugin_host: PluginHost) -> None:
    recorder = HookRecorder()
    plugin_host.register(recorder)
    good = make_probe()
    assert good.resolve_settings().is_success
    assert good.state is S.UNINITIALIZED
    assert recorder.calls == []  # no state hook: nothing was acquired
    bad = make_probe()
    bad.settings.add_parameter("Unexpected", 1)
    result = bad.resolve_settings()
    assert result.error is not None
    assert result.error.code == ConnectorErrorCodes.INVALID_CONNECTION_SETTINGS
    assert [i.path for i in result.error.issues] == ["$.Unexpected"]
    await good.initialize()
    with pytest.raises(ConnectorStateError, match="before initialize"):
        good.resolve_settings()
    await good.shutdown()


async def test_an_error_in_shutdown_is_logged_and_the_connector_still_shuts_down(
    make_probe: MakeProbe, caplog: pytest.LogCaptureFixture
) -> None:
    probe = make_probe()
    await probe.initialize()

    async def broken_shutdown() -> None:
        raise OSError("socket already closed")

    probe._shutdown = broken_shutdown
    with caplog.at_level(logging.ERROR):
        await probe.shutdown()
    assert probe.state is S.SHUTDOWN
    assert any("error during shutdown (ignored)" in r.getMessage() for r in caplog.records)


async def test_operations_check_capability_then_state(make_probe: MakeProbe) -> None:
    probe = make_probe()
    # Capability first: the probe cannot query statuses, whatever its state.
    with pytest.raises(CapabilityNotSupportedError, match="does not support MESSAGE_STATUS_QUERY"):
        await probe.get_message_status("m1")
    with pytest.raises(CapabilityNotSupportedError):
        await probe.receive_messages(WebhookRequest.from_json({}))
    with pytest.raises(CapabilityNotSupportedError):
        await probe.receive_message_status(WebhookRequest.from_json({}))
    # Then state: sending is supported but the probe is not ready (even for an invalid message).
    with pytest.raises(ConnectorStateError, match="uninitialized, not ready"):
        await probe.send_message(_invalid(1))
    with pytest.raises(ConnectorStateError):
        await probe.send_batch([_message(1)])
    with pytest.raises(ConnectorStateError):
        await probe.test_connection()
    assert probe.started == []


async def test_health_in_every_state(make_probe: MakeProbe) -> None:
    probe = make_probe()
    before = await probe.get_health()
    assert (before.state, before.is_healthy, before.uptime) == ("uninitialized", False, timedelta(0))
    assert before.issues == ("connector is uninitialized",)
    async with probe:
        ready = await probe.get_health()
        assert (ready.state, ready.is_healthy, ready.issues) == ("ready", True, ())
        assert ready.uptime >= timedelta(0)

        async def failing_check() -> tuple[list[str], dict[str, Any]]:
            raise RuntimeError("provider status page down")

        probe._check_health = failing_check
        broken = await probe.get_health()
        assert (broken.is_healthy, broken.issues) == (False, ("health check failed: RuntimeError",))
    after = await probe.get_health()
    assert (after.state, after.is_healthy) == ("shutdown", False)


async def test_type_errors_for_wrong_arguments(probe: Probe) -> None:
    with pytest.raises(TypeError, match="expected a Message"):
        await probe.send_message({"id": "m1"})
    with pytest.raises(TypeError, match="batch item 1 is a str"):
        await probe.send_batch([_message(0), "m1"])
    with pytest.raises(TypeError, match="send_batch takes a MessageBatch or an iterable"):
        await probe.send_batch(42)


# -- sending -----------------------------------------------------------------------------------------


async def test_validation_failures_carry_every_issue_and_the_fitting_code(probe: Probe) -> None:
    bad_receiver = Message("r", None, Endpoint.phone("+1555"), TextContent("hi"))
    bad_sender = Message("s", Endpoint.email("x@example.com"), Endpoint.id("u"), TextContent("hi"))
    bad_both = Message("b", Endpoint.email("x@example.com"), Endpoint.phone("+1"), TextContent(""))
    outcomes = [await probe.send_message(m) for m in (bad_receiver, bad_sender, bad_both)]
    assert [o.error_code for o in outcomes] == [
        ConnectorErrorCodes.INVALID_RECIPIENT,
        ConnectorErrorCodes.INVALID_SENDER,
        ConnectorErrorCodes.MESSAGE_VALIDATION_FAILED,
    ]
    assert [i.path for i in outcomes[2].error.issues] == ["$.content.text", "$.receiver.type", "$.sender.type"]
    assert outcomes[2].error_message.startswith("message is invalid: $.content.text: must have at least 1")
    assert probe.started == []
    with pytest.raises(ValidationFailedError):
        outcomes[0].unwrap()


async def test_an_unexpected_exception_in_a_send_becomes_a_result(
    probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    probe.raise_on = {"m1"}
    with caplog.at_level(logging.ERROR):
        result = await probe.send_message(_message(1))
    assert result.error_code == ConnectorErrorCodes.SEND_MESSAGE_ERROR
    assert result.error_message == "unexpected RuntimeError while sending; the message may or may not have been sent"
    assert result.error is not None
    assert (result.error.outcome, result.error.retryable) == (FailureOutcome.MAY_HAVE_BEEN_SENT, False)
    assert any("unexpected error while sending m1" in r.getMessage() for r in caplog.records)


async def test_message_sent_observers_see_successes_and_failures(
    make_probe: MakeProbe, plugin_host: PluginHost
) -> None:
    recorder = HookRecorder()
    plugin_host.register(recorder)
    async with make_probe() as probe:
        await probe.send_message(_message(1))
        await probe.send_message(_invalid(2))
        await probe.send_batch([_message(3), _invalid(4)])
    assert [(m.id, r.is_success) for m, r in recorder.sent(probe)] in (
        [("m1", True), ("m2", False), ("m3", True), ("m4", False)],
        [("m1", True), ("m2", False), ("m4", False), ("m3", True)],
    )


# -- batches -----------------------------------------------------------------------------------------


def _sync_generator(count: int) -> Iterator[Message]:
    for i in range(count):
        yield _invalid(i) if i == 2 else _message(i)


async def _async_generator(count: int) -> AsyncIterator[Message]:
    for i in range(count):
        await asyncio.sleep(0)
        yield _invalid(i) if i == 2 else _message(i)


@pytest.mark.parametrize(
    "make_input",
    [
        lambda n: MessageBatch([_invalid(i) if i == 2 else _message(i) for i in range(n)], id="batch-1"),
        lambda n: [_invalid(i) if i == 2 else _message(i) for i in range(n)],
        lambda n: tuple(_invalid(i) if i == 2 else _message(i) for i in range(n)),
        _sync_generator,
        _async_generator,
    ],
    ids=["MessageBatch", "list", "tuple", "generator", "async generator"],
)
async def test_send_batch_accepts_every_kind_of_input(probe: Probe, make_input: Callable[[int], Any]) -> None:
    batch = make_input(9)
    result = await probe.send_batch(batch, concurrency=3)
    ids = [f"m{i}" for i in range(9)]
    assert list(result.results) == ids  # one result per message, in input order
    assert result.failed == ["m2"]
    assert result.results["m2"].error_code == ConnectorErrorCodes.MESSAGE_VALIDATION_FAILED
    assert sorted(probe.sent_ids) == sorted(set(ids) - {"m2"})
    assert result.counts() == {"sent": 8, "MESSAGE_VALIDATION_FAILED": 1}
    if isinstance(batch, MessageBatch):
        assert result.batch_id == "batch-1"
    else:
        assert len(result.batch_id) == 32


async def test_an_async_generator_is_streamed_not_drained(probe: Probe) -> None:
    lags: list[int] = []
    progress_seen: list[BatchProgress] = []

    async def messages() -> AsyncIterator[Message]:
        for i in range(30):
            lags.append(i - (progress_seen[-1].done if progress_seen else 0))
            yield _message(i)

    result = await probe.send_batch(messages(), concurrency=3, on_progress=progress_seen.append)
    assert len(result.results) == 30
    assert max(lags) <= 3  # never more than `concurrency` messages pulled ahead of the results
    assert progress_seen[-1].total is None  # a stream has no known length


async def test_on_progress_counts(probe: Probe) -> None:
    snapshots: list[tuple[int, int, int, int | None]] = []

    def on_progress(progress: BatchProgress) -> None:
        snapshots.append((progress.done, progress.succeeded, progress.failed, progress.total))

    await probe.send_batch([_message(0), _invalid(1), _message(2)], concurrency=1, on_progress=on_progress)
    assert snapshots == [(1, 1, 0, 3), (2, 1, 1, 3), (3, 2, 1, 3)]
    assert repr(BatchProgress(3)) == "BatchProgress(done=0, total=3, succeeded=0, failed=0)"


async def test_duplicate_ids_in_a_batch_raise(probe: Probe) -> None:
    with pytest.raises(ValueError, match="message ids must be unique within a batch"):
        await probe.send_batch(MessageBatch([_message(1), _message(2), _message(1)]))
    assert probe.started == []


async def test_duplicate_ids_in_a_stream_keep_the_first_result(probe: Probe, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = await probe.send_batch([_message(1), _invalid(1)], concurrency=1)
    assert list(result.results) == ["m1"]
    assert result.results["m1"].is_success
    assert any("duplicate message id m1" in r.getMessage() for r in caplog.records)


async def test_an_empty_batch(probe: Probe) -> None:
    result = await probe.send_batch([])
    assert dict(result.results) == {}
    assert result.is_complete_success


@pytest.mark.parametrize(("concurrency", "expected"), [(1, 1), (3, 3), (None, 4)])
async def test_concurrency_is_bounded(probe: Probe, concurrency: int | None, expected: int) -> None:
    result = await probe.send_batch([_message(i) for i in range(12)], concurrency=concurrency)
    assert result.is_complete_success
    assert probe.max_in_flight == expected  # reached, never exceeded (None: default_batch_concurrency)


async def test_batch_capability_is_required(make_probe: MakeProbe) -> None:
    schema = make_probe().schema.derive("no bulk", remove_capabilities=Capability.BULK_MESSAGING)
    async with make_probe(schema) as probe:
        with pytest.raises(CapabilityNotSupportedError):
            await probe.send_batch([_message(1)])
        with pytest.raises(CapabilityNotSupportedError):
            async for _ in probe.send_stream([_message(1)]):
                pass  # pragma: no cover
        assert (await probe.send_message(_message(1))).is_success


async def test_messages_per_second_paces_sends(probe: Probe) -> None:
    rate, count = 100.0, 12  # 10 ms apart: at least 110 ms in all
    interval = 1 / rate
    begin = time.monotonic()
    result = await probe.send_batch([_message(i) for i in range(count)], concurrency=4, messages_per_second=rate)
    assert result.is_complete_success
    starts = sorted(t - begin for t, _ in probe.started)
    # The pacer hands out slots `interval` apart from the start, shared by all workers: the k-th send
    # cannot start before slot k. (A lower bound only: a slow machine may start late, never early.)
    slack = 0.002
    for k, started in enumerate(starts):
        assert started >= k * interval - slack, (k, starts)
    for window in (0.025, 0.05, 0.1):
        assert sum(1 for s in starts if s < window) <= int(window / interval) + 1
    assert starts[-1] < (count - 1) * interval + 2.0  # generous: paced, not stalled


async def test_batch_rate_default_comes_from_the_connector(probe: Probe) -> None:
    probe.batch_rate = lambda: 200.0
    begin = time.monotonic()
    await probe.send_batch([_message(i) for i in range(5)], concurrency=5)
    assert probe.started[-1][0] - begin >= 4 / 200.0 - 0.002


async def test_unpaced_batches_do_not_wait(probe: Probe) -> None:
    begin = time.monotonic()
    await probe.send_batch([_message(i) for i in range(50)], concurrency=8)
    assert time.monotonic() - begin < 1.0


async def test_cancel_marks_the_rest_not_attempted(probe: Probe) -> None:
    cancel = asyncio.Event()

    def on_progress(progress: BatchProgress) -> None:
        if progress.done == 3:
            cancel.set()

    messages = [_message(i) for i in range(10)]
    result = await probe.send_batch(messages, concurrency=2, on_progress=on_progress, cancel=cancel)
    assert list(result.results) == [m.id for m in messages]
    sent = set(probe.sent_ids)
    assert 3 <= len(sent) <= 4  # the ones in flight when cancelled finish with their true outcome
    for message_id, outcome in result.results.items():
        if message_id in sent:
            assert outcome.is_success
        else:
            assert outcome.error_code == ConnectorErrorCodes.NOT_ATTEMPTED
            assert outcome.error is not None
            assert outcome.error.retryable
    assert result.counts() == {"sent": len(sent), "NOT_ATTEMPTED": 10 - len(sent)}


async def test_a_batch_cancelled_before_it_starts_sends_nothing(probe: Probe) -> None:
    cancel = asyncio.Event()
    cancel.set()
    result = await probe.send_batch([_message(i) for i in range(4)], cancel=cancel)
    assert set(result.counts()) == {"NOT_ATTEMPTED"}
    assert probe.started == []


async def test_cancel_while_waiting_for_the_pacer(probe: Probe) -> None:
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, cancel.set)
    result = await probe.send_batch(
        [_message(i) for i in range(4)], concurrency=1, messages_per_second=20, cancel=cancel
    )
    assert probe.sent_ids == ["m0"]
    assert [r.error_code for r in result.results.values()] == [None] + [ConnectorErrorCodes.NOT_ATTEMPTED] * 3


async def test_send_stream_yields_every_message_once(probe: Probe) -> None:
    messages = [_invalid(i) if i % 4 == 0 else _message(i) for i in range(13)]
    seen = [(m.id, r.is_success) async for m, r in probe.send_stream(messages, concurrency=3)]
    assert Counter(mid for mid, _ in seen) == Counter(m.id for m in messages)
    assert sorted(seen) == sorted((m.id, i % 4 != 0) for i, m in enumerate(messages))


async def test_leaving_a_stream_early_stops_sending(probe: Probe) -> None:
    stream = probe.send_stream(_sync_generator(1000), concurrency=2)
    async for _ in stream:
        break
    await stream.aclose()
    sent = len(probe.started)
    await asyncio.sleep(0.01)
    assert len(probe.started) == sent < 20
