"""The tamper-evident ledger: every archived record becomes a leaf of an append-only Merkle log.

A leaf is appended in the same transaction as its record, so a record without a leaf, or a leaf
whose record no longer matches, is evidence of a change made behind the archive's back. It is
appended as a candidate, which the integrator numbers into the log a moment later (sequencing.py), so
writers never wait on each other. Signed
checkpoints (tree size, root hash, time; Ed25519) are written write-once to the object store, so
the log cannot be rewritten without the signatures failing. Receipts (receipts.py) prove one record's leaf is in
a signed tree, offline.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog

from wa_archive.db import ledger_candidates
from wa_archive.db.stalls import unstalled
from wa_archive.errors import StorageConflict
from wa_archive.integrity import sequencing, tree

if TYPE_CHECKING:
    from wa_archive.storage.base import ObjectStore

log = structlog.get_logger("wa_archive.ledger")

KINDS = ("message", "template_snapshot", "status_event", "failure", "access", "disposition", "reconciliation",
         "consent", "message_consent")


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leaf_bytes(kind: str, record_id: str, digest: str) -> bytes:
    return canonical({"kind": kind, "id": record_id, "digest": digest})


# Record digests: what of each record the ledger vouches for -----------------------------------


def message_digest(row: asyncpg.Record | dict[str, Any], media: list[asyncpg.Record] | list[dict[str, Any]]) -> str:
    return sha256_hex(canonical({
        "id": row["id"], "source": row["source"], "direction": row["direction"], "type": row["type"],
        "ts": row["ts"].astimezone(timezone.utc).isoformat(), "contact": [row["contact_phone"], row["contact_wa_id"],
        row["contact_user_id"], row["contact_username"], row["contact_name"]], "text": row["text"],
        "related": row["related_message_id"], "flags": list(row["flags"]), "status": row["archive_status"],
        "payload_sha256": sha256_hex(canonical(row["payload"])), "template_sha256": row["template_sha256"],
        "media": [[m["position"], m["media_id"], m["status"], m["sha256"], m["storage_key"], m["size"]] for m in media],
    }))


def export_item_digest(item: dict[str, Any]) -> str:
    """The record digest of a message as an export bundle's messages.jsonl carries it.

    Built only from the fields a reader sees, so a changed text, time or media hash changes it.
    """
    row = {
        "id": item["id"], "source": item["source"], "direction": item["direction"], "type": item["type"],
        "ts": datetime.fromisoformat(item["timestamp"]), "contact_phone": item["contact"]["phone"],
        "contact_wa_id": item["contact"]["wa_id"], "contact_user_id": item["contact"]["user_id"],
        "contact_username": item["contact"]["username"], "contact_name": item["contact"]["name"],
        "text": item["text"], "related_message_id": item["related_message_id"], "flags": item["flags"],
        "archive_status": item["archive_status"], "payload": item["payload"],
        "template_sha256": item["template_sha256"],
    }
    media = [{"position": m["position"], "media_id": m["id"], "status": m["status"], "sha256": m["sha256"],
              "storage_key": m["storage_key"], "size": m["size"]} for m in item["media"]]
    return message_digest(row, media)


def access_digest(row: asyncpg.Record | dict[str, Any]) -> str:
    fields = {"id": row["id"], "at": row["at"].astimezone(timezone.utc).isoformat(), "actor": row["actor"],
              "role": row["role"], "action": row["action"], "target": row["target"], "remote": row["remote_addr"]}
    # A refused attempt says so in its digest; an allowed read keeps the digest it had before the
    # outcome column existed, so every leaf already in the ledger still matches its row.
    if row.get("outcome", "allowed") != "allowed":
        fields["outcome"] = row["outcome"]
    return sha256_hex(canonical(fields))


def access_digest_parts(*, actor: str, role: str, action: str, target: dict[str, Any], remote_addr: str | None,
                        outcome: str) -> tuple[str, str]:
    """The canonical text access_digest() hashes, around the two fields the database assigns as it
    inserts the entry: the text before its time, and the text after its id. With the keys sorted,
    `at` and `id` sit together between `actor` and the rest, so an insert can hash the whole entry in
    the same statement (db/access_log.py, INSERT_WITH_LEAF)."""
    head = {"action": action, "actor": actor}
    tail: dict[str, Any] = {"remote": remote_addr, "role": role, "target": target}
    if outcome != "allowed":  # as in access_digest(): only a refusal names its outcome
        tail["outcome"] = outcome
    return canonical(head)[:-1].decode() + ',"at":', "," + canonical(tail)[1:].decode()


def status_digest(row: asyncpg.Record | dict[str, Any]) -> str:
    return sha256_hex(canonical({"id": row["id"], "message_id": row["message_id"], "status": row["status"],
                                 "raw_timestamp": row["raw_timestamp"],
                                 "payload_sha256": sha256_hex(canonical(row["payload"]))}))


def snapshot_digest(row: asyncpg.Record | dict[str, Any]) -> str:
    return sha256_hex(canonical({"sha256": row["sha256"], "canonical_sha256": sha256_hex(row["canonical"].encode()),
                                 "name": row["name"], "language": row["language"]}))


def failure_digest(row: asyncpg.Record | dict[str, Any]) -> str:
    return sha256_hex(canonical({"id": row["id"], "message_id": row["message_id"], "stage": row["stage"],
                                 "media_id": row["media_id"], "run_id": row["run_id"],
                                 "attempts_sha256": sha256_hex(canonical(row["attempts"]))}))


def disposition_digest(row: asyncpg.Record | dict[str, Any]) -> str:
    return sha256_hex(canonical({
        "id": row["id"], "message_id": row["message_id"], "at": row["disposed_at"].astimezone(timezone.utc).isoformat(),
        "reason": row["reason"], "policy_id": row["policy_id"], "erasure_request_id": row["erasure_request_id"],
        "retain_until": row["retain_until"].astimezone(timezone.utc).isoformat(), "record": row["record"]}))


def reconciliation_digest(row: asyncpg.Record | dict[str, Any]) -> str:
    """A reconciliation report is vouched for by the hash of its exact stored bytes."""
    return sha256_hex(str(row["body"]).encode())


def _utc(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value is not None else None


def consent_digest(row: asyncpg.Record | dict[str, Any]) -> str:
    """Every column of a consent entry that says who agreed to what, when, on what evidence and who
    recorded it; the source's own detail by its hash."""
    return sha256_hex(canonical({
        "id": row["id"], "contact_id": row["contact_id"], "phone": row["phone"],
        "business_phone_number_id": row["business_phone_number_id"], "category": row["category"],
        "state": row["state"], "source": row["source"], "at": _utc(row["at"]), "recorded_at": _utc(row["recorded_at"]),
        "recorded_by": row["recorded_by"], "recorded_role": row["recorded_role"], "evidence": row["evidence"],
        "evidence_message_id": row["evidence_message_id"],
        "evidence_delivery_sha256": row["evidence_delivery_sha256"],
        "detail_sha256": sha256_hex(canonical(row["detail"])), "dedupe_key": row["dedupe_key"]}))


