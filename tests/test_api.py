"""The auditors' JSON API and the access log, over real HTTP against the real stack."""

from __future__ import annotations

import hashlib
import os
import uuid
from urllib.parse import quote

import asyncpg
import pytest

from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, media_message, message, wamid

PHONE = "447700900123"


async def _get(stack, path: str, token: str | None, params: dict | None = None, headers: dict | None = None,
               allow_redirects: bool = True):
    hdrs = {"Authorization": f"Bearer {token}"} if token else {}
    hdrs.update(headers or {})
    async with stack.http.get(f"{stack.url}{path}", params=params, headers=hdrs,
                              allow_redirects=allow_redirects) as resp:
        body = await resp.read()
        return resp.status, resp.headers, body


async def _json(stack, path: str, token: str | None, params: dict | None = None):
    import json

    status, _, body = await _get(stack, path, token, params)
    return status, json.loads(body) if body else None


async def _seed(stack) -> dict:
    """Three inbound messages for PHONE on different days, one for another phone, one image."""
    image = os.urandom(5000)
    media = stack.graph.add(FakeMedia(f"m{uuid.uuid4().hex[:10]}", mime_type="image/jpeg", content=image))
    ids = {"jan": wamid(), "feb": wamid(), "mar": wamid(), "other": wamid()}
    await stack.post(dumps(envelope([
        message("text", {"body": "Please confirm the transfer of 2,500 GBP"}, mid=ids["jan"], ts=1767268800),
        message("text", {"body": "Thanks, received"}, mid=ids["feb"], ts=1770000000),
        media_message("image", media.media_id, media.sha256_b64(), "image/jpeg", mid=ids["mar"], ts=1772500000),
        message("text", {"body": "transfer question from someone else"}, mid=ids["other"], phone="15550001111",
                ts=1772600000),
    ])))
    for mid in ids.values():
        await stack.wait_for_message(mid)
    return {"ids": ids, "image": image, "media": media}


async def test_tokens_and_roles(stack):
    assert (await _json(stack, "/api/v1/messages", None))[0] == 401
    assert (await _json(stack, "/api/v1/messages", "wa_bogus"))[0] == 401
    for role in ("sender", "operator"):
        status, body = await _json(stack, "/api/v1/messages", await stack.token(role))
        assert status == 403 and "auditor" in body["error"]
    name = f"gone-{uuid.uuid4().hex[:6]}"
    revoked = await stack.token("auditor", name=name)
    from wa_archive.access.tokens import revoke_token

    await revoke_token(stack.pool, name)
    assert (await _json(stack, "/api/v1/messages", revoked))[0] == 401
    assert (await _json(stack, "/api/v1/messages", await stack.token("auditor")))[0] == 200
    assert (await _json(stack, "/api/v1/messages", await stack.token("admin")))[0] == 200


@pytest.mark.parametrize("params,name", [
    ({"since": "yesterday"}, "since"), ({"until": "2026-13-01"}, "until"), ({"phone": "bob"}, "phone"),
    ({"limit": "0"}, "limit"), ({"limit": "many"}, "limit"), ({"has_media": "maybe"}, "has_media"),
    ({"direction": "sideways"}, "direction"), ({"cursor": "!!!"}, "cursor"), ({"colour": "red"}, "colour"),
    ({"since": "2026-03-01", "until": "2026-02-01"}, "until"), ({"q": "  "}, "q"),
])
async def test_bad_filters_are_400_naming_the_filter(stack, params, name):
    status, body = await _json(stack, "/api/v1/messages", await stack.token("auditor"), params)
    assert status == 400 and body["filter"] == name and name in body["error"]


