"""Red team on contacts and consent: each test is an attack that once worked or was tried, run against
the real stack. A WhatsApp sender controls every byte of what they send; a sender token may record
consent but not read it; an insider has the application's database role."""

from __future__ import annotations

import copy
import time
import uuid
from datetime import datetime, timezone

import asyncpg
import pytest

from tests.test_consent_api import PNID, PROMO, call, new_phone, promo_send, record
from tests.test_consent_feeds import preferences, wait_for_entries
from tests.test_outbound import status_body
from wa_archive.contacts import views
from wa_archive.sources.meta.samples import WABA_ID, dumps, envelope, message, wamid


async def _proxy_send(stack, phone: str) -> str:
    """A marketing template sent through the proxy, not yet reported sent (so not yet archived)."""
    stack.graph.set_template(WABA_ID, copy.deepcopy(PROMO))
    status, answer = await call(stack, "POST", f"/graph/{PNID}/messages", await stack.token("sender"),
                                json=promo_send(phone))
    assert status == 200, answer
    return str(answer["messages"][0]["id"])


async def _report_sent(stack, message_id: str, phone: str, sent_at: int) -> dict:
    body = status_body(message_id, "sent", sent_at).replace(b"447700900123", phone.encode())
    assert (await stack.post(body))[0] == 200
    return await stack.wait_for_message(message_id)


# A sender token rewriting history -------------------------------------------------------------------


async def test_a_backdated_opt_in_recorded_after_a_send_does_not_whitewash_it(stack):
    """The person stopped marketing; the business sends a marketing template anyway, then (before the
    send is judged: the `sent` status is still on its way) records an opt-in dated before the send.
    The send must still be judged opted_out: a hand-recorded opt-in counts only from when it was
    recorded, whatever `at` it claims."""
    phone = new_phone()
    now = int(time.time())
    assert (await stack.post(preferences(phone, "stop", now - 600)))[0] == 200
    [stop] = await wait_for_entries(stack.pool, phone, 1)
    message_id = await _proxy_send(stack, phone)
    status, cover = await record(stack, await stack.token("sender"), phone=phone, state="opted_in",
                                 source="call centre", evidence="customer agreed on the phone",
                                 at=datetime.fromtimestamp(now - 60, timezone.utc).isoformat())
    assert status == 201, cover
    await _report_sent(stack, message_id, phone, now)
    judged = (await views.message_consent(stack.pool, [message_id]))[message_id]
    assert (judged["state"], judged["entry_id"]) == ("opted_out", stop["id"])
    # The opt-in is in the log as it was recorded (and counts for the next send).
    later = await _proxy_send(stack, phone)
    await _report_sent(stack, later, phone, int(time.time()) + 1)
    judged_later = (await views.message_consent(stack.pool, [later]))[later]
    assert (judged_later["state"], judged_later["entry_id"]) == ("opted_in", cover["entry_id"])


async def test_a_backdated_opt_in_cannot_cover_a_send_recorded_after_the_fact(stack):
    """The same through the record API: the sender called Meta itself a minute ago, records a
    backdated opt-in, then posts the exchange. Meta's `sent` time says when it was sent."""
    phone = new_phone()
    now = int(time.time())
    assert (await stack.post(preferences(phone, "stop", now - 600)))[0] == 200
    [stop] = await wait_for_entries(stack.pool, phone, 1)
    sender = await stack.token("sender")
    status, _ = await record(stack, sender, phone=phone, state="opted_in", source="call centre",
                             evidence="customer agreed", at=datetime.fromtimestamp(now - 120, timezone.utc).isoformat())
    assert status == 201
    stack.graph.set_template(WABA_ID, copy.deepcopy(PROMO))
    message_id = "wamid.RT" + uuid.uuid4().hex
    status, answer = await call(stack, "POST", "/api/v1/outbound", sender, json={
        "phone_number_id": PNID, "request": promo_send(phone), "response": {"messages": [{"id": message_id}]}})
    assert status < 300, answer
    await _report_sent(stack, message_id, phone, now - 60)
    judged = (await views.message_consent(stack.pool, [message_id]))[message_id]
    assert (judged["state"], judged["entry_id"]) == ("opted_out", stop["id"])


