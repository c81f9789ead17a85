"""The auditors' contact page over real HTTP on the real stack: identifiers, names over time and the
consent timeline of a phone number, linked to their messages; hostile names, evidence and detail shown
as text (an evidence URL is a live link only when it is http(s)); the message page linking the contact
and showing an outbound message's send-time consent; roles, and every read in the access log."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from markupsafe import escape

from tests.test_outbound import PNID, TEMPLATE_V1, status_body, template_send
from tests.test_ui_security import HOSTILE, assert_inert, assert_strict_csp, fetch, sign_in
from wa_archive.contacts.consent import ConsentEvidence, record_entry
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import WABA_ID, dumps, envelope, message, wamid

PHONE = "447700900123"
FORM_URL = "https://forms.example.com/consent?id=42&lang=en"


async def record(stack, **fields) -> int:
    """One consent entry, recorded as the archive records one (its ledger leaf in the same transaction)."""
    fields.setdefault("recorded_by", "test")
    fields.setdefault("dedupe_key", f"test:{uuid.uuid4().hex}")
    async with stack.pool.acquire() as conn, conn.transaction():
        entry_id, new = await record_entry(conn, ConsentEvidence(phone=PHONE, **fields))
    assert new
    return entry_id


async def inbound(stack, name: str, ts: datetime, body: str = "hello") -> str:
    mid = wamid()
    status, _ = await stack.post(dumps(envelope([message("text", {"body": body}, mid=mid, ts=int(ts.timestamp()))],
                                                contacts=[{"profile": {"name": name}, "wa_id": PHONE}])))
    assert status == 200
    await stack.wait_for_message(mid)
    return mid


async def outbound(stack) -> str:
    """A template sent to PHONE through the record API, archived once Meta's `sent` arrives."""
    stack.graph.set_template(WABA_ID, dict(TEMPLATE_V1))
    header = stack.graph.add(FakeMedia(str(uuid.uuid4().int % 10**15), mime_type="image/png", content=b"\x89PNG"))
    token = await stack.token("sender")
    async with stack.http.post(f"{stack.url}/api/v1/outbound", headers={"Authorization": f"Bearer {token}"}, json={
            "phone_number_id": PNID, "request": template_send({"id": header.media_id}),
            "response": {"messages": [{"id": "wamid.CP" + uuid.uuid4().hex}]}}) as resp:
        assert resp.status < 300, await resp.text()
        mid = (await resp.json())["message_id"]
    await stack.post(status_body(mid, "sent", int(datetime.now(timezone.utc).timestamp())))
    await stack.wait_for_message(mid)
    return mid


