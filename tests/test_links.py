"""The guarded link fetcher: names and addresses that reach inside are refused; the allow-list admits its own."""

from __future__ import annotations

import pytest


class TestLinkGuard:
    async def test_names_resolving_to_internal_addresses_are_refused(self):
        from wa_archive.errors import LinkRefused
        from wa_archive.sources.links import Allowlist, LinkFetcher

        fetcher = LinkFetcher(Allowlist(""), max_bytes=1000, timeout=5)
        try:
            for url in ("http://localhost:9/x", "http://[::1]:9/x", "http://10.1.2.3/x",
                        "http://[::ffff:127.0.0.1]/x", "ftp://example.com/x", "http:///nohost"):
                with pytest.raises(LinkRefused):
                    async with fetcher.download(url):
                        pass
        finally:
            await fetcher.close()

    def test_allowlist_admits_named_hosts_and_networks(self):
        import ipaddress

        from wa_archive.sources.links import Allowlist, forbidden

        allow = Allowlist("media.internal, 10.0.0.0/8 ,127.0.0.1")
        assert allow.admits_host("MEDIA.internal") and not allow.admits_host("other")
        assert allow.admits_ip(ipaddress.ip_address("10.9.9.9"))
        assert allow.admits_ip(ipaddress.ip_address("127.0.0.1"))
        assert not allow.admits_ip(ipaddress.ip_address("169.254.169.254"))
        assert forbidden(ipaddress.ip_address("169.254.169.254"))
        assert not forbidden(ipaddress.ip_address("93.184.216.34"))
