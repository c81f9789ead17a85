"""The consent API: recording consent collected outside WhatsApp, and reading contacts and findings.

Recording (`POST /api/v1/consent`) is a write, for the roles that may write: sender and admin.
Reading (`GET /api/v1/contacts/{phone}`, `GET /api/v1/consent/report`) is a read of the archive,
for auditor and admin, written to the access log before anything is sent (503 when it cannot be).
"""

from __future__ import annotations

from datetime import datetime, timezone

from aiohttp import web

from wa_archive.archive.keys import normalize_phone
from wa_archive.contacts import consent, manual, views
from wa_archive.db import contacts as contacts_sql
from wa_archive.discovery.search import parse_filters
from wa_archive.errors import ConsentRefused, FilterError
from webhook.api import READERS, log_access
from webhook.auth import CALLER, require
from webhook.deps import deps_of, json_error, pool_of, read_json

WRITERS = ("sender",)


@require(*WRITERS, pool_of=pool_of)
async def record_consent(request: web.Request) -> web.Response:
    """POST /api/v1/consent: 201 with the new entry; 200 with the same entry when the Idempotency-Key
    was used before for this record; 409 when it was used for a different one."""
    data = await read_json(request)
    if isinstance(data, web.Response):
        return data
    caller = request[CALLER]
    try:
        ev = manual.manual_evidence(data, recorded_by=caller.name, recorded_role=caller.role,
                                    idempotency_key=request.headers.get("Idempotency-Key"),
                                    now=datetime.now(timezone.utc))
    except ConsentRefused as exc:
        return json_error(400, str(exc), field=exc.field)
    async with pool_of(request).acquire() as conn, conn.transaction():
        entry_id, new = await consent.record_entry(conn, ev)
    entry = views.entry_dict(await contacts_sql.consent_entry(pool_of(request), entry_id))
    if not new and not manual.same_record(entry, ev):
        return json_error(409, "this Idempotency-Key was already used for a different consent record",
                          entry_id=entry_id)
    if caller.role not in READERS and caller.role != "admin":
        # Recording is not reading: which profile the number resolved to is the archive's to tell
        # (the same id for two numbers says they are one person; an old id, a number seen before).
        entry.pop("contact_id")
    return web.json_response(entry, status=201 if new else 200)


@require(*READERS, pool_of=pool_of)
async def contact(request: web.Request) -> web.Response:
    """GET /api/v1/contacts/{phone}[?since=&until=]: the profile, who held the number over time, names,
    the consent now and its log, and the messages."""
    raw = request.match_info["phone"]
    phone = normalize_phone(raw)
    if phone is None:
        return json_error(400, f"bad filter phone: {raw[:40]!r} is not a phone number", filter="phone")
    try:
        window = parse_filters(request.query, allowed=("since", "until"))
    except FilterError as exc:
        return json_error(400, f"bad filter {exc}", filter=exc.name)
    await log_access(request, "contact", {"phone": phone, **request.query})
    document = await views.contact_document(pool_of(request), phone, since=window.since, until=window.until)
    if document is None:
        return json_error(404, f"no contact with phone {phone}")
    return web.json_response(document)


@require(*READERS, pool_of=pool_of)
async def consent_report(request: web.Request) -> web.Response:
    """GET /api/v1/consent/report[?since=&until=]: marketing templates sent without consent."""
    try:
        window = parse_filters(request.query, allowed=("since", "until"))
    except FilterError as exc:
        return json_error(400, f"bad filter {exc}", filter=exc.name)
    required = deps_of(request).settings.consent_required
    await log_access(request, "consent-report", {**request.query, "consent_required": required})
    found = await views.findings(pool_of(request), since=window.since, until=window.until,
                                 consent_required=required)
    return web.json_response({"consent_required": required, "findings": found})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/consent", record_consent)
    app.router.add_get("/api/v1/consent/report", consent_report)
    app.router.add_get("/api/v1/contacts/{phone}", contact)
