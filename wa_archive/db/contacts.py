"""SQL for contacts, their identifier links, sightings per message, the consent log and send-time
consent (migration 016). Every table is append-only: these functions only read and insert."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from wa_archive.contacts.identity import PERSON_KINDS, Identifier, Link, NewLink
from wa_archive.db.queries import Executor

# The first key of the two-key advisory locks taken per identifier ("cont"); two-key locks never
# collide with the one-key locks used elsewhere.
_IDENTIFIER_LOCKS = 0x636F6E74


async def lock_identifiers(conn: asyncpg.Connection, ids: list[Identifier]) -> None:
    """Serialise resolutions that share an identifier, until the transaction ends. Taken in sorted
    order of the lock keys, so two transactions never wait on each other."""
    if ids:
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, h) FROM"
            " (SELECT DISTINCT hashtext(k) AS h FROM unnest($2::text[]) AS k ORDER BY h) AS keys",
            _IDENTIFIER_LOCKS, [f"{kind}:{value}" for kind, value in ids])


async def lock_key(conn: asyncpg.Connection, key: str) -> None:
    """Serialise writers of the same key (a consent entry's dedupe key) until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _IDENTIFIER_LOCKS + 1, key)


async def lock_keys(conn: asyncpg.Connection, keys: list[str]) -> None:
    """lock_key for several keys at once, in sorted order of the lock keys (as lock_identifiers)."""
    if keys:
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, h) FROM"
            " (SELECT DISTINCT hashtext(k) AS h FROM unnest($2::text[]) AS k ORDER BY h) AS keys",
            _IDENTIFIER_LOCKS + 1, keys)


async def histories(conn: asyncpg.Connection, ids: list[Identifier]) -> dict[Identifier, list[Link]]:
    """Every link of each identifier (an identifier has few: one per time it changed hands)."""
    rows = await conn.fetch(
        "SELECT l.kind, l.value, l.contact_id, l.linked_at, l.id FROM unnest($1::text[], $2::text[]) AS i(kind, value)"
        " JOIN contact_links l ON l.kind = i.kind AND l.value = i.value",
        [k for k, _ in ids], [v for _, v in ids])
    found: dict[Identifier, list[Link]] = {}
    for r in rows:
        found.setdefault((r["kind"], r["value"]), []).append(Link(r["contact_id"], r["linked_at"], r["id"]))
    return found


async def person_identifiers(conn: asyncpg.Connection, contact_ids: list[int]) -> dict[int, set[Identifier]]:
    rows = await conn.fetch("SELECT contact_id, kind, value FROM contact_links"
                            " WHERE contact_id = ANY($1::bigint[]) AND kind = ANY($2::text[])",
                            contact_ids, list(PERSON_KINDS))
    found: dict[int, set[Identifier]] = {}
    for r in rows:
        found.setdefault(r["contact_id"], set()).add((r["kind"], r["value"]))
    return found


async def new_contact(conn: asyncpg.Connection) -> int:
    contact_id: int = await conn.fetchval("INSERT INTO contacts DEFAULT VALUES RETURNING id")
    return contact_id


async def insert_links(conn: asyncpg.Connection, contact_id: int, links: list[NewLink], *, linked_at: datetime,
                       message_id: str | None, consent_entry_id: int | None) -> None:
    if links:
        await conn.executemany(
            "INSERT INTO contact_links (contact_id, kind, value, linked_at, reason, message_id, consent_entry_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [(contact_id, link.kind, link.value, linked_at, link.reason, message_id, consent_entry_id)
             for link in links])


async def insert_sighting(conn: asyncpg.Connection, **row: Any) -> None:
    """One message's sighting (written once, with the message)."""
    await conn.execute(
        "INSERT INTO contact_sightings (message_id, contact_id, seen_at, direction, source, phone, wa_id, bsuid,"
        " username, name) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (message_id) DO NOTHING",
        row["message_id"], row["contact_id"], row["seen_at"], row["direction"], row["source"], row["phone"],
        row["wa_id"], row["bsuid"], row["username"], row["name"])


