"""The access log: every read of the archive, and every refused attempt, appended with its ledger leaf;
never changed. Read back oldest first (the CLI) or newest first in pages (the API and the page)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from wa_archive.access.wording import describe
from wa_archive.db import access_log as access_sql
from wa_archive.errors import FilterError
from wa_archive.integrity import ledger
from wa_archive.json_input import storable_text

OUTCOMES = ("allowed", "refused")
PAGE_FILTERS = ("since", "until", "outcome", "actor", "limit", "cursor")
MAX_PAGE = 500
DEFAULT_PAGE = 100
# The largest id the table's bigint can hold: a larger cursor is not one this API wrote.
MAX_ID = 2**63 - 1


async def record_access(pool: asyncpg.Pool, *, actor: str, role: str, action: str, target: dict[str, Any],
                        remote_addr: str | None, outcome: str = "allowed") -> None:
    """Append one read of the archive (or one refused attempt) to the access log with its ledger leaf,
    committed when this returns (rows are never changed afterwards)."""
    if _same_after_jsonb(target):
        # Every read pays this: one statement, one round trip (db/access_log.py, INSERT_WITH_LEAF).
        head, tail = ledger.access_digest_parts(actor=actor, role=role, action=action, target=target,
                                                remote_addr=remote_addr, outcome=outcome)
        await access_sql.insert_with_leaf(pool, actor=actor, role=role, action=action, target=target,
                                          remote_addr=remote_addr, outcome=outcome, digest_head=head,
                                          digest_tail=tail)
        return
    # A target jsonb may store differently (a float such as 1e16 comes back as 10000000000000000) is
    # digested from the row as stored, in a transaction of its own.
    async with pool.acquire() as conn, conn.transaction():
        row = await access_sql.insert(conn, actor=actor, role=role, action=action, target=target,
                                      remote_addr=remote_addr, outcome=outcome)
        await ledger.append(conn, "access", str(row["id"]), ledger.access_digest(row))


def _same_after_jsonb(value: Any) -> bool:
    """Whether `value` reads back from a jsonb column exactly as it was written: text, whole numbers,
    booleans and null, in lists and objects with text keys (the targets the archive writes)."""
    if value is None or isinstance(value, (str, int)):  # bool is an int
        return True
    if isinstance(value, list | tuple):
        return all(_same_after_jsonb(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _same_after_jsonb(v) for k, v in value.items())
    return False


def entry(row: asyncpg.Record) -> dict[str, Any]:
    """One entry as the API, the page and `access-log --json` show it: the stored fields and a sentence."""
    return {"id": row["id"], "at": row["at"].isoformat(), "actor": row["actor"], "role": row["role"],
            "action": row["action"], "outcome": row["outcome"], "target": row["target"],
            "remote_addr": row["remote_addr"],
            "description": describe(row["action"], row["target"], row["outcome"])}


async def list_access(pool: asyncpg.Pool, *, since: datetime | None, until: datetime | None = None,
                      outcome: str | None = None, limit: int = 10000) -> list[dict[str, Any]]:
    """Entries in [since, until), oldest first."""
    rows = await access_sql.oldest_first(pool, since=since, until=until, outcome=outcome, limit=limit)
    return [entry(r) for r in rows]


@dataclass(frozen=True)
class AccessQuery:
    """One page of the log, newest first: [since, until), optionally one outcome or one actor, ids below
    `before` (the cursor)."""

    since: datetime | None = None
    until: datetime | None = None
    outcome: str | None = None
    actor: str | None = None
    limit: int = DEFAULT_PAGE
    before: int | None = None


def parse_access_query(values: Mapping[str, str]) -> AccessQuery:
    """The query from request parameters; FilterError names the first that is not acceptable.

    Dates follow the archive's one rule (wa_archive/dates.py): `until=2026-11-26` includes that day, a
    timestamp is exclusive, and a period that selects nothing is refused."""
    from wa_archive.dates import parse_period

    unknown = sorted(set(values) - set(PAGE_FILTERS))
    if unknown:
        raise FilterError(unknown[0][:40], f"unknown filter; use {', '.join(PAGE_FILTERS)}")
    for name, value in values.items():
        if not storable_text(value):
            raise FilterError(name, "contains a NUL character or text that is not Unicode")
    since, until = parse_period(values.get("since"), values.get("until"))
    outcome = values.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise FilterError("outcome", f"must be one of {', '.join(OUTCOMES)}")
    actor = values.get("actor")
    if actor is not None and not actor.strip():
        raise FilterError("actor", "must not be empty")
    limit = DEFAULT_PAGE
    if "limit" in values:
        if not (values["limit"].isascii() and values["limit"].isdigit() and len(values["limit"]) <= 4):
            raise FilterError("limit", "must be a whole number")
        limit = int(values["limit"])
        if not 1 <= limit <= MAX_PAGE:
            raise FilterError("limit", f"must be between 1 and {MAX_PAGE}")
    before = None
    if "cursor" in values:
        cursor = values["cursor"]
        # The id of the last entry of the previous page, as this API wrote it.
        if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 19 and 0 < int(cursor) <= MAX_ID):
            raise FilterError("cursor", "not a cursor returned by this API")
        before = int(cursor)
    return AccessQuery(since=since, until=until, outcome=outcome, actor=actor, limit=limit, before=before)


async def page_access(pool: asyncpg.Pool, query: AccessQuery) -> tuple[list[dict[str, Any]], str | None]:
    """One page, newest first, and the cursor of the next (None on the last page)."""
    rows = await access_sql.newest_first(pool, since=query.since, until=query.until, outcome=query.outcome,
                                         actor=query.actor, before_id=query.before, limit=query.limit + 1)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return [entry(r) for r in rows], (str(rows[-1]["id"]) if more and rows else None)


def query_target(query: AccessQuery) -> dict[str, Any]:
    """What a read of the log asked for, as its own access-log entry records it."""
    return {"since": query.since.isoformat() if query.since else None,
            "until": query.until.isoformat() if query.until else None,
            "outcome": query.outcome, "actor": query.actor, "limit": query.limit,
            "cursor": str(query.before) if query.before else None}
