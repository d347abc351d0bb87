"""Operation results: one value or one error per operation (and per message in a batch).

Operational outcomes are values, not exceptions: a bulk send needs one truthful outcome per
message. ``ConnectorResult.unwrap()`` turns a failure into the matching exception from
``messaging_core.errors`` for callers who prefer raising.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from attrs import Factory, evolve, field, frozen

from messaging_core.errors import (
    AuthenticationError,
    ConnectorOperationError,
    ProviderError,
    RateLimitedError,
    ValidationFailedError,
    WebhookRefusedError,
)
from messaging_core.message import Message
from messaging_core.validation import ValidationIssue

__all__ = [
    "BatchSendResult",
    "ConnectorErrorCodes",
    "ConnectorHealth",
    "ConnectorResult",
    "Failure",
    "FailureOutcome",
    "MessageStatus",
    "ReceiveResult",
    "SendResult",
    "StatusUpdate",
    "StatusUpdatesResult",
    "utc_now",
]

T = TypeVar("T")


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class ConnectorErrorCodes:
    """Stable error codes shared by every connector. Plugins add their own beside these."""

    # lifecycle
    ALREADY_INITIALIZED = "ALREADY_INITIALIZED"
    INITIALIZATION_ERROR = "INITIALIZATION_ERROR"
    MISSING_CREDENTIALS = "MISSING_CREDENTIALS"
    INVALID_CONNECTION_SETTINGS = "INVALID_CONNECTION_SETTINGS"
    CONNECTION_TEST_FAILED = "CONNECTION_TEST_FAILED"
    # input
    MESSAGE_VALIDATION_FAILED = "MESSAGE_VALIDATION_FAILED"
    INVALID_RECIPIENT = "INVALID_RECIPIENT"
    INVALID_SENDER = "INVALID_SENDER"
    RECIPIENT_UNSUBSCRIBED = "RECIPIENT_UNSUBSCRIBED"
    """The recipient opted out (replied STOP): nothing is sent to them until they opt in again."""
    # provider / transport
    AUTHENTICATION_FAILED = "AUTHENTICATION_FAILED"
    RATE_LIMITED = "RATE_LIMITED"
    TEMPORARY_FAILURE = "TEMPORARY_FAILURE"
    NETWORK_ERROR = "NETWORK_ERROR"
    SEND_MESSAGE_ERROR = "SEND_MESSAGE_ERROR"
    """An unexpected error inside a connector's send (a bug); the message may not have been sent."""
    OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
    """The request may have reached the provider, but no answer came back: do not resend blindly."""
    NOT_ATTEMPTED = "NOT_ATTEMPTED"
    """The batch was cancelled before this message was sent; it is safe to send it again."""
    STATUS_QUERY_ERROR = "STATUS_QUERY_ERROR"
    RECEIVE_ERROR = "RECEIVE_ERROR"
    CANCEL_ERROR = "CANCEL_ERROR"
    """An unexpected error inside a connector's ``cancel_scheduled`` (a bug)."""
    NOT_CANCELLABLE = "NOT_CANCELLABLE"
    """The message cannot be cancelled (it is no longer scheduled: sent, cancelled, unknown)."""
    # webhooks: refused before parsing; the webhook host answers 403 and dispatches nothing
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    """A webhook's signature is missing, wrong, or cannot be checked (no URL, no body hash)."""
    UNEXPECTED_ACCOUNT = "UNEXPECTED_ACCOUNT"
    """A webhook sent for an account this connector does not serve (even when correctly signed)."""
    HEALTH_CHECK_ERROR = "HEALTH_CHECK_ERROR"


# Which exception ``unwrap()`` raises for a code; anything not listed is a ProviderError.
_EXCEPTIONS: dict[str, type[ConnectorOperationError]] = {
    ConnectorErrorCodes.MESSAGE_VALIDATION_FAILED: ValidationFailedError,
    ConnectorErrorCodes.INVALID_RECIPIENT: ValidationFailedError,
    ConnectorErrorCodes.INVALID_SENDER: ValidationFailedError,
    ConnectorErrorCodes.INVALID_CONNECTION_SETTINGS: ValidationFailedError,
    ConnectorErrorCodes.MISSING_CREDENTIALS: ValidationFailedError,
    ConnectorErrorCodes.AUTHENTICATION_FAILED: AuthenticationError,
    ConnectorErrorCodes.RATE_LIMITED: RateLimitedError,
    ConnectorErrorCodes.INVALID_SIGNATURE: WebhookRefusedError,
    ConnectorErrorCodes.UNEXPECTED_ACCOUNT: WebhookRefusedError,
}


def _issues(value: Iterable[ValidationIssue]) -> tuple[ValidationIssue, ...]:
    return tuple(value)


