"""Contacts and consent in export bundles: each exported phone's profile and consent log for the period
(entries outside it absent, but an earlier entry that decided an exported send carried), each entry with a
receipt; RSMF participants named by the profile's names; outbound items carrying their send-time consent
beside the digested fields; `verify-export` green, and red naming an edited entry or send-time consent."""

from __future__ import annotations

import email
import io
import json
import zipfile
from datetime import datetime, timedelta, timezone

from tests.test_contact_pages import PHONE, inbound, outbound, record
from tests.test_proofs import PUBLIC_KEY, REAL, _cli, _env, _offline, _rebuild
from wa_archive.integrity import ledger

CONTACT_FILE = f"contacts/{PHONE}.json"


def _rsmf_participants(zf: zipfile.ZipFile) -> list[dict]:
    rsmf = email.message_from_bytes(zf.read(f"rsmf/{PHONE}.rsmf"))
    [attachment] = [p for p in rsmf.walk() if p.get_filename() == "rsmf.zip"]
    with zipfile.ZipFile(io.BytesIO(attachment.get_payload(decode=True))) as rz:
        return json.loads(rz.read("rsmf_manifest.json"))["participants"]


async def test_an_export_carries_the_period_s_profile_and_consent_and_an_edited_entry_is_named(
        stack, database_url, tmp_path):
    now = datetime.now(timezone.utc)
    earlier_name = await inbound(stack, "Priya Raman", now - timedelta(hours=3))
    later_name = await inbound(stack, "Priya R.", now - timedelta(hours=2))
    before = await record(stack, state="opted_in", source="manual", at=now - timedelta(days=3),
                          evidence="signed paper form", detail={"collected_via": "branch"})
    # In the period, but for another business number: in the log, not deciding the send below.
    other_number = await record(stack, state="opted_out", source="keyword", at=now - timedelta(hours=1),
                                business_phone_number_id="999999", evidence="STOP")
    after = await record(stack, state="opted_out", source="manual", at=now + timedelta(days=3), evidence="call")
    sent = await outbound(stack)

    env = _env(stack, database_url)
    bundle = tmp_path / "bundle.zip"
    since, until = (now - timedelta(days=1)).date().isoformat(), (now + timedelta(days=2)).date().isoformat()
    run = await _cli(env, "export", "--phone", PHONE, "--since", since, "--until", until, "--out", str(bundle),
                     "--local")
    assert run.returncode == 0, run.stderr
    ok = await _cli(_offline(), "verify-export", str(bundle), "--public-key", PUBLIC_KEY)
    assert ok.returncode == 0 and "intact" in ok.stdout, ok.stdout + ok.stderr

    with zipfile.ZipFile(bundle) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        doc = json.loads(zf.read(CONTACT_FILE))
        items = {i["id"]: i for i in map(json.loads, zf.read("messages.jsonl").decode().splitlines())}
        participants = _rsmf_participants(zf)
        [listed] = manifest["contacts"]
        assert listed["path"] == CONTACT_FILE and listed["phone"] == PHONE
        assert CONTACT_FILE in {f["path"] for f in manifest["files"]}
        # The period's log; the entry that decided the send, from before the period, beside it; the entry
        # after the period nowhere.
        assert [e["entry_id"] for e in doc["consent_log"]] == [other_number]
        assert [e["entry_id"] for e in doc["send_time_entries"]] == [before]
        assert doc["send_time_entries"][0]["evidence"] == "signed paper form"
        assert after not in {int(e["entry_id"]) for e in listed["consent_entries"]}
        assert "consent" not in doc["profile"]  # the state now is not the period's
        assert [n["name"] for n in doc["profile"]["names"]] == ["Priya Raman", "Priya R."]
        assert {m["id"] for m in doc["profile"]["messages"]} == {earlier_name, later_name, sent}
        for entry_id in (before, other_number):
            receipt = json.loads(zf.read(f"ledger/receipts/consent/{entry_id}.json"))
            assert receipt["record"]["kind"] == "consent" and receipt["record"]["id"] == str(entry_id)
            stored = await stack.pool.fetchrow("SELECT * FROM consent_entries WHERE id = $1", entry_id)
            assert receipt["record"]["digest"] == ledger.consent_digest(stored)
        # The send's consent beside its digested fields; inbound items have none.
        assert items[sent]["consent"]["state"] == "opted_in" and items[sent]["consent"]["entry_id"] == before
        assert "consent" not in items[earlier_name]
        assert ledger.export_item_digest(items[sent]) == ledger.export_item_digest(
            {k: v for k, v in items[sent].items() if k != "consent"})
        # RSMF: the contact displayed by the latest name of the period, the earlier one kept.
        contact = next(p for p in participants if p["id"] == "contact")
        assert contact["display"] == "Priya R." and contact["account_id"] == PHONE
        assert {"name": "whatsapp_profile_name", "value": "Priya Raman"} in contact["custom"]
        original = zf.read(CONTACT_FILE)
        jsonl = zf.read("messages.jsonl")

    # An entry edited in place: the file no longer matches the signed manifest.
    edited_doc = json.loads(original)
    edited_doc["consent_log"][0]["state"] = "opted_in"
    edited = json.dumps(edited_doc, indent=2).encode()
    flipped = tmp_path / "flipped.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(flipped, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, edited if item.filename == CONTACT_FILE else src.read(item.filename))
    bad = await _cli(_offline(), "verify-export", str(flipped), "--public-key", PUBLIC_KEY)
    assert bad.returncode == 1 and "not intact" in bad.stdout
    assert f"{CONTACT_FILE}: SHA-256" in bad.stdout

    # The same edit with the manifest rebuilt and signed by the ledger key (an insider with the key, or a
    # database edited before the export): the receipt names the entry.
    resigned = tmp_path / "resigned.zip"
    _rebuild(bundle, resigned, {CONTACT_FILE: edited}, REAL)
    bad = await _cli(_offline(), "verify-export", str(resigned), "--public-key", PUBLIC_KEY)
    assert bad.returncode == 1, bad.stdout
    assert (f"consent entry {other_number} in {CONTACT_FILE}: its data does not match the digest its receipt "
            "proves (the entry was edited)") in bad.stdout, bad.stdout

    # A send's consent rewritten to name the other entry: not the state that entry records.
    lines = []
    for line in jsonl.decode().splitlines():
        item = json.loads(line)
        if item["id"] == sent:
            item["consent"]["entry_id"] = other_number
        lines.append(json.dumps(item, ensure_ascii=False))
    swapped = tmp_path / "swapped.zip"
    _rebuild(bundle, swapped, {"messages.jsonl": ("\n".join(lines) + "\n").encode()}, REAL)
    bad = await _cli(_offline(), "verify-export", str(swapped), "--public-key", PUBLIC_KEY)
    assert bad.returncode == 1, bad.stdout
    assert f"message {sent}: its send-time consent is 'opted_in', but consent entry {other_number} records " \
           "'opted_out'" in bad.stdout, bad.stdout
