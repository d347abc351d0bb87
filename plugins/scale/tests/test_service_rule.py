"""The rule for service tests: under CI an unreachable service fails the test; elsewhere it skips, saying why.

``cannot_run`` (the root ``conftest.py``) is the one place that decides; the service fixtures
(``conftest.py`` here) and the restart tests go through it. The first tests call it directly under
each value of ``$CI``; the last runs real service tests in a pytest of their own, against
addresses where nothing listens, with and without ``CI=true``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[3]
NOBODY = {  # port 1: refused at once
    "MESSAGING_SCALE_PG_DSN": "postgresql://postgres:pg-secret@127.0.0.1:1/test",
    "MESSAGING_SCALE_REDIS_URL": "redis://127.0.0.1:1/0",
    "MESSAGING_SCALE_AMQP_URL": "amqp://guest:amqp-secret@127.0.0.1:1/",
}
ONE_TEST_PER_SERVICE = [  # each needs one service fixture and nothing else
    "plugins/scale/tests/test_postgres_ledger.py::test_schema_name_must_be_a_plain_identifier",
    "plugins/scale/tests/test_redis_limiter.py::test_rejects_bad_settings",
    "plugins/scale/tests/test_taskiq_broker.py::test_queue_is_quorum_with_delivery_limit_and_dead_letters",
]


@pytest.mark.parametrize("value", ["true", "1", "TRUE", "True"])
def test_under_ci_an_unreachable_service_fails(
    monkeypatch: pytest.MonkeyPatch, unreachable: Callable[[str, str, BaseException], NoReturn], value: str
) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception) as failed:
        unreachable("Redis", "redis://:hunter2@127.0.0.1:1/0", ConnectionRefusedError(111, "refused"))
    message = str(failed.value)
    assert "Redis unreachable at redis://:***@127.0.0.1:1/0" in message
    assert "ConnectionRefusedError" in message
    assert "start it with `bash plugins/scale/ci_services.sh`" in message
    assert "CI is set" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("value", [None, "", "0", "false"])
def test_outside_ci_an_unreachable_service_skips_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, unreachable: Callable[[str, str, BaseException], NoReturn], value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception) as skipped:
        unreachable("NATS (JetStream)", "nats://127.0.0.1:1", TimeoutError())
    assert str(skipped.value) == (
        "NATS (JetStream) unreachable at nats://127.0.0.1:1 (TimeoutError()); "
        "start it with `bash plugins/scale/ci_services.sh` (PostgreSQL, Redis, RabbitMQ and NATS)"
    )


def test_cannot_run_fails_under_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, cannot_run: Callable[[str], NoReturn]
) -> None:
    """The restart tests' conditions (not root, a command missing) follow the same rule."""
    reason = "rabbitmqctl needs root to restart the service (running as uid 1000); CI runs as root"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="needs root"):
        cannot_run(reason)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        cannot_run(reason)


def _pytest(ci: str | None) -> subprocess.CompletedProcess[str]:
    env: dict[str, Any] = {key: value for key, value in os.environ.items() if key != "CI"}
    env.update(NOBODY)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", *ONE_TEST_PER_SERVICE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_service_fixtures_fail_under_ci_and_skip_elsewhere() -> None:
    """PostgreSQL, Redis and RabbitMQ down: three errors under ``CI=true``, three skips without it."""
    ci = _pytest("true")
    assert ci.returncode == 1, ci.stdout + ci.stderr
    assert "3 errors" in ci.stdout, ci.stdout
    assert "skipped" not in ci.stdout
    for service, shown in [
        ("PostgreSQL", "postgresql://postgres:***@127.0.0.1:1/test"),
        ("Redis", "redis://127.0.0.1:1/0"),
        ("RabbitMQ", "amqp://guest:***@127.0.0.1:1/"),
    ]:
        assert f"{service} unreachable at {shown}" in ci.stdout, ci.stdout
    assert "secret" not in ci.stdout
    local = _pytest(None)
    assert local.returncode == 0, local.stdout + local.stderr
    assert "3 skipped" in local.stdout, local.stdout
    assert local.stdout.count("unreachable at") == 3
    assert local.stdout.count("start it with `bash plugins/scale/ci_services.sh`") == 3


@pytest.mark.parametrize("services_up", [True, False])
def test_ci_run_stops_when_a_service_cannot_be_started(tmp_path: Path, services_up: bool) -> None:
    """``.ci/run`` runs ``make test`` under ``CI=true`` only once every service is up; else it exits 1, saying so."""
    (tmp_path / ".ci").mkdir()
    (tmp_path / ".ci" / "run").write_bytes((ROOT / ".ci" / "run").read_bytes())
    services = tmp_path / "plugins" / "scale" / "ci_services.sh"
    services.parent.mkdir(parents=True)
    services.write_text(
        "echo 'ci_services: PostgreSQL is up'\n"
        if services_up
        else "echo 'ci_services: RabbitMQ did not come up within 90s' >&2\nexit 1\n"
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    make = bin_dir / "make"
    make.write_text('#!/bin/sh\necho "make $* with CI=$CI" > made.txt\n')
    make.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    result = subprocess.run(
        ["bash", str(tmp_path / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    made = tmp_path / "made.txt"
    if services_up:
        assert result.returncode == 0, result.stderr
        assert made.read_text() == "make test with CI=true\n"
    else:
        assert result.returncode == 1
        assert "RabbitMQ did not come up" in result.stderr
        assert "ci: a service the tests need could not be started" in result.stderr
        assert not made.exists()
