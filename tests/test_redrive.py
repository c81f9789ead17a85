"""The self-healing intake: a delivery stored while Temporal was down is archived without Meta redelivering it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from temporalio.client import Client

from tests.conftest import (
    APP_SECRET,
    PAYLOAD_KEYS,
    make_settings,
    wait_for_archived,
    webhook_on_own_temporal,
)
from wa_archive.db import handoffs, queries
from wa_archive.db.migrations import __file__ as migrations_init
from wa_archive.models import RedriveReport
from wa_archive.sources.meta.samples import dumps, envelope, message, wamid
from wa_archive.sources.signature import meta_signature
from wa_archive.storage import FilesystemStore
from wa_archive.temporal.schedules import redrive_schedule
from worker import build_worker, link_fetcher

MIGRATION_018 = Path(migrations_init).parent / "018_delivery_handoffs.sql"


def _status(state: str) -> dict:
    return {"id": wamid(), "status": state, "timestamp": str(int(time.time())), "recipient_id": "447700900123"}


async def _handoffs(pool, sha256: str) -> list[str]:
    return [r["how"] for r in await pool.fetch(
        "SELECT how FROM delivery_handoffs WHERE delivery_sha256 = $1 ORDER BY how", sha256)]


async def _redrive_now(client: Client, task_queue: str) -> RedriveReport:
    return await client.execute_workflow("Redrive", id=f"redrive-test-{uuid.uuid4().hex[:8]}",
                                         task_queue=task_queue, result_type=RedriveReport)


async def _cli_redrive(address: str, task_queue: str, data_dir: Path) -> dict:
    """`wa-archive redrive run --json` in its own process, as an operator runs it."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")},
           "WA_ARCHIVE_TEMPORAL_ADDRESS": address, "WA_ARCHIVE_PAYLOAD_KEYS": PAYLOAD_KEYS,
           "WA_ARCHIVE_TASK_QUEUE": task_queue, "WA_ARCHIVE_DATA_DIR": str(data_dir)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wa_archive.cli", "redrive", "run", "--json", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


async def test_a_delivery_stored_while_temporal_was_down_is_archived_without_redelivery(
        clean_db, fake_graph, tmp_path):
    mid = wamid()
    body = dumps(envelope([message("text", {"body": "sent while Temporal was down"}, mid=mid)]))
    headers = {"X-Hub-Signature-256": meta_signature(APP_SECRET, body), "Content-Type": "application/json"}
    settings = make_settings(meta_graph_url=fake_graph.graph_url, redrive_grace_seconds=0.0)
    store = FilesystemStore(tmp_path / "objects")
    async with webhook_on_own_temporal(clean_db, settings, store, tmp_path) as own:
        server, client, http = own.server, own.client, own.http
        server.stop()
        async with http.post(f"{own.url}/webhooks/meta", data=body, headers=headers) as resp:
            assert resp.status == 503
        stored = await clean_db.fetchrow("SELECT sha256 FROM deliveries")
        assert stored is not None, "the 503 must still leave the delivery's bytes stored"
        sha256 = stored["sha256"]
        assert await _handoffs(clean_db, sha256) == []
        assert await handoffs.deliveries_awaiting_handoff(clean_db, grace=timedelta(0)) == 1
        # The grace period spares the webhook's own hand-off: a delivery younger than it is not counted.
        assert await handoffs.deliveries_awaiting_handoff(clean_db, grace=timedelta(hours=1)) == 0

        await server.start()  # Temporal is back; Meta never sends the delivery again
        async with build_worker(client, settings, clean_db, store, http, link_fetcher(settings)):
            report = await _redrive_now(client, settings.task_queue)
            assert report.redriven == [sha256] and report.failed == [] and not report.more
            msg = await wait_for_archived(clean_db, mid)
            assert msg["text"] == "sent while Temporal was down"
            assert [d["sha256"] for d in msg["deliveries"]] == [sha256]
            assert await _handoffs(clean_db, sha256) == ["redrive"]
            assert await handoffs.deliveries_awaiting_handoff(clean_db, grace=timedelta(0)) == 0

            again = await _cli_redrive(server.address, settings.task_queue, tmp_path / "cli")
            assert again["redriven"] == [] and again["failed"] == []
    runs = await handoffs.list_redrive_runs(clean_db)
    assert [r["redriven"] for r in runs] == [[], [sha256]]  # newest first: the run is kept as a row too


