"""Server-rendered pages for compliance officers: sign in with a token, search, read a message with
its media, read a conversation as a chat, export, and (for operators and admins) failures and the
access log. Every read is written to the access log first, exactly as through the JSON API."""

from __future__ import annotations

import hmac
import uuid
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from wa_archive import access_log, queries
from wa_archive.json_input import storable_text
from wa_archive.keys import normalize_phone
from wa_archive.search import FilterError, parse_filters, search
from wa_archive.sessions import Session, close_session, load_session, open_session
from webhook.deps import deps_of, read_form
from webhook.ui_pages import (
    direction_tag, media_preview, message_link, page, raw_json, when, who,
)

COOKIE = "wa_archive_session"
READERS = ("auditor", "admin")
SEARCH_FIELDS = ("phone", "since", "until", "q", "template", "direction")
UNREADABLE_FORM = "The form could not be read: send it as UTF-8 form data."


async def _session(request: web.Request) -> Session | None:
    session_id = request.cookies.get(COOKIE)
    # A cookie of bytes that are not UTF-8 cannot be one we issued (and cannot be hashed): no session.
    return await load_session(deps_of(request).pool, session_id) if session_id and storable_text(session_id) else None


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, content_type="text/html", status=status,
                        headers={"Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; "
                                 "script-src 'unsafe-inline'; frame-ancestors 'none'",
                                 "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})


def _page(request: web.Request, session: Session, title: str, body: str, status: int = 200) -> web.Response:
    return _html(page(title, body, caller=session.caller, csrf=session.csrf), status)


async def _guard(request: web.Request, roles: tuple[str, ...]) -> Session | web.Response:
    session = await _session(request)
    if session is None:
        raise web.HTTPFound("/ui/login?next=" + quote(request.path_qs, safe=""))
    if session.caller.role not in roles:
        return _page(request, session, "Not allowed",
                     f'<div class="error">Your role ({escape(session.caller.role)}) may not open this page.</div>',
                     403)
    return session


async def _log(request: web.Request, session: Session, action: str, target: dict[str, Any]) -> None:
    await access_log.record_access(deps_of(request).pool, actor=session.caller.name, role=session.caller.role,
                                action=action, target={**target, "via": "web"}, remote_addr=request.remote)


def _csrf_ok(session: Session, form: Any) -> bool:
    return hmac.compare_digest(str(form.get("csrf", "")), session.csrf)


# Sign in / out -------------------------------------------------------------------------------


async def login_form(request: web.Request, error: str = "") -> web.Response:
    next_url = request.query.get("next", "/ui/")
    body = (f'<div class="login card"><h1>Sign in</h1>'
            f'{f"<div class=error>{escape(error)}</div>" if error else ""}'
            f'<form method="post" action="/ui/login"><input type="hidden" name="next" value="{escape(next_url)}">'
            f'<label for="token">API token</label><input id="token" name="token" type="password" autocomplete="off" required>'
            f'<p class="muted">Ask an administrator for a token with the auditor role '
            f'(<code>wa-archive tokens create --role auditor --name you</code>).</p><button>Sign in</button></form></div>')
    return _html(page("Sign in", body), 401 if error else 200)


async def login(request: web.Request) -> web.Response:
    form = await read_form(request)
    if form is None:
        return _html(page("Sign in", f'<div class="error">{escape(UNREADABLE_FORM)}</div>'), 400)
    session_id = await open_session(deps_of(request).pool, str(form.get("token", "")).strip())
    if session_id is None:
        return await login_form(request, "That token is unknown or revoked.")
    next_url = str(form.get("next", "/ui/"))
    if not next_url.startswith("/ui/"):
        next_url = "/ui/"  # never redirect off the site
    resp = web.HTTPFound(next_url)
    resp.set_cookie(COOKIE, session_id, httponly=True, samesite="Strict", path="/ui",
                    secure=request.secure, max_age=8 * 3600)
    raise resp


async def logout(request: web.Request) -> web.Response:
    session = await _session(request)
    form = await read_form(request)
    if session is None or form is None or not _csrf_ok(session, form):
        return _html(page("Sign out", '<div class="error">Invalid or missing CSRF token.</div>'), 403)
    await close_session(deps_of(request).pool, request.cookies[COOKIE])
    resp = web.HTTPFound("/ui/login")
    resp.del_cookie(COOKIE, path="/ui")
    raise resp


# Search --------------------------------------------------------------------------------------


def _filters_form(values: dict[str, str], csrf: str) -> str:
    def field(name: str, label: str, kind: str = "text") -> str:
        return (f'<div><label for="{name}">{label}</label><input id="{name}" name="{name}" type="{kind}"'
                f' value="{escape(values.get(name, ""))}"></div>')

    direction = values.get("direction", "")
    options = "".join(f'<option value="{v}"{" selected" if v == direction else ""}>{t}</option>'
                      for v, t in (("", "both"), ("in", "inbound"), ("out", "outbound")))
    return (f'<form class="filters card" method="get" action="/ui/">{field("phone", "Phone")}'
            f'{field("since", "From (date)", "date")}{field("until", "Until (date)", "date")}'
            f'{field("q", "Text")}{field("template", "Template")}'
            f'<div><label for="direction">Direction</label><select id="direction" name="direction">{options}</select></div>'
            f'<div><button>Search</button></div></form>')


async def search_page(request: web.Request) -> web.Response:
    session = await _guard(request, READERS)
    if isinstance(session, web.Response):
        return session
    values = {k: v for k, v in request.query.items() if k in SEARCH_FIELDS + ("cursor",) and v.strip()}
    body = "<h1>Search the archive</h1>" + _filters_form(values, session.csrf)
    if not any(k in values for k in SEARCH_FIELDS):
        return _page(request, session, "Search", body + '<p class="muted">Enter a phone number, a date range or text.</p>')
    try:
        filters = parse_filters(values)
    except FilterError as exc:
        return _page(request, session, "Search", body + f'<div class="error">Bad filter {escape(str(exc))}</div>', 400)
    await _log(request, session, "search", values)
    rows, cursor = await search(deps_of(request).pool, filters)
    items = await queries.with_media(deps_of(request).pool, rows)
    table = ["<div class=card><table><tr><th>Time</th><th>Contact</th><th></th><th>Type</th><th>Text</th><th>Media</th></tr>"]
    for m in items:
        text = escape((m["text"] or "")[:140])
        table.append(
            f'<tr><td>{when(m["timestamp"])}</td><td><a href="/ui/conversations/{quote(m["contact"]["phone"] or "")}">'
            f'{who(m)}</a></td><td>{direction_tag(m)}</td><td>{escape(m["type"])}</td>'
            f'<td><a href="{message_link(m["id"])}">{text or "<span class=muted>(no text)</span>"}</a></td>'
            f'<td>{len(m["media"])}</td></tr>')
    table.append("</table></div>")
    more = ""
    if cursor:
        more = f'<a href="/ui/?{urlencode({**{k: v for k, v in values.items() if k != "cursor"}, "cursor": cursor})}">Older messages →</a>'
    export = ""
    if "phone" in values:
        export = (f'<form method="post" action="/ui/exports" class="card"><input type="hidden" name="csrf" value="{escape(session.csrf)}">'
                  + "".join(f'<input type="hidden" name="{k}" value="{escape(values[k])}">' for k in ("phone", "since", "until") if k in values)
                  + '<button>Export these messages (eDiscovery bundle)</button></form>')
    count = f'<p class="muted">{len(items)} message(s) on this page</p>'
    return _page(request, session, "Search", body + count + "".join(table) + more + export)


# Message and conversation ----------------------------------------------------------------------


async def message_page(request: web.Request) -> web.Response:
    session = await _guard(request, READERS)
    if isinstance(session, web.Response):
        return session
    message_id = request.match_info["message_id"]
    await _log(request, session, "view", {"message_id": message_id})
    m = await queries.get_message(deps_of(request).pool, message_id)
    if m is None:
        return _page(request, session, "Not found", f'<div class="error">No archived message {escape(message_id)}.</div>', 404)
    text = escape(m.get("rendered_text") or m["text"] or "").replace("\n", "<br>")
    parts = [f'<h1>Message {direction_tag(m)}</h1><div class="card"><dl>'
             f'<dt>Message id</dt><dd class="hash">{escape(m["id"])}</dd><dt>Time</dt><dd>{when(m["timestamp"])}</dd>'
             f'<dt>Contact</dt><dd><a href="/ui/conversations/{quote(m["contact"]["phone"] or "")}">{who(m)}</a>'
             f' {escape(m["contact"]["name"] or "")}</dd><dt>Type</dt><dd>{escape(m["type"])}</dd>'
             f'<dt>Status</dt><dd>{escape(m["archive_status"])} {" ".join(f"<span class=tag>{escape(f)}</span>" for f in m["flags"])}</dd>'
             f'<dt>Retained until</dt><dd>{when(m["retain_until"]) if m.get("retain_until") else "—"}'
             f'{"".join(f" <span class=tag>legal hold: {escape(c)}</span>" for c in m.get("legal_hold") or [])}</dd>'
             f'</dl></div>']
    if text:
        parts.append(f'<h2>{"Rendered template" if m.get("template") else "Text"}</h2><div class="card">{text}</div>')
    for media in m["media"]:
        parts.append(f'<h2>Media</h2><div class="card preview">{media_preview(media)}<dl style="margin-top:12px">'
                     f'<dt>SHA-256 (ours)</dt><dd class="hash">{escape(media["sha256"] or "—")}</dd>'
                     f'<dt>Provider SHA-256</dt><dd class="hash">{escape(media["provider_sha256"] or "—")}</dd>'
                     f'<dt>Type / size</dt><dd>{escape(media["mime_type"] or "")} · {media["size"] or 0} bytes</dd>'
                     f'<dt>Stored</dt><dd>{when(media["stored_at"])}</dd></dl></div>')
    if m.get("template"):
        t = m["template"]
        parts.append(f'<h2>Template snapshot</h2><div class="card"><dl><dt>Name</dt><dd>{escape(t["name"] or "")}'
                     f' ({escape(t["language"] or "")})</dd><dt>Snapshot SHA-256</dt><dd class="hash">{escape(t["sha256"] or "—")}</dd>'
                     f'</dl><details><summary>Definition</summary>{raw_json(t["definition"])}</details></div>')
    if m["statuses"]:
        items = "".join(f'<li>{when(s["timestamp"])} — <b>{escape(s["status"])}</b></li>' for s in m["statuses"])
        parts.append(f'<h2>Delivery timeline</h2><div class="card"><ul class="timeline">{items}</ul></div>')
    deliveries = "".join(f'<li class="hash">{escape(d["sha256"])} · {when(d["received_at"])}</li>' for d in m["deliveries"])
    if deliveries:
        parts.append(f'<h2>Webhook deliveries</h2><div class="card"><ul>{deliveries}</ul></div>')
    parts.append(f'<details class="card"><summary>Raw payload</summary>{raw_json(m["payload"])}</details>')
    return _page(request, session, "Message", "".join(parts))


async def conversation_page(request: web.Request) -> web.Response:
    session = await _guard(request, READERS)
    if isinstance(session, web.Response):
        return session
    phone = normalize_phone(request.match_info["phone"])
    if phone is None:
        return _page(request, session, "Conversation", '<div class="error">Not a phone number.</div>', 400)
    values = {k: v for k, v in request.query.items() if k in ("since", "until", "cursor") and v}
    try:
        filters = parse_filters(values, allowed=("since", "until", "cursor"))
    except FilterError as exc:
        return _page(request, session, "Conversation", f'<div class="error">Bad filter {escape(str(exc))}</div>', 400)
    filters.phone = phone
    filters.limit = 200
    await _log(request, session, "conversation", {"phone": phone, **values})
    rows, cursor = await search(deps_of(request).pool, filters, ascending=True)
    items = await queries.with_media(deps_of(request).pool, rows)
    bubbles = []
    for m in items:
        media = "".join(media_preview(x) for x in m["media"])
        text = escape(m["text"] or "").replace("\n", "<br>")
        bubbles.append(f'<div class="bubble {"out" if m["direction"] == "out" else "in"}">{media}<div>{text}</div>'
                       f'<div class="muted"><a href="{message_link(m["id"])}">{when(m["timestamp"])}</a></div></div>')
    more = f'<p><a href="?{urlencode({**values, "cursor": cursor})}">Later messages →</a></p>' if cursor else ""
    body = (f'<h1>Conversation with {escape(phone)}</h1><div class="chat">{"".join(bubbles) or "<p class=muted>No messages.</p>"}</div>{more}')
    return _page(request, session, "Conversation", body)


async def media_file(request: web.Request) -> web.StreamResponse:
    session = await _guard(request, READERS)
    if isinstance(session, web.Response):
        return session
    row = await deps_of(request).pool.fetchrow("SELECT * FROM media WHERE archive_id::text = $1 AND status = 'archived'",
                                             request.match_info["archive_id"])
    if row is None:
        raise web.HTTPNotFound()
    await _log(request, session, "media", {"media": str(row["archive_id"]), "message_id": row["message_id"]})
    resp = web.StreamResponse(headers={"Content-Type": row["mime_type"] or "application/octet-stream",
                                       "ETag": f'"{row["sha256"]}"', "Cache-Control": "private, no-store"})
    resp.content_length = row["size"]
    await resp.prepare(request)
    async for chunk in deps_of(request).store.read(row["storage_key"]):
        await resp.write(chunk)
    await resp.write_eof()
    return resp


# Exports ---------------------------------------------------------------------------------------


async def start_export(request: web.Request) -> web.Response:
    session = await _guard(request, READERS)
    if isinstance(session, web.Response):
        return session
    form = await read_form(request)
    if form is None:
        return _page(request, session, "Export", f'<div class="error">{escape(UNREADABLE_FORM)}</div>', 400)
    if not _csrf_ok(session, form):
        return _page(request, session, "Export", '<div class="error">Invalid or missing CSRF token.</div>', 403)
    from wa_archive.models import ExportInput

    try:
        f = parse_filters({k: str(form[k]) for k in ("phone", "since", "until") if form.get(k)})
    except FilterError as exc:
        return _page(request, session, "Export", f'<div class="error">Bad filter {escape(str(exc))}</div>', 400)
    export_id = uuid.uuid4().hex
    deps = deps_of(request)
    await deps.client.start_workflow(
        "ExportBundle", ExportInput(export_id=export_id, phone=f.phone, since=f.since, until=f.until,
                                    actor=session.caller.name, role=session.caller.role),
        id=f"export-{export_id}", task_queue=deps.settings.task_queue)
    raise web.HTTPSeeOther(f"/ui/exports/{export_id}")


async def export_page(request: web.Request) -> web.Response:
    session = await _guard(request, READERS)
    if isinstance(session, web.Response):
        return session
    export_id = request.match_info["export_id"]
    handle = deps_of(request).client.get_workflow_handle(f"export-{export_id}")
    try:
        desc = await handle.describe()
    except Exception:  # noqa: BLE001 - an unknown id
        raise web.HTTPNotFound() from None
    status = desc.status.name if desc.status else "RUNNING"
    if status == "COMPLETED":
        body = (f'<h1>Export ready</h1><div class="card"><p><a id="download" href="/ui/exports/{export_id}.zip">'
                f'Download the bundle</a></p><p class="muted">Check it offline with <code>wa-archive verify-export bundle.zip</code>.</p></div>')
        return _page(request, session, "Export", body)
    if status != "RUNNING":
        return _page(request, session, "Export", f'<div class="error">The export ended as {escape(status)}.</div>', 500)
    return _html(page("Export", '<h1>Export running…</h1><div class="card">This page refreshes every second.</div>'
                      '<meta http-equiv="refresh" content="1">', caller=session.caller, csrf=session.csrf))


async def export_download(request: web.Request) -> web.StreamResponse:
    session = await _guard(request, READERS)
    if isinstance(session, web.Response):
        return session
    export_id = request.match_info["export_id"]
    from wa_archive.models import ExportOutput

    handle = deps_of(request).client.get_workflow_handle(f"export-{export_id}", result_type=ExportOutput)
    result = await handle.result()
    await _log(request, session, "export_download", {"export_id": export_id, "sha256": result.sha256})
    resp = web.StreamResponse(headers={"Content-Type": "application/zip", "X-Content-SHA256": result.sha256,
                                       "Content-Disposition": f'attachment; filename="wa-archive-export-{export_id}.zip"'})
    resp.content_length = result.size
    await resp.prepare(request)
    async for chunk in deps_of(request).store.read(result.storage_key):
        await resp.write(chunk)
    await resp.write_eof()
    return resp


# Operators and admins --------------------------------------------------------------------------


async def failures_page(request: web.Request) -> web.Response:
    session = await _guard(request, ("operator", "admin"))
    if isinstance(session, web.Response):
        return session
    failures = await queries.list_failures(deps_of(request).pool, limit=200)
    rows = "".join(
        f'<tr><td>{when(f["created_at"])}</td><td class="hash">{escape(f["message_id"])}</td><td>{escape(f["stage"])}</td>'
        f'<td><span class="tag failed">{escape(f["last_error_type"] or "")}</span><div class="muted">{escape((f["last_error"] or "")[:200])}</div>'
        f'<details><summary>{len(f["attempts"])} attempt(s)</summary><ol>'
        + "".join(f'<li>{when(a["at"])} {escape(a["error_type"])}{" HTTP " + str(a["http_status"]) if a["http_status"] else ""}</li>'
                  for a in f["attempts"]) + "</ol></details></td></tr>"
        for f in failures)
    body = (f'<h1>Archive failures</h1><div class="card"><table><tr><th>When</th><th>Message</th><th>Stage</th><th>Error</th></tr>'
            f'{rows or "<tr><td colspan=4 class=muted>No failures.</td></tr>"}</table></div>')
    return _page(request, session, "Failures", body)


async def access_log_page(request: web.Request) -> web.Response:
    session = await _guard(request, ("admin",))
    if isinstance(session, web.Response):
        return session
    rows = await deps_of(request).pool.fetch("SELECT * FROM access_log ORDER BY id DESC LIMIT 500")
    table = "".join(
        f'<tr><td>{when(r["at"].isoformat())}</td><td>{escape(r["actor"])} <span class="muted">{escape(r["role"])}</span></td>'
        f'<td>{escape(r["action"])}</td><td class="hash">{escape(str(r["target"]))}</td><td>{escape(r["remote_addr"] or "")}</td></tr>'
        for r in rows)
    body = (f'<h1>Access log</h1><p class="muted">Every read of the archive; rows cannot be changed or deleted.</p>'
            f'<div class="card"><table><tr><th>When</th><th>Who</th><th>Action</th><th>What</th><th>From</th></tr>{table}</table></div>')
    return _page(request, session, "Access log", body)


async def root(_: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", root)
    app.router.add_get("/ui/login", login_form)
    app.router.add_post("/ui/login", login)
    app.router.add_post("/ui/logout", logout)
    app.router.add_get("/ui/", search_page)
    app.router.add_get("/ui/messages/{message_id:.+}", message_page)
    app.router.add_get("/ui/conversations/{phone}", conversation_page)
    app.router.add_get("/ui/media/{archive_id}", media_file)
    app.router.add_post("/ui/exports", start_export)
    app.router.add_get("/ui/exports/{export_id}.zip", export_download)
    app.router.add_get("/ui/exports/{export_id}", export_page)
    app.router.add_get("/ui/failures", failures_page)
    app.router.add_get("/ui/access-log", access_log_page)