async def phone_holder_at(db: Executor, phone: str, at: datetime) -> int | None:
    """The contact that held a phone number at `at` (before its first link: its first holder)."""
    holder: int | None = await db.fetchval(
        "SELECT contact_id FROM contact_links WHERE kind = 'phone' AND value = $1 AND linked_at <= $2"
        " ORDER BY linked_at DESC, id DESC LIMIT 1", phone, at)
    if holder is None:
        holder = await db.fetchval("SELECT contact_id FROM contact_links WHERE kind = 'phone' AND value = $1"
                                   " ORDER BY linked_at, id LIMIT 1", phone)
    return holder


# The consent log -------------------------------------------------------------------------------


async def consent_entry_by_key(conn: asyncpg.Connection, dedupe_key: str) -> int | None:
    entry_id: int | None = await conn.fetchval("SELECT id FROM consent_entries WHERE dedupe_key = $1", dedupe_key)
    return entry_id


async def next_consent_entry_id(conn: asyncpg.Connection) -> int:
    """An entry's id before it is written, so the links its evidence makes can name it."""
    entry_id: int = await conn.fetchval("SELECT nextval(pg_get_serial_sequence('consent_entries', 'id'))")
    return entry_id


async def insert_consent_entry(conn: asyncpg.Connection, entry: dict[str, Any]) -> asyncpg.Record | None:
    """The entry as stored; None if an entry with its dedupe key exists."""
    return await conn.fetchrow(
        f"INSERT INTO consent_entries ({', '.join(entry)}) VALUES"
        f" ({', '.join(f'${i}' for i in range(1, len(entry) + 1))})"
        " ON CONFLICT (dedupe_key) DO NOTHING RETURNING *",
        *entry.values())


async def latest_entry(db: Executor, contact_id: int, *, category: str, at: datetime | None,
                       business_phone_number_id: str | None,
                       recorded_by: datetime | None = None) -> asyncpg.Record | None:
    """The contact's latest entry (by at, then id) at or before `at` (None: ever) for the category,
    whose scope is all numbers or the given one (None: any number). With `recorded_by`, an opt-in
    recorded by hand counts only if it was recorded by then: its `at` is the recorder's word."""
    return await db.fetchrow(
        "SELECT * FROM consent_entries WHERE contact_id = $1 AND category = $2"
        " AND ($3::timestamptz IS NULL OR at <= $3)"
        " AND ($4::text IS NULL OR business_phone_number_id IS NULL OR business_phone_number_id = $4)"
        " AND ($5::timestamptz IS NULL OR source <> 'manual' OR state <> 'opted_in' OR recorded_at <= $5)"
        " ORDER BY at DESC, id DESC LIMIT 1", contact_id, category, at, business_phone_number_id, recorded_by)


# Send-time consent -----------------------------------------------------------------------------


async def outbound_for_judging(conn: asyncpg.Connection, message_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT m.id, m.direction, m.ts, m.contact_phone, m.phone_number_id, s.contact_id AS seen_contact,"
        " t.definition ->> 'category' AS template_category,"
        # When the archive itself knew of the send: the proxy's own clock when it passed through it;
        # otherwise (a send recorded after the fact, an echo) the time the message carries, to the
        # end of its second when it is Meta's whole-second time (the send was somewhere in it).
        " coalesce((SELECT o.recorded_at FROM outbound_sends o WHERE o.message_id = m.id AND o.via = 'proxy'),"
        "  CASE WHEN m.ts = date_trunc('second', m.ts) THEN m.ts + interval '999999 microseconds' ELSE m.ts END)"
        " AS known_at FROM messages m"
        " LEFT JOIN contact_sightings s ON s.message_id = m.id"
        " LEFT JOIN template_snapshots t ON t.sha256 = m.template_sha256 WHERE m.id = $1", message_id)


async def insert_message_consent(conn: asyncpg.Connection, **row: Any) -> asyncpg.Record | None:
    """The judgement as stored; None if the message already has one (it is never replaced)."""
    return await conn.fetchrow(
        "INSERT INTO message_consent (message_id, contact_id, state, entry_id, at, category, template_category)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (message_id) DO NOTHING RETURNING *",
        row["message_id"], row["contact_id"], row["state"], row["entry_id"], row["at"], row["category"],
        row["template_category"])


# Reading (the read model in wa_archive/contacts/views.py) ---------------------------------------


async def current_phone_holder(db: Executor, phone: str) -> int | None:
    holder: int | None = await db.fetchval(
        "SELECT contact_id FROM contact_links WHERE kind = 'phone' AND value = $1"
        " ORDER BY linked_at DESC, id DESC LIMIT 1", phone)
    return holder


