"""The auditors' pages against hostile senders and hostile networks, over real HTTP on the real stack:
archived media is data, hostile text stays text under a strict CSP, X-Forwarded-* is believed only
from trusted proxies, sign-in needs its CSRF token, and every page that reads the archive is logged."""

from __future__ import annotations

import copy
import re
import uuid
from html import escape
from http.cookies import Morsel
from urllib.parse import quote

import pytest

from tests.test_outbound import PNID, TEMPLATE_V1, status_body, template_send
from wa_archive.archive.media_types import normalize_mime
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import WABA_ID, dumps, envelope, media_message, message, wamid

PHONE = "447700900123"
SESSION = "wa_archive_session"
LOGIN_CSRF = "wa_archive_login_csrf"
# Markup an attacker would put in anything a sender controls.
HOSTILE = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
HTML_BODY = b"<html><body><script>fetch('/ui/exports',{method:'POST'})</script>pwned</body></html>"


async def sign_in(stack, token: str, headers: dict | None = None) -> Morsel:
    """Sign in as a browser would: fetch the form (and its CSRF cookie), post it back."""
    async with stack.http.get(f"{stack.url}/ui/login", headers=headers) as resp:
        html = await resp.text()
        login_cookie = resp.cookies.get(LOGIN_CSRF)
    form = {"token": token}
    found = re.search(r'name="csrf" value="([^"]*)"', html)
    if found:
        form["csrf"] = found.group(1)
    hdrs = dict(headers or {})
    if login_cookie is not None:
        hdrs["Cookie"] = f"{LOGIN_CSRF}={login_cookie.value}"
    async with stack.http.post(f"{stack.url}/ui/login", data=form, headers=hdrs, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        return resp.cookies[SESSION]


async def fetch(stack, path: str, cookie: Morsel, headers: dict | None = None):
    hdrs = {"Cookie": f"{SESSION}={cookie.value}", **(headers or {})}
    async with stack.http.get(f"{stack.url}{path}", headers=hdrs, allow_redirects=False) as resp:
        return resp.status, resp.headers, await resp.read()


def assert_strict_csp(headers, html: str) -> None:
    """No inline code runs but the page's own, which carries the nonce named in this response's CSP."""
    csp = headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
    for directive in ("frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'", "object-src 'none'"):
        assert directive in csp, csp
    found = re.search(r"script-src 'nonce-([A-Za-z0-9_+/=-]+)'", csp)
    assert found, csp
    nonce = found.group(1)
    assert f"style-src 'nonce-{nonce}'" in csp
    scripts = re.findall(r"<(?:script|style)\b([^>]*)>", html)
    assert scripts and all(f'nonce="{nonce}"' in attrs for attrs in scripts), scripts
    assert " style=" not in html  # inline style attributes would be refused by this CSP
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"


def assert_inert(html: str) -> None:
    """The hostile markup is shown as text: present escaped, never as live tags."""
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


async def _hostile_document(stack, mime: str, filename: str) -> dict:
    media = stack.graph.add(FakeMedia(f"d{uuid.uuid4().hex[:10]}", mime_type=mime, content=HTML_BODY))
    item = media_message("document", media.media_id, media.sha256_b64(), mime, mid=wamid())
    item["document"]["filename"] = filename
    status, _ = await stack.post(dumps(envelope([item])))
    assert status == 200
    return await stack.wait_for_message(item["id"])


@pytest.mark.parametrize("mime", ["text/html", "application/pdf, text/html"])
async def test_a_hostile_document_is_an_attachment_and_never_framed(stack, mime):
    archived = await _hostile_document(stack, mime, f"statement{HOSTILE}.html")
    media = archived["media"][0]
    assert media["status"] == "archived"
    cookie = await sign_in(stack, await stack.token("auditor"))

    status, headers, body = await fetch(stack, f"/ui/media/{media['archive_id']}", cookie)
    assert status == 200 and body == HTML_BODY
    assert headers["Content-Disposition"].startswith("attachment")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in headers["Content-Security-Policy"]
    assert headers["Content-Type"] == normalize_mime(mime)  # one parsed type, never the raw declaration

    status, headers, page = await fetch(stack, f"/ui/messages/{quote(archived['id'], safe='')}", cookie)
    html = page.decode()
    assert status == 200
    assert "<iframe" not in html and "<embed" not in html and "<object" not in html
    src = f"/ui/media/{media['archive_id']}"
    assert f'<img src="{src}"' not in html
    assert re.search(rf'<a class="download" href="{re.escape(src)}" download="[^"]*">', html)
    # The sender's declaration is shown as evidence, as text, beside the type the archive serves.
    declared = f"<dt>Declared type</dt><dd class=\"hash\">{escape(mime)}</dd>"
    assert (declared in html) == (mime != normalize_mime(mime))
    assert_inert(html)
    assert_strict_csp(headers, html)


async def test_a_pdf_is_offered_as_a_download_not_a_frame(stack):
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    media = stack.graph.add(FakeMedia(f"p{uuid.uuid4().hex[:10]}", mime_type="application/pdf", content=pdf))
    item = media_message("document", media.media_id, media.sha256_b64(), "application/pdf", mid=wamid())
    await stack.post(dumps(envelope([item])))
    archived = await stack.wait_for_message(item["id"])
    cookie = await sign_in(stack, await stack.token("auditor"))
    _, _, page = await fetch(stack, f"/ui/messages/{quote(archived['id'], safe='')}", cookie)
    html = page.decode()
    assert "<iframe" not in html
    assert 'download="mandate.pdf">Download mandate.pdf</a>' in html
    _, headers, body = await fetch(stack, f"/ui/media/{archived['media'][0]['archive_id']}", cookie)
    assert body == pdf and headers["Content-Type"] == "application/pdf"
    assert "sandbox" in headers["Content-Security-Policy"]


async def _seed_hostile(stack) -> dict:
    """Hostile markup in an inbound text and contact name, an outbound template's parameter and
    definition, and the id of a message whose media fails to archive."""
    ids = {"text": wamid(), "failed": f"wamid.{HOSTILE}"}
    await stack.post(dumps(envelope([message("text", {"body": f"hello {HOSTILE}"}, mid=ids["text"])],
                                    contacts=[{"profile": {"name": f"Mallory {HOSTILE}"}, "wa_id": PHONE}])))
    missing = stack.graph.add(FakeMedia(f"x{uuid.uuid4().hex[:10]}", status=404))
    await stack.post(dumps(envelope([media_message("image", missing.media_id, None, "image/jpeg",
                                                   mid=ids["failed"])])))

    template = copy.deepcopy(TEMPLATE_V1)
    template["components"][2]["text"] = f"Footer {HOSTILE}"
    stack.graph.set_template(WABA_ID, template)
    header = stack.graph.add(FakeMedia(str(uuid.uuid4().int % 10**15), mime_type="image/png", content=b"\x89PNG"))
    request = template_send({"id": header.media_id})
    request["template"]["components"][1]["parameters"][0]["text"] = HOSTILE
    token = await stack.token("sender")
    async with stack.http.post(f"{stack.url}/api/v1/outbound", headers={"Authorization": f"Bearer {token}"}, json={
            "phone_number_id": PNID, "request": request,
            "response": {"messages": [{"id": "wamid.SEC" + uuid.uuid4().hex}]}}) as resp:
        assert resp.status < 300, await resp.text()
        ids["out"] = (await resp.json())["message_id"]
    await stack.post(status_body(ids["out"], "sent", 1771000000))
    await stack.wait_for_message(ids["text"])
    await stack.wait_for_message(ids["out"])
    await stack.wait_for_failure(ids["failed"])
    return ids


async def test_hostile_text_is_inert_on_every_page(stack):
    ids = await _seed_hostile(stack)
    cookie = await sign_in(stack, await stack.token("admin"))
    pages = {
        "search": f"/ui/?phone={PHONE}&q={quote(HOSTILE)}",
        "search results": f"/ui/?phone={PHONE}",
        "inbound message": f"/ui/messages/{quote(ids['text'], safe='')}",
        "template message": f"/ui/messages/{quote(ids['out'], safe='')}",
        "conversation": f"/ui/conversations/{PHONE}",
        "failures": "/ui/failures",
        "access log": "/ui/access-log",
    }
    for name, path in pages.items():
        status, headers, body = await fetch(stack, path, cookie)
        html = body.decode()
        assert status == 200, (name, status)
        assert_inert(html)
        assert_strict_csp(headers, html)
    _, _, body = await fetch(stack, f"/ui/messages/{quote(ids['text'], safe='')}", cookie)
    assert "Mallory &#34;&gt;&lt;img" in body.decode()  # the contact name, escaped
    _, _, body = await fetch(stack, "/ui/failures", cookie)
    assert "wamid.&#34;&gt;&lt;img" in body.decode()  # the failed message's id, escaped


async def test_pages_outside_a_session_have_the_strict_csp_too(stack):
    async with stack.http.get(f"{stack.url}/ui/login?next={quote(HOSTILE)}") as resp:
        html = await resp.text()
        assert resp.status == 200
        assert_strict_csp(resp.headers, html)
        assert_inert(html)
        assert "Strict-Transport-Security" not in resp.headers  # plain HTTP from an untrusted peer
    cookie = await sign_in(stack, await stack.token("operator"))
    status, headers, body = await fetch(stack, "/ui/", cookie)
    assert status == 403 and b"may not open this page" in body
    assert_strict_csp(headers, body.decode())


async def test_sign_in_without_the_csrf_token_is_refused(stack):
    token = await stack.token("auditor")
    before = await stack.pool.fetchval("SELECT count(*) FROM ui_sessions")
    async with stack.http.post(f"{stack.url}/ui/login", data={"token": token}, allow_redirects=False) as resp:
        assert resp.status == 403 and SESSION not in resp.cookies
    async with stack.http.get(f"{stack.url}/ui/login") as resp:
        login_cookie = resp.cookies[LOGIN_CSRF]
    assert login_cookie["httponly"] and login_cookie["samesite"] == "Strict"
    for form_value in ("", "forged-" + login_cookie.value):  # a cookie alone, or a value that does not match
        async with stack.http.post(f"{stack.url}/ui/login", data={"token": token, "csrf": form_value},
                                   headers={"Cookie": f"{LOGIN_CSRF}={login_cookie.value}"},
                                   allow_redirects=False) as resp:
            assert resp.status == 403 and SESSION not in resp.cookies
    async with stack.http.post(f"{stack.url}/ui/login", data={"token": token, "csrf": login_cookie.value},
                               allow_redirects=False) as resp:  # the form value without the cookie
        assert resp.status == 403 and SESSION not in resp.cookies
    assert await stack.pool.fetchval("SELECT count(*) FROM ui_sessions") == before
    assert (await sign_in(stack, token)).value  # the real form still works


async def test_failures_and_access_log_pages_leave_access_log_rows(stack):
    name = f"admin-{uuid.uuid4().hex[:6]}"
    cookie = await sign_in(stack, await stack.token("admin", name=name))
    for path in ("/ui/failures", "/ui/access-log"):
        status, _, _ = await fetch(stack, path, cookie)
        assert status == 200
    actions = [r["action"] for r in await stack.pool.fetch(
        "SELECT action FROM access_log WHERE actor = $1 AND target->>'via' = 'web' ORDER BY id", name)]
    assert actions == ["failures", "access_log"]


@pytest.mark.parametrize("trusted,believed", [("127.0.0.0/8", True), ("10.0.0.0/8", False), (None, False)])
async def test_forwarded_headers_are_believed_only_from_trusted_proxies(stack_factory, trusted, believed):
    stack = await stack_factory(run_worker=False, trusted_proxies=trusted)
    # The client wrote the left-most entry itself; 127.0.0.5 is a second proxy of ours.
    forwarded = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7, 127.0.0.5", "X-Forwarded-Proto": "https"}
    reader = "198.51.100.7" if believed else "127.0.0.1"

    name = f"auditor-{uuid.uuid4().hex[:6]}"
    token = await stack.token("auditor", name=name)
    cookie = await sign_in(stack, token, headers=forwarded)
    assert bool(cookie["secure"]) is believed
    status, headers, _ = await fetch(stack, f"/ui/?phone={PHONE}", cookie, headers=forwarded)
    assert status == 200
    assert ("Strict-Transport-Security" in headers) is believed
    async with stack.http.get(f"{stack.url}/api/v1/messages", params={"phone": PHONE},
                              headers={"Authorization": f"Bearer {token}", **forwarded}) as resp:
        assert resp.status == 200
    rows = await stack.pool.fetch("SELECT remote_addr, target FROM access_log WHERE actor = $1 ORDER BY id", name)
    assert len(rows) == 2 and {r["remote_addr"] for r in rows} == {reader}

    status, body = await stack.post(dumps(envelope([message("text", {"body": "hi"})])), headers=forwarded)
    assert status == 200
    stored = await stack.pool.fetchval("SELECT remote_addr FROM deliveries WHERE sha256 = $1", body["delivery"])
    assert stored == reader


def test_client_address_is_the_right_most_untrusted_entry():
    from wa_archive.config import parse_networks
    from webhook.edge import client_address, forwarded_scheme, is_trusted

    trusted = parse_networks("10.0.0.0/8, ::1")
    assert client_address("10.0.0.1", ["6.6.6.6, 1.2.3.4"], trusted) == "1.2.3.4"
    assert client_address("10.0.0.1", ["6.6.6.6", "1.2.3.4, 10.9.9.9"], trusted) == "1.2.3.4"
    assert client_address("10.0.0.1", ["1.2.3.4:5678"], trusted) == "1.2.3.4"
    assert client_address("10.0.0.1", ["[2001:db8::1]:443"], trusted) == "2001:db8::1"
    assert client_address("10.0.0.1", ["10.1.1.1, 10.2.2.2"], trusted) == "10.1.1.1"  # all ours
    assert client_address("10.0.0.1", ["1.2.3.4, not-an-ip, 10.2.2.2"], trusted) == "10.2.2.2"
    assert client_address("10.0.0.1", [], trusted) == "10.0.0.1"
    assert forwarded_scheme(["https"], "http") == "https"
    assert forwarded_scheme(["https, http"], "http") == "http"  # the nearest proxy's word counts
    assert forwarded_scheme(["gopher"], "http") == "http"
    assert is_trusted("::ffff:10.1.2.3", trusted) and not is_trusted("11.0.0.1", trusted)
    assert not is_trusted(None, trusted) and not is_trusted("", trusted)
    with pytest.raises(ValueError, match="not an IP address or CIDR"):
        parse_networks("10.0.0.0/8, proxy.example")
