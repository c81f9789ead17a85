"""The auditors' JSON API: search, message detail, media bytes, conversations.

Reading the archive is a regulated event: each request is written to the access log before any
archived data is sent, and a request whose access cannot be recorded is refused (503).
Roles: auditor and admin may read; sender and operator may not (403).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import asyncpg
import structlog
from aiohttp import web

from wa_archive.archive.keys import normalize_phone
from wa_archive.db import queries
from wa_archive.discovery.search import Filters, parse_filters, search
from wa_archive.errors import FilterError
from wa_archive.json_input import as_storable
from webhook.auth import CALLER, require
from webhook.deps import deps_of, json_error, pool_of, record_read, record_read_during
from webhook.media import media_filename, send_media

log = structlog.get_logger("wa_archive.api")
READERS = ("auditor",)
T = TypeVar("T")


async def log_access(request: web.Request, action: str, target: dict[str, Any]) -> None:
    """The caller's read, in the access log before anything is sent (503 when it cannot be written)."""
    caller = request[CALLER]
    await record_read(request, actor=caller.name, role=caller.role, action=action, target=target)


async def log_access_during(request: web.Request, action: str, target: dict[str, Any], read: Awaitable[T]) -> T:
    """`read`'s result once the caller's read is in the access log; the read runs while the entry
    commits, and nothing of it is returned (so sent) unless the entry committed (503 otherwise)."""
    caller = request[CALLER]
    return await record_read_during(request, read, actor=caller.name, role=caller.role, action=action,
                                    target=target)


async def _page(pool: asyncpg.Pool, filters: Filters, *, ascending: bool = False
                ) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a search as the API shows it, with the media of its messages, and the next cursor."""
    rows, cursor = await search(pool, filters, ascending=ascending, columns=queries.LISTED_WITH_MEDIA)
    return queries.listed(rows), cursor


@require(*READERS, pool_of=pool_of)
async def list_messages(request: web.Request) -> web.Response:
    """GET /api/v1/messages: filtered, newest first, cursor-paginated."""
    try:
        filters = parse_filters(request.query)
    except FilterError as exc:
        return json_error(400, f"bad filter {exc}", filter=exc.name)
    items, cursor = await log_access_during(request, "search", dict(request.query), _page(pool_of(request), filters))
    return web.json_response({"items": items, "next_cursor": cursor})


@require(*READERS, pool_of=pool_of)
async def get_message(request: web.Request) -> web.Response:
    """GET /api/v1/messages/{message_id}: everything `show --json` prints."""
    message_id = request.match_info["message_id"]
    message = await log_access_during(request, "view", {"message_id": message_id},
                                      queries.get_message(pool_of(request), message_id))
    if message is None:
        return json_error(404, f"no archived message with id {message_id!r}")
    return web.json_response(message)


@require(*READERS, pool_of=pool_of)
async def conversation(request: web.Request) -> web.Response:
    """GET /api/v1/conversations/{phone}: both directions, oldest first."""
    phone = normalize_phone(request.match_info["phone"])
    if phone is None:
        return json_error(400, f"bad filter phone: {request.match_info['phone']!r} is not a phone number",
                      filter="phone")
    try:
        filters = parse_filters(request.query, allowed=("since", "until", "limit", "cursor"))
    except FilterError as exc:
        return json_error(400, f"bad filter {exc}", filter=exc.name)
    filters.phone = phone
    items, cursor = await log_access_during(request, "conversation", {"phone": phone, **request.query},
                                            _page(pool_of(request), filters, ascending=True))
    return web.json_response({"phone": phone, "items": items, "next_cursor": cursor})


@require(*READERS, pool_of=pool_of)
async def download_media(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/media/{id}: the archived bytes, streamed, with ETag and Range support."""
    media_ref = request.match_info["media_id"]
    row = await queries.find_archived_media(pool_of(request), media_ref)
    if row is None:
        await log_access(request, "media", {"media": media_ref, "found": False})
        return json_error(404, f"no archived media with id {media_ref!r}")
    await log_access(request, "media", {"media": str(row["archive_id"]), "message_id": row["message_id"],
                                         "sha256": row["sha256"],
                                         "range": as_storable(request.headers.get("Range", "")) or None})
    store = deps_of(request).store
    if request.query.get("redirect") == "presigned" and (url := await store.presigned_url(
            row["storage_key"], 300, content_type=row["mime_type"], filename=media_filename(row))):
        raise web.HTTPFound(url)  # a backend without links (the filesystem) streams the bytes below
    return await send_media(request, store, row, partial=True, headers={"X-Content-SHA256": row["sha256"]})


@require(*READERS, pool_of=pool_of)
async def reconciliation_report(request: web.Request) -> web.Response:
    """GET /api/v1/reconciliation?date=YYYY-MM-DD: that UTC day's latest report, with its ledger receipt
    and earlier versions; without a date, every reconciled day's latest status."""
    from wa_archive.db import reconciliation as reports
    from wa_archive.integrity.reconciliation import parse_day, receipt, receipt_pending, report_json

    raw = request.query.get("date")
    try:
        day = parse_day(raw) if raw is not None else None
    except ValueError as exc:
        return json_error(400, str(exc))
    await log_access(request, "reconciliation", {"date": day.isoformat() if day else None})
    rows = await reports.reports(pool_of(request), day)
    if day is None:
        return web.json_response({"items": [
            {"date": r["report_date"].isoformat(), "status": r["status"], "version": r["version"],
             "versions": r["versions"], "sha256": r["sha256"], "created_at": r["created_at"].isoformat()}
            for r in rows]})
    if not rows:
        return json_error(404, f"no reconciliation report for {day.isoformat()}")
    shown = report_json(rows[0])
    shown["receipt"] = await receipt(pool_of(request), rows[0], deps_of(request).ledger_key)
    shown["earlier_versions"] = [{"version": r["version"], "status": r["status"], "sha256": r["sha256"],
                                  "created_at": r["created_at"].isoformat()} for r in rows[1:]]
    # The report is here, its receipt not yet: 202 and when to ask again (README, "The ledger").
    pending = await receipt_pending(pool_of(request), rows[0], deps_of(request).settings.ledger_integrate_every)
    if pending is not None:
        shown["receipt_pending"] = pending
        return web.json_response(shown, status=202, headers={"Retry-After": str(pending["retry_after"])})
    return web.json_response(shown)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/messages", list_messages)
    # Message ids are base64 and may contain '/', so the id is the whole rest of the path.
    app.router.add_get("/api/v1/messages/{message_id:.+}", get_message)
    app.router.add_get("/api/v1/conversations/{phone}", conversation)
    app.router.add_get("/api/v1/media/{media_id:.+}", download_media)
    app.router.add_get("/api/v1/reconciliation", reconciliation_report)

