"""Docs are tested: every hookspec is documented under its exact signature, and covered by a test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from messaging_core import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS_DOC = ROOT / "docs" / "hooks.md"


def _hookspecs() -> dict[str, inspect.Signature]:
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return {
        name: inspect.signature(function)
        for name, function in vars(hookspecs).items()
        if callable(function) and hasattr(function, marker)
    }


def _call_signature(name: str, signature: inspect.Signature) -> str:
    return f"{name}({', '.join(signature.parameters)})"


HOOKS = _hookspecs()


def test_the_hookspecs_are_found() -> None:
    assert set(HOOKS) == {
        "register_connectors",
        "resolve_parameter",
        "validate_message",
        "connector_state_changed",
        "message_sent",
        "message_status_changed",
        "message_received",
        "reply_to_message",
        "register_commands",
        "register_emulators",
        "register_dispatchers",
    }


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_hook_is_documented_under_its_exact_signature(name: str) -> None:
    headings = [line for line in HOOKS_DOC.read_text("utf-8").splitlines() if line.startswith("#")]
    expected = _call_signature(name, HOOKS[name])
    assert any(f"`{expected}`" in heading for heading in headings), f"no heading `{expected}` in {HOOKS_DOC.name}"


def test_no_heading_documents_a_hook_that_does_not_exist() -> None:
    documented = re.findall(r"^#+ `(\w+)\(", HOOKS_DOC.read_text("utf-8"), flags=re.MULTILINE)
    assert sorted(documented) == sorted(HOOKS)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_firstresult_is_documented_where_it_applies(name: str) -> None:
    function = getattr(hookspecs, name)
    firstresult = getattr(function, f"{hookspecs.PROJECT_NAME}_spec")["firstresult"]
    text = HOOKS_DOC.read_text("utf-8")
    section = text.split(f"`{_call_signature(name, HOOKS[name])}`", 1)[1].split("\n## ", 1)[0]
    if firstresult:
        assert "**`firstresult`**" in section
        assert "Stops at first non-None result." in (function.__doc__ or "")
    else:
        assert "not `firstresult`" in section.lower()


def _test_files() -> list[Path]:
    files = [p for p in (ROOT / "tests").rglob("*.py") if p.name != Path(__file__).name]
    files += list((ROOT / "plugins").glob("*/tests/**/*.py"))
    return files


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_hook_is_exercised_by_a_test(name: str) -> None:
    users = [p.name for p in _test_files() if re.search(rf"\b{name}\b", p.read_text("utf-8"))]
    assert users, f"no test file under tests/ or plugins/*/tests mentions {name}"
