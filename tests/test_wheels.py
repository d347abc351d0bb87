"""Installed as users install it: the three wheels in a fresh virtual environment, the demo run elsewhere.

The wheels of ``pluggable-messaging``, ``pluggable-messaging-twilio-sms`` and
``pluggable-messaging-scale`` are built from a copy of the sources (so that nothing is written into
the checkout), offline (``--no-build-isolation``: setuptools and wheel come from the test
environment), installed with ``--no-deps`` into a new virtual environment, and ``messaging demo``
runs there from a directory outside the checkout: what a missing package-data file or a module left
out of the wheel would break.

The third-party dependencies are not downloaded again: the new environment sees the test
environment's, linked one by one into a directory on its path, leaving out this project's own
distributions (and their editable-install hooks), so that only the wheels provide them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DISTRIBUTIONS = (".", "plugins/twilio_sms", "plugins/scale")


def _run(*command: str | Path, cwd: Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith(("TWILIO_", "MESSAGING_"))}
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{command}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _build_wheels(tmp_path: Path) -> list[Path]:
    sources = tmp_path / "sources"
    shutil.copytree(
        REPO,
        sources,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "build", "dist", "*.egg-info", ".*_cache", ".hypothesis"
        ),
    )
    wheels = tmp_path / "wheels"
    build = ("-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheels)
    _run(sys.executable, *build, *(sources / d for d in DISTRIBUTIONS), cwd=tmp_path, timeout=120)
    built = sorted(wheels.glob("*.whl"))
    assert [w.name.split("-")[0] for w in built] == [
        "pluggable_messaging",
        "pluggable_messaging_scale",
        "pluggable_messaging_twilio_sms",
    ]
    return built


@pytest.mark.slow
def test_the_demo_runs_from_the_installed_wheels_outside_the_checkout(
    tmp_path: Path, make_venv: Callable[[Path], Path]
) -> None:
    wheels = _build_wheels(tmp_path)
    venv = make_venv(tmp_path / "venv")
    python = venv / "bin" / "python"
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--quiet",
        "--no-deps",
        "--no-index",
        *wheels,
        cwd=tmp_path,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    found = _run(
        python, "-c", "import messaging_core, messaging_twilio_sms; print(messaging_core.__file__)", cwd=elsewhere
    )
    assert found.stdout.startswith(str(venv)), "the wheel's package, not the checkout's"
    demo = _run(venv / "bin" / "messaging", "demo", "--bulk", "5", cwd=elsewhere)
    assert "demo passed" in demo.stdout
    (configuration,) = [line for line in demo.stdout.splitlines() if line.startswith("configuration: ")]
    assert configuration.removeprefix("configuration: ").startswith(str(venv)), configuration
    channels = _run(venv / "bin" / "messaging", "channels", cwd=elsewhere)
    assert "twilio_sms" in channels.stdout
    assert "warning" not in channels.stderr, channels.stderr
    # One version per distribution, the package's own __version__ (single-sourced in pyproject).
    versions = _run(
        python,
        "-c",
        "import importlib.metadata as m, messaging_core, messaging_twilio_sms, messaging_scale as s;"
        "print(m.version('pluggable-messaging') == messaging_core.__version__,"
        " m.version('pluggable-messaging-twilio-sms') == messaging_twilio_sms.__version__,"
        " m.version('pluggable-messaging-scale') == s.__version__)",
        cwd=elsewhere,
    )
    assert versions.stdout.split() == ["True", "True", "True"], versions.stdout
    # What a release would upload renders on PyPI: README, metadata (twine check).
    checked = _run(sys.executable, "-m", "twine", "check", "--strict", *wheels, cwd=tmp_path)
    assert checked.stdout.count("PASSED") == 3, checked.stdout


@pytest.mark.slow
def test_the_sdists_build_and_pass_twine_check(tmp_path: Path) -> None:
    """The source distributions a release would upload: built with the PEP 517 hook (offline), checked."""
    sources = tmp_path / "sources"
    shutil.copytree(
        REPO,
        sources,
        ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "build", "dist", "*.egg-info", ".*_cache"),
    )
    dist = tmp_path / "dist"
    hook = f"from setuptools import build_meta; print(build_meta.build_sdist({str(dist)!r}))"
    for directory in DISTRIBUTIONS:
        _run(sys.executable, "-c", hook, cwd=sources / directory, timeout=120)
    built = sorted(dist.glob("*.tar.gz"))
    assert [p.name for p in built] == [
        "pluggable_messaging-0.1.0.tar.gz",
        "pluggable_messaging_scale-0.1.0.tar.gz",
        "pluggable_messaging_twilio_sms-0.1.0.tar.gz",
    ]
    checked = _run(sys.executable, "-m", "twine", "check", "--strict", *built, cwd=tmp_path)
    assert checked.stdout.count("PASSED") == 3, checked.stdout
    import tarfile

    with tarfile.open(built[2]) as archive:
        names = archive.getnames()
    assert any(n.endswith("messaging_twilio_sms/py.typed") for n in names), names
    assert any(n.endswith("/pyproject.toml") for n in names)
