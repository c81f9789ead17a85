"""The daily reconciliation: every message id the archive saw on a UTC day, and where it ended up.

Each id first seen that day (carried by a delivery, returned by Meta for a stored send, or named by
a status webhook) must resolve to an archived message, a recorded critical failure, or be still
within its deadline. What does not is a gap, named with its ids: `pending` (past its deadline with
no record), `off_channel` (a status for a message that reached the number without passing the
archive: no send record and no delivery carrying the message itself), `unhanded_deliveries` (bytes
stored whose messages never got a workflow result), `late_media` (not archived within 24 hours), and
`failed`. Meta's own daily counts, where they can be read, are compared with the outbound messages
archived. A report with any gap is red. Reports are written once, with a ledger leaf each.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import asyncpg
import structlog

from wa_archive.config import Settings
from wa_archive.db import reconciliation as db
from wa_archive.errors import GraphRequestRefused, JsonRefused, LedgerPending, MediaAccessDenied, SourceError
from wa_archive.integrity import checkpoints as signed_checkpoints
from wa_archive.integrity import ledger, receipts
from wa_archive.json_input import load_json
from wa_archive.models import ArchiveOptions

log = structlog.get_logger("wa_archive.reconciliation")

FORMAT = "wa-archive-reconciliation/1"
# Flags the coexistence parser sets (wa_archive/sources/meta/coexistence.py): an echo of a message sent
# from the WhatsApp Business app, and a message from the history sync (counted apart, never late).
BUSINESS_APP = "business_app"
BACKFILLED = "backfilled"
UNKNOWN_NUMBER = "unknown"
MEDIA_DEADLINE = 24 * 3600.0  # Meta's media ids expire after 7 days; a day leaves room to retry
# Id lists in a report are complete up to this many per gap; the counts are always exact.
MAX_IDS = 10_000


def retry_window(opts: ArchiveOptions) -> float:
    """The longest one step of a message workflow can take under the bounded retry policy: every
    attempt timing out, with the backoff intervals between them."""
    intervals = sum(min(opts.retry_initial_interval * opts.retry_backoff ** i, opts.retry_max_interval)
                    for i in range(opts.retry_max_attempts - 1))
    return opts.retry_max_attempts * opts.attempt_timeout + intervals


@dataclass(frozen=True)
class Deadlines:
    """Seconds after the archive first saw an id by which it must be recorded or failed."""

    archive: float  # carried by a delivery: the media and record steps' retry windows, and the grace
    outbound: float  # a stored send: the wait for Meta's `sent` status, then as above
    status_only: float  # only statuses: the wait for a send record (the record API), then as above
    media: float = MEDIA_DEADLINE

    @classmethod
    def of(cls, archive: ArchiveOptions, *, sent_wait: float, record_wait: float, grace: float) -> Deadlines:
        steps = 2 * retry_window(archive) + grace  # media, then records; each may use its whole window
        return cls(archive=steps, outbound=sent_wait + steps, status_only=record_wait + steps)

    def as_json(self) -> dict[str, float]:
        return {"archive_seconds": self.archive, "outbound_seconds": self.outbound,
                "status_only_seconds": self.status_only, "media_seconds": self.media}


@dataclass(frozen=True)
class Tolerance:
    """How far Meta's `sent` may differ from the outbound messages archived: Meta's analytics are
    approximate and lag, so the larger of an absolute count and a share of Meta's figure."""

    absolute: int
    percent: float

    def allowed(self, meta_sent: int) -> int:
        return max(self.absolute, math.ceil(meta_sent * self.percent / 100))


def deadlines_of(settings: Settings) -> Deadlines:
    """The deadlines that follow from the archive's retry and outbound settings."""
    return Deadlines.of(settings.archive_options(), sent_wait=settings.outbound_sent_wait,
                        record_wait=settings.outbound_record_wait, grace=settings.reconcile_grace)


def tolerance_of(settings: Settings) -> Tolerance:
    return Tolerance(absolute=settings.reconcile_meta_tolerance, percent=settings.reconcile_meta_tolerance_percent)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


