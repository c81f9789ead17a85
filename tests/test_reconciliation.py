"""The daily reconciliation: every id seen on a day resolves to a record, a failure or a named gap.

An off-channel status names its wamid; a delivery stored while Temporal was unreachable is a gap until
it is archived; Meta's disagreeing counts are reported with both numbers and turn the day (and its
workflow) red with a failure row; a clean day is green, kept write-once and provable from the ledger.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from datetime import date, datetime, timedelta, timezone

import asyncpg
import pytest
from aiohttp import web
from temporalio.client import Client, WorkflowFailureError

from tests.conftest import ACCESS_TOKEN, APP_SECRET, CONTACT_SECRET, DATA_CONVERTER, LEDGER_KEY, PAYLOAD_KEYS
from wa_archive.integrity import ledger, receipts, reconciliation, verification
from wa_archive.models import ReconcileInput, ReconcileResult
from wa_archive.sources.meta.samples import BUSINESS, WABA_ID, dumps, envelope, message, wamid
from wa_archive.sources.signature import meta_signature

NUMBER = BUSINESS["phone_number_id"]
DISPLAY = BUSINESS["display_phone_number"]


def _today() -> date:
    return datetime.now(timezone.utc).date()


async def _compute(stack, *, as_of: datetime) -> tuple[dict, list[str]]:
    report = await reconciliation.compute(stack.pool, _today(), as_of=as_of,
                                          deadlines=reconciliation.deadlines_of(stack.settings))
    return report, reconciliation.finish(report, None)


def _number(report: dict, number: str = NUMBER) -> dict:
    [entry] = [e for e in report["numbers"] if e["phone_number_id"] == number]
    return entry


async def _run(stack, day: date) -> ReconcileResult:
    return await stack.client.execute_workflow(
        "Reconciliation", ReconcileInput(date=day.isoformat()), id=f"rec-{uuid.uuid4().hex[:10]}",
        task_queue=stack.settings.task_queue, result_type=ReconcileResult)


def _cli_env(stack, database_url: str, temporal_address: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
    env.update(WA_ARCHIVE_DATABASE_URL=database_url, WA_ARCHIVE_TEMPORAL_ADDRESS=temporal_address,
               WA_ARCHIVE_TASK_QUEUE=stack.settings.task_queue, WA_ARCHIVE_META_ACCESS_TOKEN=ACCESS_TOKEN,
               WA_ARCHIVE_CONTACT_KEY_SECRET=CONTACT_SECRET, WA_ARCHIVE_PAYLOAD_KEYS=PAYLOAD_KEYS,
               WA_ARCHIVE_LEDGER_SIGNING_KEY=LEDGER_KEY, WA_ARCHIVE_STORAGE_URL=stack.store.url)
    return env


async def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "wa_archive.cli", *args], env=env,
                                   capture_output=True, text=True, timeout=120)


async def _archive_text(stack, text: str = "hello") -> str:
    mid = wamid()
    status, _ = await stack.post(dumps(envelope([message("text", {"body": text}, mid=mid)])))
    assert status == 200
    await stack.wait_for_message(mid)
    return mid


async def test_a_status_for_a_message_never_sent_through_the_archive_is_an_off_channel_gap(stack):
    archived = await _archive_text(stack)
    stray = wamid()
    status, _ = await stack.post(dumps(envelope(statuses=[
        {"id": stray, "status": "delivered", "timestamp": str(int(datetime.now(timezone.utc).timestamp())),
         "recipient_id": "447700900999"}])))
    assert status == 200
    report, gaps = await _compute(stack, as_of=datetime.now(timezone.utc))
    entry = _number(report)
    assert entry["off_channel"] == [stray]
    assert archived not in entry["off_channel"] and entry["archived"] >= 1
    assert entry["status"] == "red" and report["status"] == "red"
    assert any(stray in line and "off-channel" in line for line in gaps)
    # Still within the wait for a send record: explained as in progress, not yet pending.
    assert stray in entry["in_progress_ids"] and entry["pending"] == 0


async def test_a_delivery_stored_while_temporal_was_unreachable_is_a_gap_until_it_is_archived(stack_factory):
    from wa_archive.devstack.embedded import free_port
    from webhook.app import WebhookDeps, create_app

    stack = await stack_factory()
    mid = wamid()
    body = dumps(envelope([message("text", {"body": "while Temporal was down"}, mid=mid)]))
    # A webhook whose Temporal is unreachable: the delivery's bytes are stored, the answer is 503.
    down = await Client.connect(f"127.0.0.1:{free_port()}", data_converter=DATA_CONVERTER, lazy=True)
    runner = web.AppRunner(create_app(WebhookDeps(settings=stack.settings, client=down, pool=stack.pool,
                                                  store=stack.store)))
    await runner.setup()
    port = free_port()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        async with stack.http.post(f"http://127.0.0.1:{port}/webhooks/meta", data=body,
                                   headers={"X-Hub-Signature-256": meta_signature(APP_SECRET, body),
                                            "Content-Type": "application/json"}) as resp:
            assert resp.status == 503
    finally:
        await runner.cleanup()
    assert await stack.pool.fetchval("SELECT count(*) FROM message_deliveries WHERE message_id = $1", mid) == 1

    later = datetime.now(timezone.utc) + timedelta(days=1)  # past every deadline of an inbound message
    report, gaps = await _compute(stack, as_of=later)
    entry = _number(report)
    assert entry["unhanded_deliveries"] == 1 and entry["status"] == "red"
    [unhanded] = entry["unhanded_delivery_ids"]
    assert unhanded["message_ids"] == [mid]
    assert unhanded["delivery"] == await stack.pool.fetchval(
        "SELECT delivery_sha256 FROM message_deliveries WHERE message_id = $1", mid)
    assert entry["pending_ids"] == [mid]
    assert any(mid in line for line in gaps)
    # Within its deadline the same message is only in progress.
    early, _ = await _compute(stack, as_of=datetime.now(timezone.utc))
    assert _number(early)["unhanded_deliveries"] == 0 and _number(early)["in_progress_ids"] == [mid]

    status, _ = await stack.post(body)  # Meta's retry reaches a working archive
    assert status == 200
    await stack.wait_for_message(mid)
    report, gaps = await _compute(stack, as_of=later)
    entry = _number(report)
    assert entry["unhanded_deliveries"] == 0 and entry["pending"] == 0 and entry["archived"] == 1
    assert entry["received"] == 1 and gaps == [] and report["status"] == "green"


async def test_meta_counts_that_disagree_are_reported_with_both_numbers_and_end_the_workflow_red(
        stack_factory, database_url, temporal_address):
    stack = await stack_factory(meta_waba_id=WABA_ID)
    await _archive_text(stack)
    day = _today()
    start = int(datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc).timestamp())
    stack.graph.analytics[(WABA_ID, DISPLAY, start)] = (7, 6)
    try:
        with pytest.raises(WorkflowFailureError) as failure:
            await _run(stack, day)
        assert "Meta counts 7 sent" in str(failure.value.cause)
        row = await stack.pool.fetchrow("SELECT * FROM reconciliation_reports WHERE report_date = $1", day)
        report = json.loads(row["body"])
        entry = _number(report)
        assert (entry["meta_sent"], entry["meta_delivered"], entry["archived_outbound"]) == (7, 6, 0)
        assert entry["meta_difference"] == -7 and entry["meta_tolerance"] == 2 and entry["status"] == "red"
        assert row["status"] == "red" and report["checkpoint"]["tree_size"] == row["checkpoint_tree_size"]
        [failure_row] = await stack.pool.fetch("SELECT * FROM archive_failures WHERE stage = 'reconciliation'")
        assert failure_row["message_id"] == f"reconciliation/{day}/v1"
        assert "7 sent" in failure_row["last_error"] and failure_row["last_error_type"] == "ReconciliationGap"
        assert any("analytics.start(" in path for _, path in stack.graph.requests)

        env = _cli_env(stack, database_url, temporal_address)
        run = await _cli(env, "reconcile", "run", "--date", day.isoformat(), "--json")
        assert run.returncode == 1, run.stderr
        assert _number(json.loads(run.stdout))["meta_sent"] == 7
        # Reconciled again: a second version beside the first, which is unchanged.
        versions = await stack.pool.fetch("SELECT version, sha256 FROM reconciliation_reports ORDER BY version")
        assert [v["version"] for v in versions] == [1, 2] and versions[0]["sha256"] == row["sha256"]
    finally:
        stack.graph.analytics.clear()


async def test_a_clean_day_is_green_and_its_report_verifies_against_the_ledger(
        stack_factory, database_url, temporal_address):
    from wa_archive.credentials import ledger_signer

    stack = await stack_factory(meta_waba_id=WABA_ID)
    stack.graph.analytics_refused.add(WABA_ID)
    try:
        mid = await _archive_text(stack)
        day = _today()
        result = await _run(stack, day)
        assert result.status == "green" and result.version == 1 and result.gaps == []
    finally:
        stack.graph.analytics_refused.clear()
    row = await stack.pool.fetchrow("SELECT * FROM reconciliation_reports WHERE report_date = $1", day)
    report = json.loads(row["body"])
    entry = _number(report)
    assert (entry["received"], entry["archived"], entry["failed"], entry["pending"]) == (1, 1, 0, 0)
    assert entry["off_channel"] == [] and entry["unhanded_deliveries"] == 0 and entry["late_media"] == 0
    assert entry["meta_sent"] is None and "refused" in entry["meta_note"]  # not red by itself
    assert row["sha256"] == ledger.sha256_hex(row["body"].encode()) == result.sha256
    assert mid not in row["body"]  # a clean report names no message id: there is no gap to name

    # The checkpoint it names is one the archive signed, made before the report.
    named = report["checkpoint"]
    checkpoint = await stack.pool.fetchrow("SELECT * FROM ledger_checkpoints WHERE tree_size = $1",
                                           named["tree_size"])
    assert checkpoint is not None and checkpoint["root_hash"] == named["root_hash"]
    # Its own leaf is in a later checkpoint (the workflow signs one after the report): the receipt proves it.
    receipt = await reconciliation.receipt(stack.pool, row, ledger_signer(stack.settings).public_key())
    assert receipt is not None and receipt["record"]["kind"] == "reconciliation"
    public_key = ledger_signer(stack.settings).public_key()
    assert receipts.verify_receipt(receipt, public_key) == []
    assert receipt["leaf_index"] >= named["tree_size"]
    assert await verification.verify_log(stack.pool, public_key) == []

    # The report is write-once, even for the schema owner.
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await stack.owner_pool.execute("UPDATE reconciliation_reports SET status = 'green'")
    # A report changed behind the archive's back (triggers off) is named by verify.
    async with stack.admin_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE reconciliation_reports SET body = replace(body, '\"green\"', '\"red\"')")
    problems = await verification.verify_log(stack.pool, public_key)
    assert problems == [f"reconciliation {row['id']}: changed since it was recorded"]
    async with stack.admin_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE reconciliation_reports SET body = $1", row["body"])

    env = _cli_env(stack, database_url, temporal_address)
    shown = await _cli(env, "reconciliation", "show", day.isoformat(), "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["status"] == "green" and doc["report"] == report and doc["receipt"]["leaf_index"] == receipt["leaf_index"]
    receipt_file = os.path.join(os.path.dirname(stack.store.url.removeprefix("file://")), f"rec-{row['id']}.json")
    with open(receipt_file, "w") as fh:
        json.dump(doc["receipt"], fh)
    checked = await _cli(env, "verify-receipt", receipt_file,
                         "--public-key", base64.b64encode(public_key).decode())
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = await _cli(env, "reconciliation", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["date"] == day.isoformat()
    assert (await _cli(env, "reconcile", "run", "--date", day.isoformat())).returncode == 0
    assert (await _cli(env, "reconciliation", "show", "1999-01-01")).returncode == 1
    assert (await _cli(env, "reconcile", "run", "--date", "yesterday")).returncode == 2
    verified = await _cli(env, "verify", "--public-key", base64.b64encode(public_key).decode())
    assert verified.returncode == 0, verified.stdout + verified.stderr
    logged = {r["action"] for r in await stack.pool.fetch("SELECT action FROM access_log WHERE role = 'cli'")}
    assert {"reconcile", "reconciliation-list", "reconciliation-show"} <= logged

    # Auditors read the same report over HTTP; the read is logged first; others are refused.
    auditor_name = f"auditor-{uuid.uuid4().hex[:6]}"  # the access log outlives each test: count this one's
    auditor, sender = await stack.token("auditor", name=auditor_name), await stack.token("sender")
    url = f"{stack.url}/api/v1/reconciliation"
    async with stack.http.get(url, params={"date": day.isoformat()},
                              headers={"Authorization": f"Bearer {auditor}"}) as resp:
        assert resp.status == 200
        api_doc = await resp.json()
    assert api_doc["version"] == 2 and api_doc["report"]["status"] == "green"
    assert api_doc["receipt"]["record"]["kind"] == "reconciliation"
    assert [v["version"] for v in api_doc["earlier_versions"]] == [1]  # `reconcile run` made version 2
    async with stack.http.get(url, params={"date": "2026-02-30"},
                              headers={"Authorization": f"Bearer {auditor}"}) as resp:
        assert resp.status == 400 and "YYYY-MM-DD" in (await resp.json())["error"]
    async with stack.http.get(url, headers={"Authorization": f"Bearer {sender}"}) as resp:
        assert resp.status == 403
    assert await stack.pool.fetchval(
        "SELECT count(*) FROM access_log WHERE action = 'reconciliation' AND actor = $1", auditor_name) == 1


async def test_the_schedule_reconciles_the_previous_day_shortly_after_midnight(stack):
    from wa_archive.names import RECONCILIATION_SCHEDULE_ID
    from wa_archive.temporal.schedules import apply_schedules

    done = await apply_schedules(stack.client, stack.settings)
    assert any(RECONCILIATION_SCHEDULE_ID in line and "15 0 * * *" in line for line in done)
    desc = await stack.client.get_schedule_handle(RECONCILIATION_SCHEDULE_ID).describe()
    nxt = desc.info.next_action_times[0]
    assert (nxt.hour, nxt.minute) == (0, 15)


async def test_media_archived_more_than_a_day_after_the_message_was_seen_is_late_media(stack):
    from wa_archive.sources.meta.fake_graph import FakeMedia
    from wa_archive.sources.meta.samples import media_message

    image = stack.graph.add(FakeMedia(f"late{uuid.uuid4().hex[:8]}", mime_type="image/jpeg",
                                      content=b"\xff\xd8\xff" + os.urandom(500)))
    mid = wamid()
    status, _ = await stack.post(dumps(envelope([media_message("image", image.media_id, image.sha256_b64(),
                                                               "image/jpeg", mid=mid)])))
    assert status == 200
    await stack.wait_for_message(mid)
    report, gaps = await _compute(stack, as_of=datetime.now(timezone.utc))
    assert _number(report)["late_media"] == 0 and _number(report)["archived"] == 1
    # The object landed 25 hours after the delivery (a worker down over a day, say): stored_at says so.
    async with stack.admin_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE media SET stored_at = stored_at + interval '25 hours' WHERE message_id = $1", mid)
    report, gaps = await _compute(stack, as_of=datetime.now(timezone.utc) + timedelta(days=2))
    entry = _number(report)
    assert entry["late_media"] == 1 and entry["status"] == "red"
    [late] = entry["late_media_ids"]
    assert late["message_id"] == mid and late["position"] == 0 and late["archived_after_hours"] >= 25
    assert any(f"{mid}#0" in line for line in gaps)
