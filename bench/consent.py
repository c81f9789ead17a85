"""The consent benchmark: a month of 1,000,000 outbound messages judged at send time, 100,000 contacts and
200,000 consent entries, generated in PostgreSQL.

- `consent report` over the month (views.findings) against a plain count(*) of the same month's judgements;
- the send-time judgement (consent.state_at, what every outbound record pays) for 2,000 recipients
  against a primary-key read of 2,000 messages, in the same run.
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.__main__ import Bench

MONTH = datetime(2025, 2, 1, tzinfo=timezone.utc)  # a past month no other benchmark writes to
NUMBER = "109327745812399"
CONTACTS, ENTRIES = 100_000, 200_000
LOOKUPS = 2_000


def _phone(i: int) -> str:
    return "4478" + str(i).rjust(8, "0")


# Server-side generation (no rows cross the wire); triggers and foreign keys are set aside for the load only
# (session_replication_role = replica), as for the other synthetic loads: these rows are not records of anything.
_SEED = [
    "INSERT INTO contacts (id) SELECT -i FROM generate_series(1, {contacts}) i",
    """INSERT INTO contact_links (contact_id, kind, value, linked_at, reason)
       SELECT -i, 'phone', '4478' || lpad(i::text, 8, '0'), '{start}'::timestamptz - interval '400 days', 'first_seen'
         FROM generate_series(1, {contacts}) i""",
    # Two entries per contact over the year before and the month itself: an opt-in, and for one in ten an opt-out.
    """INSERT INTO consent_entries (contact_id, phone, state, source, at, recorded_by, dedupe_key)
       SELECT -(1 + i % {contacts}), '4478' || lpad((1 + i % {contacts})::text, 8, '0'),
              CASE WHEN i > {contacts} AND i % 10 = 0 THEN 'opted_out' ELSE 'opted_in' END,
              CASE WHEN i > {contacts} THEN 'user_preferences' ELSE 'manual' END,
              '{start}'::timestamptz - interval '365 days' + (i * interval '3 minutes'), 'bench',
              'bench:' || i
         FROM generate_series(1, {entries}) i""",
    """INSERT INTO messages (id, source, direction, type, ts, phone_number_id, contact_phone, archive_status, payload,
                             template_name, template_language)
       SELECT 'wamid.CONSENTBENCH' || i, 'meta', 'out', 'template', '{start}'::timestamptz + i * interval '2592 milliseconds',
              '{number}', '4478' || lpad((1 + i % {contacts})::text, 8, '0'), 'archived', '{{}}',
              CASE WHEN i % 10 = 0 THEN 'spring_offer' ELSE 'statement_ready' END, 'en'
         FROM generate_series(1, {messages}) i""",
    # One in ten is a marketing template; one in fifty of those went to someone opted out, one in fifty to unknown.
    """INSERT INTO message_consent (message_id, contact_id, state, entry_id, at, template_category)
       SELECT 'wamid.CONSENTBENCH' || i, -(1 + i % {contacts}),
              CASE WHEN i % 500 = 0 THEN 'opted_out' WHEN i % 500 = 10 THEN 'unknown' ELSE 'opted_in' END,
              CASE WHEN i % 500 = 10 THEN NULL ELSE (SELECT min(id) FROM consent_entries) END,
              '{start}'::timestamptz + i * interval '2592 milliseconds',
              CASE WHEN i % 10 = 0 THEN 'MARKETING' ELSE 'UTILITY' END
         FROM generate_series(1, {messages}) i""",
]


async def seed(b: Bench, messages: int) -> float:
    started = time.perf_counter()
    async with b.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        for sql in _SEED:
            await conn.execute(sql.format(start=MONTH.isoformat(), contacts=CONTACTS, entries=ENTRIES,
                                          messages=messages, number=NUMBER))
    for table in ("contacts", "contact_links", "consent_entries", "messages", "message_consent"):
        await b.pool.execute(f"ANALYZE {table}")
    return time.perf_counter() - started


def _ms(samples: list[float], q: float) -> float:
    return round(statistics.quantiles(samples, n=100)[int(q) - 1] * 1000, 2)


async def consent(b: Bench, messages: int = 1_000_000) -> dict:
    from wa_archive.contacts import consent as consent_log
    from wa_archive.contacts import views

    load_s = await seed(b, messages)
    until = MONTH + timedelta(days=31)

    plain = float("inf")
    report = float("inf")
    found: list = []
    for _ in range(3):  # the best of three, warm
        started = time.perf_counter()
        counted = await b.pool.fetchval("SELECT count(*) FROM message_consent WHERE at >= $1 AND at < $2", MONTH, until)
        plain = min(plain, time.perf_counter() - started)
        started = time.perf_counter()
        found = await views.findings(b.pool, since=MONTH, until=until, consent_required=True)
        report = min(report, time.perf_counter() - started)
    expected = sum(1 for i in range(1, messages + 1) if i % 10 == 0 and i % 500 in (0, 10))
    if len(found) != expected:
        raise RuntimeError(f"the report names {len(found)} findings, expected {expected}")

    rng = random.Random(19)
    phones = [_phone(rng.randint(1, CONTACTS)) for _ in range(LOOKUPS)]
    ids = [f"wamid.CONSENTBENCH{rng.randint(1, messages)}" for _ in range(LOOKUPS)]
    judged, keyed = [], []
    async with b.pool.acquire() as conn:
        for phone, mid in zip(phones, ids, strict=True):
            at = MONTH + timedelta(seconds=rng.randint(0, 31 * 86400))
            started = time.perf_counter()
            await consent_log.state_at(conn, phone=phone, business_phone_number_id=NUMBER, at=at, sent_at=at)
            judged.append(time.perf_counter() - started)
            started = time.perf_counter()
            await conn.fetchrow("SELECT * FROM messages WHERE id = $1", mid)
            keyed.append(time.perf_counter() - started)
    return {"messages": messages, "contacts": CONTACTS, "consent_entries": ENTRIES, "load_s": round(load_s, 1),
            "judgements_counted": counted, "findings": len(found),
            "report_s": round(report, 3), "plain_count_s": round(plain, 3), "report_ratio": round(report / plain, 1),
            "state_at_p50_ms": _ms(judged, 50), "state_at_p95_ms": _ms(judged, 95),
            "pk_read_p50_ms": _ms(keyed, 50), "pk_read_p95_ms": _ms(keyed, 95),
            "state_at_ratio_p50": round(statistics.median(judged) / statistics.median(keyed), 1)}
