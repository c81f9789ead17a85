"""A configuration is checked whole before anything is touched: a real `wa-archive worker` or `serve`
names every problem in one message, in our words, never a secret's value, and writes nothing; a
service it cannot reach is named with its address and the variable that set it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ACCESS_TOKEN, APP_SECRET, CONTACT_SECRET, LEDGER_KEY, PAYLOAD_KEYS, VERIFY_TOKEN
from wa_archive.config import load_settings
from wa_archive.devstack.embedded import free_port
from wa_archive.errors import ConfigProblems

DB_PASSWORD = "pw-never-shown-7731"
FULL = {"WA_ARCHIVE_META_ACCESS_TOKEN": ACCESS_TOKEN, "WA_ARCHIVE_META_APP_SECRET": APP_SECRET,
        "WA_ARCHIVE_META_VERIFY_TOKEN": VERIFY_TOKEN, "WA_ARCHIVE_CONTACT_KEY_SECRET": CONTACT_SECRET,
        "WA_ARCHIVE_LEDGER_SIGNING_KEY": LEDGER_KEY, "WA_ARCHIVE_PAYLOAD_KEYS": PAYLOAD_KEYS}


def _env(**settings: str) -> dict[str, str]:
    """This process's environment without any archive or Temporal setting, plus `settings`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WA_ARCHIVE_", "TEMPORAL_"))}
    # No Temporal config file from the home directory either.
    return {**clean, "XDG_CONFIG_HOME": "/nonexistent", **settings}


