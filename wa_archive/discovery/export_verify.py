"""Verifying an export bundle against a trusted ledger key, offline.

Nothing in the bundle is believed before the manifest's signature checks out with the key the
verifier brings. Then: every file against the manifest; every media file against its message's
recorded SHA-256; every message's record digest, recomputed from messages.jsonl, against its
receipt; every receipt's inclusion proof against a checkpoint of the bundle; every checkpoint's
signature against the trusted key, and each checkpoint extending the one before; every reconciliation
report the manifest lists, its exact bytes against its receipt (a leaf of kind `reconciliation`), of a
day inside the exported period; every consent entry of every contacts/<phone>.json the manifest lists,
its digest recomputed from the file against its receipt (a leaf of kind `consent`), and each outbound
message's send-time `consent` naming an entry the bundle carries, in the state that entry records.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import os
import struct
import zipfile
import zlib
from datetime import datetime, timedelta, timezone
from typing import Any

from wa_archive.archive.keys import safe_id
from wa_archive.integrity import ledger, merkle, receipts

CHUNK = 1024 * 1024
MANIFEST = "manifest.json"
MANIFEST_SIGNATURE = "manifest.sig"
_UNLISTED = {MANIFEST, MANIFEST_SIGNATURE}


def verify_bundle(path: str | os.PathLike[str], public_key: bytes) -> list[str]:
    """Problems found in a bundle (empty when it is intact and proven by the trusted key)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        return [f"not a readable ZIP file: {exc}"]
    with zf:
        try:
            return _verify_open_bundle(zf, public_key)
        except RecursionError:  # a document of the bundle nested past what the JSON parser goes
            return ["a JSON document in the bundle is nested too deeply to read: not a bundle the archive made"]
        except Exception as exc:  # noqa: BLE001 - a file of shapes no bundle has: named, not raised
            return [f"a file in the bundle is not what the archive writes ({type(exc).__name__}:"
                    f" {str(exc)[:200]}): not a bundle the archive made"]


def _verify_open_bundle(zf: zipfile.ZipFile, public_key: bytes) -> list[str]:
    """The problems of an opened bundle, as verify_bundle() says."""
    manifest, problems = _signed_manifest(zf, public_key)
    if manifest is None:
        return problems
    listed = {f["path"]: f for f in manifest.get("files", []) if isinstance(f, dict) and "path" in f}
    problems += _files_against_manifest(zf, listed)
    checkpoints, found = _checkpoints(zf, listed, public_key)
    problems += found
    found, judged = _messages_against_receipts(zf, listed, checkpoints, public_key, manifest.get("messages"))
    problems += found
    problems += _reports_against_receipts(zf, listed, checkpoints, public_key, manifest)
    found, entries = _consent_against_receipts(zf, listed, checkpoints, public_key, manifest)
    problems += found
    problems += _send_time_consent(judged, entries)
    return problems


def _signed_manifest(zf: zipfile.ZipFile, public_key: bytes) -> tuple[dict[str, Any] | None, list[str]]:
    """The manifest, only if its signature is the trusted key's over its exact bytes."""
    try:
        raw = zf.read(MANIFEST)
    except KeyError:
        return None, [f"{MANIFEST}: missing"]
    try:
        signature_doc = json.loads(zf.read(MANIFEST_SIGNATURE))
        signature = base64.b64decode(signature_doc["signature"], validate=True)
    except KeyError:
        return None, [f"{MANIFEST_SIGNATURE}: missing; the manifest is unsigned and nothing in the bundle can be "
                      "trusted"]
    except (ValueError, TypeError, binascii.Error) as exc:
        return None, [f"{MANIFEST_SIGNATURE}: unreadable ({exc})"]
    if not ledger.verify_signature(public_key, raw, signature):
        return None, [f"{MANIFEST}: its signature is not the trusted key's (the manifest was rebuilt or signed "
                      "by another key); nothing in the bundle can be trusted"]
    try:
        manifest = json.loads(raw)
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        return None, [f"{MANIFEST}: unreadable ({exc})"]
    return manifest, []


