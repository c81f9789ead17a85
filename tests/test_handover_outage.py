"""The durable hand-over with Temporal unreachable: never a 200 for work Temporal does not hold.

Each test runs the webhook server on a Temporal dev server of its own (tests/conftest.py:
webhook_on_own_temporal), stops it, and checks the answer; then starts it again and checks that what
was refused is archived once it is offered again.
"""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import make_settings, wait_for_archived, webhook_on_own_temporal
from wa_archive.access.tokens import create_token
from wa_archive.db import queries
from wa_archive.sources.meta.samples import dumps, envelope, message, wamid
from wa_archive.storage import FilesystemStore
from worker import build_worker, link_fetcher

PNID = "109327745812336"


def _text_send(text: str) -> dict:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "+447700900123",
            "type": "text", "text": {"body": text}}


@pytest.mark.slow
async def test_large_delivery_during_outage_answers_503_then_the_redelivery_is_archived(
        clean_db, fake_graph, tmp_path):
    """Above WA_ARCHIVE_INLINE_FANOUT_MAX the webhook starts one IngestDelivery: 200 only once it started."""
    mids = [wamid() for _ in range(3)]
    body = dumps(envelope([message("text", {"body": f"large batch {n}"}, mid=mid) for n, mid in enumerate(mids)]))
    settings = make_settings(meta_graph_url=fake_graph.graph_url, inline_fanout_max=1)
    store = FilesystemStore(tmp_path / "objects")
    async with webhook_on_own_temporal(clean_db, settings, store, tmp_path) as own:
        own.server.stop()
        status, answer = await own.post_meta(body)
        assert status == 503, answer
        # The bytes are kept (the re-drive's to hand over), but nothing says Temporal has them.
        assert await clean_db.fetchval("SELECT count(*) FROM deliveries") == 1
        assert await clean_db.fetchval("SELECT count(*) FROM delivery_handoffs") == 0
        await own.server.start()
        status, answer = await own.post_meta(body)
        assert status == 200, answer
        assert await clean_db.fetchval("SELECT how FROM delivery_handoffs") == "webhook"
        async with aiohttp.ClientSession() as http, \
                build_worker(own.client, settings, clean_db, store, http, link_fetcher(settings)):
            archived = [await wait_for_archived(clean_db, mid) for mid in mids]
    assert [m["text"] for m in archived] == ["large batch 0", "large batch 1", "large batch 2"]
    assert all(len(m["deliveries"]) == 1 for m in archived)


@pytest.mark.slow
async def test_record_api_during_outage_answers_503_then_the_retry_is_archived(clean_db, fake_graph, tmp_path):
    """POST /api/v1/outbound: 200 only once the message's OutboundMessage workflow holds the send."""
    settings = make_settings(meta_graph_url=fake_graph.graph_url, outbound_sent_wait=0.5)
    store = FilesystemStore(tmp_path / "objects")
    token = await create_token(clean_db, "sender-outage", "sender")
    mid = wamid()
    payload = {"phone_number_id": PNID, "request": _text_send("recorded during an outage"),
               "response": {"messaging_product": "whatsapp", "contacts": [{"input": "+447700900123",
                                                                           "wa_id": "447700900123"}],
                            "messages": [{"id": mid}]}}
    headers = {"Authorization": f"Bearer {token}"}
    async with webhook_on_own_temporal(clean_db, settings, store, tmp_path) as own:
        own.server.stop()
        async with own.http.post(f"{own.url}/api/v1/outbound", json=payload, headers=headers) as resp:
            assert resp.status == 503, await resp.text()
            assert "retry" in (await resp.json())["error"]
        await own.server.start()
        async with own.http.post(f"{own.url}/api/v1/outbound", json=payload, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            assert await resp.json() == {"status": "accepted", "message_id": mid}
        async with aiohttp.ClientSession() as http, \
                build_worker(own.client, settings, clean_db, store, http, link_fetcher(settings)):
            msg = await wait_for_archived(clean_db, mid)
    assert msg["direction"] == "out" and msg["text"] == "recorded during an outage"
    # The retry did not make a second send record: the first one stored is the one archived.
    assert await clean_db.fetchval("SELECT count(*) FROM outbound_sends WHERE message_id = $1", mid) == 1


@pytest.mark.slow
async def test_send_proxy_during_outage_answers_503_with_the_wamid_and_it_is_recorded_later(
        clean_db, fake_graph, tmp_path):
    """The proxy has already sent to Meta when Temporal is found down: 503 with the wamid and Meta's
    answer and "do not resend", never 200; the send then posted to the record API is archived."""
    settings = make_settings(meta_graph_url=fake_graph.graph_url, outbound_sent_wait=0.5)
    store = FilesystemStore(tmp_path / "objects")
    token = await create_token(clean_db, "sender-proxy-outage", "sender")
    headers = {"Authorization": f"Bearer {token}"}
    send = _text_send("proxied during an outage")
    async with webhook_on_own_temporal(clean_db, settings, store, tmp_path) as own:
        own.server.stop()
        async with own.http.post(f"{own.url}/graph/{PNID}/messages", json=send, headers=headers) as resp:
            answer = await resp.json()
            assert resp.status == 503, answer
        mid = answer["message_id"]
        assert answer["meta_response"]["messages"] == [{"id": mid}]
        assert "do not resend" in answer["error"] and "/api/v1/outbound" in answer["error"]
        # Meta's acceptance is kept in PostgreSQL already: the exchange is not lost with the 503.
        stored = await clean_db.fetchrow("SELECT via, accepted FROM outbound_sends WHERE message_id = $1", mid)
        assert (stored["via"], stored["accepted"]) == ("proxy", True)
        assert await queries.get_message(clean_db, mid) is None
        await own.server.start()
        record = {"phone_number_id": PNID, "request": send, "response": answer["meta_response"]}
        async with own.http.post(f"{own.url}/api/v1/outbound", json=record, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
        async with aiohttp.ClientSession() as http, \
                build_worker(own.client, settings, clean_db, store, http, link_fetcher(settings)):
            msg = await wait_for_archived(clean_db, mid)
    assert msg["direction"] == "out" and msg["text"] == "proxied during an outage"
    assert await clean_db.fetchval("SELECT count(*) FROM outbound_sends WHERE message_id = $1", mid) == 1
