"""Error mapping and retries: Twilio's error answers, broken answers, lost connections.

Driven by the emulator's test-credential magic numbers and injected faults (a real loopback
server), and by ``aioresponses`` where an answer's exact shape matters. The rule under test: a
request is retried only when the retry cannot create the message twice.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

from messaging_core import ConnectorResult, FailureOutcome, Message, MessageStatus, SendResult
from messaging_twilio_sms import TwilioChannelSchemas, TwilioErrorCodes, TwilioSmsConnector
from messaging_twilio_sms.emulator import TwilioEmulator

Maker = Callable[..., Awaitable[TwilioSmsConnector]]
Sms = Callable[..., Message]

# -- Twilio's error answers (magic numbers) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "code", "twilio_code"),
    [
        ("+15005550001", TwilioErrorCodes.INVALID_RECIPIENT, 21211),
        ("+15005550002", TwilioErrorCodes.INVALID_RECIPIENT, 21612),
        ("+15005550003", TwilioErrorCodes.INVALID_RECIPIENT, 21408),
        ("+15005550009", TwilioErrorCodes.INVALID_RECIPIENT, 21614),
        ("+15005550004", TwilioErrorCodes.RECIPIENT_UNSUBSCRIBED, 21610),
    ],
)
async def test_refused_recipients(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, to: str, code: str, twilio_code: int
) -> None:
    connector = await make_connector()
    result = await connector.send_message(sms(to=to))
    assert result.error is not None
    assert result.error.code == code
    assert result.error.details["twilio_code"] == twilio_code
    assert result.error.details["http_status"] == 400
    assert result.error.details["more_info"] == f"https://www.twilio.com/docs/errors/{twilio_code}"
    assert result.error.message  # Twilio's own text
    assert result.error.retryable is False
    assert emulator.messages == {}
    assert emulator.create_requests == 1


@pytest.mark.parametrize(("sender", "twilio_code"), [("+15005550001", 21212), ("+15005550007", 21606)])
async def test_refused_senders(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, sender: str, twilio_code: int
) -> None:
    connector = await make_connector()
    result = await connector.send_message(sms(sender=sender))
    assert result.error is not None
    assert (result.error.code, result.error.details["twilio_code"]) == (TwilioErrorCodes.INVALID_SENDER, twilio_code)
    assert result.error.retryable is False
    assert emulator.create_requests == 1


async def test_full_sender_queue_is_rate_limited_and_retried(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, backoff_sleeps: list[float]
) -> None:
    emulator.auto_advance = False
    connector = await make_connector(MaxRetries=2)
    result = await connector.send_message(sms(sender="+15005550008"))
    assert result.error is not None
    assert result.error.code == TwilioErrorCodes.RATE_LIMITED
    assert result.error.retryable is True
    assert (result.error.details["twilio_code"], result.error.details["http_status"]) == (21611, 429)
    assert emulator.create_requests == 3  # the first try and two retries
    assert len(backoff_sleeps) == 2
    assert emulator.messages == {}


async def test_wrong_auth_token(emulator: TwilioEmulator, make_connector: Maker, sms: Sms) -> None:
    connector = await make_connector(AuthToken="0" * 32)
    result = await connector.send_message(sms())
    assert result.error is not None
    assert result.error.code == TwilioErrorCodes.AUTHENTICATION_FAILED
    assert (result.error.details["twilio_code"], result.error.details["http_status"]) == (20003, 401)
    assert result.error.retryable is False
    assert emulator.messages == {}


async def test_unsubscribed_error_unwraps_to_a_provider_error(make_connector: Maker, sms: Sms) -> None:
    from messaging_core import ProviderError

    connector = await make_connector()
    result = await connector.send_message(sms(to="+15005550004"))
    with pytest.raises(ProviderError):
        result.unwrap()


# -- injected faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "code", "created"),
    [
        ("500", TwilioErrorCodes.TEMPORARY_FAILURE, 0),
        ("500_after_create", TwilioErrorCodes.TEMPORARY_FAILURE, 1),
        ("502", TwilioErrorCodes.TEMPORARY_FAILURE, 0),
        ("503", TwilioErrorCodes.TEMPORARY_FAILURE, 0),
        ("html_error", TwilioErrorCodes.TEMPORARY_FAILURE, 0),
        ("reset_before", TwilioErrorCodes.NETWORK_ERROR, 0),
        ("reset_after_create", TwilioErrorCodes.NETWORK_ERROR, 1),
        ("truncated_json", TwilioErrorCodes.INVALID_PROVIDER_RESPONSE, 1),
        ("no_sid", TwilioErrorCodes.INVALID_PROVIDER_RESPONSE, 1),
        ("malformed_json", TwilioErrorCodes.INVALID_PROVIDER_RESPONSE, 1),
    ],
)
async def test_faults_fail_without_duplicates(
    emulator: TwilioEmulator,
    make_connector: Maker,
    sms: Sms,
    fault: str,
    code: str,
    created: int,
) -> None:
    emulator.auto_advance = False
    connector = await make_connector(MaxRetries=3)
    emulator.inject(fault)
    result = await connector.send_message(sms())
    assert not result.is_success
    assert result.error is not None
    assert result.error.code == code
    assert not result.error.retryable  # an automatic retry could send it twice
    assert emulator.create_requests == 1, "the request was resent"
    assert len(emulator.messages) == created
    if created:
        # The message exists at Twilio: the result must not claim it was not sent.
        assert result.error.outcome is FailureOutcome.MAY_HAVE_BEEN_SENT
    # The fault is used up: the next message goes through, once.
    sent = await connector.send_message(sms())
    assert sent.is_success, sent.error
    assert len(emulator.messages) == created + 1


async def test_timeout_after_the_request_was_sent_is_not_resent(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms
) -> None:
    emulator.auto_advance = False
    emulator.fault_delay = 0.6  # holds the answer longer than the connector waits
    connector = await make_connector(RequestTimeout=0.3, MaxRetries=3)
    emulator.inject("timeout")
    result = await connector.send_message(sms())
    assert result.error is not None
    assert result.error.code == TwilioErrorCodes.NETWORK_ERROR
    assert result.error.outcome is FailureOutcome.MAY_HAVE_BEEN_SENT
    assert result.error.retryable is False
    assert emulator.create_requests == 1
    assert len(emulator.messages) == 1


# -- retries that cannot duplicate -------------------------------------------------------------------------


async def test_429_without_retry_after_is_retried_with_jittered_backoff(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, backoff_sleeps: list[float]
) -> None:
    emulator.auto_advance = False
    connector = await make_connector(MaxRetries=2)
    emulator.inject("429", count=2)
    result = await connector.send_message(sms())
    assert result.is_success, result.error
    assert emulator.create_requests == 3
    assert list(emulator.messages) == [result.value.remote_message_id]  # type: ignore[union-attr]
    assert len(backoff_sleeps) == 2
    # Full jitter: random(0, min(3 s, 0.1 s * 2^attempt)).
    assert 0 <= backoff_sleeps[0] <= 0.2
    assert 0 <= backoff_sleeps[1] <= 0.4


async def test_429_with_retry_after_waits_as_told(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, backoff_sleeps: list[float]
) -> None:
    emulator.auto_advance = False
    connector = await make_connector()
    emulator.inject("429_retry_after")  # Retry-After: 1
    result = await connector.send_message(sms())
    assert result.is_success, result.error
    assert backoff_sleeps == [1.0]
    assert emulator.create_requests == 2
    assert len(emulator.messages) == 1


async def test_429_beyond_max_retries_fails_retryable(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, backoff_sleeps: list[float]
) -> None:
    emulator.auto_advance = False
    connector = await make_connector(MaxRetries=2)
    emulator.inject("429", count=5)
    result = await connector.send_message(sms())
    assert result.error is not None
    assert result.error.code == TwilioErrorCodes.RATE_LIMITED
    assert result.error.retryable is True
    assert result.error.details["twilio_code"] == 20429
    assert emulator.create_requests == 3
    assert emulator.messages == {}


async def test_queue_full_21611_is_retried_and_says_the_sender_is_throttled(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, backoff_sleeps: list[float]
) -> None:
    emulator.auto_advance = False
    connector = await make_connector(MaxRetries=1)
    emulator.inject("21611", count=3)
    refused = await connector.send_message(sms())
    assert refused.error is not None
    assert (refused.error.code, refused.error.retryable) == (TwilioErrorCodes.RATE_LIMITED, True)
    assert refused.error.details["twilio_code"] == 21611
    # The From number's queue is full: a signal to slow this sender down, which a 20429 is not.
    assert refused.error.throttled is True
    assert (emulator.create_requests, emulator.messages) == (2, {})
    sent = await connector.send_message(sms())  # the third fault, then a free queue
    assert sent.is_success, sent.error
    assert (emulator.create_requests, len(emulator.messages)) == (4, 1)


async def test_concurrency_429_does_not_say_the_sender_is_throttled(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, backoff_sleeps: list[float]
) -> None:
    emulator.auto_advance = False
    connector = await make_connector(MaxRetries=0)
    emulator.inject("429")
    result = await connector.send_message(sms())
    assert result.error is not None
    assert result.error.details["twilio_code"] == 20429
    assert result.error.throttled is False


async def test_max_retries_zero_means_one_request(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, backoff_sleeps: list[float]
) -> None:
    emulator.auto_advance = False
    connector = await make_connector(MaxRetries=0)
    emulator.inject("429")
    result = await connector.send_message(sms())
    assert result.error_code == TwilioErrorCodes.RATE_LIMITED
    assert emulator.create_requests == 1
    assert backoff_sleeps == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _loopback_settings(port: int, account_sid: str, auth_token: str, **extra: Any) -> dict[str, Any]:
    return {
        "ApiBaseUrl": f"http://127.0.0.1:{port}",
        "AccountSid": account_sid,
        "AuthToken": auth_token,
        **extra,
    }


async def test_connection_refused_is_retried(sms: Sms, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens on the first try; the API comes up during the backoff; one message results."""
    port = _free_port()
    account_sid, auth_token = "AC" + uuid.uuid4().hex, uuid.uuid4().hex
    emulator = TwilioEmulator(port=port, account_sid=account_sid, auth_token=auth_token, auto_advance=False)
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def start_api_while_backing_off(delay: float, result: Any = None) -> Any:
        if delay > 0:
            sleeps.append(delay)
            if len(sleeps) == 1:
                await emulator.start()
        await real_sleep(0)
        return result

    monkeypatch.setattr(asyncio, "sleep", start_api_while_backing_off)
    connector = TwilioSmsConnector(TwilioChannelSchemas.TWILIO_SMS, _loopback_settings(port, account_sid, auth_token))
    try:
        async with connector:
            result = await connector.send_message(sms())
    finally:
        await emulator.stop()
    assert result.is_success, result.error
    assert len(sleeps) == 1
    assert emulator.create_requests == 1
    assert list(emulator.messages) == [result.value.remote_message_id]  # type: ignore[union-attr]


