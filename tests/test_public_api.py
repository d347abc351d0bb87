"""The public API: ``messaging_core.__all__`` and the exception tree drawn in ``errors``' docstring."""

from __future__ import annotations

import builtins
import re

import pytest

import messaging_core
from messaging_core import (
    CapabilityNotSupportedError,
    ConfigurationError,
    ConnectorErrorCodes,
    ConnectorOperationError,
    ConnectorResult,
    ConnectorStateError,
    Failure,
    MessagingError,
    PluginError,
    SchemaError,
    ValidationFailedError,
    ValidationIssue,
)


def test_all_is_sorted_and_unique() -> None:
    assert messaging_core.__all__ == sorted(messaging_core.__all__)
    assert len(set(messaging_core.__all__)) == len(messaging_core.__all__)


def test_every_public_name_resolves() -> None:
    missing = [name for name in messaging_core.__all__ if not hasattr(messaging_core, name)]
    assert missing == []


def test_public_classes_live_in_public_modules_and_are_documented() -> None:
    for name in messaging_core.__all__:
        obj = getattr(messaging_core, name)
        if isinstance(obj, type):
            assert obj.__module__.startswith("messaging_core."), name
            assert not obj.__module__.rsplit(".", 1)[-1].startswith("_"), name
            assert (obj.__doc__ or "").strip(), f"{name} has no docstring"


def test_version_is_a_string() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", messaging_core.__version__)


# -- the exception tree ---------------------------------------------------------------------------------

_TREE_LINE = re.compile(r"^(?P<indent>[\s│]*)(?:[├└]── )?(?P<name>[A-Z]\w+Error)(?: \((?P<base>\w+)\))?")


def _documented_tree() -> list[tuple[str, str | None, str | None]]:
    """``(exception, documented parent exception, documented builtin)`` read from the docstring."""
    from messaging_core import errors

    doc = errors.__doc__ or ""
    lines = doc.split("::", 1)[1].splitlines()
    found: list[tuple[str, str | None, str | None]] = []
    stack: list[tuple[int, str]] = []
    for line in lines:
        match = _TREE_LINE.match(line)
        if not match:
            continue
        depth = match.start("name")
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else None
        found.append((match["name"], parent, match["base"]))
        stack.append((depth, match["name"]))
    return found


def test_docstring_tree_lists_every_exception() -> None:
    from messaging_core import errors

    documented = {name for name, _, _ in _documented_tree()}
    assert documented == set(errors.__all__)
    assert len(documented) == 12


@pytest.mark.parametrize(("name", "parent", "builtin"), _documented_tree())
def test_exception_matches_the_documented_tree(name: str, parent: str | None, builtin: str | None) -> None:
    cls = getattr(messaging_core, name)
    assert issubclass(cls, MessagingError)
    if parent is not None:
        assert issubclass(cls, getattr(messaging_core, parent)), f"{name} should derive from {parent}"
    if builtin is not None:
        assert issubclass(cls, getattr(builtins, builtin)), f"{name} should derive from {builtin}"


@pytest.mark.parametrize(
    ("exception", "builtin"),
    [
        (ConfigurationError("x"), ValueError),
        (SchemaError("x"), ValueError),
        (PluginError("x"), RuntimeError),
        (CapabilityNotSupportedError("x"), NotImplementedError),
        (ConnectorStateError("x"), RuntimeError),
    ],
)
def test_callers_catching_builtins_still_catch(exception: MessagingError, builtin: type[Exception]) -> None:
    with pytest.raises(builtin):
        raise exception


def test_configuration_error_carries_its_issues() -> None:
    issue = ValidationIssue("$.connectors.sms.channel", "is required", "REQUIRED")
    error = ConfigurationError("config.toml: 1 problem", issues=[issue])
    assert error.issues == (issue,)
    assert str(error) == "config.toml: 1 problem"


def test_operation_error_exposes_code_and_error() -> None:
    error = Failure(ConnectorErrorCodes.INVALID_RECIPIENT, "bad number")
    raised = error.exception()
    assert isinstance(raised, ValidationFailedError)
    assert isinstance(raised, ConnectorOperationError)
    assert raised.code == ConnectorErrorCodes.INVALID_RECIPIENT
    assert raised.error is error
    assert str(raised) == "INVALID_RECIPIENT: bad number"
    with pytest.raises(ValueError, match="bad number"):
        ConnectorResult.from_error(error).unwrap()
