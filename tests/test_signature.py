"""Webhook authentication: Meta's X-Hub-Signature-256 and WASender's shared secret, parsed strictly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import APP_SECRET
from wa_archive.sources.signature import meta_signature, meta_signature_ok, shared_secret_ok


class TestSignature:
    def test_valid_and_invalid(self):
        body = b'{"a":"\\u00e4"}'
        sig = meta_signature("secret", body)
        assert meta_signature_ok("secret", body, sig)
        assert meta_signature_ok("secret", body, sig.upper().replace("SHA256=", "sha256="))
        assert not meta_signature_ok("other", body, sig)
        assert not meta_signature_ok("secret", body + b" ", sig)
        assert not meta_signature_ok("secret", body, None)
        assert not meta_signature_ok("secret", body, sig[len("sha256="):])


@pytest.mark.parametrize("header", ["sha256=é", "sha256=" + "g" * 64, "sha256=" + "0" * 63, "sha256= " + "0" * 64,
                                    "SHA256=" + "0" * 64, "sha256=" + "٠" * 64, "sha256=\udce9", ""])
def test_unparseable_signature_headers_are_refused_without_error(header):
    assert meta_signature_ok(APP_SECRET, b"{}", header) is False


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.text(max_size=80))
def test_only_the_exact_signature_verifies(body, header):
    good = meta_signature(APP_SECRET, body)
    assert meta_signature_ok(APP_SECRET, body, good)
    assert meta_signature_ok(APP_SECRET, body, "sha256=" + good[7:].upper())
    assert meta_signature_ok(APP_SECRET, body, header) == (header.lower() == good.lower() and header[:7] == "sha256=")
    assert shared_secret_ok("s3cret", header) == (header == "s3cret")