async def test_connection_refused_every_time(sms: Sms, backoff_sleeps: list[float]) -> None:
    connector = TwilioSmsConnector(
        TwilioChannelSchemas.TWILIO_SMS,
        _loopback_settings(_free_port(), "AC" + "0" * 32, "token-token", MaxRetries=2),
    )
    async with connector:
        result = await connector.send_message(sms())
    assert result.error is not None
    assert result.error.code == TwilioErrorCodes.NETWORK_ERROR
    assert result.error.retryable is True  # nothing reached Twilio
    assert (result.error.details, result.error.outcome) == ({"attempts": 3}, FailureOutcome.NOT_SENT)
    assert len(backoff_sleeps) == 2


# -- precise answer shapes (aioresponses) ------------------------------------------------------------------

API = "https://api.twilio.example"
ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "aioresponses-auth-token"
MESSAGES_URL = f"{API}/2010-04-01/Accounts/{ACCOUNT}/Messages.json"


def _resource(sid: str = "SM" + "f" * 32, status: str = "queued") -> dict[str, Any]:
    return {"sid": sid, "status": status, "num_segments": "1", "num_media": "0", "price": None, "price_unit": "USD"}


@pytest.fixture
async def mocked_connector() -> Any:
    connector = TwilioSmsConnector(
        TwilioChannelSchemas.TWILIO_SMS, {"ApiBaseUrl": API, "AccountSid": ACCOUNT, "AuthToken": TOKEN}
    )
    async with connector:
        yield connector


