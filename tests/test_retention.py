"""Retention per business number, legal hold, disposition and erasure requests, end to end: webhook →
worker → store (moto's S3 server and the filesystem) → Postgres, with the CLI as operators use it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import until_past
from wa_archive.errors import RetentionActive
from wa_archive.integrity import ledger, sequencing, verification
from wa_archive.models import DispositionInput, DispositionReport
from wa_archive.retention import policies as retention
from wa_archive.retention.disposition import Disposer
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import BUSINESS, dumps, envelope, media_message, message, wamid

DAY = 86400
OTHER_BUSINESS = {"display_phone_number": "15550009999", "phone_number_id": "200000000000001"}


def _cli_env(stack) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
    s = stack.settings
    env.update(WA_ARCHIVE_DATABASE_URL=stack.database_url, WA_ARCHIVE_STORAGE_URL=s.resolved_storage_url,
               WA_ARCHIVE_S3_ENDPOINT_URL=s.s3_endpoint_url or "",
               WA_ARCHIVE_CONTACT_KEY_SECRET=s.contact_key_secret.get_secret_value(),
               WA_ARCHIVE_TEMPORAL_ADDRESS=stack.temporal_address, WA_ARCHIVE_TASK_QUEUE=s.task_queue,
               WA_ARCHIVE_PAYLOAD_KEYS=s.payload_keys.get_secret_value())
    return env


async def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "wa_archive.cli", *args], env=env,
                                   capture_output=True, text=True, timeout=120)


async def _archive(stack, *, phone: str, ts: int, business: dict = BUSINESS, media: bool = True) -> dict:
    """One inbound message (an image, or text), archived; returns `show --json`'s record."""
    mid = wamid()
    if media:
        item = stack.graph.add(FakeMedia(f"m{uuid.uuid4().hex[:10]}", content=os.urandom(3000)))
        body = media_message("image", item.media_id, item.sha256_b64(), "image/jpeg", mid=mid, phone=phone, ts=ts)
    else:
        body = message("text", {"body": "hello"}, mid=mid, phone=phone, ts=ts)
    payload = envelope([body], phone=phone)
    payload["entry"][0]["changes"][0]["value"]["metadata"] = business
    assert (await stack.post(dumps(payload)))[0] == 200
    return await stack.wait_for_message(mid)


