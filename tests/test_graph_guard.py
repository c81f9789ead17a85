"""Graph calls only where meant, and the SSRF rule by allow: ids that could steer a Graph URL are
refused before anything reaches Meta, the bearer token never goes to a host outside the allow-list,
and media links reach only globally routable addresses."""

from __future__ import annotations

import copy
import ipaddress
import os
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web

from tests.conftest import ACCESS_TOKEN
from tests.test_outbound import PNID, TEMPLATE_V1, _file, _proxy, _record, template_send
from wa_archive.devstack.embedded import free_port
from wa_archive.errors import GraphRequestRefused, LinkRefused
from wa_archive.sources.links import Allowlist, LinkFetcher, forbidden, noncanonical_ipv4
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.graph import MediaHosts, graph_id
from wa_archive.sources.meta.samples import dumps, envelope, media_message, wamid

TEXT = {"messaging_product": "whatsapp", "to": "+447700900123", "type": "text", "text": {"body": "x"}}


class Recorder:
    """A stranger's HTTP server on loopback: answers every request with bytes, remembers headers."""

    def __init__(self) -> None:
        self.authorizations: list[str | None] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization"))
        return web.Response(body=b"not the media", content_type="image/jpeg")


@pytest_asyncio.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    rec.url = f"http://127.0.0.1:{port}"
    yield rec
    await runner.cleanup()


# --- ids in the send proxy and the record API --------------------------------------------------------

@pytest.mark.parametrize("pnid", ["123%2Fderegister", "123%2Fderegister%3Fx%3D", "123abc", "%31%32%33%2E%2E",
                                  "1" * 21, "%EF%BC%91%EF%BC%92"])  # the last: full-width digits
async def test_phone_number_id_in_the_proxy_path_must_be_digits(stack, pnid):
    token = await stack.token("sender")
    before = len(stack.graph.requests)
    async with stack.http.post(f"{stack.url}/graph/{pnid}/messages", json=TEXT,
                               headers={"Authorization": f"Bearer {token}"}) as resp:
        status, answer = resp.status, await resp.json(content_type=None)
    assert status == 400 and "phone_number_id" in answer["error"] and "nothing was sent" in answer["error"]
    assert stack.graph.requests[before:] == [], "the fake Graph API received nothing"
    assert await stack.pool.fetchval("SELECT count(*) FROM outbound_sends") == 0


async def test_a_plain_digit_phone_number_id_still_goes_through(stack):
    token = await stack.token("sender")
    status, answer = await _proxy(stack, token, TEXT)
    assert status == 200 and answer["messages"][0]["id"]
    assert ("POST", f"/v23.0/{PNID}/messages") in stack.graph.requests


async def test_record_api_refuses_a_phone_number_id_that_is_not_digits(stack):
    token = await stack.token("sender")
    response = {"messages": [{"id": "wamid.x" + uuid.uuid4().hex}]}
    status, answer = await _record(stack, token, {"phone_number_id": "123/deregister", "request": TEXT,
                                                  "response": response})
    assert status == 400 and "phone_number_id" in answer["error"]
    assert await stack.pool.fetchval("SELECT count(*) FROM outbound_sends") == 0


@pytest.mark.parametrize("body,field", [
    ({**TEXT, "type": "image", "image": {"id": "../123/deregister"}}, "image.id"),
    ({**TEXT, "type": "document", "document": {"id": "123?fields=owner", "filename": "a.pdf"}}, "document.id"),
    ({**TEXT, "type": "sticker", "sticker": {"id": 123}}, "sticker.id"),
    (template_send({"id": "abc"}), "template.components[0].parameters[0].image.id"),
    ({**TEXT, "type": "interactive", "interactive": {"type": "button", "header": {
        "type": "video", "video": {"id": "1/2"}}}}, "interactive.header.video.id"),
])
async def test_media_ids_an_outbound_request_carries_must_be_digits(stack, body, field):
    token = await stack.token("sender")
    before, sends = len(stack.graph.requests), len(stack.graph.sends)
    status, answer = await _proxy(stack, token, body)
    assert status == 400 and field in answer["error"] and "nothing was sent" in answer["error"]
    assert stack.graph.requests[before:] == [] and len(stack.graph.sends) == sends
    response = {"messages": [{"id": "wamid.x" + uuid.uuid4().hex}]}
    status, answer = await _record(stack, token, {"phone_number_id": PNID, "request": body, "response": response})
    assert status == 400 and field in answer["error"]
    assert stack.graph.requests[before:] == []
    assert await stack.pool.fetchval("SELECT count(*) FROM outbound_sends") == 0


# --- where the bearer token may go --------------------------------------------------------------------

