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
from wa_archive.db.paging import pages
from wa_archive.integrity import log_check, sequencing
from wa_archive.integrity.ledger import (
    CHECKPOINT_PREFIX,
    access_digest,
    checkpoint_document,
    checkpoint_key,
    consent_digest,
    disposition_digest,
    failure_digest,
    message_consent_digest,
    message_digest,
    reconciliation_digest,
    snapshot_digest,
    status_digest,
)

if TYPE_CHECKING:
    from wa_archive.storage.base import ObjectStore

# What verify reads per query: a page of rows (messages with their media, leaves, records), so its
# memory follows the page and not the archive. Tests pass a small one to cross many page boundaries.
CHUNK = 2000

# Records with leaves of their own kind: (table, primary key, digest of a row); a leaf's record_id is
# the key as text.
_RECORDS: dict[str, tuple[str, str, Callable[[asyncpg.Record], str]]] = {
    "template_snapshot": ("template_snapshots", "sha256", snapshot_digest),
    "status_event": ("status_events", "id", status_digest),
    "failure": ("archive_failures", "id", failure_digest),
    "access": ("access_log", "id", access_digest),
    "disposition": ("dispositions", "id", disposition_digest),
    "reconciliation": ("reconciliation_reports", "id", reconciliation_digest),
    "consent": ("consent_entries", "id", consent_digest),
    "message_consent": ("message_consent", "message_id", message_consent_digest),
}
# Records that are written only with their leaf, so a row without one was added behind the
# archive's back.
_LEAF_REQUIRED = ("consent", "message_consent")

# A table's rows (alias t) with the digest of their record's latest leaf ($2: the kind), NULL when it
# has none: one probe of ledger_leaves_record (kind, record_id, seq DESC) per row.
_WITH_LATEST = ("SELECT t.*, (SELECT l.digest FROM ledger_leaves l WHERE l.kind = $2 AND l.record_id = t.{key}::text"
                " ORDER BY l.seq DESC LIMIT 1) AS ledger_digest FROM {table} t")

Pending = dict[tuple[str, str], str]  # (kind, record_id) -> digest of its latest leaf candidate


async def verify_log(pool: asyncpg.Pool, public_key: bytes | None, *,
                     pending_bound: float = sequencing.pending_bound(sequencing.DEFAULT_EVERY),
                     chunk: int = CHUNK) -> list[str]:
    """Recompute every record's digest and every checkpoint; problems name the exact record.

    A record whose leaf is still a candidate is vouched for by it; candidates left waiting longer than
    `pending_bound` seconds are a problem of their own (the integrator is not running). Everything is
    read `chunk` rows at a time; what is held whole is named where it is read (candidates,
    checkpoints, removals by disposition)."""
    # One snapshot for every read: a batch integrated, or a record written, between two reads would
    # otherwise be seen by one and not the other.
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        candidates = await ledger_candidates.all_pending(conn)  # few: each waits a couple of seconds
        now = await conn.fetchval("SELECT clock_timestamp()")
        checkpoints = await log_check.checkpoints(conn)
        tiles = dict(await ledger_tiles.all_tiles(conn))  # 32 bytes per 256 leaves
        log = await log_check.check_leaves(conn, {size for size, _, _ in checkpoints}, tiles, chunk)
        problems = log.problems
        problems += _check_candidates(candidates, now, pending_bound)
        # Integrated after every leaf, so each is its record's latest entry.
        pending: Pending = {(c["kind"], c["record_id"]): c["digest"] for c in candidates}
        problems += await _check_messages(conn, pending, chunk)
        disposed, unvouched = await _disposed(conn, pending, chunk)
        problems += unvouched
        problems += await _check_removed(conn, "message", "messages", "id", pending, disposed, chunk)
        for kind, (table, key, digest_fn) in _RECORDS.items():
            problems += await _check_records(conn, kind, table, key, digest_fn, pending, chunk)
            problems += await _check_removed(conn, kind, table, key, pending, disposed, chunk)
        problems += await _check_unrecorded(conn, pending, chunk)
        problems += log_check.check_checkpoints_against_log(checkpoints, log.roots, log.size, public_key, where="")
        problems += log.tile_problems
    return problems


async def _check_messages(conn: asyncpg.Connection, pending: Pending, chunk: int) -> list[str]:
    """Every message row, a page at a time with its media: it must have a leaf, and match the latest."""
    problems: list[str] = []
    async for rows in pages(conn, _WITH_LATEST.format(table="messages", key="id"), "id", chunk, "message"):
        # The page is a range of ids, and every media row belongs to a message (foreign key).
        media = await conn.fetch("SELECT * FROM media WHERE message_id BETWEEN $1 AND $2 ORDER BY message_id, position",
                                 rows[0]["id"], rows[-1]["id"])
        by_msg: dict[str, list[asyncpg.Record]] = {}
        for m in media:
            by_msg.setdefault(m["message_id"], []).append(m)
        for row in rows:
            digest = pending.get(("message", row["id"]), row["ledger_digest"])
            if digest is None:
                problems.append(f"message {row['id']}: not in the ledger (added outside the archive)")
            elif digest != message_digest(row, by_msg.get(row["id"], [])):
                problems.append(f"message {row['id']}: changed since it was archived (row or its media)")
    return problems