def parse_day(value: str) -> date:
    """A YYYY-MM-DD date; ValueError naming the expected form."""
    try:
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise ValueError(f"{value[:40]!r} is not a date of the form YYYY-MM-DD")


def _number_entry(day: date, number: str) -> dict[str, Any]:
    return {
        "date": day.isoformat(), "phone_number_id": number, "received": 0, "archived": 0, "failed": 0,
        "pending": 0, "off_channel": [], "unhanded_deliveries": 0, "late_media": 0, "meta_sent": None,
        "meta_delivered": None, "archived_outbound": 0, "status": "green",
        # Detail beside the contract fields: the ids of each gap, what is still within its deadline.
        "in_progress": 0, "backfilled": 0, "failed_ids": [], "pending_ids": [], "in_progress_ids": [],
        "unhanded_delivery_ids": [], "late_media_ids": [], "meta_difference": None, "meta_tolerance": None,
        "meta_note": None,
    }


def numbers_in_body(body: bytes) -> tuple[dict[str, str], list[str]]:
    """Ids a stored webhook body names (messages, statuses, echoes) with their business number, and
    every business number in it. The body was authenticated when stored, yet is still read defensively."""
    try:
        data = load_json(body)
    except JsonRefused:
        return {}, []
    found: dict[str, str] = {}
    numbers: list[str] = []
    for entry in _list(data, "entry"):
        for change in _list(entry, "changes"):
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                continue
            metadata = value.get("metadata")
            number = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
            if not isinstance(number, str):
                continue
            numbers.append(number)
            for key in ("messages", "statuses", "message_echoes"):
                items = value.get(key)
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, dict) and isinstance(item.get("id"), str):
                        found[item["id"]] = number
    return found, list(dict.fromkeys(numbers))


def _list(parent: Any, key: str) -> list[Any]:
    value = parent.get(key) if isinstance(parent, dict) else None
    return value if isinstance(value, list) else []


async def compute(pool: asyncpg.Pool, day: date, *, as_of: datetime, deadlines: Deadlines) -> dict[str, Any]:
    """The day's report without Meta's counts, its checkpoint or version: counts and gaps per number.

    The day's ids are streamed from a cursor and only counted, so memory grows with the gaps and the
    messages with media, never with the day's volume (a day of a million messages is measured by
    `make bench`)."""
    start, end = day_bounds(day)
    numbers: dict[str, dict[str, Any]] = {}

    def entry(number: str | None) -> dict[str, Any]:
        key = number or UNKNOWN_NUMBER
        if key not in numbers:
            numbers[key] = _number_entry(day, key)
        return numbers[key]

    # Recorded messages with media: when the archive first saw each, and its number (for late media).
    media_seen: dict[str, tuple[datetime, str | None]] = {}
    overdue_carried: list[str] = []

    def tally(r: asyncpg.Record, number: str | None) -> None:
        e = entry(number)
        if r["flags"] is not None and BACKFILLED in r["flags"]:
            e["backfilled"] += 1
            return
        e["received"] += 1
        if r["has_media"] and r["archive_status"] is not None:
            media_seen[r["id"]] = (r["seen_at"], number)
        if r["by_status"] and not r["has_send"] and not r["carried"]:
            e["off_channel"].append(r["id"])
        if r["archive_status"] == "archived":
            e["archived"] += 1
        elif r["archive_status"] == "failed" or r["failed"]:
            e["failed"] += 1
            e["failed_ids"].append(r["id"])
        else:
            wait = (deadlines.archive if r["carried"] else deadlines.outbound if r["has_send"]
                    else deadlines.status_only)
            if r["seen_at"] + timedelta(seconds=wait) <= as_of:
                e["pending"] += 1
                e["pending_ids"].append(r["id"])
                if r["carried"]:
                    overdue_carried.append(r["id"])
            else:
                e["in_progress"] += 1
                e["in_progress_ids"].append(r["id"])

    # An id with neither a send record nor a message row takes its number from the first stored body
    # naming it; those are few (gaps, mostly), so they wait until the stream has been read.
    unknown: list[asyncpg.Record] = []
    async for r in db.stream_ids_first_seen(pool, start, end):
        number = r["send_number"] or r["message_number"]
        if number:
            tally(r, number)
        else:
            unknown.append(r)
    bodies = await db.first_delivery_bodies(pool, [r["id"] for r in unknown]) if unknown else {}
    body_numbers: dict[str, str] = {}
    for message_id, (_, body) in bodies.items():
        found, in_body = numbers_in_body(body)
        body_numbers[message_id] = found.get(message_id) or (in_body[0] if len(in_body) == 1 else UNKNOWN_NUMBER)
    for r in unknown:
        tally(r, body_numbers.get(r["id"]))

    await _unhanded(pool, start, end, as_of, deadlines, overdue_carried, entry, body_numbers)
    await _late_media(pool, as_of, deadlines, media_seen, entry)
    for number, count in (await db.archived_outbound(pool, start, end, exclude_flag=BACKFILLED)).items():
        entry(number or None)["archived_outbound"] = count
    for number in await db.known_numbers(pool):
        entry(number)
    for e in numbers.values():
        for key in ("off_channel", "failed_ids", "pending_ids", "in_progress_ids"):
            e[key] = sorted(e[key])[:MAX_IDS]
        e["late_media_ids"] = e["late_media_ids"][:MAX_IDS]
        e["unhanded_delivery_ids"] = e["unhanded_delivery_ids"][:MAX_IDS]
    return {"format": FORMAT, "date": day.isoformat(), "as_of": as_of.astimezone(timezone.utc).isoformat(),
            "deadlines": deadlines.as_json(), "numbers": [numbers[k] for k in sorted(numbers)]}