async def test_recording_consent_does_not_tell_a_sender_who_the_person_is(stack):
    """A sender may record but not read: the answer to POST /api/v1/consent must not carry the
    contact profile's id (two numbers answering with the same id are one person, a low id a number
    the archive has seen before)."""
    phone = new_phone()
    sender = await stack.token("sender")
    body = {"phone": phone, "state": "opted_in", "source": "web form", "evidence": "form 1"}
    status, entry = await record(stack, sender, **body)
    assert status == 201 and "contact_id" not in entry, entry
    headers = {"Idempotency-Key": "k1"}
    assert (await call(stack, "POST", "/api/v1/consent", sender, json=body, headers=headers))[0] == 201
    status, again = await call(stack, "POST", "/api/v1/consent", sender, json=body, headers=headers)
    assert status == 200 and "contact_id" not in again, again
    # An admin, who may read, still sees it.
    status, entry = await record(stack, await stack.token("admin"), **body)
    assert status == 201 and isinstance(entry["contact_id"], int)


# A WhatsApp sender -------------------------------------------------------------------------------


async def test_huge_identifiers_never_fail_the_delivery(stack):
    """Identifiers longer than a btree index entry may hold must not make the message unarchivable."""
    phone = new_phone()
    huge = "GB." + "".join(uuid.uuid4().hex for _ in range(200))  # 6,403 characters, not compressible
    mid = wamid()
    contact = {"profile": {"name": "x" * 5000}, "wa_id": phone, "user_id": huge, "username": "u" + huge}
    status, _ = await stack.post(dumps(envelope([message("text", {"body": "STOP"}, mid=mid, phone=phone,
                                                         ts=int(time.time()))], phone=phone, contacts=[contact])))
    assert status == 200
    stored = await stack.wait_for_message(mid)
    assert stored["id"] == mid
    # Still a profile of the number, and the STOP still an opt-out.
    [entry] = await wait_for_entries(stack.pool, phone, 1)
    assert (entry["state"], entry["evidence_message_id"]) == ("opted_out", mid)
    doc = await views.contact_document(stack.pool, phone)
    assert doc is not None and [m["id"] for m in doc["messages"]] == [mid]


async def test_a_template_send_whose_category_was_never_snapshotted_is_still_a_finding_when_opted_out(stack):
    """The sender sends a marketing template to someone who stopped, then has the template deleted (or
    its snapshot otherwise fails): with no snapshot there is no category, and a send with no category
    was never a finding. A template sent while opted out is a finding unless it is known not to be
    marketing."""
    phone = new_phone()
    now = int(time.time())
    assert (await stack.post(preferences(phone, "stop", now - 600)))[0] == 200
    [stop] = await wait_for_entries(stack.pool, phone, 1)
    gone = {**promo_send(phone), "template": {**promo_send(phone)["template"], "name": f"gone_{uuid.uuid4().hex[:8]}"}}
    status, answer = await call(stack, "POST", f"/graph/{PNID}/messages", await stack.token("sender"), json=gone)
    assert status == 200, answer
    message_id = str(answer["messages"][0]["id"])
    stored = await _report_sent(stack, message_id, phone, now)
    assert "template_not_snapshotted" in stored["flags"]
    judged = (await views.message_consent(stack.pool, [message_id]))[message_id]
    assert (judged["state"], judged["entry_id"], judged["template_category"]) == ("opted_out", stop["id"], None)
    found = [f for f in await views.findings(stack.pool, consent_required=False) if f["message_id"] == message_id]
    assert [(f["state"], f["template_category"], f["entry_id"]) for f in found] == [("opted_out", None, stop["id"])]
    assert "category" in found[0]["reason"]


# An insider with the application's database role ----------------------------------------------------


async def test_the_application_role_can_neither_rewrite_nor_delete_consent(stack):
    """Not even with the disposal function's own setting: the role has no DELETE or UPDATE at all."""
    phone = new_phone()
    now = int(time.time())
    assert (await stack.post(preferences(phone, "stop", now - 600)))[0] == 200
    [stop] = await wait_for_entries(stack.pool, phone, 1)
    message_id = await _proxy_send(stack, phone)
    await _report_sent(stack, message_id, phone, now)
    attempts = [
        "UPDATE consent_entries SET state = 'opted_in' WHERE id = {entry}",
        "DELETE FROM consent_entries WHERE id = {entry}",
        "DELETE FROM message_consent WHERE message_id = '{mid}'",
        "UPDATE message_consent SET state = 'opted_in' WHERE message_id = '{mid}'",
        "DELETE FROM contact_sightings WHERE message_id = '{mid}'",
        "DELETE FROM contact_links WHERE value = '{phone}'",
        "UPDATE contact_links SET contact_id = contact_id WHERE value = '{phone}'",
    ]
    for sql in attempts:
        async with stack.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await conn.execute("SELECT set_config('wa_archive.disposing', $1, true)", message_id)
                    await conn.execute(sql.format(entry=stop["id"], mid=message_id, phone=phone))
            except asyncpg.InsufficientPrivilegeError:
                continue
            raise AssertionError(f"the application role may run: {sql}")
    judged = (await views.message_consent(stack.pool, [message_id]))[message_id]
    assert (judged["state"], judged["entry_id"]) == ("opted_out", stop["id"])


