"""`--json` on every command that prints data: one JSON document on stdout, the same exit codes as
without it, against the real stack, database, store and Temporal."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
import zipfile
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import CONTACT_SECRET, LEDGER_KEY, PAYLOAD_KEYS, scratch_database
from wa_archive.archive.keys import contact_key
from wa_archive.db import migration_files
from wa_archive.integrity.ledger import Signer
from wa_archive.names import CONTACT_KEY
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, media_message, message, wamid

PHONE = "447700900123"


def _env(stack, database_url: str, temporal_address: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
    env.update(WA_ARCHIVE_DATABASE_URL=database_url, WA_ARCHIVE_TEMPORAL_ADDRESS=temporal_address,
               WA_ARCHIVE_STORAGE_URL=stack.store.url, WA_ARCHIVE_TASK_QUEUE=stack.settings.task_queue,
               WA_ARCHIVE_CONTACT_KEY_SECRET=CONTACT_SECRET, WA_ARCHIVE_LEDGER_SIGNING_KEY=LEDGER_KEY,
               WA_ARCHIVE_PAYLOAD_KEYS=PAYLOAD_KEYS)
    return env


async def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "wa_archive.cli", *args], env=env,
                                   capture_output=True, text=True, timeout=120)


async def _json(env: dict[str, str], *args: str, status: int = 0) -> Any:
    """The command's stdout as one JSON document, after checking its exit status."""
    done = await _cli(env, *args, "--json")
    assert done.returncode == status, (args, done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    return json.loads(done.stdout)


async def _archive(stack) -> dict[str, str]:
    media = stack.graph.add(FakeMedia(f"j{uuid.uuid4().hex[:10]}", content=b"\xff\xd8\xff" + os.urandom(2000)))
    ids = {"image": wamid(), "text": wamid()}
    assert (await stack.post(dumps(envelope([
        media_message("image", media.media_id, media.sha256_b64(), "image/jpeg", mid=ids["image"]),
        message("text", {"body": "statement"}, mid=ids["text"])]))))[0] == 200
    for mid in ids.values():
        await stack.wait_for_message(mid)
    return ids


@pytest.mark.slow
async def test_ledger_receipts_and_verify(stack, database_url, temporal_address, tmp_path):
    env = _env(stack, database_url, temporal_address)
    ids = await _archive(stack)

    public_key = (await _json(env, "ledger", "public-key"))["public_key"]
    assert base64.b64decode(public_key) == Signer(base64.b64decode(LEDGER_KEY)).public_key()
    checkpoint = (await _json(env, "ledger", "checkpoint"))["checkpoint"]
    tree_size = await stack.pool.fetchval("SELECT count(*) FROM ledger_leaves")
    assert checkpoint["tree_size"] == tree_size and len(checkpoint["root_hash"]) == 64
    assert await _json(env, "ledger", "checkpoint") == {"checkpoint": None}  # nothing new

    receipt = await _json(env, "receipt", ids["image"])
    assert receipt["record"]["kind"] == "message" and receipt["record"]["id"] == ids["image"]
    assert json.loads((await _cli(env, "receipt", ids["image"])).stdout) == receipt  # it always printed JSON
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(receipt))
    checked = await _json(env, "verify-receipt", str(path), "--public-key", public_key)
    assert checked == {"ok": True, "problems": [], "record": receipt["record"], "leaf_index": receipt["leaf_index"]}
    receipt["record"]["digest"] = "0" * 64
    path.write_text(json.dumps(receipt))
    forged = await _json(env, "verify-receipt", str(path), "--public-key", public_key, status=1)
    assert forged["ok"] is False and forged["problems"]

    clean = await _json(env, "verify", "--full")
    assert clean["ok"] is True and clean["problems"] == [] and clean["objects_rehashed"] == 1
    assert clean["bytes_rehashed"] == 2003 and "signing key" in clean["public_key_source"]
    stranger = base64.b64encode(Signer(os.urandom(32)).public_key()).decode()
    wrong = await _json(env, "verify", "--public-key", stranger, status=1)
    assert wrong["ok"] is False and wrong["public_key_source"] == "--public-key"
    assert any("signature" in p for p in wrong["problems"]), wrong["problems"]