async def _unhanded(pool: asyncpg.Pool, start: datetime, end: datetime, as_of: datetime, deadlines: Deadlines,
                    overdue_carried: list[str], entry: Any, body_numbers: dict[str, str]) -> None:
    """Deliveries whose messages have no workflow result past the deadline: those carrying overdue
    messages, and those of which nothing at all was recorded (an IngestDelivery never started)."""
    by_delivery: dict[str, dict[str, Any]] = {}
    for r in await db.carrying_deliveries(pool, overdue_carried) if overdue_carried else []:
        item = by_delivery.setdefault(r["delivery_sha256"], {"delivery": r["delivery_sha256"],
                                                             "received_at": r["received_at"].isoformat(),
                                                             "message_ids": [], "numbers": set()})
        item["message_ids"].append(r["message_id"])
        item["numbers"].add(body_numbers.get(r["message_id"]))
    overdue = timedelta(seconds=deadlines.archive)
    for r in await db.deliveries_without_records(pool, start, end):
        if r["received_at"] + overdue > as_of:
            continue
        found, in_body = numbers_in_body(bytes(r["body"]))
        known = await db.recorded_ids(pool, list(found)) if found else set()
        missing = sorted(set(found) - known)
        if found and not missing:
            continue  # everything it names was recorded from another copy of the same updates
        by_delivery[r["sha256"]] = {"delivery": r["sha256"], "received_at": r["received_at"].isoformat(),
                                    "message_ids": missing, "numbers": {found[m] for m in missing} or set(in_body[:1])}
    for item in by_delivery.values():
        numbers = item.pop("numbers") - {None}
        for number in sorted(numbers) or [None]:
            e = entry(number)
            e["unhanded_deliveries"] += 1
            e["unhanded_delivery_ids"].append({**item, "message_ids": sorted(item["message_ids"])})


