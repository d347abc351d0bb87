"""``test_connection()`` and ``get_health()`` against the emulator (and a few precise answers)."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aioresponses import aioresponses

from messaging_core import ConnectorErrorCodes, ConnectorStateError, Message
from messaging_twilio_sms import TwilioChannelSchemas, TwilioErrorCodes, TwilioSmsConnector
from messaging_twilio_sms.emulator import TwilioEmulator

Maker = Callable[..., Awaitable[TwilioSmsConnector]]
Sms = Callable[..., Message]


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_connection_succeeds_with_good_credentials(make_connector: Maker) -> None:
    connector = await make_connector()
    result = await connector.test_connection()
    assert result.is_success, result.error
    assert result.value is True


async def test_connection_with_a_wrong_token(make_connector: Maker) -> None:
    connector = await make_connector(AuthToken="0" * 32)
    result = await connector.test_connection()
    assert result.error is not None
    assert result.error.code == TwilioErrorCodes.AUTHENTICATION_FAILED
    assert result.error.details["twilio_code"] == 20003


async def test_connection_to_another_account_fails(make_connector: Maker) -> None:
    # The Account SID is the Basic-auth user name: another account with this token is refused.
    connector = await make_connector(AccountSid="AC" + "e" * 32)
    result = await connector.test_connection()
    assert result.error_code == TwilioErrorCodes.AUTHENTICATION_FAILED


async def test_connection_with_an_api_key_of_another_account() -> None:
    key, secret = "SK" + "4" * 32, "the-api-key-secret"
    async with TwilioEmulator(api_key_sid=key, api_key_secret=secret) as emulator:
        settings = {
            "ApiBaseUrl": emulator.base_url,
            "AccountSid": "AC" + "e" * 32,  # the key is valid, the account in the path is not its own
            "AuthToken": "webhook-signing-token",
            "ApiKeySid": key,
            "ApiKeySecret": secret,
        }
        async with TwilioSmsConnector(TwilioChannelSchemas.TWILIO_SMS, settings) as connector:
            result = await connector.test_connection()
    assert result.error is not None
    assert result.error.code == ConnectorErrorCodes.CONNECTION_TEST_FAILED
    assert result.error.details["http_status"] == 404


async def test_connection_when_nothing_listens(make_connector: Maker) -> None:
    connector = await make_connector(ApiBaseUrl=_closed_port_url())
    result = await connector.test_connection()
    assert result.error_code == TwilioErrorCodes.NETWORK_ERROR


async def test_connection_before_initialize_raises(make_connector: Maker) -> None:
    connector = await make_connector(initialize=False)
    with pytest.raises(ConnectorStateError):
        await connector.test_connection()


async def test_healthy_against_the_emulator(make_connector: Maker, sms: Sms) -> None:
    connector = await make_connector()
    sent = await connector.send_message(sms())
    refused = await connector.send_message(sms(to="+15005550001"))
    assert sent.is_success
    assert not refused.is_success
    health = await connector.get_health()
    assert health.is_healthy, health.issues
    assert health.state == "ready"
    assert health.issues == ()
    assert health.metrics["account_status"] == "active"
    assert isinstance(health.metrics["latency_ms"], float)
    assert health.metrics["latency_ms"] >= 0
    assert (health.metrics["sent"], health.metrics["failed"]) == (1, 1)
    assert health.uptime.total_seconds() >= 0


async def test_unhealthy_with_a_wrong_token(make_connector: Maker) -> None:
    connector = await make_connector(AuthToken="0" * 32)
    health = await connector.get_health()
    assert not health.is_healthy
    assert health.state == "ready"
    assert any("401" in issue for issue in health.issues), health.issues


async def test_unhealthy_when_unreachable(make_connector: Maker) -> None:
    connector = await make_connector(ApiBaseUrl=_closed_port_url())
    health = await connector.get_health()
    assert not health.is_healthy
    assert any("unreachable" in issue for issue in health.issues), health.issues


async def test_health_before_initialize_and_after_shutdown(make_connector: Maker) -> None:
    connector = await make_connector(initialize=False)
    before = await connector.get_health()
    assert (before.state, before.is_healthy) == ("uninitialized", False)
    assert before.issues
    await connector.initialize()
    assert (await connector.get_health()).is_healthy
    await connector.shutdown()
    after = await connector.get_health()
    assert (after.state, after.is_healthy) == ("shutdown", False)


async def test_health_after_failed_initialize(make_connector: Maker) -> None:
    connector = await make_connector(initialize=False, AccountSid="nope")
    result = await connector.initialize()
    assert result.error_code == ConnectorErrorCodes.INVALID_CONNECTION_SETTINGS
    health = await connector.get_health()
    assert (health.state, health.is_healthy) == ("error", False)


API = "https://api.twilio.example"
ACCOUNT = "AC" + "0123456789abcdef" * 2
ACCOUNT_URL = f"{API}/2010-04-01/Accounts/{ACCOUNT}.json"


@pytest.mark.parametrize(
    ("answer", "issue"),
    [
        ({"status": 200, "payload": {"sid": ACCOUNT, "status": "suspended"}}, "account is suspended"),
        ({"status": 200, "payload": {"sid": ACCOUNT, "status": "closed"}}, "account is closed"),
        ({"status": 200, "body": "<html>hello</html>"}, "HTTP 200"),
        ({"status": 503, "body": ""}, "HTTP 503"),
    ],
)
async def test_account_answers_that_are_unhealthy(mock_http: aioresponses, answer: dict[str, Any], issue: str) -> None:
    mock_http.get(ACCOUNT_URL, **answer)
    connector = TwilioSmsConnector(
        TwilioChannelSchemas.TWILIO_SMS, {"ApiBaseUrl": API, "AccountSid": ACCOUNT, "AuthToken": "token-token"}
    )
    async with connector:
        health = await connector.get_health()
    assert not health.is_healthy
    assert any(issue in text for text in health.issues), health.issues


async def test_connection_test_on_a_server_error(mock_http: aioresponses) -> None:
    mock_http.get(ACCOUNT_URL, status=500, body="")
    connector = TwilioSmsConnector(
        TwilioChannelSchemas.TWILIO_SMS, {"ApiBaseUrl": API, "AccountSid": ACCOUNT, "AuthToken": "token-token"}
    )
    async with connector:
        result = await connector.test_connection()
    assert result.error_code == ConnectorErrorCodes.CONNECTION_TEST_FAILED