async def test_a_judgement_or_sighting_cannot_be_written_before_its_message(stack):
    """The send's wamid is known as soon as Meta answers, before the `sent` status archives it. An
    insider who writes its judgement first (opted_in, with a leaf of its own) would have the real
    judgement skipped as already made (ON CONFLICT DO NOTHING); a sighting written first would
    put the message on someone else's profile. Both must need the message to exist."""
    phone, other = new_phone(), new_phone()
    now = int(time.time())
    assert (await stack.post(preferences(phone, "stop", now - 600)))[0] == 200
    await wait_for_entries(stack.pool, phone, 1)
    status, cover = await record(stack, await stack.token("admin"), phone=other, state="opted_in",
                                 source="web form", evidence="form 2")
    assert status == 201
    message_id = await _proxy_send(stack, phone)
    for sql, args in (
        ("INSERT INTO message_consent (message_id, contact_id, state, entry_id, at)"
         " VALUES ($1, $2, 'opted_in', $3, now())", (message_id, cover["contact_id"], cover["entry_id"])),
        ("INSERT INTO contact_sightings (message_id, contact_id, seen_at, direction, source)"
         " VALUES ($1, $2, now(), 'out', 'meta')", (message_id, cover["contact_id"])),
    ):
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await stack.pool.execute(sql, *args)
    await _report_sent(stack, message_id, phone, now)
    judged = (await views.message_consent(stack.pool, [message_id]))[message_id]
    assert judged["state"] == "opted_out"


async def test_a_callers_idempotency_key_never_meets_a_feeds_dedupe_key(stack):
    """A sender who knows (or guesses) a message id and reuses the feeds' own key shapes must not
    make the real STOP that message carries a duplicate of its record (recording nothing)."""
    phone = new_phone()
    mid = wamid()
    sender = await stack.token("sender")
    body = {"phone": phone, "state": "opted_in", "source": "web form", "evidence": "form 3"}
    for key in (f"kw:{mid}", f"msg:{mid}", f"fail:{mid}:131050", f"manual:{mid}"):
        status, _ = await call(stack, "POST", "/api/v1/consent", sender, json=body, headers={"Idempotency-Key": key})
        assert status == 201
    status, _ = await stack.post(dumps(envelope([message("text", {"body": "STOP"}, mid=mid, phone=phone)],
                                                phone=phone)))
    assert status == 200
    found = await wait_for_entries(stack.pool, phone, 5)
    stop = [e for e in found if e["source"] == "keyword"]
    assert [(e["state"], e["evidence_message_id"], e["dedupe_key"]) for e in stop] == [
        ("opted_out", mid, f"kw:{mid}")]
    assert all(e["dedupe_key"].startswith("manual:") for e in found if e["source"] == "manual")


# A number that changed hands -------------------------------------------------------------------------


async def test_a_period_before_a_number_changed_hands_shows_who_held_it_then(stack):
    """An export (or the contact API) for a period when the old holder had the number must carry the
    old holder's names and consent log, not the new holder's (who had neither in that period)."""
    phone = new_phone()
    t1, t3 = 1780000000, 1780090000
    for ts, user_id, text in ((t1, "GB.old" + phone, "STOP"), (t3, "GB.new" + phone, "hello")):
        mid = wamid()
        contact = {"profile": {"name": "Alex Old" if ts == t1 else "Sam New"}, "wa_id": phone, "user_id": user_id}
        status, _ = await stack.post(dumps(envelope([message("text", {"body": text}, mid=mid, phone=phone, ts=ts)],
                                                    phone=phone, contacts=[contact])))
        assert status == 200
        await stack.wait_for_message(mid)
    [stop] = await wait_for_entries(stack.pool, phone, 1)
    until = datetime.fromtimestamp(t1 + 3600, timezone.utc)
    then = await views.contact_document(stack.pool, phone, until=until)
    assert then is not None and then["contact_id"] == stop["contact_id"]
    assert [n["name"] for n in then["names"]] == ["Alex Old"]
    assert [e["entry_id"] for e in then["consent_log"]] == [stop["id"]]
    now = await views.contact_document(stack.pool, phone)
    assert now is not None and now["contact_id"] != stop["contact_id"]
    assert [n["name"] for n in now["names"]] == ["Sam New"]