async def test_the_contact_page_shows_names_and_consent_over_time_with_hostile_values_inert(stack):
    now = datetime.now(timezone.utc)
    first = await inbound(stack, "Priya Raman", now - timedelta(hours=5))
    renamed = await inbound(stack, f"Mallory {HOSTILE}", now - timedelta(hours=4), body="hello again")
    opted_in = await record(stack, state="opted_in", source="manual", at=now - timedelta(hours=3),
                            evidence=FORM_URL, recorded_role="sender", detail={"collected_via": "web form"})
    scripted = await record(stack, state="opted_out", source="keyword", at=now - timedelta(hours=2),
                            evidence="javascript:alert(3)", evidence_message_id=renamed,
                            detail={"keyword": HOSTILE})
    hostile = await record(stack, state="opted_in", source="manual", at=now - timedelta(hours=1),
                           evidence=f"https://x.example/{HOSTILE}", recorded_by=f"clerk {HOSTILE}")
    sent = await outbound(stack)

    name = f"auditor-{uuid.uuid4().hex[:6]}"
    cookie = await sign_in(stack, await stack.token("auditor", name=name))
    status, headers, body = await fetch(stack, f"/ui/contacts/{PHONE}", cookie)
    html = body.decode()
    assert status == 200, html
    assert_strict_csp(headers, html)
    assert_inert(html)

    # Names over time: both, in the order first seen, each linked to the message that showed it.
    assert html.index("Priya Raman") < html.index(f"Mallory {escape(HOSTILE)}")
    for mid in (first, renamed, sent):
        assert f'href="/ui/messages/{quote(mid, safe="")}"' in html
    assert f"<td>phone</td><td class=\"hash\">{PHONE} <span class=\"tag out\">current</span>" in html

    # The consent timeline: each entry by id, with its source, evidence and recorder.
    for entry_id in (opted_in, scripted, hostile):
        assert f"entry {entry_id}</span>" in html
    assert f'<a href="{escape(FORM_URL)}" rel="noopener noreferrer">{escape(FORM_URL)}</a>' in html
    assert "javascript:alert(3)" in html and 'href="javascript:' not in html  # shown, never a link
    assert f"https://x.example/{escape(HOSTILE)}" in html
    assert 'href="https://x.example/' not in html  # markup in a URL keeps it from becoming a link
    assert f"clerk {escape(HOSTILE)}" in html
    assert "keyword" in html and "collected_via" in html
    assert html.index(f"entry {opted_in}<") < html.index(f"entry {scripted}<") < html.index(f"entry {hostile}<")

    # The outbound message's page links the contact and shows the consent judged when it was sent.
    status, headers, body = await fetch(stack, f"/ui/messages/{quote(sent, safe='')}", cookie)
    page = body.decode()
    assert status == 200
    assert_strict_csp(headers, page)
    assert f'href="/ui/contacts/{PHONE}"' in page
    assert "Consent at send time" in page and "opted_in</span>" in page and f"by entry {hostile}" in page
    status, _, body = await fetch(stack, f"/ui/messages/{quote(first, safe='')}", cookie)
    assert f'href="/ui/contacts/{PHONE}"' in body.decode() and "Consent at send time" not in body.decode()

    # A period restricts names, consent log and messages.
    since = quote((now - timedelta(hours=2, minutes=30)).isoformat())
    status, _, body = await fetch(stack, f"/ui/contacts/{PHONE}?since={since}", cookie)
    html = body.decode()
    assert status == 200 and "Priya Raman" not in html and f"entry {opted_in}<" not in html
    assert f"entry {scripted}<" in html

    for path, code in ((f"/ui/contacts/{quote(HOSTILE, safe='')}", 400), ("/ui/contacts/15550009999", 404),
                       (f"/ui/contacts/{PHONE}?since=yesterday-ish", 400)):
        status, headers, body = await fetch(stack, path, cookie)
        assert status == code, (path, status)
        assert_strict_csp(headers, body.decode())
        assert "<img src=x" not in body.decode()

    logged = [(r["action"], r["target"].get("phone")) for r in await stack.pool.fetch(
        "SELECT action, target FROM access_log WHERE actor = $1 AND action = 'contact' ORDER BY id", name)]
    assert logged == [("contact", PHONE), ("contact", PHONE), ("contact", "15550009999")]


async def test_only_signed_in_auditors_and_admins_read_a_contact(stack):
    await inbound(stack, "Priya Raman", datetime.now(timezone.utc) - timedelta(hours=1))
    async with stack.http.get(f"{stack.url}/ui/contacts/{PHONE}", allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"].startswith("/ui/login?next=")
    refused = [f"{role}-{uuid.uuid4().hex[:6]}" for role in ("sender", "operator")]
    for name in refused:
        cookie = await sign_in(stack, await stack.token(name.split("-")[0], name=name))
        status, _, body = await fetch(stack, f"/ui/contacts/{PHONE}", cookie)
        assert status == 403 and b"may not open this page" in body and b"Priya" not in body
    assert await stack.pool.fetchval("SELECT count(*) FROM access_log WHERE action = 'contact'"
                                     " AND actor = ANY($1::text[])", refused) == 0
    cookie = await sign_in(stack, await stack.token("admin"))
    status, _, body = await fetch(stack, f"/ui/contacts/{PHONE}", cookie)
    assert status == 200 and b"Priya Raman" in body
