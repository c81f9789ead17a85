"""Faults as tests: a worker process killed in the middle of a large upload, or of the ledger's integration."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from aiobotocore.session import get_session

from tests.conftest import ACCESS_TOKEN, CONTACT_SECRET, LEDGER_KEY, PAYLOAD_KEYS, wait_until
from wa_archive.db import ledger_candidates
from wa_archive.models import LedgerIntegrateInput
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, media_message, message, wamid


def _start_worker(stack, temporal_address: str, database_url: str, log_path) -> subprocess.Popen:
    s = stack.settings
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")},
        "WA_ARCHIVE_TEMPORAL_ADDRESS": temporal_address,
        "WA_ARCHIVE_DATABASE_URL": database_url,
        "WA_ARCHIVE_STORAGE_URL": stack.store.url,
        "WA_ARCHIVE_S3_ENDPOINT_URL": s.s3_endpoint_url,
        "WA_ARCHIVE_META_ACCESS_TOKEN": ACCESS_TOKEN,
        "WA_ARCHIVE_META_GRAPH_URL": s.meta_graph_url,
        "WA_ARCHIVE_CONTACT_KEY_SECRET": CONTACT_SECRET,
        "WA_ARCHIVE_LEDGER_SIGNING_KEY": LEDGER_KEY,
        "WA_ARCHIVE_PAYLOAD_KEYS": PAYLOAD_KEYS,
        "WA_ARCHIVE_TASK_QUEUE": s.task_queue,
        "WA_ARCHIVE_RETRY_INITIAL_INTERVAL": "0.2",
        "WA_ARCHIVE_MEDIA_HEARTBEAT_TIMEOUT": "2",
        "WA_ARCHIVE_S3_PART_SIZE_MIB": "5",
    }
    return subprocess.Popen([sys.executable, "-m", "wa_archive.cli", "worker"], env=env,
                            stdout=log_path.open("ab"), stderr=subprocess.STDOUT)


@pytest.mark.slow
async def test_killed_worker_leaves_one_object_and_no_orphan_upload(
    stack_factory, temporal_address, database_url, tmp_path
):
    stack = await stack_factory("s3", run_worker=False, media_heartbeat_timeout=2.0)
    media = stack.graph.add(FakeMedia(f"big{uuid.uuid4().hex[:8]}", mime_type="video/mp4",
                                      size=40 * 1024 * 1024, seed=3, bytes_per_second=8 * 1024 * 1024))
    mid = wamid()
    log = tmp_path / "worker.log"
    first = _start_worker(stack, temporal_address, database_url, log)
    second = None
    try:
        status, _ = await stack.post(dumps(envelope([media_message("video", media.media_id, media.sha256_b64(),
                                                                   "video/mp4", mid=mid)])))
        assert status == 200
        store = stack.store
        async with get_session().create_client("s3", endpoint_url=stack.settings.s3_endpoint_url,
                                               region_name="us-east-1") as s3:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # wait until the upload is in flight
                uploads = (await s3.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)).get("Uploads", [])
                if uploads:
                    break
                await asyncio.sleep(0.1)
            assert uploads, "the multipart upload never started: " + log.read_text()[-2000:]
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            second = _start_worker(stack, temporal_address, database_url, log)
            msg = await stack.wait_for_message(mid, timeout=120)
            item = msg["media"][0]
            assert item["status"] == "archived" and item["sha256"] == media.declared_sha256
            assert media.downloads >= 2, "the second worker downloaded again"
            full = f"{store.prefix}/{item['storage_key']}"
            versions = await s3.list_object_versions(Bucket=store.bucket, Prefix=full)
            assert len([v for v in versions.get("Versions", []) if v["Key"] == full]) == 1
            left = (await s3.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)).get("Uploads", [])
            assert left == [], "an incomplete multipart upload was left behind"
        import hashlib
        hasher = hashlib.sha256()
        async for chunk in store.read(item["storage_key"]):
            hasher.update(chunk)
        assert hasher.hexdigest() == media.declared_sha256
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(15)


async def test_temporal_outage_answers_503_then_the_redelivery_is_archived(clean_db, fake_graph, tmp_path):
    """Temporal goes down under a running webhook: 503 (Meta keeps the delivery), then recovery."""
    import aiohttp

    from tests.conftest import make_settings, wait_for_archived, webhook_on_own_temporal
    from wa_archive.storage import FilesystemStore
    from worker import build_worker, link_fetcher

    mid = wamid()
    body = dumps(envelope([message("text", {"body": "during an outage"}, mid=mid)]))
    settings = make_settings(meta_graph_url=fake_graph.graph_url)
    store = FilesystemStore(tmp_path / "objects")
    async with webhook_on_own_temporal(clean_db, settings, store, tmp_path) as own:
        own.server.stop()
        assert (await own.post_meta(body))[0] == 503
        await own.server.start()  # same SQLite file, same port
        status, answer = await own.post_meta(body)
        assert status == 200, answer
        async with aiohttp.ClientSession() as http, \
                build_worker(own.client, settings, clean_db, store, http, link_fetcher(settings)):
            msg = await wait_for_archived(clean_db, mid)
    assert msg["text"] == "during an outage"
    assert len(msg["deliveries"]) == 1  # the redelivered bytes were stored once


async def test_postgres_outage_answers_503_and_readiness_names_it(client, tmp_path):
    """PostgreSQL stops under a running webhook: 503 and not ready; back up: accepted again."""
    import aiohttp
    from aiohttp import web

    from tests.conftest import APP_SECRET, make_settings
    from wa_archive.db import create_pool, migrate
    from wa_archive.devstack.embedded import EmbeddedPostgres, ensure_database, free_port
    from wa_archive.sources.signature import meta_signature
    from wa_archive.storage import FilesystemStore
    from webhook.app import WebhookDeps, create_app

    def signed(text: str) -> tuple[bytes, dict]:
        body = dumps(envelope([message("text", {"body": text})]))
        return body, {"X-Hub-Signature-256": meta_signature(APP_SECRET, body)}

    pg = EmbeddedPostgres(tmp_path / "pg")
    runner = pool = None
    try:
        url = await ensure_database(await asyncio.to_thread(pg.start), "outage")
        await migrate(url)
        pool = await create_pool(url)
        runner = web.AppRunner(create_app(WebhookDeps(settings=make_settings(), client=client, pool=pool,
                                                      store=FilesystemStore(tmp_path / "objects"))))
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            await asyncio.to_thread(pg.stop)
            body, headers = signed("while the database is down")
            async with http.post(f"{base}/webhooks/meta", data=body, headers=headers) as resp:
                assert resp.status == 503
            async with http.get(f"{base}/readyz") as resp:
                report = await resp.json()
                assert resp.status == 503 and report["checks"]["postgres"] == "down"
                assert report["checks"]["temporal"] == "ok"
            await asyncio.to_thread(pg.start)
            statuses = []
            for _ in range(20):  # pooled connections to the old server fail once, then reconnect
                async with http.post(f"{base}/webhooks/meta", data=body, headers=headers) as resp:
                    statuses.append(resp.status)
                if statuses[-1] == 200:
                    break
                await asyncio.sleep(0.2)
            assert statuses[-1] == 200 and set(statuses) <= {200, 503}
        assert await pool.fetchval("SELECT count(*) FROM deliveries") == 1
    finally:
        if runner is not None:
            await runner.cleanup()
        if pool is not None:
            await pool.close()
        await asyncio.to_thread(pg.stop)


async def test_a_worker_killed_mid_integration_is_noticed_within_seconds_and_another_takes_over(
    stack_factory, temporal_address, database_url, tmp_path
):
    """A run of the integrator lasts minutes, in one activity: an attempt whose worker died must be given
    up within its heartbeat timeout and retried on another worker, not at the end of the run, or
    integration stops for minutes (and `verify` calls the waiting candidates a problem)."""
    stack = await stack_factory("filesystem", run_worker=False)
    log = tmp_path / "worker.log"
    # Hold the head's row, which ledger_integrate() locks, so the run blocks inside its activity on the first worker.
    holder = await stack.admin_pool.acquire()
    first = second = run = None
    try:
        await holder.execute("BEGIN")
        await holder.execute("SELECT size FROM ledger_head WHERE id = 1 FOR UPDATE")
        async with stack.pool.acquire() as conn, conn.transaction():
            await ledger_candidates.add(conn, "access", f"killed-{uuid.uuid4().hex}", "ab" * 32)
        first = _start_worker(stack, temporal_address, database_url, log)
        run = await stack.client.start_workflow("LedgerIntegrate", LedgerIntegrateInput(every=1, run_for=120),
                                                id=f"integrate-{uuid.uuid4().hex[:8]}",
                                                task_queue=stack.settings.task_queue)

        async def blocked() -> bool:
            return bool(await stack.pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%ledger_integrate(%'"))

        async def integrated() -> bool:
            return not await stack.pool.fetchval("SELECT count(*) FROM ledger_candidates")

        await wait_until(blocked, "the first worker's integration waiting on the held lock", timeout=60)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        # The dead worker's backend still runs its statement once the row is free: wait for it to be over, then
        # add a candidate only a live attempt can integrate.
        await holder.execute("COMMIT")

        async def statement_over() -> bool:
            return not await stack.pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                                                 " AND query LIKE '%ledger_integrate(%' AND pid <> pg_backend_pid()")

        await wait_until(statement_over, "the dead worker's statement over", timeout=30)
        async with stack.pool.acquire() as conn, conn.transaction():
            await ledger_candidates.add(conn, "access", f"after-{uuid.uuid4().hex}", "ab" * 32)
        started = time.monotonic()
        second = _start_worker(stack, temporal_address, database_url, log)
        # Heartbeat timeout (10 s), a retry's backoff and a worker's start: well inside the run's two minutes.
        await wait_until(integrated, "the dead worker's attempt given up and the next worker integrating", timeout=45)
        assert time.monotonic() - started > 5  # by the retry on the second worker, not by the dead one's backend
    finally:
        await stack.admin_pool.release(holder)
        if run is not None:
            await run.terminate("test over")
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(15)
