"""The auditors' pages in a real headless Chromium: sign in, search, see an image, read a
conversation, download documents (never framed), export and download a bundle that verifies, all
under the pages' nonce-only CSP without a violation. Screenshots go to test-artifacts/."""

from __future__ import annotations

import base64
import copy
import os
import shutil
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest_asyncio
from playwright.async_api import async_playwright

from tests.conftest import LEDGER_KEY
from tests.test_outbound import PNID, TEMPLATE_V1, status_body, template_send
from tests.test_ui_security import HTML_BODY, sign_in
from wa_archive.devstack.dev import _demo_image
from wa_archive.discovery.export import verify_bundle
from wa_archive.integrity.ledger import Signer
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import WABA_ID, dumps, envelope, media_message, message, wamid

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
PHONE = "447700900123"
DOCUMENTS_PHONE = "447700900456"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
        "--disable-background-networking", "--disable-component-update"]


@pytest_asyncio.fixture
async def browser():
    assert shutil.which(CHROMIUM) or os.path.exists(CHROMIUM), \
        "Chromium is missing: `make test` installs Debian's chromium package"
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        await b.close()


async def _seed(stack) -> dict:
    image = _demo_image()
    media = stack.graph.add(FakeMedia(f"m{uuid.uuid4().hex[:10]}", mime_type="image/png", content=image))
    ids = {"text": wamid(), "image": wamid()}
    await stack.post(dumps(envelope([
        message("text", {"body": "Please confirm the transfer of 2,500 GBP"}, mid=ids["text"], ts=1767268800),
        media_message("image", media.media_id, media.sha256_b64(), "image/png", mid=ids["image"], ts=1770000000),
    ])))
    stack.graph.set_template(WABA_ID, copy.deepcopy(TEMPLATE_V1))
    header = stack.graph.add(FakeMedia(str(uuid.uuid4().int % 10**15), mime_type="image/png", content=image))
    token = await stack.token("sender")
    async with stack.http.post(f"{stack.url}/api/v1/outbound", headers={"Authorization": f"Bearer {token}"}, json={
            "phone_number_id": PNID, "request": template_send({"id": header.media_id}),
            "response": {"messages": [{"id": "wamid.UI" + uuid.uuid4().hex}]}}) as resp:
        ids["out"] = (await resp.json())["message_id"]
    await stack.post(status_body(ids["out"], "sent", 1771000000))
    documents = []
    for key, mime, content in (("pdf", "application/pdf", PDF), ("html", "text/html", HTML_BODY)):
        doc = stack.graph.add(FakeMedia(f"d{uuid.uuid4().hex[:10]}", mime_type=mime, content=content))
        ids[key] = wamid()
        documents.append(media_message("document", doc.media_id, doc.sha256_b64(), mime, mid=ids[key],
                                       phone=DOCUMENTS_PHONE, ts=1772000000))
    await stack.post(dumps(envelope(documents, phone=DOCUMENTS_PHONE)))
    for mid in ids.values():
        await stack.wait_for_message(mid)
    return ids


async def _download_from_message_page(page, stack, message_id: str, tmp_path: Path) -> bytes:
    """Open a message page, check its document is a download link and not a frame, download it."""
    await page.goto(f"{stack.url}/ui/messages/{quote(message_id, safe='')}")
    assert await page.locator("iframe, embed, object").count() == 0
    link = page.locator(".preview a.download")
    assert await link.count() == 1
    url = page.url
    async with page.expect_download() as info:
        await link.click()
    download = await info.value
    target = tmp_path / f"{uuid.uuid4().hex}.bin"
    await download.save_as(target)
    assert page.url == url  # a download, not a navigation to the archived bytes
    return target.read_bytes()


