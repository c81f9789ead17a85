"""Verifying the whole archive against its ledger: every leaf against its record, every record that
is written only with its leaf against the log, removals against their disposition records, every
signed checkpoint against the log and its write-once copy in the store, and the stored objects
against their SHA-256 (`wa-archive verify`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg

from wa_archive.db import ledger_candidates, ledger_tiles
from wa_archive.integrity import merkle, sequencing
from wa_archive.integrity.ledger import (
    CHECKPOINT_PREFIX,
    access_digest,
    check_checkpoint,
    checkpoint_document,
    checkpoint_key,
    consent_digest,
    disposition_digest,
    failure_digest,
    leaf_bytes,
    leaf_hashes,
    message_consent_digest,
    message_digest,
    reconciliation_digest,
    snapshot_digest,
    status_digest,
)

if TYPE_CHECKING:
    from wa_archive.storage.base import ObjectStore

_RECORDS = {
    "template_snapshot": ("SELECT * FROM template_snapshots WHERE sha256 = ANY($1::text[])", "sha256", snapshot_digest),
    "status_event": ("SELECT * FROM status_events WHERE id::text = ANY($1::text[])", "id", status_digest),
    "failure": ("SELECT * FROM archive_failures WHERE id::text = ANY($1::text[])", "id", failure_digest),
    "access": ("SELECT * FROM access_log WHERE id::text = ANY($1::text[])", "id", access_digest),
    "disposition": ("SELECT * FROM dispositions WHERE id::text = ANY($1::text[])", "id", disposition_digest),
    "reconciliation": ("SELECT * FROM reconciliation_reports WHERE id::text = ANY($1::text[])", "id",
                       reconciliation_digest),
    "consent": ("SELECT * FROM consent_entries WHERE id::text = ANY($1::text[])", "id", consent_digest),
    "message_consent": ("SELECT * FROM message_consent WHERE message_id = ANY($1::text[])", "message_id",
                        message_consent_digest),
}
# Records that are written only with their leaf, so a row without one was added behind the
# archive's back: (kind, SQL listing every row's id).
_LEAF_REQUIRED = {
    "consent": "SELECT id::text AS id FROM consent_entries",
    "message_consent": "SELECT message_id AS id FROM message_consent",
}


async def _disposed(pool: asyncpg.Pool, latest: dict[tuple[str, str], str]
                    ) -> tuple[dict[tuple[str, str], str | None], list[str]]:
    """Records removed by disposition, with the digest each had (their leaves may outlive them),
    and the dispositions rows that cannot vouch for a removal.

    A dispositions row vouches only when its own ledger leaf carries its digest: disposal always
    appends one, so a row without it was written outside the disposal path and is named, and the
    records of a row that no longer matches its leaf map to None (claimed, not proven).
    """
    gone: dict[tuple[str, str], str | None] = {}
    problems: list[str] = []
    for row in await pool.fetch("SELECT * FROM dispositions ORDER BY id"):
        recorded = latest.get(("disposition", str(row["id"])))
        if recorded is None:
            problems.append(f"disposition {row['id']} of message {row['message_id']}: not in the ledger"
                            " (written outside the disposal path); the removal it claims is not accepted")
            continue
        vouched = recorded == disposition_digest(row)  # a mismatch is named with the disposition records
        record = row["record"]
        try:
            gone[("message", row["message_id"])] = str(record["message_digest"]) if vouched else None
            for kind, key in (("status_event", "status_events"), ("failure", "failures"),
                              ("message_consent", "message_consent")):
                for item in record.get(key, []):
                    gone[(kind, str(item["id"]))] = str(item["digest"]) if vouched else None
        except (KeyError, TypeError, AttributeError):
            problems.append(f"disposition {row['id']} of message {row['message_id']}: its record does not say"
                            " what was removed")
    return gone, problems


async def verify_log(pool: asyncpg.Pool, public_key: bytes | None, *,
                     pending_bound: float = sequencing.pending_bound(sequencing.DEFAULT_EVERY)) -> list[str]:
    """Recompute every record's digest and every checkpoint; problems name the exact record.

    A record whose leaf is still a candidate is vouched for by it; candidates left waiting longer than
    `pending_bound` seconds are a problem of their own (the integrator is not running)."""
    problems: list[str] = []
    # One snapshot for both: a batch integrated between two reads would otherwise be in neither.
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        leaves = await conn.fetch("SELECT seq, kind, record_id, digest, leaf_hash FROM ledger_leaves ORDER BY seq")
        candidates = await ledger_candidates.all_pending(conn)
        tiles = await ledger_tiles.all_tiles(conn)
        now = await conn.fetchval("SELECT clock_timestamp()")
    for i, leaf in enumerate(leaves):
        if leaf["seq"] != i:
            problems.append(f"ledger leaf {i} is missing (next is {leaf['seq']})")
            break
        if bytes(leaf["leaf_hash"]) != merkle.leaf_hash(leaf_bytes(leaf["kind"], leaf["record_id"], leaf["digest"])):
            problems.append(f"ledger leaf {leaf['seq']} ({leaf['kind']} {leaf['record_id']}) was altered")
    latest: dict[tuple[str, str], str] = {}
    for leaf in leaves:
        latest[(leaf["kind"], leaf["record_id"])] = leaf["digest"]
    problems += _check_candidates(candidates, now, pending_bound)
    for candidate in candidates:  # integrated after every leaf, so each is its record's latest entry
        latest[(candidate["kind"], candidate["record_id"])] = candidate["digest"]
    # Messages: every row must have a leaf, and match the latest one.
    rows = await pool.fetch("SELECT * FROM messages")
    media = await pool.fetch("SELECT * FROM media ORDER BY message_id, position")
    by_msg: dict[str, list[asyncpg.Record]] = {}
    for m in media:
        by_msg.setdefault(m["message_id"], []).append(m)
    present = set()
    for row in rows:
        present.add(row["id"])
        digest = latest.get(("message", row["id"]))
        if digest is None:
            problems.append(f"message {row['id']}: not in the ledger (added outside the archive)")
        elif digest != message_digest(row, by_msg.get(row["id"], [])):
            problems.append(f"message {row['id']}: changed since it was archived (row or its media)")
    disposed, unvouched = await _disposed(pool, latest)
    problems += unvouched

    def removed(kind: str, record_id: str) -> None:
        if (kind, record_id) not in disposed:
            problems.append(f"{kind} {record_id}: deleted (its ledger entry remains)")
        elif disposed[(kind, record_id)] != latest[(kind, record_id)]:
            problems.append(f"{kind} {record_id}: disposed, but the disposition record does not match its ledger entry")

    for (kind, record_id) in latest:
        if kind == "message" and record_id not in present:
            removed(kind, record_id)
    for kind, (sql, key, digest_fn) in _RECORDS.items():
        ids = [rid for (k, rid) in latest if k == kind]
        found = {str(r[key]): r for r in await pool.fetch(sql, ids)} if ids else {}
        for rid in ids:
            row = found.get(rid)
            if row is None:
                removed(kind, rid)
            elif digest_fn(row) != latest[(kind, rid)]:
                problems.append(f"{kind} {rid}: changed since it was recorded")
    for kind, sql in _LEAF_REQUIRED.items():
        for r in await pool.fetch(sql):
            if (kind, r["id"]) not in latest:
                problems.append(f"{kind} {r['id']}: not in the ledger (added outside the archive)")
    hashes = [bytes(leaf["leaf_hash"]) for leaf in leaves]
    checkpoints = [(cp["tree_size"], cp["body"], cp["signature"])
                   for cp in await pool.fetch("SELECT * FROM ledger_checkpoints ORDER BY tree_size")]
    problems += check_checkpoints_against_log(checkpoints, hashes, public_key, where="")
    problems += check_tiles_against_log(tiles, hashes)
    return problems


def check_tiles_against_log(tiles: list[tuple[int, bytes]], hashes: list[bytes]) -> list[str]:
    """Each stored tile against the root of its block of leaves: roots and proofs are read through
    the tiles, so a tile changed behind the archive's back (it takes superuser rights) is named."""
    problems: list[str] = []
    size = ledger_tiles.TILE
    for tile, stored in tiles:
        first, end = tile * size, (tile + 1) * size
        if end > len(hashes):
            problems.append(f"ledger tile {tile} (leaves {first} to {end - 1}): the log has only {len(hashes)} leaves")
        elif merkle.root(hashes[first:end]) != stored:
            problems.append(f"ledger tile {tile} (leaves {first} to {end - 1}) does not match its leaves")
    return problems


