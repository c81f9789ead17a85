"""The auditors' reconciliation pages: every reconciled UTC day with its status and per-number counts,
and one day's report with each gap named by its message ids (linked to their message pages) and the
day's earlier versions. Reports name ids a sender chose, so the templates escape them and links quote
them; the read is written to the access log before any report is read."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from wa_archive.db import reconciliation as reports
from wa_archive.integrity.reconciliation import parse_day
from webhook.deps import deps_of
from webhook.ui import READERS, _guard, _log, _notice, _page

# Days listed on the overview: more than a year of daily runs.
LISTED_DAYS = 400


async def reconciliation_list(request: web.Request) -> web.Response:
    session = await _guard(request, READERS)
    if isinstance(session, web.Response):
        return session
    await _log(request, session, "reconciliation", {"date": None})
    days = await reports.day_summaries(deps_of(request).pool, LISTED_DAYS)
    return _page(session, "reconciliation_list.html", title="Reconciliation", days=days, limit=LISTED_DAYS)


async def reconciliation_day(request: web.Request) -> web.Response:
    session = await _guard(request, READERS)
    if isinstance(session, web.Response):
        return session
    try:
        day = parse_day(request.match_info["date"])
    except ValueError as exc:
        return _notice(session, "Reconciliation", str(exc), 400)
    raw_version = request.query.get("version")
    version: int | None = None
    if raw_version is not None:
        if not (raw_version.isascii() and raw_version.isdigit() and 0 < len(raw_version) < 10):
            return _notice(session, "Reconciliation", "version must be a positive whole number.", 400)
        version = int(raw_version)
    await _log(request, session, "reconciliation", {"date": day.isoformat(), "version": version})
    pool = deps_of(request).pool
    rows = await reports.reports(pool, day)  # newest first
    if not rows:
        return _notice(session, "Reconciliation", f"No reconciliation report for {day.isoformat()}.", 404)
    shown = rows[0] if version is None else next((r for r in rows if r["version"] == version), None)
    if shown is None:
        return _notice(session, "Reconciliation", f"{day.isoformat()} has no version {version}.", 404)
    report: dict[str, Any] = json.loads(shown["body"])
    with_page = await reports.ids_with_message_row(pool, sorted(_named_ids(report)))
    return _page(session, "reconciliation_day.html", title=f"Reconciliation {day.isoformat()}", day=day.isoformat(),
                 row=shown, latest=rows[0], report=report, versions=rows, with_page=with_page)


def _named_ids(report: dict[str, Any]) -> set[str]:
    """Every message id the report names, in any gap or still in progress."""
    ids: set[str] = set()
    for e in report.get("numbers", []):
        for key in ("failed_ids", "pending_ids", "off_channel", "in_progress_ids"):
            ids.update(i for i in e.get(key, []) if isinstance(i, str))
        for d in e.get("unhanded_delivery_ids", []):
            ids.update(i for i in d.get("message_ids", []) if isinstance(i, str))
        ids.update(m["message_id"] for m in e.get("late_media_ids", []) if isinstance(m.get("message_id"), str))
    return ids


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ui/reconciliation", reconciliation_list)
    app.router.add_get("/ui/reconciliation/{date}", reconciliation_day)
