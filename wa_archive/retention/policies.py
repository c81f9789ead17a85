"""Retention policies per business number, and the terms every new record is archived under.

A policy is a number of days, per business phone-number id or display number, with a default.
Policies are versioned rows: a change is a new row, never an edit, so each record names the policy
it was granted under. The retain-until a record gets is written on its object (S3 Object Lock, or
the filesystem's metadata) and on its row, and is never shortened afterwards: a longer policy
extends what exists, a shorter one applies to new records only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg

from wa_archive.archive.keys import normalize_phone
from wa_archive.storage.base import ObjectStore

DEFAULT_SCOPE = "*"
DEFAULT_BASIS = "default (WA_ARCHIVE_RETENTION_DAYS)"

_TERMS_SQL = """
SELECT p.id, p.days, p.legal_basis,
  (SELECT coalesce(array_agg(h.case_id ORDER BY h.case_id), '{}') FROM legal_holds h
    WHERE h.released_at IS NULL AND h.phone = $2
      AND (h.since IS NULL OR h.since <= $3) AND (h.until IS NULL OR $3 < h.until)) AS cases
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (SELECT id, days, legal_basis FROM retention_policies WHERE scope = ANY($1::text[])
                   ORDER BY scope = '*', id DESC LIMIT 1) p ON true
"""


@dataclass
class Terms:
    """What a record is archived under: its retain-until, the policy behind it, the cases holding it."""

    retain_until: datetime
    policy_id: int | None
    hold_cases: list[str] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return bool(self.hold_cases)


def grant(ts: datetime, days: int, min_lock_seconds: float, now: datetime | None = None) -> datetime:
    """The retain-until of a record: its time plus the policy, and never less than the minimum lock
    from now (a message archived after its retention already ended is not deletable on arrival)."""
    now = now or datetime.now(timezone.utc)
    return max(ts + timedelta(days=days), now + timedelta(seconds=min_lock_seconds))


@dataclass
class RetentionRules:
    """The configured default and minimum lock; the policies and holds themselves live in Postgres."""

    default_days: int
    min_lock_seconds: float

    async def terms(self, db: asyncpg.Pool | asyncpg.Connection, *, scopes: list[str],
                    contact_phone: str | None, ts: datetime) -> Terms:
        row = await db.fetchrow(_TERMS_SQL, scopes, normalize_phone(contact_phone) or contact_phone or "", ts)
        days = row["days"] or self.default_days
        return Terms(retain_until=grant(ts, days, self.min_lock_seconds), policy_id=row["id"],
                     hold_cases=list(row["cases"]))


# Managing policies -----------------------------------------------------------------------------


def scope_of(business_phone: str | None) -> str:
    """A policy scope from what the operator typed: '*' for the default, digits of a number, or an id."""
    if business_phone is None:
        return DEFAULT_SCOPE
    return normalize_phone(business_phone) or business_phone.strip()


async def set_policy(pool: asyncpg.Pool, *, scope: str, days: int, legal_basis: str, set_by: str) -> dict[str, Any]:
    """A new policy version for the scope; returns it with the previous one (if any)."""
    async with pool.acquire() as conn, conn.transaction():
        previous = await conn.fetchrow(
            "SELECT * FROM retention_policies WHERE scope = $1 ORDER BY id DESC LIMIT 1", scope)
        row = await conn.fetchrow(
            "INSERT INTO retention_policies (scope, days, legal_basis, set_by) VALUES ($1,$2,$3,$4) RETURNING *",
            scope, days, legal_basis, set_by)
    return {"policy": _policy_json(row), "previous": _policy_json(previous) if previous else None}


async def list_policies(pool: asyncpg.Pool, default_days: int) -> list[dict[str, Any]]:
    """The policy in force per scope (newest version), with the configured default if none was set."""
    rows = await pool.fetch("SELECT DISTINCT ON (scope) * FROM retention_policies ORDER BY scope, id DESC")
    policies = [_policy_json(r) for r in rows]
    if not any(p["scope"] == DEFAULT_SCOPE for p in policies):
        policies.insert(0, {"id": None, "scope": DEFAULT_SCOPE, "days": default_days, "legal_basis": DEFAULT_BASIS,
                            "set_by": "configuration", "set_at": None})
    return policies


# The records a policy scope covers: its own number, or for the default every number without a
# policy of its own.
_COVERED = """
  (($1::text = '*' AND NOT EXISTS (SELECT 1 FROM retention_policies p
      WHERE p.scope = ANY(business_scopes(m.phone_number_id, m.display_phone_number))))
   OR $1 = ANY(business_scopes(m.phone_number_id, m.display_phone_number)))
"""
_NEW_DATE = "m.ts + make_interval(days => $2)"


async def extend_existing(pool: asyncpg.Pool, store: ObjectStore, *, scope: str, days: int, policy_id: int,
                          on_progress: Callable[[int, int], None] | None = None) -> tuple[int, int]:
    """After a longer policy: extend the objects it covers, then their rows (which then name it as
    the policy they are kept under); never shortens.

    Objects first, so that a crash half-way leaves rows that still select them on the next run.
    Returns (messages extended, objects extended).
    """
    objects = await pool.fetch(
        f"SELECT t.storage_key, {_NEW_DATE} AS until FROM media t JOIN messages m ON m.id = t.message_id"
        f" WHERE t.status = 'archived' AND t.retain_until < {_NEW_DATE} AND {_COVERED}", scope, days)
    for n, obj in enumerate(objects, 1):
        await store.extend_retention(obj["storage_key"], obj["until"])
        if on_progress:
            on_progress(n, len(objects))
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            f"UPDATE media t SET retain_until = {_NEW_DATE} FROM messages m"
            f" WHERE m.id = t.message_id AND t.retain_until < {_NEW_DATE} AND {_COVERED}", scope, days)
        status = await conn.execute(
            f"UPDATE messages m SET retain_until = {_NEW_DATE}, retention_policy_id = $3"
            f" WHERE m.retain_until < {_NEW_DATE} AND {_COVERED}", scope, days, policy_id)
    return int(status.split()[-1]), len(objects)


# Rows written before retention existed get the policy in force now for their number.
_FILL_SQL = """
WITH f AS (
  UPDATE messages m SET retain_until = m.ts + make_interval(days => coalesce(p.days, $1)), retention_policy_id = p.id
  FROM messages u LEFT JOIN LATERAL (
    SELECT id, days FROM retention_policies
    WHERE scope = ANY(business_scopes(u.phone_number_id, u.display_phone_number) || '{*}')
    ORDER BY scope = '*', id DESC LIMIT 1) p ON true
  WHERE u.retain_until IS NULL AND m.id = u.id AND m.retain_until IS NULL RETURNING m.id, m.retain_until)
UPDATE media d SET retain_until = f.retain_until FROM f WHERE d.message_id = f.id AND d.retain_until IS NULL
"""


async def fill_missing(pool: asyncpg.Pool, default_days: int) -> None:
    """Date the rows archived before retention was recorded (disposition runs this first)."""
    await pool.execute(_FILL_SQL, default_days)


def _policy_json(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "scope": row["scope"], "days": row["days"], "legal_basis": row["legal_basis"],
            "set_by": row["set_by"], "set_at": row["set_at"].isoformat()}
