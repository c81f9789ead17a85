"""eDiscovery export bundles: a ZIP that proves itself.

Contents: messages.jsonl and messages.csv; media/ (the archived bytes, re-hashed while copied and
checked against the index); templates/ (the snapshots messages point at); ledger/ (the signed
checkpoints, each with a consistency proof from the one before, and a receipt per message, verifiable
offline with `wa-archive verify-receipt`); transcripts/<contact>.html
(chat pages that open offline with their media); rsmf/<contact>.rsmf (Relativity Short Message
Format: an EML whose attachment rsmf.zip holds rsmf_manifest.json with participants, conversations
and events); reconciliation/<day>/v<n>.json (every version of the daily reconciliation report of
each UTC day the period touches, the exact bytes its ledger leaf hashes, each with a receipt);
contacts/<phone>.json (each exported phone's contact profile and consent log for the period, plus any
earlier entry that decided an exported send's consent, each entry with a receipt);
manifest.json (every file with its SHA-256 and size, the query, who exported and when, the reports);
manifest.sig (the ledger key's Ed25519 signature over the exact bytes of manifest.json).

messages.jsonl carries every field of a message's ledger record digest, so `wa-archive verify-export`
recomputes each digest from the bundle alone and follows it through the receipt to a signed checkpoint.
An outbound message's item also carries `consent` (state, entry_id, at: the recipient's consent as judged
when it was sent), beside the digested fields; the entry it names is in the bundle with its own receipt.

Everything streams: messages are read page by page, media chunk by chunk, so memory stays flat
whatever the size of the export.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import BaseModel

from wa_archive.archive.keys import extension_for, safe_id
from wa_archive.contacts import views as contact_views
from wa_archive.db import contacts as contacts_sql
from wa_archive.db import queries
from wa_archive.db import reconciliation as reconciliation_db
from wa_archive.discovery import export_formats
from wa_archive.discovery.export_formats import CHUNK, HashingWriter
from wa_archive.discovery.export_verify import MANIFEST_SIGNATURE, consent_entry_digest
from wa_archive.discovery.export_verify import (
    verify_bundle as verify_bundle,  # verification lives apart; importable here too
)
from wa_archive.discovery.search import Filters, search
from wa_archive.errors import ExportError
from wa_archive.integrity.ledger import Signer
from wa_archive.storage import ObjectStore

PAGE = 500
FORMAT_VERSION = "1"


class ExportQuery(BaseModel):
    phone: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class ExportResult(BaseModel):
    messages: int
    media: int
    files: int
    bytes: int
    manifest_sha256: str


# A spreadsheet opening messages.csv evaluates a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV cell that no spreadsheet runs as a formula: text starting with = + - @ tab or CR gets a
    leading single quote (OWASP's advice). messages.jsonl keeps every value exact."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


async def write_bundle(
    pool: asyncpg.Pool, store: ObjectStore, query: ExportQuery, out: Path, *, exported_by: str, signer: Signer,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    """Write the bundle to `out` (a ZIP) with its manifest signed by the ledger key, reporting
    (messages done, total) as it goes."""
    filters = Filters(phone=query.phone, since=query.since, until=query.until, limit=PAGE)
    total = await _count(pool, filters)
    files: list[dict[str, Any]] = []
    templates: set[str] = set()
    conversations: dict[str, Path] = {}  # contact -> temp file of its events (JSON lines)
    phones: dict[str, set[int]] = {}  # each exported phone -> the consent entries its sends were judged by
    workdir = Path(tempfile.mkdtemp(prefix="wa-export-"))
    done = media_count = 0
    try:
        # zipfile allows one open entry at a time, and media entries are written as messages are
        # read, so the two tables go to temp files first and into the ZIP at the end.
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            jsonl_path = workdir / "messages.jsonl"
            csv_path = workdir / "messages.csv"
            with open(csv_path, "w", newline="", encoding="utf-8") as csv_fh, \
                    open(jsonl_path, "w", encoding="utf-8") as jsonl:
                rows_csv = csv.writer(csv_fh)
                rows_csv.writerow(["id", "timestamp", "direction", "contact_phone", "contact_name", "type",
                                   "text", "template", "template_sha256", "media", "media_sha256"])
                cursor_filters = filters.model_copy()
                while True:
                    rows, cursor = await search(pool, cursor_filters, ascending=True,
                                                columns=f"*, {queries.MEDIA_ROWS}")
                    if not rows:
                        break
                    page = queries.listed(rows)
                    statuses = await _statuses(pool, [r["id"] for r in rows])
                    consents = await contact_views.message_consent(
                        pool, [r["id"] for r in rows if r["direction"] == "out"])
                    for row, item in zip(rows, page, strict=True):
                        # the ledger digest orders media by position
                        for media, stored in zip(item["media"], row["media_rows"], strict=True):
                            media["position"] = stored["position"]
                        item["payload"] = row["payload"]
                        item["statuses"] = statuses.get(row["id"], [])
                        item["template_sha256"] = row["template_sha256"]
                        judged = consents.get(row["id"])
                        if judged is not None:  # beside the digested fields: export_item_digest ignores it
                            item["consent"] = {k: judged[k] for k in ("state", "entry_id", "at")}
                        if item["contact"]["phone"]:
                            decided_by = phones.setdefault(item["contact"]["phone"], set())
                            if judged is not None and judged["entry_id"] is not None:
                                decided_by.add(int(judged["entry_id"]))
                        for media in item["media"]:
                            if media["status"] == "archived":
                                media["export_path"] = await _copy_media(zf, store, media, files)
                                media_count += 1
                        if row["template_sha256"]:
                            templates.add(row["template_sha256"])
                        jsonl.write(json.dumps(item, ensure_ascii=False) + "\n")
                        rows_csv.writerow(csv_cell(value) for value in [
                            item["id"], item["timestamp"], item["direction"], item["contact"]["phone"],
                            item["contact"]["name"], item["type"], item["text"], item["template_name"],
                            row["template_sha256"],
                            ";".join(m["export_path"] for m in item["media"] if m.get("export_path")),
                            ";".join(m["sha256"] or "" for m in item["media"])])
                        contact = _contact_of(item)
                        path = conversations.setdefault(contact, workdir / f"conv-{len(conversations)}.jsonl")
                        with open(path, "a", encoding="utf-8") as conv:
                            conv.write(json.dumps(item, ensure_ascii=False) + "\n")
                        done += 1
                    if on_progress:
                        on_progress(done, total)
                    if cursor is None:
                        break
                    cursor_filters.cursor = (rows[-1]["ts"], rows[-1]["id"])
            _copy_file(zf, jsonl_path, "messages.jsonl", files)
            _copy_file(zf, csv_path, "messages.csv", files)
            for sha in sorted(templates):
                snap = await pool.fetchrow("SELECT * FROM template_snapshots WHERE sha256 = $1", sha)
                writer = HashingWriter(zf, f"templates/{sha}.json", files)
                writer.write(snap["canonical"].encode())
                writer.close()
            contact_entries, names = await _write_contacts(zf, pool, query, phones, files)
            for contact, path in conversations.items():
                export_formats.write_transcript(zf, contact, path, files)
                export_formats.write_rsmf(zf, contact, path, workdir, files, names.get(contact, []))
            reports = await reconciliation_db.reports_for_days(pool, *report_days(query))
            report_entries = _write_reports(zf, reports, files)
            await _write_proofs(zf, pool, store, signer, jsonl_path, files, report_entries, contact_entries)
            manifest = {
                "format": "wa-archive-export", "version": FORMAT_VERSION,
                "exported_at": datetime.now(timezone.utc).isoformat(), "exported_by": exported_by,
                "query": json.loads(query.model_dump_json()), "messages": done, "media": media_count,
                "reconciliation": report_entries, "contacts": contact_entries, "files": files,
            }
            raw = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
            zf.writestr("manifest.json", raw)
            zf.writestr(MANIFEST_SIGNATURE, json.dumps(_manifest_signature(raw, signer), indent=2))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return ExportResult(messages=done, media=media_count, files=len(files) + 2,
                        bytes=out.stat().st_size, manifest_sha256=hashlib.sha256(raw).hexdigest())


MANIFEST_SIGNATURE_FORMAT = "wa-archive-manifest-signature/1"


def _manifest_signature(raw: bytes, signer: Signer) -> dict[str, str]:
    """The ledger key's signature over the exact manifest bytes; the key is named for reference only
    (a verifier checks against the key it trusts, never this one)."""
    return {"format": MANIFEST_SIGNATURE_FORMAT, "algorithm": "Ed25519", "signed": "manifest.json",
            "public_key": base64.b64encode(signer.public_key()).decode(),
            "signature": base64.b64encode(signer.sign(raw)).decode()}


def report_days(query: ExportQuery) -> tuple[date | None, date | None]:
    """The UTC days whose reconciliation reports an export carries: every day the period [since, until)
    touches (None: unbounded on that side)."""
    first = query.since.astimezone(timezone.utc).date() if query.since else None
    last = (query.until.astimezone(timezone.utc) - timedelta(microseconds=1)).date() if query.until else None
    return first, last


def _write_reports(zf: zipfile.ZipFile, reports: list[asyncpg.Record],
                   files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every version of each day's report, as the exact bytes its ledger leaf hashes; the entries the
    manifest lists them by (a report's receipt is written with the others, in _write_proofs)."""
    entries = []
    for r in reports:
        day = r["report_date"].isoformat()
        path = f"reconciliation/{day}/v{r['version']}.json"
        writer = HashingWriter(zf, path, files)
        writer.write(r["body"].encode())
        writer.close()
        entries.append({"date": day, "version": r["version"], "status": r["status"], "id": str(r["id"]),
                        "sha256": r["sha256"], "path": path, "receipt": f"ledger/receipts/reconciliation/{day}-v"
                                                                        f"{r['version']}.json"})
    return entries


