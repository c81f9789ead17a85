"""Media types from WhatsApp are an attacker's words: parsed once, by allow-list, into what we serve.

A sender chooses the declared MIME type of a document (Meta passes it through; WASender's
`mimetype` and an outbound link's Content-Type are the sender's own). The archive keeps that
declaration as evidence, but serves bytes only under the normalised type computed here, and lets a
browser render inline only the few types on an exact allow-list. Everything else is an attachment,
and every response carries `nosniff` and a sandboxing CSP, so no archived byte ever runs as script on
the archive's origin.
"""

from __future__ import annotations

import re

OCTET_STREAM = "application/octet-stream"

# RFC 9110 token characters; a type and a subtype are one token each.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"^\s*({_TOKEN})/({_TOKEN})\s*(;.*)?$", re.DOTALL)
# Parameters: token=token or token="quoted", separated by ';'. A comma anywhere (a list of types,
# as in "application/pdf, text/html") makes the whole declaration unparseable.
_PARAM = re.compile(rf'^\s*{_TOKEN}\s*=\s*(?:{_TOKEN}|"[^"\\\r\n]*")\s*$')

# Types a browser may show inline from the archive: raster images, audio, video and PDF. Never SVG,
# HTML, XML or anything scriptable. Exact matches only.
INLINE_TYPES = frozenset({
    "image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/avif",
    "audio/ogg", "audio/mpeg", "audio/mp4", "audio/aac", "audio/amr", "audio/opus", "audio/wav",
    "audio/webm", "video/mp4", "video/3gpp", "video/webm", "video/quicktime",
    "application/pdf",
})

# What every response that carries archived media sends, whatever its type.
MEDIA_CSP = "sandbox; default-src 'none'"
NOSNIFF = "nosniff"


def normalize_mime(declared: str | None) -> str:
    """The declared type as lowercase `type/subtype` without parameters, or
    application/octet-stream when it is missing or does not parse as exactly one media type."""
    if not declared or len(declared) > 255 or "," in declared:
        return OCTET_STREAM
    match = _MEDIA_TYPE.match(declared)
    if not match:
        return OCTET_STREAM
    params = match.group(3)
    if params:
        for part in params[1:].split(";"):
            if part.strip() and not _PARAM.match(part):
                return OCTET_STREAM
    return f"{match.group(1).lower()}/{match.group(2).lower()}"


def is_inline(mime: str | None) -> bool:
    """True only for a normalised type on the exact allow-list."""
    return normalize_mime(mime) in INLINE_TYPES


def header_safe_filename(name: str) -> str:
    """A filename reduced to printable ASCII without quotes or backslashes, for a header value."""
    return "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in name) or "file"


def media_headers(mime: str | None, filename: str, *, inline_allowed: bool = True) -> dict[str, str]:
    """Content-Type, Content-Disposition, nosniff and the sandboxing CSP for archived bytes.
    `mime` is normalised again here, so a row written before normalisation is served safely too."""
    served = normalize_mime(mime)
    disposition = "inline" if inline_allowed and served in INLINE_TYPES else "attachment"
    return {
        "Content-Type": served,
        "Content-Disposition": f'{disposition}; filename="{header_safe_filename(filename)}"',
        "X-Content-Type-Options": NOSNIFF,
        "Content-Security-Policy": MEDIA_CSP,
    }