def _mapping(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


class FailureOutcome(enum.StrEnum):
    """What a failed send means for the message: may it have been sent, may it be sent again."""

    NOT_SENT = "not_sent"
    """The provider did not create it (never reached, refused before creating, not attempted):
    sending it again cannot make a duplicate."""
    MAY_HAVE_BEEN_SENT = "may_have_been_sent"
    """The request may have reached the provider and created it (a timeout after the request
    left, a 5xx, a 2xx that cannot be read, an unexpected error in the connector): reconcile,
    never resend blindly."""
    REJECTED = "rejected"
    """Refused for good (invalid input, a permanent provider error): as it is, it fails again."""


def _default_outcome(failure: Failure) -> FailureOutcome:
    if failure.code == ConnectorErrorCodes.OUTCOME_UNKNOWN and not failure.retryable:
        return FailureOutcome.MAY_HAVE_BEEN_SENT  # what the code says: never resend it blindly
    return FailureOutcome.NOT_SENT if failure.retryable else FailureOutcome.REJECTED


@frozen
class Failure:
    """Why an operation failed: a stable code, a message for people, and what it means for a send.

    Not an exception: operations answer with a ``ConnectorResult`` whose ``error`` is a
    ``Failure``; ``ConnectorResult.unwrap()`` raises the matching exception.
    """

    code: str
    message: str
    issues: tuple[ValidationIssue, ...] = field(default=(), converter=_issues)
    retryable: bool = False
    """Sending the same request again later may succeed, and cannot duplicate a message."""
    details: Mapping[str, Any] = field(factory=dict, converter=_mapping)
    """Provider data only (e.g. ``{"twilio_code": 21211, "http_status": 400, "more_info": ...}``)."""
    outcome: FailureOutcome = field(default=Factory(_default_outcome, takes_self=True))
    """For a send: whether the message may have been created. By default ``MAY_HAVE_BEEN_SENT`` for
    the code ``OUTCOME_UNKNOWN``, else ``NOT_SENT`` when ``retryable`` and ``REJECTED`` otherwise; a
    connector that cannot tell says ``MAY_HAVE_BEEN_SENT`` whatever its code."""
    throttled: bool = False
    """The provider says the sender is over its pace (Twilio's 21611): slow that sender down."""

    def __attrs_post_init__(self) -> None:
        if self.outcome is FailureOutcome.MAY_HAVE_BEEN_SENT and self.retryable:
            raise ValueError(
                "a failure that may have sent the message cannot be retryable (a retry could duplicate it)"
            )

    def exception(self) -> ConnectorOperationError:
        """The exception that stands for this error."""
        return _EXCEPTIONS.get(self.code, ProviderError)(self)


@frozen
class ConnectorResult(Generic[T]):
    """The value of a successful operation, or the error of a failed one."""

    value: T | None = None
    error: Failure | None = None

    @classmethod
    def success(cls, value: T) -> ConnectorResult[T]:
        return cls(value, None)

    @classmethod
    def failure(
        cls,
        code: str,
        message: str,
        *,
        issues: Iterable[ValidationIssue] = (),
        retryable: bool = False,
        details: Mapping[str, Any] | None = None,
        outcome: FailureOutcome | None = None,
        throttled: bool = False,
    ) -> ConnectorResult[T]:
        """A failed result; ``outcome`` defaults as ``Failure.outcome`` does."""
        failure = Failure(code, message, tuple(issues), retryable, dict(details or {}), throttled=throttled)
        if outcome is not None:
            failure = evolve(failure, outcome=outcome)
        return cls(None, failure)

    @classmethod
    def from_error(cls, error: Failure) -> ConnectorResult[T]:
        return cls(None, error)

    @property
    def is_success(self) -> bool:
        return self.error is None

    @property
    def error_code(self) -> str | None:
        return None if self.error is None else self.error.code

    @property
    def error_message(self) -> str | None:
        return None if self.error is None else self.error.message

    def unwrap(self) -> T:
        """The value; raises the matching ``ConnectorOperationError`` subclass on failure."""
        if self.error is not None:
            raise self.error.exception()
        return self.value  # type: ignore[return-value]


class MessageStatus(enum.StrEnum):
    """Normalized delivery status.

    Statuses move forward only (``rank``): a late ``sent`` callback never overwrites ``delivered``.
    Final statuses end the life of a message, except ``delivered`` → ``read`` on channels with
    read receipts. Use ``MessageStatus.reconcile(current, new)`` to merge out-of-order updates.
    """

    UNKNOWN = "unknown"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    ROUTED = "routed"
    ROUTE_FAILED = "route_failed"
    SENT = "sent"
    DELIVERED = "delivered"
    DELIVERY_FAILED = "delivery_failed"
    CANCELLED = "cancelled"
    RECEIVED = "received"
    READ = "read"
    DELETED = "deleted"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def is_final(self) -> bool:
        return self in _FINAL

    @property
    def is_failure(self) -> bool:
        return self in (MessageStatus.ROUTE_FAILED, MessageStatus.DELIVERY_FAILED, MessageStatus.CANCELLED)

    def can_become(self, new: MessageStatus) -> bool:
        """Whether moving from this status to ``new`` is forward progress."""
        if new == self:
            return False
        if self is MessageStatus.DELIVERED and new is MessageStatus.READ:
            return True
        if self.is_final:
            return new is MessageStatus.DELETED
        return new.rank > self.rank

    @staticmethod
    def reconcile(current: MessageStatus | None, new: MessageStatus) -> MessageStatus:
        """The status to keep when ``new`` arrives while ``current`` is known."""
        if current is None or current.can_become(new):
            return new
        return current


# Order of progress. Failures share the rank of the success they replace, so e.g. a late
# "undelivered" cannot overwrite "delivered" and vice versa (both are final anyway).
_RANK = {
    MessageStatus.UNKNOWN: 0,
    MessageStatus.SCHEDULED: 1,
    MessageStatus.QUEUED: 2,
    MessageStatus.ROUTED: 3,
    MessageStatus.ROUTE_FAILED: 4,
    MessageStatus.CANCELLED: 4,
    MessageStatus.SENT: 4,
    MessageStatus.DELIVERED: 5,
    MessageStatus.DELIVERY_FAILED: 5,
    MessageStatus.RECEIVED: 5,
    MessageStatus.READ: 6,
    MessageStatus.DELETED: 7,
}
_FINAL = frozenset(
    {
        MessageStatus.ROUTE_FAILED,
        MessageStatus.DELIVERED,
        MessageStatus.DELIVERY_FAILED,
        MessageStatus.CANCELLED,
        MessageStatus.RECEIVED,
        MessageStatus.READ,
        MessageStatus.DELETED,
    }
)


@frozen
class SendResult:
    """A message the provider accepted."""

    message_id: str
    remote_message_id: str | None
    """The provider's id (a Twilio SID)."""
    status: MessageStatus
    timestamp: datetime = field(factory=utc_now)
    additional_data: Mapping[str, Any] = field(factory=dict, converter=_mapping)


def _results(value: Mapping[str, ConnectorResult[SendResult]]) -> dict[str, ConnectorResult[SendResult]]:
    return dict(value)


@frozen
class BatchSendResult:
    """One result per message of a batch, keyed by message id, in input order."""

    batch_id: str
    results: Mapping[str, ConnectorResult[SendResult]] = field(converter=_results)

    @property
    def succeeded(self) -> list[str]:
        return [mid for mid, r in self.results.items() if r.is_success]

    @property
    def failed(self) -> list[str]:
        return [mid for mid, r in self.results.items() if not r.is_success]

    @property
    def is_complete_success(self) -> bool:
        return all(r.is_success for r in self.results.values())

    def counts(self) -> dict[str, int]:
        """How many messages ended with each outcome: ``{"sent": n, <error code>: n, ...}``."""
        counts: dict[str, int] = {}
        for result in self.results.values():
            key = "sent" if result.error is None else result.error.code
            counts[key] = counts.get(key, 0) + 1
        return counts


@frozen
class StatusUpdate:
    """A status a message reached (from a status query or a provider callback)."""

    message_id: str
    """Our message id when known, otherwise the provider's id."""
    status: MessageStatus
    timestamp: datetime = field(factory=utc_now)
    raw_status: str | None = None
    """The provider's own status word (``undelivered``), kept as received."""
    additional_data: Mapping[str, Any] = field(factory=dict, converter=_mapping)
    remote_message_id: str | None = None


def _updates(value: Iterable[StatusUpdate]) -> tuple[StatusUpdate, ...]:
    return tuple(value)


@frozen
class StatusUpdatesResult:
    """The status history known for one message (newest last)."""

    message_id: str
    status_updates: tuple[StatusUpdate, ...] = field(converter=_updates)

    @property
    def latest(self) -> StatusUpdate | None:
        return self.status_updates[-1] if self.status_updates else None


def _messages(value: Iterable[Message]) -> tuple[Message, ...]:
    return tuple(value)


@frozen
class ReceiveResult:
    """Messages parsed from one inbound payload."""

    batch_id: str
    messages: tuple[Message, ...] = field(converter=_messages)


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@frozen
class ConnectorHealth:
    """A connector's health at ``last_check``."""

    state: str
    is_healthy: bool
    last_check: datetime = field(factory=utc_now)
    uptime: timedelta = timedelta(0)
    issues: tuple[str, ...] = field(default=(), converter=_strings)
    metrics: Mapping[str, Any] = field(factory=dict, converter=_mapping)