async def _dispose(stack, replay: bool = False) -> DispositionReport:
    handle = await stack.client.start_workflow(
        "Disposition", DispositionInput(batch=2), id=f"disposition-{uuid.uuid4().hex[:8]}",
        task_queue=stack.settings.task_queue, result_type=DispositionReport)
    report = await handle.result()
    if replay:  # the run's history replays against the current workflow code
        from temporalio.worker import Replayer

        from tests.conftest import DATA_CONVERTER
        from workflows.disposition import Disposition

        history = await handle.fetch_history()
        await Replayer(workflows=[Disposition], data_converter=DATA_CONVERTER).replay_workflow(history)
        if os.environ.get("RECORD_HISTORY"):
            Path(os.environ["RECORD_HISTORY"]).write_text(history.to_json())
    return report


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.mark.slow
async def test_retention_hold_and_disposition(stack_factory, storage_backend, database_url, temporal_address):
    stack = await stack_factory(storage_backend, min_lock_seconds=1)
    stack.database_url, stack.temporal_address = database_url, temporal_address
    env = _cli_env(stack)
    set_short = await _cli(env, "retention", "set", "--business-phone", BUSINESS["phone_number_id"], "--days", "30",
                           "--basis", "test: 30 days", "--json")
    assert set_short.returncode == 0, set_short.stderr
    await retention.set_policy(stack.pool, scope="*", days=3650, legal_basis="SEC 17a-4", set_by="test")
    now = int(time.time())
    two_years_ago = now - 730 * DAY

    due = await _archive(stack, phone="447700900001", ts=two_years_ago)           # 30 days: long past
    held = await _archive(stack, phone="447700900002", ts=two_years_ago)          # past too, but held below
    recent = await _archive(stack, phone="447700900001", ts=now)                  # 30 days from now
    default = await _archive(stack, phone="447700900003", ts=two_years_ago, business=OTHER_BUSINESS)  # 10 years

    # Retain-until per policy, on the rows and on the objects.
    assert _when(recent["retain_until"]) == datetime.fromtimestamp(now, timezone.utc) + timedelta(days=30)
    assert _when(default["retain_until"]) == datetime.fromtimestamp(two_years_ago, timezone.utc) + timedelta(days=3650)
    for record in (recent, default):
        info = await stack.store.head(record["media"][0]["storage_key"])
        assert info.retain_until == _when(record["media"][0]["retain_until"]) == _when(record["retain_until"])

    # A legal hold: rows flagged, objects held, access-logged; later messages held from the start.
    case = f"CASE-{uuid.uuid4().hex[:6]}"  # the access log outlives each test: an id of this run
    hold = await _cli(env, "hold", "set", "--phone", "+44 7700 900002", "--case", case, "--reason", "subpoena",
                      "--json")
    assert hold.returncode == 0, hold.stderr
    assert json.loads(hold.stdout)["messages"] == 1
    assert (await stack.store.head(held["media"][0]["storage_key"])).legal_hold
    later = await _archive(stack, phone="447700900002", ts=now)
    assert later["legal_hold"] == [case] and later["media"][0]["legal_hold"]
    assert (await stack.store.head(later["media"][0]["storage_key"])).legal_hold
    logged = await stack.pool.fetch("SELECT action, target FROM access_log WHERE target->>'case' = $1", case)
    assert [r["action"] for r in logged] == ["hold.set"] and logged[0]["target"]["reason"] == "subpoena"
    listed = json.loads((await _cli(env, "hold", "list", "--json")).stdout)
    assert listed[0]["case"] == case and listed[0]["messages"] == 2 and listed[0]["status"] == "active"

    # The minimum lock (1 s from archiving) of the late-archived old messages lapses.
    await until_past(max([(await stack.store.head(r["media"][0]["storage_key"])).retain_until for r in (due, held)]))
    plan = await _cli(env, "disposition", "plan", "--json")
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    assert [d["id"] for d in planned["due"]] == [due["id"]] and planned["held_past_retention"] == 1
    assert await stack.store.head(due["media"][0]["storage_key"]) is not None  # a dry run removes nothing

    # Nothing on hold or within retention can be removed, by any path.
    disposer = Disposer(stack.pool, stack.store, None)
    for victim in (held, recent):
        with pytest.raises(RetentionActive):
            await disposer.dispose_message(victim["id"])
    with pytest.raises(RetentionActive):
        await stack.store.dispose(recent["media"][0]["storage_key"])
    with pytest.raises(asyncpg.RaiseError, match="within retention"):
        await stack.owner_pool.execute("DELETE FROM messages WHERE id = $1", recent["id"])
    with pytest.raises(asyncpg.RaiseError, match="legal hold"):
        await stack.owner_pool.execute("DELETE FROM messages WHERE id = $1", held["id"])

    report = await _dispose(stack)
    assert report.removed == 1 and report.bytes == 3000 and not report.deferred
    assert await stack.store.head(due["media"][0]["storage_key"]) is None
    assert not [k for k in await stack.stored_objects() if k.startswith(due["media"][0]["storage_key"])]
    assert await stack.pool.fetchval("SELECT count(*) FROM messages WHERE id = $1", due["id"]) == 0
    for kept in (held, recent, default, later):
        assert await stack.store.head(kept["media"][0]["storage_key"]) is not None
    record = await stack.pool.fetchrow("SELECT * FROM dispositions WHERE message_id = $1", due["id"])
    assert record["reason"] == "retention_expired" and record["policy_id"] == json.loads(set_short.stdout)["policy"]["id"]
    assert record["record"]["media"][0]["sha256"] == due["media"][0]["sha256"]
    assert "447700900001" not in json.dumps(record["record"])  # hashes, never the phone
    await sequencing.integrate(stack.pool)  # what the integrator's Schedule does within a second
    leaf = await stack.pool.fetchrow("SELECT * FROM ledger_leaves WHERE kind = 'disposition'")
    assert leaf["record_id"] == str(record["id"]) and leaf["digest"] == ledger.disposition_digest(record)
    assert await verification.verify_log(stack.pool, None) == []  # the removal is accounted for in the ledger
    listed = json.loads((await _cli(env, "disposition", "list", "--json")).stdout)
    assert [d["message_id"] for d in listed] == [due["id"]]

    # Released, the held message is due and goes at the next run; the later one is within retention.
    released = await _cli(env, "hold", "release", "--case", case)
    assert released.returncode == 0, released.stderr
    assert not (await stack.store.head(held["media"][0]["storage_key"])).legal_hold
    assert (await _dispose(stack)).removed == 1
    assert await stack.store.head(held["media"][0]["storage_key"]) is None
    assert await stack.store.head(later["media"][0]["storage_key"]) is not None
    again = await _cli(env, "hold", "release", "--case", case)
    assert again.returncode == 2 and "already released" in again.stderr


