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
