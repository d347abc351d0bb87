"""docs/webhooks.md: the FastAPI, Flask and Django examples run as written, and fail closed.

Each example is executed from the page in a directory holding a ``messaging.toml`` (a Twilio SMS
connector), then driven by its framework's test client: a webhook signed by Twilio's own
``RequestValidator`` is dispatched, a forged one is refused with 403.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client as DjangoClient
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from messaging_core.webhooks import WebhookStats

DOC = Path(__file__).resolve().parents[1] / "docs" / "webhooks.md"
ACCOUNT = "AC" + "e1" * 16
TOKEN = "1e" * 16
FIELDS = {"MessageSid": "SM" + "5" * 32, "AccountSid": ACCOUNT, "From": "+15557654321", "To": "+15005550006"}
FORM = "application/x-www-form-urlencoded"


def _examples() -> dict[str, str]:
    section = DOC.read_text(encoding="utf-8").split("## In FastAPI, Starlette, Django or Flask", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 3, "the section has the FastAPI, Flask and Django examples"
    return dict(zip(("fastapi", "flask", "django"), blocks, strict=True))


@pytest.fixture
def run_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, twilio_config: Callable[..., Path]
) -> Iterator[Callable[[str], dict[str, Any]]]:
    """Runs an example from the page in a directory with its ``messaging.toml``; closes what it started."""
    twilio_config(ACCOUNT, TOKEN)
    monkeypatch.chdir(tmp_path)
    started: list[dict[str, Any]] = []

    def run(framework: str) -> dict[str, Any]:
        namespace: dict[str, Any] = {"__name__": f"docs_example_{framework}"}
        exec(compile(_examples()[framework], str(DOC), "exec"), namespace)
        started.append(namespace)
        return namespace

    yield run
    for namespace in started:
        if "webhooks" in namespace:
            namespace["webhooks"].close()


def _signed_and_forged(url: str) -> tuple[bytes, dict[str, str], dict[str, str]]:
    body = urlencode(FIELDS).encode()
    signature = RequestValidator(TOKEN).compute_signature(url, FIELDS)
    forged = RequestValidator("f" * 32).compute_signature(url, FIELDS)
    return (
        body,
        {"Content-Type": FORM, "X-Twilio-Signature": signature},
        {"Content-Type": FORM, "X-Twilio-Signature": forged},
    )


def _assert_dispatched_once(stats: WebhookStats, statuses: tuple[int, int]) -> None:
    assert statuses == (200, 403)
    assert (stats.dispatched, stats.forbidden) == (1, 1)


def test_the_fastapi_example(run_example: Callable[[str], dict[str, Any]]) -> None:
    namespace = run_example("fastapi")
    url = "http://testserver/webhooks/sms/messages"
    body, signed, forged = _signed_and_forged(url)
    with TestClient(namespace["app"]) as client:  # runs the example's lifespan
        statuses = (
            client.post(url, content=body, headers=signed).status_code,
            client.post(url, content=body, headers=forged).status_code,
        )
    _assert_dispatched_once(namespace["service"].stats, statuses)


def test_the_flask_example(run_example: Callable[[str], dict[str, Any]]) -> None:
    namespace = run_example("flask")
    url = "http://localhost/webhooks/sms/messages"
    body, signed, forged = _signed_and_forged(url)
    client = namespace["app"].test_client()
    statuses = (
        client.post(url, data=body, headers=signed).status_code,
        client.post(url, data=body, headers=forged).status_code,
    )
    _assert_dispatched_once(namespace["webhooks"].service.stats, statuses)


def test_the_django_example(run_example: Callable[[str], dict[str, Any]], django_urls: Any) -> None:
    namespace = run_example("django")
    url = "http://testserver/webhooks/sms/messages"
    body, signed, forged = _signed_and_forged(url)
    client = DjangoClient(enforce_csrf_checks=True)
    with django_urls(namespace["urlpatterns"]):
        statuses = (
            client.post(url, data=body, content_type=FORM, headers=signed).status_code,
            client.post(url, data=body, content_type=FORM, headers=forged).status_code,
        )
    _assert_dispatched_once(namespace["webhooks"].service.stats, statuses)
