"""The auditors' contact page: who a phone number's person was over time (identifiers with their
history, profile names with first and last seen, who held the number) and what they agreed to (the
consent timeline with each entry's source, evidence and recorder), each linked to the messages it came
from. Names, evidence and detail are the sender's or a recorder's text, so the template escapes them and
an evidence URL is a live link only when it is plainly http(s); the read is access-logged first."""

from __future__ import annotations

from aiohttp import web

from wa_archive.archive.keys import normalize_phone
from wa_archive.contacts import views
from wa_archive.discovery.search import parse_filters
from wa_archive.errors import FilterError
from webhook.deps import deps_of
from webhook.ui import READERS, _guard, _log, _notice, _page

# Messages listed on the page (per name, and in the messages table): the conversation page pages through
# the rest, and a period narrows the profile.
LISTED = 500


async def contact_page(request: web.Request) -> web.Response:
    session = await _guard(request, READERS)
    if isinstance(session, web.Response):
        return session
    phone = normalize_phone(request.match_info["phone"])
    if phone is None:
        return _notice(session, "Contact", "Not a phone number.", 400)
    values = {k: v for k, v in request.query.items() if k in ("since", "until") and v.strip()}
    try:
        filters = parse_filters(values, allowed=("since", "until"))
    except FilterError as exc:
        return _notice(session, "Contact", f"Bad filter {exc}", 400)
    await _log(request, session, "contact", {"phone": phone, **values})
    doc = await views.contact_document(deps_of(request).pool, phone, since=filters.since, until=filters.until)
    if doc is None:
        return _notice(session, "Contact", f"No contact has been seen with the number {phone}.", 404)
    return _page(session, "contact.html", title=f"Contact {phone}", doc=doc, values=values,
                 listed=LISTED)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ui/contacts/{phone}", contact_page)
