"""FaultProxy: an HTTP reverse proxy in front of the S3 endpoint that can refuse or vanish.

The workers and webhook servers reach S3 only through it, so the harness can make the object store
answer 503 (S3's own XML error) or refuse connections altogether (its listener closed, the port left
free) and then heal, without touching the store itself. Bodies stream both ways, so a multipart
upload's parts pass through unbuffered. CreateMultipartUpload requests are remembered with the pid
of the process that sent them, so a scenario can kill exactly the worker whose upload is in flight.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import psutil
from aiohttp import web

# Hop-by-hop headers (RFC 9110 7.6.1) and those aiohttp recomputes for the leg it writes.
_NOT_FORWARDED = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
_STREAM_CHUNK = 256 * 1024


@dataclass(frozen=True)
class MultipartStart:
    key: str  # the object key (path without the bucket), as the client named it
    pid: int | None  # the process whose connection sent CreateMultipartUpload (None: not found)
    at: float


def _peer_pid(peer_port: int) -> int | None:
    """The local process holding the client end of a loopback connection (we are on one machine)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == peer_port and conn.pid is not None:
            return int(conn.pid)
    return None


class FaultProxy:
    def __init__(self, upstream: str, port: int, host: str = "127.0.0.1") -> None:
        self.upstream = upstream.rstrip("/")
        self.host, self.port = host, port
        self.mode = "heal"
        self.refuse_status = 503
        self.refused = 0  # requests answered with the refusal
        self.multipart_starts: list[MultipartStart] = []
        # Seconds a CreateMultipartUpload waits here before it goes on to the store, whatever its client
        # does meanwhile (a client that gives up on it still gets its upload created, as with a real store).
        self.create_delay = 0.0
        self.creates_answered = 0  # CreateMultipartUpload requests the store has answered
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._handlers: set[asyncio.Task[object]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False,
                                                  timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        await self._listen()

    async def stop(self) -> None:
        await self._close_listener()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def heal(self) -> None:
        """Pass everything through again, listening again on the same port if it was unreachable."""
        self.mode = "heal"
        if self._runner is None:
            await self._listen()

    def refuse(self, status: int = 503) -> None:
        """Answer every request with an S3-style error of this status."""
        self.refuse_status, self.mode = status, "refuse"

    async def unreachable(self) -> None:
        """Close the listener and every open connection: clients get connection refused or reset."""
        self.mode = "unreachable"
        await self._close_listener()

    async def _listen(self) -> None:
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port, reuse_address=True).start()
        self._runner = runner

    async def _close_listener(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for task in list(self._handlers):  # requests mid-stream end now, as a dead endpoint's would
            task.cancel()
        server = runner.server
        if server is not None:
            for handler in list(server.connections):
                handler.force_close()
                if handler.transport is not None:
                    handler.transport.abort()
        await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            return await self._forward(request)
        finally:
            self._handlers.discard(task)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "refuse":
            self.refused += 1
            body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>ServiceUnavailable</Code>"
                    "<Message>Please reduce your request rate.</Message><RequestId>chaos</RequestId></Error>")
            return web.Response(status=self.refuse_status, text=body, content_type="application/xml")
        creating = request.method == "POST" and "uploads" in request.query
        if creating:
            peer = request.transport.get_extra_info("peername") if request.transport else None
            pid = await asyncio.to_thread(_peer_pid, peer[1]) if peer else None
            key = request.path.lstrip("/").split("/", 1)[-1]
            self.multipart_starts.append(MultipartStart(key=key, pid=pid, at=time.time()))
            if self.create_delay:
                await asyncio.sleep(self.create_delay)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        data = request.content.iter_chunked(_STREAM_CHUNK) if request.body_exists else None
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=data, allow_redirects=False) as upstream:
            if creating:
                self.creates_answered += 1
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in _NOT_FORWARDED and name.lower() != "content-length":
                    response.headers.add(name, value)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(_STREAM_CHUNK):
                await response.write(chunk)
            await response.write_eof()
            return response
