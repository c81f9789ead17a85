"""Declared SHA-256 values: hex and base64 (padded or not) decode to the same digest; anything else to none."""

from __future__ import annotations

import base64
import hashlib

from wa_archive.archive.hashing import decode_sha256


class TestHashing:
    def test_hex_and_base64_decode_to_the_same_digest(self):
        digest = hashlib.sha256(b"x").digest()
        assert decode_sha256(digest.hex()) == digest
        assert decode_sha256(base64.b64encode(digest).decode()) == digest
        assert decode_sha256(base64.urlsafe_b64encode(digest).decode().rstrip("=")) == digest
        assert decode_sha256("not a hash") is None and decode_sha256(None) is None
