"""Fetching media from a `link` a sender chose: an arbitrary URL, so guarded against SSRF.

Only http(s); the host is resolved and every address checked, and the connection goes to the
addresses that were checked (the check runs inside the connector's resolver). The rule is by allow,
not by deny: only globally routable unicast addresses pass, judged again on the IPv4 address that an
IPv4-mapped, NAT64, 6to4 or Teredo address carries. Numeric hosts other than a canonical dotted quad
(`127.1`, `2130706433`, `0x7f.0.0.1`) are refused before any lookup: the socket layer would read
them as addresses, not names. Redirects are followed by hand so each hop is checked too; size and
time are bounded. WA_ARCHIVE_MEDIA_FETCH_ALLOWLIST admits named internal hosts or CIDRs.

A link is parsed once, with yarl (the parser aiohttp uses), and the same URL object is what the
session is given: the host judged is the host connected to. yarl folds a Unicode host to its
IDNA/ASCII form (`１２７．０．０．１` becomes the literal `127.0.0.1`, which aiohttp connects to
without asking any resolver), so the judgement is on that ASCII form, and an IP address not
written in plain ASCII is refused outright.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from wa_archive.errors import LinkRefused, MediaNotFound, MediaSourceError

MAX_REDIRECTS = 3
CHUNK = 1024 * 1024


class Allowlist:
    """Hosts and networks that may be fetched even though they are internal."""

    def __init__(self, spec: str | None) -> None:
        self.hosts: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
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


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known prefix: the last 32 bits are IPv4
_NUMERIC_LABEL = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")
# What a resolvable ASCII host name may hold once IDNA-folded: anything else (%, spaces, ...) is
# not a name a resolver should be asked about.
_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?")


def forbidden(ip: ipaddress._BaseAddress) -> bool:
    """Everything but a globally routable unicast address, including the IPv4 address inside
    IPv4-mapped, NAT64, 6to4 and Teredo forms. The local-use NAT64 prefix 64:ff9b:1::/48 and
    IPv4-compatible ::a.b.c.d sit in reserved space and are refused as such."""
    if isinstance(ip, ipaddress.IPv4Address):
        return not ip.is_global or ip.is_multicast
    assert isinstance(ip, ipaddress.IPv6Address)
    if ip.ipv4_mapped is not None:
        return forbidden(ip.ipv4_mapped)
    if ip in _NAT64:
        return forbidden(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_site_local:
        return True
    embedded = [ip.sixtofour, ip.teredo[1] if ip.teredo else None]
    return any(v4 is not None and forbidden(v4) for v4 in embedded)


def noncanonical_ipv4(host: str) -> bool:
    """A host the socket layer reads as an IPv4 address although it is not a canonical dotted quad:
    `127.1`, `2130706433`, `0x7f.0.0.1`, `0177.0.0.1`, `127.000.000.001`."""
    labels = host.rstrip(".").split(".")
    if not 1 <= len(labels) <= 4 or not all(_NUMERIC_LABEL.fullmatch(label) for label in labels):
        return False
    try:
        return str(ipaddress.IPv4Address(host)) != host
    except ValueError:
        return True


def _shown(value: object) -> str:
    text = repr(str(value))
    return text if len(text) <= 200 else text[:197] + "..."


def parse_link(url: str | URL, written: str | None = None) -> tuple[URL, str | None]:
    """The link as aiohttp will use it, and its host as written (before IDNA folding), if any.
    LinkRefused when yarl cannot parse it."""
    try:
        target = url if isinstance(url, URL) else URL(url)
        text = written if written is not None else (None if isinstance(url, URL) else url)
        # The same parser, without its host folding: the host exactly as the sender wrote it.
        written_host = URL(text, encoded=True).raw_host if text is not None else None
    except (ValueError, TypeError, UnicodeError):
        raise LinkRefused(f"media link is not a valid URL: {_shown(url)}") from None
    return target, written_host


class GuardedResolver(AbstractResolver):
    """Resolves with the system resolver and returns only addresses that passed the check."""

    def __init__(self, allowlist: Allowlist) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allow = allowlist

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if noncanonical_ipv4(host):
            raise LinkRefused(f"media link host {host} is a non-canonical IPv4 literal")
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

    def check_url(self, url: str | URL, *, written: str | None = None) -> URL:
        """The URL the session is to be given, after refusing what can be refused without a lookup:
        scheme, hosts that are not plain names, and internal IP literals. `written` is the text the
        link was given in, when `url` is already parsed (a redirect's Location)."""
        target, written_host = parse_link(url, written)
        if target.scheme not in ("http", "https") or not target.raw_host:
            raise LinkRefused(f"media link must be an http(s) URL with a host: {_shown(url)}")
        host = target.raw_host
        if noncanonical_ipv4(host):
            raise LinkRefused(f"media link host {host} is a non-canonical IPv4 literal")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            if ":" in host or not _HOST_NAME.fullmatch(host):
                raise LinkRefused(f"media link host {_shown(host)} is neither a host name nor an IP literal"
                                  ) from None
            return target  # a name: checked by the resolver at connect time
        if written_host is not None and not written_host.isascii():
            # Only a spoofed spelling writes an address this way; the allow-list names addresses.
            raise LinkRefused(f"media link host {_shown(written_host)} spells the IP address {host} in "
                              "non-ASCII characters")
        if forbidden(ip) and not (self.allowlist.admits_ip(ip) or self.allowlist.admits_host(host)):
            raise LinkRefused(f"media link points at an internal address: {host}")
        return target

    @asynccontextmanager
    async def download(self, url: str, max_bytes: int | None = None
                       ) -> AsyncIterator[tuple[AsyncIterator[bytes], str | None]]:
        """Open a checked link; yields (chunks, content type). Raises LinkRefused when not allowed.
        `max_bytes` replaces the configured limit where the exact size is known in advance."""
        limit = max_bytes if max_bytes is not None else self.max_bytes
        target = self.check_url(url)
        for _ in range(MAX_REDIRECTS + 1):
            try:
                # The checked URL object itself: aiohttp connects to exactly the host judged above.
                resp = await self._http().get(target, allow_redirects=False)
            except aiohttp.ClientError as exc:
                raise MediaSourceError(f"media link could not be fetched: {exc!r}") from exc
            if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                location = resp.headers["Location"]
                resp.release()
                try:
                    hop = target.join(URL(location))
                except (ValueError, TypeError):
                    raise LinkRefused(f"media link redirected to an unparseable URL: {_shown(location)}") from None
                target = self.check_url(hop, written=location)
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
