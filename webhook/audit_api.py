"""The auditors' own API: the access log (newest first, by cursor), a message's receipt, and export
bundles started, followed and downloaded with an auditor's token.

Each read is written to the access log before anything of it is sent (503 when it cannot be).
Roles: auditor and admin; a sender or operator token is refused (403) and the refusal is logged.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from temporalio.service import RPCError, RPCStatusCode

from wa_archive.access.access_log import page_access, parse_access_query, query_target
from wa_archive.access.wording import selection
from wa_archive.archive.keys import safe_id
from wa_archive.db import queries
from wa_archive.discovery import export_jobs
from wa_archive.discovery.search import parse_filters
from wa_archive.errors import FilterError, LedgerPending, ReceiptRefused
from wa_archive.integrity import receipts
from wa_archive.models import ExportInput, ExportOutput
from webhook.api import log_access
from webhook.auth import CALLER, require
from webhook.deps import deps_of, json_error, pool_of, read_json
from webhook.media import stream_object

READERS = ("auditor",)
EXPORT_FIELDS = ("phone", "since", "until")
_EXPORT_ID_CHARS = frozenset("0123456789abcdef")
# Temporal's names for a closed workflow, as the API says them.
_EXPORT_STATUS = {"RUNNING": "running", "COMPLETED": "completed", "FAILED": "failed", "CANCELED": "canceled",
                  "TERMINATED": "terminated", "TIMED_OUT": "timed_out", "CONTINUED_AS_NEW": "running"}


# The access log ---------------------------------------------------------------------------------


@require(*READERS, pool_of=pool_of)
async def access_log_page(request: web.Request) -> web.Response:
    """GET /api/v1/access-log: entries newest first, `next_cursor` for the next (older) page."""
    try:
        query = parse_access_query(request.query)
    except FilterError as exc:
        return json_error(400, f"bad filter {exc}", filter=exc.name)
    await log_access(request, "access_log", query_target(query))
    items, cursor = await page_access(pool_of(request), query)
    return web.json_response({"items": items, "next_cursor": cursor})


# Receipts ---------------------------------------------------------------------------------------


async def receipt_text(request: web.Request, message_id: str) -> str:
    """The receipt exactly as `wa-archive receipt` prints it, for `wa-archive verify-receipt` to check
    offline. The caller has written the read to the access log already."""
    pool = pool_of(request)
    if not await queries.message_exists(pool, message_id):
        raise ReceiptRefused(404, f"no archived message with id {message_id!r}")
    try:
        document = await receipts.receipt(pool, message_id, public_key=deps_of(request).ledger_key)
    except LedgerPending as exc:  # its leaf waits for the integrator: a matter of seconds
        raise ReceiptRefused(409, str(exc), retry_after=exc.retry_after) from None
    except LookupError as exc:  # archived, but no signed checkpoint covers it yet
        raise ReceiptRefused(409, f"{exc}; the receipt can be given once a checkpoint covers it") from None
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def receipt_headers(message_id: str) -> dict[str, str]:
    """A download named after the message (escaped: ids are the sender's text)."""
    name = f"receipt-{safe_id(message_id)[:150]}.json"
    return {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "private, no-store"}


@require(*READERS, pool_of=pool_of)
async def message_receipt(request: web.Request) -> web.Response:
    """GET /api/v1/messages/{message_id}/receipt: the record digest with its inclusion proof."""
    message_id = request.match_info["message_id"]
    await log_access(request, "receipt", {"message_id": message_id})
    try:
        text = await receipt_text(request, message_id)
    except ReceiptRefused as exc:
        answer = json_error(exc.status, str(exc))
        answer.headers.update(exc.headers())
        return answer
    return web.Response(text=text, content_type="application/json", headers=receipt_headers(message_id))


# Exports ----------------------------------------------------------------------------------------


def _export_id(request: web.Request) -> str | None:
    export_id = request.match_info["export_id"]
    return export_id if len(export_id) == 32 and set(export_id) <= _EXPORT_ID_CHARS else None


def _export_links(export_id: str) -> dict[str, str]:
    return {"status_url": f"/api/v1/exports/{export_id}", "bundle_url": f"/api/v1/exports/{export_id}/bundle"}


@require(*READERS, pool_of=pool_of)
async def start_export(request: web.Request) -> web.Response:
    """POST /api/v1/exports {"phone", "since", "until"} (each optional): 202 with the export's id.

    The export itself is written to the access log by the job, before it reads anything."""
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    if not isinstance(body, dict):
        return json_error(400, 'the body must be a JSON object: {"phone": ..., "since": ..., "until": ...}')
    unknown = sorted(set(body) - set(EXPORT_FIELDS))
    if unknown:
        return json_error(400, f"unknown field {unknown[0][:40]!r}; use {', '.join(EXPORT_FIELDS)}",
                          filter=unknown[0][:40])
    for name, value in body.items():
        if not isinstance(value, str):
            return json_error(400, f"bad filter {name}: must be a string", filter=name)
    try:
        f = parse_filters({k: v for k, v in body.items() if v.strip()}, allowed=EXPORT_FIELDS)
    except FilterError as exc:
        return json_error(400, f"bad filter {exc}", filter=exc.name)
    caller = request[CALLER]
    export_id = export_jobs.new_export_id()
    deps = deps_of(request)
    try:
        await export_jobs.start_export(
            deps.client, ExportInput(export_id=export_id, phone=f.phone, since=f.since, until=f.until,
                                     actor=caller.name, role=caller.role), task_queue=deps.settings.task_queue)
    except RPCError as exc:
        return json_error(503, f"Temporal did not accept the export ({exc.status.name}); nothing was started, "
                               "retry later")
    return web.json_response({"export_id": export_id, "status": "running",
                              "description": selection(f.phone, f.since, f.until),
                              **_export_links(export_id)}, status=202)


async def _export_state(request: web.Request, export_id: str) -> str | web.Response:
    """The export's status as the API names it, or the 404 / 503 answer."""
    try:
        status = await export_jobs.export_status(deps_of(request).client, export_id)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return json_error(404, f"no export with id {export_id!r}")
        return json_error(503, f"Temporal cannot be asked about the export ({exc.status.name}); retry later")
    return _EXPORT_STATUS.get(status, status.lower())


async def _export_and_state(request: web.Request) -> tuple[str, str] | web.Response:
    """The path's export id and its state, or the answer when the id is malformed or Temporal cannot say."""
    export_id = _export_id(request)
    if export_id is None:
        return json_error(404, "no export with that id (export ids are 32 hexadecimal characters)")
    state = await _export_state(request, export_id)
    return state if isinstance(state, web.Response) else (export_id, state)


async def _finished(request: web.Request, export_id: str) -> ExportOutput:
    return await export_jobs.export_result(deps_of(request).client, export_id)


@require(*READERS, pool_of=pool_of)
async def export_status(request: web.Request) -> web.Response:
    """GET /api/v1/exports/{export_id}: running, completed (with what the bundle holds) or how it ended."""
    found = await _export_and_state(request)
    if isinstance(found, web.Response):
        return found
    export_id, state = found
    shown: dict[str, Any] = {"export_id": export_id, "status": state, **_export_links(export_id)}
    if state == "completed":
        # The counts and the hash say what the archive holds: a read like any other.
        result = await _finished(request, export_id)
        await log_access(request, "export_status", {"export_id": export_id})
        shown.update(messages=result.messages, media=result.media, size=result.size, sha256=result.sha256)
    return web.json_response(shown)


@require(*READERS, pool_of=pool_of)
async def export_bundle(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/exports/{export_id}/bundle: the ZIP, streamed; 409 while it is still being written."""
    found = await _export_and_state(request)
    if isinstance(found, web.Response):
        return found
    export_id, state = found
    if state != "completed":
        message = f"the export is {state.replace('_', ' ')}; there is no bundle to download"
        return web.json_response({"error": message + (" yet" if state == "running" else ""), "status": state},
                                 status=409)
    result = await _finished(request, export_id)
    await log_access(request, "export_download", {"export_id": export_id, "sha256": result.sha256})
    return await stream_object(
        request, deps_of(request).store, result.storage_key, size=result.size,
        headers={"Content-Type": "application/zip", "X-Content-SHA256": result.sha256,
                 "Content-Disposition": f'attachment; filename="wa-archive-export-{export_id}.zip"'})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/access-log", access_log_page)
    # Registered before /api/v1/messages/{message_id:.+}, which would otherwise take ".../receipt" as part
    # of an id. A message whose id itself ends in "/receipt" is read with that slash sent as %2F.
    app.router.add_get("/api/v1/messages/{message_id:.+}/receipt", message_receipt)
    app.router.add_post("/api/v1/exports", start_export)
    app.router.add_get("/api/v1/exports/{export_id}", export_status)
    app.router.add_get("/api/v1/exports/{export_id}/bundle", export_bundle)
