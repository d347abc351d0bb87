"""Docs are tested: the plugin built in docs/writing-a-plugin.md installs, registers and conforms.

The code blocks of the page are written to a temporary project (a block whose first line is a
``# path`` comment is that file), installed the way pip would (a ``*.dist-info`` with the entry
points of the page's ``pyproject.toml``), discovered through ``importlib.metadata``, and its
conformance tests are run in a nested pytest session.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from messaging_core import ChannelRegistry

PAGE = Path(__file__).resolve().parent.parent / "docs" / "writing-a-plugin.md"
BLOCK = re.compile(r"^```(?P<lang>\w+)\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)


def _blocks() -> list[tuple[str, str]]:
    return [(m["lang"], m["code"]) for m in BLOCK.finditer(PAGE.read_text("utf-8"))]


def _files() -> dict[str, str]:
    files = {}
    for _, code in _blocks():
        first, _, rest = code.partition("\n")
        if re.fullmatch(r"# [\w./-]+\.(py|toml)", first):
            files[first[2:]] = rest
    return files


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The page's plugin, written out and 'installed' on sys.path for this module."""
    root = tmp_path_factory.mktemp("acme-plugin")
    for name, text in _files().items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    (root / "src" / "messaging_acme" / "__init__.py").write_text("", "utf-8")
    project = tomllib.loads((root / "pyproject.toml").read_text("utf-8"))["project"]
    dist_info = root / "src" / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n", "utf-8"
    )
    entry_points = "".join(
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in targets.items())
        for group, targets in project["entry-points"].items()
    )
    (dist_info / "entry_points.txt").write_text(entry_points, "utf-8")
    sys.path.insert(0, str(root / "src"))
    yield root
    sys.path.remove(str(root / "src"))
    for module in [m for m in sys.modules if m == "messaging_acme" or m.startswith("messaging_acme.")]:
        del sys.modules[module]


def test_the_page_shows_the_files_of_a_plugin() -> None:
    assert set(_files()) == {
        "src/messaging_acme/connector.py",
        "src/messaging_acme/plugin.py",
        "src/messaging_acme/webhooks.py",
        "pyproject.toml",
        "tests/test_conformance.py",
    }


def test_the_plugin_is_discovered_through_its_entry_point(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = ChannelRegistry.discover()
    info = registry.channel("acme_sms")
    assert info.plugin == "acme_sms"
    assert list(info.variants) == ["Full", "Basic"]
    assert "acme_sms" not in {e.name for e in registry.load_errors}

    # The page's usage snippet runs as written.
    snippet = next(code for lang, code in _blocks() if lang == "python" and "discover()" in code)
    monkeypatch.setenv("ACME_API_KEY", "acme-key-from-the-environment")
    namespace: dict[str, object] = {}
    exec(compile(snippet, str(PAGE), "exec"), namespace)
    connector = namespace["connector"]
    assert connector.schema == info.variants["Basic"]  # type: ignore[attr-defined]


def test_the_plugin_passes_the_conformance_kit(project: Path) -> None:
    outcomes: dict[str, str] = {}

    class Collect:
        def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
            if report.when == "call" or not report.passed:
                outcomes[report.nodeid.rsplit("::", 1)[-1]] = report.outcome

    previous = os.getcwd()
    os.chdir(project)
    try:
        code = pytest.main(
            [
                str(project / "tests"),
                "-q",
                "-p",
                "no:cacheprovider",
                "-o",
                "asyncio_mode=auto",
                "-o",
                "asyncio_default_fixture_loop_scope=function",
                "--rootdir",
                str(project),
            ],
            plugins=[Collect()],
        )
    finally:
        os.chdir(previous)
    assert len(outcomes) == 22
    # The page's send-only connector skips the three receiving checks, saying why; the rest pass.
    receiving = {
        "test_a_genuine_inbound_webhook_becomes_messages",
        "test_a_forged_inbound_webhook_is_refused",
        "test_a_status_callback_becomes_an_update",
    }
    assert {k.rsplit("::", 1)[-1] for k, v in outcomes.items() if v == "skipped"} == receiving
    assert {v for k, v in outcomes.items() if k.rsplit("::", 1)[-1] not in receiving} == {"passed"}, outcomes
    assert code == 0


async def test_the_receiving_connector_verifies_and_the_service_answers(project: Path) -> None:
    """The page's "Receiving webhooks" connector: signed webhooks are dispatched, forged ones get 403."""
    import json

    from messaging_core import WebhookRequest
    from messaging_core.testing import HookRecorder
    from messaging_core.webhooks import WebhookService

    webhooks = importlib.import_module("messaging_acme.webhooks")
    recorder = HookRecorder()
    registry = ChannelRegistry(plugins=[recorder])
    connector = webhooks.AcmeTwoWayConnector(
        webhooks.ACME_TWO_WAY,
        {"ApiKey": "k" * 16, "WebhookSecret": "s3cret"},
        plugins=registry.host,
        name="acme",
    )
    url = "https://hooks.example.com/webhooks/acme/messages"
    body = json.dumps({"id": "in-1", "from": "+15550001111", "to": "+15550002222", "text": "hi"}).encode()
    signed = {webhooks.SIGNATURE_HEADER: webhooks.sign("s3cret", url, body), "Content-Type": "application/json"}
    async with connector:
        service = WebhookService({"acme": connector})
        assert service.routes() == {"acme": ("messages", "status")}
        ok = await service.handle("acme", "messages", WebhookRequest("application/json", body, url, signed))
        assert ok.status == 200
        assert [c.arguments["message"].id for c in recorder.named("message_received")] == ["in-1"]
        forged = body.replace(b"hi", b"pay")
        for request in (
            WebhookRequest("application/json", forged, url, signed),  # body changed after signing
            WebhookRequest("application/json", body, None, signed),  # no URL: cannot be checked
            WebhookRequest("application/json", body, url, {}),  # no signature
        ):
            assert (await service.handle("acme", "messages", request)).status == 403
        assert len(recorder.named("message_received")) == 1
        status_url = "https://hooks.example.com/webhooks/acme/status"
        status_body = json.dumps({"id": "acme-9", "reference": "out-1", "status": "delivered"}).encode()
        headers = {webhooks.SIGNATURE_HEADER: webhooks.sign("s3cret", status_url, status_body)}
        answer = await service.handle(
            "acme", "status", WebhookRequest("application/json", status_body, status_url, headers)
        )
        assert answer.status == 204
        (update,) = [c.arguments["update"] for c in recorder.named("message_status_changed")]
        assert (update.message_id, update.remote_message_id, update.status.value) == ("out-1", "acme-9", "delivered")
