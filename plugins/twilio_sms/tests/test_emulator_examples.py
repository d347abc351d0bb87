"""Every code example the emulator documents runs as written.

The examples are the literal blocks (``::``) of the docstrings in ``messaging_twilio_sms.emulator``
and the fenced Python blocks of the "## The emulator" section of ``docs/connectors/twilio-sms.md``.
Each runs as a script in a fresh interpreter, bounded by a timeout, as a reader would run it after
copying it; a missing import or a client blocking the emulator's own loop fails it.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

import messaging_twilio_sms.emulator

DOC_PAGE = Path(__file__).resolve().parents[3] / "docs" / "connectors" / "twilio-sms.md"
"""The connector's page: tests/ -> twilio_sms/ -> plugins/ -> the repository root."""
DOC_SECTION = "## The emulator"
EXAMPLE_TIMEOUT = 60.0
"""Seconds one example may take: a fresh interpreter importing twilio and aiohttp, then a few requests."""

_FENCED_PYTHON = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def literal_blocks(docstring: str) -> list[str]:
    """The reST literal blocks of a docstring: the indented lines after a paragraph ending in ``::``."""
    lines = inspect.cleandoc(docstring).splitlines()
    blocks = []
    for index, line in enumerate(lines):
        if not line.endswith("::"):
            continue
        body = []
        for following in lines[index + 1 :]:
            if following.strip() and not following.startswith((" ", "\t")):
                break
            body.append(following)
        blocks.append(textwrap.dedent("\n".join(body)).strip() + "\n")
    return blocks


def _documented(module: ModuleType) -> list[tuple[str, str]]:
    """`(qualified name, docstring)` of a module and of the classes, functions and methods it defines."""
    found = [(module.__name__, module.__doc__ or "")]
    for name, member in vars(module).items():
        if getattr(member, "__module__", None) != module.__name__ or not callable(member):
            continue
        found.append((f"{module.__name__}.{name}", member.__doc__ or ""))
        if inspect.isclass(member):
            found += [
                (f"{module.__name__}.{name}.{attribute}", value.__doc__ or "")
                for attribute, value in vars(member).items()
                if callable(value) or isinstance(value, property)
            ]
    return found


def docstring_examples() -> list[tuple[str, str]]:
    """`(id, code)` for every literal block in a docstring of the emulator package."""
    package = messaging_twilio_sms.emulator
    modules = [package] + [
        importlib.import_module(f"{package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
        if info.name != "__main__"  # running it is the command line, tested in test_emulator.py
    ]
    examples = []
    for module in modules:
        for name, docstring in _documented(module):
            blocks = literal_blocks(docstring)
            examples += [(f"{name}[{n}]" if len(blocks) > 1 else name, code) for n, code in enumerate(blocks)]
    return examples


def doc_page_examples() -> list[tuple[str, str]]:
    """`(id, code)` for every fenced Python block of the emulator section of the connector's page."""
    text = DOC_PAGE.read_text(encoding="utf-8")
    start = text.index(DOC_SECTION + "\n")
    following = text.find("\n## ", start + len(DOC_SECTION))
    section = text[start : None if following < 0 else following]
    return [(f"twilio-sms.md[{n}]", code) for n, code in enumerate(_FENCED_PYTHON.findall(section))]


EXAMPLES = docstring_examples() + doc_page_examples()


def test_the_documented_examples_are_all_found() -> None:
    assert [name for name, _ in EXAMPLES] == [
        "messaging_twilio_sms.emulator",
        "messaging_twilio_sms.emulator._server.TwilioEmulator",
        "messaging_twilio_sms.emulator._threaded",
        "twilio-sms.md[0]",
        "twilio-sms.md[1]",
        "twilio-sms.md[2]",
    ]


def test_literal_blocks_end_at_the_next_paragraph() -> None:
    docstring = """Summary.

    Run this::

        first()

        second()

    Then this, not code.
    """
    assert literal_blocks(docstring) == ["first()\n\nsecond()\n"]


def run_example(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` as a script in a fresh interpreter (bounded) and return what happened."""
    return subprocess.run(
        [sys.executable, "-X", "dev", "-c", code],
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT,
        check=False,
    )


def test_a_broken_example_fails() -> None:
    """The runner shows failures: a client that blocks the emulator's own loop never gets an answer."""
    blocking = textwrap.dedent(
        """
        import asyncio
        import urllib.request

        from messaging_twilio_sms.emulator import TwilioEmulator


        async def main() -> None:
            async with TwilioEmulator() as emu:
                urllib.request.urlopen(emu.base_url + "/2010-04-01/Accounts.json", timeout=1)


        asyncio.run(main())
        """
    )
    result = run_example(blocking)
    assert result.returncode != 0
    assert "timed out" in result.stderr


@pytest.mark.parametrize("code", [code for _, code in EXAMPLES], ids=[name for name, _ in EXAMPLES])
def test_documented_example_runs(code: str) -> None:
    result = run_example(code)
    assert result.returncode == 0, result.stderr
