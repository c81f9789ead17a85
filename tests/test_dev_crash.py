"""Crash hygiene of `wa-archive dev`: after a SIGKILL the next start finds what the crashed run left,
says so, starts cleanly and archives, and Ctrl-C then stops every process it started."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_dev import _cli, _env, _start_dev
from wa_archive.devstack.embedded import EmbeddedPostgres, TemporalDevServer, free_port, port_is_free


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has already exited


def _processes_of(data_dir: Path) -> dict[int, str]:
    """Live processes that name the data dir on their command line (Temporal's SQLite file, the
    postmaster's -D) or work inside it (every PostgreSQL backend's working directory is PGDATA)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not _alive(pid := int(entry.name)):
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            cwd = ""
        if str(data_dir) in cmdline or cwd == str(data_dir) or cwd.startswith(f"{data_dir}/"):
            found[pid] = cmdline
    return found


def _can_listen(port: int) -> bool:
    """The port can be served again (as servers bind: a closed connection's TIME_WAIT does not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
        return True


def _wait_gone(pids: list[int], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids):
        assert time.monotonic() < deadline, f"{what} still running: {[p for p in pids if _alive(p)]}"
        time.sleep(0.05)


def _archive_a_demo_image(env: dict[str, str], cwd: Path) -> str:
    demo = _cli("demo", env=env, cwd=cwd)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    message_id = re.search(r"wa-archive show '([^']+)'", demo.stdout).group(1)
    shown = json.loads(_cli("show", message_id, "--json", env=env, cwd=cwd).stdout)
    assert shown["media"][0]["status"] == "archived" and len(shown["media"][0]["sha256"]) == 64
    return message_id


def _crash_restart_and_stop(tmp_path: Path, *, kill_everything: bool, stop_with: signal.Signals) -> str:
    """Start dev, archive, SIGKILL it (and with kill_everything every process of its data dir),
    start it again, archive again, stop it with `stop_with`; returns the second run's output."""
    data_dir = (tmp_path / "data").resolve()
    env = _env(data_dir)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    proc = _start_dev(env, tmp_path, first_log)
    try:
        before = _archive_a_demo_image(env, tmp_path)
        left = _processes_of(data_dir)
        assert any("start-dev" in c for c in left.values()), left
        assert any(f"-D {data_dir}/postgres" in c for c in left.values()), left
    finally:
        victims = [proc.pid, *left] if kill_everything else [proc.pid]
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        proc.wait(10)
    _wait_gone(victims, "the killed processes")
    if kill_everything:
        assert (data_dir / "postgres" / "postmaster.pid").exists()  # as a crash leaves it
    else:
        # Linux takes Temporal down with its parent; PostgreSQL (daemonized by pg_ctl) stays.
        _wait_gone([pid for pid, cmd in left.items() if "start-dev" in cmd], "Temporal of the killed dev")
        assert any(f"-D {data_dir}/postgres" in c for c in _processes_of(data_dir).values())

    proc = _start_dev(env, tmp_path, second_log)
    try:
        after = _archive_a_demo_image(env, tmp_path)
        found = json.loads(_cli("search", "--json", env=env, cwd=tmp_path).stdout)
        assert sorted(m["id"] for m in found) == sorted([before, after])
        state = json.loads((data_dir / "dev.json").read_text())
        ports = [int(state["temporal_address"].rsplit(":", 1)[1]), int(env["WA_ARCHIVE_HTTP_PORT"]),
                 int(env["WA_ARCHIVE_TEMPORAL_UI_PORT"]), int(state["worker_metrics_url"].split(":")[2].split("/")[0])]
        running = _processes_of(data_dir)
        assert not set(running) & set(left), "processes of the crashed run survived the restart"
        servers = [c for c in running.values() if "start-dev" in c]
        assert len(servers) == 1, servers  # one Temporal on the SQLite file, never two
    finally:
        proc.send_signal(stop_with)
        assert proc.wait(60) == 0, second_log.read_text()[-3000:]
    _wait_gone(list(running), "a server of the stopped dev")
    assert _processes_of(data_dir) == {}
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    assert all(_can_listen(p) for p in ports), [p for p in ports if not _can_listen(p)]
    return second_log.read_text()


@pytest.fixture(autouse=True)
def _no_server_outlives_the_test(tmp_path):
    """Whatever the outcome, no server of this test's data is left on the machine."""
    yield
    for pid in _processes_of(tmp_path.resolve()):
        os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_killed_dev_leaves_servers_the_next_start_stops_and_ctrl_c_stops_everything(tmp_path):
    out = _crash_restart_and_stop(tmp_path, kill_everything=False, stop_with=signal.SIGINT)  # Ctrl-C
    assert re.search(r"found PostgreSQL left running by a crashed run \(pid \d+\); stopping it", out), out
    assert re.search(r"Temporal of a crashed run is no longer running \(pid \d+\)", out), out


