"""Fetching media from a `link` a sender chose: an arbitrary URL, so guarded against SSRF.

Only http(s); the host is resolved and every address checked (no private, loopback, link-local,
multicast or reserved ranges), and the connection goes to the addresses that were checked (the
check runs inside the connector's resolver); redirects are followed by hand so each hop is checked
too; size and time are bounded. WA_ARCHIVE_MEDIA_FETCH_ALLOWLIST admits named internal hosts or CIDRs.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urljoin, urlparse

import aiohttp
from aiohttp.abc import AbstractResolver

from wa_archive.errors import LinkRefused, MediaNotFound, MediaSourceError

MAX_REDIRECTS = 3
CHUNK = 1024 * 1024


class Allowlist:
    """Hosts and networks that may be fetched even though they are internal."""

    def __init__(self, spec: str | None) -> None:
        self.hosts: set[str] = set()
        self.networks: list[ipaddress._BaseNetwork] = []
        for item in (spec or "").split(","):
            item = item.strip().lower()
            if not item:
                continue
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.hosts.add(item)

    def admits_host(self, host: str) -> bool:
        return host.lower() in self.hosts

    def admits_ip(self, ip: ipaddress._BaseAddress) -> bool:
        return any(ip in net for net in self.networks)


def forbidden(ip: ipaddress._BaseAddress) -> bool:
    """Addresses a public media link must never reach."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified)


class GuardedResolver(AbstractResolver):
    """Resolves with the system resolver and returns only addresses that passed the check."""

    def __init__(self, allowlist: Allowlist) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allow = allowlist

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[dict[str, Any]]:
        infos = await self._inner.resolve(host, port, family)
        if self._allow.admits_host(host):
            return infos
        checked = [i for i in infos if not forbidden(ipaddress.ip_address(i["host"]))
                   or self._allow.admits_ip(ipaddress.ip_address(i["host"]))]
        if not checked:
            raise LinkRefused(f"media link host {host} resolves only to internal addresses")
        return checked

    async def close(self) -> None:
        await self._inner.close()


class LinkFetcher:
    def __init__(self, allowlist: Allowlist, *, max_bytes: int, timeout: float) -> None:
        self.allowlist = allowlist
        self.max_bytes = max_bytes
        self._timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.allowlist), use_dns_cache=False)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    def check_url(self, url: str) -> None:
        """Refuse what can be refused without a lookup: scheme, and internal IP literals."""
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise LinkRefused(f"media link must be an http(s) URL with a host: {url[:200]!r}")
        host = parsed.hostname
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return  # a name: checked by the resolver at connect time
        if forbidden(ip) and not (self.allowlist.admits_ip(ip) or self.allowlist.admits_host(host)):
            raise LinkRefused(f"media link points at an internal address: {host}")

    @asynccontextmanager
    async def download(self, url: str, max_bytes: int | None = None
                       ) -> AsyncIterator[tuple[AsyncIterator[bytes], str | None]]:
        """Open a checked link; yields (chunks, content type). Raises LinkRefused when not allowed.
        `max_bytes` replaces the configured limit where the exact size is known in advance."""
        limit = max_bytes if max_bytes is not None else self.max_bytes
        for _ in range(MAX_REDIRECTS + 1):
            self.check_url(url)
            try:
                resp = await self._http().get(url, allow_redirects=False)
            except aiohttp.ClientError as exc:
                raise MediaSourceError(f"media link could not be fetched: {exc!r}") from exc
            if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                url = urljoin(url, resp.headers["Location"])
                resp.release()
                continue
            break
        else:
            raise LinkRefused(f"media link redirected more than {MAX_REDIRECTS} times")
        try:
            if resp.status == 404:
                raise MediaNotFound("media link answered 404", http_status=404)
            if resp.status != 200:
                raise MediaSourceError(f"media link answered HTTP {resp.status}", http_status=resp.status)
            if resp.content_length is not None and resp.content_length > limit:
                raise LinkRefused(f"media link is {resp.content_length} bytes, over the {limit} limit")
            yield self._chunks(resp, limit), resp.headers.get("Content-Type")
        finally:
            resp.release()

    async def _chunks(self, resp: aiohttp.ClientResponse, limit: int) -> AsyncIterator[bytes]:
        received = 0
        try:
            async for chunk in resp.content.iter_chunked(CHUNK):
                received += len(chunk)
                if received > limit:
                    raise LinkRefused(f"media link exceeds the {limit} byte limit")
                yield chunk
        except aiohttp.ClientError as exc:
            raise MediaSourceError(f"media link download failed: {exc!r}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
