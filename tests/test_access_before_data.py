"""Reading is recorded before anything is read out: a read whose access-log entry cannot be written is
refused with 503 and sends no byte of the archive, through the API and the pages alike."""

from __future__ import annotations

import os
import uuid
from contextlib import asynccontextmanager

from tests.test_ui_security import fetch, sign_in
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, media_message, wamid


@asynccontextmanager
async def access_log_refusing(admin_pool, actor: str):
    """The database refuses every access-log entry of `actor` (as a full disk or a lost connection
    would), and only theirs, so the rest of the archive works as usual."""
    suffix = uuid.uuid4().hex[:8]
    function, trigger = f"refuse_access_{suffix}", f"refuse_access_{suffix}"
    await admin_pool.execute(
        f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'access log unavailable (test)'; END $$")
    await admin_pool.execute(
        f"CREATE TRIGGER {trigger} BEFORE INSERT ON access_log FOR EACH ROW"
        f" WHEN (NEW.actor = '{actor}') EXECUTE FUNCTION {function}()")
    try:
        yield
    finally:
        await admin_pool.execute(f"DROP TRIGGER {trigger} ON access_log")
        await admin_pool.execute(f"DROP FUNCTION {function}()")


async def _archived_image(stack) -> tuple[FakeMedia, dict]:
    content = b"\xff\xd8\xff archived image " + os.urandom(4000)
    media = stack.graph.add(FakeMedia(f"m{uuid.uuid4().hex[:10]}", mime_type="image/jpeg", content=content))
    mid = wamid()
    status, _ = await stack.post(dumps(envelope([media_message("image", media.media_id, media.sha256_b64(),
                                                                "image/jpeg", mid=mid)])))
    assert status == 200
    return media, await stack.wait_for_message(mid)


async def _logged(stack, actor: str) -> list[str]:
    return [r["action"] for r in await stack.pool.fetch("SELECT action FROM access_log WHERE actor = $1 ORDER BY id",
                                                        actor)]


async def test_api_media_read_is_refused_with_503_when_its_access_cannot_be_recorded(stack):
    media, msg = await _archived_image(stack)
    name = f"auditor-{uuid.uuid4().hex[:6]}"
    token = await stack.token("auditor", name=name)
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{stack.url}/api/v1/media/{media.media_id}"

    async with access_log_refusing(stack.admin_pool, name):
        async with stack.http.get(url, headers=headers) as resp:
            body = await resp.read()
            assert resp.status == 503, (resp.status, body[:200])
            assert resp.content_type == "application/json"
            assert "access log" in (await resp.json())["error"]
        assert media.content not in body and media.content[:64] not in body
        # The other reads refuse the same way: nothing of the archive leaves unrecorded.
        for path in (f"/api/v1/messages/{msg['id']}", "/api/v1/messages", "/api/v1/conversations/447700900123"):
            async with stack.http.get(f"{stack.url}{path}", headers=headers) as resp:
                assert resp.status == 503, (path, resp.status)
                assert msg["id"] not in await resp.text()
        assert await _logged(stack, name) == []

    # Once the entry can be written, the same read is served, and recorded.
    async with stack.http.get(url, headers=headers) as resp:
        assert resp.status == 200
        assert await resp.read() == media.content
    assert await _logged(stack, name) == ["media"]


async def test_page_media_read_is_refused_with_503_when_its_access_cannot_be_recorded(stack):
    media, msg = await _archived_image(stack)
    name = f"auditor-{uuid.uuid4().hex[:6]}"
    cookie = await sign_in(stack, await stack.token("auditor", name=name))
    path = f"/ui/media/{msg['media'][0]['archive_id']}"
    before = await _logged(stack, name)

    async with access_log_refusing(stack.admin_pool, name):
        status, _, body = await fetch(stack, path, cookie)
        assert status == 503, (status, body[:200])
        assert media.content[:64] not in body
        status, _, body = await fetch(stack, f"/ui/messages/{msg['id']}", cookie)
        assert status == 503 and msg["id"].encode() not in body
    assert await _logged(stack, name) == before

    status, _, body = await fetch(stack, path, cookie)
    assert status == 200 and body == media.content
    assert await _logged(stack, name) == [*before, "media"]