async def test_deliveries_the_webhook_handed_over_are_not_redriven(stack_factory):
    stack = await stack_factory(redrive_grace_seconds=0.0)
    mid = wamid()
    status_code, answer = await stack.post(dumps(envelope([message("text", {"body": "hello"}, mid=mid)])))
    assert status_code == 200
    # Statuses only: nothing is started for them here, and the delivery counts as handed over all the same.
    only_status, status_answer = await stack.post(dumps(envelope(statuses=[_status("delivered")])))
    assert only_status == 200
    for sha256 in (answer["delivery"], status_answer["delivery"]):
        assert await _handoffs(stack.pool, sha256) == ["webhook"]
    await stack.wait_for_message(mid)
    report = await _redrive_now(stack.client, stack.settings.task_queue)
    assert report.redriven == [] and report.failed == []


async def test_one_run_redrives_one_batch_oldest_first(stack_factory):
    stack = await stack_factory(redrive_grace_seconds=0.0, redrive_batch=2)
    stored = []
    for n in range(3):  # as the webhook stores a delivery before its hand-off fails
        body = dumps(envelope([message("text", {"body": f"batch {n}"}, mid=wamid())]))
        sha256 = hashlib.sha256(body).hexdigest()
        await queries.insert_delivery(stack.pool, sha256=sha256, source="meta", body=body, signature=None,
                                      remote_addr=None, updates=1,
                                      received_at=datetime.now(timezone.utc) - timedelta(minutes=3 - n))
        stored.append(sha256)
    first = await _redrive_now(stack.client, stack.settings.task_queue)
    assert first.redriven == stored[:2] and first.more
    second = await _redrive_now(stack.client, stack.settings.task_queue)
    assert second.redriven == stored[2:] and not second.more
    third = await _redrive_now(stack.client, stack.settings.task_queue)
    assert third.redriven == []


async def test_the_upgrade_backfill_marks_only_deliveries_with_nothing_left_to_do(stack, owner_pool, admin_pool):
    archived, pending = wamid(), wamid()
    code, done = await stack.post(dumps(envelope([message("text", {"body": "archived"}, mid=archived)])))
    assert code == 200
    await stack.wait_for_message(archived)
    code, statuses = await stack.post(dumps(envelope(statuses=[_status("read")])))
    assert code == 200
    body = dumps(envelope([message("text", {"body": "never handed over"}, mid=pending)]))
    sha_pending = hashlib.sha256(body).hexdigest()
    await queries.insert_delivery_with_messages(
        stack.pool, sha256=sha_pending, source="meta", body=body, signature=None, remote_addr=None, updates=1,
        received_at=datetime.now(timezone.utc), message_ids=[pending])
    large = dumps(envelope([message("text", {"body": "large, never fanned out"}, mid=wamid())]))
    sha_large = hashlib.sha256(large).hexdigest()
    await queries.insert_delivery(stack.pool, sha256=sha_large, source="meta", body=large, signature=None,
                                  remote_addr=None, updates=1,
                                  received_at=datetime.now(timezone.utc))
    # As before the upgrade: no hand-off recorded for any of them.
    async with admin_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("TRUNCATE delivery_handoffs")
    await owner_pool.execute(MIGRATION_018.read_text())  # the migration as `migrate` runs it
    assert await _handoffs(stack.pool, done["delivery"]) == ["backfill"]
    assert await _handoffs(stack.pool, statuses["delivery"]) == ["backfill"]
    assert await _handoffs(stack.pool, sha_pending) == []
    assert await _handoffs(stack.pool, sha_large) == []


def test_the_redrive_schedule_runs_every_minute_unless_configured(monkeypatch):
    from wa_archive.config import load_settings

    schedule = redrive_schedule(make_settings())
    assert schedule.spec.cron_expressions == ["* * * * *"]
    assert schedule.action.workflow == "Redrive"  # type: ignore[union-attr]
    monkeypatch.setenv("WA_ARCHIVE_REDRIVE_CRON", "*/5 * * * *")
    assert redrive_schedule(load_settings()).spec.cron_expressions == ["*/5 * * * *"]
