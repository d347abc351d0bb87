"""Results, error codes, ``unwrap()`` and the forward-only message status."""

from __future__ import annotations

import itertools
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messaging_core import (
    AuthenticationError,
    BatchSendResult,
    ConnectorErrorCodes,
    ConnectorOperationError,
    ConnectorResult,
    FailureOutcome,
    MessageStatus,
    ProviderError,
    RateLimitedError,
    SendResult,
    StatusUpdatesResult,
    ValidationFailedError,
    ValidationIssue,
    WebhookRefusedError,
)
from messaging_core.campaigns import SendOutcome, SendState

# -- ConnectorResult ---------------------------------------------------------------------------------


def test_success_result() -> None:
    result = ConnectorResult.success(42)
    assert result.is_success
    assert (result.value, result.error, result.error_code, result.error_message) == (42, None, None, None)
    assert result.unwrap() == 42


def test_failure_result_carries_everything() -> None:
    issue = ValidationIssue("$.receiver.address", "must match the pattern ^\\+", "INVALID_FORMAT")
    result: ConnectorResult[SendResult] = ConnectorResult.failure(
        ConnectorErrorCodes.INVALID_RECIPIENT,
        "bad receiver",
        issues=[issue],
        retryable=False,
        details={"http_status": 400},
    )
    assert not result.is_success
    assert result.value is None
    assert result.error_code == "INVALID_RECIPIENT"
    assert result.error_message == "bad receiver"
    assert result.error is not None
    assert result.error.issues == (issue,)
    assert result.error.details == {"http_status": 400}
    assert result.error.retryable is False


@pytest.mark.parametrize(
    ("code", "exception"),
    [
        (ConnectorErrorCodes.MESSAGE_VALIDATION_FAILED, ValidationFailedError),
        (ConnectorErrorCodes.INVALID_RECIPIENT, ValidationFailedError),
        (ConnectorErrorCodes.INVALID_SENDER, ValidationFailedError),
        (ConnectorErrorCodes.INVALID_CONNECTION_SETTINGS, ValidationFailedError),
        (ConnectorErrorCodes.MISSING_CREDENTIALS, ValidationFailedError),
        (ConnectorErrorCodes.AUTHENTICATION_FAILED, AuthenticationError),
        (ConnectorErrorCodes.RATE_LIMITED, RateLimitedError),
        (ConnectorErrorCodes.INVALID_SIGNATURE, WebhookRefusedError),
        (ConnectorErrorCodes.UNEXPECTED_ACCOUNT, WebhookRefusedError),
        (ConnectorErrorCodes.NETWORK_ERROR, ProviderError),
        (ConnectorErrorCodes.OUTCOME_UNKNOWN, ProviderError),
        (ConnectorErrorCodes.NOT_ATTEMPTED, ProviderError),
        ("ACME_SPECIFIC_CODE", ProviderError),
    ],
)
def test_unwrap_raises_the_mapped_exception(code: str, exception: type[ConnectorOperationError]) -> None:
    result: ConnectorResult[int] = ConnectorResult.failure(code, "nope", retryable=True)
    with pytest.raises(exception) as raised:
        result.unwrap()
    assert type(raised.value) is exception
    assert raised.value.code == code
    assert raised.value.error is result.error
    assert str(raised.value) == f"{code}: nope"


def test_error_codes_are_stable() -> None:
    codes = {name: value for name, value in vars(ConnectorErrorCodes).items() if name.isupper()}
    assert all(name == value for name, value in codes.items())
    assert set(codes) == {
        "ALREADY_INITIALIZED",
        "INITIALIZATION_ERROR",
        "MISSING_CREDENTIALS",
        "INVALID_CONNECTION_SETTINGS",
        "CONNECTION_TEST_FAILED",
        "MESSAGE_VALIDATION_FAILED",
        "INVALID_RECIPIENT",
        "INVALID_SENDER",
        "RECIPIENT_UNSUBSCRIBED",
        "AUTHENTICATION_FAILED",
        "RATE_LIMITED",
        "TEMPORARY_FAILURE",
        "NETWORK_ERROR",
        "SEND_MESSAGE_ERROR",
        "OUTCOME_UNKNOWN",
        "NOT_ATTEMPTED",
        "STATUS_QUERY_ERROR",
        "RECEIVE_ERROR",
        "CANCEL_ERROR",
        "NOT_CANCELLABLE",
        "HEALTH_CHECK_ERROR",
        "INVALID_SIGNATURE",
        "UNEXPECTED_ACCOUNT",
    }


# -- BatchSendResult ---------------------------------------------------------------------------------


def test_batch_result_partitions_and_counts() -> None:
    ok = ConnectorResult.success(SendResult("a", "R1", MessageStatus.QUEUED))
    invalid: ConnectorResult[SendResult] = ConnectorResult.failure(ConnectorErrorCodes.MESSAGE_VALIDATION_FAILED, "x")
    skipped: ConnectorResult[SendResult] = ConnectorResult.failure(ConnectorErrorCodes.NOT_ATTEMPTED, "x")
    result = BatchSendResult("b1", {"a": ok, "b": invalid, "c": skipped, "d": ok})
    assert result.succeeded == ["a", "d"]
    assert result.failed == ["b", "c"]
    assert not result.is_complete_success
    assert result.counts() == {"sent": 2, "MESSAGE_VALIDATION_FAILED": 1, "NOT_ATTEMPTED": 1}
    assert BatchSendResult("b2", {"a": ok}).is_complete_success


