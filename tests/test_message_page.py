"""The message page answers an auditor's questions in an auditor's words, over real HTTP on the real
stack: our fingerprint and Meta's in one encoding with a matches / does not match / none mark, a
download of every original file, and whether the record is in the signed ledger — with the engineer's
terms (WAMID, record digest, leaf of the signed tree) only on hover or in a fold."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import uuid
from html import unescape
from urllib.parse import quote

import pytest

from tests.test_ui_security import assert_strict_csp, fetch, sign_in
from wa_archive.archive.hashing import DIFFERS, MATCHES, NOT_GIVEN, UNREADABLE, compare_with_declared
from wa_archive.credentials import ledger_signer
from wa_archive.integrity import ledger, receipts
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, media_message, wamid

ENGINEER_WORDS = ("wamid", "record digest", "leaf", "signed tree", "provider sha")


def test_the_declared_fingerprint_is_compared_in_our_encoding():
    digest = hashlib.sha256(b"photo").digest()
    ours = digest.hex()
    assert compare_with_declared(ours, base64.b64encode(digest).decode()) == (MATCHES, ours)
    assert compare_with_declared(ours, base64.urlsafe_b64encode(digest).decode().rstrip("=")) == (MATCHES, ours)
    assert compare_with_declared(ours, ours.upper()) == (MATCHES, ours)
    other = hashlib.sha256(b"another photo").digest()
    assert compare_with_declared(ours, base64.b64encode(other).decode()) == (DIFFERS, other.hex())
    assert compare_with_declared(ours, None) == (NOT_GIVEN, None)
    assert compare_with_declared(ours, "") == (NOT_GIVEN, None)
    assert compare_with_declared(ours, "not a hash") == (UNREADABLE, None)


def visible_text(html: str) -> str:
    """What a reader sees without hovering or unfolding: no <details> folds, no attributes, no markup."""
    html = re.sub(r"<details\b.*?</details>", " ", html, flags=re.S)
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return unescape(re.sub(r"<[^>]+>", " ", html))


def media_block(html: str, index: int) -> str:
    """The card of the page's index-th file (from its heading to the next heading)."""
    found = re.search(rf"<h2>File {index}</h2>(.*?)(?=<h2>|$)", html, flags=re.S)
    assert found, f"no File {index} on the page"
    return found.group(1)


async def _archive_image(stack, *, declared: bool = True) -> tuple[dict, bytes]:
    content = b"\x89PNG\r\n\x1a\n" + os.urandom(2000)
    media = stack.graph.add(FakeMedia(f"m{uuid.uuid4().hex[:10]}", mime_type="image/png", content=content))
    item = media_message("image", media.media_id, media.sha256_b64() if declared else None, "image/png",
                         mid=wamid())
    status, _ = await stack.post(dumps(envelope([item])))
    assert status == 200
    archived = await stack.wait_for_message(item["id"])
    assert archived["media"][0]["status"] == "archived"
    return archived, content


async def _page(stack, cookie, message_id: str) -> tuple[str, dict]:
    status, headers, body = await fetch(stack, f"/ui/messages/{quote(message_id, safe='')}", cookie)
    assert status == 200, body[:500]
    return body.decode(), headers


