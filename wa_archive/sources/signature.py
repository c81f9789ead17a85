"""Webhook signature verification, done on the raw bytes before anything is parsed.

Headers are parsed strictly before any comparison: a value that is not exactly what the sender
would produce (ASCII, the right prefix, the right length) is simply not a valid signature.
"""

from __future__ import annotations

import hashlib
import hmac
import re

PREFIX = "sha256="
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)


def meta_signature(app_secret: str, body: bytes) -> str:
    """The X-Hub-Signature-256 value Meta would send for this body."""
    return PREFIX + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def parse_meta_signature(header: str | None) -> bytes | None:
    """The 32-byte digest an X-Hub-Signature-256 value carries, or None if it is not `sha256=` + 64 hex digits."""
    if not header or not header.startswith(PREFIX):
        return None
    digest = header[len(PREFIX):]
    if not _HEX_DIGEST.fullmatch(digest):
        return None
    return bytes.fromhex(digest)


def meta_signature_ok(app_secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of X-Hub-Signature-256 over the exact bytes received."""
    given = parse_meta_signature(header)
    if given is None:
        return False
    return hmac.compare_digest(hmac.new(app_secret.encode(), body, hashlib.sha256).digest(), given)


def shared_secret_ok(secret: str, header: str | None) -> bool:
    """Constant-time check of a header that carries a shared secret itself (WASender's X-Webhook-Signature).

    The header is compared as the bytes that arrived: non-ASCII bytes decoded with surrogateescape
    are encoded back the same way instead of raising.
    """
    if header is None:
        return False
    return hmac.compare_digest(header.encode("utf-8", "surrogateescape"), secret.encode())