async def _send_with(
    mocked: aioresponses, connector: TwilioSmsConnector, message: Message, *answers: dict[str, Any]
) -> ConnectorResult[SendResult]:
    for answer in answers:
        mocked.post(MESSAGES_URL, **answer)
    return await connector.send_message(message)


def _calls(mocked: aioresponses) -> int:
    return len(mocked.requests.get(("POST", URL(MESSAGES_URL)), []))


async def test_request_shape(mock_http: aioresponses, mocked_connector: TwilioSmsConnector, sms: Sms) -> None:
    result = await _send_with(mock_http, mocked_connector, sms(text="a&b=c"), {"status": 201, "payload": _resource()})
    assert result.is_success, result.error
    (call,) = mock_http.requests[("POST", URL(MESSAGES_URL))]
    headers = call.kwargs["headers"]
    expected = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    assert headers["Authorization"] == f"Basic {expected}"
    assert headers["Accept"] == "application/json"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert call.kwargs["allow_redirects"] is False
    assert call.kwargs["timeout"].total == 15
    assert b"Body=a%26b%3Dc" in call.kwargs["data"]


@pytest.mark.parametrize(
    ("answer", "code", "text"),
    [
        (
            {"status": 503, "body": "<html><body><h1>503 Service Unavailable</h1></body></html>"},
            TwilioErrorCodes.TEMPORARY_FAILURE,
            "HTTP 503 from Twilio",
        ),
        ({"status": 500, "body": b""}, TwilioErrorCodes.TEMPORARY_FAILURE, "HTTP 500 from Twilio"),
        (
            {"status": 400, "payload": {"message": "Something is wrong", "status": 400}},
            TwilioErrorCodes.SEND_MESSAGE_FAILED,
            "Something is wrong",
        ),
        ({"status": 401, "body": b""}, TwilioErrorCodes.AUTHENTICATION_FAILED, "HTTP 401 from Twilio"),
        ({"status": 404, "body": b"Not Found"}, TwilioErrorCodes.SEND_MESSAGE_FAILED, "HTTP 404 from Twilio"),
        (
            {"status": 301, "body": b"", "headers": {"Location": "https://elsewhere.example/"}},
            TwilioErrorCodes.SEND_MESSAGE_FAILED,
            "HTTP 301 from Twilio",
        ),
    ],
)
async def test_error_answer_shapes(
    mock_http: aioresponses,
    mocked_connector: TwilioSmsConnector,
    sms: Sms,
    answer: dict[str, Any],
    code: str,
    text: str,
) -> None:
    result = await _send_with(mock_http, mocked_connector, sms(), answer)
    assert result.error is not None
    assert (result.error.code, result.error.message) == (code, text)
    assert result.error.details["http_status"] == answer["status"]
    assert _calls(mock_http) == 1