async def _disposed(conn: asyncpg.Connection, pending: Pending, chunk: int
                    ) -> tuple[dict[tuple[str, str], str | None], list[str]]:
    """Records removed by disposition, with the digest each had (their leaves may outlive them),
    and the dispositions rows that cannot vouch for a removal.

    Held whole, one entry per removed record: a removal is checked against it wherever its leaf comes
    in the log, and it grows with what retention removed, not with what the archive keeps.

    A dispositions row vouches only when its own ledger leaf carries its digest: disposal always
    appends one, so a row without it was written outside the disposal path and is named, and the
    records of a row that no longer matches its leaf map to None (claimed, not proven).
    """
    gone: dict[tuple[str, str], str | None] = {}
    problems: list[str] = []
    dispositions = _WITH_LATEST.format(table="dispositions", key="id")
    async for rows in pages(conn, dispositions, "id", chunk, "disposition"):
        for row in rows:
            recorded = pending.get(("disposition", str(row["id"])), row["ledger_digest"])
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


async def _check_records(conn: asyncpg.Connection, kind: str, table: str, key: str,
                         digest_fn: Callable[[asyncpg.Record], str], pending: Pending, chunk: int) -> list[str]:
    """Every row of a record table that has a leaf (or a candidate) against the latest one."""
    problems: list[str] = []
    async for rows in pages(conn, _WITH_LATEST.format(table=table, key=key), key, chunk, kind):
        for row in rows:
            record_id = str(row[key])
            digest = pending.get((kind, record_id), row["ledger_digest"])
            if digest is not None and digest != digest_fn(row):
                problems.append(f"{kind} {record_id}: changed since it was recorded")
    return problems


async def _check_removed(conn: asyncpg.Connection, kind: str, table: str, key: str, pending: Pending,
                         disposed: dict[tuple[str, str], str | None], chunk: int) -> list[str]:
    """Records with a leaf or a candidate but no row: each must have been removed by a disposition
    that recorded the digest of its latest entry. In log order: leaves first, then candidates."""
    problems: list[str] = []

    def removed(record_id: str, digest: str) -> None:
        if (kind, record_id) not in disposed:
            problems.append(f"{kind} {record_id}: deleted (its ledger entry remains)")
        elif disposed[(kind, record_id)] != digest:
            problems.append(f"{kind} {record_id}: disposed, but the disposition record does not match its ledger entry")

    gone_leaves = (f"SELECT l.record_id, (array_agg(l.digest ORDER BY l.seq DESC))[1] AS digest FROM ledger_leaves l"
                   f" WHERE l.kind = $1 AND NOT EXISTS (SELECT 1 FROM {table} t WHERE t.{key}::text = l.record_id)"
                   " GROUP BY l.record_id ORDER BY min(l.seq)")
    async for leaf in conn.cursor(gone_leaves, kind, prefetch=chunk):
        removed(leaf["record_id"], pending.get((kind, leaf["record_id"]), leaf["digest"]))
    waiting = [record_id for (k, record_id) in pending if k == kind]
    if waiting:  # candidates of records that never had a leaf
        gone_candidates = ("SELECT c.id FROM unnest($2::text[]) WITH ORDINALITY AS c(id, n) WHERE NOT EXISTS"
                           " (SELECT 1 FROM ledger_leaves l WHERE l.kind = $1 AND l.record_id = c.id) AND NOT EXISTS"
                           f" (SELECT 1 FROM {table} t WHERE t.{key}::text = c.id) ORDER BY c.n")
        for row in await conn.fetch(gone_candidates, kind, waiting):
            removed(row["id"], pending[(kind, row["id"])])
    return problems


async def _check_unrecorded(conn: asyncpg.Connection, pending: Pending, chunk: int) -> list[str]:
    """Rows of the tables written only with their leaf that have neither a leaf nor a candidate."""
    problems: list[str] = []
    for kind in _LEAF_REQUIRED:
        table, key, _ = _RECORDS[kind]
        unrecorded = (f"SELECT t.{key}::text AS id FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM ledger_leaves l"
                      f" WHERE l.kind = $1 AND l.record_id = t.{key}::text) ORDER BY t.{key}")
        async for row in conn.cursor(unrecorded, kind, prefetch=chunk):
            if (kind, row["id"]) not in pending:
                problems.append(f"{kind} {row['id']}: not in the ledger (added outside the archive)")
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


async def verify_checkpoint_copies(pool: asyncpg.Pool, store: ObjectStore, public_key: bytes | None, *,
                                   chunk: int = CHUNK) -> list[str]:
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
        stored[int(name[:-5])] = b"".join([part async for part in store.read(key)])
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
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        roots, log_size = await log_check.log_roots(conn, {size for size, _, _ in copies}, chunk)
    problems += log_check.check_checkpoints_against_log(copies, roots, log_size, public_key, where=" in the store")
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