async def _write_contacts(zf: zipfile.ZipFile, pool: asyncpg.Pool, query: ExportQuery, phones: dict[str, set[int]],
                          files: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """contacts/<phone>.json for each exported phone: its profile restricted to the period, its consent
    log for the period, and the entries outside the period that decided an exported send's consent (the
    evidence a send was allowed often predates the period). The entries the manifest lists them by, and
    each phone's profile names of the period (for the RSMF participants)."""
    entries = []
    names: dict[str, list[dict[str, Any]]] = {}
    for phone in sorted(phones):
        doc = await contact_views.contact_document(pool, phone, since=query.since, until=query.until)
        if doc is None:
            continue  # messages written before contacts were kept: no profile to carry
        period_ids = [int(e["entry_id"]) for e in doc.pop("consent_log")]
        doc.pop("consent", None)  # the state now is not the period's; the log and each send's state are
        # The entries whole (the ledger digest covers the dedupe key too), read by id: an entry that decided
        # a send may predate the period, or be a previous holder's of the number.
        rows = await contacts_sql.consent_entries_by_id(pool, sorted(set(period_ids) | phones[phone]))
        whole = {r["id"]: {**contact_views.entry_dict(r), "dedupe_key": r["dedupe_key"]} for r in rows}
        log = [whole[i] for i in period_ids]
        earlier = [e for i, e in whole.items() if i not in log_ids] if (log_ids := set(period_ids)) else \
            list(whole.values())
        names[phone] = doc["names"]
        path = f"contacts/{safe_id(phone)}.json"
        body = {"phone": phone, "period": {"since": _iso(query.since), "until": _iso(query.until)},
                "profile": doc, "consent_log": log, "send_time_entries": earlier}
        writer = HashingWriter(zf, path, files)
        writer.write(json.dumps(body, indent=2, ensure_ascii=False).encode())
        writer.close()
        entries.append({"phone": phone, "path": path, "consent_entries": [
            {"entry_id": str(e["entry_id"]), "digest": consent_entry_digest(e),
             "receipt": f"ledger/receipts/consent/{e['entry_id']}.json"} for e in log + earlier]})
    return entries, names


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def _write_proofs(zf: zipfile.ZipFile, pool: asyncpg.Pool, store: ObjectStore, signer: Signer,
                        jsonl_path: Path, files: list[dict[str, Any]], report_entries: list[dict[str, Any]],
                        contact_entries: list[dict[str, Any]]) -> None:
    """The ledger's signed checkpoints with consistency proofs, and a receipt for each exported message,
    reconciliation report and consent entry."""
    from wa_archive.errors import StorageConflict
    from wa_archive.integrity import ledger
    from wa_archive.integrity.receipts import bundle_proofs

    with open(jsonl_path, encoding="utf-8") as fh:
        digests = {item["id"]: ledger.export_item_digest(item) for item in map(json.loads, fh)}
    try:  # a fresh checkpoint, so that every message exported has a receipt
        await ledger.write_checkpoint(pool, store, signer)
    except StorageConflict:
        pass  # another writer signed this same tree size a moment earlier: its checkpoint serves
    consent = {e["entry_id"]: e for c in contact_entries for e in c["consent_entries"]}
    checkpoints, receipts, others = await bundle_proofs(pool, digests, {
        "reconciliation": {e["id"]: e["sha256"] for e in report_entries},
        "consent": {entry_id: e["digest"] for entry_id, e in consent.items()}}, public_key=signer.public_key())
    report_receipts, consent_receipts = others.get("reconciliation", {}), others.get("consent", {})
    for cp in checkpoints:
        writer = HashingWriter(zf, f"ledger/checkpoints/{cp['tree_size']:012d}.json", files)
        writer.write(json.dumps({"body": cp["body"], "signature": cp["signature"]}).encode())
        writer.close()
        if "consistency" in cp:
            writer = HashingWriter(zf, f"ledger/consistency/{cp['consistency']['from_tree_size']:012d}-"
                                        f"{cp['tree_size']:012d}.json", files)
            writer.write(json.dumps({"from_tree_size": cp["consistency"]["from_tree_size"],
                                     "to_tree_size": cp["tree_size"], "proof": cp["consistency"]["proof"]}).encode())
            writer.close()
    for message_id, doc in receipts.items():
        writer = HashingWriter(zf, f"ledger/receipts/{safe_id(message_id)}.json", files)
        writer.write(json.dumps(doc, indent=2).encode())
        writer.close()
    # Message receipts are named by safe_id(), which escapes '/', so none can land in this folder.
    for entry in report_entries:
        if entry["id"] in report_receipts:
            writer = HashingWriter(zf, entry["receipt"], files)
            writer.write(json.dumps(report_receipts[entry["id"]], indent=2).encode())
            writer.close()
    for entry_id, entry in consent.items():  # an entry id is digits: it names one file in its own folder
        if entry_id in consent_receipts:
            writer = HashingWriter(zf, entry["receipt"], files)
            writer.write(json.dumps(consent_receipts[entry_id], indent=2).encode())
            writer.close()


async def _count(pool: asyncpg.Pool, f: Filters) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM messages WHERE ($1::text IS NULL OR contact_phone = $1)"
        " AND ($2::timestamptz IS NULL OR ts >= $2) AND ($3::timestamptz IS NULL OR ts < $3)",
        f.phone, f.since, f.until)
    return count