async def test_policy_change_never_shortens_existing_retention(stack_factory, storage_backend, database_url,
                                                              temporal_address):
    stack = await stack_factory(storage_backend)
    stack.database_url, stack.temporal_address = database_url, temporal_address
    env = _cli_env(stack)
    ts = int(time.time()) - 10 * DAY
    first = await _archive(stack, phone="447700900004", ts=ts)
    granted = _when(first["retain_until"])
    assert granted == datetime.fromtimestamp(ts, timezone.utc) + timedelta(days=stack.settings.retention_days)

    shorter = await _cli(env, "retention", "set", "--default", "--days", "30", "--basis", "shorter")
    assert shorter.returncode == 0 and "applies to new records only" in shorter.stdout
    key = first["media"][0]["storage_key"]
    assert (await stack.store.head(key)).retain_until == granted
    assert await stack.pool.fetchval("SELECT retain_until FROM messages WHERE id = $1", first["id"]) == granted
    newer = await _archive(stack, phone="447700900004", ts=ts)
    assert _when(newer["retain_until"]) == datetime.fromtimestamp(ts, timezone.utc) + timedelta(days=30)

    longer = await _cli(env, "retention", "set", "--default", "--days", "4000", "--basis", "longer", "--json")
    assert longer.returncode == 0, longer.stderr
    assert json.loads(longer.stdout)["extended_objects"] == 2
    extended = datetime.fromtimestamp(ts, timezone.utc) + timedelta(days=4000)
    for record in (first, newer):
        assert (await stack.store.head(record["media"][0]["storage_key"])).retain_until == extended
        assert await stack.pool.fetchval("SELECT retain_until FROM messages WHERE id = $1", record["id"]) == extended
    with pytest.raises(asyncpg.RaiseError, match="cannot be shortened"):
        await stack.owner_pool.execute("UPDATE messages SET retain_until = now() WHERE id = $1", first["id"])
    policies = json.loads((await _cli(env, "retention", "list", "--json")).stdout)
    assert [(p["scope"], p["days"]) for p in policies] == [("*", 4000)]


