"""The auditors' own pages: the access log (newest first, filtered, paged), and a message's receipt
as a download. Both are reads: each is written to the access log before anything is shown."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from wa_archive.access.access_log import PAGE_FILTERS, page_access, parse_access_query, query_target
from wa_archive.access.wording import source
from wa_archive.errors import FilterError, ReceiptRefused
from webhook.audit_api import receipt_headers, receipt_text
from webhook.deps import deps_of
from webhook.ui import READERS, _guard, _log, _notice, _page

PAGE_SIZE = 100


async def access_log_page(request: web.Request) -> web.Response:
    """GET /ui/access-log: auditors and admins; filters since, until (a date includes its day), outcome, who."""
    session = await _guard(request, READERS)
    if isinstance(session, web.Response):
        return session
    values = {k: v for k, v in request.query.items() if k in PAGE_FILTERS and k != "limit" and v.strip()}
    context: dict[str, Any] = {"title": "Access log", "values": values, "rows": [], "error": None,
                               "more_query": ""}
    try:
        query = parse_access_query({**values, "limit": str(PAGE_SIZE)})
    except FilterError as exc:
        return _page(session, "access_log.html", 400, **{**context, "error": str(exc)})
    await _log(request, session, "access_log", query_target(query))
    rows, cursor = await page_access(deps_of(request).pool, query)
    context["rows"] = [{**row, "source": source(row["remote_addr"])} for row in rows]
    if cursor:
        context["more_query"] = urlencode({**{k: v for k, v in values.items() if k != "cursor"}, "cursor": cursor})
    return _page(session, "access_log.html", **context)


async def receipt_download(request: web.Request) -> web.Response:
    """GET /ui/receipts/{message_id}: the receipt `wa-archive receipt` prints, as a file to verify offline."""
    session = await _guard(request, READERS)
    if isinstance(session, web.Response):
        return session
    message_id = request.match_info["message_id"]
    await _log(request, session, "receipt", {"message_id": message_id})
    try:
        text = await receipt_text(request, message_id)
    except ReceiptRefused as exc:
        notice = _notice(session, "Receipt", str(exc), exc.status)
        notice.headers.update(exc.headers())
        return notice
    return web.Response(text=text, content_type="application/json", headers=receipt_headers(message_id))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ui/access-log", access_log_page)
    # Its own prefix, not /ui/messages/{id}/receipt: a message id may contain '/', and there it would be
    # ambiguous with the message page of an id ending in "/receipt".
    app.router.add_get("/ui/receipts/{message_id:.+}", receipt_download)
