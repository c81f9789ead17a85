"""The reconciliation benchmark: one UTC day of 1,000,000 messages, generated in PostgreSQL, reconciled
by the Reconciliation workflow on a worker process (time, and the worker's peak RSS), against a plain
count(*) over the same day's rows in the same run."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING

from bench.measure import percentile, rss_kib

if TYPE_CHECKING:
    from bench.__main__ import Bench

DAY = date(2025, 3, 10)  # a past day no other benchmark writes to
NUMBER, DISPLAY = "109327745812336", "15550783881"
PENDING, OFF_CHANNEL = 50, 20  # gaps the report must name, so the day is red as it would be in life

# Everything is generated server-side with generate_series (no rows cross the wire); triggers and foreign
# keys are set aside for the load only (session_replication_role = replica), as for the other synthetic
# loads, since these rows are not records of anything. The figures are the bench's own constants, formatted in.
_SEED = [
    # Inbound: one delivery per message (Meta's usual shape), spread over the day; every tenth has an image.
    """INSERT INTO deliveries (sha256, source, body, updates, received_at)
       SELECT 'rb' || lpad(i::text, 62, '0'), 'meta', convert_to('{{"object":"whatsapp_business_account"}}', 'UTF8'), 1,
              '{start}'::timestamptz + i * interval '86 milliseconds'
         FROM generate_series(1, {inbound} + {pending}) i""",
    """INSERT INTO message_deliveries (message_id, delivery_sha256)
       SELECT 'wamid.RECONBENCH' || i, 'rb' || lpad(i::text, 62, '0') FROM generate_series(1, {inbound} + {pending}) i""",
    """INSERT INTO messages (id, source, direction, type, ts, phone_number_id, display_phone_number, contact_phone,
                             archive_status, payload, first_delivery_sha256, archived_at)
       SELECT 'wamid.RECONBENCH' || i, 'meta', 'in', CASE WHEN i % 10 = 0 THEN 'image' ELSE 'text' END,
              '{start}'::timestamptz + i * interval '86 milliseconds', '{number}', '{display}', '4477' || lpad((i % 100000)::text, 8, '0'), 'archived', '{{}}',
              'rb' || lpad(i::text, 62, '0'), '{start}'::timestamptz + i * interval '86 milliseconds' + interval '1 second'
         FROM generate_series(1, {inbound}) i""",
    """INSERT INTO media (message_id, position, media_id, kind, status, storage_url, storage_key, size, sha256,
                          mime_type, stored_at)
       SELECT 'wamid.RECONBENCH' || i, 0, 'm' || i, 'image', 'archived', 'file:///bench', 'k/' || i, 1, 'x',
              'image/jpeg', '{start}'::timestamptz + i * interval '86 milliseconds' + interval '2 seconds'
         FROM generate_series(10, {inbound}, 10) i""",
    # Outbound: a stored send, its `sent` status (statuses arrive in deliveries of 100) and the record.
    """INSERT INTO deliveries (sha256, source, body, updates, received_at)
       SELECT 'sb' || lpad(i::text, 62, '0'), 'meta', convert_to('{{"object":"whatsapp_business_account"}}', 'UTF8'),
              100, '{start}'::timestamptz + i * interval '8 seconds' FROM generate_series(0, ({outbound} + {stray}) / 100) i""",
    """INSERT INTO outbound_sends (message_id, phone_number_id, via, request, response, http_status, accepted,
                                   recorded_at)
       SELECT 'wamid.RECONOUT' || i, '{number}', 'record', '{{}}', '{{}}', 200, true, '{start}'::timestamptz + i * interval '860 milliseconds'
         FROM generate_series(1, {outbound}) i""",
    """INSERT INTO status_events (message_id, status, ts, raw_timestamp, payload, delivery_sha256, recorded_at)
       SELECT CASE WHEN i <= {outbound} THEN 'wamid.RECONOUT' || i ELSE 'wamid.RECONSTRAY' || i END, 'sent',
              '{start}'::timestamptz + i * interval '860 milliseconds', i::text, '{{}}', 'sb' || lpad((i / 100)::text, 62, '0'),
              '{start}'::timestamptz + i * interval '860 milliseconds' + interval '1 second'
         FROM generate_series(1, {outbound} + {stray}) i""",
    """INSERT INTO messages (id, source, direction, type, ts, phone_number_id, display_phone_number, contact_phone,
                             archive_status, payload, archived_at)
       SELECT 'wamid.RECONOUT' || i, 'meta', 'out', 'text', '{start}'::timestamptz + i * interval '860 milliseconds', '{number}', '{display}',
              '4477' || lpad((i % 100000)::text, 8, '0'), 'archived', '{{}}',
              '{start}'::timestamptz + i * interval '860 milliseconds' + interval '2 seconds'
         FROM generate_series(1, {outbound}) i""",
]
# The same day's rows counted plainly: what the reconciliation reads, without resolving anything.
_PLAIN_COUNTS = [
    "SELECT count(*) FROM deliveries d JOIN message_deliveries md ON md.delivery_sha256 = d.sha256"
    " WHERE d.received_at >= $1 AND d.received_at < $2",
    "SELECT count(*) FROM outbound_sends WHERE recorded_at >= $1 AND recorded_at < $2",
    "SELECT count(*) FROM status_events WHERE recorded_at >= $1 AND recorded_at < $2",
]


async def seed(b: Bench, rows: int) -> float:
    start = datetime.combine(DAY, datetime.min.time(), tzinfo=timezone.utc)
    outbound = rows // 10
    inbound = rows - outbound - PENDING
    started = time.perf_counter()
    async with b.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        for sql in _SEED:
            await conn.execute(sql.format(start=start.isoformat(), inbound=inbound, outbound=outbound, pending=PENDING,
                                          number=NUMBER, display=DISPLAY, stray=OFF_CHANNEL))
    for table in ("deliveries", "message_deliveries", "messages", "media", "outbound_sends", "status_events"):
        await b.pool.execute(f"ANALYZE {table}")
    return time.perf_counter() - started


async def plain_count(b: Bench) -> tuple[float, int]:
    start = datetime.combine(DAY, datetime.min.time(), tzinfo=timezone.utc)
    end = datetime.combine(date.fromordinal(DAY.toordinal() + 1), datetime.min.time(), tzinfo=timezone.utc)
    best, total = float("inf"), 0
    for _ in range(3):  # the best of three, warm, as the reconciliation's own reads are after the load
        started = time.perf_counter()
        total = 0
        for sql in _PLAIN_COUNTS:
            total += await b.pool.fetchval(sql, start, end)
        best = min(best, time.perf_counter() - started)
    return best, total


async def reconcile(b: Bench, rows: int = 1_000_000, runs: int = 1) -> dict:
    """Seed the day, then time the Reconciliation workflow over it (`runs` times, one worker) and
    watch the worker's memory."""
    from temporalio.client import WorkflowFailureError

    from wa_archive.models import ReconcileInput, ReconcileResult

    load_s = await seed(b, rows)
    plain_s, counted = await plain_count(b)
    tq = f"bench-rec-{uuid.uuid4().hex[:6]}"
    proc = b.worker(tq)
    await asyncio.sleep(3)
    baseline = rss_kib(proc.pid)
    peak = baseline
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        handle = await b.client.start_workflow("Reconciliation", ReconcileInput(date=DAY.isoformat()),
                                               id=f"bench-reconciliation-{uuid.uuid4().hex[:8]}", task_queue=tq,
                                               result_type=ReconcileResult)
        waiter = asyncio.create_task(handle.result())
        while not waiter.done():
            peak = max(peak, rss_kib(proc.pid))
            await asyncio.sleep(0.05)
        walls.append(time.perf_counter() - started)
        try:
            waiter.result()
        except WorkflowFailureError:
            pass  # expected: the seeded gaps make the day red, and a red day ends the workflow red
    wall = walls[0]
    proc.terminate()
    proc.wait(20)
    row = await b.pool.fetchrow("SELECT body, status FROM reconciliation_reports WHERE report_date = $1"
                                " ORDER BY version DESC LIMIT 1", DAY)
    if row is None:
        raise RuntimeError("the reconciliation stored no report")
    # The unarchived ids' synthetic deliveries name no number, so they are counted under `unknown`.
    numbers = json.loads(row["body"])["numbers"]
    received, pending = sum(e["received"] for e in numbers), sum(e["pending"] for e in numbers)
    if (received, pending) != (rows + OFF_CHANNEL, PENDING + OFF_CHANNEL):
        raise RuntimeError(f"the report counts {received} received and {pending} pending, expected"
                           f" {rows + OFF_CHANNEL} and {PENDING + OFF_CHANNEL}")
    return {"messages": rows, "ids_reconciled": received, "load_s": round(load_s, 1),
            "reconcile_s": round(wall, 2), "plain_count_s": round(plain_s, 3), "plain_count_rows": counted,
            "ratio": round(wall / plain_s, 1), "status": row["status"],
            "worker_rss_baseline_mib": round(baseline / 1024, 1), "worker_rss_peak_mib": round(peak / 1024, 1),
            "worker_rss_growth_mib": round((peak - baseline) / 1024, 1),
            **({"runs": runs, "reconcile_p50_s": round(percentile(walls, 50), 2),
                "reconcile_p95_s": round(percentile(walls, 95), 2)} if runs > 1 else {})}
