"""Searching the archive: strictly parsed filters, full-text, keyset (cursor) pagination.

Shared by the HTTP API and the CLI, so both accept and refuse exactly the same filters.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import asyncpg
from pydantic import BaseModel

from wa_archive.archive.keys import normalize_phone
from wa_archive.dates import parse_period
from wa_archive.errors import FilterError
from wa_archive.json_input import storable_text

MAX_LIMIT = 500
FILTERS = ("phone", "since", "until", "direction", "type", "template", "has_media", "q", "limit", "cursor",
           "consent")
# The recipient's consent when an outbound message was sent (message_consent); inbound messages have none.
CONSENT_STATES = ("opted_in", "opted_out", "unknown")


class Filters(BaseModel):
    phone: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    direction: str | None = None
    type: str | None = None
    template: str | None = None
    has_media: bool | None = None
    q: str | None = None
    consent: str | None = None
    limit: int = 50
    cursor: tuple[datetime, str] | None = None


def encode_cursor(ts: datetime, message_id: str) -> str:
    raw = json.dumps([ts.isoformat(), message_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# A cursor is base64url of a small JSON pair; anything longer was not made by encode_cursor, and the
# limit keeps the JSON parser's nesting far below the interpreter's recursion limit.
MAX_CURSOR_CHARS = 1024
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)


def _decode_cursor(value: str) -> tuple[datetime, str]:
    """(timestamp, message id) from a cursor made by encode_cursor; FilterError naming `cursor` otherwise."""
    bad = FilterError("cursor", "not a cursor returned by this API")
    if len(value) > MAX_CURSOR_CHARS or not _BASE64URL.fullmatch(value):
        raise bad
    try:
        pair = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (ValueError, RecursionError):
        raise bad from None
    if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
        raise bad
    ts, message_id = pair
    if not message_id or not storable_text(message_id):
        raise bad
    try:
        when = datetime.fromisoformat(ts)
    except ValueError:
        raise bad from None
    if when.tzinfo is None:
        raise bad
    try:
        return when.astimezone(timezone.utc), message_id
    except OverflowError:
        raise bad from None


def parse_filters(query: Mapping[str, str], *, allowed: tuple[str, ...] = FILTERS) -> Filters:
    """Filters from query parameters; any unknown or malformed one is refused by name."""
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        raise FilterError(unknown[0][:40], f"unknown filter; use {', '.join(allowed)}")
    for name, value in query.items():
        if not storable_text(value):
            raise FilterError(name, "contains a NUL character or text that is not Unicode")
    f = Filters()
    if "phone" in query:
        f.phone = normalize_phone(query["phone"])
        if f.phone is None:
            raise FilterError("phone", f"{query['phone']!r} is not a phone number")
    f.since, f.until = parse_period(query.get("since"), query.get("until"))
    if "direction" in query:
        if query["direction"] not in ("in", "out"):
            raise FilterError("direction", "must be 'in' or 'out'")
        f.direction = query["direction"]
    for name in ("type", "template", "q"):
        if name in query:
            if not query[name].strip():
                raise FilterError(name, "must not be empty")
            setattr(f, name, query[name].strip())
    if "has_media" in query:
        if query["has_media"] not in ("true", "false"):
            raise FilterError("has_media", "must be 'true' or 'false'")
        f.has_media = query["has_media"] == "true"
    if "consent" in query:
        if query["consent"] not in CONSENT_STATES:
            raise FilterError("consent", f"must be one of {', '.join(CONSENT_STATES)}")
        f.consent = query["consent"]
    if "limit" in query:
        try:
            f.limit = int(query["limit"])
        except ValueError:
            raise FilterError("limit", "must be a whole number") from None
        if not 1 <= f.limit <= MAX_LIMIT:
            raise FilterError("limit", f"must be between 1 and {MAX_LIMIT}")
    if "cursor" in query:
        f.cursor = _decode_cursor(query["cursor"])
    return f


def build_query(f: Filters, *, ascending: bool = False, columns: str = "*") -> tuple[str, list[Any]]:
    """The SQL for a search page (one row more than the limit, to know whether there is a next page),
    selecting `columns` (a constant of the caller's, never input: db/queries.LISTED_WITH_MEDIA for a page
    as the API shows it; every column and queries.MEDIA_ROWS for an export)."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if f.phone:
        where.append(f"contact_phone = {arg(f.phone)}")
    if f.since:
        where.append(f"ts >= {arg(f.since)}")
    if f.until:
        where.append(f"ts < {arg(f.until)}")
    if f.direction:
        where.append(f"direction = {arg(f.direction)}")
    if f.type:
        where.append(f"type = {arg(f.type)}")
    if f.template:
        where.append(f"template_name = {arg(f.template)}")
    if f.has_media is not None:
        exists = "EXISTS (SELECT 1 FROM media WHERE media.message_id = messages.id)"
        where.append(exists if f.has_media else f"NOT {exists}")
    if f.consent:
        where.append(consent_condition(f.consent, arg))
    if f.q:
        where.append(f"search_tsv @@ websearch_to_tsquery('simple', {arg(f.q)})")
    if f.cursor:
        op = ">" if ascending else "<"
        where.append(f"(ts, id) {op} ({arg(f.cursor[0])}, {arg(f.cursor[1])})")
    order = "ASC" if ascending else "DESC"
    sql = (f"SELECT {columns} FROM messages {'WHERE ' + ' AND '.join(where) if where else ''}"
           f" ORDER BY ts {order}, id {order} LIMIT {arg(f.limit + 1)}")
    return sql, args


def consent_condition(state: str, arg: Callable[[Any], str]) -> str:
    """Outbound messages whose send-time consent is `state`. An outbound message archived before
    consent was judged has no message_consent row: nothing proves consent for it, so it is `unknown`."""
    judged = f"EXISTS (SELECT 1 FROM message_consent mc WHERE mc.message_id = messages.id AND mc.state = {arg(state)})"
    if state == "unknown":
        never_judged = "NOT EXISTS (SELECT 1 FROM message_consent mc WHERE mc.message_id = messages.id)"
        return f"direction = 'out' AND ({judged} OR {never_judged})"
    return f"direction = 'out' AND {judged}"


async def search(pool: asyncpg.Pool, f: Filters, *, ascending: bool = False,
                 columns: str = "*") -> tuple[list[asyncpg.Record], str | None]:
    """One page of messages (`columns` of each, as build_query() says) and the cursor of the next page
    (None on the last page)."""
    sql, args = build_query(f, ascending=ascending, columns=columns)
    async with pool.acquire() as conn:
        try:
            rows = await conn.fetch(sql, *args)
        except asyncpg.OutdatedSchemaCacheError:
            # A page's media come as the media table's row type, whose layout asyncpg caches per
            # connection: after a migration changed it beside running servers (a column added), the
            # first page on each connection finds the cache stale. asyncpg has just reloaded it on this
            # connection, and a read is safe to ask again.
            rows = await conn.fetch(sql, *args)
    more = len(rows) > f.limit
    rows = rows[: f.limit]
    cursor = encode_cursor(rows[-1]["ts"], rows[-1]["id"]) if more and rows else None
    return rows, cursor