def _check_candidates(candidates: list[asyncpg.Record], now: datetime, bound: float) -> list[str]:
    """Candidates waiting longer than the bound (a candidate has no hash of its own to check: the
    integrator computes its leaf hash from its fields)."""
    problems: list[str] = []
    late = [c for c in candidates if (now - c["appended_at"]).total_seconds() > bound]
    if late:
        oldest = (now - min(c["appended_at"] for c in late)).total_seconds()
        problems.append(f"{len(late)} ledger candidate(s) waiting longer than {bound:g} s to be integrated"
                        f" (the oldest for {oldest:.0f} s): is the wa-archive-ledger-integrate schedule running?")
    return problems


def check_checkpoints_against_log(checkpoints: list[tuple[int, str, str]], hashes: list[bytes],
                                  public_key: bytes | None, *, where: str) -> list[str]:
    """Each checkpoint's signature, its root against the log's leaves, and each one extending the last."""
    problems: list[str] = []
    previous = None
    for size, body_text, signature in checkpoints:
        body, found = check_checkpoint(body_text, signature, public_key)
        problems += [f"checkpoint {size}{where}: {p}" for p in found]
        if body is None:
            continue
        if body["tree_size"] != size:
            problems.append(f"checkpoint {size}{where}: its signed body says tree size {body['tree_size']}")
            continue
        if size > len(hashes):
            problems.append(f"checkpoint {size}{where}: the log has only {len(hashes)} leaves")
            continue
        if merkle.root(hashes[:size]).hex() != body["root_hash"]:
            problems.append(f"checkpoint {size}{where}: root does not match the log")
        if previous is not None:
            proof = merkle.consistency_proof(previous[0], hashes[:size])
            if not merkle.verify_consistency(previous[0], size, bytes.fromhex(previous[1]),
                                             bytes.fromhex(body["root_hash"]), proof):
                problems.append(f"checkpoint {size}{where} does not extend checkpoint {previous[0]}")
        previous = (size, body["root_hash"])
    return problems


