"""Stored objects as HTTP answers: archived media for the JSON API and the pages, export bundles.

Archived bytes are the sender's: every answer that can carry or stand for them (a 304 is cached
with the headers it revalidates) says what they are, and that they are not to be sniffed or run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from wa_archive.archive.media_types import media_headers
from wa_archive.errors import RangeNotSatisfiable
from wa_archive.storage import ObjectStore
from webhook.ranges import parse_range


async def stream_object(request: web.Request, store: ObjectStore, key: str, *, size: int,
                        headers: Mapping[str, str], status: int = 200, first: int = 0,
                        last: int | None = None) -> web.StreamResponse:
    """Bytes `first` to `last` (inclusive; default: to the end) of a stored object of `size` bytes, streamed."""
    last = size - 1 if last is None else last
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = last - first + 1 if size else 0
    await resp.prepare(request)
    if size:  # never read more than the declared length, whatever the store holds
        async for chunk in store.read(key, first, last):
            await resp.write(chunk)
    await resp.write_eof()
    return resp


def media_filename(media: Mapping[str, Any]) -> str:
    """The name an archived file is offered under: the sender's, else the last part of its object key."""
    return media["filename"] or media["storage_key"].rsplit("/", 1)[-1]


async def send_media(request: web.Request, store: ObjectStore, media: Mapping[str, Any], *, partial: bool,
                     headers: Mapping[str, str]) -> web.StreamResponse:
    """An archived media row's bytes, typed by media_headers, with its SHA-256 as the ETag.

    partial: answer a matching If-None-Match with 304 and a Range with 206 (or 416), as API clients
    expect; without it the whole object is sent every time. `headers` go on an answer with bytes.
    """
    etag = f'"{media["sha256"]}"'
    served = {"ETag": etag, **media_headers(media["mime_type"], media_filename(media))}
    size = media["size"]
    if not partial:
        return await stream_object(request, store, media["storage_key"], size=size, headers={**served, **headers})
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return web.Response(status=304, headers=served)
    first, last, status = 0, size - 1, 200
    range_header = request.headers.get("Range")
    if range_header and size > 0:
        try:
            first, last = parse_range(range_header, size)
        except RangeNotSatisfiable as exc:
            return web.json_response({"error": str(exc)}, status=416, headers={"Content-Range": f"bytes */{size}"})
        status = 206
    answer = {**served, "Accept-Ranges": "bytes", **headers}
    if status == 206:
        answer["Content-Range"] = f"bytes {first}-{last}/{size}"
    return await stream_object(request, store, media["storage_key"], size=size, headers=answer, status=status,
                               first=first, last=last)
