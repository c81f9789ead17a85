"""Server-rendered pages for compliance officers: sign in with a token, search, read a message with
its media, read a conversation as a chat, export, and (for operators and admins) failures; the access
log and receipts are in ui_audit.py. Every read is written to the access log first, exactly as through the JSON API."""

from __future__ import annotations

import hmac
import re
import secrets
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from wa_archive.access.sessions import LIFETIME_HOURS, Session, close_session, load_session, open_session
from wa_archive.archive.keys import normalize_phone
from wa_archive.contacts import views
from wa_archive.db import queries
from wa_archive.discovery import export_jobs
from wa_archive.discovery.search import parse_filters, search
from wa_archive.errors import FilterError
from wa_archive.integrity import receipts
from wa_archive.json_input import storable_text
from wa_archive.models import ExportInput
from webhook.auth import note_refusal
from webhook.deps import deps_of, read_form, record_read
from webhook.media import send_media, stream_object
from webhook.ui_pages import render

COOKIE = "wa_archive_session"
# Login CSRF is a double-submit: the form and this cookie carry the same random value. Another site
# can make a browser post the form, but cannot read or set this cookie, so it cannot sign a
# victim into the attacker's session.
LOGIN_CSRF_COOKIE = "wa_archive_login_csrf"
READERS = ("auditor", "admin")
SEARCH_FIELDS = ("phone", "since", "until", "q", "template", "direction")
# Where a login may send the reader on: a path on these pages, printable ASCII, no backslash.
_NEXT = re.compile(r"/ui/[\x21-\x5b\x5d-\x7e]*")  # fullmatch: `$` would admit a trailing newline
_EXPORT_ID = re.compile(r"^[0-9a-f]{32}$")
UNREADABLE_FORM = "The form could not be read: send it as UTF-8 form data."


async def signed_in(request: web.Request) -> Session | None:
    session_id = request.cookies.get(COOKIE)
    # A cookie of bytes that are not UTF-8 cannot be one we issued (and cannot be hashed): no session.
    return await load_session(deps_of(request).pool, session_id) if session_id and storable_text(session_id) else None


def _page(session: Session, template: str, status: int = 200, **context: Any) -> web.Response:
    return render(template, status, caller=session.caller, csrf=session.csrf, **context)


def _notice(session: Session | None, title: str, message: str, status: int) -> web.Response:
    if session is None:
        return render("notice.html", status, title=title, heading=None, message=message)
    return _page(session, "notice.html", status, title=title, heading=None, message=message)


async def _guard(request: web.Request, roles: tuple[str, ...]) -> Session | web.Response:
    session = await signed_in(request)
    if session is None:
        await note_refusal(request, "not_signed_in")
        raise web.HTTPFound("/ui/login?next=" + quote(request.path_qs, safe=""))
    if session.caller.role not in roles:
        await note_refusal(request, "role_not_allowed", session.caller)
        return _notice(session, "Not allowed", f"Your role ({session.caller.role}) may not open this page.", 403)
    return session


async def _log(request: web.Request, session: Session, action: str, target: dict[str, Any]) -> None:
    await record_read(request, actor=session.caller.name, role=session.caller.role, action=action,
                      target={**target, "via": "web"}, page=True)


def _csrf_ok(expected: str | None, form: Any) -> bool:
    given = form.get("csrf")
    if not expected or not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


# Sign in / out -------------------------------------------------------------------------------


async def login_form(request: web.Request, error: str = "", status: int | None = None) -> web.Response:
    """The sign-in form, with a fresh login-CSRF value in the form and in a cookie."""
    next_url = request.query.get("next", "/ui/")
    login_csrf = secrets.token_urlsafe(24)
    resp = render("login.html", status or (401 if error else 200), title="Sign in", error=error,
                  next_url=next_url, login_csrf=login_csrf)
    set_login_csrf(request, resp, login_csrf)
    return resp


def set_login_csrf(request: web.Request, resp: web.StreamResponse, login_csrf: str) -> None:
    """The login CSRF cookie for a sign-in form under /ui/login (the token form and the link's page)."""
    resp.set_cookie(LOGIN_CSRF_COOKIE, login_csrf, httponly=True, samesite="Strict", path="/ui/login",
                    secure=request.secure, max_age=3600)


