"""Contact profiles: resolving what a message or a consent entry showed of a person to one contact,
and keeping each message's sighting (its identifiers and profile name), in the caller's transaction."""

from __future__ import annotations

import asyncpg

from wa_archive.contacts.identity import Observation, resolve
from wa_archive.db import contacts as sql


async def resolve_contact(conn: asyncpg.Connection, obs: Observation, *, consent_entry_id: int | None = None) -> int:
    """The contact `obs` belongs to (created if it is someone new), with links added for every
    identifier that is new to it. Locks the identifiers until the transaction ends."""
    ids = obs.identifiers()
    await sql.lock_identifiers(conn, ids)
    found = await sql.histories(conn, ids)
    owners = sorted({link.contact_id for links in found.values() for link in links})
    persons = await sql.person_identifiers(conn, owners) if owners else {}
    resolution = resolve(obs, found, persons, recorded=consent_entry_id is not None)
    contact_id = resolution.contact_id if resolution.contact_id is not None else await sql.new_contact(conn)
    await sql.insert_links(conn, contact_id, resolution.links, linked_at=obs.at, message_id=obs.message_id,
                           consent_entry_id=consent_entry_id)
    return contact_id


def message_observation(row: asyncpg.Record) -> Observation:
    """What a messages row shows of its other party. WASender's chat JID is a person's only when it
    is a phone-number JID (a group's is the group), and its user id only when it is a LID."""
    if row["source"] == "wasender":
        jid, lid = row["contact_wa_id"], row["contact_user_id"]
        return Observation(
            at=row["ts"], message_id=row["id"], phone=row["contact_phone"], name=row["contact_name"],
            wasender_jid=jid if isinstance(jid, str) and jid.endswith("@s.whatsapp.net") else None,
            wasender_lid=lid if isinstance(lid, str) and lid.endswith("@lid") else None)
    return Observation(at=row["ts"], message_id=row["id"], phone=row["contact_phone"], wa_id=row["contact_wa_id"],
                       bsuid=row["contact_user_id"], username=row["contact_username"], name=row["contact_name"])


async def observe_message(conn: asyncpg.Connection, message_id: str) -> int | None:
    """Resolve a just-written message's other party and write its sighting; the contact's id, or
    None when the message names no one (nothing to link it to)."""
    row = await conn.fetchrow(
        "SELECT id, source, direction, ts, contact_phone, contact_wa_id, contact_user_id, contact_username,"
        " contact_name FROM messages WHERE id = $1", message_id)
    if row is None:
        raise LookupError(f"message {message_id!r} is not archived")
    obs = message_observation(row)
    if not obs.identifiers():
        return None
    contact_id = await resolve_contact(conn, obs)
    await sql.insert_sighting(
        conn, message_id=message_id, contact_id=contact_id, seen_at=row["ts"], direction=row["direction"],
        source=row["source"], phone=obs.phone, wa_id=obs.wa_id or obs.wasender_jid,
        bsuid=obs.bsuid or obs.wasender_lid, username=obs.username, name=obs.name)
    return contact_id
