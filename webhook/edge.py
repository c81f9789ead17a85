"""The HTTP edge: who really asked (believing X-Forwarded-* only from trusted proxies), and the
security headers every answer carries.

Behind a TLS-terminating reverse proxy the TCP peer is the proxy, so the access log would name the
proxy and the session cookie would lack `Secure`. The proxy's X-Forwarded-For/-Proto say who the
reader is, but any client can send those headers too; they are believed only when the TCP peer is
in WA_ARCHIVE_TRUSTED_PROXIES, and then every handler sees the reader's address and scheme through
`request.remote` and `request.secure`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from wa_archive.config import IPNetwork

TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple)
HSTS = "max-age=31536000"
# For HTML this server did not render from a template (aiohttp's own error pages): nothing may load.
FALLBACK_HTML_CSP = ("default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; "
                     "object-src 'none'")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def page_csp(nonce: str) -> str:
    """The pages' policy: only the inline script and style carrying this response's nonce run;
    images and video only from this origin; no frames, plugins, base rewriting or foreign forms."""
    return (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "img-src 'self'; media-src 'self'; form-action 'self'; frame-ancestors 'none'; "
            "base-uri 'none'; object-src 'none'")


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from a forwarded entry ("1.2.3.4", "1.2.3.4:80", "[::1]:80", "::1"), or None."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has several colons
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_trusted(peer: str | None, trusted: Iterable[IPNetwork]) -> bool:
    """True when `peer` is an address inside one of the trusted networks."""
    address = _address(peer or "")
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in trusted)


def client_address(peer: str, forwarded_for: list[str], trusted: tuple[IPNetwork, ...]) -> str:
    """The reader's address: walking X-Forwarded-For from the right (the entries our own proxies
    appended), the first one that is not itself a trusted proxy. Entries further left were written
    by the client and prove nothing. Without a usable entry, the nearest proxy's address."""
    entries = [e for header in forwarded_for for e in header.split(",")]
    last_trusted = peer
    for entry in reversed(entries):
        address = _address(entry)
        if address is None:
            break  # garbage a proxy passed on: nothing to its left can be believed either
        if not is_trusted(str(address), trusted):
            return str(address)
        last_trusted = str(address)
    return last_trusted


def forwarded_scheme(forwarded_proto: list[str], default: str) -> str:
    """The scheme the nearest trusted proxy reports (the right-most value), or `default`."""
    values = [v.strip().lower() for header in forwarded_proto for v in header.split(",")]
    return values[-1] if values and values[-1] in ("http", "https") else default


@web.middleware
async def forwarded_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Hand handlers a request whose remote and scheme are the reader's, when a trusted proxy says so."""
    trusted = request.app[TRUSTED_PROXIES]
    if not trusted or not is_trusted(request.remote, trusted):
        return await handler(request)
    remote = client_address(request.remote or "", request.headers.getall("X-Forwarded-For", []), trusted)
    scheme = forwarded_scheme(request.headers.getall("X-Forwarded-Proto", []), request.scheme)
    return await handler(request.clone(remote=remote, scheme=scheme))


def _served_over_tls(request: web.Request, trusted: tuple[IPNetwork, ...]) -> bool:
    if request.secure:
        return True
    if trusted and is_trusted(request.remote, trusted):
        return forwarded_scheme(request.headers.getall("X-Forwarded-Proto", []), request.scheme) == "https"
    return False


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Headers on every answer, set just before it is sent (so streamed and error answers get them)."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    # The signal may see the request as it came off the socket, so TLS is judged here again.
    if _served_over_tls(request, request.app[TRUSTED_PROXIES]):
        headers.setdefault("Strict-Transport-Security", HSTS)
    if (response.content_type or "").startswith("text/html") and "Content-Security-Policy" not in headers:
        headers["Content-Security-Policy"] = FALLBACK_HTML_CSP


def install(app: web.Application, trusted: tuple[IPNetwork, ...]) -> None:
    """Believe X-Forwarded-* from `trusted` peers only, and add the security headers to every answer."""
    app[TRUSTED_PROXIES] = trusted
    app.middlewares.insert(0, forwarded_middleware)  # outermost: every other layer sees the reader
    app.on_response_prepare.append(_security_headers)