async def _late_media(pool: asyncpg.Pool, as_of: datetime, deadlines: Deadlines,
                      media_seen: dict[str, tuple[datetime, str | None]], entry: Any) -> None:
    """Media of the day's messages not archived within 24 hours of the archive first seeing the message
    (the message's own timestamp is the sender's claim; when the archive saw it is its own)."""
    if not media_seen:
        return
    limit = timedelta(seconds=deadlines.media)
    for m in await db.media_of(pool, list(media_seen)):
        first, number = media_seen[m["message_id"]]
        if m["status"] == "archived" and m["stored_at"] is not None and m["stored_at"] - first <= limit:
            continue
        if m["status"] != "archived" and first + limit > as_of:
            continue  # still within the day it has
        e = entry(number)
        e["late_media"] += 1
        late_by = (m["stored_at"] - first).total_seconds() / 3600 if m["status"] == "archived" else None
        e["late_media_ids"].append({"message_id": m["message_id"], "position": m["position"],
                                    "media_id": m["media_id"], "status": m["status"],
                                    "archived_after_hours": round(late_by, 1) if late_by is not None else None})


# Meta's counts -------------------------------------------------------------------------------------


async def add_meta_counts(report: dict[str, Any], graph: Any, *, waba_id: str | None,
                          numbers: dict[str, dict[str, str | None]], tolerance: Tolerance) -> None:
    """Meta's daily sent/delivered for each number, beside the outbound messages archived; a reason in
    `meta_note` where they cannot be had (no WABA or display number known, the token refused)."""
    start, _ = day_bounds(date.fromisoformat(report["date"]))
    for e in report["numbers"]:
        known = numbers.get(e["phone_number_id"], {})
        waba = waba_id or known.get("waba_id")
        display = "".join(ch for ch in (known.get("display") or "") if ch.isdigit())
        if e["phone_number_id"] == UNKNOWN_NUMBER:
            e["meta_note"] = "business number not known: no Meta counts"
            continue
        if not waba:
            e["meta_note"] = "no WABA known (WA_ARCHIVE_META_WABA_ID, or a message naming it): no Meta counts"
            continue
        if not display:
            e["meta_note"] = "the number's display phone number is not known yet: no Meta counts"
            continue
        try:
            points = await graph.messaging_analytics(waba, display, int(start.timestamp()),
                                                     int(start.timestamp()) + 86400)
        except MediaAccessDenied as exc:
            e["meta_note"] = f"Meta refused the token for messaging analytics (HTTP {exc.http_status}): no Meta counts"
            continue
        except (GraphRequestRefused, SourceError) as exc:
            e["meta_note"] = f"Meta's messaging analytics could not be read: {str(exc)[:200]}"
            continue
        day_points = [p for p in points if start.timestamp() <= p.start < start.timestamp() + 86400]
        e["meta_sent"] = sum(p.sent for p in day_points)
        e["meta_delivered"] = sum(p.delivered for p in day_points)
        e["meta_difference"] = e["archived_outbound"] - e["meta_sent"]
        e["meta_tolerance"] = tolerance.allowed(e["meta_sent"])
        e["meta_note"] = ("Meta's counts are approximate; the day is red when they differ from the outbound"
                          " messages archived by more than the tolerance")


def finish(report: dict[str, Any], checkpoint: asyncpg.Record | dict[str, Any] | None) -> list[str]:
    """Set each number's and the report's status and the checkpoint it names; returns each gap as a line."""
    report["checkpoint"] = ({"tree_size": checkpoint["tree_size"], "root_hash": checkpoint["root_hash"]}
                            if checkpoint else None)
    gaps: list[str] = []
    for e in report["numbers"]:
        found = []
        if e["pending"]:
            found.append(f"{e['pending']} pending past their deadline: {', '.join(e['pending_ids'][:20])}")
        if e["failed"]:
            found.append(f"{e['failed']} failed: {', '.join(e['failed_ids'][:20])}")
        if e["off_channel"]:
            found.append(f"{len(e['off_channel'])} off-channel (statuses, no send record or echo):"
                         f" {', '.join(e['off_channel'][:20])}")
        if e["unhanded_deliveries"]:
            found.append(f"{e['unhanded_deliveries']} deliveries not handed over: " + "; ".join(
                f"{d['delivery']} ({', '.join(d['message_ids'][:10]) or 'nothing recorded'})"
                for d in e["unhanded_delivery_ids"][:10]))
        if e["late_media"]:
            found.append(f"{e['late_media']} media not archived within 24 h: " + ", ".join(
                f"{m['message_id']}#{m['position']}" for m in e["late_media_ids"][:20]))
        if e["meta_difference"] is not None and abs(e["meta_difference"]) > e["meta_tolerance"]:
            found.append(f"Meta counts {e['meta_sent']} sent, the archive holds {e['archived_outbound']} outbound"
                         f" (difference {e['meta_difference']:+d}, tolerance {e['meta_tolerance']})")
        e["status"] = "red" if found else "green"
        gaps += [f"{e['phone_number_id']}: {line}" for line in found]
    report["status"] = "red" if gaps else "green"
    return gaps


# Keeping and proving ---------------------------------------------------------------------------------


async def save(pool: asyncpg.Pool, report: dict[str, Any], gaps: list[str], *, workflow_id: str | None,
               run_id: str | None) -> asyncpg.Record:
    """Store the report as the day's next version with its ledger leaf; a red one also writes a
    critical failure row and a CRITICAL log line. Earlier versions stay as they were."""
    day = date.fromisoformat(report["date"])
    async with pool.acquire() as conn, conn.transaction():
        # Versions of one day are numbered one at a time.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('wa-reconciliation'), $1)", day.toordinal())
        report["version"] = await db.next_version(conn, day)
        body = ledger.canonical(report).decode()
        checkpoint = report["checkpoint"]
        row = await db.insert_report(
            conn, report_date=day, version=report["version"], status=report["status"], body=body,
            sha256=ledger.sha256_hex(body.encode()), checkpoint=checkpoint, workflow_id=workflow_id, run_id=run_id)
        if gaps:
            await db.insert_gap_failure(
                conn, record_id=f"reconciliation/{day.isoformat()}/v{report['version']}",
                workflow_id=workflow_id or "local", run_id=run_id or f"local-{row['id']}",
                summary="; ".join(gaps)[:4000], gaps=[{"gap": line[:2000]} for line in gaps[:200]])
    if gaps:
        log.critical("reconciliation_red", date=day.isoformat(), version=report["version"], gaps=gaps[:50])
    else:
        log.info("reconciliation_green", date=day.isoformat(), version=report["version"])
    return row


async def receipt(pool: asyncpg.Pool, row: asyncpg.Record, public_key: bytes) -> dict[str, Any] | None:
    """The report's leaf with an inclusion proof against the latest checkpoint signed by `public_key`
    covering it (None while none does yet); `wa-archive verify-receipt` checks it offline."""
    leaf = await db.report_leaf(pool, row["id"])
    if leaf is None:
        return None
    checkpoint = await signed_checkpoints.latest(pool, public_key, covering=leaf["seq"])
    if checkpoint is None:
        return None
    return {
        "format": "wa-archive-receipt/1",
        "record": {"kind": "reconciliation", "id": str(row["id"]), "digest": leaf["digest"]},
        "leaf_index": leaf["seq"],
        "inclusion_proof": await receipts.inclusion_proof(pool, leaf["seq"], checkpoint["tree_size"]),
        "checkpoint": {"body": checkpoint["body"], "signature": checkpoint["signature"]},
    }


async def receipt_pending(pool: asyncpg.Pool, row: asyncpg.Record, integrate_every: float) -> dict[str, Any] | None:
    """While the report's leaf waits for the integrator: when to ask for its receipt again; else None."""
    try:
        await receipts.pending_leaf(pool, "reconciliation", str(row["id"]), integrate_every)
    except LedgerPending as pending:
        return {"retry_after": pending.retry_after, "detail": str(pending)}
    return None


def report_json(row: asyncpg.Record) -> dict[str, Any]:
    """A stored report as it is shown: the exact document, with where it is kept."""
    return {"id": row["id"], "date": row["report_date"].isoformat(), "version": row["version"],
            "status": row["status"], "sha256": row["sha256"], "created_at": row["created_at"].isoformat(),
            "workflow_id": row["workflow_id"], "report": json.loads(row["body"])}