async def test_media_metadata_naming_a_foreign_host_never_gets_the_token(stack, recorder):
    media = stack.graph.add(FakeMedia(str(uuid.uuid4().int % 10**15), content=os.urandom(500),
                                      download_url=f"{recorder.url}/steal?mid=1"))
    mid = wamid()
    await stack.post(dumps(envelope([media_message("image", media.media_id, media.sha256_b64(), "image/jpeg",
                                                   mid=mid)])))
    failure = await stack.wait_for_failure(mid)
    assert recorder.authorizations == [], "the foreign host received no request, let alone the token"
    assert failure["retry_state"] == "NON_RETRYABLE_FAILURE" and len(failure["attempts"]) == 1
    [attempt] = failure["attempts"]
    assert attempt["error_type"] == "GraphRequestRefused"
    host = recorder.url.removeprefix("http://")
    assert host in attempt["error"] and "token was not sent" in attempt["error"]
    assert host in failure["last_error"]
    msg = await stack.wait_for_message(mid)
    assert msg["media"][0]["status"] == "failed"


async def test_a_listed_media_host_gets_the_token(stack_factory, recorder):
    stack = await stack_factory(meta_media_hosts="127.0.0.1")
    content = os.urandom(500)
    media = stack.graph.add(FakeMedia(str(uuid.uuid4().int % 10**15), content=content, declared_sha256=None,
                                      download_url=f"{recorder.url}/media"))
    mid = wamid()
    await stack.post(dumps(envelope([media_message("image", media.media_id, None, "image/jpeg", mid=mid)])))
    await stack.wait_for_failure(mid)  # the recorder serves other bytes than declared: a hash mismatch
    assert f"Bearer {ACCESS_TOKEN}" in recorder.authorizations


def test_media_hosts_admit_meta_over_https_and_nothing_else():
    from wa_archive.config import Settings

    hosts = MediaHosts(Settings(_env_file=None).meta_media_hosts, "https://graph.facebook.com/v23.0")
    for url in ("https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1",
                "https://mmg.whatsapp.net/o1/v/t62", "https://graph.facebook.com/v23.0/123"):
        assert str(hosts.check(url)) == url
    for url in ("http://lookaside.fbsbx.com/x", "https://fbsbx.com/x", "https://lookaside.fbsbx.com.evil.example/x",
                "https://evilfbsbx.com/x", "https://user@lookaside.fbsbx.com@evil.example/x",
                "https://graph.facebook.com:8443/x", "http://graph.facebook.com/x", "ftp://a.fbsbx.com/x",
                "/download/1", "https://169.254.169.254/latest"):
        with pytest.raises(GraphRequestRefused, match="token was not sent"):
            hosts.check(url)
    listed = MediaHosts("media.test", "https://graph.facebook.com/v23.0")
    assert str(listed.check("http://media.test/x")) == "http://media.test/x"  # listed exactly: http allowed


def test_graph_ids_are_ascii_digits_only():
    assert graph_id("109327745812336", "phone_number_id") == "109327745812336"
    for bad in ("", "1" * 21, "12/3", "12%2F3", "１２", "12\n", " 12", "-1", "1.0", 12, None):
        with pytest.raises(GraphRequestRefused, match="phone_number_id"):
            graph_id(bad, "phone_number_id")


async def test_a_waba_id_that_is_not_digits_fails_the_template_snapshot_without_a_call(stack_factory):
    stack = await stack_factory(outbound_sent_wait=1.0, meta_waba_id="114873209948201/subscribed_apps")
    token = await stack.token("sender")
    stack.graph.set_template("114873209948201", copy.deepcopy(TEMPLATE_V1))
    stack.graph.requests.clear()  # the fake Graph API is shared by the session: count only this test's calls
    _, answer = await _proxy(stack, token, template_send({"link": _file(stack, b"\x89PNG header")}))
    wamid_ = answer["messages"][0]["id"]
    failure = await stack.wait_for_failure(wamid_)
    assert failure["stage"] == "snapshot_template"
    assert failure["retry_state"] == "NON_RETRYABLE_FAILURE" and len(failure["attempts"]) == 1
    assert failure["attempts"][0]["error_type"] == "GraphRequestRefused"
    assert "WABA id" in failure["last_error"]
    msg = await stack.wait_for_message(wamid_)
    assert "template_not_snapshotted" in msg["flags"]
    assert not [path for _, path in stack.graph.requests if "message_templates" in path or "subscribed" in path]


# --- the SSRF rule for media links ---------------------------------------------------------------------

