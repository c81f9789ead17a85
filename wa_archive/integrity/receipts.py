"""Receipts: one record's leaf with its inclusion proof against a signed checkpoint, what a message's
page says of its standing in the ledger, the proofs an export bundle carries, and the offline check
of a receipt against a key from outside it."""

from __future__ import annotations

from typing import Any

import asyncpg

from wa_archive.db import ledger_candidates
from wa_archive.errors import LedgerPending
from wa_archive.integrity import checkpoints as signed_checkpoints
from wa_archive.integrity import merkle, sequencing, tree
from wa_archive.integrity.ledger import (
    check_checkpoint,
    consent_digest,
    leaf_bytes,
    message_digest,
)


async def receipt(pool: asyncpg.Pool, message_id: str, *, public_key: bytes,
                  integrate_every: float = sequencing.DEFAULT_EVERY) -> dict[str, Any]:
    """The message's current digest with an inclusion proof against the latest checkpoint signed by
    `public_key` (the archive's: credentials.ledger_trust).

    Raises LookupError when there is nothing to prove yet, LedgerPending while its leaf awaits its number."""
    row = await pool.fetchrow("SELECT * FROM messages WHERE id = $1", message_id)
    if row is None:
        raise LookupError(f"no archived message with id {message_id!r}")
    media = await pool.fetch("SELECT * FROM media WHERE message_id = $1 ORDER BY position", message_id)
    return await _receipt_of(pool, "message", message_id, message_digest(row, media), integrate_every, public_key)


async def consent_receipt(pool: asyncpg.Pool, entry_id: int, *, public_key: bytes,
                          integrate_every: float = sequencing.DEFAULT_EVERY) -> dict[str, Any]:
    """A consent entry's digest with an inclusion proof against the latest checkpoint."""
    row = await pool.fetchrow("SELECT * FROM consent_entries WHERE id = $1", entry_id)
    if row is None:
        raise LookupError(f"no consent entry with id {entry_id}")
    return await _receipt_of(pool, "consent", str(entry_id), consent_digest(row), integrate_every, public_key)


async def pending_leaf(pool: asyncpg.Pool, kind: str, record_id: str, integrate_every: float) -> None:
    """Raise LedgerPending when the record's latest state is a candidate not yet integrated (a receipt
    of an earlier leaf would prove a state the record no longer has)."""
    if await ledger_candidates.pending_since(pool, kind, record_id) is not None:
        wait = sequencing.retry_after(integrate_every)
        raise LedgerPending(
            f"pending: {kind} {record_id!r} is recorded and its ledger leaf is waiting for its number"
            f" (integrated within {wait} s); ask again then", retry_after=wait)


async def _receipt_of(pool: asyncpg.Pool, kind: str, record_id: str, digest: str,
                      integrate_every: float, public_key: bytes) -> dict[str, Any]:
    await pending_leaf(pool, kind, record_id, integrate_every)
    leaf = await pool.fetchrow("SELECT seq FROM ledger_leaves WHERE kind = $1 AND record_id = $2"
                               " ORDER BY seq DESC LIMIT 1", kind, record_id)
    if leaf is None:
        raise LookupError(f"{kind} {record_id!r} has no ledger entry")
    checkpoint = await signed_checkpoints.latest(pool, public_key, covering=leaf["seq"])
    if checkpoint is None:
        raise LookupError(f"no checkpoint covers this {kind} yet; run `wa-archive ledger checkpoint`")
    return {
        "format": "wa-archive-receipt/1",
        "record": {"kind": kind, "id": record_id, "digest": digest},
        "leaf_index": leaf["seq"],
        "inclusion_proof": await inclusion_proof(pool, leaf["seq"], checkpoint["tree_size"]),
        "checkpoint": {"body": checkpoint["body"], "signature": checkpoint["signature"]},
    }


async def inclusion_proof(pool: asyncpg.Pool, index: int, tree_size: int) -> list[str]:
    """The inclusion proof (hex) of leaf `index` in the tree of `tree_size` leaves, read through the tiles."""
    log = await tree.load(pool, tree_size, indices=[index])
    return [h.hex() for h in log.inclusion_proofs([index])[index]]


async def message_standing(pool: asyncpg.Pool, message_id: str, public_key: bytes) -> dict[str, Any] | None:
    """Where a message stands in the ledger, as its page tells an auditor: its record digest today, the
    latest leaf that vouches for it (and whether the two still agree), and the latest signed checkpoint
    whose tree includes that leaf (None until one is signed). None when the message is not archived."""
    row = await pool.fetchrow("SELECT * FROM messages WHERE id = $1", message_id)
    if row is None:
        return None
    media = await pool.fetch("SELECT * FROM media WHERE message_id = $1 ORDER BY position", message_id)
    digest = message_digest(row, media)
    leaf = await pool.fetchrow("SELECT seq, digest, appended_at FROM ledger_leaves WHERE kind = 'message'"
                               " AND record_id = $1 ORDER BY seq DESC LIMIT 1", message_id)
    # A leaf written with the record and not yet numbered: in the ledger, without a place in it yet.
    since = await ledger_candidates.pending_since(pool, "message", message_id)
    pending = None if since is None else {"since": since.isoformat()}
    if leaf is None:
        return {"digest": digest, "leaf": None, "checkpoint": None, "pending": pending}
    checkpoint = await signed_checkpoints.latest(pool, public_key, covering=leaf["seq"])
    return {
        "digest": digest,
        "leaf": {"index": leaf["seq"], "digest": leaf["digest"], "unchanged": leaf["digest"] == digest,
                 "appended_at": leaf["appended_at"].isoformat()},
        "checkpoint": None if checkpoint is None else {
            "tree_size": checkpoint["tree_size"], "signed_at": checkpoint["created_at"].isoformat()},
        "pending": pending,
    }


