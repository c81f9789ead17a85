"""`wa-archive dev`: the whole embedded stack in the foreground, and `demo` to exercise it.

State lives under WA_ARCHIVE_DATA_DIR (Temporal's SQLite file, PostgreSQL's data directory, the
object store), so a second start finds everything archived by the first.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr

from wa_archive.config import Settings
from wa_archive.credentials import ensure_dev_contact_secret, ensure_dev_ledger_key, replace_secret_file
from wa_archive.db import migrate
from wa_archive.devstack.banner import banner, token_names
from wa_archive.devstack.embedded import (
    APP_ROLE,
    DATABASE,
    EmbeddedPostgres,
    TemporalDevServer,
    ensure_database,
    ensure_roles,
    free_port,
    port_is_free,
)
from wa_archive.devstack.serve import start_http, stop_http
from wa_archive.devstack.stale import DataDirLock
from wa_archive.errors import DataDirInUse, DevAlreadyRunning
from wa_archive.sources.meta.fake_graph import FakeGraph
from wa_archive.sources.meta.samples import envelope, media_message
from wa_archive.sources.signature import meta_signature
from wa_archive.temporal.client import ensure_dev_payload_key
from wa_archive.temporal.connection import configured_address
from wa_archive.temporal.namespace import set_retention

STATE_FILE = "dev.json"
WORKER_METRICS_PORT = 9464  # the worker's /metrics, /healthz and /readyz when WA_ARCHIVE_METRICS_PORT is unset
SECRETS_FILE = "dev-secrets.json"
DEV_SECRETS = ("app_secret", "verify_token", "access_token", "wasender_secret", "db_owner_password",
               "db_app_password")


def dev_state(data_dir: Path) -> dict[str, Any] | None:
    """What a running (or the last) `dev` wrote about itself: addresses and URLs."""
    path = data_dir / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else None


# For a command that looked for a dev under the wrong data dir (the default one is relative to the
# directory a command runs in).
DATA_DIR_HINT = ("if `wa-archive dev` runs with another data dir, set WA_ARCHIVE_DATA_DIR to it (the export "
                 "line its banner printed), or run this from the directory it was started in")


def http_url(settings: Settings) -> str:
    return f"http://{settings.http_host}:{settings.http_port}"


def claim_data_dir(data_dir: Path, url: str) -> DataDirLock:
    """Take the data dir's dev.lock (creating only the directory itself), or raise DevAlreadyRunning
    naming the running dev's pid and URL; nothing else under the data dir is read or written first."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = DataDirLock(data_dir / "dev.lock", f"`wa-archive dev` on {data_dir}")
    try:
        lock.acquire(note=url)
    except DataDirInUse as exc:
        raise DevAlreadyRunning(
            f"`wa-archive dev` is already running on {data_dir} (pid {exc.holder or 'unknown'}, "
            f"URL {_running_url(data_dir, exc)}); use that one, stop it first (Ctrl-C in its terminal), "
            "or give this one another WA_ARCHIVE_DATA_DIR", exc.holder, exc.note) from None
    return lock


def _running_url(data_dir: Path, in_use: DataDirInUse) -> str:
    """The running dev's HTTP address: its dev.json once it is up, else what it noted in the lock."""
    try:
        state = dev_state(data_dir)
    except (OSError, ValueError):
        state = None
    if state is not None and state.get("pid") == in_use.holder:
        return str(state["http_url"])
    return f"{in_use.note} (still starting)" if in_use.note else "unknown (still starting)"


def _dev_secrets(data_dir: Path) -> dict[str, str]:
    path = data_dir / SECRETS_FILE
    values = json.loads(path.read_text()) if path.exists() else {}
    missing = [n for n in DEV_SECRETS if n not in values]
    if missing:  # a data dir from an earlier version gains the secrets added since
        values.update({name: secrets.token_urlsafe(24) for name in missing})
        replace_secret_file(path, json.dumps(values))
    return values