async def verify_checkpoint_copies(pool: asyncpg.Pool, store: ObjectStore, public_key: bytes | None) -> list[str]:
    """The database's checkpoints against their write-once copies in the store, and the store's
    copies against the log: a rewrite done with database access alone no longer matches them."""
    problems: list[str] = []
    rows = {r["tree_size"]: checkpoint_document(r["body"], r["signature"])
            for r in await pool.fetch("SELECT tree_size, body, signature FROM ledger_checkpoints")}
    stored: dict[int, bytes] = {}
    for key in await store.list_keys(CHECKPOINT_PREFIX):
        name = key[len(CHECKPOINT_PREFIX):]
        if not (name.endswith(".json") and name[:-5].isdigit()):
            continue
        stored[int(name[:-5])] = b"".join([chunk async for chunk in store.read(key)])
    for size in sorted(rows):
        if size not in stored:
            problems.append(f"checkpoint {size}: missing from the store ({checkpoint_key(size)})")
        elif stored[size] != rows[size]:
            problems.append(f"checkpoint {size}: differs from its write-once copy in the store")
    for size in sorted(set(stored) - set(rows)):
        problems.append(f"checkpoint {size}: in the store but not in the database (the database's list shrank)")
    copies: list[tuple[int, str, str]] = []
    for size in sorted(stored):
        try:
            doc = json.loads(stored[size])
            copies.append((size, str(doc["body"]), str(doc["signature"])))
        except (ValueError, KeyError, TypeError):
            problems.append(f"checkpoint {size} in the store: not a checkpoint document")
    hashes = await leaf_hashes(pool)
    problems += check_checkpoints_against_log(copies, hashes, public_key, where=" in the store")
    return problems


async def verify_objects(pool: asyncpg.Pool, store: ObjectStore, *, sample: int | None,
                         on_progress: Callable[[int, int, int], None] | None = None) -> list[str]:
    """Re-hash archived objects (all, or a random sample), streaming."""
    sql = "SELECT message_id, storage_key, sha256, size FROM media WHERE status = 'archived'"
    rows = await pool.fetch(sql + (" ORDER BY random() LIMIT $1" if sample else " ORDER BY stored_at"),
                            *([sample] if sample else []))
    problems, done_bytes = [], 0
    for n, row in enumerate(rows, 1):
        hasher = hashlib.sha256()
        try:
            async for chunk in store.read(row["storage_key"]):
                hasher.update(chunk)
                done_bytes += len(chunk)
        except Exception as exc:  # noqa: BLE001 - a missing object is a finding
            problems.append(f"message {row['message_id']}: object {row['storage_key']} missing or unreadable ({exc!r})")
            continue
        if hasher.hexdigest() != row["sha256"]:
            problems.append(f"message {row['message_id']}: object {row['storage_key']} was replaced "
                            f"(SHA-256 {hasher.hexdigest()} instead of {row['sha256']})")
        if on_progress:
            on_progress(n, len(rows), done_bytes)
    return problems
