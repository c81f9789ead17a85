"""Apply one mutation at a time to a scratch copy of the repository and run its named tests there.

The working tree is never edited: the repository is copied once under a temporary directory, each
mutation is written into the copy, its tests run with PYTHONPATH at the copy (subprocesses the tests
start import the copy too), and the file is put back before the next one. A mutation is killed when
its tests fail; it survives when they all pass, and then the promise it breaks is unguarded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from mutate.mutations import Mutation

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
# What a scratch copy leaves out: the virtualenv and git's store (large, and nothing the tests import),
# caches, and state or output of earlier runs.
_NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache",
                                     ".ruff_cache", ".wa-archive", "test-artifacts", "results", "*.egg-info")
# pytest's exit statuses: 1 (tests failed) and 2 (interrupted, e.g. a collection error the mutation
# caused) count as killed; 3-5 (internal error, usage error, no tests collected) mean the run itself
# is broken, which is reported as an error, never as a kill.
_KILLED = {1, 2}


class StaleMutation(Exception):
    """The mutation's original snippet is not in its file exactly once: the code moved on without it."""


@dataclass
class Outcome:
    name: str
    status: str  # killed | survived | error | timeout
    seconds: float
    exit_code: int | None
    detail: str  # the failing test's line, or why it is an error


def check(mutation: Mutation, root: Path = ROOT) -> str:
    """The file's text, after checking the original occurs in it exactly once (StaleMutation otherwise)."""
    path = root / mutation.file
    if not path.is_file():
        raise StaleMutation(f"{mutation.name}: {mutation.file} does not exist")
    text = path.read_text()
    found = text.count(mutation.original)
    if found != 1:
        raise StaleMutation(f"{mutation.name}: its original snippet occurs {found} times in {mutation.file}"
                            " (exactly once expected)")
    if mutation.original == mutation.replacement:
        raise StaleMutation(f"{mutation.name}: the replacement changes nothing")
    return text


def scratch_copy(into: Path, root: Path = ROOT) -> Path:
    copy = into / "repo"
    shutil.copytree(root, copy, ignore=_NOT_COPIED, symlinks=True)
    return copy


def pytest_command(tests: Sequence[str], basetemp: Path) -> list[str]:
    # -x: the first failing test kills the mutation; no cache, so the copy's runs share nothing.
    return [sys.executable, "-m", "pytest", *tests, "-x", "-q", "-p", "no:cacheprovider",
            f"--basetemp={basetemp}", "-o", "addopts=-ra --strict-markers"]


def _env(copy: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(copy)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # a mutated module's bytecode must never outlive the mutation
    return env


def run_tests(copy: Path, tests: Sequence[str], *, timeout: float, log: Path) -> tuple[int | None, float, str]:
    """Run `tests` in the copy; (exit code or None on timeout, seconds, the last lines of output)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mutate-pytest-") as basetemp, log.open("w") as out:
        try:
            code: int | None = subprocess.run(pytest_command(tests, Path(basetemp) / "t"), cwd=copy, env=_env(copy),
                                              stdout=out, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = None
    return code, time.monotonic() - started, _summary(log.read_text(errors="replace"))


def _summary(output: str) -> str:
    """The line naming the first failing test, else pytest's last line."""
    lines = [line for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("FAILED tests/", "ERROR tests/")):
            return line[:300]
    return lines[-1][:300] if lines else ""


def run(mutations: Iterable[Mutation], *, timeout: float, baseline: bool,
        report: Callable[[Outcome], None]) -> list[Outcome]:
    """Every mutation against its tests in one scratch copy; `report` is told each outcome as it comes."""
    selected = list(mutations)
    for mutation in selected:
        check(mutation)  # every stale one is named before anything runs (the caller collects them)
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="wa-archive-mutate-") as tmp:
        copy = scratch_copy(Path(tmp))
        logs = RESULTS / "logs"  # each run's output, kept for reading why a mutation survived or erred
        logs.mkdir(parents=True, exist_ok=True)
        if baseline:
            tests = sorted({t for m in selected for t in m.tests})
            code, seconds, detail = run_tests(copy, tests, timeout=timeout * 4, log=logs / "baseline.log")
            outcome = Outcome("(baseline: no mutation)", "passed" if code == 0 else "error", seconds, code, detail)
            report(outcome)
            outcomes.append(outcome)
            if code != 0:
                return outcomes  # a test that fails unmutated kills nothing: fix it first
        for mutation in selected:
            path = copy / mutation.file
            original = check(mutation, copy)
            path.write_text(original.replace(mutation.original, mutation.replacement, 1))
            try:
                code, seconds, detail = run_tests(copy, mutation.tests, timeout=timeout,
                                                  log=logs / f"{mutation.name}.log")
            finally:
                path.write_text(original)
            if code is None:
                status = "timeout"
            elif code in _KILLED:
                status = "killed"
            elif code == 0:
                status = "survived"
            else:
                status = "error"
            outcome = Outcome(mutation.name, status, seconds, code, detail)
            report(outcome)
            outcomes.append(outcome)
    return outcomes


def write_results(outcomes: Sequence[Outcome], mutations: Sequence[Mutation], seconds: float) -> Path:
    """Results as JSON in mutate/results/<time>.json and latest.json (gitignored)."""
    RESULTS.mkdir(exist_ok=True)
    by_name = {m.name: m for m in mutations}
    doc = {
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "seconds": round(seconds, 1),
        "mutations": sum(1 for o in outcomes if o.name in by_name),
        "killed": sum(1 for o in outcomes if o.status == "killed"),
        "survived": [o.name for o in outcomes if o.status == "survived"],
        "errors": [o.name for o in outcomes if o.status in ("error", "timeout")],
        "outcomes": [{**asdict(o), **({"promise": by_name[o.name].promise, "file": by_name[o.name].file,
                                       "tests": list(by_name[o.name].tests)} if o.name in by_name else {})}
                     for o in outcomes],
    }
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}.json"
    text = json.dumps(doc, indent=2)
    path.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    return path
