"""eDiscovery export: a bundle made through Temporal, downloaded by the CLI, verified, and caught
when tampered with."""

from __future__ import annotations

import asyncio
import base64
import copy
import email
import hashlib
import io
import json
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ACCESS_TOKEN, CONTACT_SECRET, LEDGER_KEY, PAYLOAD_KEYS
from tests.test_outbound import PNID, TEMPLATE_V1, status_body, template_send
from wa_archive.integrity.ledger import Signer
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import WABA_ID, dumps, envelope, media_message, message, wamid

PHONE = "447700900123"
PUBLIC_KEY = base64.b64encode(Signer(base64.b64decode(LEDGER_KEY)).public_key()).decode()


def _env(stack, database_url: str, temporal_address: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
    env.update({
        "WA_ARCHIVE_DATABASE_URL": database_url, "WA_ARCHIVE_TEMPORAL_ADDRESS": temporal_address,
        "WA_ARCHIVE_STORAGE_URL": stack.store.url, "WA_ARCHIVE_TASK_QUEUE": stack.settings.task_queue,
        "WA_ARCHIVE_META_ACCESS_TOKEN": ACCESS_TOKEN, "WA_ARCHIVE_CONTACT_KEY_SECRET": CONTACT_SECRET,
        "WA_ARCHIVE_LEDGER_SIGNING_KEY": LEDGER_KEY, "WA_ARCHIVE_PAYLOAD_KEYS": PAYLOAD_KEYS,
    })
    return env


async def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "wa_archive.cli", *args],
                                   env=env, capture_output=True, text=True, timeout=120)


async def _seed(stack) -> dict:
    image = b"\xff\xd8\xff" + os.urandom(4000)
    media = stack.graph.add(FakeMedia(f"m{uuid.uuid4().hex[:10]}", mime_type="image/jpeg", content=image))
    ids = {"text": wamid(), "image": wamid(), "other": wamid()}
    await stack.post(dumps(envelope([
        message("text", {"body": "Please confirm the transfer <script>x</script>"}, mid=ids["text"], ts=1767268800),
        media_message("image", media.media_id, media.sha256_b64(), "image/jpeg", mid=ids["image"], ts=1770000000),
        message("text", {"body": "not in the export"}, mid=ids["other"], phone="15550001111", ts=1770000001),
    ])))
    stack.graph.set_template(WABA_ID, copy.deepcopy(TEMPLATE_V1))
    header = stack.graph.add(FakeMedia(str(uuid.uuid4().int % 10**15), mime_type="image/png", content=b"\x89PNG hdr"))
    token = await stack.token("sender")
    async with stack.http.post(f"{stack.url}/api/v1/outbound", headers={"Authorization": f"Bearer {token}"}, json={
            "phone_number_id": PNID, "request": template_send({"id": header.media_id}),
            "response": {"messages": [{"id": "wamid.OUTEXPORT" + uuid.uuid4().hex}]}}) as resp:
        ids["out"] = (await resp.json())["message_id"]
    await stack.post(status_body(ids["out"], "sent", 1771000000))
    for mid in ids.values():
        await stack.wait_for_message(mid)
    return {"ids": ids, "image": image}


