"""A local stand-in for the Graph API media endpoints, for tests, the demo and benchmarks.

It serves GET /{version}/{media-id} (metadata) and GET /download/{media-id} (bytes) with a bearer
check, and can be told to fail N times, answer a fixed status, serve wrong bytes, stream slowly, or
name another download URL; `outage_status` (429 or 5xx) makes every media call fail as an outage of
Meta's whole API would. Large bodies are generated block by block, so a 1 GiB file costs no
memory. Every request it receives is recorded (method and raw path), so tests can prove that
nothing reached it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BLOCK = 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FakeMedia:
    media_id: str
    mime_type: str = "image/jpeg"
    content: bytes | None = None
    size: int = 0
    seed: int = 0
    fail_times: int = 0
    fail_status: int = 500
    status: int | None = None  # answer this status on every metadata call
    wrong_bytes: bool = False
    declared_sha256: str | None = None
    bytes_per_second: int | None = None
    download_url: str | None = None  # named in the metadata instead of this fake's own /download
    metadata_calls: int = 0
    downloads: int = 0
    _block: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if self.content is not None:
            self.size = len(self.content)
        else:
            self._block = random.Random(self.seed).randbytes(BLOCK)
        if self.declared_sha256 is None:
            hasher = hashlib.sha256()
            for block in self.blocks():
                hasher.update(block)
            self.declared_sha256 = hasher.hexdigest()

    def blocks(self) -> Iterator[bytes]:
        if self.content is not None:
            for i in range(0, len(self.content), BLOCK):
                yield self.content[i : i + BLOCK]
            return
        remaining = self.size
        while remaining > 0:
            n = min(BLOCK, remaining)
            yield self._block[:n]
            remaining -= n

    def sha256_b64(self) -> str:
        return base64.b64encode(bytes.fromhex(self.declared_sha256 or "")).decode()


class FakeGraph:
    def __init__(self, token: str) -> None:
        self.token = token
        self.media: dict[str, FakeMedia] = {}
        self.base_url = ""
        # Templates by (waba id, name, language); tests edit them to make new versions.
        self.templates: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.sends: list[dict[str, Any]] = []
        self.send_error: tuple[int, dict[str, Any]] | None = None  # answer every send with this, when set
        self.files: dict[str, FakeMedia] = {}  # served at /files/{name}, for media by link
        self.requests: list[tuple[str, str]] = []  # (method, raw path) of every request received
        # Messaging analytics by (waba id, display number, UTC day start): (sent, delivered), set by tests;
        # wabas listed in analytics_refused answer 403 as for a token without the permission.
        self.analytics: dict[tuple[str, str, int], tuple[int, int]] = {}
        self.analytics_refused: set[str] = set()
        # While set, every media metadata and download call answers this status with a Graph-shaped error
        # (429: code 4, Meta's application rate limit; any other: code 1), as during an outage of Meta's API.
        self.outage_status: int | None = None

    def set_template(self, waba_id: str, definition: dict[str, Any]) -> None:
        self.templates[(waba_id, definition["name"], definition["language"])] = definition

    async def send(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _graph_error(401, 190, "Invalid OAuth access token")
        body = await request.json()
        self.sends.append(body)
        if self.send_error is not None:
            status, error = self.send_error
            return web.json_response({"error": error}, status=status)
        wamid = "wamid.FAKE" + base64.b64encode(random.randbytes(24)).decode()
        return web.json_response({
            "messaging_product": "whatsapp",
            "contacts": [{"input": body.get("to"), "wa_id": str(body.get("to", "")).lstrip("+")}],
            "messages": [{"id": wamid}],
        })

    async def message_templates(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _graph_error(401, 190, "Invalid OAuth access token")
        waba = request.match_info["waba_id"]
        name = request.query.get("name")
        data = [d for (w, n, _), d in self.templates.items() if w == waba and (name is None or n == name)]
        return web.json_response({"data": data, "paging": {}})

    async def file(self, request: web.Request) -> web.StreamResponse:
        media = self.files.get(request.match_info["name"])
        if media is None:
            return web.Response(status=404)
        resp = web.StreamResponse(headers={"Content-Type": media.mime_type})
        resp.content_length = media.size
        await resp.prepare(request)
        for block in media.blocks():
            await resp.write(block)
        await resp.write_eof()
        return resp

    def add(self, media: FakeMedia) -> FakeMedia:
        self.media[media.media_id] = media
        return media

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    async def metadata(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _graph_error(401, 190, "Invalid OAuth access token")
        if request.query.get("fields", "").startswith("analytics."):
            return self.messaging_analytics(request)
        if self.outage_status is not None:
            return _outage_error(self.outage_status)
        media = self.media.get(request.match_info["media_id"])
        if media is None:
            return _graph_error(404, 100, "Unsupported get request. Object does not exist")
        media.metadata_calls += 1
        if media.status is not None:
            return _graph_error(media.status, 10 if media.status == 403 else 1, "configured failure")
        if media.fail_times > 0:
            media.fail_times -= 1
            return _graph_error(media.fail_status, 1, "transient failure")
        return web.json_response({
            "messaging_product": "whatsapp",
            "url": media.download_url or f"{self.base_url}/download/{media.media_id}",
            "mime_type": media.mime_type,
            "sha256": media.declared_sha256,
            "file_size": media.size,
            "id": media.media_id,
        })

    def messaging_analytics(self, request: web.Request) -> web.Response:
        """GET /{waba-id}?fields=analytics.start(T).end(T).granularity(DAY).phone_numbers([...]),
        answered in Meta's documented shape from the counts a test set."""
        waba = request.match_info["media_id"]
        if waba in self.analytics_refused:
            return _graph_error(403, 200, "(#200) Requires whatsapp_business_management permission")
        found = re.fullmatch(r'analytics\.start\((\d+)\)\.end\((\d+)\)\.granularity\(DAY\)'
                             r'\.phone_numbers\(\[((?:"\d+",?)*)\]\)', request.query["fields"])
        if found is None:
            return _graph_error(400, 100, "Invalid parameter")
        start, end = int(found[1]), int(found[2])
        numbers = re.findall(r"\d+", found[3])
        points = []
        for day in range(start - start % 86400, end, 86400):
            counts = [self.analytics[(waba, n, day)] for n in numbers if (waba, n, day) in self.analytics]
            if counts:
                points.append({"start": day, "end": day + 86400, "sent": sum(c[0] for c in counts),
                               "delivered": sum(c[1] for c in counts)})
        return web.json_response({"analytics": {"phone_numbers": numbers, "granularity": "DAY",
                                                "data_points": points}, "id": waba})

    async def download(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _graph_error(401, 190, "Invalid OAuth access token")
        if self.outage_status is not None:
            return _outage_error(self.outage_status)
        media = self.media.get(request.match_info["media_id"])
        if media is None:
            return _graph_error(404, 100, "not found")
        media.downloads += 1
        resp = web.StreamResponse(headers={"Content-Type": media.mime_type})
        resp.content_length = media.size
        await resp.prepare(request)
        for block in media.blocks():
            if media.wrong_bytes:
                block = bytes(b ^ 0xFF for b in block[:16]) + block[16:]
            if media.bytes_per_second:
                step = max(1, media.bytes_per_second // 10)
                for i in range(0, len(block), step):
                    await resp.write(block[i : i + step])
                    await asyncio.sleep(0.1)
            else:
                await resp.write(block)
        await resp.write_eof()
        return resp

    async def register(self, request: web.Request) -> web.Response:
        """POST /_fake/media: register media from another process (the demo and benchmarks)."""
        data = await request.json()
        content = base64.b64decode(data.pop("content_b64")) if "content_b64" in data else None
        media = self.add(FakeMedia(content=content, **data))
        return web.json_response({"id": media.media_id, "sha256": media.declared_sha256,
                                  "sha256_b64": media.sha256_b64(), "size": media.size})

    def app(self) -> web.Application:
        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            self.requests.append((request.method, request.raw_path))
            return await handler(request)

        app = web.Application(middlewares=[record])
        app.router.add_post("/_fake/media", self.register)
        app.router.add_get("/download/{media_id}", self.download)
        app.router.add_get("/files/{name}", self.file)
        app.router.add_post("/{version}/{phone_number_id}/messages", self.send)
        app.router.add_get("/{version}/{waba_id}/message_templates", self.message_templates)
        app.router.add_get("/{version}/{media_id}", self.metadata)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> web.AppRunner:
        """Serve on host:port (0 = a free port); sets base_url and returns the runner to clean up."""
        runner = web.AppRunner(self.app())
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://{host}:{bound}"
        return runner

    @property
    def graph_url(self) -> str:
        return f"{self.base_url}/v23.0"


def _graph_error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "fake"}},
        status=status,
    )


def _outage_error(status: int) -> web.Response:
    if status == 429:
        return _graph_error(429, 4, "(#4) Application request limit reached")
    return _graph_error(status, 1, "An unknown error has occurred.")
