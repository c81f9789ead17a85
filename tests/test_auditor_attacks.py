"""Attacks on the auditor's own surfaces, each once a hole: a cursor beyond any id (a 500), a refused
path whose control characters forge a line of `wa-archive access-log`, a flood from many sources that
took the name off a known caller's refusal, a ZIP folder entry whose local header carries a file
that verify-export never saw, and a database password echoed when its URL could not be parsed."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import LEDGER_KEY
from tests.test_auditor_access import _call, _mark, _refused_rows
from tests.test_export import _cli, _env
from tests.test_ui_security import fetch, sign_in
from wa_archive.access.refusals import Refusal, RefusalLog
from wa_archive.access.wording import describe
from wa_archive.config import read_settings
from wa_archive.discovery.export_verify import verify_bundle
from wa_archive.integrity import receipts
from wa_archive.integrity.ledger import Signer

# Cursors ------------------------------------------------------------------------------------------


async def test_a_cursor_beyond_any_possible_id_is_a_400_not_a_500(stack):
    auditor = await stack.token("auditor")
    for cursor in ("9223372036854775808", "9999999999999999999"):  # above PostgreSQL's bigint
        status, _, body = await _call(stack, "GET", f"/api/v1/access-log?cursor={cursor}", auditor)
        assert status == 400, body
        assert json.loads(body)["filter"] == "cursor"
        status, _, page = await fetch(stack, f"/ui/access-log?cursor={cursor}", await sign_in(stack, auditor))
        assert status == 400 and b"cursor" in page, page
    # The largest id there can be is still a cursor: everything below it, newest first.
    status, _, body = await _call(stack, "GET", "/api/v1/access-log?cursor=9223372036854775807&limit=1", auditor)
    assert status == 200 and len(json.loads(body)["items"]) == 1


# What a refused attempt can make the log say --------------------------------------------------------


FORGED = "2026-01-01 09:00:00 UTC  alice (auditor)  exported messages of all dates  — from 10.0.0.9"


async def test_a_refused_path_cannot_forge_a_line_of_the_cli_access_log(stack, database_url, temporal_address):
    since = (await stack.pool.fetchval("SELECT now()")).isoformat()
    # A path segment may hold any decoded character but '/': a newline, a carriage return, an escape.
    path = "/api/v1/conversations/" + quote("x\n" + FORGED + "\r\x1b[2K", safe="")
    status, _, _ = await _call(stack, "GET", path, None)
    assert status == 401
    listed = await _cli(_env(stack, database_url, temporal_address), "access-log", "--since", since,
                        "--outcome", "refused")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[-1] == "1 access(es)" and len(lines) == 2, listed.stdout
    assert not any(line.startswith("2026-01-01") for line in lines)
    assert "\x1b" not in listed.stdout and "\r" not in listed.stdout
    assert "\\n2026-01-01 09:00:00 UTC" in lines[0], lines[0]  # shown, as what it is


def test_a_description_never_carries_control_or_direction_characters():
    said = describe("refused", {"reason": "no_token", "method": "GET",
                                "path": "/ui/receipts/a\nb\rc\x1b[31md\u202eevil\u2066e\x85f\x7f"}, "refused")
    assert said == ("refused: no API token was given "
                    "(GET /ui/receipts/a\\nb\\rc\\x1b[31md\\u202eevil\\u2066e\\x85f\\x7f)"), said
    # A reader's own search text too: the sentence is one line whatever the text.
    assert "\n" not in describe("search", {"q": "one\ntwo"}) and "\\n" in describe("search", {"q": "one\ntwo"})
    # Ordinary text, accents and emoji included, is said as it is.
    assert describe("search", {"q": "café 👍"}) == "searched messages: containing “café 👍”"


# Flooding ---------------------------------------------------------------------------------------


async def test_a_flood_from_many_sources_cannot_take_the_name_off_a_known_callers_refusal(stack):
    start = await _mark(stack)
    now = [1_800_000_000.0]
    refusals = RefusalLog(stack.pool, clock=lambda: now[0], max_sources=3)
    for n in range(1, 50):  # sources enough to fill every key of the minute, and more
        await refusals.note(Refusal(reason="no_token", method="GET", path="/api/v1/access-log", remote=f"10.1.0.{n}"))
    known = Refusal(reason="role_not_allowed", method="GET", path="/api/v1/access-log", remote="10.2.0.1",
                    actor="op-mallory", role="operator")
    await refusals.note(known)
    rows = await _refused_rows(stack, start)
    # Written at once, with who it was and from where, though the minute's sources were all taken.
    assert [(r["actor"], r["role"], r["remote_addr"], r["target"]["reason"]) for r in rows[3:]] == [
        ("op-mallory", "operator", "10.2.0.1", "role_not_allowed")]
    await refusals.note(known)  # a repeat is counted, under the caller's name
    now[0] += 60
    await refusals.flush()
    counted = [(r["actor"], r["remote_addr"], r["target"]["reason"], r["target"]["repeated"])
               for r in await _refused_rows(stack, start) if "repeated" in r["target"]]
    assert sorted(counted) == [("op-mallory", "(other sources)", "role_not_allowed", 1),
                               ("unknown", "(other sources)", "no_token", 46)]


# verify-export and ZIP folder entries ----------------------------------------------------------------


def _signed_bundle(path: Path, files: dict[str, bytes], folders: list[str]) -> None:
    """A bundle whose manifest lists `files` and is signed by the test's ledger key, with `folders`
    as the folder entries `zip -r` adds."""
    manifest = {"files": [{"path": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                          for name, data in files.items()], "messages": 0}
    raw = json.dumps(manifest).encode()
    signature = base64.b64encode(Signer(base64.b64decode(LEDGER_KEY)).sign(raw)).decode()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", raw)
        zf.writestr("manifest.sig", json.dumps({"signature": signature}))
        for folder in folders:
            zf.writestr(zipfile.ZipInfo(folder), b"")
        for name, data in files.items():
            zf.writestr(name, data)


def _hide_in_folder_entry(path: Path, folder: str, hidden: str, content: bytes) -> None:
    """Rewrite the bundle so that the central directory's empty `folder` entry points at a local header
    naming `hidden` (of the same length) with `content`: what a streaming unzip extracts."""
    assert len(hidden) == len(folder)
    with zipfile.ZipFile(path) as zf:
        entries = [(info, zf.read(info)) for info in zf.infolist()]
    crc = zipfile.crc32(content)
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in entries:
            if info.filename == folder:
                info = zipfile.ZipInfo(hidden, date_time=info.date_time)
                data = content
            zf.writestr(info, data)
    blob = bytearray(path.read_bytes())
    # The central directory entry of `hidden`: name it `folder`, with no content.
    at = blob.index(b"PK\x01\x02")
    while True:
        name_len = struct.unpack_from("<H", blob, at + 28)[0]
        if bytes(blob[at + 46:at + 46 + name_len]) == hidden.encode():
            break
        at = blob.index(b"PK\x01\x02", at + 4)
    assert struct.unpack_from("<I", blob, at + 16)[0] == crc
    struct.pack_into("<III", blob, at + 16, 0, 0, 0)  # crc, compressed size, size
    blob[at + 46:at + 46 + name_len] = folder.encode()
    path.write_bytes(bytes(blob))


def test_a_folder_entry_cannot_carry_a_file_that_verify_export_never_sees(tmp_path):
    public_key = Signer(base64.b64decode(LEDGER_KEY)).public_key()
    files = {"ledger/receipts/a.json": b"{}"}
    plain = tmp_path / "plain.zip"
    _signed_bundle(plain, files, ["ledger/", "ledger/receipts/"])
    assert not [p for p in verify_bundle(plain, public_key) if p.startswith("ledger/")]  # folder entries are fine

    smuggled = tmp_path / "smuggled.zip"
    _signed_bundle(smuggled, files, ["ledger/", "ledger/receipts/"])
    _hide_in_folder_entry(smuggled, "ledger/receipts/", "ledger/evil.html", b"<script>alert(1)</script>")
    with zipfile.ZipFile(smuggled) as zf:  # what zipfile (and so the verifier) sees: an empty folder
        info = zf.getinfo("ledger/receipts/")
        assert info.is_dir() and info.file_size == 0 and info.compress_size == 0
    local = smuggled.read_bytes()[info.header_offset:]
    assert local[30:30 + len("ledger/evil.html")] == b"ledger/evil.html"  # what a streaming unzip sees
    problems = verify_bundle(smuggled, public_key)
    assert any(p.startswith("ledger/receipts/: ") for p in problems), problems


def test_a_document_nested_past_the_parser_is_named_not_a_crash_of_verify_export(tmp_path):
    """JSON nested deeper than the parser goes made verify-export stop with a RecursionError: in the
    signature file, read before anything is proven, and in a receipt or checkpoint of a signed bundle."""
    public_key = Signer(base64.b64decode(LEDGER_KEY)).public_key()
    deep = b"[" * 100_000 + b"]" * 100_000
    unsigned = tmp_path / "unsigned.zip"
    with zipfile.ZipFile(unsigned, "w") as zf:
        zf.writestr("manifest.json", b"{}")
        zf.writestr("manifest.sig", deep)
    assert any("nested too deeply" in p for p in verify_bundle(unsigned, public_key))
    signed = tmp_path / "signed.zip"
    _signed_bundle(signed, {"ledger/checkpoints/000000000001.json": deep}, [])
    assert any("nested too deeply" in p for p in verify_bundle(signed, public_key))
    receipt = tmp_path / "receipt.json"
    receipt.write_bytes(deep)
    done = subprocess.run([sys.executable, "-m", "wa_archive.cli", "verify-receipt", str(receipt), "--public-key",
                           base64.b64encode(public_key).decode()], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "WA_ARCHIVE_DATA_DIR": str(tmp_path / "data")})
    assert done.returncode == 2 and "cannot read" in done.stderr and "Traceback" not in done.stderr, done.stderr


def _signed_checkpoint() -> dict[str, str]:
    """A checkpoint of one leaf signed by the test's ledger key (a genuine bundle's, in effect)."""
    signer = Signer(base64.b64decode(LEDGER_KEY))
    body = json.dumps({"public_key": base64.b64encode(signer.public_key()).decode(), "root_hash": "00" * 32,
                       "timestamp": "2026-01-01T00:00:00+00:00", "tree_size": 1}, sort_keys=True,
                      separators=(",", ":")).encode()
    return {"body": body.decode(), "signature": base64.b64encode(signer.sign(body)).decode()}


@pytest.mark.parametrize("shape", ["record-a-list", "body-a-list", "lone-surrogate"])
def test_a_receipt_of_the_wrong_shape_is_named_not_a_crash_of_the_verifiers(tmp_path, shape):
    """Found by a review: a receipt whose fields had the wrong types (or text no encoding writes) stopped
    verify-export and verify-receipt with a traceback, losing every problem found so far."""
    public_key = Signer(base64.b64decode(LEDGER_KEY)).public_key()
    receipt: dict = {"record": {"kind": "message", "id": "m1", "digest": "d"}, "checkpoint": _signed_checkpoint(),
                     "inclusion_proof": [], "leaf_index": 0}
    if shape == "record-a-list":
        receipt["record"] = []
    elif shape == "body-a-list":
        receipt["checkpoint"] = {"body": [], "signature": "x"}
    else:
        receipt["record"]["kind"] = "message\ud800"
    problems = receipts.verify_receipt(receipt, public_key)
    assert problems and all(isinstance(p, str) for p in problems)
    item = {"id": "m1", "source": "meta", "direction": "in", "type": "text", "timestamp": "2026-01-01T00:00:00+00:00",
            "contact": {"phone": "1", "wa_id": None, "user_id": None, "username": None, "name": None}, "text": "hi",
            "related_message_id": None, "flags": [], "archive_status": "archived", "payload": {},
            "template_sha256": None, "media": []}
    files = {"messages.jsonl": (json.dumps(item) + "\n").encode(), "ledger/receipts/m1.json": json.dumps(receipt).encode()}
    manifest = json.dumps({"files": [{"path": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                                     for name, data in files.items()], "messages": 1}).encode()
    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        zf.writestr("manifest.json", manifest)
        zf.writestr("manifest.sig", json.dumps({"signature": base64.b64encode(
            Signer(base64.b64decode(LEDGER_KEY)).sign(manifest)).decode()}))
        for name, data in files.items():
            zf.writestr(name, data)
    found = verify_bundle(bundle, public_key)
    assert found and all(isinstance(p, str) for p in found)


# Configuration ------------------------------------------------------------------------------------


def test_a_database_password_that_breaks_its_url_is_never_echoed(tmp_path):
    secret = "S3cr3tPassw0rd"
    for url in (f"postgresql://app:{secret}/x@db.example.com:5432/wa", f"postgresql://app:{secret}#x@db:5432/wa",
                f"postgresql://app:{secret}?x@db:5432/wa", f"postgresql://app:{secret}@db:54x32/wa"):
        _, problems = read_settings(database_url=url)
        assert problems and problems[0].startswith("WA_ARCHIVE_DATABASE_URL: "), (url, problems)
        assert secret not in " ".join(problems)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")},
               "WA_ARCHIVE_DATABASE_URL": url, "WA_ARCHIVE_DATA_DIR": str(tmp_path)}
        run = subprocess.run([sys.executable, "-m", "wa_archive.cli", "search", "--phone", "447700900123"],
                             env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 2, run.stdout + run.stderr
        assert "WA_ARCHIVE_DATABASE_URL" in run.stderr and secret not in run.stdout + run.stderr, run.stderr


# Roles, through every way in ------------------------------------------------------------------------


async def test_senders_and_operators_reach_no_auditor_surface_by_any_spelling_or_method(stack):
    export_id = "0" * 32
    api = ["/api/v1/access-log", "/api/v1/access%2Dlog", "/api/v1/access-log?cursor=1",
           "/api/v1/messages/x/receipt", "/api/v1/messages/x%2Freceipt/receipt", "/api/v1/messages/x/%72eceipt",
           f"/api/v1/exports/{export_id}", f"/api/v1/exports/{export_id}/bundle", f"/api/v1/exports/{export_id}%2Fbundle"]
    pages = ["/ui/access-log", "/ui/access%2Dlog", "/ui/receipts/x", "/ui/receipts/x%2Freceipt",
             f"/ui/exports/{export_id}", f"/ui/exports/{export_id}.zip"]
    for role in ("sender", "operator"):
        token = await stack.token(role)
        for path in api:
            for method in ("GET", "HEAD"):
                status, _, body = await _call(stack, method, path, token)
                assert status == 403, (role, method, path, status, body)
            status, _, _ = await _call(stack, "OPTIONS", path, token)
            assert status == 405, (role, path, status)
        status, _, body = await _call(stack, "POST", "/api/v1/exports", token, json={})
        assert status == 403, (role, body)
        cookie = await sign_in(stack, token)
        for path in pages:
            status, _, page = await fetch(stack, path, cookie)
            assert status == 403 and b"may not open this page" in page, (role, path, status)
