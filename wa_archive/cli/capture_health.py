"""`wa-archive capture-health`: per business number, the last webhook heard and whether it is silent."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from wa_archive.cli.support import open_pool
from wa_archive.config import Settings
from wa_archive.db.capture_health import list_silences
from wa_archive.health.capture import read_health

RECENT_SILENCES = 20


def _when(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).isoformat(timespec="seconds") if value else "never"


async def cmd_capture_health(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 1 when any watched number is silent past the limit (as the next check would judge it)."""
    pool = await open_pool(settings)
    try:
        report = await read_health(pool, alert_minutes=settings.silence_alert_minutes, hours=settings.silence_hours,
                                   hours_text=settings.silence_active_hours, listed=settings.silence_listed,
                                   now=datetime.now(timezone.utc))
        recent = await list_silences(pool, limit=RECENT_SILENCES)
    finally:
        await pool.close()
    status = 1 if report.silent else 0
    if args.json:
        doc = report.model_dump(mode="json", exclude={"started", "ended"})
        doc["silent"] = report.silent
        doc["recent_silences"] = [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in dict(r).items()}
                                  for r in recent]
        print(json.dumps(doc, indent=2))
        return status
    limit = (f"{settings.silence_alert_minutes:g} minutes" if settings.silence_alert_minutes is not None
             else "off (WA_ARCHIVE_SILENCE_ALERT_MINUTES is not set)")
    print(f"silence limit: {limit}; active hours: {report.active_hours}"
          f" ({'active' if report.active_now else 'inactive'} now)")
    for n in report.numbers:
        shown = f"{n.number} ({n.display_number})" if n.display_number else n.number
        state = "SILENT" if n.silent else "ok"
        episode = f"  open silence since {_when(n.silent_since)}" if n.silent_since else ""
        print(f"{state:6}  {shown:32}  {n.source:8}  last webhook {_when(n.last_webhook_at)}{episode}")
    if not report.numbers:
        print("no business number heard from yet")
    print(f"{len(report.silent)} silent number(s)")
    return status


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], Awaitable[int]]] = {
    "capture-health": cmd_capture_health,
}


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    health = sub.add_parser("capture-health", help="per business number: last webhook, silent or not, open silence;"
                                                   " exit 1 when any is silent")
    health.add_argument("--json", action="store_true")
