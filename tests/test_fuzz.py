"""Never a 500 from bad input: generated and mutated requests against the webhooks, the API and the pages.

Each property test builds one real stack and lets hypothesis drive it from a worker thread while every
example is awaited on the test's own event loop (hypothesis has no async driver of its own). Every
answer must be below 500, a 4xx must say what is wrong, no body may carry a traceback, and nothing
unsigned is stored.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from tests.conftest import APP_SECRET, VERIFY_TOKEN
from tests.test_ui_security import sign_in
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.json_input import storable_text, substitute_text
from wa_archive.sources.meta.samples import dumps, envelope, media_message, message, wamid
from wa_archive.sources.signature import meta_signature

WASENDER_SECRET = "fuzz-wasender-secret"
PHONE = "447700900123"
EXAMPLES = int(os.environ.get("WA_ARCHIVE_FUZZ_EXAMPLES", "60"))


# Driving hypothesis from an async test -------------------------------------------------------------

async def explore(check: Callable[..., Awaitable[None]], *strategies: st.SearchStrategy,
                  examples: int = EXAMPLES) -> None:
    """Run `check` on generated examples (shrunk on failure) without leaving the test's event loop."""
    loop = asyncio.get_running_loop()

    @settings(max_examples=examples, deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(st.tuples(*strategies))
    def drive(args: tuple) -> None:
        asyncio.run_coroutine_threadsafe(check(*args), loop).result(timeout=60)

    await asyncio.to_thread(drive)


# Strategies --------------------------------------------------------------------------------------

# Anything a JSON parser gives back, NUL and lone surrogates included (json.dumps escapes them).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# Text a header or a query value can carry through an HTTP client (no controls, no surrogates).
header_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=80)
deep = st.integers(200, 200_000).map(lambda n: ("[" * n + "]" * n).encode())
# Deep enough to exhaust the JSON parser's recursion limit, short enough for a request line (8 KiB).
deep_in_url = st.integers(200, 2500).map(lambda n: ("[" * n + "]" * n).encode())
nasty_strings = st.sampled_from(["\x00", "\ud800", "é", "%00", "../..", "'; DROP TABLE messages; --",
                                 "<script>alert(1)</script>", "9" * 2000, "", " ", "\u202e", "\uffff"])


def _paths(doc: Any, here: tuple = ()) -> list[tuple]:
    found = [here]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, here + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += _paths(value, here + (i,))
    return found


