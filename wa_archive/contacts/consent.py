"""The consent log and consent at send time.

Each entry is one piece of evidence that a person opted in to or out of a category of messages at a
moment; it is written once (its dedupe key makes recording the same evidence twice a no-op) with
its ledger leaf. Each outbound message is judged once, when it is recorded, against the entries in
force at its send time, and the judgement is kept (with its own leaf), never recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
from pydantic import AwareDatetime, BaseModel, Field, field_validator, model_validator

from wa_archive.archive.keys import normalize_phone
from wa_archive.contacts.identity import Observation
from wa_archive.contacts.profiles import resolve_contact
from wa_archive.db import contacts as sql
from wa_archive.integrity import ledger

ConsentValue = Literal["opted_in", "opted_out"]
ConsentSource = Literal["user_preferences", "system_message", "send_failure", "keyword", "manual"]
DEFAULT_CATEGORY = "marketing_messages"


class ConsentEvidence(BaseModel):
    """One piece of consent evidence, as a feed or a person hands it in (every field may be hostile)."""

    phone: str | None = Field(default=None, max_length=64)
    wa_id: str | None = Field(default=None, max_length=256)
    bsuid: str | None = Field(default=None, max_length=256)
    business_phone_number_id: str | None = Field(default=None, max_length=64)
    category: str = Field(default=DEFAULT_CATEGORY, min_length=1, max_length=64)
    state: ConsentValue
    source: ConsentSource
    at: AwareDatetime
    recorded_by: str = Field(min_length=1, max_length=256)
    recorded_role: str | None = Field(default=None, max_length=64)
    evidence: str | None = Field(default=None, max_length=10_000)
    evidence_message_id: str | None = Field(default=None, max_length=512)
    evidence_delivery_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    detail: dict[str, Any] = Field(default_factory=dict)
    dedupe_key: str = Field(min_length=1, max_length=512)

    @field_validator("phone")
    @classmethod
    def _digits(cls, value: str | None) -> str | None:
        if value is None:
            return None
        digits = normalize_phone(value)
        if digits is None:
            raise ValueError("phone must be a phone number (digits, optionally with +, spaces or dashes)")
        return digits

    @model_validator(mode="after")
    def _names_someone(self) -> ConsentEvidence:
        if not (self.phone or self.wa_id or self.bsuid):
            raise ValueError("consent evidence must name the person: phone, wa_id or bsuid")
        return self


@dataclass(frozen=True)
class ConsentState:
    """A person's consent at a moment: the state and the entry that decided it (none: unknown)."""

    state: Literal["opted_in", "opted_out", "unknown"]
    entry_id: int | None = None
    entry_at: datetime | None = None
    contact_id: int | None = None


async def record_entry(conn: asyncpg.Connection, ev: ConsentEvidence) -> tuple[int, bool]:
    """Write one consent entry with its ledger leaf in the caller's transaction; (entry id, whether
    it is new). The same dedupe key again returns the first entry and writes nothing."""
    await sql.lock_key(conn, ev.dedupe_key)  # two recorders of the same evidence: one writes, one finds it
    existing = await sql.consent_entry_by_key(conn, ev.dedupe_key)
    if existing is not None:
        return existing, False
    entry_id = await sql.next_consent_entry_id(conn)
    contact_id = await resolve_contact(conn, _observation(ev), consent_entry_id=entry_id)
    row = await sql.insert_consent_entry(conn, {
        "id": entry_id, "contact_id": contact_id, "phone": ev.phone or normalize_phone(ev.wa_id),
        "business_phone_number_id": ev.business_phone_number_id, "category": ev.category, "state": ev.state,
        "source": ev.source, "at": ev.at, "recorded_by": ev.recorded_by, "recorded_role": ev.recorded_role,
        "evidence": ev.evidence, "evidence_message_id": ev.evidence_message_id,
        "evidence_delivery_sha256": ev.evidence_delivery_sha256, "detail": ev.detail, "dedupe_key": ev.dedupe_key})
    if row is None:  # unreachable under the lock; kept so a race can never write a second entry
        raise RuntimeError(f"consent entry {ev.dedupe_key!r} appeared while it was being recorded")
    await ledger.append(conn, "consent", str(entry_id), ledger.consent_digest(row))
    return entry_id, True


def _observation(ev: ConsentEvidence) -> Observation:
    """What an entry shows of the person it is about."""
    return Observation(at=ev.at, phone=ev.phone, wa_id=ev.wa_id, bsuid=ev.bsuid, message_id=ev.evidence_message_id)


async def lock_entries(conn: asyncpg.Connection, evidence: list[ConsentEvidence]) -> None:
    """Take every lock that recording these entries takes, at once and in one order: the dedupe keys,
    then the people's identifiers, each sorted (record_entry takes them in that order for one entry).
    Entry by entry, two transactions recording overlapping evidence in different orders (two webhook
    servers given two envelopes of the same messages) could each hold a lock the other waits for."""
    await sql.lock_keys(conn, [ev.dedupe_key for ev in evidence])
    await sql.lock_identifiers(conn, [identifier for ev in evidence for identifier in _observation(ev).identifiers()])


async def state_at(db: asyncpg.Pool | asyncpg.Connection, *, phone: str, business_phone_number_id: str | None,
                   at: datetime, category: str = DEFAULT_CATEGORY, sent_at: datetime | None = None) -> ConsentState:
    """The consent of whoever held `phone` at `at`: their latest entry at or before it for the
    category, scoped to all numbers or to `business_phone_number_id` (None: any business number).

    `sent_at`, for a send: when the archive knew the message was sent. An opt-in recorded by hand
    after that does not count for it, whatever earlier `at` it claims (the recorder's word, not
    WhatsApp's: counting it would let a sender cover a send already made). Opt-outs always count.
    """
    digits = normalize_phone(phone)
    contact_id = await sql.phone_holder_at(db, digits, at) if digits else None
    if contact_id is None:
        return ConsentState("unknown")
    entry = await sql.latest_entry(db, contact_id, category=category, at=at,
                                   business_phone_number_id=business_phone_number_id, recorded_by=sent_at)
    if entry is None:
        return ConsentState("unknown", contact_id=contact_id)
    return ConsentState(entry["state"], entry["id"], entry["at"], contact_id)


async def judge_send(conn: asyncpg.Connection, message_id: str) -> None:
    """Record an outbound message's send-time consent, with its ledger leaf; a message already
    judged keeps its judgement."""
    msg = await sql.outbound_for_judging(conn, message_id)
    if msg is None or msg["direction"] != "out":
        raise LookupError(f"{message_id!r} is not an archived outbound message")
    judged = (await state_at(conn, phone=msg["contact_phone"], business_phone_number_id=msg["phone_number_id"],
                             at=msg["ts"], sent_at=msg["known_at"])
              if msg["contact_phone"] else ConsentState("unknown"))
    row = await sql.insert_message_consent(
        conn, message_id=message_id, contact_id=judged.contact_id or msg["seen_contact"], state=judged.state,
        entry_id=judged.entry_id, at=msg["ts"], category=DEFAULT_CATEGORY, template_category=msg["template_category"])
    if row is not None:
        await ledger.append(conn, "message_consent", message_id, ledger.message_consent_digest(row))
