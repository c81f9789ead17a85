"""The webhook's HTTP contract: handshake, signatures, bad input, size, batching, Temporal down."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from temporalio.client import Client

from tests.conftest import DATA_CONVERTER, VERIFY_TOKEN, make_settings, wait_until
from wa_archive.archive.keys import delivery_workflow_id
from wa_archive.devstack.embedded import free_port
from wa_archive.sources.meta.samples import dumps, envelope, message, wamid
from webhook.app import WebhookDeps, create_app


async def _get(stack, query: dict) -> tuple[int, str]:
    async with stack.http.get(f"{stack.url}/webhooks/meta", params=query) as resp:
        return resp.status, await resp.text()


async def test_handshake_echoes_the_challenge_only_for_the_right_token(stack):
    ok = await _get(stack, {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1730884512"})
    assert ok == (200, "1730884512")
    assert (await _get(stack, {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"}))[0] == 403
    assert (await _get(stack, {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"}))[0] == 403
    assert (await _get(stack, {}))[0] == 403


async def test_bad_or_missing_signature_is_401_and_starts_nothing(stack):
    body = dumps(envelope([message("text", {"body": "x"})]))
    status, answer = await stack.post(body, signature=None)
    assert status == 401 and "X-Hub-Signature-256" in answer["error"]
    assert (await stack.post(body, signature="sha256=" + "0" * 64))[0] == 401
    assert (await stack.post(body, signature="md5=abc"))[0] == 401
    tampered_sig = (await _signed(body))
    assert (await stack.post(body + b" ", signature=tampered_sig))[0] == 401
    assert await stack.pool.fetchval("SELECT count(*) FROM deliveries") == 0


async def _signed(body: bytes) -> str:
    from tests.conftest import APP_SECRET
    from wa_archive.sources.signature import meta_signature

    return meta_signature(APP_SECRET, body)


async def test_malformed_bodies_get_400_with_a_reason(stack):
    status, answer = await stack.post(b"{not json")
    assert status == 400 and "not valid JSON" in answer["error"]
    status, answer = await stack.post(b"[1, 2]")
    assert status == 400 and "JSON object" in answer["error"]
    status, answer = await stack.post(dumps({"object": "page", "entry": []}))
    assert status == 400 and "whatsapp_business_account" in answer["error"]
    status, answer = await stack.post(dumps({"object": "whatsapp_business_account"}))
    assert status == 400 and "entry" in answer["error"]
    assert await stack.pool.fetchval("SELECT count(*) FROM deliveries") == 0


async def test_oversized_body_is_413(stack):
    big = dumps(envelope([message("text", {"body": "a" * (4 * 1024 * 1024)})]))
    status, answer = await stack.post(big)
    assert status == 413 and "exceeds" in answer["error"]
    assert await stack.pool.fetchval("SELECT count(*) FROM deliveries") == 0


@pytest.mark.slow
async def test_a_1000_update_batch_is_acknowledged_and_every_message_archived(stack):
    items = [message("text", {"body": f"batch {i}"}) for i in range(1000)]
    body = dumps(envelope(items))
    status, answer = await stack.post(body)  # how fast is `make bench`'s (ingest), never a timed assertion here
    assert status == 200 and answer["updates"] == 1000
    # Acknowledged as one durable start, not a thousand: Temporal holds the delivery's IngestDelivery.
    ingest = await stack.client.get_workflow_handle(delivery_workflow_id(answer["delivery"])).describe()
    assert ingest.workflow_type == "IngestDelivery"
    ids = [i["id"] for i in items]

    async def archived() -> bool:
        return await stack.pool.fetchval("SELECT count(*) FROM messages WHERE id = ANY($1::text[])", ids) == 1000

    await wait_until(archived, "all 1,000 messages archived", timeout=240, interval=0.2)


async def test_temporal_unreachable_answers_503_and_meta_will_retry(pool, clean_db):
    dead = free_port()
    client = await Client.connect(f"127.0.0.1:{dead}", data_converter=DATA_CONVERTER, lazy=True)
    settings = make_settings()
    import tempfile
    from pathlib import Path

    from wa_archive.storage import FilesystemStore

    store = FilesystemStore(Path(tempfile.mkdtemp()))
    runner = web.AppRunner(create_app(WebhookDeps(settings=settings, client=client, pool=clean_db, store=store)))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        body = dumps(envelope([message("text", {"body": "x"}, mid=wamid())]))
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{port}/webhooks/meta", data=body,
                                 headers={"X-Hub-Signature-256": await _signed(body)}) as resp:
                assert resp.status == 503
                assert "retry" in (await resp.json())["error"]
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                report = await resp.json()
                assert resp.status == 503 and report["checks"]["temporal"] == "down"
                assert report["checks"]["postgres"] == "ok"
    finally:
        await runner.cleanup()


async def test_health_and_readiness(stack):
    async with stack.http.get(f"{stack.url}/healthz") as resp:
        assert resp.status == 200
    async with stack.http.get(f"{stack.url}/readyz") as resp:
        assert resp.status == 200
        assert (await resp.json())["checks"] == {"temporal": "ok", "postgres": "ok", "storage": "ok"}


async def test_a_body_arriving_in_slow_chunks_is_read_whole(stack):
    mid = wamid()
    body = dumps(envelope([message("text", {"body": "x" * 200_000}, mid=mid)]))

    async def trickle():
        for i in range(0, len(body), 16_384):
            yield body[i : i + 16_384]
            await asyncio.sleep(0.01)

    async with stack.http.post(f"{stack.url}/webhooks/meta", data=trickle(),
                               headers={"X-Hub-Signature-256": await _signed(body)}) as resp:
        assert resp.status == 200, await resp.text()
    msg = await stack.wait_for_message(mid)
    assert len(msg["text"]) == 200_000


async def test_an_oversized_chunked_body_is_413(stack):
    async def endless():
        for _ in range(5 * 64):
            yield b" " * 16_384

    async with stack.http.post(f"{stack.url}/webhooks/meta", data=endless(),
                               headers={"X-Hub-Signature-256": "sha256=00"}) as resp:
        assert resp.status == 413