@st.composite
def mutated(draw: st.DrawFn, doc: Any) -> Any:
    """`doc` with one to three subtrees replaced by arbitrary JSON, or deleted."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        replacement = draw(json_values | nasty_strings)
        if not path:
            doc = replacement
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, (dict, list)):
            del parent[path[-1]]
        else:
            parent[path[-1]] = replacement
    return doc


def _meta_doc() -> dict:
    return envelope([message("text", {"body": "hello"}, mid=wamid())])


def _wasender_doc() -> dict:
    return {"event": "messages.upsert", "timestamp": 1792496120, "data": {"messages": [
        {"key": {"id": "3EB0" + uuid.uuid4().hex[:16].upper(), "fromMe": False,
                 "remoteJid": f"{PHONE}@s.whatsapp.net"}, "message": {"conversation": "hi"}}]}}


def _body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


bodies = st.one_of(
    st.binary(max_size=600),
    json_values.map(_body),
    mutated(_meta_doc()).map(_body),
    mutated(_wasender_doc()).map(_body),
    deep,
)
signatures = st.one_of(
    st.none(), header_text, st.just("sha256=é"), st.just("sha256=\udce9" * 3),
    st.text("0123456789abcdefABCDEF", max_size=70).map(lambda h: "sha256=" + h),
    header_text.map(lambda t: "sha256=" + t),
    st.binary(max_size=32).map(lambda b: meta_signature(APP_SECRET, b)),  # valid, for another body
)
# Header values as raw bytes beyond ASCII (a client sends them; the server decodes with surrogateescape).
raw_header = st.binary(min_size=1, max_size=40).filter(lambda b: not set(b) & set(range(32)) and 127 not in b)
digits = st.integers(1, 6000).map(lambda n: "9" * n)
ranges = st.one_of(
    header_text,
    st.builds(lambda a, b: f"bytes={a}-{b}", st.integers(0, 6000) | digits | st.just(""),
              st.integers(0, 6000) | digits | st.just("")),
    st.builds(lambda a: f"bytes=-{a}", st.integers(0, 6000) | digits),
    st.sampled_from(["bytes=0-1,3-4", "bytes= 1-2", "bytes=١-٢", "bytes=-", "bytes=5-2", "lines=1-2", "bytes=0x10-"]),
)
query_keys = st.sampled_from(["phone", "since", "until", "direction", "type", "template", "has_media", "q",
                              "limit", "cursor", "redirect"]) | header_text
query_values = st.one_of(
    header_text, nasty_strings.filter(lambda s: "\ud800" not in s),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-02-30", "0001-01-01",
                     "-1", "1e9", "999999999999999999999", "true", "in", "out", "presigned", "+44 7700 900123"]),
    st.datetimes().map(lambda d: d.isoformat()),
)
raw_query_parts = st.sampled_from(["%00", "%FF", "%ED%A0%80", "%", "%2", "&", "=", "+", ";", "cursor", "since",
                                   "q", "phone", "2026-01-01", "a", "%C3%A9", "[", "]", "%0A"])
raw_queries = st.lists(raw_query_parts, max_size=12).map("".join)


@st.composite
def cursors(draw: st.DrawFn) -> str:
    """Cursor values: base64 of arbitrary or deeply nested JSON, and plain junk."""
    import base64

    kind = draw(st.sampled_from(["json", "deep", "junk", "pair"]))
    if kind == "junk":
        return draw(header_text)
    if kind == "deep":
        raw = draw(deep_in_url)
    elif kind == "pair":
        raw = _body([draw(st.text(max_size=40) | query_values), draw(json_values | nasty_strings)])
    else:
        raw = _body(draw(json_values))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def path_segment(text: str) -> str:
    return quote(text, safe="", errors="surrogatepass")


# Checking answers --------------------------------------------------------------------------------

def check_answer(status: int, body: bytes, *, json_errors: bool, where: str) -> None:
    """No 5xx, no traceback; a 4xx says what is wrong (as JSON `error` where `json_errors`)."""
    assert status < 500, f"{where}: {status} {body[:300]!r}"
    assert b"Traceback" not in body and b'File "' not in body, f"{where}: traceback in body"
    if 400 <= status < 500:
        assert body.strip(), f"{where}: {status} with an empty body"
        # aiohttp answers before any handler for no route, and for a header line over its 8 KiB limit;
        # both are plain text that says what is wrong.
        if json_errors and not body.startswith((b"404: Not Found", b"Got more than 8190 bytes")):
            error = json.loads(body).get("error")
            assert isinstance(error, str) and error, f"{where}: {status} without an error message"


async def request(stack, method: str, url: str | URL, *, where: str, json_errors: bool = True,
                  **kw: Any) -> tuple[int, Any, bytes]:
    async with stack.http.request(method, url, allow_redirects=False, **kw) as resp:
        body = await resp.read()
    check_answer(resp.status, body, json_errors=json_errors, where=where)
    return resp.status, resp.headers, body


async def raw_request(stack, method: str, target: str, headers: dict[str, bytes], body: bytes = b"", *,
                      where: str, json_errors: bool = True) -> tuple[int, bytes]:
    """A request written byte by byte, for header values no HTTP client would send (bytes that are not UTF-8)."""
    host, port = URL(stack.url).host, URL(stack.url).port
    reader, writer = await asyncio.open_connection(host, port)
    head = [f"{method} {target} HTTP/1.1".encode(), f"Host: {host}:{port}".encode(), b"Connection: close",
            f"Content-Length: {len(body)}".encode()] + [name.encode() + b": " + value for name, value in headers.items()]
    writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
    answer = await reader.read()
    writer.close()
    head_bytes, _, payload = answer.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head_bytes.lower():
        chunks, rest = [], payload
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            chunks.append(rest[:size])
            rest = rest[size + 2:]
        payload = b"".join(chunks)
    check_answer(status, payload, json_errors=json_errors, where=where)
    return status, payload


async def deliveries(stack) -> int:
    return await stack.pool.fetchval("SELECT count(*) FROM deliveries")


async def fuzz_stack(stack_factory):
    return await stack_factory(wasender_webhook_secret=WASENDER_SECRET)


# The holes of issue 11, item 6, one request each -------------------------------------------------

async def test_a_non_ascii_signature_is_401_not_a_crash(stack_factory):
    stack = await fuzz_stack(stack_factory)
    body = dumps(_meta_doc())
    for signature in ("sha256=é", "sha256=" + "é" * 64, "sha256=" + "0" * 63, "sha256=" + "0" * 65, "sha256=",
                      "sha256=" + meta_signature(APP_SECRET, body)[7:].replace("a", "g", 1) + " "):
        status, _, answer = await request(stack, "POST", f"{stack.url}/webhooks/meta", data=body,
                                          headers={"X-Hub-Signature-256": signature}, where=signature)
        assert status == 401 and b"X-Hub-Signature-256" in answer
    for raw in (b"\xe9\xe9", "é".encode(), WASENDER_SECRET.encode() + b"\xff"):
        status, answer = await raw_request(stack, "POST", "/webhooks/wasender", {"X-Webhook-Signature": raw},
                                           _body(_wasender_doc()), where=repr(raw))
        assert status == 401 and b"X-Webhook-Signature" in answer
        status, answer = await raw_request(stack, "POST", "/webhooks/meta", {"X-Hub-Signature-256": b"sha256=" + raw},
                                           _body(_meta_doc()), where=repr(raw))
        assert status == 401 and b"X-Hub-Signature-256" in answer
    assert await deliveries(stack) == 0


async def test_a_deeply_nested_cursor_is_400_naming_cursor(stack_factory):
    import base64

    stack = await fuzz_stack(stack_factory)
    token = await stack.token("auditor")
    nested = base64.urlsafe_b64encode(b"[" * 2500 + b"]" * 2500).decode()
    for cursor in (nested, "A" * 6000, base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", {"a": 1}]').decode(),
                   base64.urlsafe_b64encode(b'["0001-01-01T00:00:00+14:00", "x"]').decode(),
                   base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", "a\\u0000b"]').decode()):
        status, _, answer = await request(stack, "GET", f"{stack.url}/api/v1/messages", params={"cursor": cursor},
                                          headers={"Authorization": f"Bearer {token}"}, where=cursor[:40])
        assert status == 400 and json.loads(answer)["filter"] == "cursor"


async def test_a_range_of_thousands_of_digits_is_answered_with_a_reason(stack_factory):
    stack = await fuzz_stack(stack_factory)
    seeded = await seed(stack)
    token = await stack.token("auditor")
    url = f"{stack.url}/api/v1/media/{seeded['archive_id']}"
    auth = {"Authorization": f"Bearer {token}"}
    size = len(seeded["image"])
    status, headers, answer = await request(stack, "GET", url, headers={**auth, "Range": "bytes=" + "9" * 5000 + "-"},
                                            where="huge start")
    assert status == 416 and headers["Content-Range"] == f"bytes */{size}" and json.loads(answer)["error"]
    # A last position beyond the end is clamped (RFC 9110), however many digits it has.
    status, headers, answer = await request(stack, "GET", url, headers={**auth, "Range": "bytes=10-" + "9" * 5000},
                                            where="huge end")
    assert status == 206 and answer == seeded["image"][10:] and headers["Content-Range"] == f"bytes 10-{size - 1}/{size}"
    status, _, answer = await request(stack, "GET", url, headers={**auth, "Range": "bytes=-" + "9" * 5000},
                                      where="huge suffix")
    assert status == 206 and answer == seeded["image"]
    status, _, answer = await request(stack, "GET", url, headers={**auth, "Range": "bytes=9000-9001"}, where="past end")
    assert status == 416 and json.loads(answer)["error"]


async def test_readyz_names_only_the_dependency_that_is_down(stack_factory, client, tmp_path):
    from aiohttp import web

    from tests.conftest import make_settings
    from wa_archive.db import create_pool
    from wa_archive.devstack.embedded import free_port
    from wa_archive.storage import FilesystemStore
    from webhook.app import WebhookDeps, create_app

    stack = await fuzz_stack(stack_factory)
    status, _, answer = await request(stack, "GET", f"{stack.url}/readyz", where="readyz")
    assert status == 200 and json.loads(answer) == {"status": "ready", "checks": {
        "temporal": "ok", "postgres": "ok", "storage": "ok"}}
    # A database nobody listens on, at an address that must not be told to an anonymous caller.
    dead_port = free_port()
    pool = await create_pool(f"postgresql://secret-user:pw@127.0.0.1:{dead_port}/internal_db", min_size=0)
    runner = web.AppRunner(create_app(WebhookDeps(settings=make_settings(), client=client, pool=pool,
                                                  store=FilesystemStore(tmp_path / "objects"))))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with stack.http.get(f"http://127.0.0.1:{port}/readyz") as resp:
            status, answer = resp.status, await resp.read()
    finally:
        await runner.cleanup()
        await pool.close()
    assert status == 503
    assert json.loads(answer) == {"status": "not ready", "checks": {"temporal": "ok", "postgres": "down",
                                                                    "storage": "ok"}}
    for leak in (str(dead_port).encode(), b"127.0.0.1", b"internal_db", b"secret-user", b"Error", b"error"):
        assert leak not in answer


# Properties over generated input -----------------------------------------------------------------

async def test_meta_webhook_never_crashes_and_stores_nothing_unsigned(stack_factory):
    stack = await fuzz_stack(stack_factory)
    url = f"{stack.url}/webhooks/meta"

    async def unsigned(body: bytes, signature: str | None) -> None:
        before = await deliveries(stack)
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        status, _, _ = await request(stack, "POST", url, data=body, headers=headers, where=f"unsigned {signature!r}")
        assert status == 401
        assert await deliveries(stack) == before

    def forged(pair: tuple[bytes, str | None]) -> bool:
        body, signature = pair
        return signature is None or signature.lower() != meta_signature(APP_SECRET, body)

    pairs = st.tuples(bodies, signatures).filter(forged)
    await explore(lambda pair: unsigned(*pair), pairs)

    async def raw_signature(body: bytes, raw: bytes) -> None:
        status, _ = await raw_request(stack, "POST", "/webhooks/meta", {"X-Hub-Signature-256": b"sha256=" + raw},
                                      body, where=f"raw {raw!r}")
        assert status == 401

    await explore(raw_signature, bodies, raw_header, examples=EXAMPLES // 2)
    assert await deliveries(stack) == 0

    async def signed_but_mutated(body: bytes) -> None:
        status, _, answer = await request(stack, "POST", url, data=body,
                                          headers={"X-Hub-Signature-256": meta_signature(APP_SECRET, body)},
                                          where=f"signed {body[:200]!r}")
        assert status in (200, 400), (status, answer)

    await explore(signed_but_mutated, mutated(_meta_doc()).map(_body) | deep)

    accepted: list[tuple[str, str, str]] = []

    async def signed_valid(text: str, name: str) -> None:
        mid = wamid()
        doc = envelope([message("text", {"body": text}, mid=mid)],
                       contacts=[{"profile": {"name": name}, "wa_id": PHONE}])
        body = _body(doc)
        status, _, answer = await request(stack, "POST", url, data=body,
                                          headers={"X-Hub-Signature-256": meta_signature(APP_SECRET, body)},
                                          where="signed valid")
        # Signed text PostgreSQL cannot hold (NUL, lone surrogates) is archived too, substituted and flagged.
        assert status == 200 and json.loads(answer)["status"] == "accepted", answer
        accepted.append((mid, text, name))

    any_text = st.text(max_size=300) | nasty_strings | st.text("a\x00\ud800\udfff\ufffd", max_size=8)
    await explore(signed_valid, any_text, any_text, examples=max(10, EXAMPLES // 3))

    def as_sent(value: str) -> str:
        return json.loads(json.dumps(value))  # an escaped surrogate pair arrives as one character

    substituted = [a for a in accepted if not storable_text(as_sent(a[1]) + as_sent(a[2]))]
    for mid, text, name in accepted[-3:] + substituted[-3:]:
        archived = await stack.wait_for_message(mid)
        for got, sent in ((archived["text"], text), (archived["contact"]["name"], name)):
            if sent:
                assert got == substitute_text(as_sent(sent))
        assert ("text_substituted" in archived["flags"]) == (not storable_text(as_sent(text) + as_sent(name)))


async def test_meta_handshake_never_crashes(stack_factory):
    stack = await fuzz_stack(stack_factory)
    keys = st.sampled_from(["hub.mode", "hub.verify_token", "hub.challenge"]) | header_text
    values = header_text | st.sampled_from(["subscribe", VERIFY_TOKEN, VERIFY_TOKEN + "é"])

    async def handshake(query: dict[str, str], raw: str) -> None:
        status, _, body = await request(stack, "GET", f"{stack.url}/webhooks/meta", params=query, where=repr(query))
        right = query.get("hub.mode") == "subscribe" and query.get("hub.verify_token") == VERIFY_TOKEN
        assert status == (200 if right else 403)
        if right:
            assert body.decode() == query.get("hub.challenge", "")
        status, _, _ = await request(stack, "GET", URL(f"{stack.url}/webhooks/meta?{raw}", encoded=True), where=raw)
        assert status in (200, 400, 403)  # 400: a query with NUL or text that is not Unicode

    await explore(handshake, st.dictionaries(keys, values, max_size=4), raw_queries)


async def test_wasender_webhook_never_crashes_and_stores_nothing_unsigned(stack_factory):
    stack = await fuzz_stack(stack_factory)
    url = f"{stack.url}/webhooks/wasender"

    async def unsigned(body: bytes, secret: str | None, raw: bytes) -> None:
        headers = {} if secret is None else {"X-Webhook-Signature": secret}
        status, _, _ = await request(stack, "POST", url, data=body, headers=headers, where=f"secret {secret!r}")
        assert status == 401
        status, _ = await raw_request(stack, "POST", "/webhooks/wasender", {"X-Webhook-Signature": raw}, body,
                                      where=f"raw {raw!r}")
        assert status == 401

    await explore(unsigned, bodies, st.none() | header_text.filter(lambda s: s != WASENDER_SECRET), raw_header)
    assert await deliveries(stack) == 0

    async def authenticated(body: bytes) -> None:
        status, _, answer = await request(stack, "POST", url, data=body,
                                          headers={"X-Webhook-Signature": WASENDER_SECRET}, where="mutated")
        assert status in (200, 400), (status, answer)

    await explore(authenticated, mutated(_wasender_doc()).map(_body) | deep)


async def seed(stack) -> dict:
    """One archived image message, so that media, message and conversation routes have something to serve."""
    image = os.urandom(5000)
    media = stack.graph.add(FakeMedia(f"m{uuid.uuid4().hex[:10]}", mime_type="image/jpeg", content=image))
    mid = wamid()
    status, _ = await stack.post(dumps(envelope([media_message("image", media.media_id, media.sha256_b64(),
                                                               "image/jpeg", mid=mid)])))
    assert status == 200
    msg = await stack.wait_for_message(mid)
    return {"message_id": mid, "image": image, "media_id": media.media_id,
            "archive_id": msg["media"][0]["archive_id"], "sha256": msg["media"][0]["sha256"]}


async def test_api_never_crashes(stack_factory):
    stack = await fuzz_stack(stack_factory)
    seeded = await seed(stack)
    auth = {"Authorization": f"Bearer {await stack.token('auditor')}"}
    api = f"{stack.url}/api/v1"

    async def search(query: dict[str, str], raw: str, cursor: str) -> None:
        await request(stack, "GET", f"{api}/messages", params=query, headers=auth, where=f"messages {query!r}")
        await request(stack, "GET", URL(f"{api}/messages?{raw}", encoded=True), headers=auth, where=raw)
        status, _, body = await request(stack, "GET", f"{api}/messages", params={"cursor": cursor}, headers=auth,
                                        where=f"cursor {cursor[:60]}")
        assert status in (200, 400)
        if status == 400:
            assert json.loads(body)["filter"] == "cursor"

    await explore(search, st.dictionaries(query_keys, query_values, max_size=4), raw_queries, cursors())

    async def by_path(text: str, query: dict[str, str]) -> None:
        segment = path_segment(text)
        for route in ("messages", "conversations", "media"):
            await request(stack, "GET", URL(f"{api}/{route}/{segment}", encoded=True).with_query(query),
                          headers=auth, where=f"{route}/{segment}")

    await explore(by_path, st.text(max_size=40) | nasty_strings, st.dictionaries(query_keys, header_text, max_size=2))

    etag = f'"{seeded["sha256"]}"'

    async def media(ref: str, range_header: str | None, if_none_match: str | None) -> None:
        headers = dict(auth)
        if range_header is not None:
            headers["Range"] = range_header
        if if_none_match is not None:
            headers["If-None-Match"] = if_none_match
        status, got, body = await request(stack, "GET", f"{api}/media/{ref}", headers=headers,
                                          where=f"media {range_header!r} {if_none_match!r}")
        assert status in (200, 206, 304, 400, 404, 416)
        if status in (200, 206):
            assert int(got["Content-Length"]) == len(body)
            first, _, last = (got.get("Content-Range", "bytes 0-").split(" ")[1].split("/")[0]).partition("-")
            assert body == seeded["image"][int(first):int(last) + 1 if last else None]

    async def media_raw_headers(range_header: bytes, if_none_match: bytes) -> None:
        token = auth["Authorization"].encode()
        status, _ = await raw_request(stack, "GET", f"/api/v1/media/{seeded['archive_id']}",
                                      {"Authorization": token, "Range": b"bytes=" + range_header,
                                       "If-None-Match": if_none_match}, where=f"raw {range_header!r}")
        assert status in (200, 206, 304, 416)

    await explore(media_raw_headers, raw_header, raw_header, examples=EXAMPLES // 2)

    refs = st.sampled_from([seeded["archive_id"], seeded["media_id"], str(uuid.uuid4())])
    inm = st.none() | header_text | st.just(etag) | header_text.map(lambda t: f"{t}, {etag}")
    await explore(media, refs, st.none() | ranges, inm)


async def test_outbound_and_send_proxy_never_crash(stack_factory):
    stack = await fuzz_stack(stack_factory)
    auth = {"Authorization": f"Bearer {await stack.token('sender')}", "Content-Type": "application/json"}
    record = {"phone_number_id": "109327745812336", "request": {"messaging_product": "whatsapp", "to": PHONE,
              "type": "text", "text": {"body": "hi"}}, "response": {"messages": [{"id": "wamid.X"}]}}

    async def outbound(doc: Any, raw: bytes) -> None:
        if isinstance(doc, dict) and isinstance(doc.get("response"), dict):
            doc["response"] = {"messages": [{"id": wamid()}]}  # a fresh wamid, so each valid record is new
        status, _, body = await request(stack, "POST", f"{stack.url}/api/v1/outbound", data=_body(doc), headers=auth,
                                        where=f"outbound {_body(doc)[:200]!r}")
        assert status in (200, 400), body
        status, _, body = await request(stack, "POST", f"{stack.url}/api/v1/outbound", data=raw, headers=auth,
                                        where=f"outbound raw {raw[:100]!r}")
        assert status == 400, body

    await explore(outbound, mutated(record), st.binary(max_size=200) | deep)

    send = {"messaging_product": "whatsapp", "to": PHONE, "type": "text", "text": {"body": "hi"}}

    async def proxy(doc: Any, raw: bytes) -> None:
        url = f"{stack.url}/graph/109327745812336/messages"
        status, _, body = await request(stack, "POST", url, data=_body(doc), headers=auth, json_errors=False,
                                        where=f"proxy {_body(doc)[:200]!r}")
        assert status in (200, 400), body
        status, _, body = await request(stack, "POST", url, data=raw, headers=auth, where=f"proxy raw {raw[:100]!r}")
        assert status == 400, body

    await explore(proxy, mutated(send).filter(lambda d: isinstance(d, dict)), st.binary(max_size=200) | deep)


async def test_pages_never_crash(stack_factory):
    stack = await fuzz_stack(stack_factory)
    seeded = await seed(stack)
    token = await stack.token("auditor")
    session = (await sign_in(stack, token)).value
    cookies = st.sampled_from([None, session]) | header_text.map(lambda t: t.replace(";", "").replace(",", ""))

    def cookie_header(value: str | None) -> dict[str, str]:
        return {} if value is None else {"Cookie": f"wa_archive_session={value}"}

    async def pages(query: dict[str, str], raw: str, text: str, cookie: str | None) -> None:
        headers = cookie_header(cookie)
        segment = path_segment(text)
        for url in (URL(f"{stack.url}/ui/").with_query(query), URL(f"{stack.url}/ui/?{raw}", encoded=True),
                    URL(f"{stack.url}/ui/messages/{segment}", encoded=True),
                    URL(f"{stack.url}/ui/messages/{path_segment(seeded['message_id'])}", encoded=True),
                    URL(f"{stack.url}/ui/conversations/{segment}", encoded=True).with_query(query),
                    URL(f"{stack.url}/ui/conversations/{PHONE}?{raw}", encoded=True),
                    URL(f"{stack.url}/ui/media/{segment}", encoded=True)):
            status, got, _ = await request(stack, "GET", url, headers=headers, json_errors=False, where=str(url))
            if 300 <= status < 400:
                assert got["Location"].startswith("/ui/")

    await explore(pages, st.dictionaries(query_keys, query_values, max_size=4), raw_queries,
                  st.text(max_size=30) | nasty_strings, cookies)

    async def raw_cookie(cookie: bytes, raw: str) -> None:
        for target in (f"/ui/?{raw}", f"/ui/messages/{path_segment(seeded['message_id'])}", "/ui/login"):
            await raw_request(stack, "GET", target, {"Cookie": b"wa_archive_session=" + cookie}, json_errors=False,
                              where=f"cookie {cookie!r}")

    await explore(raw_cookie, raw_header, raw_queries, examples=EXAMPLES // 2)

    async def login(form: dict[str, str], raw: bytes, cookie: str | None) -> None:
        headers = cookie_header(cookie)
        status, got, _ = await request(stack, "POST", f"{stack.url}/ui/login", data=form, headers=headers,
                                       json_errors=False, where=f"login {form!r}")
        if 300 <= status < 400:
            assert got["Location"].startswith("/ui/")
        await request(stack, "POST", f"{stack.url}/ui/login", data=raw,
                      headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
                      json_errors=False, where=f"login raw {raw[:100]!r}")

    form_keys = st.sampled_from(["token", "next", "csrf"]) | header_text
    form_values = header_text | nasty_strings.filter(lambda s: "\ud800" not in s) | st.sampled_from([token, "/ui/\r\nSet-Cookie: x=1", "//evil.example",
                                                                 "/ui/%0d%0aX: y", "/ui/" + "a" * 5000])
    await explore(login, st.dictionaries(form_keys, form_values, max_size=3),
                  st.binary(max_size=200) | raw_queries.map(str.encode), cookies)


# Pure units --------------------------------------------------------------------------------------

@pytest.mark.parametrize("header", ["sha256=é", "sha256=" + "g" * 64, "sha256=" + "0" * 63, "sha256= " + "0" * 64,
                                    "SHA256=" + "0" * 64, "sha256=" + "٠" * 64, "sha256=\udce9", ""])
def test_unparseable_signature_headers_are_refused_without_error(header):
    from wa_archive.sources.signature import meta_signature_ok

    assert meta_signature_ok(APP_SECRET, b"{}", header) is False


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.text(max_size=80))
def test_only_the_exact_signature_verifies(body, header):
    from wa_archive.sources.signature import meta_signature_ok, shared_secret_ok

    good = meta_signature(APP_SECRET, body)
    assert meta_signature_ok(APP_SECRET, body, good)
    assert meta_signature_ok(APP_SECRET, body, "sha256=" + good[7:].upper())
    assert meta_signature_ok(APP_SECRET, body, header) == (header.lower() == good.lower() and header[:7] == "sha256=")
    assert shared_secret_ok("s3cret", header) == (header == "s3cret")


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 10_000), st.one_of(st.none(), st.integers(0, 20_000), digits),
       st.one_of(st.none(), st.integers(0, 20_000), digits), st.booleans())
def test_range_parsing_agrees_with_rfc_9110(size, first, last, suffix):
    from wa_archive.errors import RangeNotSatisfiable
    from webhook.ranges import parse_range

    if suffix:
        header = f"bytes=-{last if last is not None else ''}"
    else:
        header = f"bytes={first if first is not None else ''}-{last if last is not None else ''}"
    as_int = lambda v: None if v is None else int(v) if isinstance(v, int) or len(v) < 25 else 10 ** 30  # noqa: E731
    f, l_ = as_int(first), as_int(last)
    if suffix:
        expected = None if l_ is None or l_ == 0 or size == 0 else (max(0, size - l_), size - 1)
    elif f is None:
        expected = None if l_ is None or l_ == 0 or size == 0 else (max(0, size - l_), size - 1)
    elif f >= size or (l_ is not None and l_ < f):
        expected = None
    else:
        expected = (f, size - 1 if l_ is None else min(l_, size - 1))
    if expected is None:
        with pytest.raises(RangeNotSatisfiable) as refused:
            parse_range(header, size)
        assert str(refused.value)
    else:
        assert parse_range(header, size) == expected


@pytest.mark.parametrize("header", ["lines=1-2", "bytes=0-1,3-4", "bytes=١-٢", "bytes=-", "bytes=0x10-", "bytes=5",
                                    "bytes=a-b", "", "bytes=" + "1" * 10_000 + "-" + "2" * 10_000 + "x"])
def test_unsupported_ranges_are_refused_with_a_reason(header):
    from wa_archive.errors import RangeNotSatisfiable
    from webhook.ranges import parse_range

    with pytest.raises(RangeNotSatisfiable) as refused:
        parse_range(header, 100)
    assert "bytes=" in str(refused.value)


@settings(max_examples=300, deadline=None)
@given(cursors())
def test_any_cursor_decodes_or_is_refused_by_name(value):
    from datetime import datetime

    from wa_archive.discovery.search import parse_filters
    from wa_archive.errors import FilterError

    try:
        filters = parse_filters({"cursor": value})
    except FilterError as exc:
        assert exc.name == "cursor"
    else:
        ts, message_id = filters.cursor
        assert isinstance(ts, datetime) and ts.tzinfo is not None and isinstance(message_id, str)
        assert "\x00" not in message_id


def test_a_cursor_round_trips():
    from datetime import datetime, timezone

    from wa_archive.discovery.search import encode_cursor, parse_filters

    ts = datetime(2026, 3, 1, 12, 30, tzinfo=timezone.utc)
    mid = wamid()
    assert parse_filters({"cursor": encode_cursor(ts, mid)}).cursor == (ts, mid)


def test_leading_zeros_do_not_make_a_position_huge():
    from webhook.ranges import parse_range

    assert parse_range("bytes=" + "0" * 5000 + "5-", 100) == (5, 99)
    assert parse_range("bytes=-" + "0" * 5000 + "7", 100) == (93, 99)
    assert parse_range("bytes=0-" + "0" * 5000 + "9", 100) == (0, 9)
