"""The contacts and consent read model: JSON-ready dicts (times as ISO strings) for the CLI, the API,
the pages and export bundles. Reading only; callers log the access."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from wa_archive.archive.keys import normalize_phone
from wa_archive.contacts.consent import DEFAULT_CATEGORY
from wa_archive.db import contacts as sql
from wa_archive.db.queries import Executor


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def entry_dict(row: asyncpg.Record) -> dict[str, Any]:
    """One consent log entry as every reader shows it."""
    return {
        "entry_id": row["id"], "contact_id": row["contact_id"], "phone": row["phone"],
        "business_phone_number_id": row["business_phone_number_id"], "category": row["category"],
        "state": row["state"], "source": row["source"], "at": _iso(row["at"]),
        "recorded_at": _iso(row["recorded_at"]), "recorded_by": row["recorded_by"],
        "recorded_role": row["recorded_role"], "evidence": row["evidence"],
        "evidence_message_id": row["evidence_message_id"],
        "evidence_delivery_sha256": row["evidence_delivery_sha256"], "detail": row["detail"],
    }


async def contact_document(db: Executor, phone: str, *, since: datetime | None = None,
                           until: datetime | None = None) -> dict[str, Any] | None:
    """The profile of whoever holds `phone` now (with `until`: whoever held it at the end of the
    period): identifiers, the number's holders over time, names, consent now and the log, and
    messages; None if the number was never seen. `since` (inclusive) and `until` (exclusive)
    restrict names, log and messages. Raises ValueError for a non-number."""
    digits = normalize_phone(phone)
    if digits is None:
        raise ValueError("phone must be a phone number (digits, optionally with +, spaces or dashes)")
    # A period that ended before the number changed hands is about whoever held it then.
    contact_id = await (sql.phone_holder_at(db, digits, until - timedelta(microseconds=1)) if until is not None
                        else sql.current_phone_holder(db, digits))
    if contact_id is None:
        return None
    holders = await sql.identifier_links(db, "phone", digits)
    now = await sql.latest_entry(db, contact_id, category=DEFAULT_CATEGORY, at=None, business_phone_number_id=None)
    return {
        "phone": digits,
        "contact_id": contact_id,
        "identifiers": [{"kind": r["kind"], "value": r["value"], "linked_at": _iso(r["linked_at"]),
                         "reason": r["reason"], "message_id": r["message_id"], "current": r["current"]}
                        for r in await sql.contact_links(db, contact_id)],
        "holders": [{"contact_id": r["contact_id"], "from": _iso(r["linked_at"]),
                     "until": _iso(holders[i + 1]["linked_at"]) if i + 1 < len(holders) else None}
                    for i, r in enumerate(holders)],
        "names": [{"name": r["name"], "first_seen": _iso(r["first_seen"]), "last_seen": _iso(r["last_seen"]),
                   "message_ids": list(r["message_ids"]), "message_count": r["message_count"]}
                  for r in await sql.contact_names(db, contact_id, since=since, until=until)],
        "consent": ({"state": now["state"], "entry_id": now["id"], "at": _iso(now["at"])} if now
                    else {"state": "unknown", "entry_id": None, "at": None}),
        "consent_log": [entry_dict(r) for r in await sql.contact_entries(db, contact_id, since=since, until=until)],
        "messages": [{"id": r["id"], "direction": r["direction"], "type": r["type"], "ts": _iso(r["ts"])}
                     for r in await sql.contact_messages(db, contact_id, since=since, until=until)],
    }


async def message_consent(db: Executor, message_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Send-time consent of each outbound message among `message_ids` that has one."""
    return {r["message_id"]: {"state": r["state"], "entry_id": r["entry_id"], "at": _iso(r["at"]),
                              "template_category": r["template_category"]}
            for r in await sql.message_consent_of(db, message_ids)} if message_ids else {}


async def findings(db: Executor, *, since: datetime | None = None, until: datetime | None = None,
                   consent_required: bool) -> list[dict[str, Any]]:
    """Marketing templates sent while the recipient had opted out, or (when consent is required)
    with no consent on record; `since`/`until` bound the send time."""
    states = ["opted_out", "unknown"] if consent_required else ["opted_out"]
    return [{
        "message_id": r["message_id"], "sent_at": _iso(r["at"]), "recipient": r["contact_phone"],
        "business_phone_number_id": r["phone_number_id"], "template_name": r["template_name"],
        "template_category": r["template_category"], "state": r["state"], "entry_id": r["entry_id"],
        "reason": _reason(r),
    } for r in await sql.marketing_sends(db, states=states, since=since, until=until)]


def _reason(r: asyncpg.Record) -> str:
    what = ("marketing template" if r["template_category"] else
            "template of unknown category (never snapshotted: nothing shows it was not marketing)")
    if r["state"] == "opted_out":
        return f"{what} sent after the recipient opted out (consent entry {r['entry_id']})"
    return f"{what} sent with no consent on record (WA_ARCHIVE_CONSENT_REQUIRED)"