async def contact_links(db: Executor, contact_id: int) -> list[asyncpg.Record]:
    """The contact's links, each saying whether it is still its identifier's current one."""
    return list(await db.fetch(
        "SELECT l.*, l.id = (SELECT c.id FROM contact_links c WHERE c.kind = l.kind AND c.value = l.value"
        "  ORDER BY c.linked_at DESC, c.id DESC LIMIT 1) AS current"
        " FROM contact_links l WHERE l.contact_id = $1 ORDER BY l.linked_at, l.id", contact_id))


async def identifier_links(db: Executor, kind: str, value: str) -> list[asyncpg.Record]:
    return list(await db.fetch("SELECT * FROM contact_links WHERE kind = $1 AND value = $2"
                               " ORDER BY linked_at, id", kind, value))


async def contact_names(db: Executor, contact_id: int, *, since: datetime | None,
                        until: datetime | None) -> list[asyncpg.Record]:
    """Each profile name the contact's messages showed, with when and in which messages."""
    return list(await db.fetch(
        "SELECT name, min(seen_at) AS first_seen, max(seen_at) AS last_seen,"
        " array_agg(message_id ORDER BY seen_at, message_id) AS message_ids, count(*) AS message_count"
        " FROM contact_sightings WHERE contact_id = $1 AND name IS NOT NULL"
        " AND ($2::timestamptz IS NULL OR seen_at >= $2) AND ($3::timestamptz IS NULL OR seen_at < $3)"
        " GROUP BY name ORDER BY first_seen, name", contact_id, since, until))


async def contact_entries(db: Executor, contact_id: int, *, since: datetime | None,
                          until: datetime | None) -> list[asyncpg.Record]:
    return list(await db.fetch(
        "SELECT * FROM consent_entries WHERE contact_id = $1"
        " AND ($2::timestamptz IS NULL OR at >= $2) AND ($3::timestamptz IS NULL OR at < $3)"
        " ORDER BY at, id", contact_id, since, until))


async def contact_messages(db: Executor, contact_id: int, *, since: datetime | None,
                           until: datetime | None) -> list[asyncpg.Record]:
    return list(await db.fetch(
        "SELECT m.id, m.direction, m.type, m.ts FROM contact_sightings s JOIN messages m ON m.id = s.message_id"
        " WHERE s.contact_id = $1 AND ($2::timestamptz IS NULL OR s.seen_at >= $2)"
        " AND ($3::timestamptz IS NULL OR s.seen_at < $3) ORDER BY s.seen_at, m.id", contact_id, since, until))


async def message_consent_of(db: Executor, message_ids: list[str]) -> list[asyncpg.Record]:
    return list(await db.fetch("SELECT * FROM message_consent WHERE message_id = ANY($1::text[])", message_ids))


async def marketing_sends(db: Executor, *, states: list[str], since: datetime | None,
                          until: datetime | None) -> list[asyncpg.Record]:
    """Marketing templates judged in one of `states` at send time, with their messages; a template
    whose category was never snapshotted counts as one (nothing shows it was not marketing)."""
    return list(await db.fetch(
        "SELECT j.message_id, j.at, j.state, j.entry_id, j.template_category, m.contact_phone, m.phone_number_id,"
        " m.template_name FROM message_consent j JOIN messages m ON m.id = j.message_id"
        " WHERE j.state = ANY($1::text[]) AND (upper(j.template_category) = 'MARKETING'"
        "  OR (j.template_category IS NULL AND m.type = 'template'))"
        " AND ($2::timestamptz IS NULL OR j.at >= $2) AND ($3::timestamptz IS NULL OR j.at < $3)"
        " ORDER BY j.at, j.message_id", states, since, until))


async def consent_entries_by_id(db: Executor, entry_ids: list[int]) -> list[asyncpg.Record]:
    """Whole consent entries (dedupe key included: the ledger digest covers it), in log order."""
    return list(await db.fetch("SELECT * FROM consent_entries WHERE id = ANY($1::bigint[]) ORDER BY at, id",
                               entry_ids)) if entry_ids else []


async def consent_entry(db: Executor, entry_id: int) -> asyncpg.Record | None:
    """One consent log entry by id (as `POST /api/v1/consent` and `consent record` answer with it)."""
    found = await consent_entries_by_id(db, [entry_id])
    return found[0] if found else None