def _run(command: str, cwd: Path, env: dict[str, str]) -> tuple[int, list[dict[str, Any]], str]:
    done = subprocess.run([sys.executable, "-m", "wa_archive.cli", command], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    return done.returncode, [json.loads(line) for line in done.stderr.splitlines()], done.stderr


def _files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*"))


@pytest.mark.parametrize(("command", "missing"), [
    ("worker", ["WA_ARCHIVE_META_ACCESS_TOKEN", "WA_ARCHIVE_DATABASE_URL", "WA_ARCHIVE_TEMPORAL_ADDRESS",
                "WA_ARCHIVE_PAYLOAD_KEYS", "WA_ARCHIVE_LEDGER_SIGNING_KEY", "WA_ARCHIVE_CONTACT_KEY_SECRET"]),
    ("serve", ["WA_ARCHIVE_META_APP_SECRET", "WA_ARCHIVE_META_VERIFY_TOKEN", "WA_ARCHIVE_DATABASE_URL",
               "WA_ARCHIVE_TEMPORAL_ADDRESS", "WA_ARCHIVE_PAYLOAD_KEYS", "WA_ARCHIVE_CONTACT_KEY_SECRET",
               "WA_ARCHIVE_LEDGER_PUBLIC_KEY"]),
])
def test_every_problem_in_one_message_and_nothing_written(tmp_path, command, missing):
    work = tmp_path / "work"
    work.mkdir()
    env = _env(WA_ARCHIVE_DATA_DIR=str(work / "data"), WA_ARCHIVE_STORAGE_URL="file://relative/objects",
               WA_ARCHIVE_HTTP_PORT="eighty", WA_ARCHIVE_RETRY_BACKOFF="0.5")
    rc, events, stderr = _run(command, work, env)

    assert rc == 2, stderr
    assert [e["event"] for e in events] == ["configuration_error"], stderr
    problems = events[0]["problems"]
    # Each missing setting once, by its name, with what a valid value looks like.
    for variable in missing:
        named = [p for p in problems if p.startswith(variable)]
        assert len(named) == 1, (variable, problems)
        assert "required but not set" in named[0] and ("e.g." in named[0] or "`wa-archive keys generate" in named[0]
                                                        or "token" in named[0] or "secret" in named[0].lower())
    assert "WA_ARCHIVE_HTTP_PORT: must be a whole number from 0 to 65535, not 'eighty'" in problems[0]
    assert any(p.startswith("WA_ARCHIVE_RETRY_BACKOFF: must be a number of at least 1.0, not '0.5'") for p in problems)
    relative = next(p for p in problems if p.startswith("WA_ARCHIVE_STORAGE_URL: "))
    assert "is not an absolute path" in relative and "file:///" in relative
    assert f"{(work / 'relative' / 'objects').as_uri()}" in relative  # the absolute URL meant, ready to copy
    assert len(problems) == len(missing) + 3
    assert f"{len(problems)} problems in the configuration: (1) WA_ARCHIVE_HTTP_PORT" in events[0]["error"]
    assert "Input should be" not in stderr and "validation error" not in stderr  # pydantic's words
    # Nothing was written: no data dir, no store (file://relative/objects would have been /objects), no canary.
    assert _files_under(work) == []
    assert not Path("/objects").exists()


def test_a_secret_value_is_never_repeated(tmp_path):
    env = _env(**FULL, WA_ARCHIVE_DATA_DIR=str(tmp_path / "data"), WA_ARCHIVE_TEMPORAL_ADDRESS="127.0.0.1:1",
               WA_ARCHIVE_DATABASE_URL=f"mysql://app:{DB_PASSWORD}@db.example.com/archive",
               WA_ARCHIVE_MIGRATE_DATABASE_URL=f"db.example.com:5432 user=owner password={DB_PASSWORD}")
    rc, events, stderr = _run("worker", tmp_path, env)
    assert rc == 2 and [e["event"] for e in events] == ["configuration_error"], stderr
    assert DB_PASSWORD not in stderr
    problems = events[0]["problems"]
    assert [p.split(":", 1)[0] for p in problems] == ["WA_ARCHIVE_DATABASE_URL", "WA_ARCHIVE_MIGRATE_DATABASE_URL"]
    assert all("must be a PostgreSQL URL such as postgresql://" in p for p in problems)
    assert _files_under(tmp_path) == []


def test_a_read_command_lists_every_problem_one_per_line(tmp_path):
    env = _env(WA_ARCHIVE_DATA_DIR=str(tmp_path), WA_ARCHIVE_RETRY_MAX_ATTEMPTS="0", WA_ARCHIVE_TEMPORAL_TLS="maybe")
    done = subprocess.run([sys.executable, "-m", "wa_archive.cli", "failures"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "wa-archive: 2 configuration problems:",
        "  - WA_ARCHIVE_RETRY_MAX_ATTEMPTS: must be a whole number from 1 to 100, not '0' (the default is 5)",
        "  - WA_ARCHIVE_TEMPORAL_TLS: must be true or false, not 'maybe'"]


@pytest.mark.parametrize(("value", "absolute"), [
    ("file://relative/dir", "relative/dir"), ("file:relative", "relative"), ("file://./objects", "./objects")])
def test_a_relative_file_url_is_refused_saying_how_to_write_it(monkeypatch, value, absolute):
    monkeypatch.setenv("WA_ARCHIVE_STORAGE_URL", value)
    with pytest.raises(ConfigProblems) as refused:
        load_settings(_env_file=None)
    (problem,) = refused.value.problems
    assert problem.startswith(f"WA_ARCHIVE_STORAGE_URL: {value!r} is not an absolute path")
    assert (Path.cwd() / absolute).as_uri() in problem


@pytest.mark.parametrize("value", ["file:///var/lib/wa-archive/objects", "file://localhost/srv/objects",
                                   "s3://bucket/prefix"])
def test_absolute_storage_urls_are_taken(monkeypatch, value):
    monkeypatch.setenv("WA_ARCHIVE_STORAGE_URL", value)
    assert load_settings(_env_file=None).storage_url == value


def test_unreachable_temporal_is_named_with_its_address_and_variable(tmp_path):
    port = free_port()
    env = _env(**FULL, WA_ARCHIVE_DATA_DIR=str(tmp_path / "data"), WA_ARCHIVE_TEMPORAL_ADDRESS=f"127.0.0.1:{port}",
               WA_ARCHIVE_DATABASE_URL=f"postgresql://app:{DB_PASSWORD}@127.0.0.1:{free_port()}/archive",
               WA_ARCHIVE_STORAGE_URL=(tmp_path / "objects").as_uri())
    rc, events, stderr = _run("worker", tmp_path, env)
    assert rc == 1, stderr
    (failed,) = [e for e in events if e["event"] == "process_failed"]
    assert failed["error"].startswith(f"cannot connect to Temporal at 127.0.0.1:{port} (set by"
                                      " WA_ARCHIVE_TEMPORAL_ADDRESS; namespace default; plaintext")
    assert failed["error"].endswith("nothing accepts connections at this address"), failed["error"]
    assert "tonic" not in failed["error"] and DB_PASSWORD not in stderr
    assert not (tmp_path / "objects").exists()  # the store is not touched before its services are reached


def test_unreachable_postgres_is_named_with_its_address_and_variable(tmp_path, temporal_address):
    port = free_port()
    env = _env(**FULL, WA_ARCHIVE_DATA_DIR=str(tmp_path / "data"), WA_ARCHIVE_TEMPORAL_ADDRESS=temporal_address,
               WA_ARCHIVE_DATABASE_URL=f"postgresql://app:{DB_PASSWORD}@127.0.0.1:{port}/archive",
               WA_ARCHIVE_STORAGE_URL=(tmp_path / "objects").as_uri(), WA_ARCHIVE_HTTP_PORT=str(free_port()))
    for command in ("worker", "serve"):
        rc, events, stderr = _run(command, tmp_path, env)
        assert rc == 1, stderr
        (failed,) = [e for e in events if e["event"] == "process_failed"]
        assert failed["error"] == (f"cannot connect to PostgreSQL at 127.0.0.1:{port} (database archive; from"
                                   " WA_ARCHIVE_DATABASE_URL): nothing accepts connections at this address"
                                   " (PostgreSQL is not running, or on another port)"), command
        assert "Errno 111" not in failed["error"] and DB_PASSWORD not in stderr
        assert not (tmp_path / "objects").exists()