async def run_dev(settings: Settings, stop: asyncio.Event) -> None:
    from worker import run_worker  # the worker module sits at the top level, beside workflows/

    data_dir = settings.data_dir.resolve()
    # One dev per data dir, decided before anything is touched: a second run must not start servers on
    # the first one's data, update its schedules or remove its dev.json. The kernel drops the lock when
    # a dev dies, so a dev.json found once it is held is a crashed run's (and its servers are found and
    # stopped as each one starts).
    dev_lock = claim_data_dir(data_dir, http_url(settings))
    ensure_dev_contact_secret(data_dir)
    ensure_dev_ledger_key(data_dir)
    if settings.payload_keys is None and settings.payload_keys_file is None:
        ensure_dev_payload_key(data_dir)  # Temporal's history is encrypted in dev too
    dev_secrets = _dev_secrets(data_dir)
    updates: dict[str, Any] = {"data_dir": data_dir}
    temporal: TemporalDevServer | None = None
    postgres: EmbeddedPostgres | None = None
    fake_runner = None
    http = None
    worker_task: asyncio.Task[None] | None = None
    worker_stop = asyncio.Event()
    # A Temporal named anywhere (WA_ARCHIVE_TEMPORAL_ADDRESS, TEMPORAL_ADDRESS, a profile) is used as is.
    temporal_address = configured_address(settings)
    (data_dir / STATE_FILE).unlink(missing_ok=True)
    try:
        if temporal_address is None:
            temporal = TemporalDevServer(data_dir / "temporal", port=settings.temporal_port,
                                         ui_port=settings.temporal_ui_port, ui_codec_endpoint=codec_endpoint(settings))
            temporal.claim()  # before choosing ports: a crashed run's server may still hold them
            if not port_is_free(temporal.port):
                temporal.port = free_port()
            if temporal.ui_port is not None and not port_is_free(temporal.ui_port):
                temporal.ui_port = free_port()
            if settings.temporal_ui_origin is None:
                # The UI started here may call the codec server (with the pages' session).
                ui = temporal.ui_port
                updates["temporal_ui_origin"] = f"http://127.0.0.1:{ui},http://localhost:{ui}"
            print(f"starting Temporal dev server on {temporal.address} ...", flush=True)
            await temporal.start()
            updates["temporal_address"] = temporal_address = temporal.address
        if not settings.database_url:
            postgres = EmbeddedPostgres(data_dir / "postgres")
            print("starting embedded PostgreSQL ...", flush=True)
            admin_uri = await asyncio.to_thread(postgres.start)
            await ensure_database(admin_uri)
            # Migrations as the owner, everything else as the application role (which owns nothing).
            owner_url, updates["database_url"] = await ensure_roles(
                admin_uri, DATABASE, owner_password=dev_secrets["db_owner_password"],
                app_password=dev_secrets["db_app_password"])
            updates["migrate_database_url"] = owner_url
            updates["database_app_role"] = APP_ROLE
        if settings.meta_access_token is None:
            # No real Meta account configured: serve media from the local fake Graph API.
            fake = FakeGraph(dev_secrets["access_token"])
            fake_runner = await fake.start()
            updates["meta_graph_url"] = fake.graph_url
            updates["meta_access_token"] = SecretStr(dev_secrets["access_token"])
        if settings.meta_app_secret is None:
            updates["meta_app_secret"] = SecretStr(dev_secrets["app_secret"])
        if settings.meta_verify_token is None:
            updates["meta_verify_token"] = SecretStr(dev_secrets["verify_token"])
        if settings.wasender_webhook_secret is None:
            updates["wasender_webhook_secret"] = SecretStr(dev_secrets["wasender_secret"])
        if settings.metrics_port is None:  # dev serves the worker's metrics too, as deployed
            updates["metrics_port"] = WORKER_METRICS_PORT if port_is_free(WORKER_METRICS_PORT) else free_port()
        settings = settings.model_copy(update=updates)
        applied = await migrate(settings.migrate_database_url or settings.database_url,  # type: ignore[arg-type]
                                app_role=settings.database_app_role)
        if applied:
            print(f"applied migrations: {', '.join(applied)}", flush=True)
        worker_task = asyncio.create_task(run_worker(settings, worker_stop))
        from wa_archive.temporal.client import connect_temporal
        from wa_archive.temporal.schedules import apply_schedules

        client = await connect_temporal(settings)
        if temporal is not None:
            kept = await set_retention(client, settings.temporal_retention_days)
            print(f"Temporal keeps closed workflows {kept.days} days (WA_ARCHIVE_TEMPORAL_RETENTION_DAYS)", flush=True)
        for line in await apply_schedules(client, settings):
            print(f"schedule: {line}", flush=True)
        http = await start_http(settings)
        base = http_url(settings)
        state = {
            "pid": os.getpid(),
            "http_url": base,
            "webhook_url": f"{base}/webhooks/meta",
            "wasender_url": f"{base}/webhooks/wasender",
            "temporal_address": temporal_address,
            "temporal_ui_url": f"http://127.0.0.1:{temporal.ui_port}" if temporal and temporal.ui_port else None,
            "database_url": settings.database_url,  # the application role's: what read commands use
            "migrate_database_url": settings.migrate_database_url,
            "meta_graph_url": settings.meta_graph_url,
            "fake_graph": fake_runner is not None,
            "storage_url": settings.resolved_storage_url,
            "metrics_url": f"{base}/metrics",
            "worker_metrics_url": f"http://{_reachable(settings.metrics_host)}:{settings.metrics_port}/metrics",
        }
        replace_secret_file(data_dir / STATE_FILE, json.dumps(state, indent=2))  # it holds database passwords
        names = await token_names(settings)
        print(banner(state, data_dir, data_dir / SECRETS_FILE, names, Path.cwd()), flush=True)
        done, _ = await asyncio.wait(
            [asyncio.create_task(stop.wait()), worker_task], return_when=asyncio.FIRST_COMPLETED
        )
        if worker_task in done:
            worker_task.result()  # surface the worker's error
    finally:
        print("stopping ...", flush=True)
        worker_stop.set()
        if worker_task is not None:
            await asyncio.gather(worker_task, return_exceptions=True)
        if http is not None:
            await stop_http(*http)
        if fake_runner is not None:
            await fake_runner.cleanup()
        if postgres is not None:
            await asyncio.to_thread(postgres.stop)
        if temporal is not None:
            await asyncio.to_thread(temporal.stop)
        (data_dir / STATE_FILE).unlink(missing_ok=True)
        dev_lock.release()
        print("stopped; archived data is kept under", data_dir, flush=True)