def message_consent_digest(row: asyncpg.Record | dict[str, Any]) -> str:
    """An outbound message's send-time consent: the state, the entry that decided it, and when."""
    return sha256_hex(canonical({
        "message_id": row["message_id"], "contact_id": row["contact_id"], "state": row["state"],
        "entry_id": row["entry_id"], "at": _utc(row["at"]), "category": row["category"],
        "template_category": row["template_category"], "judged_at": _utc(row["judged_at"])}))


# Appending ----------------------------------------------------------------------------------


async def append(conn: asyncpg.Connection, kind: str, record_id: str, digest: str) -> int:
    """Append one leaf inside the caller's transaction, as a candidate the integrator numbers later
    (durable when the record is); returns the candidate's id, not a leaf number."""
    # A plain INSERT of the three fields: the integrator computes the leaf hash (as leaf_bytes() and
    # merkle.leaf_hash() do) when it numbers the leaf; the application may not write leaves or the head.
    return await ledger_candidates.add(conn, kind, record_id, digest)


async def append_message(conn: asyncpg.Connection, message_id: str) -> int:
    row = await conn.fetchrow("SELECT * FROM messages WHERE id = $1", message_id)
    media = await conn.fetch("SELECT * FROM media WHERE message_id = $1 ORDER BY position", message_id)
    return await append(conn, "message", message_id, message_digest(row, media))


