"""One `wa-archive dev` per data dir: a second run is refused at once, before it touches anything,
naming the running one's pid and URL, and the first keeps working (the CLI still finds it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_dev import _cli, _env, _start_dev
from tests.test_dev_crash import _processes_of
from wa_archive.devstack.dev import claim_data_dir
from wa_archive.errors import DevAlreadyRunning

# dev's own files under the data dir, which only a dev that holds the data dir may write or remove.
DEV_FILES = ("dev.json", "dev.lock", "dev-secrets.json", "contact-key.secret", "ledger-key.secret",
             "payload-keys.secret")


def _snapshot(data_dir: Path) -> dict[str, tuple[int, bytes]]:
    return {name: ((data_dir / name).stat().st_mtime_ns, (data_dir / name).read_bytes()) for name in DEV_FILES}


@pytest.mark.slow
def test_a_second_dev_on_the_same_data_dir_is_refused_at_once_and_the_first_keeps_running(tmp_path):
    data_dir = (tmp_path / "data").resolve()
    env = _env(data_dir)
    log = tmp_path / "dev.log"
    proc = _start_dev(env, tmp_path, log)
    try:
        state = json.loads((data_dir / "dev.json").read_text())
        before = _snapshot(data_dir)
        started = time.monotonic()
        second = subprocess.run([sys.executable, "-m", "wa_archive.cli", "dev"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
        took = time.monotonic() - started
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"already running on {data_dir} (pid {proc.pid}, URL {state['http_url']})" in second.stderr
        assert second.stderr.strip().splitlines()[-1].startswith("wa-archive dev: `wa-archive dev` is already running")
        assert "Traceback" not in second.stderr
        # Nothing started, migrated, scheduled or served: the refusal comes before any of it.
        assert second.stdout == "", second.stdout
        assert took < 20, f"the refusal took {took:.1f} s"
        assert _snapshot(data_dir) == before  # dev.json, the lock and the secrets: the first run's, untouched
        with urllib.request.urlopen(state["http_url"] + "/readyz", timeout=5) as resp:
            assert resp.status == 200
        assert sum("start-dev" in c for c in _processes_of(data_dir).values()) == 1
        found = _cli("search", "--json", env=env, cwd=tmp_path)  # the CLI still finds the first stack
        assert found.returncode == 0 and json.loads(found.stdout) == [], found.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, log.read_text()[-3000:]


def test_a_dev_still_starting_is_named_by_the_url_it_noted_in_its_lock(tmp_path):
    """Before the first run has written dev.json, the second learns its URL from the lock file."""
    data_dir = tmp_path / "data"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from wa_archive.devstack.dev import claim_data_dir; "
        f"claim_data_dir(Path({str(data_dir)!r}), 'http://127.0.0.1:18080'); print('held', flush=True); "
        "time.sleep(600)")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DevAlreadyRunning) as refused:
            claim_data_dir(data_dir, "http://127.0.0.1:28080")
        assert f"(pid {holder.pid}, URL http://127.0.0.1:18080 (still starting))" in str(refused.value)
        assert sorted(p.name for p in data_dir.iterdir()) == ["dev.lock"]
    finally:
        holder.kill()
        holder.wait()
    lock = claim_data_dir(data_dir, "http://127.0.0.1:28080")  # the holder is gone: the data dir is free
    try:
        assert (data_dir / "dev.lock").read_text() == f"{os.getpid()}\nhttp://127.0.0.1:28080\n"
    finally:
        lock.release()
