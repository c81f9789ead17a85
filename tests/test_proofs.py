"""Proofs checked against a key from outside them: forged receipts, fabricated bundles and a
ledger rewritten with database access alone are all named; CLI reads leave access-log rows."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
import uuid
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.conftest import LEDGER_KEY
from wa_archive.archive.keys import safe_id
from wa_archive.integrity import ledger, merkle, sequencing
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, media_message, message, wamid

REAL = ledger.Signer(base64.b64decode(LEDGER_KEY))
PUBLIC_KEY = base64.b64encode(REAL.public_key()).decode()
PHONE = "447700900123"


def _env(stack, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
    env.update(WA_ARCHIVE_DATABASE_URL=database_url, WA_ARCHIVE_STORAGE_URL=stack.store.url,
               WA_ARCHIVE_LEDGER_SIGNING_KEY=LEDGER_KEY)
    return env


def _offline() -> dict[str, str]:
    """An auditor's machine: no database, no signing key, nothing of the archive's."""
    return {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}


async def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "wa_archive.cli", *args], env=env,
                                   capture_output=True, text=True, timeout=120)


async def _archive(stack) -> dict[str, str]:
    media = stack.graph.add(FakeMedia(f"p{uuid.uuid4().hex[:10]}", mime_type="image/jpeg",
                                      content=b"\xff\xd8\xff" + os.urandom(1500)))
    ids = {"image": wamid(), "text": wamid(), "other": wamid()}
    await stack.post(dumps(envelope([
        media_message("image", media.media_id, media.sha256_b64(), "image/jpeg", mid=ids["image"], ts=1770000000),
        message("text", {"body": "Transfer 1,000 EUR to account 42"}, mid=ids["text"], ts=1770000001),
        message("text", {"body": "another contact"}, mid=ids["other"], phone="15550001111", ts=1770000002),
    ])))
    for mid in ids.values():
        await stack.wait_for_message(mid)
    return ids


def _resign(doc: dict, signer: ledger.Signer) -> dict:
    """A checkpoint document re-signed by another key, the body naming that key."""
    body = json.loads(doc["body"])
    body["public_key"] = base64.b64encode(signer.public_key()).decode()
    text = ledger.canonical(body).decode()
    return {"body": text, "signature": base64.b64encode(signer.sign(text.encode())).decode()}


# verify-receipt --------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_receipt_resigned_with_a_fresh_key_needs_and_fails_the_trusted_key(stack, database_url, tmp_path):
    ids = await _archive(stack)
    env = _env(stack, database_url)
    assert (await _cli(env, "ledger", "checkpoint")).returncode == 0
    genuine = json.loads((await _cli(env, "receipt", ids["text"])).stdout)
    forged = {**genuine, "checkpoint": _resign(genuine["checkpoint"], ledger.Signer(ledger.Signer.generate_seed()))}
    genuine_file, forged_file = tmp_path / "genuine.json", tmp_path / "forged.json"
    genuine_file.write_text(json.dumps(genuine))
    forged_file.write_text(json.dumps(forged))

    # Without a key from outside, nothing is verified: the key inside the file is never trusted.
    for path in (forged_file, genuine_file):
        untrusted = await _cli(_offline(), "verify-receipt", str(path))
        assert untrusted.returncode == 2 and "OK" not in untrusted.stdout
        assert "--public-key" in untrusted.stderr and "WA_ARCHIVE_LEDGER_PUBLIC_KEY" in untrusted.stderr

    pinned = await _cli(_offline(), "verify-receipt", str(forged_file), "--public-key", PUBLIC_KEY)
    assert pinned.returncode == 1 and "OK" not in pinned.stdout
    assert "signed by a different key" in pinned.stdout and "signature not valid" in pinned.stdout
    # The same forgery, its body still naming the real key: only the signature gives it away.
    sneaky = {**genuine, "checkpoint": {"body": genuine["checkpoint"]["body"],
                                        "signature": forged["checkpoint"]["signature"]}}
    forged_file.write_text(json.dumps(sneaky))
    trusting = {**_offline(), "WA_ARCHIVE_LEDGER_PUBLIC_KEY": PUBLIC_KEY}
    from_env = await _cli(trusting, "verify-receipt", str(forged_file))
    assert from_env.returncode == 1 and "signature not valid for the trusted key" in from_env.stdout

    ok = await _cli(trusting, "verify-receipt", str(genuine_file))
    assert ok.returncode == 0 and "OK" in ok.stdout
    as_hex = await _cli(_offline(), "verify-receipt", str(genuine_file), "--public-key", REAL.public_key().hex())
    assert as_hex.returncode == 0, as_hex.stdout + as_hex.stderr
    garbage = await _cli(_offline(), "verify-receipt", str(genuine_file), "--public-key", "not-a-key")
    assert garbage.returncode == 2 and "--public-key" in garbage.stderr and "32 bytes" in garbage.stderr

    # A negative leaf index (Python would read the proof from the end) is refused.
    negative = {**genuine, "leaf_index": genuine["leaf_index"] - json.loads(genuine["checkpoint"]["body"])["tree_size"]}
    forged_file.write_text(json.dumps(negative))
    refused = await _cli(_offline(), "verify-receipt", str(forged_file), "--public-key", PUBLIC_KEY)
    assert refused.returncode == 1 and "is not leaf" in refused.stdout


# verify-export ---------------------------------------------------------------------------------


def _rebuild(src: Path, dst: Path, changes: dict[str, bytes], signer: ledger.Signer | None) -> None:
    """A fabricated bundle: files replaced, the manifest rebuilt to match, and signed by `signer`
    (or, with None, the original signature kept)."""
    with zipfile.ZipFile(src) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    entries.update(changes)
    manifest = json.loads(entries["manifest.json"])
    manifest["files"] = [{"path": f["path"], "sha256": hashlib.sha256(entries[f["path"]]).hexdigest(),
                          "size": len(entries[f["path"]])} for f in manifest["files"]]
    raw = json.dumps(manifest, indent=2).encode()
    entries["manifest.json"] = raw
    if signer is not None:
        entries["manifest.sig"] = json.dumps({
            "format": "wa-archive-manifest-signature/1", "algorithm": "Ed25519", "signed": "manifest.json",
            "public_key": base64.b64encode(signer.public_key()).decode(),
            "signature": base64.b64encode(signer.sign(raw)).decode()}).encode()
    with zipfile.ZipFile(dst, "w") as out:
        for name, data in entries.items():
            out.writestr(name, data)


@pytest.mark.slow
async def test_a_fabricated_bundle_fails_and_names_what_is_wrong(stack, database_url, tmp_path):
    ids = await _archive(stack)
    env = _env(stack, database_url)
    assert (await _cli(env, "ledger", "checkpoint")).returncode == 0
    await _archive(stack)  # not yet in any checkpoint: the export signs a fresh one, so these get receipts too
    bundle = tmp_path / "bundle.zip"
    run = await _cli(env, "export", "--phone", PHONE, "--out", str(bundle), "--local")
    assert run.returncode == 0, run.stderr
    ok = await _cli(_offline(), "verify-export", str(bundle), "--public-key", PUBLIC_KEY)
    assert ok.returncode == 0 and "intact" in ok.stdout, ok.stdout + ok.stderr
    untrusted = await _cli(_offline(), "verify-export", str(bundle))
    assert untrusted.returncode == 2 and "--public-key" in untrusted.stderr and "intact" not in untrusted.stdout

    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        lines = [json.loads(line) for line in zf.read("messages.jsonl").decode().splitlines()]
        checkpoints = sorted(n for n in names if n.startswith("ledger/checkpoints/"))
        receipt_name = f"ledger/receipts/{safe_id(ids['text'])}.json"
        receipt = json.loads(zf.read(receipt_name))
        checkpoint_doc = json.loads(zf.read(checkpoints[-1]))
    assert len(checkpoints) == 2 and any(n.startswith("ledger/consistency/") for n in names)
    assert len([n for n in names if n.startswith("ledger/receipts/")]) == len(lines) == 4
    # messages.jsonl carries what the digest needs: recomputed from it, it is the receipt's digest.
    [text] = [m for m in lines if m["id"] == ids["text"]]
    assert ledger.export_item_digest(text) == receipt["record"]["digest"]

    edited = [dict(m, text="Transfer 9,000 EUR to account 66") if m["id"] == ids["text"] else m for m in lines]
    edited_jsonl = "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in edited).encode()
    other = ledger.Signer(ledger.Signer.generate_seed())
    cases = {
        # Any file changed and the manifest rebuilt: without the ledger key its signature cannot follow.
        "rebuilt manifest": ({"messages.jsonl": edited_jsonl}, None, ["manifest.json: its signature is not"]),
        "manifest signed by another key": ({"messages.jsonl": edited_jsonl}, other,
                                           ["manifest.json: its signature is not"]),
        # Past a valid manifest signature (the signing key itself misused), each proof still holds.
        "message edited": ({"messages.jsonl": edited_jsonl}, REAL,
                           [f"message {ids['text']}: its data in messages.jsonl does not match the digest"]),
        "receipt re-signed": ({receipt_name: json.dumps({**receipt, "checkpoint": _resign(receipt["checkpoint"], other)
                                                         }).encode()}, REAL,
                              [f"{receipt_name}: the receipt's checkpoint: signed by a different key",
                               f"{receipt_name}: its checkpoint is not one of the bundle's checkpoints"]),
        "checkpoint re-signed": ({checkpoints[-1]: json.dumps(_resign(checkpoint_doc, other)).encode()}, REAL,
                                 [f"{checkpoints[-1]}: signature not valid for the trusted key"]),
        "receipt missing": ({}, REAL, [f"message {ids['text']}: no receipt in the bundle proves it"]),
        "message removed": ({"messages.jsonl": "".join(json.dumps(m) + "\n" for m in lines[1:]).encode()}, REAL,
                            ["messages.jsonl: 3 messages, but the signed manifest says 4"]),
    }
    for label, (changes, signer, expected) in cases.items():
        fake = tmp_path / f"{label.replace(' ', '-')}.zip"
        _rebuild(bundle, fake, changes, signer)
        if label == "receipt missing":
            _drop(fake, receipt_name, REAL)
        bad = await _cli(_offline(), "verify-export", str(fake), "--public-key", PUBLIC_KEY)
        assert bad.returncode == 1 and "not intact" in bad.stdout, (label, bad.stdout, bad.stderr)
        for phrase in expected:
            assert phrase in bad.stdout, (label, phrase, bad.stdout)
    # A second entry of the same name: a viewer may show the one the verifier did not read.
    doubled = tmp_path / "doubled.zip"
    doubled.write_bytes(bundle.read_bytes())
    with zipfile.ZipFile(doubled, "a") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("messages.jsonl", edited_jsonl)
    bad = await _cli(_offline(), "verify-export", str(doubled), "--public-key", PUBLIC_KEY)
    assert bad.returncode == 1 and "messages.jsonl: appears more than once in the ZIP" in bad.stdout


def _drop(path: Path, name: str, signer: ledger.Signer) -> None:
    """Remove one file from a bundle and from its manifest, re-signing the manifest."""
    with zipfile.ZipFile(path) as zf:
        entries = {n: zf.read(n) for n in zf.namelist() if n != name}
    manifest = json.loads(entries["manifest.json"])
    manifest["files"] = [f for f in manifest["files"] if f["path"] != name]
    raw = json.dumps(manifest).encode()
    entries["manifest.json"] = raw
    entries["manifest.sig"] = json.dumps({"signature": base64.b64encode(signer.sign(raw)).decode()}).encode()
    with zipfile.ZipFile(path, "w") as out:
        for n, data in entries.items():
            out.writestr(n, data)


# verify: the database against the store's write-once checkpoints ------------------------------------


async def _rewrite_message(pool, message_id: str, text: str) -> None:
    """What a database login alone can do (the superuser, triggers off): change a row, recompute its leaf and the head."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")  # triggers off
        await conn.execute("UPDATE messages SET text = $2 WHERE id = $1", message_id, text)
        row = await conn.fetchrow("SELECT * FROM messages WHERE id = $1", message_id)
        media = await conn.fetch("SELECT * FROM media WHERE message_id = $1 ORDER BY position", message_id)
        digest = ledger.message_digest(row, media)
        await conn.execute(
            "UPDATE ledger_leaves SET digest = $2, leaf_hash = $3 WHERE seq = (SELECT max(seq) FROM ledger_leaves"
            " WHERE kind = 'message' AND record_id = $1)",
            message_id, digest, merkle.leaf_hash(ledger.leaf_bytes("message", message_id, digest)))


