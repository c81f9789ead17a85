"""The README quick start's auditor path, in a real headless Chromium, with nothing but an auditor token:
sign in, search, open the message, see its fingerprint marked as matching Meta's, download the original
file and the receipt, export from the search results and download the bundle, then read one's own reads
in the access log. The receipt and the bundle are then checked offline by `wa-archive verify-receipt`
and `wa-archive verify-export` in their own processes, against the ledger's public key alone."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

from tests.test_browser import ARTIFACTS, browser  # noqa: F401  (the Chromium fixture)
from tests.test_export import PUBLIC_KEY, _cli
from wa_archive.credentials import ledger_signer
from wa_archive.devstack.dev import _demo_image
from wa_archive.integrity import ledger
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, media_message, message, wamid

PHONE = "447700900777"


async def _download(page, locator, target: Path) -> bytes:
    """Click a download link and keep the file; the page must stay where it is (a download, not a view)."""
    url = page.url
    async with page.expect_download() as info:
        await locator.click()
    await (await info.value).save_as(target)
    assert page.url == url
    return target.read_bytes()


async def test_an_auditor_signs_in_searches_downloads_and_proves_a_message_offline(stack, browser, tmp_path):  # noqa: F811
    image = _demo_image()
    media = stack.graph.add(FakeMedia(f"m{uuid.uuid4().hex[:10]}", mime_type="image/png", content=image))
    text_id, image_id = wamid(), wamid()
    await stack.post(dumps(envelope([
        message("text", {"body": "Please sell 40 shares today"}, mid=text_id, phone=PHONE, ts=1767268800),
        media_message("image", media.media_id, media.sha256_b64(), "image/png", mid=image_id, phone=PHONE,
                      ts=1767268860),
    ], phone=PHONE)))
    for mid in (text_id, image_id):
        await stack.wait_for_message(mid)
    # The quick start's `wa-archive ledger checkpoint`: receipts are proofs against a signed checkpoint.
    await ledger.write_checkpoint(stack.pool, stack.store, ledger_signer(stack.settings))
    token = await stack.token("auditor", name=f"auditor-{uuid.uuid4().hex[:6]}")

    context = await browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    csp_violations: list[str] = []
    page.on("console", lambda msg: csp_violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    # Sign in with the token the banner's line created.
    await page.goto(f"{stack.url}/ui/")
    assert "/ui/login" in page.url
    await page.fill("#token", token)
    await page.click("main button")
    assert await page.inner_text("h1") == "Search the archive"

    # Search: the customer's number as a person types it, one whole day as the date rule reads it.
    await page.fill("#phone", "+44 7700 900777")
    await page.fill("#since", "2026-01-01")
    await page.fill("#until", "2026-01-01")
    await page.click("form.filters button")
    assert await page.locator("table tr").count() == 3  # header + the text + the image, both that day

    # The message: its fingerprint against Meta's, in one encoding, marked; the original; the receipt.
    await page.goto(f"{stack.url}/ui/messages/{image_id}")
    main = await page.inner_text("main")
    assert "matches" in main and "WAMID" not in main and "leaf" not in main
    assert hashlib.sha256(image).hexdigest() in main  # ours and Meta's, both in hex
    original = await _download(page, page.locator("a", has_text="Download original").first, tmp_path / "image.png")
    assert original == image
    receipt_path = tmp_path / "receipt.json"
    receipt = json.loads(await _download(page, page.locator("#receipt"), receipt_path))
    assert receipt["record"]["kind"] == "message" and receipt["record"]["id"] == image_id
    await page.screenshot(path=str(ARTIFACTS / "auditor-day-message.png"), full_page=True)

    # Export the search results and download the bundle when it is ready.
    await page.goto(f"{stack.url}/ui/?phone={PHONE}")
    await page.click("text=Export these messages")
    link = page.locator("#download")
    await link.wait_for(timeout=60000)
    bundle_path = tmp_path / "bundle.zip"
    await _download(page, link, bundle_path)

    # The auditor reads their own reads, in words.
    await page.goto(f"{stack.url}/ui/access-log")
    log = await page.inner_text("main")
    assert f"opened message {image_id}" in log
    await page.screenshot(path=str(ARTIFACTS / "auditor-day-access-log.png"), full_page=True)
    assert csp_violations == []
    await context.close()

    # Offline, in their own processes, with nothing but the public key: the receipt and the bundle verify.
    # No database, no Temporal, no store named: only the files and the key.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
    env["WA_ARCHIVE_DATA_DIR"] = str(tmp_path / "no-archive-here")
    verified = await _cli(env, "verify-receipt", str(receipt_path), "--public-key", PUBLIC_KEY)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    intact = await _cli(env, "verify-export", str(bundle_path), "--public-key", PUBLIC_KEY)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    # And a receipt altered by one character does not.
    tampered = receipt_path.read_text().replace(image_id, text_id, 1)
    (tmp_path / "tampered.json").write_text(tampered)
    refused = await _cli(env, "verify-receipt", str(tmp_path / "tampered.json"), "--public-key", PUBLIC_KEY)
    assert refused.returncode == 1, refused.stdout + refused.stderr
