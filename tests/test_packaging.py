"""Installing the project prints no setuptools warning, and ships every data file the code reads
(migrations, page and transcript templates, the OpenAPI document)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What setuptools says when the packaging configuration is ambiguous or outdated: its warning classes
# (printed as `SomeWarning:`), the `!!` banners around their text, and the package-data complaint itself.
SETUPTOOLS_WARNING = re.compile(r"\w+Warning:|InformationOnly|^\s*!!\s*$|is absent from the `?packages`? configuration",
                                re.MULTILINE)
DATA_FILES = ("wa_archive/db/migrations/*.sql", "wa_archive/discovery/export_templates/*",
              "webhook/templates/*.html", "webhook/openapi.json")


def _source_copy(tmp_path: Path) -> Path:
    """The tracked files only, so no build/ or egg-info of an earlier install can hide a warning."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    tree = tmp_path / "src"
    for name in filter(None, listed.decode().split("\0")):
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    return tree


def _pip(python: str, *args: str, cwd: Path) -> str:
    # -v: without it pip hides the build backend's output, warnings included, unless the build fails.
    done = subprocess.run([python, "-m", "pip", *args, "-v", "--no-deps", "--disable-pip-version-check"],
                          cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout + done.stderr


def _warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if SETUPTOOLS_WARNING.search(line)]


@pytest.mark.slow
def test_the_wheel_builds_without_warnings_and_holds_every_data_file(tmp_path):
    tree = _source_copy(tmp_path)
    output = _pip(sys.executable, "wheel", "-w", str(tmp_path / "dist"), ".", cwd=tree)
    assert _warnings(output) == []
    (wheel,) = (tmp_path / "dist").glob("wa_archive-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    for pattern in DATA_FILES:
        expected = {str(p.relative_to(tree)) for p in tree.glob(pattern)}
        assert expected and expected <= shipped, (pattern, expected - shipped)
    assert "worker.py" in shipped and "wa_archive/cli/__init__.py" in shipped
    assert not any(name.startswith(("tests/", "chaos/", "mutate/")) for name in shipped)


@pytest.mark.slow
def test_an_editable_install_prints_no_setuptools_warning(tmp_path):
    tree = _source_copy(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    output = _pip(python, "install", "-e", ".", cwd=tree)
    assert _warnings(output) == []
    found = subprocess.run([python, "-c", "import importlib.util; print(importlib.util.find_spec('wa_archive').origin)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert Path(found.stdout.strip()) == tree / "wa_archive" / "__init__.py"
