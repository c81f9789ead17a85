"""GET and POST /ui/login/link: signing in with a one-time link (wa_archive/access/sign_in_links.py).

GET serves a page that spends nothing: it takes the code from the URL's fragment into a form with a
login CSRF value. POST spends the code and opens the same session cookie as the token form, then
redirects to the reader's first page, with no code in any URL the server ever sees. A link that signs
no one in (unknown, used, expired, its token revoked) gets a page saying so and an entry in the
access log as a refused attempt."""

from __future__ import annotations

import secrets

from aiohttp import web

from wa_archive.access.sign_in_links import LINK_PATH, LinkRefused, sign_in_with
from wa_archive.json_input import storable_text
from webhook.auth import note_refusal
from webhook.deps import deps_of, read_form
from webhook.ui import UNREADABLE_FORM, _notice, login_csrf_ok, set_login_csrf, signed_in_redirect
from webhook.ui_pages import render


async def link_page(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    login_csrf = secrets.token_urlsafe(24)
    resp = render("login_link.html", status, title="Sign in", error=error, login_csrf=login_csrf)
    set_login_csrf(request, resp, login_csrf)
    return resp


async def sign_in(request: web.Request) -> web.Response:
    form = await read_form(request)
    if form is None:
        return _notice(None, "Sign in", UNREADABLE_FORM, 400)
    if not login_csrf_ok(request, form):
        # The code is not spent: opening the link again works.
        return await link_page(request, "This sign-in page expired or did not come from this site; "
                               "open the link again.", 403)
    code = form.get("code")
    outcome = await sign_in_with(deps_of(request).pool, code if isinstance(code, str) and storable_text(code)
                                 else "")
    if isinstance(outcome, LinkRefused):
        await note_refusal(request, outcome.reason, outcome.caller)
        return _notice(None, "Sign in", outcome.message, outcome.status)
    raise signed_in_redirect(request, outcome.session_id, outcome.landing)


def add_routes(app: web.Application) -> None:
    app.router.add_get(LINK_PATH, link_page)
    app.router.add_post(LINK_PATH, sign_in)