def _reachable(host: str) -> str:
    """An address a local browser can use for a server bound to `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def codec_endpoint(settings: Settings) -> str | None:
    """The codec server's URL as the UI's browser reaches it: under /ui, where the session cookie goes."""
    if not settings.http_port:
        return None
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    return f"http://{host}:{settings.http_port}/ui/codec"


async def run_demo(settings: Settings) -> str:
    """Send a signed Cloud API image webhook to the running dev stack; returns the message id."""
    data_dir = settings.data_dir.resolve()
    state = dev_state(data_dir)
    if state is None:
        raise RuntimeError(f"no running `wa-archive dev` found under {data_dir}; {DATA_DIR_HINT}")
    dev_secrets = _dev_secrets(data_dir)
    image = _demo_image()
    media_id = f"demo-{int(time.time() * 1000)}"
    message_id = "wamid.DEMO" + base64.b64encode(os.urandom(18)).decode()
    async with aiohttp.ClientSession() as http:
        sha_b64 = base64.b64encode(hashlib.sha256(image).digest()).decode()
        if state["fake_graph"]:
            base = state["meta_graph_url"].rsplit("/", 1)[0]
            async with http.post(f"{base}/_fake/media", json={
                "media_id": media_id, "mime_type": "image/png",
                "content_b64": base64.b64encode(image).decode(),
            }) as resp:
                resp.raise_for_status()
        body = json.dumps(demo_payload(message_id, media_id, sha_b64)).encode()
        secret = (settings.meta_app_secret.get_secret_value() if settings.meta_app_secret
                  else dev_secrets["app_secret"])
        async with http.post(state["webhook_url"], data=body, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(secret, body),
        }) as resp:
            print(f"webhook answered {resp.status}: {await resp.text()}")
            resp.raise_for_status()
    return message_id


def demo_payload(message_id: str, media_id: str, sha256_b64: str) -> dict[str, Any]:
    item = media_message("image", media_id, sha256_b64, "image/png", mid=message_id)
    item["image"]["caption"] = "Signed mandate (demo)"
    return envelope([item], contacts=[{"profile": {"name": "Demo Customer"}, "wa_id": "447700900123"}])


def _demo_image() -> bytes:
    """A small valid PNG, made here so the demo needs no files."""
    import struct
    import zlib

    width, height = 64, 64
    raw = b"".join(b"\x00" + b"".join(bytes((x * 4, y * 4, 160)) for x in range(width)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