@pytest.mark.slow
def test_every_process_killed_the_next_start_is_clean_and_sigterm_stops_everything(tmp_path):
    out = _crash_restart_and_stop(tmp_path, kill_everything=True, stop_with=signal.SIGTERM)
    assert re.search(r"PostgreSQL of a crashed run is no longer running \(pid \d+\)", out), out
    assert re.search(r"Temporal of a crashed run is no longer running \(pid \d+\)", out), out


def test_a_recycled_pid_in_the_pid_files_is_never_touched(tmp_path):
    """postmaster.pid and temporal.pid naming an unrelated live process: it is left alone, and the
    servers start anyway."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    pg = EmbeddedPostgres(tmp_path / "pg")
    temporal = TemporalDevServer(tmp_path / "temporal", port=free_port(), ui_port=None)
    try:
        pg.start()
        pg.stop()
        (tmp_path / "pg" / "postmaster.pid").write_text(
            f"{bystander.pid}\n{tmp_path / 'pg'}\n{int(time.time())}\n5432\n{tmp_path / 'pg'}\n\n  0 0\nready \n")
        (tmp_path / "temporal").mkdir()
        (tmp_path / "temporal" / "temporal.pid").write_text(f"{bystander.pid}\n")
        import asyncio

        import asyncpg

        async def start_both() -> None:
            conn = await asyncpg.connect(await asyncio.to_thread(pg.start))
            assert await conn.fetchval("SELECT 1") == 1
            await conn.close()
            await temporal.start()

        asyncio.run(start_both())
        assert bystander.poll() is None, "an unrelated process was signalled"
    finally:
        pg.stop()
        temporal.stop()
        alive = bystander.poll() is None
        bystander.kill()
        bystander.wait()
    assert alive


def test_a_temporal_that_outlived_its_owner_is_stopped_by_the_next_start(tmp_path, capsys):
    """A Temporal whose owner died without taking it along (no parent-death signal: another OS, or a
    run before this existed) is found through its pid file and stopped; the new one takes its port."""
    import asyncio

    port = free_port()
    temporal = TemporalDevServer(tmp_path / "temporal", port=port, ui_port=None)
    (tmp_path / "temporal").mkdir()
    orphan = subprocess.Popen(temporal.command(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        (tmp_path / "temporal" / "temporal.pid").write_text(f"{orphan.pid}\n")
        deadline = time.monotonic() + 60
        while port_is_free(port):
            assert orphan.poll() is None and time.monotonic() < deadline, "the orphan Temporal never listened"
            time.sleep(0.1)
        asyncio.run(temporal.start())
        assert orphan.poll() is not None, "the crashed run's Temporal still runs"
        assert temporal.process is not None and temporal.process.poll() is None
        out = capsys.readouterr().out
        assert f"found Temporal left running by a crashed run (pid {orphan.pid}); stopping it" in out, out
        assert (tmp_path / "temporal" / "temporal.pid").read_text() == f"{temporal.process.pid}\n"
    finally:
        temporal.stop()
        if orphan.poll() is None:
            orphan.kill()
        orphan.wait()
    assert not (tmp_path / "temporal" / "temporal.pid").exists()
    assert port_is_free(port)


def test_a_second_owner_of_the_data_is_refused_until_the_first_dies(tmp_path):
    """The lock that tells a crashed run's servers from a live owner's: held while its owner lives,
    dropped by the kernel when the owner is SIGKILLed."""
    from wa_archive.devstack.stale import DataDirLock

    path = tmp_path / "dev.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from wa_archive.devstack.stale import DataDirLock; "
        f"DataDirLock(Path({str(path)!r}), 'the data').acquire(); print('held', flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    try:
        assert holder.stdout.readline().strip() == "held"
        second = DataDirLock(path, "the data")
        with pytest.raises(RuntimeError, match=rf"the data is in use by another running process \(pid {holder.pid}\)"):
            second.acquire()
        assert not second.held
    finally:
        holder.kill()
        holder.wait()
    second.acquire()
    assert second.held
    second.release()


def test_a_dead_handle_in_the_librarys_count_does_not_keep_postgresql_running(tmp_path):
    """The defect as the library sees it: a crashed process's pid in .handle_pids.json made the last
    live handle skip the stop. Here one appears while the server runs; stop() stops it anyway."""
    import asyncio

    import asyncpg

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pg = EmbeddedPostgres(tmp_path / "pg")
    try:
        uri = pg.start()
        handles = tmp_path / "pg" / ".handle_pids.json"
        handles.write_text(json.dumps([dead.pid, *json.loads(handles.read_text())]))
        postmaster = int((tmp_path / "pg" / "postmaster.pid").read_text().split()[0])
    finally:
        pg.stop()
    _wait_gone([postmaster], "the postmaster")
    assert not (tmp_path / "pg" / "postmaster.pid").exists()
    try:
        asyncio.run(asyncpg.connect(uri, timeout=5))
        raise AssertionError("PostgreSQL still answers after stop()")
    except (OSError, asyncpg.PostgresError):
        pass
