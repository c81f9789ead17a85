"""The HTTP side of the fuzz tests: a stack to throw input at, one archived image to aim for, and
requests whose answers are checked — never a 5xx, never a traceback, and a 4xx says what is wrong."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import Any
from urllib.parse import quote

from yarl import URL

from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, media_message, wamid

WASENDER_SECRET = "fuzz-wasender-secret"


async def fuzz_stack(stack_factory):
    return await stack_factory(wasender_webhook_secret=WASENDER_SECRET)


async def seed(stack) -> dict:
    """One archived image message, so that media, message and conversation routes have something to serve."""
    image = os.urandom(5000)
    media = stack.graph.add(FakeMedia(f"m{uuid.uuid4().hex[:10]}", mime_type="image/jpeg", content=image))
    mid = wamid()
    status, _ = await stack.post(dumps(envelope([media_message("image", media.media_id, media.sha256_b64(),
                                                               "image/jpeg", mid=mid)])))
    assert status == 200
    msg = await stack.wait_for_message(mid)
    return {"message_id": mid, "image": image, "media_id": media.media_id,
            "archive_id": msg["media"][0]["archive_id"], "sha256": msg["media"][0]["sha256"]}


def path_segment(text: str) -> str:
    return quote(text, safe="", errors="surrogatepass")


def check_answer(status: int, body: bytes, *, json_errors: bool, where: str) -> None:
    """No 5xx, no traceback; a 4xx says what is wrong (as JSON `error` where `json_errors`)."""
    assert status < 500, f"{where}: {status} {body[:300]!r}"
    assert b"Traceback" not in body and b'File "' not in body, f"{where}: traceback in body"
    if 400 <= status < 500:
        assert body.strip(), f"{where}: {status} with an empty body"
        # aiohttp answers before any handler for no route, and for a header line over its 8 KiB limit;
        # both are plain text that says what is wrong.
        if json_errors and not body.startswith((b"404: Not Found", b"Got more than 8190 bytes")):
            error = json.loads(body).get("error")
            assert isinstance(error, str) and error, f"{where}: {status} without an error message"


async def request(stack, method: str, url: str | URL, *, where: str, json_errors: bool = True,
                  **kw: Any) -> tuple[int, Any, bytes]:
    async with stack.http.request(method, url, allow_redirects=False, **kw) as resp:
        body = await resp.read()
    check_answer(resp.status, body, json_errors=json_errors, where=where)
    return resp.status, resp.headers, body


async def raw_request(stack, method: str, target: str, headers: dict[str, bytes], body: bytes = b"", *,
                      where: str, json_errors: bool = True) -> tuple[int, bytes]:
    """A request written byte by byte, for header values no HTTP client would send (bytes that are not UTF-8)."""
    host, port = URL(stack.url).host, URL(stack.url).port
    reader, writer = await asyncio.open_connection(host, port)
    head = [f"{method} {target} HTTP/1.1".encode(), f"Host: {host}:{port}".encode(), b"Connection: close",
            f"Content-Length: {len(body)}".encode()] + [name.encode() + b": " + value for name, value in headers.items()]
    writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
    answer = await reader.read()
    writer.close()
    head_bytes, _, payload = answer.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head_bytes.lower():
        chunks, rest = [], payload
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            chunks.append(rest[:size])
            rest = rest[size + 2:]
        payload = b"".join(chunks)
    check_answer(status, payload, json_errors=json_errors, where=where)
    return status, payload
