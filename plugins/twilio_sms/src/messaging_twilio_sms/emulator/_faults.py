"""Injectable faults: the failure shapes a Twilio client meets in production, on demand.

A fault is queued with :meth:`TwilioEmulator.inject` and answers the next create request(s) it matches.
"""

from __future__ import annotations

from attrs import define

from ._resources import error_payload

PRE_CREATE_FAULTS = frozenset(
    {"429", "429_retry_after", "21611", "500", "502", "503", "html_error", "reset_before", "timeout_before_create"}
)
"""Faults answered before the request is processed: the message is NOT created."""

POST_CREATE_FAULTS = frozenset(
    {
        "500_after_create",
        "malformed_json",
        "truncated_json",
        "no_sid",
        "reset_after_create",
        "create_then_timeout",
        "timeout",
    }
)
"""Faults that spoil the answer of a create that succeeded: the message IS created, as at Twilio when the
response is lost or mangled on the way back."""

HELD_FAULTS = frozenset({"timeout_before_create", "create_then_timeout", "timeout"})
"""Faults that hold the request for the emulator's `fault_delay` seconds, so a client with a shorter
timeout gives up without an answer: the two sides of a timeout's doubt.

- `timeout_before_create`: nothing is stored, ever; after the delay the connection is dropped
  (a request lost or stuck in front of the API).
- `create_then_timeout`: the message is stored first (its status lifecycle and callbacks run as
  usual) and then its 201 is held; a client still waiting after the delay gets it.
- `timeout`: the older name of `create_then_timeout`, same behaviour.
"""

FAULTS = PRE_CREATE_FAULTS | POST_CREATE_FAULTS
"""Every fault name :meth:`TwilioEmulator.inject` accepts."""

# status, Twilio code, message. 20429 means the request was never processed (Twilio's error docs "429 / Retry-After");
# 21611 is a From number's full queue, answered with HTTP 429 and "SMS queue is full." (Twilio's error docs): a
# transient version of the +15005550008 magic number. "500_after_create" answers like "500" after the
# message was stored (an upstream that failed on the way back).
# Twilio documents no code of its own for a 502; the generic internal-error code keeps the shape uniform.
FAULT_ERRORS: dict[str, tuple[int, int, str]] = {
    "429": (429, 20429, "Too Many Requests"),
    "429_retry_after": (429, 20429, "Too Many Requests"),
    "21611": (429, 21611, "SMS queue is full."),
    "500": (500, 20500, "Internal Server Error"),
    "500_after_create": (500, 20500, "Internal Server Error"),
    "502": (502, 20500, "Bad Gateway"),
    "503": (503, 20503, "Service Unavailable"),
}
FAULT_PAYLOADS: dict[str, bytes] = {
    name: error_payload(status, code, message) for name, (status, code, message) in FAULT_ERRORS.items()
}

# What a load balancer in front of an API answers when the upstream is gone: HTML, not JSON.
HTML_ERROR_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)


@define
class _QueuedFault:
    name: str
    remaining: int
    match_to: str | None


class FaultQueue:
    """Faults waiting for create requests, applied first-in first-out."""

    def __init__(self) -> None:
        self._queue: list[_QueuedFault] = []

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, name: str, count: int, match_to: str | None) -> None:
        """Queue `name` for the next `count` create requests (to `match_to` only, when given)."""
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; expected one of {sorted(FAULTS)}")
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        self._queue.append(_QueuedFault(name, count, match_to))

    def take_reset_before(self) -> bool:
        """Consume an unconditional `reset_before` at the head of the queue.

        Checked before the request body is read, so it can only apply when it needs no `To` to match
        and no earlier fault might claim the request.
        """
        if self._queue:
            head = self._queue[0]
            if head.name == "reset_before" and head.match_to is None:
                self._consume(head)
                return True
        return False

    def take(self, to: str | None) -> str | None:
        """Consume and return the first queued fault matching a request to `to`, if any."""
        for entry in self._queue:
            if entry.match_to is None or entry.match_to == to:
                self._consume(entry)
                return entry.name
        return None

    def clear(self) -> None:
        """Drop every queued fault."""
        self._queue.clear()

    def _consume(self, entry: _QueuedFault) -> None:
        entry.remaining -= 1
        if entry.remaining == 0:
            self._queue.remove(entry)
