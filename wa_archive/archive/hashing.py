"""SHA-256 helpers: provider hashes come as hex or base64, ours are always lowercase hex."""

from __future__ import annotations

import base64
import binascii
import string

_HEX = frozenset(string.hexdigits)


def decode_sha256(value: str | None) -> bytes | None:
    """Raw 32-byte digest from a hex or (url-safe) base64 string; None if it is neither."""
    if not value:
        return None
    value = value.strip()
    if len(value) == 64 and set(value) <= _HEX:
        return bytes.fromhex(value)
    for decoder in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            raw = decoder(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            return raw
    return None


# What an auditor is told about the provider's fingerprint beside ours.
MATCHES, DIFFERS, NOT_GIVEN, UNREADABLE = "matches", "does not match", "none given", "unreadable"


def compare_with_declared(ours_hex: str, declared: str | None) -> tuple[str, str | None]:
    """Our SHA-256 (hex) against the one the provider declared (Meta gives base64, WASender hex):
    the verdict and the declared digest in our encoding (lowercase hex), so the two can be read side
    by side. A declaration that is not a SHA-256 in either encoding is UNREADABLE, never a match."""
    if not declared:
        return NOT_GIVEN, None
    raw = decode_sha256(declared)
    if raw is None:
        return UNREADABLE, None
    return (MATCHES if ours_hex.lower() == raw.hex() else DIFFERS), raw.hex()
