"""Erasure requests (GDPR Art. 17): carried out at once where no duty to retain applies, otherwise
recorded as deferred, with the legal basis, until the last retain-until date, and then carried
out by disposition (Art. 17(3)(b): the right yields to a legal obligation to keep the record).

A request covers what the archive held for the phone when it was made; a legal hold keeps a
request deferred past its date, with the case named as the basis.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg

from wa_archive.access.access_log import record_access
from wa_archive.archive.keys import normalize_phone
from wa_archive.errors import ErasureError, RetentionActive
from wa_archive.retention.disposition import Disposer
from wa_archive.retention.policies import DEFAULT_BASIS

_REMAINING_SQL = """
SELECT count(*) AS n, max(m.retain_until) AS last,
       array_remove(array_agg(DISTINCT c), NULL) AS cases,
       array_remove(array_agg(DISTINCT p.legal_basis), NULL) AS bases
FROM messages m
LEFT JOIN retention_policies p ON p.id = m.retention_policy_id
LEFT JOIN LATERAL unnest(CASE WHEN cardinality(m.hold_cases) > 0 THEN m.hold_cases ELSE ARRAY[NULL::text] END) c ON true
WHERE m.contact_phone = $1 AND m.archived_at <= $2
"""


async def request_erasure(pool: asyncpg.Pool, disposer: Disposer, *, phone: str, reason: str, actor: str,
                          role: str, default_basis: str) -> dict[str, Any]:
    digits = normalize_phone(phone)
    if digits is None:
        raise ErasureError(f"{phone!r} is not a phone number")
    row = await pool.fetchrow(
        "INSERT INTO erasure_requests (phone, reason, requested_by, status) VALUES ($1,$2,$3,'deferred')"
        " RETURNING *", digits, reason, actor)
    await record_access(pool, actor=actor, role=role, action="erasure.request", remote_addr="local",
                        target={"request": row["id"], "phone": digits, "reason": reason})
    return await settle(pool, disposer, row, default_basis=default_basis)


async def settle(pool: asyncpg.Pool, disposer: Disposer, request: asyncpg.Record, *, default_basis: str,
                 run_id: str | None = None) -> dict[str, Any]:
    """Remove what the request covers and no duty keeps, then record where the request stands."""
    removed = 0
    while True:
        progressed = False
        for item in await disposer.due(phone=request["phone"], limit=500):
            try:
                if await disposer.dispose_message(item["id"], reason="erasure_request",
                                                  erasure_request_id=request["id"], run_id=run_id):
                    removed += 1
                    progressed = True
            except RetentionActive:
                continue  # the store still holds it (e.g. an older object lock): next run
        if not progressed:
            break
    left = await pool.fetchrow(_REMAINING_SQL, request["phone"], request["requested_at"])
    if left["n"] == 0:
        row = await pool.fetchrow(
            "UPDATE erasure_requests SET status = 'completed', completed_at = now(), deferred_until = NULL,"
            " messages_removed = messages_removed + $2, outcome = $3 WHERE id = $1 RETURNING *",
            request["id"], removed, f"{request['messages_removed'] + removed} messages removed")
    else:
        basis = [f"retention: {b}" for b in (left["bases"] or [default_basis])]
        basis += [f"legal hold: case {c}" for c in left["cases"]]
        row = await pool.fetchrow(
            "UPDATE erasure_requests SET deferred_until = $2, legal_basis = $3,"
            " messages_removed = messages_removed + $4, outcome = $5 WHERE id = $1 RETURNING *",
            request["id"], left["last"], "; ".join(basis), removed,
            f"{left['n']} messages kept under retention duties")
    return request_json(row)


async def settle_open(pool: asyncpg.Pool, disposer: Disposer, *, default_basis: str,
                      run_id: str | None) -> list[dict[str, Any]]:
    """Disposition's part: every deferred request whose date has come is carried out (again checked)."""
    rows = await pool.fetch("SELECT * FROM erasure_requests WHERE status = 'deferred'"
                            " AND (deferred_until IS NULL OR deferred_until <= now()) ORDER BY id")
    return [await settle(pool, disposer, r, default_basis=default_basis, run_id=run_id) for r in rows]


async def settle_due_requests(pool: asyncpg.Pool, disposer: Disposer, *, run_id: str | None) -> int:
    """`settle_open` under the default legal basis; returns how many requests it completed."""
    settled = await settle_open(pool, disposer, default_basis=DEFAULT_BASIS, run_id=run_id)
    return sum(1 for r in settled if r["status"] == "completed")


async def list_requests(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    return [request_json(r) for r in await pool.fetch("SELECT * FROM erasure_requests ORDER BY id")]


def request_json(row: asyncpg.Record) -> dict[str, Any]:
    iso: Callable[[datetime | None], str | None] = lambda v: v.isoformat() if v else None  # noqa: E731
    return {"id": row["id"], "phone": row["phone"], "reason": row["reason"], "requested_by": row["requested_by"],
            "requested_at": iso(row["requested_at"]), "status": row["status"],
            "deferred_until": iso(row["deferred_until"]), "legal_basis": row["legal_basis"],
            "messages_removed": row["messages_removed"], "completed_at": iso(row["completed_at"]),
            "outcome": row["outcome"]}


def export_requests(requests: list[dict[str, Any]], fmt: str) -> str:
    """The requests and outcomes as CSV or JSON Lines (for the data-protection officer's register)."""
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in requests)
    out = io.StringIO()
    fields = ["id", "phone", "reason", "requested_by", "requested_at", "status", "deferred_until",
              "legal_basis", "messages_removed", "completed_at", "outcome"]
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows(requests)
    return out.getvalue()