async def test_error_json_with_a_details_object(
    mock_http: aioresponses, mocked_connector: TwilioSmsConnector, sms: Sms
) -> None:
    payload = {
        "code": 21211,
        "message": "Invalid 'To' Phone Number",
        "more_info": "https://www.twilio.com/docs/errors/21211",
        "status": 400,
        "details": {"To": "not a valid phone number"},
    }
    result = await _send_with(mock_http, mocked_connector, sms(), {"status": 400, "payload": payload})
    assert result.error is not None
    assert result.error.code == TwilioErrorCodes.INVALID_RECIPIENT
    assert result.error.details["twilio_code"] == 21211
    assert result.error.details["twilio_details"] == {"To": "not a valid phone number"}


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 201, "payload": {"status": "queued"}},  # no sid
        {"status": 201, "payload": {"sid": "", "status": "queued"}},
        {"status": 201, "payload": ["SM" + "f" * 32]},
        {"status": 200, "body": "<html>OK</html>"},
        {"status": 204, "body": b""},
    ],
)
async def test_unreadable_success_is_not_a_success(
    mock_http: aioresponses, mocked_connector: TwilioSmsConnector, sms: Sms, answer: dict[str, Any]
) -> None:
    result = await _send_with(mock_http, mocked_connector, sms(), answer)
    assert result.error is not None
    assert result.error.code == TwilioErrorCodes.INVALID_PROVIDER_RESPONSE
    assert result.error.outcome is FailureOutcome.MAY_HAVE_BEEN_SENT
    assert _calls(mock_http) == 1


