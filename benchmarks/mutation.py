"""Mutation-test one module with mutmut and record its score: ``make mutation MODULE=path/to/module.py``.

A habit for finding untested behaviour, not a CI gate: never part of the test command. mutmut 3
mutates a copy of the code under ``mutants/`` and imports it from ``mutants/src`` (or ``mutants/``),
which fits neither the core (flat layout, data files beside the code) nor the plugins
(``plugins/<name>/src``) as they stand. So each run gets a scratch directory,
``build/mutation/<module>/``, laid out as mutmut expects:

    setup.cfg                  the [mutmut] section for this module (only this file is mutated)
    src/<package>  -> the package's directory (symlink; mutmut copies it to mutants/src/<package>)
    mutants/<entry> -> the repository's top-level entries (symlinks: pyproject.toml, conftest.py,
                       tests/, plugins/, docs/...), so that pytest finds its configuration, the
                       conftest files and the test files at the paths they have in the repository

Tests import the package by name and get the mutated copy (``mutants/src`` comes first on
``sys.path``). Each run starts afresh (no cached verdicts from an older version of the code).

The score (killed + timeout over all mutants) is written to ``benchmarks/results/mutation.md``: one
dated row per module and label, between the table markers; the rest of that file (surviving mutants
judged equivalent, with a reason each) is written by hand. The survivors of the run, with their
diffs, are in ``build/mutation/<module>/survivors.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "mutation.md"
MUTMUT = Path(sys.executable).parent / "mutmut"
TABLE_START = "<!-- mutation-table:start -->"
TABLE_END = "<!-- mutation-table:end -->"
HEADER = (
    "| date (UTC) | module | label | mutants | killed | survived | no tests | timeout | score | minutes |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)
# Repository entries never mirrored into mutants/: the packages (imported from mutants/src or the
# installed distributions instead), the scratch directories and the tool state.
# Tests that cannot run under mutmut, with the reason. Its workers ignore SIGINT, and a child process
# inherits that: a test that stops a command-line program with SIGINT waits forever.
_DESELECTED = ("plugins/twilio_sms/tests/test_emulator.py::test_command_line_serves_until_interrupted",)
_NOT_MIRRORED = frozenset(
    {".git", ".venv", "build", "mutants", "setup.cfg", ".hypothesis", ".mypy_cache", ".ruff_cache"}
)


def package_root(module: Path) -> Path:
    """The top package directory holding ``module`` (the highest directory with an ``__init__.py``)."""
    package = module.parent
    if not (package / "__init__.py").is_file():
        raise SystemExit(f"{module} is not inside a package (no __init__.py beside it)")
    while (package.parent / "__init__.py").is_file():
        package = package.parent
    return package


def default_tests(module: Path) -> list[str]:
    """The test tree of the distribution the module belongs to: ``plugins/<name>/tests`` or ``tests``."""
    relative = module.relative_to(ROOT)
    if relative.parts[0] == "plugins":
        return [str(Path(*relative.parts[:2], "tests"))]
    return ["tests"]


def prepare(workdir: Path, module: Path, tests: list[str]) -> str:
    """Lay out ``workdir`` for mutmut and return the module's path as mutmut names it."""
    package = package_root(module)
    source = Path("src", package.name)
    mutated = source / module.relative_to(package)
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "src").mkdir(parents=True)
    (workdir / source).symlink_to(package, target_is_directory=True)
    mirror = workdir / "mutants"
    mirror.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in _NOT_MIRRORED and entry != package and not entry.name.endswith(".egg-info"):
            (mirror / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    selection = "".join(f"\n    {test}" for test in tests)
    deselected = "".join(f"\n    --deselect\n    {test}" for test in _DESELECTED)
    (workdir / "setup.cfg").write_text(
        "[mutmut]\n"
        f"source_paths = {source}\n"
        f"only_mutate = {mutated}\n"
        f"pytest_add_cli_args_test_selection ={selection}\n"
        f"pytest_add_cli_args ={deselected}\n"
        # Each run starts afresh: no verdicts carried over from an older version of the code.
        "use_git_change_detection = false\n"
    )
    return str(mutated)


def run_mutmut(workdir: Path, max_children: int, minutes: float) -> bool:
    """Run ``mutmut run`` in ``workdir``; False when it was stopped after ``minutes``."""
    log = (workdir / "run.log").open("w")
    process = subprocess.Popen(
        [str(MUTMUT), "run", "--max-children", str(max_children)],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its forked workers share the group: stopped together
    )
    try:
        process.wait(timeout=minutes * 60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()
        return False
    finally:
        log.close()
    if process.returncode != 0:
        raise SystemExit(f"mutmut run failed ({process.returncode}); see {workdir / 'run.log'}")
    return True


def collect(workdir: Path) -> tuple[dict[str, int], list[str]]:
    """Counts of the run (mutmut's CI/CD stats) and the names of the surviving mutants."""
    subprocess.run([str(MUTMUT), "export-cicd-stats"], cwd=workdir, check=True, capture_output=True)
    stats = json.loads((workdir / "mutants" / "mutmut-cicd-stats.json").read_text())
    listing = subprocess.run([str(MUTMUT), "results"], cwd=workdir, check=True, capture_output=True, text=True)
    survivors = [
        line.strip().rpartition(":")[0]
        for line in listing.stdout.splitlines()
        if line.strip().endswith((": survived", ": no tests"))
    ]
    with (workdir / "survivors.txt").open("w") as out:
        for name in survivors:
            shown = subprocess.run([str(MUTMUT), "show", name], cwd=workdir, capture_output=True, text=True)
            out.write(shown.stdout + "\n")
    return stats, survivors


def row(module: str, label: str, stats: dict[str, int], minutes: float, finished: bool) -> str:
    total = stats["total"]
    caught = stats["killed"] + stats["timeout"]
    score = f"{100 * caught / total:.1f} %" if total else "–"
    if not finished:
        score += " (stopped)"
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    cells = [
        date,
        f"`{module}`",
        label,
        total,
        stats["killed"],
        stats["survived"],
        stats["no_tests"],
        stats["timeout"],
        score,
        f"{minutes:.1f}",
    ]
    return "| " + " | ".join(map(str, cells)) + " |"


def record(new_row: str) -> None:
    """Put ``new_row`` in the results table, replacing the row of the same date, module and label."""
    text = RESULTS.read_text() if RESULTS.exists() else f"# Mutation testing\n\n{TABLE_START}\n{TABLE_END}\n"
    head, start, rest = text.partition(TABLE_START)
    table, end, tail = rest.partition(TABLE_END)
    if not start or not end:
        raise SystemExit(f"{RESULTS} lost its table markers {TABLE_START} / {TABLE_END}")
    key = new_row.split(" | ")[:3]
    rows = [line for line in table.strip().splitlines() if line.startswith("| ") and not line.startswith("| date")]
    rows = [new_row if line.split(" | ")[:3] == key else line for line in rows]
    if new_row not in rows:
        rows.append(new_row)
    # By module, then date; rows of one module and date stay in the order they were run (before, after).
    body = "\n".join([HEADER, *sorted(rows, key=lambda line: (line.split(" | ")[1], line.split(" | ")[0]))])
    RESULTS.write_text(f"{head}{TABLE_START}\n{body}\n{end}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", type=Path, help="the .py file to mutate, from the repository root")
    parser.add_argument("--tests", nargs="*", help="test paths to run (default: the module's test tree)")
    parser.add_argument("--max-children", type=int, default=2, help="parallel mutant runs (default 2)")
    parser.add_argument("--minutes", type=float, default=25.0, help="stop the run after this (default 25)")
    parser.add_argument("--label", default="", help="a word for the table row (e.g. before, after)")
    args = parser.parse_args(argv)
    module = (ROOT / args.module).resolve()
    if module.suffix != ".py" or not module.is_file():
        raise SystemExit(f"no such module: {args.module}")
    tests = args.tests or default_tests(module)
    name = re.sub(r"[^\w.]+", "_", str(module.relative_to(ROOT).with_suffix("")).replace(os.sep, "."))
    workdir = ROOT / "build" / "mutation" / name
    prepare(workdir, module, tests)
    started = datetime.now(UTC)
    finished = run_mutmut(workdir, args.max_children, args.minutes)
    minutes = (datetime.now(UTC) - started).total_seconds() / 60
    stats, survivors = collect(workdir)
    relative = str(module.relative_to(ROOT))
    record(row(relative, args.label, stats, minutes, finished))
    print(f"{relative}: {stats['killed']} killed, {stats['timeout']} timeout of {stats['total']} mutants")
    print(f"{len(survivors)} survivor(s), with diffs in {workdir / 'survivors.txt'}; table in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
