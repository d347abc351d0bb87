"""Validation issues and the JSON Schema validators behind them.

Every check in the framework reports *all* problems, each as a ``ValidationIssue`` with a JSON path
(``$.receiver.address``), a human message and a stable code. Messages never echo the offending value:
values can be secrets (an AuthToken) or personal data (a phone number).

Validators are compiled once per JSON Schema document and cached; validation runs per message on the
hot path of bulk sending.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema
from attrs import frozen
from jsonschema.exceptions import ValidationError as _JsonSchemaError

from messaging_core._fastcheck import compile_predicate

__all__ = ["IssueCodes", "JsonValidator", "ValidationIssue", "format_issues"]


class IssueCodes:
    """Stable codes carried by ``ValidationIssue.code``."""

    REQUIRED = "REQUIRED"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    INVALID_TYPE = "INVALID_TYPE"
    NOT_ALLOWED = "NOT_ALLOWED"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    TOO_SHORT = "TOO_SHORT"
    TOO_LONG = "TOO_LONG"
    INVALID_FORMAT = "INVALID_FORMAT"
    TOO_MANY = "TOO_MANY"
    INVALID_VALUE = "INVALID_VALUE"
    UNSUPPORTED = "UNSUPPORTED"
    POLICY = "POLICY"


@frozen
class ValidationIssue:
    """One problem found while validating a value against a schema."""

    path: str
    """JSON path of the offending value, e.g. ``$.properties.ValidityPeriod``."""
    message: str
    """What is wrong, without echoing the value."""
    code: str = IssueCodes.INVALID_VALUE
    """A stable code from ``IssueCodes`` (plugins may add their own)."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def format_issues(issues: Iterable[ValidationIssue]) -> str:
    """Render issues as one ``path: message`` per line."""
    return "\n".join(f"  - {issue}" for issue in issues)


def _path_of(error: _JsonSchemaError, root: str) -> str:
    parts = [root]
    for element in error.absolute_path:
        parts.append(f"[{element}]" if isinstance(element, int) else f".{element}")
    return "".join(parts)


def _describe(error: _JsonSchemaError, root: str) -> list[ValidationIssue]:
    """Turn a jsonschema error into issues with our own wording (never the instance value)."""
    keyword = str(error.validator)
    expected: Any = error.validator_value
    path = _path_of(error, root)
    if keyword == "required":
        missing = [name for name in expected if isinstance(error.instance, dict) and name not in error.instance]
        return [ValidationIssue(f"{path}.{name}", "is required", IssueCodes.REQUIRED) for name in missing]
    if keyword in ("additionalProperties", "unevaluatedProperties"):
        known = set(error.schema.get("properties", {})) if isinstance(error.schema, dict) else set()
        extras = [n for n in error.instance if n not in known] if isinstance(error.instance, dict) else []
        return [ValidationIssue(f"{path}.{name}", "is not a known field", IssueCodes.UNKNOWN_FIELD) for name in extras]
    if keyword == "type" and error.instance is None:
        return [ValidationIssue(path, "is required", IssueCodes.REQUIRED)]
    if keyword == "pattern" and isinstance(error.schema, dict) and isinstance(error.schema.get("errorMessage"), str):
        # A rule with its own wording (ajv-errors' keyword): EndpointSpec.address_rules.
        return [ValidationIssue(path, error.schema["errorMessage"], IssueCodes.INVALID_FORMAT)]
    simple = _simple_message(keyword, expected, error.instance)
    if simple is not None:
        return [ValidationIssue(path, simple[0], simple[1])]
    if keyword in ("oneOf", "anyOf") and error.context:
        return _describe_branches(error, root, path)
    if keyword == "not":
        return [ValidationIssue(path, "is not allowed here", IssueCodes.NOT_ALLOWED)]
    return [ValidationIssue(path, f"is invalid ({keyword})", IssueCodes.INVALID_VALUE)]


def _describe_branches(error: _JsonSchemaError, root: str, path: str) -> list[ValidationIssue]:
    """Explain an anyOf/oneOf failure by the branch the value meant to match.

    Branches are told apart by a ``const`` discriminator (``"type": "text"``), by being the ``null``
    alternative, or else by the value's type (one string where a string or a list is allowed): a
    branch that fails on that is not the one meant (a nested anyOf about the same value counts
    when all its branches are not meant). When exactly one branch is left, its issues are the
    answer; when none is, the discriminator itself is wrong.
    """
    if error.instance is None:
        return [ValidationIssue(path, "is required", IssueCodes.REQUIRED)]
    branches = _branches(error)
    depth = len(error.absolute_path)
    meant = {k: errs for k, errs in branches.items() if not _mismatched(errs, depth)}
    if len(meant) > 1:  # then by the value's type: one string where a string or a list of them is allowed
        meant = {k: errs for k, errs in meant.items() if not _mismatched(errs, depth, any_type=True)} or meant
    if len(meant) == 1:
        (errors,) = meant.values()
        return [issue for sub in errors for issue in _describe(sub, root)]
    keys = [e for errs in branches.values() for e in _discriminators(errs, depth)]
    if keys and not meant:
        allowed = sorted({e.validator_value for e in keys}, key=str)
        return [ValidationIssue(_path_of(keys[0], root), f"must be one of {_short(allowed)}", IssueCodes.NOT_ALLOWED)]
    return [ValidationIssue(path, "matches none of the allowed forms", IssueCodes.INVALID_VALUE)]