def login_csrf_ok(request: web.Request, form: Any) -> bool:
    return _csrf_ok(request.cookies.get(LOGIN_CSRF_COOKIE), form)


def signed_in_redirect(request: web.Request, session_id: str, next_url: str) -> web.HTTPFound:
    """The redirect that ends a sign-in: the session cookie set, the login CSRF cookie gone."""
    resp = web.HTTPFound(next_url)
    resp.set_cookie(COOKIE, session_id, httponly=True, samesite="Strict", path="/ui",
                    secure=request.secure, max_age=LIFETIME_HOURS * 3600)
    resp.del_cookie(LOGIN_CSRF_COOKIE, path="/ui/login")
    return resp


async def login(request: web.Request) -> web.Response:
    form = await read_form(request)
    if form is None:
        return _notice(None, "Sign in", UNREADABLE_FORM, 400)
    if not login_csrf_ok(request, form):
        return await login_form(request, "This sign-in form expired or did not come from this site; "
                                "please sign in again.", 403)
    session_id = await open_session(deps_of(request).pool, str(form.get("token", "")).strip())
    if session_id is None:
        await note_refusal(request, "invalid_token")
        return await login_form(request, "That token is unknown or revoked.")
    next_url = str(form.get("next", "/ui/"))
    if not _NEXT.fullmatch(next_url):
        next_url = "/ui/"  # never redirect off the site
    raise signed_in_redirect(request, session_id, next_url)


async def logout(request: web.Request) -> web.Response:
    session = await signed_in(request)
    form = await read_form(request)
    if session is None or form is None or not _csrf_ok(session.csrf, form):
        return _notice(None, "Sign out", "Invalid or missing CSRF token.", 403)
    await close_session(deps_of(request).pool, request.cookies[COOKIE])
    resp = web.HTTPFound("/ui/login")
    resp.del_cookie(COOKIE, path="/ui")
    raise resp


# Search --------------------------------------------------------------------------------------


async def search_page(request: web.Request) -> web.Response:
    session = await _guard(request, READERS)
    if isinstance(session, web.Response):
        return session
    values = {k: v for k, v in request.query.items() if k in SEARCH_FIELDS + ("cursor",) and v.strip()}
    context: dict[str, Any] = {"title": "Search", "values": values, "items": None, "error": None,
                               "more_query": "", "export_fields": []}
    if not any(k in values for k in SEARCH_FIELDS):
        return _page(session, "search.html", **context)
    try:
        filters = parse_filters(values)
    except FilterError as exc:
        return _page(session, "search.html", 400, **{**context, "error": str(exc)})
    await _log(request, session, "search", values)
    rows, cursor = await search(deps_of(request).pool, filters, columns=queries.LISTED_WITH_MEDIA)
    context["items"] = queries.listed(rows)
    if cursor:
        context["more_query"] = urlencode({**{k: v for k, v in values.items() if k != "cursor"}, "cursor": cursor})
    if "phone" in values:
        context["export_fields"] = [(k, values[k]) for k in ("phone", "since", "until") if k in values]
    return _page(session, "search.html", **context)


# Message and conversation ----------------------------------------------------------------------


async def message_page(request: web.Request) -> web.Response:
    session = await _guard(request, READERS)
    if isinstance(session, web.Response):
        return session
    message_id = request.match_info["message_id"]
    await _log(request, session, "view", {"message_id": message_id})
    m = await queries.get_message(deps_of(request).pool, message_id)
    if m is None:
        return _notice(session, "Not found", f"No archived message {message_id}.", 404)
    # The recipient's consent as judged when it was sent (never recomputed here).
    consent = (await views.message_consent(deps_of(request).pool, [message_id])).get(message_id) \
        if m["direction"] == "out" else None
    standing = await receipts.message_standing(deps_of(request).pool, message_id, deps_of(request).ledger_key)
    return _page(session, "message.html", title="Message", m=m, consent=consent, standing=standing)