async def test_a_ledger_rewritten_with_database_access_alone_is_named(stack, database_url):
    ids = await _archive(stack)
    env = _env(stack, database_url)
    assert (await _cli(env, "ledger", "checkpoint")).returncode == 0
    size = await stack.pool.fetchval("SELECT max(tree_size) FROM ledger_checkpoints")
    clean = await _cli(env, "verify", "--public-key", PUBLIC_KEY)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "checked against --public-key" in clean.stderr
    derived = await _cli(env, "verify")
    assert derived.returncode == 0 and "derived from the configured signing key" in derived.stderr

    # 1. Row, leaf and head rewritten, and the checkpoints that would betray it dropped from the table.
    await _rewrite_message(stack.admin_pool, ids["text"], "Transfer 9,000 EUR to account 66")
    async with stack.admin_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("DELETE FROM ledger_checkpoints")
    shrunk = await _cli(env, "verify", "--public-key", PUBLIC_KEY)
    assert shrunk.returncode == 1, shrunk.stdout
    assert f"checkpoint {size}: in the store but not in the database" in shrunk.stdout
    assert f"checkpoint {size} in the store: root does not match the log" in shrunk.stdout

    # 2. A checkpoint over the rewritten log, signed with a new key kept in the table.
    forger = ledger.Signer(ledger.Signer.generate_seed())
    hashes = await ledger.leaf_hashes(stack.pool, size)
    body = ledger.canonical({"tree_size": size, "root_hash": merkle.root(hashes).hex(),
                             "timestamp": datetime.now(timezone.utc).isoformat(),
                             "public_key": base64.b64encode(forger.public_key()).decode()})
    await stack.pool.execute(
        "INSERT INTO ledger_checkpoints (tree_size, root_hash, body, signature, storage_key) VALUES ($1,$2,$3,$4,$5)",
        size, merkle.root(hashes).hex(), body.decode(), base64.b64encode(forger.sign(body)).decode(),
        ledger.checkpoint_key(size))
    resigned = await _cli(env, "verify", "--public-key", PUBLIC_KEY)
    assert resigned.returncode == 1
    assert f"checkpoint {size}: differs from its write-once copy in the store" in resigned.stdout
    assert f"checkpoint {size}: signature not valid for the trusted key" in resigned.stdout
    assert f"checkpoint {size} in the store: root does not match the log" in resigned.stdout
    # Trusting the forger's key instead moves nothing: the store's copy still disagrees with the log.
    fooled = await _cli(env, "verify", "--public-key", base64.b64encode(forger.public_key()).decode())
    assert fooled.returncode == 1 and "differs from its write-once copy in the store" in fooled.stdout