@pytest.mark.slow
async def test_a_matching_file_shows_one_encoding_a_download_and_its_proof_of_inclusion(stack):
    archived, content = await _archive_image(stack)
    [media] = archived["media"]
    ours = hashlib.sha256(content).hexdigest()
    cookie = await sign_in(stack, await stack.token("auditor"))

    html, headers = await _page(stack, cookie, archived["id"])
    assert_strict_csp(headers, html)
    block = media_block(html, 1)
    # Ours and Meta's, both in hex: Meta's base64 is converted, and the pair is marked as matching.
    assert "Fingerprint (SHA-256)" in block and block.count(ours) == 2
    assert '<span class="tag ok">matches</span>' in block
    assert "does not match" not in block and "gave none" not in block
    assert media["provider_sha256"] in block  # as Meta sent it, folded beside
    # The original file downloads, and is what the fingerprint says.
    link = re.search(r'<a href="(/ui/media/[^"]+)" download="[^"]*">Download original</a>', block)
    assert link, block
    status, _, body = await fetch(stack, unescape(link.group(1)), cookie)
    assert status == 200 and body == content and hashlib.sha256(body).hexdigest() == ours

    seen = visible_text(html)
    assert "Message id" in seen and "Proof of inclusion" in seen
    words = seen.replace(archived["id"], "").lower()  # the id's own text begins "wamid."
    assert not [w for w in ENGINEER_WORDS if w in words], seen
    # The engineer's terms are still there for who looks: on hover and in the fold.
    assert 'title="The id WhatsApp gave the message (its WAMID)"' in html
    assert "unchanged since it was recorded" in seen
    assert "not yet in a signed checkpoint" in seen

    await ledger.write_checkpoint(stack.pool, stack.store, ledger_signer(stack.settings))
    html, _ = await _page(stack, cookie, archived["id"])
    seen = visible_text(html)
    assert "included in the archive's signed checkpoint of" in seen and "not yet" not in seen
    fold = re.search(r"<summary[^>]*>Technical details</summary>(.*?)</details>", html, flags=re.S)
    assert fold, html
    standing = await receipts.message_standing(stack.pool, archived["id"], ledger_signer(stack.settings).public_key())
    assert standing is not None and standing["leaf"] is not None and standing["checkpoint"] is not None
    assert standing["digest"] in fold.group(1) and "Record digest" in fold.group(1)
    assert f"leaf {standing['leaf']['index']} of the signed tree of size {standing['checkpoint']['tree_size']}" \
        in fold.group(1)


@pytest.mark.slow
async def test_a_differing_or_missing_meta_fingerprint_and_an_altered_record_are_marked(stack):
    differing, content = await _archive_image(stack)
    bare, _ = await _archive_image(stack, declared=False)
    other = hashlib.sha256(b"not the archived bytes").digest()
    async with stack.admin_pool.acquire() as conn, conn.transaction():
        # Archived media rows are write-once to every role: only a superuser with triggers off can plant
        # a stored Meta hash that differs from the bytes (as a source that declared a wrong one would).
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE media SET provider_sha256 = $2 WHERE message_id = $1", differing["id"],
                           base64.b64encode(other).decode())
    cookie = await sign_in(stack, await stack.token("auditor"))

    html, _ = await _page(stack, cookie, differing["id"])
    block = media_block(html, 1)
    assert '<span class="tag failed">does not match</span>' in block and "matches</span>" not in block
    assert other.hex() in block and hashlib.sha256(content).hexdigest() in block
    # The Meta hash is not part of the ledger's record: the record itself is still as recorded.
    assert "unchanged since it was recorded" in visible_text(html)

    # Declared only by Meta's media endpoint, in hex: compared just the same.
    html, _ = await _page(stack, cookie, bare["id"])
    block = media_block(html, 1)
    assert '<span class="tag ok">matches</span>' in block
    assert bare["media"][0]["provider_sha256"] == bare["media"][0]["sha256"]

    # A file no one declared a fingerprint for (as a link the business sent itself): said so, not a match.
    async with stack.admin_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE media SET provider_sha256 = NULL WHERE message_id = $1", bare["id"])
    html, _ = await _page(stack, cookie, bare["id"])
    block = media_block(html, 1)
    assert '<span class="tag">Meta gave none</span>' in block
    assert "matches</span>" not in block and "Download original" in block

    # Our own fingerprint changed behind the archive's back: the page says the record changed.
    async with stack.admin_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE media SET sha256 = $2 WHERE message_id = $1", bare["id"], other.hex())
    html, _ = await _page(stack, cookie, bare["id"])
    assert '<span class="tag failed">changed since it was recorded</span>' in html
