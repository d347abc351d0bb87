"""A compiled yes/no check for the JSON Schema documents the framework generates.

``jsonschema`` is the authority: it reports every issue, with paths. But its general machinery
(``descend``/``evolve`` per keyword) costs far more than a bulk send can afford per message, so
``JsonValidator.is_valid`` first runs this predicate: Python source generated once per document
(as fastjsonschema does) and compiled. It understands a documented subset of draft 2020-12 — the
keywords our schemas use — and ``compile_predicate`` returns None for any document using
something else, which then goes to ``jsonschema`` directly. A hypothesis test checks that the two
always agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["compile_predicate", "json_equal"]

Predicate = Callable[[Any], bool]

_IGNORED = frozenset({"$schema", "$id", "title", "description", "default", "examples", "$comment", "errorMessage"})
_SUPPORTED = _IGNORED | frozenset(
    {
        "type",
        "enum",
        "const",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "pattern",
        "required",
        "properties",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "contains",
        "minContains",
        "maxContains",
        "anyOf",
        "allOf",
        "not",
    }
)

# The same notion of types as jsonschema's draft 2020-12 type checker ({} is the variable).
_TYPE_TESTS = {
    "string": "isinstance({0}, str)",
    "integer": "((isinstance({0}, int) and not isinstance({0}, bool))"
    " or (isinstance({0}, float) and {0}.is_integer()))",
    "number": "(isinstance({0}, (int, float)) and not isinstance({0}, bool))",
    "boolean": "isinstance({0}, bool)",
    "null": "{0} is None",
    "object": "isinstance({0}, dict)",
    "array": "isinstance({0}, list)",
}


class _Unsupported(Exception):
    pass


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality as jsonschema sees it: booleans never equal numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | dict) or isinstance(b, list | dict):
        return False
    return bool(a == b)


def compile_predicate(schema: Any) -> Predicate | None:
    """A function telling whether an instance is valid against ``schema``, or None if unsupported."""
    generator = _Generator()
    try:
        entry = generator.function(schema)
    except _Unsupported:
        return None
    namespace: dict[str, Any] = dict(generator.constants)
    exec(compile("\n".join(generator.lines), "<messaging_core._fastcheck>", "exec"), namespace)
    predicate: Predicate = namespace[entry]
    return predicate


class _Generator:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {"json_equal": json_equal}
        self._names = 0

    def _name(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}{self._names}"

    def _constant(self, value: Any) -> str:
        name = self._name("C")
        self.constants[name] = value
        return name

    def function(self, schema: Any) -> str:
        """Emit ``def fN(v): ...`` checking ``schema``; return its name."""
        name = self._name("f")
        body: list[str] = []
        self._check(schema, "v", body, 1)
        self.lines.append(f"def {name}(v):")
        self.lines.extend(body)
        self.lines.append("    return True")
        return name

    def _check(self, schema: Any, x: str, out: list[str], depth: int) -> None:
        pad = "    " * depth
        if schema is True or schema == {}:
            return
        if schema is False:
            out.append(f"{pad}return False")
            return
        if not isinstance(schema, Mapping) or not set(schema) <= _SUPPORTED:
            raise _Unsupported
        if "type" in schema:
            names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            try:
                test = " or ".join(_TYPE_TESTS[n].format(x) for n in names)
            except (KeyError, TypeError):
                raise _Unsupported from None
            out.append(f"{pad}if not ({test}): return False")
        if "enum" in schema:
            options = list(schema["enum"])
            if options and all(isinstance(o, str) for o in options):
                allowed = self._constant(frozenset(options))
                out.append(f"{pad}if not (isinstance({x}, str) and {x} in {allowed}): return False")
            else:
                const = self._constant(options)
                out.append(f"{pad}if not any(json_equal({x}, o) for o in {const}): return False")
        if "const" in schema:
            value = schema["const"]
            if isinstance(value, str):
                out.append(f"{pad}if not (isinstance({x}, str) and {x} == {value!r}): return False")
            else:
                out.append(f"{pad}if not json_equal({x}, {self._constant(value)}): return False")
        self._numeric(schema, x, out, pad)
        self._string(schema, x, out, pad, depth)
        self._object(schema, x, out, pad, depth)
        self._array(schema, x, out, pad, depth)
        if "anyOf" in schema:
            branches = [self.function(branch) for branch in schema["anyOf"]]
            out.append(f"{pad}if not ({' or '.join(f'{b}({x})' for b in branches)}): return False")
        if "allOf" in schema:
            for branch in schema["allOf"]:
                out.append(f"{pad}if not {self.function(branch)}({x}): return False")
        if "not" in schema:
            out.append(f"{pad}if {self.function(schema['not'])}({x}): return False")

    def _numeric(self, schema: Mapping[str, Any], x: str, out: list[str], pad: str) -> None:
        bounds = [
            (keyword, operator)
            for keyword, operator in (
                ("minimum", "<"),
                ("maximum", ">"),
                ("exclusiveMinimum", "<="),
                ("exclusiveMaximum", ">="),
            )
            if keyword in schema
        ]
        if not bounds:
            return
        out.append(f"{pad}if isinstance({x}, (int, float)) and not isinstance({x}, bool):")
        for keyword, operator in bounds:
            limit = schema[keyword]
            if not isinstance(limit, int | float) or isinstance(limit, bool):
                raise _Unsupported
            out.append(f"{pad}    if {x} {operator} {limit!r}: return False")

    def _string(self, schema: Mapping[str, Any], x: str, out: list[str], pad: str, depth: int) -> None:
        checks = []
        if "minLength" in schema:
            checks.append(f"if len({x}) < {int(schema['minLength'])}: return False")
        if "maxLength" in schema:
            checks.append(f"if len({x}) > {int(schema['maxLength'])}: return False")
        if "pattern" in schema:
            # jsonschema uses re.search: unanchored unless the pattern anchors itself.
            search = self._constant(re.compile(schema["pattern"]).search)
            checks.append(f"if {search}({x}) is None: return False")
        if checks:
            out.append(f"{pad}if isinstance({x}, str):")
            out.extend(f"{pad}    {check}" for check in checks)

    def _object(self, schema: Mapping[str, Any], x: str, out: list[str], pad: str, depth: int) -> None:
        required = list(schema.get("required", ()))
        properties: Mapping[str, Any] = schema.get("properties", {})
        additional = schema.get("additionalProperties", True)
        if not (required or properties or additional is not True):
            return
        out.append(f"{pad}if isinstance({x}, dict):")
        inner = pad + "    "
        for name in required:
            out.append(f"{inner}if {name!r} not in {x}: return False")
        for name, sub in properties.items():
            if sub is True or sub == {}:
                continue
            item = self._name("p")
            out.append(f"{inner}if {name!r} in {x}:")
            out.append(f"{inner}    {item} = {x}[{name!r}]")
            before = len(out)
            self._check(sub, item, out, depth + 2)
            if len(out) == before:
                out.append(f"{inner}    pass")
        if additional is not True:
            known = self._constant(frozenset(properties))
            key = self._name("k")
            if additional is False:
                out.append(f"{inner}for {key} in {x}:")
                out.append(f"{inner}    if {key} not in {known}: return False")
            else:
                extra = self.function(additional)
                out.append(f"{inner}for {key}, {key}v in {x}.items():")
                out.append(f"{inner}    if {key} not in {known} and not {extra}({key}v): return False")

    def _array(self, schema: Mapping[str, Any], x: str, out: list[str], pad: str, depth: int) -> None:
        lines: list[str] = []
        inner = pad + "    "
        if "items" in schema:
            item = self._name("i")
            body: list[str] = []
            self._check(schema["items"], item, body, depth + 2)
            if body:
                lines.append(f"{inner}for {item} in {x}:")
                lines.extend(body)
        if "minItems" in schema:
            lines.append(f"{inner}if len({x}) < {int(schema['minItems'])}: return False")
        if "maxItems" in schema:
            lines.append(f"{inner}if len({x}) > {int(schema['maxItems'])}: return False")
        if "contains" in schema:
            matches = self.function(schema["contains"])
            count = self._name("n")
            low = int(schema.get("minContains", 1))
            lines.append(f"{inner}{count} = sum(1 for e in {x} if {matches}(e))")
            lines.append(f"{inner}if {count} < {low}: return False")
            if "maxContains" in schema:
                lines.append(f"{inner}if {count} > {int(schema['maxContains'])}: return False")
        elif "minContains" in schema or "maxContains" in schema:
            raise _Unsupported  # ignored by the spec without "contains"; not worth modelling
        if lines:
            out.append(f"{pad}if isinstance({x}, list):")
            out.extend(lines)