def _files_against_manifest(zf: zipfile.ZipFile, listed: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    names = zf.namelist()
    # With two entries of one name, tools disagree on which they show: never verify one and show the other.
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{name}: appears more than once in the ZIP")
    present = set(names) - _UNLISTED
    folders = _folders_of(listed)
    for extra in sorted(present - set(listed)):
        if extra in folders and _is_empty_folder_entry(zf, zf.getinfo(extra)):
            continue  # `zip -r` records each folder of the bundle as an entry of its own
        problems.append(f"{extra}: not listed in the manifest")
    for name, entry in sorted(listed.items()):
        if name not in present:
            problems.append(f"{name}: listed in the manifest but missing")
            continue
        hasher, size = hashlib.sha256(), 0
        try:
            with zf.open(name) as fh:
                while block := fh.read(CHUNK):
                    hasher.update(block)
                    size += len(block)
        except (zipfile.BadZipFile, OSError) as exc:  # a CRC error means the entry was altered
            problems.append(f"{name}: unreadable ({exc})")
            continue
        if hasher.hexdigest() != entry.get("sha256") or size != entry.get("size"):
            problems.append(f"{name}: SHA-256 {hasher.hexdigest()} does not match the manifest")
    return problems


def _folders_of(listed: dict[str, dict[str, Any]]) -> set[str]:
    """Every folder that holds a listed file, as a ZIP names a folder entry (`media/`, `ledger/checkpoints/`).
    Only these may appear unlisted: an extra folder name, or one with `..` in it, is still refused."""
    folders: set[str] = set()
    for name in listed:
        parts = name.split("/")[:-1]
        folders.update("/".join(parts[:n]) + "/" for n in range(1, len(parts) + 1))
    return folders


def _is_empty_folder_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """A folder entry carries no content: a name ending in `/` and not one byte, stored or compressed,
    in the central directory and in its local header alike."""
    empty_stream = 2 if info.compress_type == zipfile.ZIP_DEFLATED else 0  # deflate's end block alone is 2 bytes
    return (info.is_dir() and info.file_size == 0 and info.compress_size <= empty_stream
            and _local_header_is_empty(zf, info))


def _local_header_is_empty(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """The entry's local header names the same folder and holds no data. A tool that unzips as a stream
    reads local headers, not the central directory this verifier reads: a folder entry whose local
    header named a file with content would put a file on the reader's disk that was never checked."""
    fp = zf.fp
    if fp is None:
        return False
    fp.seek(info.header_offset)
    header = fp.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size:
        return False
    signature, flags, method, compressed, size, name_length, extra_length = _LOCAL_HEADER.unpack(header)
    name = fp.read(name_length)
    fp.seek(extra_length, os.SEEK_CUR)
    data = fp.read(info.compress_size)
    named = name.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
    sized = flags & 0x08 or (compressed == info.compress_size and size == 0)  # bit 3: sizes follow the data
    if signature != b"PK\x03\x04" or named != info.orig_filename or method != info.compress_type or not sized:
        return False
    if method != zipfile.ZIP_DEFLATED:
        return data == b""
    stream = zlib.decompressobj(-15)  # the deflate stream must end here having said nothing
    return stream.decompress(data) == b"" and stream.eof and not stream.unused_data


# signature, (version), flags, method, (time, date, crc), compressed size, size, name and extra lengths
_LOCAL_HEADER = struct.Struct("<4s2xHH8xIIHH")


def _read_json(zf: zipfile.ZipFile, name: str) -> Any:
    return json.loads(zf.read(name))


def _checkpoints(zf: zipfile.ZipFile, listed: dict[str, dict[str, Any]],
                 public_key: bytes) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The bundle's checkpoints that the trusted key signed (by exact body), and what is wrong."""
    problems: list[str] = []
    valid: dict[str, dict[str, Any]] = {}
    for name in sorted(n for n in listed if n.startswith("ledger/checkpoints/")):
        try:
            doc = _read_json(zf, name)
            body_text, signature = str(doc["body"]), str(doc["signature"])
        except (KeyError, ValueError, TypeError) as exc:
            problems.append(f"{name}: not a checkpoint ({exc})")
            continue
        body, found = ledger.check_checkpoint(body_text, signature, public_key)
        problems += [f"{name}: {p}" for p in found]
        if body is not None and not found:
            valid[body_text] = body
    by_size = {b["tree_size"]: b for b in valid.values()}
    sizes = sorted(by_size)
    for old, new in zip(sizes, sizes[1:], strict=False):  # consecutive pairs
        name = f"ledger/consistency/{old:012d}-{new:012d}.json"
        try:
            proof = [bytes.fromhex(h) for h in _read_json(zf, name)["proof"]]
        except KeyError:
            problems.append(f"{name}: missing; checkpoint {new} is not shown to extend checkpoint {old}")
            continue
        except (ValueError, TypeError) as exc:
            problems.append(f"{name}: unreadable ({exc})")
            continue
        if not merkle.verify_consistency(old, new, bytes.fromhex(by_size[old]["root_hash"]),
                                         bytes.fromhex(by_size[new]["root_hash"]), proof):
            problems.append(f"checkpoint {new} does not extend checkpoint {old} (the log was rewritten between them)")
    return valid, problems


def _messages_against_receipts(zf: zipfile.ZipFile, listed: dict[str, dict[str, Any]],
                               checkpoints: dict[str, dict[str, Any]], public_key: bytes,
                               expected_count: object) -> tuple[list[str], dict[str, Any]]:
    """Each message's digest, recomputed from messages.jsonl, proven by its receipt; and the send-time
    `consent` each outbound item carries (message id -> it), checked against the consent entries later."""
    judged: dict[str, Any] = {}
    if "messages.jsonl" not in listed or "messages.jsonl" not in zf.namelist():
        return ["messages.jsonl: missing"], judged
    problems = []
    count = 0
    with zf.open("messages.jsonl") as fh:
        for number, line in enumerate(io.TextIOWrapper(fh, encoding="utf-8", errors="replace"), 1):
            try:
                item = json.loads(line)
                message_id = str(item["id"])
                digest = ledger.export_item_digest(item)
                media = list(item["media"])
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                problems.append(f"messages.jsonl: line {number} is not a complete message record ({exc!r})")
                continue
            count += 1
            if item.get("consent") is not None:  # outbound items only; an inbound one may say null
                judged[message_id] = item["consent"]
            for m in media:
                path_in = m.get("export_path")
                if path_in and listed.get(path_in, {}).get("sha256") != m.get("sha256"):
                    problems.append(f"{path_in}: does not match the archived SHA-256 of message {message_id}")
            problems += _receipt_problems(
                zf, listed, f"ledger/receipts/{safe_id(message_id)}.json", "message", message_id,
                f"message {message_id}",
                "its data in messages.jsonl does not match the digest its receipt proves (the message was edited)",
                digest, checkpoints, public_key)
    if count != expected_count:
        problems.append(f"messages.jsonl: {count} messages, but the signed manifest says {expected_count}")
    return problems, judged


def _receipt_problems(zf: zipfile.ZipFile, listed: dict[str, dict[str, Any]], name: str, kind: str, record_id: str,
                      subject: str, edited: str, digest: str, checkpoints: dict[str, dict[str, Any]],
                      public_key: bytes) -> list[str]:
    """The receipt `name` proves record (`kind`, `record_id`) with `digest`, in a checkpoint of the bundle
    signed by the trusted key. `subject` names what it proves in a problem, `edited` what a wrong digest means."""
    if name not in listed:
        return [f"{subject}: no receipt in the bundle proves it"]
    try:
        receipt = _read_json(zf, name)
        record = receipt["record"]
        body = receipt["checkpoint"]["body"]
    except (KeyError, ValueError, TypeError) as exc:
        return [f"{name}: not a receipt ({exc!r})"]
    problems = []
    if record.get("kind") != kind or record.get("id") != record_id:
        problems.append(f"{name}: proves {record.get('kind')} {record.get('id')}, not {kind} {record_id}")
    if record.get("digest") != digest:
        problems.append(f"{subject}: {edited}")
    if body not in checkpoints:
        problems.append(f"{name}: its checkpoint is not one of the bundle's checkpoints signed by the trusted key")
    problems += [f"{name}: {p}" for p in receipts.verify_receipt(receipt, public_key)]
    return problems


def _reports_against_receipts(zf: zipfile.ZipFile, listed: dict[str, dict[str, Any]],
                              checkpoints: dict[str, dict[str, Any]], public_key: bytes,
                              manifest: dict[str, Any]) -> list[str]:
    """Each reconciliation report the signed manifest lists: its exact bytes hash to the digest its
    receipt proves in a checkpoint of the bundle, and it is the day and version it is listed as, of a
    day the exported period touches. A report file the manifest does not list as one is named too."""
    entries = manifest.get("reconciliation", [])
    if not isinstance(entries, list):
        return ["manifest.json: its reconciliation list is not a list"]
    problems: list[str] = []
    named = set()
    first, last = _period_days(manifest.get("query"))
    for entry in entries:
        try:
            path, receipt_name = str(entry["path"]), str(entry["receipt"])
            day, version, record_id = str(entry["date"]), entry["version"], str(entry["id"])
        except (KeyError, TypeError) as exc:
            problems.append(f"manifest.json: a reconciliation entry is incomplete ({exc!r})")
            continue
        named.add(path)
        if path not in listed or path not in zf.namelist():
            problems.append(f"{path}: the reconciliation report of {day} is missing")
            continue
        body = zf.read(path)
        digest = hashlib.sha256(body).hexdigest()
        try:
            doc = json.loads(body)
            shown = (doc["date"], doc["version"], doc["status"])
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"{path}: not a reconciliation report ({exc!r})")
            shown = None
        if shown is not None and shown != (day, version, entry.get("status")):
            problems.append(f"{path}: is the report of {shown[0]} version {shown[1]} ({shown[2]}), listed as "
                            f"{day} version {version} ({entry.get('status')})")
        if (first and day < first) or (last and day > last):
            problems.append(f"{path}: {day} is outside the exported period")
        problems += _receipt_problems(
            zf, listed, receipt_name, "reconciliation", record_id, path,
            "its bytes do not match the digest its receipt proves (the report was edited)", digest, checkpoints,
            public_key)
    for extra in sorted(n for n in listed if n.startswith("reconciliation/") and n not in named):
        problems.append(f"{extra}: not listed among the manifest's reconciliation reports")
    return problems


def _period_days(query: object) -> tuple[str | None, str | None]:
    """The first and last UTC day (YYYY-MM-DD) of the manifest's query period, as the export chose them."""
    def day(value: object, *, exclusive: bool) -> str | None:
        if not isinstance(value, str):
            return None
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return None
        when = (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
        return (when - timedelta(microseconds=1) if exclusive else when).date().isoformat()

    if not isinstance(query, dict):
        return None, None
    return day(query.get("since"), exclusive=False), day(query.get("until"), exclusive=True)




# Contacts and consent ----------------------------------------------------------------------------


def consent_entry_digest(entry: dict[str, Any]) -> str:
    """The ledger record digest of a consent entry as a bundle's contacts/<phone>.json carries it (the
    read model's entry with its dedupe key); raises KeyError, TypeError or ValueError when it is not one."""
    entry_id = entry["entry_id"]
    if not isinstance(entry_id, int) or isinstance(entry_id, bool):
        raise TypeError(f"entry_id {entry_id!r} is not an integer")
    row = {**{k: entry[k] for k in _ENTRY_FIELDS}, "id": entry_id,
           "at": datetime.fromisoformat(entry["at"]), "recorded_at": datetime.fromisoformat(entry["recorded_at"])}
    return ledger.consent_digest(row)


_ENTRY_FIELDS = ("contact_id", "phone", "business_phone_number_id", "category", "state", "source", "recorded_by",
                 "recorded_role", "evidence", "evidence_message_id", "evidence_delivery_sha256", "detail", "dedupe_key")


def _consent_against_receipts(zf: zipfile.ZipFile, listed: dict[str, dict[str, Any]],
                              checkpoints: dict[str, dict[str, Any]], public_key: bytes,
                              manifest: dict[str, Any]) -> tuple[list[str], dict[int, dict[str, Any]]]:
    """Each contacts file the signed manifest lists: every consent entry in it, its digest recomputed from
    the file, proven by its receipt; the period's log holding only entries of the period. Returns the
    problems and the entries that are proven (id -> entry)."""
    contacts = manifest.get("contacts", [])
    if not isinstance(contacts, list):
        return ["manifest.json: its contacts list is not a list"], {}
    problems: list[str] = []
    proven: dict[int, dict[str, Any]] = {}
    named = set()
    since, until = _period_bounds(manifest.get("query"))
    for contact in contacts:
        try:
            path = str(contact["path"])
            listed_ids = {str(e["entry_id"]): str(e["receipt"]) for e in contact["consent_entries"]}
        except (KeyError, TypeError) as exc:
            problems.append(f"manifest.json: a contacts entry is incomplete ({exc!r})")
            continue
        named.add(path)
        if path not in listed or path not in zf.namelist():
            problems.append(f"{path}: the contact file is missing")
            continue
        try:
            doc = _read_json(zf, path)
            log, earlier = list(doc["consent_log"]), list(doc["send_time_entries"])
        except (KeyError, ValueError, TypeError) as exc:
            problems.append(f"{path}: not a contact file ({exc!r})")
            continue
        seen = set()
        for in_period, entry in [(True, e) for e in log] + [(False, e) for e in earlier]:
            try:
                entry_id = str(entry["entry_id"])
                digest = consent_entry_digest(entry)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                problems.append(f"{path}: a consent entry is not complete ({exc!r})")
                continue
            seen.add(entry_id)
            subject = f"consent entry {entry_id} in {path}"
            if entry_id not in listed_ids:
                problems.append(f"{subject}: not listed in the manifest")
                continue
            if in_period and not _within(entry["at"], since, until):
                problems.append(f"{subject}: at {entry['at']} is outside the exported period")
            found = _receipt_problems(
                zf, listed, listed_ids[entry_id], "consent", entry_id, subject,
                "its data does not match the digest its receipt proves (the entry was edited)", digest,
                checkpoints, public_key)
            problems += found
            if not found:
                proven[int(entry_id)] = entry
        for missing in sorted(set(listed_ids) - seen):
            problems.append(f"consent entry {missing}: listed in the manifest for {path} but not in it")
    for extra in sorted(n for n in listed if n.startswith("contacts/") and n not in named):
        problems.append(f"{extra}: not listed among the manifest's contacts")
    return problems, proven


def _send_time_consent(judged: dict[str, Any], entries: dict[int, dict[str, Any]]) -> list[str]:
    """Each outbound message's send-time consent names a proven entry of the bundle in the state it
    records (or no entry for `unknown`)."""
    problems = []
    for message_id, consent in judged.items():
        subject = f"message {message_id}: its send-time consent"
        if not isinstance(consent, dict):
            problems.append(f"{subject} is not an object")
            continue
        entry_id, state = consent.get("entry_id"), consent.get("state")
        if entry_id is None:
            if state != "unknown":
                problems.append(f"{subject} is {state!r} without an entry that decided it")
            continue
        entry = entries.get(entry_id) if isinstance(entry_id, int) and not isinstance(entry_id, bool) else None
        if entry is None:
            problems.append(f"{subject} names consent entry {entry_id}, which no receipt in the bundle proves")
        elif entry.get("state") != state:
            problems.append(f"{subject} is {state!r}, but consent entry {entry_id} records {entry.get('state')!r}")
    return problems


def _period_bounds(query: object) -> tuple[datetime | None, datetime | None]:
    """The manifest's query period as aware times (None: unbounded on that side)."""
    def bound(value: object) -> datetime | None:
        try:
            when = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            return None
        return when if when is None or when.tzinfo else when.replace(tzinfo=timezone.utc)

    if not isinstance(query, dict):
        return None, None
    return bound(query.get("since")), bound(query.get("until"))


def _within(at: object, since: datetime | None, until: datetime | None) -> bool:
    try:
        when = datetime.fromisoformat(str(at))
    except ValueError:
        return False
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return (since is None or when >= since) and (until is None or when < until)
