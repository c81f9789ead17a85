"""The one error tree: every exception class of the archive lives in wa_archive/errors.py under
ArchiveError, the docstring draws the real tree, and NON_RETRYABLE says what each class says."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import sys
from pathlib import Path
from types import ModuleType

from wa_archive import errors
from wa_archive.errors import NON_RETRYABLE, ArchiveError

PACKAGES = ("wa_archive", "webhook", "activities", "workflows")
MODULES = ("worker",)

# A tree line: box-drawing prefix, class name, description, and what retrying does.
TREE_LINE = re.compile(r"^    (?P<prefix>(?:[│ ]   )*(?:[├└]── )?)(?P<name>[A-Z]\w+)\s{2,}.*?\s{2,}"
                       r"(?P<retry>NOT retryable|retryable)$")


def modules_of_the_archive() -> list[ModuleType]:
    found = [importlib.import_module(name) for name in MODULES]
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        found.append(package)
        for info in pkgutil.walk_packages(package.__path__, package_name + "."):
            if info.name.endswith(".__main__"):  # running it is the CLI, not an import
                continue
            found.append(importlib.import_module(info.name))
    return found


def exception_classes_defined_in_the_archive() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in modules_of_the_archive():
        for obj in vars(module).values():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def tree(root: type[ArchiveError] = ArchiveError) -> list[type[ArchiveError]]:
    below = [root]
    for subclass in root.__subclasses__():
        below.extend(tree(subclass))
    return below


def drawn_tree() -> dict[str, tuple[str | None, bool]]:
    """name -> (parent drawn above it, retryable as drawn), from the module docstring."""
    drawn: dict[str, tuple[str | None, bool]] = {}
    parents: list[str] = []
    for line in (errors.__doc__ or "").splitlines():
        match = TREE_LINE.match(line)
        if match is None:
            continue
        depth = len(match["prefix"]) // 4
        parents[depth:] = [match["name"]]
        parent = parents[depth - 1] if depth else None
        assert match["name"] not in drawn, f"{match['name']} is drawn twice"
        drawn[match["name"]] = (parent, match["retry"] == "retryable")
    return drawn


def test_every_exception_class_of_the_archive_is_in_the_one_tree():
    classes = exception_classes_defined_in_the_archive()
    outside = sorted(name for name, cls in classes.items() if not issubclass(cls, ArchiveError))
    assert outside == [], "exception classes outside ArchiveError's tree"
    elsewhere = sorted(name for name, cls in classes.items() if cls.__module__ != "wa_archive.errors")
    assert elsewhere == [], "exception classes defined outside wa_archive/errors.py"
    assert set(classes.values()) == set(tree())


def test_class_names_are_unique_since_temporal_matches_by_name():
    names = [cls.__name__ for cls in tree()]
    assert len(names) == len(set(names))


def test_non_retryable_list_is_what_the_classes_say():
    for cls in tree():
        assert isinstance(cls.retryable, bool), cls
    assert len(NON_RETRYABLE) == len(set(NON_RETRYABLE))
    assert set(NON_RETRYABLE) == {cls.__name__ for cls in tree() if not cls.retryable}
    # Named by the workflows' retry policies before this list covered every class.
    assert {"MediaAccessDenied", "StorageConflict", "LinkRefused", "TemplateNotFound", "RetentionActive",
            "GraphRequestRefused", "ExportError"} <= set(NON_RETRYABLE)
    assert {"MediaSourceError", "MediaNotFound", "MediaHashMismatch", "StorageError"}.isdisjoint(NON_RETRYABLE)


def test_docstring_draws_the_real_tree_and_what_retrying_does():
    drawn = drawn_tree()
    assert set(drawn) == {cls.__name__ for cls in tree()}
    for cls in tree():
        parent, retryable = drawn[cls.__name__]
        tree_parents = [base.__name__ for base in cls.__bases__ if issubclass(base, ArchiveError)]
        assert [parent] == (tree_parents or [None]), cls
        assert retryable == cls.retryable, f"{cls.__name__}: the docstring and the class disagree"


def test_existing_bases_are_kept_for_the_callers_that_rely_on_them():
    for cls in (errors.JsonRefused, errors.EnvelopeError, errors.BadPayloads, errors.FilterError,
                errors.RangeNotSatisfiable, errors.TokenError, errors.HoldError, errors.ErasureError):
        assert issubclass(cls, ValueError), cls  # argparse type functions and pydantic validators
    for cls in (errors.TemporalConnectError, errors.MigrateAsAppRole):
        assert issubclass(cls, RuntimeError), cls  # the CLI prints these in one line
    # The CLI answers ConfigError with "configuration error" and exit code 2; nothing raised elsewhere
    # may start being caught there.
    assert not issubclass(errors.MigrateAsAppRole, errors.ConfigError)
    assert not issubclass(errors.UnknownPayloadKey, (errors.ConfigError, RuntimeError, OSError))


def test_messages_and_attributes_are_unchanged():
    refused = errors.FilterError("limit", "must be a whole number")
    assert (str(refused), refused.name, refused.http_status) == ("limit: must be a whole number", "limit", None)
    assert errors.MediaSourceError("boom", http_status=502).http_status == 502
    assert str(errors.ConfigError("WA_ARCHIVE_X is required but not set")) == "WA_ARCHIVE_X is required but not set"


def test_errors_module_imports_only_the_standard_library():
    """Workflows import it inside Temporal's sandbox, which must not pull in third-party code."""
    source = ast.parse(Path(errors.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(source) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(source)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported

