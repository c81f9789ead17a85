"""Capture health: which business number a webhook was for, when each was last heard, and silence.

No webhook at all for a number during the hours it is expected to be active is how a capture
failure looks from inside (a subscription dropped, a token revoked, a proxy answering for us), so a
periodic check opens one silence episode per number when the active time since its last webhook
passes `WA_ARCHIVE_SILENCE_ALERT_MINUTES`, logs it once at CRITICAL, and the next webhook for the
number ends it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from wa_archive.db import capture_health as db
from wa_archive.health.active_hours import ActiveHours
from wa_archive.health.capture_report import CaptureHealthReport, NumberHealth

log = structlog.get_logger("wa_archive.capture_health")

WASENDER_NUMBER = "wasender"  # the WASender session, watched as one number (see the migration)
# Meta's phone_number_id is digits; a display number digits with +, spaces, dashes and brackets.
# Anything else in a signed body is still archived, but not made a watched number.
_PHONE_NUMBER_ID = re.compile(r"^[0-9]{1,32}$")
_DISPLAY_NUMBER = re.compile(r"^\+?[0-9][0-9 ()\-]{0,31}$")
MAX_NUMBERS_PER_DELIVERY = 16  # a delivery naming more is batched oddly; the first ones are enough
HEARD_EVERY_MAX = 60.0  # seconds between two writes of the same number by one process, at most
Heard = list[tuple[str, str, str | None]]  # (number, source, display number)


def meta_numbers(envelope: Any) -> Heard:
    """The business numbers a Cloud API delivery was for (each change's metadata), deduplicated."""
    found: dict[str, str | None] = {}
    for entry in getattr(envelope, "entry", []):
        for change in entry.changes:
            metadata = change.value.get("metadata")
            if not isinstance(metadata, dict):
                continue  # account-level fields (templates, WABA updates) name no number
            number, display = metadata.get("phone_number_id"), metadata.get("display_phone_number")
            if not isinstance(number, str) or not _PHONE_NUMBER_ID.match(number):
                continue
            if len(found) >= MAX_NUMBERS_PER_DELIVERY and number not in found:
                break
            ok_display = display if isinstance(display, str) and _DISPLAY_NUMBER.match(display) else None
            found[number] = ok_display or found.get(number)
    return [(n, "meta", d) for n, d in found.items()]


def wasender_numbers(_data: Any, _event: Any) -> Heard:
    """Every WASender delivery is for the one session the webhook secret belongs to."""
    return [(WASENDER_NUMBER, "wasender", None)]


def heard_every(alert_minutes: float | None) -> float:
    """How stale a number's last-heard time may get: a tenth of the limit, at most a minute."""
    if alert_minutes is None:
        return HEARD_EVERY_MAX
    return min(HEARD_EVERY_MAX, alert_minutes * 6.0)


class CaptureTracker:
    """Notes, for the webhook, that a number was heard: at most once per `every` seconds per number
    in this process, so a busy number costs one small write a minute instead of one per delivery
    (and concurrent deliveries never queue on its row's lock)."""

    def __init__(self, pool: asyncpg.Pool, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.every = every
        self.clock = clock
        self._written: dict[str, float] = {}

    async def heard(self, numbers: Heard, at: datetime) -> None:
        """Record the numbers that are due. Never raises: the delivery is already durable, and a
        missed note only makes the number look older until its next webhook."""
        now = self.clock()
        due = [n for n in numbers if now - self._written.get(n[0], float("-inf")) >= self.every]
        if not due:
            return
        try:
            ended = await db.record_heard(self.pool, due, at)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.error("capture_heard_not_recorded", numbers=[n for n, _, _ in due], error=repr(exc))
            return
        for number, _, _ in due:
            self._written[number] = now
        for row in ended:
            log.info("capture_silence_ended", number=row["number"], silence_id=row["id"],
                     silent_since=row["silent_since"].isoformat(), ended_at=at.isoformat())


def listed_numbers(value: str | None) -> list[str]:
    """`WA_ARCHIVE_SILENCE_NUMBERS`: phone_number_ids or `wasender`, comma-separated; ValueError otherwise."""
    numbers = []
    for item in (part.strip() for part in (value or "").split(",")):
        if not item:
            continue
        if item != WASENDER_NUMBER and not _PHONE_NUMBER_ID.match(item):
            raise ValueError(f"{item!r} is neither a Meta phone_number_id (digits) nor {WASENDER_NUMBER!r}")
        numbers.append(item)
    return numbers


def _is_silent(reference: datetime, now: datetime, alert_minutes: float | None, hours: ActiveHours) -> bool:
    if alert_minutes is None:
        return False
    limit = alert_minutes * 60.0
    return hours.active_seconds(reference, now, enough=limit) > limit


def _number(row: asyncpg.Record, silent: bool, episode: tuple[datetime, datetime] | None) -> NumberHealth:
    return NumberHealth(number=row["number"], source=row["source"], display_number=row["display_number"],
                        last_webhook_at=row["last_webhook_at"], silent=silent,
                        silent_since=episode[0] if episode else None, detected_at=episode[1] if episode else None)


async def read_health(pool: asyncpg.Pool, *, alert_minutes: float | None, hours: ActiveHours, hours_text: str,
                      listed: list[str], now: datetime) -> CaptureHealthReport:
    """The state as the next check would judge it, without writing anything (the CLI's view)."""
    rows = await db.numbers_with_open_silence(pool, listed or None)
    known = {r["number"] for r in rows}
    numbers = []
    for row in rows:
        reference = row["last_webhook_at"] or row["watched_since"]
        episode = (row["silent_since"], row["detected_at"]) if row["silence_id"] is not None else None
        numbers.append(_number(row, _is_silent(reference, now, alert_minutes, hours), episode))
    for number in listed:  # listed but never heard and not yet watched by a check
        if number not in known:
            numbers.append(NumberHealth(number=number, source=_source_of(number), display_number=None,
                                        last_webhook_at=None, silent=False, silent_since=None, detected_at=None))
    return CaptureHealthReport(checked_at=now, alert_minutes=alert_minutes, active_hours=hours_text,
                               active_now=hours.is_active(now), numbers=numbers)


def _source_of(number: str) -> str:
    return "wasender" if number == WASENDER_NUMBER else "meta"


async def check_silences(pool: asyncpg.Pool, *, alert_minutes: float, hours: ActiveHours, hours_text: str,
                         listed: list[str], now: datetime) -> CaptureHealthReport:
    """Open an episode (one CRITICAL line) for each number newly silent at `now`, end those whose
    traffic came back; returns every watched number's state."""
    started, ended, numbers = [], [], []
    async with pool.acquire() as conn, conn.transaction():
        if listed:
            await db.watch_listed(conn, [(n, _source_of(n)) for n in listed], now)
        for row in await db.numbers_with_open_silence(conn, listed or None):
            number, last = row["number"], row["last_webhook_at"]
            episode = (row["silent_since"], row["detected_at"]) if row["silence_id"] is not None else None
            if episode and last is not None and last > episode[0]:
                # Heard again after the episode began, and the webhook's own close lost a race with
                # this check's opening: closed here at the webhook that came back.
                if await db.end_silence(conn, row["silence_id"], last):
                    ended.append(number)
                    log.info("capture_silence_ended", number=number, silence_id=row["silence_id"],
                             silent_since=episode[0].isoformat(), ended_at=last.isoformat())
                episode = None
            reference = last or row["watched_since"]
            silent = _is_silent(reference, now, alert_minutes, hours)
            if silent and episode is None:
                silence_id = await db.open_silence(conn, number, reference, now, alert_minutes)
                if silence_id is not None:
                    started.append(number)
                    episode = (reference, now)
                    log.critical("capture_silence", number=number, source=row["source"], silence_id=silence_id,
                                 silent_since=reference.isoformat(), alert_minutes=alert_minutes,
                                 active_hours=hours_text,
                                 detail="no webhook at all for this number for longer than the limit during its "
                                        "active hours: check the webhook subscription, the token and the proxy")
            numbers.append(_number(row, silent, episode))
    return CaptureHealthReport(checked_at=now, alert_minutes=alert_minutes, active_hours=hours_text,
                               active_now=hours.is_active(now), numbers=numbers, started=started, ended=ended)
