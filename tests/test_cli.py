"""The CLI's JSON contract, as scripts read it: show, search (with filters) and failures."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

import pytest

from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, media_message, message, wamid


async def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
    env["WA_ARCHIVE_DATABASE_URL"] = database_url
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "wa_archive.cli", *args], env=env,
        capture_output=True, text=True, timeout=60,
    )


@pytest.mark.slow
async def test_show_search_and_failures_json(stack, database_url):
    old, new, other = wamid(), wamid(), wamid()
    media = stack.graph.add(FakeMedia(f"m{uuid.uuid4().hex[:10]}", content=b"\x89PNG" + os.urandom(500)))
    broken = stack.graph.add(FakeMedia(f"m{uuid.uuid4().hex[:10]}", content=b"x", status=404))
    failed = wamid()
    await stack.post(dumps(envelope([
        message("text", {"body": "old"}, mid=old, ts=1767225600),          # 2026-01-01
        media_message("image", media.media_id, media.sha256_b64(), "image/png", mid=new, ts=1780000000),
        message("text", {"body": "someone else"}, mid=other, phone="15550001111", ts=1780000001),
        media_message("image", broken.media_id, broken.sha256_b64(), "image/png", mid=failed, ts=1780000002),
    ])))
    for mid in (old, new, other):
        await stack.wait_for_message(mid)
    await stack.wait_for_failure(failed)

    shown = await _cli(database_url, "show", new, "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert {"id", "direction", "type", "timestamp", "contact", "media", "deliveries"} <= doc.keys()
    [m] = doc["media"]
    assert {"id", "status", "sha256", "provider_sha256", "size", "mime_type", "storage_key"} <= m.keys()
    assert m["status"] == "archived" and m["id"] == media.media_id
    assert {"sha256", "signature"} <= doc["deliveries"][0].keys()

    found = json.loads((await _cli(database_url, "search", "--phone", "+44 7700 900123", "--json")).stdout)
    assert [f["id"] for f in found] == [failed, new, old]  # newest first, only this phone
    assert all({"id", "timestamp", "contact", "type"} <= f.keys() for f in found)
    window = json.loads((await _cli(database_url, "search", "--since", "2026-01-01", "--until",
                                    "2026-05-01", "--json")).stdout)
    assert [f["id"] for f in window] == [old]
    limited = json.loads((await _cli(database_url, "search", "--limit", "1", "--json")).stdout)
    assert len(limited) == 1
    inbound = json.loads((await _cli(database_url, "search", "--direction", "in", "--json")).stdout)
    assert len(inbound) == 4
    assert json.loads((await _cli(database_url, "search", "--direction", "out", "--json")).stdout) == []
    assert json.loads((await _cli(database_url, "search", "--template", "nope", "--json")).stdout) == []

    failures = json.loads((await _cli(database_url, "failures", "--json")).stdout)
    [f] = [f for f in failures if f["message_id"] == failed]
    assert f["stage"] == "archive_media" and len(f["attempts"]) == 5
    assert {"attempt", "at", "error_type", "error", "http_status"} <= f["attempts"][0].keys()

    human = await _cli(database_url, "failures")
    assert failed in human.stdout and "HTTP 404" in human.stdout


async def test_bad_arguments_are_clear_errors(database_url):
    bad_date = await _cli(database_url, "search", "--since", "last tuesday")
    assert bad_date.returncode == 2 and "not a date" in bad_date.stderr
    bad_phone = await _cli(database_url, "search", "--phone", "alice")
    assert bad_phone.returncode == 2 and "not a phone number" in bad_phone.stderr
    unknown = await _cli(database_url, "show", "wamid.nope")
    assert unknown.returncode == 1 and "no archived message" in unknown.stderr


@pytest.mark.slow
async def test_tokens_commands(database_url, clean_db):
    created = await _cli(database_url, "tokens", "create", "--role", "sender", "--name", "crm", "--json")
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)["token"]
    assert token.startswith("wa_") and len(token) > 40
    stored = await clean_db.fetchval("SELECT token_sha256 FROM api_tokens WHERE name = 'crm'")
    assert stored != token and token not in stored  # only the hash is kept
    again = await _cli(database_url, "tokens", "create", "--role", "sender", "--name", "crm")
    assert again.returncode == 2 and "already exists" in again.stderr
    bad_role = await _cli(database_url, "tokens", "create", "--role", "root", "--name", "x")
    assert bad_role.returncode == 2
    listed = json.loads((await _cli(database_url, "tokens", "list", "--json")).stdout)
    assert [(t["name"], t["role"], t["revoked_at"]) for t in listed] == [("crm", "sender", None)]
    assert token not in json.dumps(listed)
    assert (await _cli(database_url, "tokens", "revoke", "crm")).returncode == 0
    listed = json.loads((await _cli(database_url, "tokens", "list", "--json")).stdout)
    assert listed[0]["revoked_at"] is not None
    assert (await _cli(database_url, "tokens", "revoke", "crm")).returncode == 2