async def test_any_2xx_with_a_resource_is_a_success(
    mock_http: aioresponses, mocked_connector: TwilioSmsConnector, sms: Sms
) -> None:
    result = await _send_with(
        mock_http, mocked_connector, sms(), {"status": 202, "payload": _resource(status="accepted")}
    )
    assert result.is_success, result.error
    assert result.value is not None
    assert result.value.status is MessageStatus.QUEUED


@pytest.mark.parametrize(
    "exception", [aiohttp.ServerDisconnectedError(), aiohttp.ClientOSError(104, "reset"), TimeoutError()]
)
async def test_lost_answers_are_not_resent(
    mock_http: aioresponses, mocked_connector: TwilioSmsConnector, sms: Sms, exception: Exception
) -> None:
    result = await _send_with(
        mock_http, mocked_connector, sms(), {"exception": exception}, {"status": 201, "payload": _resource()}
    )
    assert result.error is not None
    assert result.error.code == TwilioErrorCodes.NETWORK_ERROR
    assert result.error.outcome is FailureOutcome.MAY_HAVE_BEEN_SENT
    assert _calls(mock_http) == 1


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        ("2", 2.0),
        ("3600", 60.0),  # capped
        ("in 20 seconds", 20.0),  # an HTTP date, written when the test runs
    ],
)
async def test_backoff_honours_retry_after(
    mock_http: aioresponses,
    mocked_connector: TwilioSmsConnector,
    sms: Sms,
    backoff_sleeps: list[float],
    retry_after: str,
    expected: float,
) -> None:
    if retry_after == "in 20 seconds":
        retry_after = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    refused = {"status": 429, "headers": {"Retry-After": retry_after}, "body": json.dumps({"code": 20429})}
    result = await _send_with(mock_http, mocked_connector, sms(), refused, {"status": 201, "payload": _resource()})
    assert result.is_success, result.error
    assert len(backoff_sleeps) == 1
    assert backoff_sleeps[0] == pytest.approx(expected, abs=2)
    assert _calls(mock_http) == 2


async def test_attempt_limits_bounds_the_requests_and_each_carries_its_attempt_number(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, backoff_sleeps: list[float]
) -> None:
    """AttemptLimits is the seed's "maximum delivery attempts": Twilio's Attempt counts them, this one included."""
    emulator.auto_advance = False
    connector = await make_connector(MaxRetries=0)  # AttemptLimits wins over MaxRetries for its message
    emulator.inject("429", count=2)
    sent = await connector.send_message(sms(AttemptLimits=3))
    assert sent.is_success, sent.error
    assert emulator.create_requests == 3
    (stored,) = emulator.messages.values()
    assert stored.params["Attempt"] == "3"
    emulator.inject("429", count=5)
    refused = await connector.send_message(sms(AttemptLimits=2))
    assert refused.error is not None
    assert (refused.error.code, refused.error.retryable) == (TwilioErrorCodes.RATE_LIMITED, True)
    assert emulator.create_requests == 5  # two more, then it gave up
    emulator.inject("429", count=1)
    once = await connector.send_message(sms(AttemptLimits=1))
    assert once.error is not None
    assert emulator.create_requests == 6


async def test_a_retry_without_attempt_limits_still_says_which_attempt_it_is(
    emulator: TwilioEmulator, make_connector: Maker, sms: Sms, backoff_sleeps: list[float]
) -> None:
    emulator.auto_advance = False
    connector = await make_connector(MaxRetries=2)
    first = await connector.send_message(sms())
    assert first.is_success, first.error
    assert "Attempt" not in emulator.messages[first.value.remote_message_id].params  # type: ignore[union-attr]
    emulator.inject("429", count=1)
    second = await connector.send_message(sms())
    assert second.is_success, second.error
    assert emulator.messages[second.value.remote_message_id].params["Attempt"] == "2"  # type: ignore[union-attr]