async def test_auditor_signs_in_searches_views_and_exports(stack, browser, tmp_path):
    ids = await _seed(stack)
    token = await stack.token("auditor", name=f"auditor-{uuid.uuid4().hex[:6]}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = await browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    csp_violations: list[str] = []
    page.on("console", lambda msg: csp_violations.append(msg.text) if "Content Security Policy" in msg.text else None)

    await page.goto(f"{stack.url}/ui/")
    assert "/ui/login" in page.url
    await page.fill("#token", "wa_wrong")
    await page.click("button")
    assert "unknown or revoked" in await page.inner_text("main")
    await page.fill("#token", token)
    await page.click("main button")
    assert await page.inner_text("h1") == "Search the archive"
    cookies = {c["name"]: c for c in await context.cookies()}
    session = cookies["wa_archive_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"

    await page.fill("#phone", "+44 7700 900123")
    await page.fill("#q", "transfer")
    await page.click("form.filters button")
    rows = page.locator("table tr")
    assert await rows.count() == 3  # header + the inbound text + the outbound template that says "transfer"
    await page.screenshot(path=str(ARTIFACTS / "search.png"), full_page=True)

    await page.goto(f"{stack.url}/ui/?phone={PHONE}")
    assert await page.locator("table tr").count() == 4
    await page.click("text=image caption")
    image = page.locator(".preview img")
    await image.wait_for()
    assert await image.evaluate("img => img.complete && img.naturalWidth") == 64
    assert await page.locator("time + .local").count() >= 1  # local time beside UTC
    await page.screenshot(path=str(ARTIFACTS / "message-image.png"), full_page=True)

    await page.goto(f"{stack.url}/ui/conversations/{PHONE}")
    bubbles = page.locator(".bubble")
    assert await bubbles.count() == 3
    assert await page.locator(".bubble.out").count() == 1
    assert "Hello Priya" in await page.locator(".bubble.out").inner_text()
    await page.screenshot(path=str(ARTIFACTS / "conversation.png"), full_page=True)

    await page.goto(f"{stack.url}/ui/messages/{ids['out']}")
    assert "Template snapshot" in await page.inner_text("main")
    await page.screenshot(path=str(ARTIFACTS / "message-template.png"), full_page=True)

    assert await _download_from_message_page(page, stack, ids["pdf"], tmp_path) == PDF
    await page.screenshot(path=str(ARTIFACTS / "message-pdf.png"), full_page=True)
    assert await _download_from_message_page(page, stack, ids["html"], tmp_path) == HTML_BODY

    await page.goto(f"{stack.url}/ui/?phone={PHONE}")
    await page.click("text=Export these messages")
    link = page.locator("#download")
    await link.wait_for(timeout=60000)
    async with page.expect_download() as info:
        await link.click()
    download = await info.value
    bundle = tmp_path / "bundle.zip"
    await download.save_as(bundle)
    assert verify_bundle(bundle, Signer(base64.b64decode(LEDGER_KEY)).public_key()) == []
    await page.screenshot(path=str(ARTIFACTS / "export.png"), full_page=True)

    assert "Your role (auditor) may not" in await (await page.goto(f"{stack.url}/ui/failures")).text()
    assert csp_violations == []
    await context.close()
    actions = [r["action"] for r in await stack.pool.fetch(
        "SELECT action FROM access_log WHERE actor LIKE 'auditor-%' AND target->>'via' = 'web' ORDER BY id")]
    assert {"search", "view", "media", "conversation", "export_download"} <= set(actions)


async def test_forms_need_the_csrf_token_and_roles_are_enforced(stack, browser):
    token = await stack.token("operator")
    async with stack.http.post(f"{stack.url}/ui/login", data={"token": token}, allow_redirects=False) as resp:
        assert resp.status == 403  # no login CSRF token
    cookie = (await sign_in(stack, token)).value
    headers = {"Cookie": f"wa_archive_session={cookie}"}
    async with stack.http.get(f"{stack.url}/ui/failures", headers=headers) as resp:
        assert resp.status == 200 and "Archive failures" in await resp.text()
    async with stack.http.get(f"{stack.url}/ui/", headers=headers) as resp:
        assert resp.status == 403  # operators run the system; they do not read messages
    # A refused attempt whose path is one long unbroken word, as anyone holding a token can make.
    # (Another operator's: a repeated refusal within the minute is counted rather than written at once.)
    other = (await sign_in(stack, await stack.token("operator"))).value
    async with stack.http.get(f"{stack.url}/ui/messages/{'W' * 3000}",
                              headers={"Cookie": f"wa_archive_session={other}"}) as resp:
        assert resp.status == 403
    async with stack.http.post(f"{stack.url}/ui/logout", data={}, headers=headers, allow_redirects=False) as resp:
        assert resp.status == 403  # no CSRF token
    admin = await stack.token("admin")
    admin_cookie = (await sign_in(stack, admin)).value
    async with stack.http.post(f"{stack.url}/ui/exports", data={"phone": PHONE},
                               headers={"Cookie": f"wa_archive_session={admin_cookie}"}, allow_redirects=False) as resp:
        assert resp.status == 403
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    await context.add_cookies([{"name": "wa_archive_session", "value": admin_cookie, "url": stack.url + "/ui/"}])
    page = await context.new_page()
    await page.goto(f"{stack.url}/ui/access-log")
    assert await page.inner_text("h1") == "Access log"
    assert "W" * 200 in await page.inner_text("#access-log")  # kept up to MAX_PATH_CHARS
    # Long words wrap inside the table instead of widening the page past the window.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 1280
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "access-log.png"), full_page=True)
    await page.goto(f"{stack.url}/ui/failures")
    await page.screenshot(path=str(ARTIFACTS / "failures.png"), full_page=True)
    await context.close()
