"""Never a 500 from bad input at either webhook: generated and mutated deliveries, signatures and handshakes.

Every answer must be below 500, a 4xx must say what is wrong, no body may carry a traceback, and nothing
unsigned is stored.
"""

from __future__ import annotations

import json

from hypothesis import strategies as st
from yarl import URL

from tests.conftest import APP_SECRET, VERIFY_TOKEN
from tests.fuzz_http import WASENDER_SECRET, fuzz_stack, raw_request, request
from tests.strategies import (
    EXAMPLES,
    PHONE,
    as_body,
    bodies,
    deep,
    explore,
    header_text,
    meta_doc,
    mutated,
    nasty_strings,
    raw_header,
    raw_queries,
    signatures,
    wasender_doc,
)
from wa_archive.json_input import storable_text, substitute_text
from wa_archive.sources.meta.samples import dumps, envelope, message, wamid
from wa_archive.sources.signature import meta_signature


async def deliveries(stack) -> int:
    return await stack.pool.fetchval("SELECT count(*) FROM deliveries")


# One of the holes of issue 11, item 6 ------------------------------------------------------------

async def test_a_non_ascii_signature_is_401_not_a_crash(stack_factory):
    stack = await fuzz_stack(stack_factory)
    body = dumps(meta_doc())
    valid = meta_signature(APP_SECRET, body)[7:]
    # One hex digit turned into a non-hex letter (whatever the digest's digits are), then a trailing space.
    for signature in ("sha256=é", "sha256=" + "é" * 64, "sha256=" + "0" * 63, "sha256=" + "0" * 65, "sha256=",
                      "sha256=g" + valid[1:] + " "):
        status, _, answer = await request(stack, "POST", f"{stack.url}/webhooks/meta", data=body,
                                          headers={"X-Hub-Signature-256": signature}, where=signature)
        assert status == 401 and b"X-Hub-Signature-256" in answer
    for raw in (b"\xe9\xe9", "é".encode(), WASENDER_SECRET.encode() + b"\xff"):
        status, answer = await raw_request(stack, "POST", "/webhooks/wasender", {"X-Webhook-Signature": raw},
                                           as_body(wasender_doc()), where=repr(raw))
        assert status == 401 and b"X-Webhook-Signature" in answer
        status, answer = await raw_request(stack, "POST", "/webhooks/meta", {"X-Hub-Signature-256": b"sha256=" + raw},
                                           as_body(meta_doc()), where=repr(raw))
        assert status == 401 and b"X-Hub-Signature-256" in answer
    assert await deliveries(stack) == 0


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

    await explore(signed_but_mutated, mutated(meta_doc()).map(as_body) | deep)

    accepted: list[tuple[str, str, str]] = []

    async def signed_valid(text: str, name: str) -> None:
        mid = wamid()
        doc = envelope([message("text", {"body": text}, mid=mid)],
                       contacts=[{"profile": {"name": name}, "wa_id": PHONE}])
        body = as_body(doc)
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

    await explore(authenticated, mutated(wasender_doc()).map(as_body) | deep)