async def test_search_by_phone_dates_text_type_media_and_pages(stack):
    seeded = await _seed(stack)
    ids = seeded["ids"]
    token = await stack.token("auditor")

    async def found(**params) -> list[str]:
        status, body = await _json(stack, "/api/v1/messages", token, params)
        assert status == 200, body
        return [m["id"] for m in body["items"]]

    assert await found(phone="+44 7700 900123") == [ids["mar"], ids["feb"], ids["jan"]]
    assert await found(phone=PHONE, since="2026-01-15", until="2026-03-01") == [ids["feb"]]
    assert await found(phone=PHONE, since="2026-02-02T02:40:00+00:00") == [ids["mar"], ids["feb"]]  # inclusive
    assert await found(q="transfer") == [ids["other"], ids["jan"]]
    assert await found(q="transfer", phone=PHONE) == [ids["jan"]]
    assert await found(q='"confirm the transfer"') == [ids["jan"]]
    assert await found(type="image") == [ids["mar"]]
    assert await found(has_media="true") == [ids["mar"]]
    assert ids["mar"] not in await found(has_media="false")
    assert await found(direction="out") == []

    pages, cursor = [], None
    while True:
        params = {"phone": PHONE, "limit": "1", **({"cursor": cursor} if cursor else {})}
        status, body = await _json(stack, "/api/v1/messages", token, params)
        pages.append([m["id"] for m in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == [[ids["mar"]], [ids["feb"]], [ids["jan"]]]

    status, body = await _json(stack, "/api/v1/messages", token, {"type": "image"})
    [item] = body["items"]
    assert item["media"][0]["sha256"] == hashlib.sha256(seeded["image"]).hexdigest()
    assert item["media"][0]["download_url"].startswith("/api/v1/media/")


async def test_message_detail_and_conversation(stack):
    seeded = await _seed(stack)
    token = await stack.token("auditor")
    mid = seeded["ids"]["jan"]
    assert "/" in mid or "+" in mid
    status, body = await _json(stack, f"/api/v1/messages/{quote(mid, safe='')}", token)
    assert status == 200 and body["id"] == mid and body["deliveries"][0]["signature"].startswith("sha256=")
    assert (await _json(stack, f"/api/v1/messages/{mid}", token))[1]["id"] == mid  # unescaped '/' too
    status, body = await _json(stack, "/api/v1/messages/wamid.unknown", token)
    assert status == 404 and "wamid.unknown" in body["error"]

    status, body = await _json(stack, f"/api/v1/conversations/{PHONE}", token)
    assert [m["id"] for m in body["items"]] == [seeded["ids"][k] for k in ("jan", "feb", "mar")]
    status, body = await _json(stack, f"/api/v1/conversations/{PHONE}", token, {"since": "2026-02-01"})
    assert [m["id"] for m in body["items"]] == [seeded["ids"]["feb"], seeded["ids"]["mar"]]
    assert (await _json(stack, "/api/v1/conversations/nobody", token))[0] == 400
    assert (await _json(stack, f"/api/v1/conversations/{PHONE}", token, {"q": "x"}))[1]["filter"] == "q"


async def test_media_download_etag_and_ranges(stack_factory, storage_backend):
    stack = await stack_factory(storage_backend)
    seeded = await _seed(stack)
    token = await stack.token("auditor")
    image = seeded["image"]
    _, body = await _json(stack, f"/api/v1/messages/{quote(seeded['ids']['mar'], safe='')}", token)
    media = body["media"][0]
    url = media["download_url"]
    status, headers, data = await _get(stack, url, token)
    assert status == 200 and data == image
    assert headers["ETag"] == f'"{hashlib.sha256(image).hexdigest()}"'
    assert headers["Content-Type"] == "image/jpeg" and "inline; filename=" in headers["Content-Disposition"]
    assert headers["Accept-Ranges"] == "bytes"
    status, _, data = await _get(stack, f"/api/v1/media/{media['id']}", token)  # by provider media id
    assert status == 200 and data == image
    assert (await _get(stack, url, token, headers={"If-None-Match": headers["ETag"]}))[0] == 304
    status, h, data = await _get(stack, url, token, headers={"Range": "bytes=10-19"})
    assert status == 206 and data == image[10:20] and h["Content-Range"] == f"bytes 10-19/{len(image)}"
    status, _, data = await _get(stack, url, token, headers={"Range": "bytes=-5"})
    assert status == 206 and data == image[-5:]
    status, _, data = await _get(stack, url, token, headers={"Range": "bytes=4990-"})
    assert status == 206 and data == image[4990:]
    assert (await _get(stack, url, token, headers={"Range": "bytes=9000-9001"}))[0] == 416
    assert (await _get(stack, url, token, headers={"Range": "lines=1-2"}))[0] == 416
    assert (await _get(stack, "/api/v1/media/00000000-0000-0000-0000-000000000000", token))[0] == 404
    if storage_backend == "s3":
        status, h, _ = await _get(stack, url, token, params={"redirect": "presigned"}, allow_redirects=False)
        assert status == 302
        import time
        from urllib.parse import parse_qs, urlparse

        query = parse_qs(urlparse(h["Location"]).query)
        lifetime = (int(query["X-Amz-Expires"][0]) if "X-Amz-Expires" in query
                    else int(query["Expires"][0]) - time.time())
        assert 0 < lifetime <= 300
        async with stack.http.get(h["Location"]) as resp:
            assert await resp.read() == image


async def test_every_read_is_in_the_append_only_access_log(stack, database_url):
    seeded = await _seed(stack)
    name = f"auditor-{uuid.uuid4().hex[:6]}"
    token = await stack.token("auditor", name=name)
    await _json(stack, "/api/v1/messages", token, {"phone": PHONE, "q": "transfer"})
    await _json(stack, f"/api/v1/messages/{quote(seeded['ids']['jan'], safe='')}", token)
    _, body = await _json(stack, f"/api/v1/messages/{quote(seeded['ids']['mar'], safe='')}", token)
    await _get(stack, body["media"][0]["download_url"], token, headers={"Range": "bytes=0-9"})
    await _json(stack, f"/api/v1/conversations/{PHONE}", token)
    await _json(stack, "/api/v1/messages", await stack.token("sender"))  # refused: not a read
    rows = await stack.pool.fetch("SELECT * FROM access_log WHERE actor = $1 ORDER BY id", name)
    assert [r["action"] for r in rows] == ["search", "view", "view", "media", "conversation"]
    assert rows[0]["target"] == {"phone": PHONE, "q": "transfer"} and rows[0]["role"] == "auditor"
    assert rows[3]["target"]["range"] == "bytes=0-9" and rows[3]["remote_addr"] == "127.0.0.1"
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await stack.owner_pool.execute("UPDATE access_log SET actor = 'x' WHERE id = $1", rows[0]["id"])
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await stack.owner_pool.execute("DELETE FROM access_log WHERE id = $1", rows[0]["id"])

    import asyncio
    import json
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
    env["WA_ARCHIVE_DATABASE_URL"] = database_url
    run = lambda *a: subprocess.run([sys.executable, "-m", "wa_archive.cli", *a], env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    await asyncio.to_thread(run, "show", seeded["ids"]["feb"])
    out = await asyncio.to_thread(run, "access-log", "--json")
    entries = json.loads(out.stdout)
    assert [e["action"] for e in entries if e["actor"] == name] == ["search", "view", "view", "media", "conversation"]
    cli = [e for e in entries if e["actor"].startswith("cli:") and e["target"].get("message_id") == seeded["ids"]["feb"]]
    assert cli and cli[0]["role"] == "cli"
