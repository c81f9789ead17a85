"""A signed delivery holding text PostgreSQL cannot store (NUL, lone surrogates) is still archived.

Refusing it would let any WhatsApp user keep a message out of the archive: Meta retries a refused
delivery and then gives up. The exact bytes are kept in `deliveries`; the indexed values carry U+FFFD
in place of each unstorable character, and the message is flagged `text_substituted`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
import uuid
from urllib.parse import quote

import pytest

from tests.conftest import LEDGER_KEY
from wa_archive import json_input
from wa_archive.errors import JsonRefused
from wa_archive.integrity import ledger
from wa_archive.json_input import MAX_DEPTH, load_json
from wa_archive.sources.meta.samples import envelope, message, wamid
from wa_archive.sources.signature import meta_signature

WASENDER_SECRET = "unstorable-wasender-secret"
HOSTILE = "before\u0000after\ud800end"
SUBSTITUTED = "before\ufffdafter\ufffdend"
FLAG = "text_substituted"
PUBLIC_KEY = base64.b64encode(ledger.Signer(base64.b64decode(LEDGER_KEY)).public_key()).decode()


def _bytes(doc: dict) -> bytes:
    body = json.dumps(doc).encode()  # json.dumps writes NUL and lone surrogates as \u escapes, as Meta does
    assert b"\\u0000" in body or b"\\ud800" in body
    return body


async def _post_meta(stack, body: bytes, *, signed: bool = True) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if signed:
        headers["X-Hub-Signature-256"] = meta_signature(stack.settings.meta_app_secret.get_secret_value(), body)
    async with stack.http.post(f"{stack.url}/webhooks/meta", data=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def _post_wasender(stack, body: bytes, secret: str | None = WASENDER_SECRET) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"} | ({"X-Webhook-Signature": secret} if secret else {})
    async with stack.http.post(f"{stack.url}/webhooks/wasender", data=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def _api_message(stack, message_id: str) -> dict:
    token = await stack.token("auditor")
    async with stack.http.get(f"{stack.url}/api/v1/messages/{quote(message_id, safe='')}",
                              headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _delivery_body(stack, sha256: str) -> bytes:
    return await stack.pool.fetchval("SELECT body FROM deliveries WHERE sha256 = $1", sha256)


async def _cli(stack, database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
    env.update(WA_ARCHIVE_DATABASE_URL=database_url, WA_ARCHIVE_STORAGE_URL=stack.store.url,
               WA_ARCHIVE_LEDGER_SIGNING_KEY=LEDGER_KEY)
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "wa_archive.cli", *args], env=env,
                                   capture_output=True, text=True, timeout=120)


async def _verifies(stack, database_url: str) -> None:
    checkpoint = await _cli(stack, database_url, "ledger", "checkpoint")
    assert checkpoint.returncode == 0, checkpoint.stdout + checkpoint.stderr
    verified = await _cli(stack, database_url, "verify", "--full", "--public-key", PUBLIC_KEY)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "OK" in verified.stdout


# The substitution itself -------------------------------------------------------------------------

def test_nul_and_lone_surrogates_become_the_replacement_character_and_are_marked():
    doc = load_json(json.dumps({"text": HOSTILE, "list": ["ok", "a\u0000"], "k\u0000ey": "v",
                                "low\udc00": 1, "pair": "\U0001F600", "n": 3}).encode(), substitute=True)
    assert doc == {"text": SUBSTITUTED, "list": ["ok", "a\ufffd"], "k\ufffdey": "v", "low\ufffd": 1,
                   "pair": "\U0001F600", "n": 3}
    assert json_input.substituted(doc) and json_input.substituted(doc["text"]) and json_input.substituted(doc["list"])
    assert not json_input.substituted(doc["pair"]) and not json_input.substituted(doc["list"][0])
    assert json_input.substituted({"k\ufffdey": "v"}) is False  # the same text, not made by the substitution
    assert json_input.substituted([k for k in doc if k.startswith("k")])  # a substituted key is marked too


def test_a_replacement_character_that_arrived_as_such_is_not_marked():
    doc = load_json(json.dumps({"text": "already \ufffd here"}).encode(), substitute=True)
    assert doc == {"text": "already \ufffd here"} and not json_input.substituted(doc)


def test_a_substituted_key_that_collides_with_a_sent_one_stays_marked():
    body = b'{"a\\ufffd": "sent as such", "a\\u0000": "substituted"}'
    doc = load_json(body, substitute=True)
    assert doc == {"a\ufffd": "substituted"} and json_input.substituted(doc)


def test_the_nesting_limit_still_refuses_and_refusal_is_still_available():
    fine = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert load_json(fine.encode(), substitute=True) is not None
    with pytest.raises(JsonRefused, match="nested"):
        load_json(("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)).encode(), substitute=True)
    with pytest.raises(JsonRefused, match="NUL"):
        load_json(json.dumps({"t": HOSTILE}).encode(), storable=True)
    with pytest.raises(JsonRefused, match="not valid JSON"):
        load_json(b'{"t": "\xff"}', substitute=True)
    assert load_json(json.dumps(HOSTILE).encode()) == HOSTILE  # no option: the document as parsed


# Meta --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("inline_fanout_max", [20, 0], ids=["inline", "via-IngestDelivery"])
async def test_a_signed_meta_text_with_nul_and_a_lone_surrogate_is_archived_and_flagged(
        stack_factory, database_url, inline_fanout_max):
    stack = await stack_factory(inline_fanout_max=inline_fanout_max)
    hostile, plain = wamid(), wamid()
    body = _bytes(envelope([message("text", {"body": HOSTILE}, mid=hostile),
                            message("text", {"body": "nothing unusual \ufffd"}, mid=plain)]))
    status, answer = await _post_meta(stack, body)
    assert status == 200 and answer["status"] == "accepted", answer

    archived = await stack.wait_for_message(hostile)
    assert archived["text"] == SUBSTITUTED and FLAG in archived["flags"]
    shown = await _api_message(stack, hostile)
    assert shown["text"] == SUBSTITUTED and FLAG in shown["flags"] and shown["archive_status"] == "archived"
    other = await stack.wait_for_message(plain)  # same delivery, nothing substituted in it: not flagged
    assert other["text"] == "nothing unusual \ufffd" and FLAG not in other["flags"]

    kept = await _delivery_body(stack, answer["delivery"])
    assert kept == body and hashlib.sha256(kept).hexdigest() == hashlib.sha256(body).hexdigest() == answer["delivery"]
    assert json.loads(kept)["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] == HOSTILE

    # A redelivery of the same bytes converges on the same record.
    assert (await _post_meta(stack, body))[0] == 200
    assert await stack.pool.fetchval("SELECT count(*) FROM messages WHERE id = $1", hostile) == 1
    await _verifies(stack, database_url)


async def test_a_contact_name_with_nul_flags_only_that_contacts_message(stack_factory):
    stack = await stack_factory()
    hostile, plain = wamid(), wamid()
    body = _bytes(envelope(
        [message("text", {"body": "hello"}, mid=hostile, phone="447700900123"),
         message("text", {"body": "hello"}, mid=plain, phone="447700900456")],
        contacts=[{"profile": {"name": "Mallory\u0000"}, "wa_id": "447700900123"},
                  {"profile": {"name": "Priya"}, "wa_id": "447700900456"}]))
    status, answer = await _post_meta(stack, body)
    assert status == 200, answer
    archived = await stack.wait_for_message(hostile)
    assert archived["contact"]["name"] == "Mallory\ufffd" and archived["text"] == "hello"
    assert FLAG in archived["flags"]
    other = await stack.wait_for_message(plain)
    assert other["contact"]["name"] == "Priya" and FLAG not in other["flags"]
    assert await _delivery_body(stack, answer["delivery"]) == body


async def test_statuses_and_unknown_fields_with_nul_are_stored_not_refused(stack_factory):
    stack = await stack_factory()
    body = _bytes(envelope(
        statuses=[{"id": "wamid.out\u0000", "status": "read\u0000", "timestamp": "1792493902",
                   "recipient_id": "447700900123", "pricing": {"category": "\ud800"}}],
        extra_changes=[{"field": "account_update\u0000", "value": {"note": "\u0000"}}]))
    status, answer = await _post_meta(stack, body)
    assert status == 200, answer
    rows = await stack.pool.fetch("SELECT status, payload FROM status_events WHERE delivery_sha256 = $1",
                                  answer["delivery"])
    assert [(r["status"], r["payload"]["pricing"]["category"]) for r in rows] == [("read\ufffd", "\ufffd")]
    assert await stack.pool.fetchval("SELECT count(*) FROM webhook_events WHERE delivery_sha256 = $1",
                                     answer["delivery"]) == 1


async def test_unsigned_bodies_with_nul_are_still_401_and_deep_signed_ones_still_400(stack_factory):
    stack = await stack_factory(wasender_webhook_secret=WASENDER_SECRET)
    body = _bytes(envelope([message("text", {"body": HOSTILE})]))
    assert (await _post_meta(stack, body, signed=False))[0] == 401
    assert (await _post_wasender(stack, body, secret=None))[0] == 401
    assert (await _post_wasender(stack, body, secret="wrong"))[0] == 401
    deep = ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)).encode()
    status, answer = await _post_meta(stack, deep)
    assert status == 400 and "nested" in answer["error"]
    assert await stack.pool.fetchval("SELECT count(*) FROM deliveries") == 0


# WASender ----------------------------------------------------------------------------------------

async def test_a_wasender_message_body_with_nul_and_a_lone_surrogate_is_archived_and_flagged(
        stack_factory, database_url):
    stack = await stack_factory(wasender_webhook_secret=WASENDER_SECRET)
    mid = "3EB0" + uuid.uuid4().hex[:16].upper()
    item = {"key": {"id": mid, "fromMe": False, "remoteJid": "447700900123@s.whatsapp.net",
                    "cleanedSenderPn": "447700900123"},
            "pushName": "Eve\u0000", "messageBody": HOSTILE, "message": {"conversation": HOSTILE},
            "messageTimestamp": 1792496119}
    body = _bytes({"event": "messages.upsert", "timestamp": 1792496120, "data": {"messages": [item]}})
    status, answer = await _post_wasender(stack, body)
    assert status == 200 and answer["status"] == "accepted", answer
    archived = await stack.wait_for_message(mid)
    assert archived["source"] == "wasender" and archived["text"] == SUBSTITUTED
    assert archived["contact"]["name"] == "Eve\ufffd" and FLAG in archived["flags"]
    shown = await _api_message(stack, mid)
    assert shown["text"] == SUBSTITUTED and FLAG in shown["flags"]
    kept = await _delivery_body(stack, answer["delivery"])
    assert kept == body and hashlib.sha256(kept).hexdigest() == answer["delivery"]
    await _verifies(stack, database_url)


async def test_a_signed_wasender_message_with_a_text_that_is_not_a_string_is_kept_not_a_500(stack_factory):
    stack = await stack_factory(wasender_webhook_secret=WASENDER_SECRET)
    item = {"key": {"id": "3EB0" + uuid.uuid4().hex[:16].upper(), "fromMe": False,
                    "remoteJid": "447700900123@s.whatsapp.net"}, "message": {"conversation": True}}
    body = json.dumps({"event": "messages.upsert", "timestamp": 1792496120, "data": {"messages": [item]}}).encode()
    status, answer = await _post_wasender(stack, body)
    assert status == 200 and answer["flagged"] == 1, answer
    kinds = await stack.pool.fetch("SELECT kind FROM webhook_events WHERE delivery_sha256 = $1", answer["delivery"])
    assert [r["kind"] for r in kinds] == ["unparseable"]
    assert await _delivery_body(stack, answer["delivery"]) == body