async def leaf_hashes(pool: asyncpg.Pool, size: int | None = None) -> list[bytes]:
    """Every leaf hash of the log (or of its first `size` leaves): what `verify` recomputes from. A root
    or a proof reads the tiles instead (tree.py)."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch("SELECT leaf_hash FROM ledger_leaves WHERE ($1::bigint IS NULL OR seq < $1)"
                                " ORDER BY seq", size)
    return [bytes(r["leaf_hash"]) for r in rows]


# Signing and checkpoints -----------------------------------------------------------------------


class Signer:
    """The archive's Ed25519 key (from the cryptography package, imported only where needed)."""

    def __init__(self, seed: bytes) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self._key = Ed25519PrivateKey.from_private_bytes(seed)

    @classmethod
    def generate_seed(cls) -> bytes:
        import os

        return os.urandom(32)

    def public_key(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


def parse_public_key(text: str) -> bytes:
    """A trusted Ed25519 public key as `wa-archive ledger public-key` prints it (base64), or as hex."""
    import binascii

    value = text.strip()
    try:
        raw = bytes.fromhex(value) if len(value) == 64 else base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != 32:
        raise ValueError("a ledger public key is 32 bytes, as base64 (44 characters, what "
                         "`wa-archive ledger public-key` prints) or hex (64 characters)")
    return raw


def verify_signature(public_key: bytes, data: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


CHECKPOINT_PREFIX = "ledger/checkpoints/"


def checkpoint_key(tree_size: int) -> str:
    """Where the write-once copy of the checkpoint of this tree size lives in the store."""
    return f"{CHECKPOINT_PREFIX}{tree_size:012d}.json"


def checkpoint_document(body: str, signature: str) -> bytes:
    """The exact bytes kept in the store for a checkpoint (the database row must reproduce them)."""
    return canonical({"body": body, "signature": signature})


def check_checkpoint(body: str, signature: str, public_key: bytes | None) -> tuple[dict[str, Any] | None, list[str]]:
    """A checkpoint's parsed body and its problems, its signature checked against the trusted key.

    The key written inside the body is never what decides: with no trusted key it is only
    checked for self-consistency (callers that verify for an auditor always pass one).
    """
    try:
        parsed = json.loads(body)
        size, root_hex = parsed["tree_size"], parsed["root_hash"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"tree size {size!r}")
        bytes.fromhex(root_hex)
        raw_signature = base64.b64decode(signature, validate=True)
        own_key = base64.b64decode(parsed.get("public_key", ""))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:  # nested past the parser too
        return None, [f"not a checkpoint ({type(exc).__name__}: {str(exc)[:200]})"]
    problems = []
    if public_key is not None and own_key != public_key:
        problems.append("signed by a different key than the one trusted")
    if not verify_signature(public_key if public_key is not None else own_key, body.encode(), raw_signature):
        problems.append("signature not valid" + (" for the trusted key" if public_key is not None else ""))
    return parsed, problems


async def write_checkpoint(pool: asyncpg.Pool, store: ObjectStore, signer: Signer) -> dict[str, Any] | None:
    """Integrate what is pending, then sign the tree head and keep it write-once in the store; None
    when nothing was added. What is signed is read from the integrated leaves only, so a checkpoint
    never covers a leaf that is not in the log.

    A row already at this size that the archive did not sign (the application role may insert rows;
    integrity/checkpoints.py) is not taken for this checkpoint: it is signed and stored all the same, and
    the row is reported (`checkpoint_row_not_the_archives`), as `verify` reports it."""
    from wa_archive.integrity import checkpoints as signed_checkpoints

    await sequencing.integrate(pool)  # which also writes the tiles of the blocks it completed
    integrated = await tree.load(pool)
    size = integrated.size
    if not size:
        return None
    public_key = signer.public_key()
    at_size = await signed_checkpoints.at_size(pool, size)
    if at_size is not None and signed_checkpoints.signed_by(at_size, public_key):
        return None  # nothing was added since the last one
    root_hex = integrated.root().hex()
    body = canonical({"tree_size": size, "root_hash": root_hex,
                      "timestamp": datetime.now(timezone.utc).isoformat(),
                      "public_key": base64.b64encode(public_key).decode()})
    signature = base64.b64encode(signer.sign(body)).decode()
    key = checkpoint_key(size)
    document = checkpoint_document(body.decode(), signature)

    async def chunks() -> AsyncIterator[bytes]:
        yield document

    recorded_body, recorded_signature = body.decode(), signature
    try:
        await store.put_stream(key, chunks(), content_type="application/json", metadata={"tree-size": str(size)},
                               expected_sha256=None, retain_until=datetime.now(timezone.utc) + timedelta(days=3650))
    except StorageConflict:
        # This size was signed and stored before: by another writer a moment ago, or by a run that
        # stopped before its row (its retries would otherwise conflict for as long as the log stays
        # this size). The stored one is recorded, once checked to be the archive's, of this same tree.
        stored = await _stored_checkpoint(store, key, size, root_hex, public_key)
        if at_size is not None:
            _not_the_archives(at_size, key)
            return None
        recorded_body, recorded_signature = stored
    await unstalled(pool, lambda conn: conn.execute(
        "INSERT INTO ledger_checkpoints (tree_size, root_hash, body, signature, storage_key) VALUES ($1,$2,$3,$4,$5)"
        " ON CONFLICT DO NOTHING", size, root_hex, recorded_body, recorded_signature, key))
    recorded = await signed_checkpoints.at_size(pool, size)
    if recorded is not None and not signed_checkpoints.signed_by(recorded, public_key):
        _not_the_archives(recorded, key)
    return {"tree_size": size, "root_hash": root_hex, "storage_key": key}


async def _stored_checkpoint(store: ObjectStore, key: str, size: int, root_hex: str,
                             public_key: bytes) -> tuple[str, str]:
    """The body and signature of the checkpoint stored under `key`; StorageConflict unless it is signed
    by `public_key` over this tree (size and root)."""
    from wa_archive.integrity import checkpoints as signed_checkpoints

    raw = b"".join([part async for part in store.read(key)])
    try:
        doc = json.loads(raw)
        body, signature = str(doc["body"]), str(doc["signature"])
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageConflict(f"{key} holds something else than a checkpoint") from exc
    if not signed_checkpoints.signed_by(
            {"tree_size": size, "root_hash": root_hex, "body": body, "signature": signature}, public_key):
        raise StorageConflict(f"{key} holds a checkpoint that is not the archive's of this tree")
    return body, signature


def _not_the_archives(row: asyncpg.Record, stored_as: str) -> None:
    log.critical("checkpoint_row_not_the_archives", tree_size=row["tree_size"], storage_key=stored_as,
                 hint="a row of ledger_checkpoints the archive did not sign holds this size; its checkpoint is"
                      " in the store only; run `wa-archive verify` and look into who can write the database")