def test_status_history_latest() -> None:
    assert StatusUpdatesResult("m", []).latest is None


# -- MessageStatus -----------------------------------------------------------------------------------

FINAL = {s for s in MessageStatus if s.is_final}


def test_forward_moves_and_refusals() -> None:
    S = MessageStatus
    assert S.reconcile(None, S.SENT) is S.SENT
    assert S.reconcile(S.QUEUED, S.SENT) is S.SENT
    assert S.reconcile(S.SENT, S.QUEUED) is S.SENT  # a late "queued" callback does not go back
    assert S.reconcile(S.DELIVERED, S.SENT) is S.DELIVERED
    assert S.reconcile(S.DELIVERED, S.READ) is S.READ  # read receipts after delivery
    assert S.reconcile(S.DELIVERED, S.DELIVERY_FAILED) is S.DELIVERED  # final sticks
    assert S.reconcile(S.DELIVERY_FAILED, S.DELIVERED) is S.DELIVERY_FAILED
    assert S.reconcile(S.CANCELLED, S.SENT) is S.CANCELLED
    assert S.reconcile(S.READ, S.DELETED) is S.DELETED
    assert not S.SENT.can_become(S.SENT)


def test_final_and_failure_sets() -> None:
    S = MessageStatus
    assert {S.ROUTE_FAILED, S.DELIVERED, S.DELIVERY_FAILED, S.CANCELLED, S.RECEIVED, S.READ, S.DELETED} == FINAL
    assert {s for s in S if s.is_failure} == {S.ROUTE_FAILED, S.DELIVERY_FAILED, S.CANCELLED}
    assert all(s.rank >= S.UNKNOWN.rank for s in S)


def _allowed(previous: MessageStatus, current: MessageStatus) -> bool:
    """The documented rule, written independently of ``can_become``."""
    if previous is current:
        return True
    if previous.is_final:
        return (previous, current) == (MessageStatus.DELIVERED, MessageStatus.READ) or current is MessageStatus.DELETED
    return current.rank > previous.rank


@settings(deadline=None)  # timing varies on shared CI machines; correctness is the point
@given(st.permutations(list(MessageStatus)))
def test_reconciling_a_permutation_never_moves_backwards(updates: list[MessageStatus]) -> None:
    history = []
    current: MessageStatus | None = None
    for update in updates:
        new = MessageStatus.reconcile(current, update)
        if current is not None:
            assert new.rank >= current.rank, f"{current} -> {new}"
            assert _allowed(current, new), f"{current} -> {new}"
        current = new
        history.append(current)
    # Once a final status is reached, only read-after-delivered and deleted may follow.
    for earlier, later in itertools.pairwise(history):
        if earlier.is_final and later is not earlier:
            assert later in (MessageStatus.READ, MessageStatus.DELETED)


@settings(deadline=None)  # timing varies on shared CI machines; correctness is the point
@given(st.lists(st.sampled_from(MessageStatus), min_size=1, max_size=12))
def test_reconcile_result_is_one_of_the_updates_and_at_least_as_advanced_as_the_first(
    updates: list[MessageStatus],
) -> None:
    final = reduce(MessageStatus.reconcile, updates, None)  # type: ignore[arg-type]
    assert final in updates
    assert final.rank >= updates[0].rank


@settings(deadline=None)  # timing varies on shared CI machines; correctness is the point
@given(
    st.sampled_from(sorted(FINAL - {MessageStatus.DELIVERED, MessageStatus.DELETED})), st.sampled_from(MessageStatus)
)
def test_final_statuses_stick(final: MessageStatus, update: MessageStatus) -> None:
    if update is not MessageStatus.DELETED:
        assert MessageStatus.reconcile(final, update) is final


def test_failure_outcome_defaults_from_retryable_and_refuses_a_retryable_maybe_sent() -> None:
    assert ConnectorResult.failure("X", "x", retryable=True).error.outcome is FailureOutcome.NOT_SENT  # type: ignore[union-attr]
    assert ConnectorResult.failure("X", "x").error.outcome is FailureOutcome.REJECTED  # type: ignore[union-attr]
    maybe = ConnectorResult.failure("X", "x", outcome=FailureOutcome.MAY_HAVE_BEEN_SENT, throttled=True).error
    assert maybe is not None
    assert (maybe.outcome, maybe.retryable, maybe.throttled, maybe.details) == (
        FailureOutcome.MAY_HAVE_BEEN_SENT,
        False,
        True,
        {},
    )
    with pytest.raises(ValueError, match="retryable"):
        ConnectorResult.failure("X", "x", retryable=True, outcome=FailureOutcome.MAY_HAVE_BEEN_SENT)


def test_outcome_unknown_means_may_have_been_sent_by_default() -> None:
    """A plugin that reports OUTCOME_UNKNOWN without saying more is never resent blindly."""
    error = ConnectorResult.failure(ConnectorErrorCodes.OUTCOME_UNKNOWN, "no answer").error
    assert error is not None
    assert error.outcome is FailureOutcome.MAY_HAVE_BEEN_SENT
    assert SendOutcome.from_result(ConnectorResult.failure(ConnectorErrorCodes.OUTCOME_UNKNOWN, "x")).state is (
        SendState.UNKNOWN
    )
