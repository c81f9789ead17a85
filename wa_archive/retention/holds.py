"""Legal holds: a case freezes a contact's messages (in a date range, or open-ended) until released.

A hold is kept three ways: the legal_holds row (so messages archived later for the phone are held
from the start), the case id on each message row (which the database refuses to delete), and the
legal hold of each object (S3 Object Lock legal hold, or the filesystem's marker). `reconcile`
brings objects in line with rows; it runs after every change and before every disposition, so an
object written while a hold was being set is caught.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from wa_archive.access.access_log import record_access
from wa_archive.archive.keys import normalize_phone
from wa_archive.errors import HoldError
from wa_archive.storage.base import ObjectStore


async def set_hold(pool: asyncpg.Pool, store: ObjectStore, *, case_id: str, phone: str, since: datetime | None,
                   until: datetime | None, reason: str, actor: str, role: str) -> dict[str, Any]:
    digits = normalize_phone(phone)
    if digits is None:
        raise HoldError(f"{phone!r} is not a phone number")
    if since and until and since >= until:
        raise HoldError("--since must be before --until")
    async with pool.acquire() as conn, conn.transaction():
        existing = await conn.fetchrow("SELECT released_at FROM legal_holds WHERE case_id = $1", case_id)
        if existing is not None:
            state = "released" if existing["released_at"] else "active"
            raise HoldError(f"case {case_id!r} already exists ({state}); case ids are never reused")
        await conn.execute(
            "INSERT INTO legal_holds (case_id, phone, since, until, reason, set_by) VALUES ($1,$2,$3,$4,$5,$6)",
            case_id, digits, since, until, reason, actor)
        held = await conn.fetchval(
            "WITH h AS (UPDATE messages SET hold_cases = array_append(hold_cases, $1)"
            " WHERE contact_phone = $2 AND ($3::timestamptz IS NULL OR ts >= $3)"
            " AND ($4::timestamptz IS NULL OR ts < $4) AND NOT ($1 = ANY(hold_cases)) RETURNING 1)"
            " SELECT count(*) FROM h", case_id, digits, since, until)
    await record_access(pool, actor=actor, role=role, action="hold.set", remote_addr="local", target={
        "case": case_id, "phone": digits, "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None, "reason": reason, "messages": held})
    objects = await reconcile(pool, store)
    return {"case": case_id, "phone": digits, "messages": held, "objects_changed": objects}


async def release_hold(pool: asyncpg.Pool, store: ObjectStore, *, case_id: str, actor: str,
                       role: str) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("UPDATE legal_holds SET released_at = now(), released_by = $2"
                                  " WHERE case_id = $1 AND released_at IS NULL RETURNING *", case_id, actor)
        if row is None:
            exists = await conn.fetchval("SELECT 1 FROM legal_holds WHERE case_id = $1", case_id)
            raise HoldError(f"case {case_id!r} " + ("is already released" if exists else "does not exist"))
        released = await conn.fetchval(
            "WITH r AS (UPDATE messages SET hold_cases = array_remove(hold_cases, $1)"
            " WHERE $1 = ANY(hold_cases) RETURNING 1) SELECT count(*) FROM r", case_id)
    await record_access(pool, actor=actor, role=role, action="hold.release", remote_addr="local",
                        target={"case": case_id, "messages": released})
    objects = await reconcile(pool, store)
    return {"case": case_id, "messages": released, "objects_changed": objects}


async def list_holds(pool: asyncpg.Pool, *, include_released: bool = True) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT h.*, (SELECT count(*) FROM messages m WHERE h.case_id = ANY(m.hold_cases)) AS messages"
        " FROM legal_holds h WHERE $1 OR h.released_at IS NULL ORDER BY h.set_at", include_released)
    return [{"case": r["case_id"], "phone": r["phone"], "since": _iso(r["since"]), "until": _iso(r["until"]),
             "reason": r["reason"], "set_by": r["set_by"], "set_at": _iso(r["set_at"]),
             "released_by": r["released_by"], "released_at": _iso(r["released_at"]),
             "status": "released" if r["released_at"] else "active", "messages": r["messages"]} for r in rows]


async def reconcile(pool: asyncpg.Pool, store: ObjectStore) -> int:
    """Set the legal hold on objects of held rows, clear it where no case holds them; returns changes."""
    changed = 0
    # Clearing first and setting last: a hold set while this runs is applied by the second pass.
    for on, condition in ((False, "d.legal_hold AND cardinality(m.hold_cases) = 0"),
                          (True, "NOT d.legal_hold AND cardinality(m.hold_cases) > 0")):
        rows = await pool.fetch(
            "SELECT d.message_id, d.position, d.storage_key FROM media d JOIN messages m ON m.id = d.message_id"
            f" WHERE d.status = 'archived' AND {condition}")
        for row in rows:
            if await store.set_legal_hold(row["storage_key"], on):
                await pool.execute("UPDATE media SET legal_hold = $3 WHERE message_id = $1 AND position = $2",
                                   row["message_id"], row["position"], on)
                changed += 1
    return changed


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