Receipts = dict[str, dict[str, Any]]  # record id -> its receipt document


async def bundle_proofs(pool: asyncpg.Pool, digests: dict[str, str], others: dict[str, dict[str, str]] | None = None,
                        *, public_key: bytes) -> tuple[list[dict[str, Any]], Receipts, dict[str, Receipts]]:
    """Every checkpoint signed by `public_key` (each with a consistency proof from the one before), a
    receipt per exported message (id -> the digest of the state exported), and one per other exported
    record (`others`: kind -> record id -> its digest, e.g. reconciliation reports and consent entries;
    answered by kind), each against the latest checkpoint, where it covers the leaf.

    The tree is read once, through its tiles, for all of them; a record whose exported state has no
    covered leaf gets none.
    """
    checkpoints = [{"tree_size": r["tree_size"], "body": r["body"], "signature": r["signature"]}
                   for r in await signed_checkpoints.every(pool, public_key)]
    if not checkpoints:
        return [], {}, {}
    latest = checkpoints[-1]

    async def leaves_of(kind: str, wanted: dict[str, str]) -> list[asyncpg.Record]:
        # The leaf of the exact state exported: a message updated since has a later leaf too.
        return list(await pool.fetch(
            "SELECT DISTINCT ON (record_id) record_id, seq, digest FROM ledger_leaves"
            " WHERE kind = $4 AND record_id = ANY($1::text[]) AND digest = ($2::jsonb ->> record_id)"
            " AND seq < $3 ORDER BY record_id, seq DESC",
            list(wanted), wanted, latest["tree_size"], kind))

    found = {kind: await leaves_of(kind, wanted)
             for kind, wanted in [("message", digests), *(others or {}).items()] if wanted}
    # Subtree hashes are kept once computed, so all the proofs share the large siblings.
    log = await tree.load(pool, latest["tree_size"], indices=[r["seq"] for rows in found.values() for r in rows],
                          sizes=[c["tree_size"] for c in checkpoints])
    for previous, current in zip(checkpoints, checkpoints[1:], strict=False):  # consecutive pairs
        current["consistency"] = {
            "from_tree_size": previous["tree_size"],
            "proof": [h.hex() for h in log.consistency_proof(previous["tree_size"], current["tree_size"])]}

    def receipts_of(kind: str) -> dict[str, dict[str, Any]]:
        rows = found.get(kind, [])
        proofs = log.inclusion_proofs([r["seq"] for r in rows])
        return {
            r["record_id"]: {
                "format": "wa-archive-receipt/1",
                "record": {"kind": kind, "id": r["record_id"], "digest": r["digest"]},
                "leaf_index": r["seq"],
                "inclusion_proof": [h.hex() for h in proofs[r["seq"]]],
                "checkpoint": {"body": latest["body"], "signature": latest["signature"]},
            }
            for r in rows
        }

    return (checkpoints, receipts_of("message"),
            {kind: receipts_of(kind) for kind, wanted in (others or {}).items() if wanted})


def verify_receipt(doc: dict[str, Any], trusted_public_key: bytes) -> list[str]:
    """Problems with a receipt (empty when it proves the record is in a tree signed by the trusted key).

    The key written inside the receipt is never trusted: a receipt re-signed with any other key fails.
    A receipt is anyone's file: whatever its fields hold, the answer is a list of problems, never an error.
    """
    try:
        return _verify_receipt(doc, trusted_public_key)
    except Exception as exc:  # noqa: BLE001 - fields of types or text no proof has: named, not raised
        return [f"not a receipt ({type(exc).__name__}: {str(exc)[:200]})"]


def _verify_receipt(doc: dict[str, Any], trusted_public_key: bytes) -> list[str]:
    try:
        body = doc["checkpoint"]["body"]
        signature = doc["checkpoint"]["signature"]
        record = doc["record"]
        kind, record_id, digest = str(record["kind"]), str(record["id"]), str(record["digest"])
        proof = [bytes.fromhex(h) for h in doc["inclusion_proof"]]
        index = doc["leaf_index"]
        if not isinstance(index, int) or isinstance(index, bool):
            raise ValueError(f"leaf_index {index!r} is not an integer")
    except (KeyError, ValueError, TypeError) as exc:
        return [f"not a receipt: {exc!r}"]
    parsed, found = check_checkpoint(body, signature, trusted_public_key)
    if parsed is None:
        return [f"the receipt's checkpoint: {found[0]}"]
    problems = [f"the receipt's checkpoint: {p}" for p in found]
    leaf = merkle.leaf_hash(leaf_bytes(kind, record_id, digest))
    if not merkle.verify_inclusion(index, parsed["tree_size"], leaf, proof, bytes.fromhex(parsed["root_hash"])):
        problems.append(f"record {record_id} with digest {digest} is not leaf {index} of the signed tree")
    return problems
