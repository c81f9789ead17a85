"""The mutation list (mutate/mutations.py) still fits the code: every snippet occurs exactly once in its
file, and every test it names exists. Cheap: nothing is mutated and no named test is run here."""

from __future__ import annotations

import ast
import tempfile
from pathlib import Path

import pytest

from mutate.mutations import MUTATIONS, Mutation
from mutate.runner import ROOT, StaleMutation, check, scratch_copy


def _test_names(path: Path) -> set[str]:
    """Node ids below the file ("func", "Class::method") of every test function it defines."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names |= {f"{node.name}::{item.name}" for item in node.body
                      if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test")}
    return names


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_each_mutation_applies_once_and_names_tests_that_exist(mutation: Mutation):
    text = check(mutation)  # raises StaleMutation naming it
    assert text.replace(mutation.original, mutation.replacement, 1) != text
    assert mutation.tests, f"{mutation.name} names no test"
    for node_id in mutation.tests:
        file, _, name = node_id.partition("::")
        assert file.startswith("tests/") and name, f"{mutation.name}: {node_id!r} is not a node id"
        assert (ROOT / file).is_file(), f"{mutation.name}: {file} does not exist"
        assert name.split("[")[0] in _test_names(ROOT / file), f"{mutation.name}: {node_id} does not exist"
    if mutation.file.endswith(".py"):  # a mutated module must still parse, or its kill would mean nothing
        ast.parse(text.replace(mutation.original, mutation.replacement, 1))


def test_names_are_unique_and_each_promise_is_said():
    names = [m.name for m in MUTATIONS]
    assert len(names) == len(set(names))
    assert all(m.promise.strip() for m in MUTATIONS)


def test_a_stale_snippet_is_named(tmp_path):
    (tmp_path / "module.py").write_text("x = 1\nx = 1\n")
    twice = Mutation(name="twice", file="module.py", original="x = 1", replacement="x = 2", promise="p",
                     tests=("tests/test_x.py::test_x",))
    with pytest.raises(StaleMutation, match="twice: its original snippet occurs 2 times in module.py"):
        check(twice, tmp_path)
    gone = Mutation(name="gone", file="module.py", original="y = 1", replacement="y = 2", promise="p",
                    tests=("tests/test_x.py::test_x",))
    with pytest.raises(StaleMutation, match="gone: its original snippet occurs 0 times"):
        check(gone, tmp_path)


def test_the_scratch_copy_holds_the_code_and_leaves_the_working_tree_alone():
    with tempfile.TemporaryDirectory() as tmp:
        copy = scratch_copy(Path(tmp))
        assert (copy / "wa_archive" / "archive" / "handover.py").read_text() == \
            (ROOT / "wa_archive" / "archive" / "handover.py").read_text()
        assert not (copy / ".git").exists() and not (copy / ".venv").exists()