async def _statuses(pool: asyncpg.Pool, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    rows = await pool.fetch("SELECT message_id, status, ts, payload FROM status_events"
                            " WHERE message_id = ANY($1::text[]) ORDER BY ts, id", ids)
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["message_id"], []).append(
            {"status": r["status"], "timestamp": r["ts"].isoformat() if r["ts"] else None, "raw": r["payload"]})
    return out


async def _copy_media(zf: zipfile.ZipFile, store: ObjectStore, media: dict[str, Any],
                      files: list[dict[str, Any]]) -> str:
    """Copy one archived object into the bundle, re-hashing it: a mismatch stops the export."""
    name = f"media/{media['archive_id']}.{extension_for(media['mime_type'])}"
    writer = HashingWriter(zf, name, files)
    async for chunk in store.read(media["storage_key"]):
        writer.write(chunk)
    digest = writer.close()
    if digest != media["sha256"]:
        raise ExportError(f"archived object {media['storage_key']} does not match its recorded SHA-256 "
                          f"({digest} != {media['sha256']}); export stopped")
    return name


def _copy_file(zf: zipfile.ZipFile, path: Path, name: str, files: list[dict[str, Any]]) -> None:
    writer = HashingWriter(zf, name, files)
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            writer.write(block)
    writer.close()


def _contact_of(item: dict[str, Any]) -> str:
    c = item["contact"]
    return c["phone"] or c["wa_id"] or c["user_id"] or c["username"] or "unknown"
