"""Consent collected outside WhatsApp (a web form, a paper contract, a call), recorded by hand.

`POST /api/v1/consent` and `wa-archive consent record` both check what they were given here, so the
two accept and refuse exactly the same records. The log's `source` is always `manual`; where the
person's consent was collected is the caller's free text, kept in the entry's detail as
`collected_via`, next to who recorded it (a token's name or `cli:<user>`) and that one's role.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from wa_archive.archive.keys import normalize_phone
from wa_archive.contacts.consent import ConsentEvidence
from wa_archive.errors import ConsentRefused, FilterError
from wa_archive.json_input import storable_text

FIELDS = ("phone", "state", "source", "evidence", "at", "business_phone_number_id", "category")
REQUIRED = ("phone", "state", "source", "evidence")
STATES = ("opted_in", "opted_out")
DEFAULT_CATEGORY = "marketing_messages"
MAX_EVIDENCE_BYTES = 4096  # a sentence or a URL to the signed form; the document itself is kept elsewhere
MAX_SOURCE_CHARS = 200
MAX_IDEMPOTENCY_KEY_CHARS = 200
# A clock a little ahead of ours is not a lie; consent dated later than that would be judged before it happened.
FUTURE_SKEW = timedelta(minutes=5)
# E.164: at most 15 digits; fewer than 7 is no subscriber's number.
_PHONE_DIGITS = re.compile(r"[0-9]{7,15}", re.ASCII)
_GRAPH_ID = re.compile(r"[0-9]{1,20}", re.ASCII)
_CATEGORY = re.compile(r"[a-z][a-z_]{0,63}", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def manual_evidence(data: Any, *, recorded_by: str, recorded_role: str, idempotency_key: str | None,
                    now: datetime) -> ConsentEvidence:
    """The consent entry a hand-recorded request asks for; ConsentRefused naming the first bad field.

    With an idempotency key the entry's dedupe key is the key scoped by who recorded it (the same
    request sent twice is one entry; two callers' keys never meet); without one, every request is new.
    """
    if not isinstance(data, Mapping):
        raise ConsentRefused("body", "must be a JSON object")
    unknown = sorted(str(k) for k in data if k not in FIELDS)
    if unknown:
        raise ConsentRefused(unknown[0][:40], f"unknown field; use {', '.join(FIELDS)}")
    for name in REQUIRED:
        if data.get(name) is None:
            raise ConsentRefused(name, "is required")
    for name in FIELDS:
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise ConsentRefused(name, "must be a string")
        if isinstance(value, str) and not storable_text(value):
            raise ConsentRefused(name, "contains a NUL character or text that is not Unicode")

    phone = normalize_phone(data["phone"])
    if phone is None or not _PHONE_DIGITS.fullmatch(phone):
        raise ConsentRefused("phone", f"{data['phone'][:40]!r} is not a phone number (7 to 15 digits)")
    state = data["state"]
    if state not in STATES:
        raise ConsentRefused("state", f"must be {' or '.join(STATES)}")
    collected_via = data["source"].strip()
    if not collected_via:
        raise ConsentRefused("source", "must say where the consent was collected (web form, paper contract, call...)")
    if len(collected_via) > MAX_SOURCE_CHARS:
        raise ConsentRefused("source", f"is longer than {MAX_SOURCE_CHARS} characters")
    evidence = data["evidence"].strip()
    if not evidence:
        raise ConsentRefused("evidence", "must not be empty: the text of the consent or a URL to it")
    if len(evidence.encode()) > MAX_EVIDENCE_BYTES:
        raise ConsentRefused("evidence", f"is longer than {MAX_EVIDENCE_BYTES} bytes; link to the document instead")
    at = _when(data.get("at"), now)
    business = data.get("business_phone_number_id")
    if business is not None and not _GRAPH_ID.fullmatch(business):
        raise ConsentRefused("business_phone_number_id", "must be a phone number id (1 to 20 digits)")
    category = data.get("category") or DEFAULT_CATEGORY
    if not _CATEGORY.fullmatch(category):
        raise ConsentRefused("category", "must be a category name such as marketing_messages")
    dedupe_key = _dedupe_key(recorded_by, idempotency_key)
    try:
        return ConsentEvidence(
            phone=phone, business_phone_number_id=business, category=category, state=state, source="manual",
            at=at, recorded_by=recorded_by, recorded_role=recorded_role, evidence=evidence,
            detail={"collected_via": collected_via}, dedupe_key=dedupe_key,
        )
    except ValidationError as exc:  # what the log itself refuses (a recorder's name too long for it)
        first = exc.errors()[0]
        raise ConsentRefused(".".join(str(p) for p in first["loc"]) or "body", first["msg"]) from None


def _when(value: str | None, now: datetime) -> datetime:
    from wa_archive.dates import parse_when

    if value is None:
        return now
    try:
        at = parse_when(value, "at")
    except FilterError as exc:
        raise ConsentRefused("at", str(exc).split(": ", 1)[1]) from None
    if at > now + FUTURE_SKEW:
        raise ConsentRefused("at", f"{value[:40]!r} is in the future")
    return at


def _dedupe_key(recorded_by: str, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return f"manual:{uuid.uuid4()}"
    if not idempotency_key or len(idempotency_key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise ConsentRefused("Idempotency-Key", f"must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters")
    if _CONTROL.search(idempotency_key) or not storable_text(idempotency_key):
        raise ConsentRefused("Idempotency-Key", "must not contain control characters")
    # JSON, not a separator: a token named "a:b" with key "c" must not meet token "a" with key "b:c";
    # hashed, so that a long name and a long key still fit the log's dedupe key.
    scoped = json.dumps([recorded_by, idempotency_key], ensure_ascii=False).encode()
    return f"manual:{hashlib.sha256(scoped).hexdigest()}"


def same_record(stored: Mapping[str, Any], ev: ConsentEvidence) -> bool:
    """Whether an entry already stored under the idempotency key is the one this request asks for
    (a retry), rather than a different record sent under a reused key. The time is compared only
    when the request named it: a retry without `at` defaults to a later now."""
    return bool(stored["phone"] == ev.phone and stored["state"] == ev.state and stored["category"] == ev.category
            and stored["business_phone_number_id"] == ev.business_phone_number_id
            and stored["evidence"] == ev.evidence and stored["detail"] == ev.detail)
