"""The consent log: entries recorded once with their ledger leaves, the state in force at a moment,
outbound messages judged at send time through the real send path, findings, tampering named by
`verify`, and disposal taking a message's judgement but never the log."""

from __future__ import annotations

import base64
import copy
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from tests.conftest import LEDGER_KEY
from tests.test_ledger import _cli, _env
from tests.test_outbound import PNID, _proxy, status_body
from tests.test_retention import _dispose
from wa_archive.contacts import views
from wa_archive.contacts.consent import ConsentEvidence, record_entry, state_at
from wa_archive.integrity import ledger, receipts, sequencing, verification
from wa_archive.sources.meta.samples import WABA_ID

OTHER_PNID = "200000000000001"
MARKETING = {
    "id": "7100", "name": "spring_offer", "language": "en_GB", "status": "APPROVED", "category": "MARKETING",
    "parameter_format": "POSITIONAL", "components": [{"type": "BODY", "text": "Hello {{1}}, 20% off this spring."}],
}


def _phone() -> str:
    return "4477007" + str(uuid.uuid4().int % 10**5).zfill(5)


def _evidence(phone: str, state: str, at: datetime, **kw) -> ConsentEvidence:
    return ConsentEvidence(phone=phone, state=state, source=kw.pop("source", "manual"), at=at,
                           recorded_by="cli:auditor", evidence="signed form 2026-03", dedupe_key=uuid.uuid4().hex, **kw)


async def _record(pool, ev: ConsentEvidence) -> tuple[int, bool]:
    async with pool.acquire() as conn, conn.transaction():
        return await record_entry(conn, ev)


async def test_recording_the_same_evidence_twice_is_one_entry_with_one_leaf(clean_db):
    ev = _evidence(_phone(), "opted_out", datetime(2026, 3, 1, tzinfo=timezone.utc), source="user_preferences",
                   detail={"value": "stop"})
    first, new = await _record(clean_db, ev)
    again, new_again = await _record(clean_db, ev.model_copy())
    assert (new, again, new_again) == (True, first, False)
    assert await clean_db.fetchval("SELECT count(*) FROM consent_entries WHERE dedupe_key = $1", ev.dedupe_key) == 1
    await sequencing.integrate(clean_db)  # what the integrator's Schedule does within a second
    assert await clean_db.fetchval("SELECT count(*) FROM ledger_leaves WHERE kind = 'consent'"
                                   " AND record_id = $1", str(first)) == 1
    row = await clean_db.fetchrow("SELECT * FROM consent_entries WHERE id = $1", first)
    assert (row["phone"], row["detail"], row["recorded_by"]) == (ev.phone, {"value": "stop"}, "cli:auditor")


def test_evidence_must_name_a_person_with_a_real_number():
    at = datetime(2026, 3, 1, tzinfo=timezone.utc)
    with pytest.raises(ValidationError, match="must name the person"):
        ConsentEvidence(state="opted_in", source="manual", at=at, recorded_by="x", dedupe_key="k")
    with pytest.raises(ValidationError, match="phone must be a phone number"):
        ConsentEvidence(phone="<script>", state="opted_in", source="manual", at=at, recorded_by="x", dedupe_key="k")
    with pytest.raises(ValidationError):  # a naive time is no moment
        ConsentEvidence(phone="447700900123", state="opted_in", source="manual", at=datetime(2026, 3, 1),
                        recorded_by="x", dedupe_key="k")
    assert ConsentEvidence(phone="+44 7700-900123", state="opted_in", source="manual", at=at, recorded_by="x",
                           dedupe_key="k").phone == "447700900123"


async def test_state_at_takes_the_latest_entry_at_or_before_the_moment_for_that_business_number(clean_db):
    phone = _phone()
    t = datetime(2026, 3, 1, 9, tzinfo=timezone.utc)
    opted_in, _ = await _record(clean_db, _evidence(phone, "opted_in", t))
    other, _ = await _record(clean_db, _evidence(phone, "opted_out", t + timedelta(hours=1),
                                                 business_phone_number_id=OTHER_PNID))
    stopped, _ = await _record(clean_db, _evidence(phone, "opted_out", t + timedelta(hours=2),
                                                   business_phone_number_id=PNID))
    # Recorded later but about the same moment: the later entry decides.
    resumed, _ = await _record(clean_db, _evidence(phone, "opted_in", t + timedelta(hours=2),
                                                   business_phone_number_id=PNID))

    async def state(at: datetime, number: str | None = PNID) -> tuple[str, int | None]:
        s = await state_at(clean_db, phone="+" + phone, business_phone_number_id=number, at=at)
        return s.state, s.entry_id

    assert await state(t - timedelta(seconds=1)) == ("unknown", None)
    assert await state(t) == ("opted_in", opted_in)
    assert await state(t + timedelta(hours=1, minutes=30)) == ("opted_in", opted_in)  # the other number's opt-out
    assert await state(t + timedelta(hours=1, minutes=30), OTHER_PNID) == ("opted_out", other)
    assert await state(t + timedelta(hours=3)) == ("opted_in", resumed)
    assert stopped < resumed
    assert await state(t + timedelta(hours=3), OTHER_PNID) == ("opted_out", other)
    assert (await state_at(clean_db, phone="449999999999", business_phone_number_id=PNID, at=t)).state == "unknown"


