"""Consent evidence arriving by webhook: Meta's user_preferences changes, the user_preference_changed
system message, failed sends that mean "stopped marketing", and STOP/START texts (Meta, WASender, the
history sync), each recorded once from the stored signed delivery, through the real webhook, Temporal
and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid

import pytest

from tests.test_wasender import SECRET, post, upsert
from wa_archive.config import load_settings
from wa_archive.errors import ConfigError
from wa_archive.integrity import sequencing
from wa_archive.sources.meta.samples import (
    BUSINESS,
    WABA_ID,
    dumps,
    echo,
    echo_envelope,
    envelope,
    history_chunk,
    history_envelope,
    history_message,
    message,
    wamid,
)


def fresh_phone() -> str:
    return "4477009" + str(uuid.uuid4().int)[:5]


def preferences(phone: str, value: str, ts: int, *, detail: str | None = None) -> bytes:
    item = {"wa_id": phone, "category": "marketing_messages", "value": value, "timestamp": ts,
            "detail": detail or f"User requested to {value} marketing messages"}
    change = {"field": "user_preferences", "value": {
        "messaging_product": "whatsapp", "metadata": BUSINESS,
        "contacts": [{"profile": {"name": "Priya Raman"}, "wa_id": phone}], "user_preferences": [item]}}
    return dumps({"object": "whatsapp_business_account", "entry": [{"id": WABA_ID, "changes": [change]}]})


async def entries(pool, phone: str) -> list[dict]:
    rows = await pool.fetch("SELECT * FROM consent_entries WHERE phone = $1 ORDER BY at, id", phone)
    return [dict(r) for r in rows]


async def wait_for_entries(pool, phone: str, count: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await entries(pool, phone)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{count} consent entries for {phone} never came (have {await entries(pool, phone)})")


async def leaf_of(pool, entry_id: int):
    await sequencing.integrate(pool)  # what the integrator's Schedule does within a second
    return await pool.fetchrow("SELECT * FROM ledger_leaves WHERE kind = 'consent' AND record_id = $1",
                               str(entry_id))


async def test_a_user_preferences_stop_then_resume_each_make_one_entry_and_a_redelivery_none(stack):
    phone = fresh_phone()
    stop = preferences(phone, "stop", 1767225600)
    status, answer = await stack.post(stop)
    assert status == 200, answer
    [entry] = await entries(stack.pool, phone)  # recorded before the acknowledgement
    assert (entry["state"], entry["source"], entry["recorded_by"]) == ("opted_out", "user_preferences", "meta-webhook")
    assert entry["business_phone_number_id"] == BUSINESS["phone_number_id"]
    assert entry["evidence"] == "User requested to stop marketing messages"
    assert entry["evidence_delivery_sha256"] == hashlib.sha256(stop).hexdigest() == answer["delivery"]
    assert entry["at"].timestamp() == 1767225600 and entry["category"] == "marketing_messages"
    assert entry["dedupe_key"] == f"up:{BUSINESS['phone_number_id']}:{phone}:1767225600:stop"
    assert await leaf_of(stack.pool, entry["id"]) is not None
    # The change is kept raw under its own kind, no longer as an unhandled field.
    kinds = await stack.pool.fetch("SELECT field, kind FROM webhook_events WHERE delivery_sha256 = $1",
                                   answer["delivery"])
    assert [tuple(k) for k in kinds] == [("user_preferences", "user_preferences")]

    resume = preferences(phone, "resume", 1767312000)
    assert (await stack.post(resume))[0] == 200
    assert [(e["state"], e["source"]) for e in await entries(stack.pool, phone)] == [
        ("opted_out", "user_preferences"), ("opted_in", "user_preferences")]

    # Meta retries the stop (the same bytes), and sends it again in another envelope: nothing new.
    assert (await stack.post(stop))[0] == 200
    assert (await stack.post(stop.replace(b'"entry"', b'"entry"   ')))[0] == 200
    as_text = stop.replace(b'"timestamp": 1767225600', b'"timestamp": "1767225600"')
    assert as_text != stop and (await stack.post(as_text))[0] == 200
    assert len(await entries(stack.pool, phone)) == 2
    await sequencing.integrate(stack.pool)  # what the integrator's Schedule does within a second
    assert await stack.pool.fetchval("SELECT count(*) FROM ledger_leaves WHERE kind = 'consent'") == 2


async def test_unknown_preferences_are_kept_raw_and_record_nothing(stack):
    phone = fresh_phone()
    body = json.loads(preferences(phone, "maybe", 1767225600))
    items = body["entry"][0]["changes"][0]["value"]["user_preferences"]
    items.append({"wa_id": phone, "category": "service_messages", "value": "stop", "timestamp": 1767225600})
    items.append("garbage")
    status, answer = await stack.post(dumps(body))
    assert status == 200
    assert await entries(stack.pool, phone) == []
    assert await stack.pool.fetchval("SELECT kind FROM webhook_events WHERE delivery_sha256 = $1",
                                     answer["delivery"]) == "user_preferences"


async def test_a_user_preference_changed_system_message_is_an_entry_with_the_message_as_evidence(stack):
    phone = fresh_phone()
    mid = wamid()
    body = dumps(envelope([message("system", {"type": "user_preference_changed", "value": "stop",
                                              "body": "User requested to stop marketing messages"},
                                   mid=mid, phone=phone, ts=1767225600)], phone=phone))
    status, answer = await stack.post(body)
    assert status == 200
    [entry] = await entries(stack.pool, phone)
    assert (entry["state"], entry["source"], entry["evidence_message_id"]) == ("opted_out", "system_message", mid)
    assert entry["dedupe_key"] == f"msg:{mid}" and entry["evidence_delivery_sha256"] == answer["delivery"]
    stored = await stack.wait_for_message(mid)  # the message itself is archived as ever
    assert stored["type"] == "system"


async def test_a_failed_send_with_131050_is_an_opt_out_and_other_failures_are_not(stack):
    phone = fresh_phone()
    stopped, other = wamid(), wamid()

    def failed(mid: str, code: int, title: str) -> dict:
        return {"id": mid, "status": "failed", "timestamp": "1767225600", "recipient_id": phone,
                "errors": [{"code": code, "title": title}]}

    status, answer = await stack.post(dumps(envelope(statuses=[
        failed(stopped, 131050, "Unable to deliver the message. This recipient has chosen to stop receiving "
                                "marketing messages on WhatsApp from your business"),
        failed(other, 131026, "Message undeliverable")], phone=phone)))
    assert status == 200
    [entry] = await entries(stack.pool, phone)
    assert (entry["state"], entry["source"], entry["evidence_message_id"]) == ("opted_out", "send_failure", stopped)
    assert entry["detail"]["code"] == "131050" and "stop receiving" in entry["detail"]["title"]
    assert entry["at"].timestamp() == 1767225600 and entry["dedupe_key"] == f"fail:{stopped}:131050"
    assert entry["business_phone_number_id"] == BUSINESS["phone_number_id"]


async def test_a_stop_text_is_an_opt_out_with_the_message_as_evidence_and_a_sentence_is_not(stack):
    phone = fresh_phone()
    stop, sentence = wamid(), wamid()
    status, answer = await stack.post(dumps(envelope([message("text", {"body": " Stop! "}, mid=stop, phone=phone)],
                                                     phone=phone)))
    assert status == 200
    [entry] = await entries(stack.pool, phone)
    assert (entry["state"], entry["source"], entry["evidence"]) == ("opted_out", "keyword", "STOP")
    assert entry["evidence_message_id"] == stop and entry["detail"] == {"language": "en"}
    assert entry["dedupe_key"] == f"kw:{stop}" and entry["evidence_delivery_sha256"] == answer["delivery"]
    assert await leaf_of(stack.pool, entry["id"]) is not None
    assert (await stack.wait_for_message(stop))["text"] == " Stop! "

    # The delivery's evidence is written before it is acknowledged, so this count is final.
    status, _ = await stack.post(dumps(envelope([message("text", {"body": "Please don't stop"}, mid=sentence,
                                                         phone=phone)], phone=phone)))
    assert status == 200
    assert [e["evidence_message_id"] for e in await entries(stack.pool, phone)] == [stop]
    await stack.wait_for_message(sentence)


async def test_start_in_another_language_and_an_outbound_stop_is_not_the_person(stack):
    phone = fresh_phone()
    alta = wamid()
    body = envelope([message("text", {"body": "ALTA"}, mid=alta, phone=phone)], phone=phone)
    assert (await stack.post(dumps(body)))[0] == 200
    [entry] = await entries(stack.pool, phone)
    assert (entry["state"], entry["detail"]) == ("opted_in", {"language": "es"})
    # The business writing STOP (an echo from its app) is not the person opting out.
    assert (await stack.post(dumps(echo_envelope([echo("text", {"body": "STOP"}, to=phone)]))))[0] == 200
    assert len(await entries(stack.pool, phone)) == 1


async def test_a_wasender_stop_text_is_an_opt_out(stack_factory):
    stack = await stack_factory(wasender_webhook_secret=SECRET)
    phone = fresh_phone()
    mid = "3EB0" + uuid.uuid4().hex[:16].upper()
    item = {"key": {"id": mid, "fromMe": False, "remoteJid": f"{phone}@s.whatsapp.net",
                    "cleanedSenderPn": phone, "senderLid": "188392014426112@lid"},
            "pushName": "Priya", "message": {"conversation": "stop"}, "messageTimestamp": 1792496119}
    status, answer = await post(stack, upsert(item))
    assert status == 200, answer
    [entry] = await entries(stack.pool, phone)
    assert (entry["state"], entry["source"], entry["recorded_by"]) == ("opted_out", "keyword", "wasender-webhook")
    assert entry["evidence_message_id"] == mid and entry["at"].timestamp() == 1792496119
    assert (await stack.wait_for_message(mid))["text"] == "stop"


async def test_large_deliveries_and_the_history_sync_record_keywords_in_the_fan_out(stack_factory):
    stack = await stack_factory(inline_fanout_max=0)  # every delivery goes through IngestDelivery
    phone, later = fresh_phone(), fresh_phone()
    old = wamid()
    body = dumps(history_envelope([history_chunk({phone: [history_message("text", {"body": "UNSUBSCRIBE"},
                                                                            user=phone, mid=old, ts=1700000000)]})]))
    assert (await stack.post(body))[0] == 200
    [entry] = await wait_for_entries(stack.pool, phone, 1)
    assert (entry["state"], entry["evidence_message_id"]) == ("opted_out", old)
    assert entry["at"].timestamp() == 1700000000  # when the person wrote it, not when history arrived
    mid = wamid()
    assert (await stack.post(dumps(envelope([message("text", {"body": "start"}, mid=mid, phone=later)],
                                            phone=later))))[0] == 200
    [entry] = await wait_for_entries(stack.pool, later, 1)
    assert (entry["state"], entry["evidence_message_id"]) == ("opted_in", mid)


async def test_configured_keywords_replace_the_defaults(stack_factory):
    stack = await stack_factory(consent_keywords=json.dumps({"nl": {"stop": ["Afmelden"], "start": ["Aanmelden"]}}))
    phone = fresh_phone()
    mine, default = wamid(), wamid()
    assert (await stack.post(dumps(envelope([message("text", {"body": "afmelden"}, mid=mine, phone=phone),
                                             message("text", {"body": "STOP"}, mid=default, phone=phone)],
                                            phone=phone))))[0] == 200
    [entry] = await entries(stack.pool, phone)
    assert (entry["evidence_message_id"], entry["evidence"], entry["detail"]) == (mine, "Afmelden", {"language": "nl"})


@pytest.mark.parametrize("name, value, reason", [
    ("consent_keywords", "STOP,START", "not JSON"),
    ("consent_keywords", '{"en": {"stop": ["GO"], "start": ["go"]}}', "both a stop and a start word"),
    ("consent_keywords", '{"en": {"stop": "STOP"}}', "list of strings"),
    ("consent_optout_error_codes", "131050,stopped", "digits"),
    ("consent_optout_error_codes", " , ", "digits"),
])
def test_bad_consent_settings_name_the_variable(name, value, reason):
    with pytest.raises(ConfigError, match=f"WA_ARCHIVE_{name.upper()}.*{reason}"):
        load_settings(_env_file=None, **{name: value})


def test_consent_settings_are_read():
    options = load_settings(_env_file=None, consent_optout_error_codes="131050, 131049").consent_feed_options()
    assert options.optout_error_codes == frozenset({"131050", "131049"})
    assert options.keywords.match("STOPP").language == "de"


def test_evidence_that_does_not_fit_is_left_out_and_never_fails_the_delivery():
    from datetime import datetime, timezone

    from wa_archive.contacts.feed_options import ConsentFeedOptions
    from wa_archive.contacts.feeds import delivery_evidence
    from wa_archive.sources.meta.payload import parse_delivery

    body = json.loads(preferences("4477009" + "1" * 300, "stop", 1767225600))  # no phone is that long
    body["entry"][0]["changes"][0]["value"]["user_preferences"].append(
        {"wa_id": "447700900123", "category": "marketing_messages", "value": "resume", "timestamp": "1767225600"})
    parsed = parse_delivery(body, "a" * 64, datetime.now(timezone.utc))
    [evidence] = delivery_evidence(parsed, "a" * 64, ConsentFeedOptions())
    assert (evidence.phone, evidence.state) == ("447700900123", "opted_in")
