"""Writing an archived message: once, in one transaction with its media rows, its retention terms
and its ledger leaf. An archived message is never changed; one recorded as failed is completed in
place by a later run. Inbound and outbound messages differ only in the columns they fill."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg

from wa_archive.archive.keys import business_scopes
from wa_archive.archive.media_types import normalize_mime
from wa_archive.contacts.consent import judge_send
from wa_archive.contacts.profiles import observe_message
from wa_archive.db.queries import delivery_carried, was_disposed
from wa_archive.errors import UnverifiedMessage
from wa_archive.integrity import ledger
from wa_archive.models import MediaRecord, WriteOutboundInput, WriteRecordsInput
from wa_archive.retention.policies import RetentionRules


async def write_message(pool: asyncpg.Pool, records: WriteRecordsInput, storage_url: str,
                        rules: RetentionRules) -> bool:
    """An inbound message (or a WhatsApp-Web source's outgoing one); False if nothing was new.

    The caller has checked the request against its delivery (provenance.check_inbound); here, in the
    transaction, the message must still be linked to it, as the fan-out linked it before starting the
    workflow, and never have been disposed of: a message disposed of (or erased) is refused with
    UnverifiedMessage whatever links it has, and never written again.
    """
    req = records.request
    c = req.contact

    async def linked(conn: asyncpg.Connection) -> None:
        if await was_disposed(conn, req.message_id):
            raise UnverifiedMessage("not recorded: the message was disposed of (retention over or erased);"
                                    " it is never archived again")
        if not await delivery_carried(conn, req.delivery_sha256, req.message_id):
            raise UnverifiedMessage("not recorded: the message is not linked to the delivery it names"
                                    " (never linked, or removed since)")

    return await _write_once(
        pool, req.message_id, records.media, records.archive_status, storage_url, rules,
        scopes=business_scopes(req.phone_number_id, req.display_phone_number), contact_phone=c.phone,
        ts=req.timestamp, before=linked,
        columns={
            "source": req.source, "direction": req.direction, "type": req.type, "ts": req.timestamp,
            "raw_timestamp": req.raw_timestamp, "phone_number_id": req.phone_number_id,
            "display_phone_number": req.display_phone_number, "waba_id": req.waba_id, "contact_phone": c.phone,
            "contact_wa_id": c.wa_id, "contact_user_id": c.user_id, "contact_username": c.username,
            "contact_name": c.name, "text": req.text, "related_message_id": req.related_message_id,
            "flags": req.flags, "payload": req.payload, "first_delivery_sha256": req.delivery_sha256,
        })


async def write_outbound(pool: asyncpg.Pool, inp: WriteOutboundInput, storage_url: str,
                         rules: RetentionRules) -> bool:
    """An outbound message with its template snapshot and media; False if nothing was new."""
    c, template = inp.contact, inp.template
    return await _write_once(
        pool, inp.message_id, inp.media, inp.archive_status, storage_url, rules,
        scopes=business_scopes(inp.phone_number_id, None), contact_phone=c.phone, ts=inp.timestamp,
        columns={
            "source": "meta", "direction": "out", "type": inp.type, "ts": inp.timestamp,
            "phone_number_id": inp.phone_number_id, "waba_id": inp.waba_id, "contact_phone": c.phone,
            "contact_wa_id": c.wa_id, "text": inp.text, "flags": inp.flags, "payload": inp.payload,
            "template_sha256": template.sha256 if template else None,
            "template_name": template.name if template else inp.template_name,
            "template_language": template.language if template else inp.template_language,
        })


async def _write_once(
    pool: asyncpg.Pool, message_id: str, media: list[MediaRecord], archive_status: str, storage_url: str,
    rules: RetentionRules, *, scopes: list[str], contact_phone: str | None, ts: datetime,
    columns: dict[str, Any], before: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> bool:
    async with pool.acquire() as conn, conn.transaction():
        existing = await conn.fetchval("SELECT archive_status FROM messages WHERE id = $1 FOR UPDATE", message_id)
        if before is not None:
            await before(conn)
        if existing == "archived":
            return False
        if existing == "failed":
            return await _complete_failed(conn, message_id, media, storage_url, archive_status)
        # The row's terms: the policy now in force, never less than what its objects already carry.
        terms = await rules.terms(conn, scopes=scopes, contact_phone=contact_phone, ts=ts)
        terms.retain_until = max([terms.retain_until] + [m.retain_until for m in media if m.retain_until])
        row = {"id": message_id, **columns, "archive_status": archive_status, "retain_until": terms.retain_until,
               "retention_policy_id": terms.policy_id, "hold_cases": terms.hold_cases}
        await conn.execute(
            f"INSERT INTO messages ({', '.join(row)}) VALUES ({', '.join(f'${i}' for i in range(1, len(row) + 1))})",
            *row.values())
        # Media rows carry their object's retain-until (a failed item: the message's). The type is
        # normalised again here, the one place media rows are written, whatever built the record.
        await conn.executemany(
            "INSERT INTO media (message_id, position, media_id, kind, status, storage_url, storage_key, size,"
            " sha256, provider_sha256, mime_type, declared_mime_type, filename, stored_at, retain_until, legal_hold)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)",
            [(message_id, m.position, m.media_id, m.kind, m.status,
              storage_url if m.status == "archived" else None, m.storage_key, m.size, m.sha256,
              m.provider_sha256, normalize_mime(m.mime_type), m.declared_mime_type, m.filename, m.stored_at,
              m.retain_until or terms.retain_until, m.legal_hold) for m in media])
        await ledger.append_message(conn, message_id)
        # Who the other party was, and for a send what they had agreed to, as of this message: kept
        # with it, in its transaction, and never judged again.
        await observe_message(conn, message_id)
        if columns["direction"] == "out":
            await judge_send(conn, message_id)
    return True


async def _complete_failed(conn: asyncpg.Connection, message_id: str, media: list[MediaRecord],
                           storage_url: str, archive_status: str) -> bool:
    """A later run completes a message recorded as failed, in place: failed media rows become
    archived and the status follows; the original row and payload stay as first written (a
    declaration already recorded is kept)."""
    archived = [m for m in media if m.status == "archived"]
    for m in archived:
        await conn.execute(
            "UPDATE media SET status = 'archived', storage_url = $3, storage_key = $4,"
            " size = $5, sha256 = $6, mime_type = $7, stored_at = $8,"
            " retain_until = greatest(retain_until, $9), legal_hold = $10,"
            " declared_mime_type = coalesce(declared_mime_type, $11)"
            " WHERE message_id = $1 AND position = $2 AND status = 'failed'",
            message_id, m.position, storage_url, m.storage_key, m.size, m.sha256,
            normalize_mime(m.mime_type), m.stored_at, m.retain_until, m.legal_hold, m.declared_mime_type,
        )
    latest = max((m.retain_until for m in archived if m.retain_until), default=None)
    # Archived only once no media item is left failed: a later run that brings fewer items (a statuses-only
    # outbound row for a message an echo recorded) completes nothing it does not hold.
    await conn.execute(
        "UPDATE messages SET retain_until = greatest(retain_until, $2),"
        " archive_status = CASE WHEN $3 AND NOT EXISTS (SELECT 1 FROM media WHERE message_id = $1"
        "  AND status = 'failed') THEN 'archived' ELSE archive_status END WHERE id = $1",
        message_id, latest, archive_status == "archived")
    await ledger.append_message(conn, message_id)  # the completed record is a new ledger entry
    return archive_status == "archived"
