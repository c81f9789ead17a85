"""A TLS-terminating TCP proxy for tests: mTLS in front of the plaintext Temporal dev server.

It listens on 127.0.0.1 (a free port), completes the TLS handshake itself (ALPN h2, client
certificate required), forwards the bytes to the upstream server, and decodes the HTTP/2 request
headers passing through, so that a test can see what a client sent (its `authorization` header,
the gRPC method), which name it asked for (SNI), which certificate it showed, and why a handshake failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field

from hpack import Decoder
from hpack.exceptions import HPACKError
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import ContinuationFrame, Frame, HeadersFrame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class RequestHeaders:
    """Decodes the header blocks of one client-to-server HTTP/2 byte stream (HPACK state included)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._block = bytearray()
        self._decoder = Decoder()
        self._preface_seen = False
        self.broken: str | None = None
        self.requests: list[dict[str, str]] = []

    def feed(self, data: bytes) -> None:
        if self.broken:
            return
        self._buf += data
        try:
            self._parse()
        except (HyperframeError, HPACKError, ValueError) as exc:
            self.broken = f"{type(exc).__name__}: {exc}"  # the proxy keeps forwarding regardless

    def _parse(self) -> None:
        if not self._preface_seen:
            if len(self._buf) < len(PREFACE):
                return
            if bytes(self._buf[: len(PREFACE)]) != PREFACE:
                raise ValueError("not an HTTP/2 client connection preface")
            del self._buf[: len(PREFACE)]
            self._preface_seen = True
        while len(self._buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(bytes(self._buf[:9])))
            if len(self._buf) < 9 + length:
                return
            frame.parse_body(memoryview(bytes(self._buf[9 : 9 + length])))
            del self._buf[: 9 + length]
            if isinstance(frame, HeadersFrame | ContinuationFrame):
                self._block += frame.data
                if "END_HEADERS" in frame.flags:
                    headers = self._decoder.decode(bytes(self._block))
                    self._block.clear()
                    self.requests.append({_text(k): _text(v) for k, v in headers})


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


@dataclass
class Connection:
    """One accepted connection: the name asked for, the client certificate, the requests sent."""

    sni: str | None = None
    alpn: str | None = None
    client_subject: str | None = None
    handshake_error: str | None = None
    headers: RequestHeaders = field(default_factory=RequestHeaders)


class TLSProxy:
    """Terminates TLS on 127.0.0.1:<free port> and forwards each connection to `upstream` (host:port)."""

    def __init__(self, upstream: str, context: ssl.SSLContext) -> None:
        self.upstream_host, port = upstream.rsplit(":", 1)
        self.upstream_port = int(port)
        self.context = context
        self.context.set_alpn_protocols(["h2"])
        self.context.sni_callback = self._on_sni
        self.connections: list[Connection] = []
        self._pending_sni: dict[int, str | None] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def address(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> TLSProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def requests(self) -> list[dict[str, str]]:
        """Every HTTP/2 request header block seen, over all connections, in order."""
        return [r for c in self.connections for r in c.headers.requests]

    @property
    def handshake_errors(self) -> list[str]:
        return [c.handshake_error for c in self.connections if c.handshake_error]

    def _on_sni(self, sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        self._pending_sni[id(sslobj)] = name

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = Connection()
        self.connections.append(conn)
        upstream_writer = None
        try:
            try:
                await writer.start_tls(self.context, ssl_handshake_timeout=10)
            except (ssl.SSLError, OSError, TimeoutError) as exc:
                conn.handshake_error = f"{type(exc).__name__}: {exc}"
                return
            sslobj = writer.get_extra_info("ssl_object")
            conn.sni = self._pending_sni.pop(id(sslobj), None)
            conn.alpn = sslobj.selected_alpn_protocol()
            peer = writer.get_extra_info("peercert") or {}
            conn.client_subject = ",".join(f"{k}={v}" for rdn in peer.get("subject", ()) for k, v in rdn) or None
            up_reader, upstream_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
            await asyncio.gather(self._pump(reader, upstream_writer, conn.headers),
                                 self._pump(up_reader, writer, None))
        except (ssl.SSLError, OSError) as exc:  # e.g. the client gave up after a failed TLS 1.3 handshake
            conn.handshake_error = conn.handshake_error or f"{type(exc).__name__}: {exc}"
        except asyncio.CancelledError:
            pass  # closing the proxy; ending quietly keeps asyncio from logging the cancelled handler
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    w.close()
                    with contextlib.suppress(Exception):
                        await w.wait_closed()
            self._tasks.discard(task)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    observer: RequestHeaders | None) -> None:
        try:
            while data := await reader.read(65536):
                if observer is not None:
                    observer.feed(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