REFUSED = [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "255.255.255.255",
    "100.64.0.1", "100.100.100.200", "198.18.0.1", "192.0.0.170", "240.0.0.1", "224.0.0.1", "192.0.2.1",
    "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "fec0::1", "ff02::1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:100.100.100.200", "::7f00:1",
    "2002:7f00:1::1", "2002:a9fe:a9fe::1", "2002:c0a8:101::1",  # 6to4 of 127.0.0.1, 169.254.169.254, 192.168.1.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo, client 8.8.8.8: the prefix itself is not global
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::6464:64c8",  # NAT64 of 127.0.0.1, metadata, 100.100.100.200
    "64:ff9b:1::808:808",  # local-use NAT64: never global
]
ADMITTED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "157.240.1.1", "2606:4700:4700::1111",
            "2a03:2880:f12f:83:face:b00c:0:25de", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]


@pytest.mark.parametrize("address", REFUSED)
def test_forbidden_refuses_everything_not_globally_routable(address):
    assert forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ADMITTED)
def test_forbidden_admits_public_addresses(address):
    assert not forbidden(ipaddress.ip_address(address))


NONCANONICAL = ["127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1", "127.000.000.001", "0x7f000001",
                "017700000001", "10.1", "127.0.0.1.", "0300.0250.0001.0001"]


@pytest.mark.parametrize("host", NONCANONICAL)
def test_noncanonical_ipv4_literals_are_recognised(host):
    assert noncanonical_ipv4(host)


@pytest.mark.parametrize("host", ["127.0.0.1", "8.8.8.8", "example.com", "1e100.net", "123.example", "cdn-1.example"])
def test_canonical_addresses_and_names_are_not_numeric_aliases(host):
    assert not noncanonical_ipv4(host)


@pytest.mark.parametrize("url", [f"http://{h}/x" for h in NONCANONICAL]
                         + [f"http://[{a}]/x" for a in REFUSED if ":" in a]
                         + [f"http://{a}/x" for a in REFUSED if ":" not in a])
def test_check_url_refuses_before_any_lookup(url):
    # The allow-list names 127.0.0.1, which must not admit its numeric aliases.
    fetcher = LinkFetcher(Allowlist("127.0.0.1"), max_bytes=1000, timeout=5)
    if url == "http://127.0.0.1/x":
        fetcher.check_url(url)  # admitted by the allow-list, as WA_ARCHIVE_MEDIA_FETCH_ALLOWLIST promises
        return
    with pytest.raises(LinkRefused):
        fetcher.check_url(url)


@pytest.mark.parametrize("url", ["https://8.8.8.8/x", "http://[2606:4700:4700::1111]/x", "https://example.com/x",
                                 "http://[::ffff:8.8.8.8]/x"])
def test_check_url_admits_public_addresses_and_names(url):
    LinkFetcher(Allowlist(""), max_bytes=1000, timeout=5).check_url(url)


async def test_resolver_refuses_numeric_aliases_and_internal_answers():
    from wa_archive.sources.links import GuardedResolver

    resolver = GuardedResolver(Allowlist(""))
    try:
        for host in ("127.1", "2130706433", "0x7f.0.0.1", "localhost"):
            with pytest.raises(LinkRefused):
                await resolver.resolve(host, 80)
    finally:
        await resolver.close()


async def test_media_link_to_a_numeric_alias_of_loopback_is_refused(stack_factory):
    stack = await stack_factory(media_fetch_allowlist="")
    token = await stack.token("sender")
    internal = _file(stack, b"secret")
    port = internal.split(":")[2].split("/")[0]
    name = internal.rsplit("/", 1)[1]
    link = f"http://2130706433:{port}/files/{name}"
    body = {**TEXT, "type": "image", "image": {"link": link, "caption": "statement"}}
    _, answer = await _proxy(stack, token, body)
    wamid_ = answer["messages"][0]["id"]
    from tests.test_outbound import status_body

    await stack.post(status_body(wamid_, "sent", 1792493902))
    failure = await stack.wait_for_failure(wamid_)
    assert failure["attempts"][0]["error_type"] == "LinkRefused" and "2130706433" in failure["last_error"]
    assert stack.graph.files[name].downloads == 0


def test_a_direct_path_cannot_name_another_host():
    from wa_archive.sources.wasender.media import direct_path_url

    base = "https://mmg.whatsapp.net"
    assert direct_path_url(base, "/v/t62.7118-24/f2/m231/AQN4?ccb=9-4") == base + "/v/t62.7118-24/f2/m231/AQN4?ccb=9-4"
    for bad in ("@evil.example/x", "//evil.example/x", ".evil.example/x", ":8080@evil.example/x"):
        with pytest.raises(LinkRefused, match="directPath"):
            direct_path_url(base, bad)
