"""Every example of the "## Examples" section of docs/connectors/twilio-sms.md runs as written.

Each fenced Python block is a whole script, run in a fresh interpreter against the emulator it
starts, bounded by a timeout, as a reader would run it after copying it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC_PAGE = Path(__file__).resolve().parents[3] / "docs" / "connectors" / "twilio-sms.md"
SECTION = "## Examples"
TIMEOUT = 60.0
_FENCED_PYTHON = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _examples() -> list[str]:
    text = DOC_PAGE.read_text(encoding="utf-8")
    start = text.index(SECTION + "\n")
    end = text.index("\n## ", start + len(SECTION))
    return _FENCED_PYTHON.findall(text[start:end])


EXAMPLES = _examples()


def test_the_examples_are_found() -> None:
    assert len(EXAMPLES) == 4


@pytest.mark.parametrize("code", EXAMPLES, ids=[f"example-{n}" for n in range(len(EXAMPLES))])
def test_an_example_runs_as_written(code: str) -> None:
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.stdout.strip(), "an example prints what it did"