async def test_a_checkpoint_missing_from_the_store_is_named(stack, database_url):
    await _archive(stack)
    env = _env(stack, database_url)
    assert (await _cli(env, "ledger", "checkpoint")).returncode == 0
    size = await stack.pool.fetchval("SELECT max(tree_size) FROM ledger_checkpoints")
    stored = Path(stack.store.root) / ledger.checkpoint_key(size)
    stored.chmod(0o644)
    stored.unlink()  # someone with the bucket removed the write-once copy
    report = await _cli(env, "verify")
    assert report.returncode == 1
    assert f"checkpoint {size}: missing from the store (ledger/checkpoints/{size:012d}.json)" in report.stdout


async def test_checkpoint_copies_are_listed_from_an_s3_store(stack_factory, database_url):
    stack = await stack_factory("s3")
    await _archive(stack)
    env = {**_env(stack, database_url), "WA_ARCHIVE_S3_ENDPOINT_URL": stack.settings.s3_endpoint_url}
    assert (await _cli(env, "ledger", "checkpoint")).returncode == 0
    clean = await _cli(env, "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    size = await stack.pool.fetchval("SELECT max(tree_size) FROM ledger_checkpoints")
    async with stack.admin_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("DELETE FROM ledger_checkpoints")
    shrunk = await _cli(env, "verify")
    assert shrunk.returncode == 1 and f"checkpoint {size}: in the store but not in the database" in shrunk.stdout


# CLI reads are access-logged --------------------------------------------------------------------


async def test_cli_failures_and_access_log_leave_their_own_access_log_rows(stack, database_url):
    await _archive(stack)
    env = _env(stack, database_url)
    failures = await _cli(env, "failures", "--json")
    assert failures.returncode == 0, failures.stderr
    listed = await _cli(env, "access-log", "--since", "2026-01-01", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["action"]: r for r in await stack.pool.fetch(
        "SELECT * FROM access_log WHERE action IN ('failures', 'access-log') ORDER BY id")}
    assert set(rows) == {"failures", "access-log"}
    for row in rows.values():
        assert row["actor"].startswith("cli:") and row["role"] == "cli" and row["remote_addr"] == "local"
    assert rows["access-log"]["target"] == {"since": "2026-01-01T00:00:00+00:00"}
    # The reading of the log is in the log it printed, and both reads are in the ledger.
    assert "access-log" in [e["action"] for e in json.loads(listed.stdout)]
    await sequencing.integrate(stack.pool)  # what the integrator's Schedule does within a second
    leaves = {r["record_id"] for r in await stack.pool.fetch(
        "SELECT record_id FROM ledger_leaves WHERE kind = 'access'")}
    assert {str(r["id"]) for r in rows.values()} <= leaves