@pytest.mark.slow
async def test_export_through_temporal_round_trips_and_detects_tampering(
    stack, database_url, temporal_address, tmp_path
):
    seeded = await _seed(stack)
    env = _env(stack, database_url, temporal_address)
    assert (await _cli(env, "ledger", "checkpoint")).returncode == 0
    out = tmp_path / "bundle.zip"
    run = await _cli(env, "export", "--phone", PHONE, "--since", "2026-01-01", "--until", "2027-01-01",
                     "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert "3/3 messages" in run.stderr and "wrote" in run.stdout  # the progress bar reached the end
    verified = await _cli(env, "verify-export", str(out), "--public-key", PUBLIC_KEY)
    assert verified.returncode == 0 and "intact" in verified.stdout

    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read("manifest.json"))
        lines = [json.loads(line) for line in zf.read("messages.jsonl").decode().splitlines()]
        assert [m["id"] for m in lines] == [seeded["ids"][k] for k in ("text", "image", "out")]
        image_entry = lines[1]["media"][0]
        assert zf.read(image_entry["export_path"]) == seeded["image"]
        assert hashlib.sha256(zf.read(image_entry["export_path"])).hexdigest() == image_entry["sha256"]
        assert lines[2]["template_sha256"] and f"templates/{lines[2]['template_sha256']}.json" in names
        assert lines[2]["statuses"][0]["status"] == "sent"
        csv_text = zf.read("messages.csv").decode()
        assert seeded["ids"]["text"] in csv_text and seeded["ids"]["other"] not in csv_text
        transcript = zf.read(f"transcripts/{PHONE}.html").decode()
        assert f'src="../{image_entry["export_path"]}"' in transcript
        assert "&lt;script&gt;" in transcript and "<script>x" not in transcript
        rsmf = email.message_from_bytes(zf.read(f"rsmf/{PHONE}.rsmf"))
        assert rsmf["X-RSMF-Version"] == "2.0.0" and rsmf["X-RSMF-EventCount"] == "3"
        [attachment] = [p for p in rsmf.walk() if p.get_filename() == "rsmf.zip"]
        with zipfile.ZipFile(io.BytesIO(attachment.get_payload(decode=True))) as rz:
            rmanifest = json.loads(rz.read("rsmf_manifest.json"))
            assert [e["direction"] for e in rmanifest["events"]] == ["incoming", "incoming", "outgoing"]
            att = rmanifest["events"][1]["attachments"][0]["id"]
            assert rz.read(att) == seeded["image"]
        assert {p["id"] for p in rmanifest["participants"]} == {"business", "contact"}
        assert manifest["query"]["phone"] == PHONE and manifest["exported_by"].startswith("cli:")
        assert manifest["messages"] == 3 and {f["path"] for f in manifest["files"]} == names - {"manifest.json", "manifest.sig"}
        receipts = sorted(n for n in names if n.startswith("ledger/receipts/"))
        assert len(receipts) == 3 and any(n.startswith("ledger/checkpoints/") for n in names)
        receipt_file = tmp_path / "receipt.json"
        receipt_file.write_bytes(zf.read(receipts[0]))
    offline = await _cli({k: v for k, v in env.items() if k != "WA_ARCHIVE_DATABASE_URL"},
                         "verify-receipt", str(receipt_file), "--public-key", PUBLIC_KEY)
    assert offline.returncode == 0 and "OK" in offline.stdout

    # Tampering: one changed byte of a media file, or a rewritten messages.jsonl, is found.
    for victim in (image_entry["export_path"], "messages.jsonl"):
        tampered = tmp_path / f"tampered-{victim.replace('/', '_')}.zip"
        with zipfile.ZipFile(out) as src, zipfile.ZipFile(tampered, "w") as dst:
            for item in src.infolist():
                data = src.read(item.filename)
                if item.filename == victim:
                    data = data[:-1] + bytes([data[-1] ^ 1])
                dst.writestr(item, data)
        bad = await _cli(env, "verify-export", str(tampered), "--public-key", PUBLIC_KEY)
        assert bad.returncode == 1 and victim in bad.stdout and "not intact" in bad.stdout
    entries = await stack.pool.fetch("SELECT * FROM access_log WHERE action = 'export' ORDER BY id DESC LIMIT 1")
    assert entries and entries[0]["target"]["phone"] == PHONE and entries[0]["actor"].startswith("cli:")


async def test_local_export_and_a_damaged_archive_object_stops_the_export(stack, database_url, temporal_address, tmp_path):
    seeded = await _seed(stack)
    env = _env(stack, database_url, temporal_address)
    out = tmp_path / "local.zip"
    run = await _cli(env, "export", "--phone", PHONE, "--out", str(out), "--local")
    assert run.returncode == 0, run.stderr
    assert (await _cli(env, "verify-export", str(out), "--public-key", PUBLIC_KEY)).returncode == 0
    missing = await _cli(env, "verify-export", str(tmp_path / "missing.zip"), "--public-key", PUBLIC_KEY)
    assert missing.returncode == 2 and "does not exist" in missing.stderr  # could not check: not "not intact"

    # Someone alters an archived file on disk: the export refuses to carry it as genuine.
    msg = await stack.wait_for_message(seeded["ids"]["image"])
    stored = Path(stack.store.root) / msg["media"][0]["storage_key"]
    stored.chmod(0o644)
    stored.write_bytes(b"forged")
    run = await _cli(env, "export", "--phone", PHONE, "--out", str(tmp_path / "forged.zip"), "--local")
    assert run.returncode != 0 and "does not match its recorded SHA-256" in (run.stderr + run.stdout)