@pytest.mark.slow
async def test_erasure_requests_defer_under_retention_and_complete(stack_factory, database_url, temporal_address,
                                                                   tmp_path):
    stack = await stack_factory("s3", min_lock_seconds=1)
    stack.database_url, stack.temporal_address = database_url, temporal_address
    env = _cli_env(stack)
    await retention.set_policy(stack.pool, scope="*", days=30, legal_basis="MiFID II art. 16(7)", set_by="test")
    now = int(time.time())
    kept = await _archive(stack, phone="447700900005", ts=now)                   # within retention
    gone = await _archive(stack, phone="447700900006", ts=now - 400 * DAY)       # long past it
    await until_past((await stack.store.head(gone["media"][0]["storage_key"])).retain_until)  # its 1 s lock lapses

    deferred = json.loads((await _cli(env, "erasure", "request", "--phone", "+447700900005", "--reason",
                                      "customer asked", "--json")).stdout)
    assert deferred["status"] == "deferred" and _when(deferred["deferred_until"]) == _when(kept["retain_until"])
    assert "MiFID II art. 16(7)" in deferred["legal_basis"]
    assert await stack.store.head(kept["media"][0]["storage_key"]) is not None

    done = await _cli(env, "erasure", "request", "--phone", "447700900006", "--reason", "customer asked", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "completed" and json.loads(done.stdout)["messages_removed"] == 1
    assert await stack.store.head(gone["media"][0]["storage_key"]) is None
    assert (await stack.pool.fetchval("SELECT reason FROM dispositions WHERE message_id = $1", gone["id"])
            == "erasure_request")

    soon = await _archive(stack, phone="447700900007", ts=int(time.time()) - 30 * DAY + 20, media=False)  # due in 20 s
    later = json.loads((await _cli(env, "erasure", "request", "--phone", "447700900007", "--reason", "x",
                                   "--json")).stdout)
    assert later["status"] == "deferred"
    await until_past(_when(soon["retain_until"]))
    report = await _dispose(stack)
    assert report.erasures_completed == 1
    assert await stack.pool.fetchval("SELECT count(*) FROM messages WHERE id = $1", soon["id"]) == 0

    listed = json.loads((await _cli(env, "erasure", "list", "--json")).stdout)
    assert [(r["phone"], r["status"]) for r in listed] == [
        ("447700900005", "deferred"), ("447700900006", "completed"), ("447700900007", "completed")]
    out = tmp_path / "erasure.csv"
    exported = await _cli(env, "erasure", "export", "--out", str(out))
    assert exported.returncode == 0 and out.read_text().count("\n") == 4
    bad = await _cli(env, "erasure", "request", "--phone", "someone", "--reason", "x")
    assert bad.returncode == 2 and "not a phone number" in bad.stderr


async def test_disposed_outbound_message_takes_its_statuses_send_record_and_delivery(stack):
    """Everything of a message goes with it, and the ledger still verifies: the disposition record
    accounts for the message's and its statuses' leaves."""
    from tests.test_outbound import _proxy, status_body

    token = await stack.token("sender")
    _, answer = await _proxy(stack, token, {"messaging_product": "whatsapp", "to": "+447700900008",
                                           "type": "text", "text": {"body": "Your statement is ready."}})
    mid = answer["messages"][0]["id"]
    await stack.post(status_body(mid, "failed", int(time.time()), errors=[{"code": 131026}]))
    msg = await stack.wait_for_message(mid)
    assert await stack.pool.fetchval("SELECT count(*) FROM status_events WHERE message_id = $1", mid) == 1
    delivery = await stack.pool.fetchval("SELECT delivery_sha256 FROM status_events WHERE message_id = $1", mid)
    # Time passes: the retention ends (set back as the clock would, past the guard that forbids it).
    async with stack.admin_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE messages SET retain_until = now() - interval '1 day' WHERE id = $1", mid)
        await conn.execute("UPDATE media SET retain_until = now() - interval '1 day' WHERE message_id = $1", mid)

    assert (await _dispose(stack, replay=True)).removed == 1
    for table, column in (("messages", "id"), ("status_events", "message_id"), ("outbound_sends", "message_id"),
                          ("message_deliveries", "message_id")):
        assert await stack.pool.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = $1", mid) == 0, table
    assert await stack.pool.fetchval("SELECT count(*) FROM deliveries WHERE sha256 = $1", delivery) == 0
    record = await stack.pool.fetchval("SELECT record FROM dispositions WHERE message_id = $1", mid)
    assert record["text_sha256"] == ledger.sha256_hex(msg["text"].encode()) and len(record["status_events"]) == 1
    assert await verification.verify_log(stack.pool, None) == []
    # A disposition record that does not match the ledger is named.
    async with stack.admin_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE dispositions SET record = jsonb_set(record, '{message_digest}', '\"0\"')")
    problems = await verification.verify_log(stack.pool, None)
    assert f"message {mid}: disposed, but the disposition record does not match its ledger entry" in problems
    assert any(p.startswith("disposition ") and "changed since it was recorded" in p for p in problems)


async def test_rows_archived_before_retention_get_the_policy_in_force(pool, clean_db):
    """Rows from before retention was recorded are dated at the next run, by their number's policy."""
    policy = (await retention.set_policy(clean_db, scope="109327745812336", days=400, legal_basis="x",
                                         set_by="test"))["policy"]
    for mid, pnid in (("OLD-A", "109327745812336"), ("OLD-B", "other")):
        await clean_db.execute(
            "INSERT INTO messages (id, source, direction, type, ts, archive_status, payload, phone_number_id)"
            " VALUES ($1, 'meta', 'in', 'image', '2020-01-01T00:00:00Z', 'archived', '{}', $2)", mid, pnid)
        await clean_db.execute(
            "INSERT INTO media (message_id, position, media_id, kind, status) VALUES ($1, 0, 'x', 'image', 'failed')",
            mid)
    await retention.fill_missing(clean_db, default_days=3650)
    rows = {r["id"]: r for r in await clean_db.fetch(
        "SELECT m.id, m.retain_until, m.retention_policy_id, d.retain_until AS media_until"
        " FROM messages m JOIN media d ON d.message_id = m.id")}
    start = datetime(2020, 1, 1, tzinfo=timezone.utc)
    assert rows["OLD-A"]["retain_until"] == start + timedelta(days=400) == rows["OLD-A"]["media_until"]
    assert rows["OLD-A"]["retention_policy_id"] == policy["id"]
    assert rows["OLD-B"]["retain_until"] == start + timedelta(days=3650) and rows["OLD-B"]["retention_policy_id"] is None