@pytest.mark.slow
async def test_export_and_verify_export(stack, database_url, temporal_address, tmp_path):
    env = _env(stack, database_url, temporal_address)
    await _archive(stack)
    assert (await _cli(env, "ledger", "checkpoint")).returncode == 0
    public_key = (await _json(env, "ledger", "public-key"))["public_key"]

    local = await _json(env, "export", "--phone", PHONE, "--out", str(tmp_path / "local.zip"), "--local")
    assert local["path"] == str(tmp_path / "local.zip") and local["messages"] == 2 and local["media"] == 1
    assert local["bytes"] > 0 and local["export_id"] is None
    by_workflow = await _json(env, "export", "--phone", PHONE, "--out", str(tmp_path / "wf.zip"))
    assert by_workflow["messages"] == 2 and by_workflow["export_id"]
    assert by_workflow["bytes"] == (tmp_path / "wf.zip").stat().st_size and len(by_workflow["sha256"]) == 64

    intact = await _json(env, "verify-export", str(tmp_path / "wf.zip"), "--public-key", public_key)
    assert intact == {"bundle": str(tmp_path / "wf.zip"), "intact": True, "problems": []}
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(tmp_path / "wf.zip") as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data + b" " if item.filename.endswith("messages.csv") else data)
    broken = await _json(env, "verify-export", str(tampered), "--public-key", public_key, status=1)
    assert broken["intact"] is False and any("messages.csv" in p for p in broken["problems"]), broken


@pytest.mark.slow
async def test_schedules_retrieval_test_keys_tokens_and_erasure_export(stack, database_url, temporal_address,
                                                                      tmp_path):
    env = _env(stack, database_url, temporal_address)
    await _archive(stack)

    applied = (await _json(env, "schedules", "apply"))["applied"]
    assert applied and all(line.split()[0] in ("created", "updated", "skipped") for line in applied), applied
    run = await _json(env, "retrieval-test", "run", "--sample", "5")
    assert run["ok"] is True and run["report"]["passed"] == 1 and run["report"]["failed"] == 0
    assert run["report"]["workflow_id"] == run["workflow_id"]

    key = await _json(env, "contact-key", f"+{PHONE}")
    assert key == {"contact_key": contact_key(CONTACT_SECRET, f"+{PHONE}"), "search_attribute": CONTACT_KEY.name}

    name = f"json-{uuid.uuid4().hex[:6]}"
    await stack.token("auditor", name=name)
    assert await _json(env, "tokens", "revoke", name) == {"revoked": name}
    assert (await _cli(env, "tokens", "revoke", name, "--json")).returncode == 2  # already revoked: as without

    await _cli(env, "erasure", "request", "--phone", f"+{PHONE}", "--reason", "Art. 17 request")
    out = tmp_path / "erasures.jsonl"
    exported = await _json(env, "erasure", "export", "--out", str(out))
    assert exported == {"path": str(out), "format": "jsonl", "requests": 1}
    assert len(out.read_text().splitlines()) == 1


async def test_migrate(database_urls):
    async with scratch_database(database_urls, "wa_json") as (owner, app):
        env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
        env.update(WA_ARCHIVE_MIGRATE_DATABASE_URL=owner, WA_ARCHIVE_DATABASE_URL=app)
        first = await _json(env, "migrate")
        assert first == {"applied": [name for _, name, _ in migration_files()]} and len(first["applied"]) > 10
        assert await _json(env, "migrate") == {"applied": []}
        failed = await _cli(dict(env, WA_ARCHIVE_MIGRATE_DATABASE_URL=urlsplit(owner)._replace(path="/no_such_database").geturl()),
                            "migrate", "--json")
        assert failed.returncode == 1 and failed.stdout == ""


async def test_storage_init(s3_endpoint, tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
    bucket = f"json-{uuid.uuid4().hex[:8]}"
    env = dict(base, WA_ARCHIVE_STORAGE_URL=f"s3://{bucket}/archive", WA_ARCHIVE_S3_ENDPOINT_URL=s3_endpoint)
    init = await _json(env, "storage", "init")
    assert init["store"].startswith(f"s3://{bucket}") and init["configured"][0].startswith(f"created bucket {bucket}")
    assert any("versioning: Enabled" in line for line in init["configured"]), init
    filesystem = dict(base, WA_ARCHIVE_STORAGE_URL=(tmp_path / "objects").as_uri())
    assert (await _json(filesystem, "storage", "init"))["configured"] == []