async def conversation_page(request: web.Request) -> web.Response:
    session = await _guard(request, READERS)
    if isinstance(session, web.Response):
        return session
    phone = normalize_phone(request.match_info["phone"])
    if phone is None:
        return _notice(session, "Conversation", "Not a phone number.", 400)
    values = {k: v for k, v in request.query.items() if k in ("since", "until", "cursor") and v}
    try:
        filters = parse_filters(values, allowed=("since", "until", "cursor"))
    except FilterError as exc:
        return _notice(session, "Conversation", f"Bad filter {exc}", 400)
    filters.phone = phone
    filters.limit = 200
    await _log(request, session, "conversation", {"phone": phone, **values})
    rows, cursor = await search(deps_of(request).pool, filters, ascending=True,
                                columns=queries.LISTED_WITH_MEDIA)
    items = queries.listed(rows)
    more_query = urlencode({**values, "cursor": cursor}) if cursor else ""
    return _page(session, "conversation.html", title="Conversation", phone=phone, items=items,
                 more_query=more_query)


async def media_file(request: web.Request) -> web.StreamResponse:
    """The archived bytes as data: an attachment unless the type is on the inline allow-list, never
    sniffed, and sandboxed so that even a document a browser would render cannot run script here."""
    session = await _guard(request, READERS)
    if isinstance(session, web.Response):
        return session
    row = await queries.archived_media(deps_of(request).pool, request.match_info["archive_id"])
    if row is None:
        raise web.HTTPNotFound()
    await _log(request, session, "media", {"media": str(row["archive_id"]), "message_id": row["message_id"]})
    return await send_media(request, deps_of(request).store, row, partial=False,
                            headers={"Cache-Control": "private, no-store"})


# Exports ---------------------------------------------------------------------------------------


async def start_export(request: web.Request) -> web.Response:
    session = await _guard(request, READERS)
    if isinstance(session, web.Response):
        return session
    form = await read_form(request)
    if form is None:
        return _notice(session, "Export", UNREADABLE_FORM, 400)
    if not _csrf_ok(session.csrf, form):
        return _notice(session, "Export", "Invalid or missing CSRF token.", 403)
    try:
        f = parse_filters({k: str(form[k]) for k in ("phone", "since", "until") if form.get(k)})
    except FilterError as exc:
        return _notice(session, "Export", f"Bad filter {exc}", 400)
    export_id = export_jobs.new_export_id()
    deps = deps_of(request)
    await export_jobs.start_export(
        deps.client, ExportInput(export_id=export_id, phone=f.phone, since=f.since, until=f.until,
                                 actor=session.caller.name, role=session.caller.role),
        task_queue=deps.settings.task_queue)
    raise web.HTTPSeeOther(f"/ui/exports/{export_id}")


async def export_page(request: web.Request) -> web.Response:
    session = await _guard(request, READERS)
    if isinstance(session, web.Response):
        return session
    export_id = request.match_info["export_id"]
    if not _EXPORT_ID.match(export_id):
        raise web.HTTPNotFound()
    try:
        status = await export_jobs.export_status(deps_of(request).client, export_id)
    except Exception:  # noqa: BLE001 - an unknown id
        raise web.HTTPNotFound() from None
    if status not in ("COMPLETED", "RUNNING"):
        return _notice(session, "Export", f"The export ended as {status}.", 500)
    return _page(session, "export.html", title="Export", export_id=export_id, running=status == "RUNNING")


async def export_download(request: web.Request) -> web.StreamResponse:
    session = await _guard(request, READERS)
    if isinstance(session, web.Response):
        return session
    export_id = request.match_info["export_id"]
    if not _EXPORT_ID.match(export_id):
        raise web.HTTPNotFound()
    result = await export_jobs.export_result(deps_of(request).client, export_id)
    await _log(request, session, "export_download", {"export_id": export_id, "sha256": result.sha256})
    return await stream_object(
        request, deps_of(request).store, result.storage_key, size=result.size,
        headers={"Content-Type": "application/zip", "X-Content-SHA256": result.sha256,
                 "Content-Disposition": f'attachment; filename="wa-archive-export-{export_id}.zip"'})


# Operators and admins --------------------------------------------------------------------------


async def failures_page(request: web.Request) -> web.Response:
    session = await _guard(request, ("operator", "admin"))
    if isinstance(session, web.Response):
        return session
    await _log(request, session, "failures", {"limit": 200})
    failures = await queries.list_failures(deps_of(request).pool, limit=200)
    return _page(session, "failures.html", title="Failures", failures=failures)


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
