"""The consent API over real HTTP against the real stack: recording consent collected elsewhere, the
send-time consent it gives a marketing template, the contact document, the report and the search
filter, who may do which, and what bad input gets."""

from __future__ import annotations

import copy
import random
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.test_outbound import status_body
from wa_archive.sources.meta.samples import WABA_ID, dumps, envelope, message, wamid

PNID = "109327745812336"

# A marketing template: its category (from the snapshot) is what makes a send without consent a finding.
PROMO = {
    "id": "7101", "name": "spring_offer", "language": "en_GB", "status": "APPROVED",
    "category": "MARKETING", "parameter_format": "POSITIONAL",
    "components": [{"type": "BODY", "text": "Hello {{1}}, 20% off our savings accounts this spring."}],
}


def new_phone() -> str:
    """A number no other test uses (the contacts tables outlive a test's messages)."""
    return f"44770{random.randrange(10**7):07d}"


def promo_send(phone: str) -> dict:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": f"+{phone}", "type": "template",
            "template": {"name": "spring_offer", "language": {"code": "en_GB"},
                         "components": [{"type": "body", "parameters": [{"type": "text", "text": "Priya"}]}]}}


def iso(when: datetime) -> str:
    return when.isoformat()


async def call(stack, method: str, path: str, token: str | None, *, json=None, data: bytes | None = None,
               params: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    hdrs = {"Authorization": f"Bearer {token}"} if token else {}
    hdrs.update(headers or {})
    async with stack.http.request(method, f"{stack.url}{path}", json=json, data=data, params=params,
                                  headers=hdrs) as resp:
        return resp.status, await resp.json(content_type=None)


async def record(stack, token: str, **body) -> tuple[int, dict]:
    return await call(stack, "POST", "/api/v1/consent", token, json=body)


async def send_promo(stack, phone: str, sent_at: int) -> dict:
    """A marketing template sent through the proxy and reported `sent` at `sent_at`: the archived message."""
    stack.graph.set_template(WABA_ID, copy.deepcopy(PROMO))
    status, answer = await call(stack, "POST", f"/graph/{PNID}/messages", await stack.token("sender"),
                                json=promo_send(phone))
    assert status == 200, answer
    message_id = answer["messages"][0]["id"]
    body = status_body(message_id, "sent", sent_at).replace(b"447700900123", phone.encode())
    assert (await stack.post(body))[0] == 200
    return await stack.wait_for_message(message_id)


async def test_an_opt_in_recorded_through_the_api_makes_the_next_send_opted_in(stack):
    phone = new_phone()
    now = datetime.now(timezone.utc)
    sender_name = f"crm-{uuid.uuid4().hex[:6]}"
    sender = await stack.token("sender", name=sender_name)
    status, entry = await record(stack, sender, phone=f"+{phone[:2]} {phone[2:]}", state="opted_in",
                                 source="web form on example-bank.test/offers",
                                 evidence="https://forms.example-bank.test/consent/8812",
                                 at=iso(now - timedelta(hours=1)))
    assert status == 201, entry
    assert entry["phone"] == phone and entry["state"] == "opted_in" and entry["source"] == "manual"
    assert entry["recorded_by"] == sender_name and entry["recorded_role"] == "sender"
    assert entry["detail"] == {"collected_via": "web form on example-bank.test/offers"}
    assert entry["evidence"] == "https://forms.example-bank.test/consent/8812"
    assert entry["category"] == "marketing_messages" and entry["business_phone_number_id"] is None
    assert datetime.fromisoformat(entry["at"]) == now - timedelta(hours=1)
    # A sender records but does not read: the profile the number resolved to is not in its answer.
    assert isinstance(entry["entry_id"], int) and "contact_id" not in entry

    message = await send_promo(stack, phone, int(now.timestamp()))
    assert message["consent"]["state"] == "opted_in"
    assert message["consent"]["entry_id"] == entry["entry_id"]

    auditor = await stack.token("auditor")
    status, shown = await call(stack, "GET", f"/api/v1/messages/{message['id']}", auditor)
    assert status == 200 and shown["consent"]["entry_id"] == entry["entry_id"]
    for state, expected in (("opted_in", [message["id"]]), ("opted_out", []), ("unknown", [])):
        status, page = await call(stack, "GET", "/api/v1/messages", auditor, params={"consent": state, "phone": phone})
        assert status == 200 and [m["id"] for m in page["items"]] == expected, state

    status, contact = await call(stack, "GET", f"/api/v1/contacts/+{phone}", auditor)
    assert status == 200, contact
    assert contact["contact_id"] == await stack.pool.fetchval(
        "SELECT contact_id FROM consent_entries WHERE id = $1", entry["entry_id"])
    assert contact["consent"]["state"] == "opted_in" and contact["consent"]["entry_id"] == entry["entry_id"]
    assert [e["entry_id"] for e in contact["consent_log"]] == [entry["entry_id"]]
    assert message["id"] in [m["id"] for m in contact["messages"]]
    logged = await stack.pool.fetch("SELECT actor, target FROM access_log WHERE action = 'contact'")
    assert any(r["target"]["phone"] == phone for r in logged)


async def test_an_opt_out_then_a_marketing_send_is_a_finding_in_the_report(stack):
    phone = new_phone()
    now = datetime.now(timezone.utc)
    status, entry = await record(stack, await stack.token("admin"), phone=phone, state="opted_out",
                                 source="call to the branch", evidence="Call 2026-031: customer asked to stop offers",
                                 at=iso(now - timedelta(minutes=30)))
    assert status == 201 and entry["recorded_role"] == "admin"
    message = await send_promo(stack, phone, int(now.timestamp()))
    assert message["consent"]["state"] == "opted_out" and message["consent"]["entry_id"] == entry["entry_id"]

    auditor = await stack.token("auditor")
    status, report = await call(stack, "GET", "/api/v1/consent/report", auditor,
                                params={"since": iso(now - timedelta(minutes=1))})
    assert status == 200 and report["consent_required"] is False
    [finding] = [f for f in report["findings"] if f["message_id"] == message["id"]]
    assert finding["state"] == "opted_out" and finding["entry_id"] == entry["entry_id"]
    assert finding["template_name"] == "spring_offer" and finding["template_category"].upper() == "MARKETING"
    status, later = await call(stack, "GET", "/api/v1/consent/report", auditor,
                               params={"since": iso(now + timedelta(minutes=1))})
    assert status == 200 and later["findings"] == []
    status, page = await call(stack, "GET", "/api/v1/messages", auditor, params={"consent": "opted_out"})
    assert status == 200 and message["id"] in [m["id"] for m in page["items"]]
    status, bad = await call(stack, "GET", "/api/v1/consent/report", auditor, params={"since": "last week"})
    assert status == 400 and bad["filter"] == "since"


async def test_unknown_consent_is_a_finding_only_where_consent_is_required(stack_factory):
    stack = await stack_factory(consent_required=True)
    phone = new_phone()
    now = datetime.now(timezone.utc)
    message = await send_promo(stack, phone, int(now.timestamp()))
    assert message["consent"] == {**message["consent"], "state": "unknown", "entry_id": None}
    auditor = await stack.token("auditor")
    status, report = await call(stack, "GET", "/api/v1/consent/report", auditor,
                                params={"since": iso(now - timedelta(minutes=1))})
    assert status == 200 and report["consent_required"] is True
    assert [f["state"] for f in report["findings"] if f["message_id"] == message["id"]] == ["unknown"]
    status, page = await call(stack, "GET", "/api/v1/messages", auditor, params={"consent": "unknown", "phone": phone})
    assert [m["id"] for m in page["items"]] == [message["id"]]


async def test_who_may_record_and_who_may_read(stack):
    phone = new_phone()
    body = {"phone": phone, "state": "opted_in", "source": "paper contract", "evidence": "contract 77/2026"}
    for role in ("auditor", "operator"):
        status, answer = await record(stack, await stack.token(role), **body)
        assert status == 403 and "sender" in answer["error"], role
    assert (await record(stack, "wa_bogus", **body))[0] == 401
    assert await stack.pool.fetchval("SELECT count(*) FROM consent_entries WHERE phone = $1", phone) == 0
    assert (await record(stack, await stack.token("sender"), **body))[0] == 201

    reads = [("/api/v1/contacts/" + phone, None), ("/api/v1/consent/report", None),
             ("/api/v1/messages", {"consent": "opted_in"})]
    for role in ("sender", "operator"):
        token = await stack.token(role)
        for path, params in reads:
            status, answer = await call(stack, "GET", path, token, params=params)
            assert status == 403 and "auditor" in answer["error"], (role, path)
    for role in ("auditor", "admin"):
        token = await stack.token(role)
        for path, params in reads:
            assert (await call(stack, "GET", path, token, params=params))[0] == 200, (role, path)


@pytest.mark.parametrize("change,field", [
    ({"phone": "bob"}, "phone"), ({"phone": "12"}, "phone"), ({"phone": 447700900123}, "phone"),
    ({"state": "maybe"}, "state"), ({"state": None}, "state"),
    ({"evidence": None}, "evidence"), ({"evidence": "   "}, "evidence"), ({"evidence": "x" * 4097}, "evidence"),
    ({"source": ""}, "source"), ({"source": "y" * 201}, "source"),
    ({"at": "yesterday"}, "at"), ({"at": "2999-01-01T00:00:00Z"}, "at"),
    ({"business_phone_number_id": "abc"}, "business_phone_number_id"),
    ({"category": "Marketing Messages!"}, "category"), ({"colour": "red"}, "colour"),
])
async def test_bad_records_are_400_naming_the_field(stack, change, field):
    phone = new_phone()
    body = {"phone": phone, "state": "opted_in", "source": "web form", "evidence": "form 1", **change}
    status, answer = await record(stack, await stack.token("sender"), **body)
    assert status == 400 and answer["field"] == field and field in answer["error"], answer
    assert await stack.pool.fetchval("SELECT count(*) FROM consent_entries WHERE phone = $1", phone) == 0


async def test_bodies_that_are_not_a_record_are_400(stack):
    sender = await stack.token("sender")
    for data in (b"not json", b"[1, 2]", b'{"phone": "\\u0000"}'):
        status, answer = await call(stack, "POST", "/api/v1/consent", sender, data=data,
                                    headers={"Content-Type": "application/json"})
        assert status == 400 and answer["error"], data


async def test_an_idempotency_key_makes_a_retry_one_entry(stack):
    phone = new_phone()
    name = f"crm-{uuid.uuid4().hex[:6]}"
    sender = await stack.token("sender", name=name)
    body = {"phone": phone, "state": "opted_in", "source": "web form", "evidence": "form 991"}
    key = {"Idempotency-Key": "form-991"}
    status, first = await call(stack, "POST", "/api/v1/consent", sender, json=body, headers=key)
    assert status == 201
    status, again = await call(stack, "POST", "/api/v1/consent", sender, json=body, headers=key)
    assert status == 200 and again == first
    status, clash = await call(stack, "POST", "/api/v1/consent", sender, json={**body, "state": "opted_out"},
                               headers=key)
    assert status == 409 and clash["entry_id"] == first["entry_id"]
    # Keys are the caller's own: another token's same key is another record.
    status, other = await call(stack, "POST", "/api/v1/consent", await stack.token("sender"), json=body, headers=key)
    assert status == 201 and other["entry_id"] != first["entry_id"]
    status, bad = await call(stack, "POST", "/api/v1/consent", sender, json=body,
                             headers={"Idempotency-Key": "k" * 201})
    assert status == 400 and bad["field"] == "Idempotency-Key"
    assert await stack.pool.fetchval("SELECT count(*) FROM consent_entries WHERE phone = $1", phone) == 2
    # Without a key every request is a new entry.
    assert (await record(stack, sender, **body))[0] == 201
    assert await stack.pool.fetchval("SELECT count(*) FROM consent_entries WHERE phone = $1", phone) == 3


async def test_contacts_unknown_and_bad_phones(stack):
    auditor = await stack.token("auditor")
    status, answer = await call(stack, "GET", f"/api/v1/contacts/{new_phone()}", auditor)
    assert status == 404 and "no contact" in answer["error"]
    status, answer = await call(stack, "GET", "/api/v1/contacts/alice", auditor)
    assert status == 400 and answer["filter"] == "phone"
    status, answer = await call(stack, "GET", f"/api/v1/contacts/{new_phone()}", auditor, params={"colour": "red"})
    assert status == 400 and answer["filter"] == "colour"


async def test_the_consent_filter_pages_with_its_cursor_and_refuses_bad_values(stack):
    phone = new_phone()
    now = datetime.now(timezone.utc)
    assert (await record(stack, await stack.token("sender"), phone=phone, state="opted_in", source="call",
                         evidence="call 1", at=iso(now - timedelta(hours=1))))[0] == 201
    sent = [await send_promo(stack, phone, int(now.timestamp()) + i) for i in range(3)]
    auditor = await stack.token("auditor")
    seen, cursor = [], None
    while True:
        params = {"consent": "opted_in", "phone": phone, "limit": "1", **({"cursor": cursor} if cursor else {})}
        status, page = await call(stack, "GET", "/api/v1/messages", auditor, params=params)
        assert status == 200
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [m["id"] for m in reversed(sent)]
    status, bad = await call(stack, "GET", "/api/v1/messages", auditor, params={"consent": "yes"})
    assert status == 400 and bad["filter"] == "consent"
    # Inbound messages have no consent state: no value of the filter returns them.
    inbound = wamid()
    await stack.post(dumps(envelope([message("text", {"body": "thanks"}, mid=inbound, phone=phone,
                                             ts=int(now.timestamp()))])))
    await stack.wait_for_message(inbound)
    for state in ("opted_in", "opted_out", "unknown"):
        status, page = await call(stack, "GET", "/api/v1/messages", auditor, params={"consent": state, "phone": phone})
        assert status == 200 and inbound not in [m["id"] for m in page["items"]], state
    status, page = await call(stack, "GET", "/api/v1/messages", auditor, params={"phone": phone})
    assert inbound in [m["id"] for m in page["items"]]