def _branches(error: _JsonSchemaError) -> dict[Any, list[_JsonSchemaError]]:
    """The errors of an anyOf/oneOf, grouped by branch."""
    branches: dict[Any, list[_JsonSchemaError]] = {}
    for sub in error.context or ():
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    return branches


def _mismatched(errors: list[_JsonSchemaError], depth: int, any_type: bool = False) -> bool:
    """Whether a branch failed on what tells the branches of the value at ``depth`` apart."""
    for e in errors:
        if e.validator == "type" and len(e.absolute_path) == depth and (any_type or e.validator_value == "null"):
            return True
        if e.validator == "const" and len(e.absolute_path) == depth + 1:
            return True
        nested = e.validator in ("anyOf", "oneOf") and len(e.absolute_path) == depth and e.context
        if nested and all(_mismatched(errs, depth, any_type) for errs in _branches(e).values()):
            return True
    return False


def _discriminators(errors: list[_JsonSchemaError], depth: int) -> list[_JsonSchemaError]:
    """The failed ``const`` discriminators of the value at ``depth``, nested anyOf included."""
    found = []
    for e in errors:
        if e.validator == "const" and len(e.absolute_path) == depth + 1:
            found.append(e)
        elif e.validator in ("anyOf", "oneOf") and len(e.absolute_path) == depth:
            found.extend(d for errs in _branches(e).values() for d in _discriminators(errs, depth))
    return found


def _simple_message(keyword: str, expected: Any, instance: Any) -> tuple[str, str] | None:
    """Wording and code for the single-value keywords (computed only for the keyword at hand)."""
    if keyword == "type":
        return (
            f"must be of type {_type_words(expected)} (got {_json_type(instance)})",
            IssueCodes.INVALID_TYPE,
        )
    if keyword == "enum":
        return f"must be one of {_short(expected)}", IssueCodes.NOT_ALLOWED
    if keyword == "const":
        return f"must be {json.dumps(expected)}", IssueCodes.NOT_ALLOWED
    bounds = {
        "minimum": ("must be >= {}", IssueCodes.OUT_OF_RANGE),
        "maximum": ("must be <= {}", IssueCodes.OUT_OF_RANGE),
        "exclusiveMinimum": ("must be > {}", IssueCodes.OUT_OF_RANGE),
        "exclusiveMaximum": ("must be < {}", IssueCodes.OUT_OF_RANGE),
        "minLength": ("must have at least {} characters", IssueCodes.TOO_SHORT),
        "maxLength": ("must have at most {} characters", IssueCodes.TOO_LONG),
        "pattern": ("must match the pattern {}", IssueCodes.INVALID_FORMAT),
        "format": ("must be a valid {}", IssueCodes.INVALID_FORMAT),
        "minItems": ("must have at least {} items", IssueCodes.TOO_SHORT),
        "maxItems": ("must have at most {} items", IssueCodes.TOO_MANY),
        "maxContains": ("must have at most {} such items", IssueCodes.TOO_MANY),
        "minProperties": ("must have at least {} entries", IssueCodes.TOO_SHORT),
        "uniqueItems": ("must not contain duplicates", IssueCodes.INVALID_VALUE),
    }
    if keyword in bounds:
        template, code = bounds[keyword]
        return template.format(expected), code
    return None


def _short(values: Any) -> str:
    text = ", ".join(json.dumps(v) for v in values)
    return f"[{text}]" if len(text) < 200 else f"[{text[:200]}...]"


def _type_words(expected: Any) -> str:
    return " or ".join(expected) if isinstance(expected, list) else str(expected)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return "object"


class JsonValidator:
    """A JSON Schema (draft 2020-12) compiled once; reports every issue.

    ``root`` is the prefix of the reported paths (``$`` for a whole document, or e.g.
    ``$.connectors.sms.parameters`` when the instance sits inside a larger document).
    """

    __slots__ = ("_fast", "_validator", "document")

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        cls = jsonschema.validators.validator_for(document, default=jsonschema.Draft202012Validator)
        cls.check_schema(dict(document))
        self._validator = cls(document, format_checker=cls.FORMAT_CHECKER)
        # A compiled predicate for the subset of keywords our documents use (None otherwise):
        # jsonschema's general machinery is too slow per message; it still reports the issues.
        self._fast = compile_predicate(document)

    def is_valid(self, instance: Any) -> bool:
        """Fast yes/no answer, used before collecting issues."""
        if self._fast is not None:
            return self._fast(instance)
        return bool(self._validator.is_valid(instance))

    def issues(self, instance: Any, root: str = "$") -> list[ValidationIssue]:
        """Every problem of ``instance``, sorted by path; empty when valid."""
        found: list[ValidationIssue] = []
        for error in self._validator.iter_errors(instance):
            found.extend(_describe(error, root))
        # Deduplicate (anyOf branches can repeat a leaf) and keep a stable order.
        unique = {(i.path, i.message, i.code): i for i in found}
        return sorted(unique.values(), key=lambda i: (i.path, i.code, i.message))


@functools.lru_cache(maxsize=256)
def _compiled(document_json: str) -> JsonValidator:
    return JsonValidator(json.loads(document_json))


def validator_for(document: Mapping[str, Any]) -> JsonValidator:
    """A cached validator for a JSON Schema document (keyed by its canonical JSON text)."""
    return _compiled(json.dumps(document, sort_keys=True))
