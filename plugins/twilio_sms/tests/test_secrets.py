"""Secrets never show; phone numbers are masked in logs unless ``LogPhoneNumbers`` is set.

Everything a user or an operator may read is collected: DEBUG logs of every logger, reprs and
strings of the connector and its settings, error messages and issues of every result.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import pytest

from messaging_core import ConnectorResult, ConnectorStateError, Message, WebhookRequest
from messaging_core.testing import find_secrets
from messaging_twilio_sms import TwilioChannelSchemas, TwilioSmsConnector
from messaging_twilio_sms._api import mask_phone
from messaging_twilio_sms.emulator import TwilioEmulator
from messaging_twilio_sms.webhooks import SIGNATURE_HEADER

Maker = Callable[..., Awaitable[TwilioSmsConnector]]
Sms = Callable[..., Message]


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _texts(where: str, value: Any) -> list[tuple[str, str]]:
    texts = [(f"repr({where})", repr(value)), (f"str({where})", str(value))]
    if isinstance(value, ConnectorResult) and value.error is not None:
        texts.append((f"{where}.error.message", value.error.message))
        texts.append((f"{where}.error.details", repr(dict(value.error.details))))
        texts += [(f"{where}.error.issues", str(issue)) for issue in value.error.issues]
        texts.append((f"{where}.unwrap()", str(value.error.exception())))
    return texts


def _logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return [("caplog.text", caplog.text)] + [(f"log {r.name}:{r.lineno}", formatter.format(r)) for r in caplog.records]


async def test_auth_token_and_basic_header_never_show(
    emulator: TwilioEmulator,
    make_connector: Maker,
    webhook_server: Any,
    sms: Sms,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = [emulator.auth_token, _basic(emulator.account_sid, emulator.auth_token)]
    connector = await make_connector(initialize=False, StatusCallback=webhook_server.url("/status"))
    webhook_server.connector = connector
    texts = _texts("connector", connector) + _texts("settings", connector.settings)
    texts += _texts("twilio_settings (guessed)", connector.twilio_settings)

    texts += _texts("initialize()", await connector.initialize())
    texts += _texts("connector (ready)", connector)
    texts += _texts("twilio_settings", connector.twilio_settings)
    good = await connector.send_message(sms())
    assert good.value is not None
    texts += _texts("send (ok)", good)
    texts += _texts("send (refused)", await connector.send_message(sms(to="+15005550001")))
    texts += _texts("send (invalid)", await connector.send_message(sms(to="not-a-number")))
    emulator.inject("502")
    texts += _texts("send (502)", await connector.send_message(sms()))
    emulator.inject("no_sid")
    texts += _texts("send (no sid)", await connector.send_message(sms()))
    texts += _texts("status", await connector.get_message_status(good.value.message_id))
    texts += _texts("status (unknown)", await connector.get_message_status("SM" + "0" * 32))
    forged = WebhookRequest.from_form(
        urlencode({"MessageSid": "SM" + "1" * 32, "From": "+15557654321", "To": "+15005550006", "Body": "x"}),
        url=webhook_server.url("/sms"),
        headers={SIGNATURE_HEADER: "forged"},
    )
    bad_signature = await connector.receive_messages(forged)
    assert bad_signature.error_code == "INVALID_SIGNATURE"
    texts += _texts("webhook (bad signature)", bad_signature)
    await webhook_server.wait_for("status", 3)  # signed callbacks of the first message
    texts += [item for _, result in webhook_server.results for item in _texts("callback", result)]
    texts += _texts("test_connection()", await connector.test_connection())
    texts += _texts("get_health()", await connector.get_health())
    texts += _texts("preview", connector.preview_message(sms()))
    await connector.shutdown()
    with pytest.raises(ConnectorStateError) as raised:
        await connector.send_message(sms())
    texts += _texts("error after shutdown", raised.value)
    texts += _texts("connector (shut down)", connector)
    texts += _logged(caplog)

    assert any("POST" in text for where, text in texts if where.startswith("log")), "no DEBUG logs were captured"
    assert find_secrets(texts, secrets) == []


async def test_wrong_and_api_key_secrets_never_show(emulator: TwilioEmulator, sms: Sms, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_token = "a-wrong-auth-token-value"
    key, key_secret = "SK" + "5" * 32, "an-api-key-secret-value"
    texts: list[tuple[str, str]] = []
    for settings in (
        {"AuthToken": wrong_token},
        {"AuthToken": wrong_token, "ApiKeySid": key, "ApiKeySecret": key_secret},
        {"AuthToken": wrong_token, "ApiKeySid": key},  # secret missing: MISSING_CREDENTIALS
        {"AuthToken": wrong_token, "ApiKeySecret": key_secret, "ValidityPeriod": "600"},  # invalid settings
    ):
        connector = TwilioSmsConnector(
            TwilioChannelSchemas.TWILIO_SMS,
            {"ApiBaseUrl": emulator.base_url, "AccountSid": emulator.account_sid, **settings},
        )
        texts += _texts("connector", connector) + _texts("settings", connector.settings)
        texts += _texts("twilio_settings (guessed)", connector.twilio_settings)
        initialized = await connector.initialize()
        texts += _texts("initialize()", initialized) + _texts("twilio_settings", connector.twilio_settings)
        if initialized.is_success:
            texts += _texts("send", await connector.send_message(sms()))
            texts += _texts("test_connection()", await connector.test_connection())
            texts += _texts("health", await connector.get_health())
        await connector.shutdown()
    texts += _logged(caplog)
    secrets = [
        wrong_token,
        key_secret,
        _basic(emulator.account_sid, wrong_token),
        _basic(key, key_secret),
    ]
    assert find_secrets(texts, secrets) == []


RECEIVER = "+15551234567"


async def test_phone_numbers_are_masked_in_logs(
    make_connector: Maker, sms: Sms, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    connector = await make_connector()
    assert (await connector.send_message(sms(to=RECEIVER))).is_success
    await connector.send_message(sms(to="+15005550001"))
    await connector.shutdown()
    assert RECEIVER not in caplog.text
    assert "+15005550001" not in caplog.text
    assert mask_phone(RECEIVER) in caplog.text  # the send was logged, masked


async def test_phone_numbers_are_shown_when_asked(
    make_connector: Maker, sms: Sms, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    connector = await make_connector(LogPhoneNumbers=True)
    assert (await connector.send_message(sms(to=RECEIVER))).is_success
    assert RECEIVER in caplog.text


async def test_signature_validator_keeps_the_token_out_of_sight(emulator: TwilioEmulator) -> None:
    from messaging_twilio_sms.webhooks import SignatureValidator

    validator = SignatureValidator(emulator.auth_token)
    assert emulator.auth_token not in repr(validator)
    assert not hasattr(validator, "__dict__")
    assert emulator.auth_token not in repr(emulator)