async def _send_marketing(stack, token: str, phone: str, sent_at: int) -> str:
    body = {"messaging_product": "whatsapp", "to": "+" + phone, "type": "template",
            "template": {"name": "spring_offer", "language": {"code": "en_GB"},
                         "components": [{"type": "body", "parameters": [{"type": "text", "text": "Priya"}]}]}}
    status, answer = await _proxy(stack, token, body)
    assert status == 200, answer
    mid = answer["messages"][0]["id"]
    assert (await stack.post(status_body(mid, "sent", sent_at)))[0] == 200
    await stack.wait_for_message(mid)
    return str(mid)


async def test_marketing_sends_are_judged_at_send_time_and_opt_outs_are_findings(stack, database_url):
    stack.graph.set_template(WABA_ID, copy.deepcopy(MARKETING))
    token = await stack.token("sender")
    now = int(time.time())
    before = datetime.fromtimestamp(now - 3600, timezone.utc)
    out_phone, in_phone, unknown_phone = _phone(), _phone(), _phone()
    # Opted in first, then out: the send comes after the opt-out.
    await _record(stack.pool, _evidence(out_phone, "opted_in", before - timedelta(days=30)))
    stop, _ = await _record(stack.pool, _evidence(out_phone, "opted_out", before, source="user_preferences"))
    start, _ = await _record(stack.pool, _evidence(in_phone, "opted_in", before, business_phone_number_id=PNID))
    # An opt-in recorded after the send does not make the send consented.
    await _record(stack.pool, _evidence(unknown_phone, "opted_in", before + timedelta(days=1)))
    sent = {p: await _send_marketing(stack, token, p, now) for p in (out_phone, in_phone, unknown_phone)}

    judged = await views.message_consent(stack.pool, list(sent.values()))
    assert {p: (judged[m]["state"], judged[m]["entry_id"]) for p, m in sent.items()} == {
        out_phone: ("opted_out", stop), in_phone: ("opted_in", start), unknown_phone: ("unknown", None)}
    assert {j["template_category"] for j in judged.values()} == {"MARKETING"}
    assert judged[sent[out_phone]]["at"] == datetime.fromtimestamp(now, timezone.utc).isoformat()

    found = await views.findings(stack.pool, consent_required=False)
    assert [(f["message_id"], f["state"], f["entry_id"], f["recipient"], f["template_name"]) for f in found] == [
        (sent[out_phone], "opted_out", stop, out_phone, "spring_offer")]
    required = await views.findings(stack.pool, consent_required=True)
    assert {f["message_id"] for f in required} == {sent[out_phone], sent[unknown_phone]}
    assert await views.findings(stack.pool, consent_required=True,
                                until=datetime.fromtimestamp(now, timezone.utc)) == []

    # The judgement is kept, never recomputed: a later opt-in changes nothing about the past send.
    await _record(stack.pool, _evidence(out_phone, "opted_in", before + timedelta(days=2)))
    assert (await views.message_consent(stack.pool, [sent[out_phone]]))[sent[out_phone]]["state"] == "opted_out"
    doc = await views.contact_document(stack.pool, out_phone)
    assert doc is not None and doc["consent"]["state"] == "opted_in"
    assert [e["state"] for e in doc["consent_log"]] == ["opted_in", "opted_out", "opted_in"]
    assert sent[out_phone] in [m["id"] for m in doc["messages"]]

    clean = await _cli(_env(stack, database_url), "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr


async def test_every_consent_entry_and_judgement_verifies_and_tampering_is_named(stack, database_url):
    phone = _phone()
    token = await stack.token("sender")
    entry, _ = await _record(stack.pool, _evidence(phone, "opted_out", datetime.now(timezone.utc) - timedelta(1)))
    _, answer = await _proxy(stack, token, {"messaging_product": "whatsapp", "to": "+" + phone, "type": "text",
                                            "text": {"body": "Your statement is ready."}})
    mid = answer["messages"][0]["id"]
    await stack.post(status_body(mid, "sent", int(time.time())))
    await stack.wait_for_message(mid)
    assert (await views.message_consent(stack.pool, [mid]))[mid]["state"] == "opted_out"
    env = _env(stack, database_url)
    assert (await _cli(env, "ledger", "checkpoint")).returncode == 0
    clean = await _cli(env, "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    receipt = await receipts.consent_receipt(stack.pool, entry, public_key=ledger.Signer(base64.b64decode(LEDGER_KEY)).public_key())
    assert receipt["record"] == {"kind": "consent", "id": str(entry),
                                 "digest": (await stack.pool.fetchval(
                                     "SELECT digest FROM ledger_leaves WHERE kind = 'consent' AND record_id = $1",
                                     str(entry)))}
    assert receipts.verify_receipt(receipt, ledger.Signer(base64.b64decode(LEDGER_KEY)).public_key()) == []

    # The schema owner switches the append-only triggers off and rewrites history.
    async with stack.owner_pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE consent_entries DISABLE TRIGGER consent_entries_append_only")
        await conn.execute("UPDATE consent_entries SET state = 'opted_in' WHERE id = $1", entry)
        await conn.execute("ALTER TABLE consent_entries ENABLE TRIGGER consent_entries_append_only")
        await conn.execute("ALTER TABLE message_consent DISABLE TRIGGER message_consent_append_only")
        await conn.execute("DELETE FROM message_consent WHERE message_id = $1", mid)
        await conn.execute("ALTER TABLE message_consent ENABLE TRIGGER message_consent_append_only")
        forged = await conn.fetchval(
            "INSERT INTO consent_entries (contact_id, phone, state, source, at, recorded_by, dedupe_key)"
            " SELECT contact_id, phone, 'opted_in', 'manual', at, 'nobody', 'forged' FROM consent_entries"
            " WHERE id = $1 RETURNING id", entry)
    report = await _cli(env, "verify")
    assert report.returncode != 0
    assert f"consent {entry}: changed since it was recorded" in report.stdout + report.stderr
    assert f"message_consent {mid}: deleted (its ledger entry remains)" in report.stdout + report.stderr
    assert f"consent {forged}: not in the ledger (added outside the archive)" in report.stdout + report.stderr


async def test_disposal_takes_the_judgement_and_sighting_but_never_the_consent_log(stack):
    phone = _phone()
    token = await stack.token("sender")
    entry, _ = await _record(stack.pool, _evidence(phone, "opted_in", datetime.now(timezone.utc) - timedelta(1)))
    _, answer = await _proxy(stack, token, {"messaging_product": "whatsapp", "to": "+" + phone, "type": "text",
                                            "text": {"body": "Your statement is ready."}})
    mid = answer["messages"][0]["id"]
    await stack.post(status_body(mid, "sent", int(time.time())))
    await stack.wait_for_message(mid)
    for table in ("message_consent", "contact_sightings"):
        assert await stack.pool.fetchval(f"SELECT count(*) FROM {table} WHERE message_id = $1", mid) == 1, table
    judged = await stack.pool.fetchrow("SELECT * FROM message_consent WHERE message_id = $1", mid)
    # Neither the application nor the owner deletes a judgement outside disposal.
    for pool in (stack.pool, stack.owner_pool):
        with pytest.raises(Exception, match="append-only|permission denied"):
            await pool.execute("DELETE FROM message_consent WHERE message_id = $1", mid)
    async with stack.admin_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE messages SET retain_until = now() - interval '1 day' WHERE id = $1", mid)

    assert (await _dispose(stack)).removed == 1
    for table in ("messages", "message_consent", "contact_sightings"):
        column = "id" if table == "messages" else "message_id"
        assert await stack.pool.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = $1", mid) == 0, table
    assert await stack.pool.fetchval("SELECT count(*) FROM consent_entries WHERE id = $1", entry) == 1
    record = await stack.pool.fetchval("SELECT record FROM dispositions WHERE message_id = $1", mid)
    assert record["message_consent"] == [{"id": mid, "digest": ledger.message_consent_digest(judged)}]
    assert await verification.verify_log(stack.pool, None) == []
