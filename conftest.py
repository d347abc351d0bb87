"""The rule for tests that cannot run here, shared by every test tree (tests/, plugins/*/tests).

A test that needs something the machine lacks (a service on loopback, root, an optional plugin)
calls the ``cannot_run`` fixture with the reason, which says what is missing, where, and how to
get it. Under CI (``CI=true`` or ``CI=1``) that is a failure: CI never passes with such a test
left out. Elsewhere it is a skip, and ``-ra`` prints the reason. Never call ``pytest.skip`` for
a missing service directly.

Tests run with ``--import-mode=importlib``: test modules cannot import this file, so the rule
reaches them as a fixture.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NoReturn

import pytest

CI_VALUES = frozenset({"1", "true"})
"""Values of ``$CI`` that mean a CI run (GitHub, GitLab and most others set ``CI=true``)."""


def in_ci() -> bool:
    """Whether this is a CI run (``$CI`` is ``true`` or ``1``, in any case)."""
    return os.environ.get("CI", "").strip().lower() in CI_VALUES


def cannot_run(reason: str) -> NoReturn:
    """The test cannot run here, for ``reason``: a failure under CI, a skip with the reason elsewhere."""
    if in_ci():
        pytest.fail(f"{reason} [CI is set: a test that cannot run fails instead of skipping]", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(name="cannot_run")
def cannot_run_fixture() -> Callable[[str], NoReturn]:
    """``cannot_run(reason)``: fail under CI, skip elsewhere; ``reason`` says what is missing and how to get it."""
    return cannot_run
