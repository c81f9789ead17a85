"""WASenderApi as a second source: its webhook, its WhatsApp-Web message objects, and WhatsApp's
encrypted media decrypted while streaming, against files the tests encrypt themselves and serve
from a local media host, on both storage backends."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import uuid

import pytest
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.conftest import free_port
from wa_archive.errors import MediaHashMismatch
from wa_archive.sources.wasender.media import decrypt_stream, expand_media_key

SECRET = "wasender-test-secret"
INFO = {"image": b"WhatsApp Image Keys", "video": b"WhatsApp Video Keys", "document": b"WhatsApp Document Keys"}


# An independent implementation of WhatsApp's media encryption (RFC 5869 HKDF by hand) -------------


def hkdf_by_hand(key: bytes, info: bytes, length: int = 112) -> bytes:
    prk = hmac.new(b"\0" * 32, key, hashlib.sha256).digest()  # empty salt = 32 zero bytes
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def encrypt(plain: bytes, kind: str = "image") -> tuple[bytes, bytes]:
    """(media key, blob) exactly as WhatsApp does: AES-256-CBC(PKCS#7) || HMAC-SHA256[:10]."""
    media_key = os.urandom(32)
    expanded = hkdf_by_hand(media_key, INFO[kind])
    iv, cipher_key, mac_key = expanded[:16], expanded[16:48], expanded[48:80]
    pad = 16 - len(plain) % 16
    enc = Cipher(algorithms.AES(cipher_key), modes.CBC(iv)).encryptor()
    ciphertext = enc.update(plain + bytes([pad]) * pad) + enc.finalize()
    return media_key, ciphertext + hmac.new(mac_key, iv + ciphertext, hashlib.sha256).digest()[:10]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def media_message(mid: str, url: str, plain: bytes, media_key: bytes, blob: bytes, *, kind: str = "image",
                  from_me: bool = False, **overrides) -> dict:
    field = f"{kind}Message"
    media = {"url": url, "mimetype": {"image": "image/jpeg", "video": "video/mp4", "document": "application/pdf"}[kind],
             "fileSha256": b64(hashlib.sha256(plain).digest()), "fileEncSha256": b64(hashlib.sha256(blob).digest()),
             "fileLength": str(len(plain)), "mediaKey": b64(media_key), "mediaKeyTimestamp": "1792496118"}
    media.update(overrides)
    media = {k: v for k, v in media.items() if v is not None}
    key = {"id": mid, "fromMe": from_me, "remoteJid": "447700900123@s.whatsapp.net", "addressingMode": "pn"}
    if not from_me:
        key.update(senderPn="447700900123@s.whatsapp.net", cleanedSenderPn="447700900123",
                   senderLid="188392014426112@lid")
    return {"key": key, "messageBody": "statement", "message": {field: media}, "messageTimestamp": 1792496119}


def key_id() -> str:
    return "3EB0" + uuid.uuid4().hex[:16].upper()


class MediaHost:
    """A local stand-in for WhatsApp's media CDN (and WASender's decrypt-media endpoint)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.decrypted: dict[str, bytes] = {}
        self.url = ""

    def put(self, data: bytes) -> str:
        name = uuid.uuid4().hex
        self.files[name] = data
        return f"{self.url}/o1/v/t62/{name}?oe=6A3F2C11"

    async def start(self) -> web.AppRunner:
        async def blob(request: web.Request) -> web.StreamResponse:
            data = self.files.get(request.match_info["name"])
            if data is None:
                return web.Response(status=404)
            resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            await resp.prepare(request)
            for i in range(0, len(data), 256 * 1024):  # arrives in pieces, as over a network
                await resp.write(data[i:i + 256 * 1024])
            return resp

        async def decrypt(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != "Bearer wasender-api-key":
                return web.json_response({"message": "Unauthenticated."}, status=401)
            mid = (await request.json())["data"]["messages"]["key"]["id"]
            name = uuid.uuid4().hex
            self.files[name] = self.decrypted[mid]
            return web.json_response({"publicUrl": f"{self.url}/o1/v/t62/{name}"})

        app = web.Application()
        app.router.add_get("/o1/v/t62/{name}", blob)
        app.router.add_post("/api/decrypt-media", decrypt)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return runner


@pytest_asyncio.fixture
async def host():
    h = MediaHost()
    runner = await h.start()
    yield h
    await runner.cleanup()


async def post(stack, payload: dict | bytes, *, secret: str | None = SECRET) -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Webhook-Signature"] = secret
    async with stack.http.post(f"{stack.url}/webhooks/wasender", data=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


def upsert(*messages: dict) -> dict:
    return {"event": "messages.upsert", "timestamp": 1792496120, "data": {"messages": list(messages)}}


# Units: key derivation and streaming decryption ---------------------------------------------------


async def _chunks(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def test_hkdf_and_decryption_match_an_independent_computation():
    fixed = bytes(range(32))
    iv, cipher_key, mac_key = expand_media_key(fixed, "image")
    assert iv + cipher_key + mac_key == hkdf_by_hand(fixed, b"WhatsApp Image Keys")[:80]
    assert expand_media_key(fixed, "ptt") == expand_media_key(fixed, "audio") != expand_media_key(fixed, "image")
    for size in (0, 1, 15, 16, 17, 1000, 3 * 1024 * 1024 + 5):
        plain = os.urandom(size)
        media_key, blob = encrypt(plain, "document")
        for chunk in (7, 4096, 1024 * 1024):
            out = b"".join([c async for c in decrypt_stream(
                _chunks(blob, chunk), media_key=media_key, kind="document",
                file_enc_sha256=hashlib.sha256(blob).digest(), file_length=size)])
            assert out == plain
    media_key, blob = encrypt(b"x" * 100)
    for bad, why in ((blob[:-1] + bytes([blob[-1] ^ 1]), "MAC"), (blob[:40], "MAC"),
                     (bytes([blob[0] ^ 1]) + blob[1:], "MAC")):
        with pytest.raises(MediaHashMismatch, match=why):
            async for _ in decrypt_stream(_chunks(bad, 32), media_key=media_key, kind="image",
                                          file_enc_sha256=None, file_length=100):
                pass


# End to end ------------------------------------------------------------------------------------


async def test_encrypted_media_round_trip(stack_factory, storage_backend, host):
    stack = await stack_factory(storage_backend, wasender_webhook_secret=SECRET)
    sizes = {"small": 1, "page": 1000, "multi-MiB": 6 * 1024 * 1024 + 3}
    items, plains = [], {}
    for name, size in sizes.items():
        plain = os.urandom(size)
        media_key, blob = encrypt(plain, "document")
        mid = key_id()
        items.append(media_message(mid, host.put(blob), plain, media_key, blob, kind="document",
                                   fileName=f"{name}.pdf"))
        plains[mid] = plain
    status, answer = await post(stack, upsert(*items))
    assert status == 200 and answer["updates"] == 3, answer
    for mid, plain in plains.items():
        msg = await stack.wait_for_message(mid)
        media = msg["media"][0]
        assert msg["source"] == "wasender" and msg["direction"] == "in" and msg["type"] == "document"
        assert msg["contact"]["phone"] == "447700900123" and msg["contact"]["user_id"] == "188392014426112@lid"
        assert media["status"] == "archived" and media["size"] == len(plain)
        assert media["sha256"] == hashlib.sha256(plain).hexdigest()
        assert await stack.read_object(media["storage_key"]) == plain
    delivery = await stack.pool.fetchrow("SELECT source, body, signature FROM deliveries WHERE sha256 = $1",
                                         answer["delivery"])
    assert delivery["source"] == "wasender" and json.loads(delivery["body"]) == upsert(*items)
    assert delivery["signature"] is None  # the header is the shared secret itself: never stored


async def test_integrity_failures_store_nothing_and_fail_after_five_attempts(stack_factory, storage_backend, host):
    stack = await stack_factory(storage_backend, wasender_webhook_secret=SECRET)
    cases = {}
    plain = os.urandom(6 * 1024 * 1024 + 7)  # multipart on S3: parts uploaded, then aborted
    media_key, blob = encrypt(plain)
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x01
    flipped = bytes(flipped)
    cases["MAC mismatch"] = media_message(key_id(), host.put(flipped), plain, media_key, flipped)  # enc hash of it
    small = os.urandom(5000)
    k2, b2 = encrypt(small)
    cases["SHA-256 mismatch"] = media_message(key_id(), host.put(b2), small, k2, b2,
                                              fileSha256=b64(hashlib.sha256(b"other").digest()))
    cases["fileEncSha256 mismatch"] = media_message(key_id(), host.put(b2), small, k2, b2,
                                                    fileEncSha256=b64(hashlib.sha256(b"other").digest()))
    cases["truncated"] = media_message(key_id(), host.put(b2[:-25]), small, k2, b2[:-25])
    status, _ = await post(stack, upsert(*cases.values()))
    assert status == 200
    for why, item in cases.items():
        failure = await stack.wait_for_failure(item["key"]["id"])
        assert len(failure["attempts"]) == 5 and failure["stage"] == "archive_media"
        errors = {a["error"] for a in failure["attempts"]}
        expected = "MAC mismatch" if why == "truncated" else why
        assert all(expected in e for e in errors), (why, errors)
        msg = await stack.wait_for_message(item["key"]["id"])
        assert msg["media"][0]["status"] == "failed" and msg["archive_status"] == "failed"
    assert [k for k in await stack.stored_objects() if not k.startswith("_canary/")] == []


async def test_events_statuses_groups_and_outbound(stack_factory, host):
    stack = await stack_factory(wasender_webhook_secret=SECRET)
    text_in = {"key": {"id": key_id(), "fromMe": False, "remoteJid": "188392014426112@lid", "addressingMode": "lid",
                       "senderLid": "188392014426112@lid", "senderPn": "447700900123@s.whatsapp.net",
                       "cleanedSenderPn": "447700900123"},
               "messageBody": "Can you send me the statement again?", "pushName": "Priya",
               "message": {"conversation": "Can you send me the statement again?"}, "messageTimestamp": 1792496014}
    status, answer = await post(stack, {"event": "messages.received", "timestamp": 1792496015,
                                        "data": {"messages": text_in}})
    assert status == 200 and answer["updates"] == 1
    msg = await stack.wait_for_message(text_in["key"]["id"])
    assert (msg["direction"], msg["type"], msg["text"]) == ("in", "text", "Can you send me the statement again?")
    assert msg["contact"]["phone"] == "447700900123" and msg["contact"]["name"] == "Priya"

    lid_only = {"key": {"id": key_id(), "fromMe": False, "remoteJid": "99887766554433@lid"},
                "message": {"conversation": "hi"}, "messageTimestamp": 1792496020}
    plain = os.urandom(2000)
    media_key, blob = encrypt(plain)
    out = media_message(key_id(), host.put(blob), plain, media_key, blob, from_me=True)
    group = {"key": {"id": key_id(), "fromMe": False, "remoteJid": "120363025246125486@g.us",
                     "participant": "188392014426112@lid", "cleanedParticipantPn": "447700900555"},
             "message": {"extendedTextMessage": {"text": "Meeting at 3"}}, "messageTimestamp": 1792496030}
    revoke = {"key": {"id": key_id(), "fromMe": False, "remoteJid": "447700900123@s.whatsapp.net",
                      "cleanedSenderPn": "447700900123"},
              "message": {"protocolMessage": {"type": "REVOKE", "key": {"id": text_in["key"]["id"]}}},
              "messageTimestamp": 1792496040}
    assert (await post(stack, upsert(lid_only, out, group, revoke)))[0] == 200
    m = await stack.wait_for_message(lid_only["key"]["id"])
    assert m["contact"]["phone"] is None and m["contact"]["user_id"] == "99887766554433@lid"  # never from a LID
    m = await stack.wait_for_message(out["key"]["id"])
    assert m["direction"] == "out" and m["contact"]["phone"] == "447700900123"
    assert await stack.read_object(m["media"][0]["storage_key"]) == plain
    m = await stack.wait_for_message(group["key"]["id"])
    assert m["contact"]["phone"] == "447700900555" and m["contact"]["wa_id"] == "120363025246125486@g.us"
    assert "group" in m["flags"] and m["text"] == "Meeting at 3"
    m = await stack.wait_for_message(revoke["key"]["id"])
    assert m["type"] == "revoked" and m["related_message_id"] == text_in["key"]["id"]

    update = {"event": "messages.update", "sessionId": "<redacted>", "timestamp": 1792496188442,
              "data": {"key": {"remoteJid": "447700900123@s.whatsapp.net", "id": out["key"]["id"], "fromMe": True},
                       "update": {"status": 4}}}
    receipt = {"event": "message-receipt.update", "timestamp": 1792496190,
               "data": {"key": {"id": group["key"]["id"], "remoteJid": "120363025246125486@g.us"},
                        "receipt": {"userJid": "447700900777@s.whatsapp.net", "readTimestamp": 1792496189}}}
    deleted = {"event": "messages.delete", "timestamp": 1792496200,
               "data": {"key": {"id": group["key"]["id"], "remoteJid": "120363025246125486@g.us"}}}
    unknown = {"event": "brand.new.event", "timestamp": 1792496201, "data": {"anything": [1, 2]}}
    for body in (update, receipt, deleted):
        assert (await post(stack, body))[0] == 200
    status, answer = await post(stack, unknown)
    assert status == 200 and answer["flagged"] == 1
    statuses = await stack.pool.fetch("SELECT message_id, status, ts, recipient_id FROM status_events ORDER BY id")
    assert [(s["message_id"], s["status"]) for s in statuses] == [
        (out["key"]["id"], "read"), (group["key"]["id"], "receipt_read")]
    assert statuses[0]["ts"].timestamp() == 1792496188  # milliseconds normalised
    assert statuses[1]["recipient_id"] == "447700900777"
    events = await stack.pool.fetch("SELECT field, kind FROM webhook_events ORDER BY recorded_at")
    assert [(e["field"], e["kind"]) for e in events] == [("messages.delete", "messages_delete"),
                                                         ("brand.new.event", "unknown_event")]


async def test_bad_requests_are_refused_and_nothing_is_stored(stack_factory):
    stack = await stack_factory(wasender_webhook_secret=SECRET, max_body_bytes=2048)
    before = await stack.pool.fetchval("SELECT count(*) FROM deliveries")
    body = upsert({"key": {"id": key_id(), "fromMe": False, "remoteJid": "447700900123@s.whatsapp.net"},
                   "message": {"conversation": "x"}})
    assert (await post(stack, body, secret=None))[0] == 401
    status, answer = await post(stack, body, secret=SECRET + "x")
    assert status == 401 and "X-Webhook-Signature" in answer["error"]
    assert (await post(stack, b"{not json"))[0] == 400
    status, answer = await post(stack, {"data": {}})
    assert status == 400 and "event" in answer["error"]
    assert (await post(stack, b"x" * 4096))[0] == 413
    assert await stack.pool.fetchval("SELECT count(*) FROM deliveries") == before
    disabled = await stack_factory()  # no WA_ARCHIVE_WASENDER_WEBHOOK_SECRET: the source is off
    status, answer = await post(disabled, body)
    assert status == 401 and "WA_ARCHIVE_WASENDER_WEBHOOK_SECRET" in answer["error"]


async def test_wasender_decrypt_media_endpoint_with_the_same_checks(stack_factory, host):
    stack = await stack_factory(wasender_webhook_secret=SECRET, wasender_decrypt_via_api=True,
                                wasender_api_key="wasender-api-key", wasender_api_url=host.url)
    good, bad = os.urandom(3000), os.urandom(3000)
    k1, b1 = encrypt(good)
    k2, b2 = encrypt(bad)
    ok = media_message(key_id(), "https://mmg.whatsapp.net/never-fetched", good, k1, b1)
    forged = media_message(key_id(), "https://mmg.whatsapp.net/never-fetched", bad, k2, b2)
    host.decrypted[ok["key"]["id"]] = good
    host.decrypted[forged["key"]["id"]] = bad[:-1] + bytes([bad[-1] ^ 1])  # the service hands back other bytes
    assert (await post(stack, upsert(ok, forged)))[0] == 200
    msg = await stack.wait_for_message(ok["key"]["id"])
    assert await stack.read_object(msg["media"][0]["storage_key"]) == good
    failure = await stack.wait_for_failure(forged["key"]["id"])
    assert all("SHA-256 mismatch" in a["error"] for a in failure["attempts"])


async def test_temporal_down_answers_503_and_the_redelivery_is_archived(stack_factory, clean_db, host):
    """The durability rule of the Meta webhook holds here too: no 200 unless Temporal has it."""
    import tempfile
    from pathlib import Path

    from temporalio.client import Client

    from tests.conftest import DATA_CONVERTER, make_settings
    from wa_archive.storage import FilesystemStore
    from webhook.app import WebhookDeps, create_app

    dead = await Client.connect(f"127.0.0.1:{free_port()}", data_converter=DATA_CONVERTER, lazy=True)
    app = create_app(WebhookDeps(settings=make_settings(wasender_webhook_secret=SECRET), client=dead,
                                 pool=clean_db, store=FilesystemStore(Path(tempfile.mkdtemp()))))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    item = {"key": {"id": key_id(), "fromMe": False, "remoteJid": "447700900123@s.whatsapp.net",
                    "cleanedSenderPn": "447700900123"}, "message": {"conversation": "kept"}}
    body = json.dumps(upsert(item)).encode()
    stack = await stack_factory(wasender_webhook_secret=SECRET)
    try:
        async with stack.http.post(f"http://127.0.0.1:{port}/webhooks/wasender", data=body, headers={
                "X-Webhook-Signature": SECRET, "Content-Type": "application/json"}) as resp:
            assert resp.status == 503 and "retry" in (await resp.json())["error"]
    finally:
        await runner.cleanup()
    assert (await post(stack, body))[0] == 200  # the sender's retry, to a webhook whose Temporal is up
    assert (await stack.wait_for_message(item["key"]["id"]))["text"] == "kept"


async def test_a_sticker_whose_declared_hash_differs_is_kept_with_both_hashes(stack_factory, host):
    stack = await stack_factory(wasender_webhook_secret=SECRET)
    plain = os.urandom(4000)
    media_key, blob = encrypt(plain)  # stickers use the image keys
    item = media_message(key_id(), host.put(blob), plain, media_key, blob,
                         fileSha256=b64(hashlib.sha256(b"re-encoded").digest()))
    item["message"] = {"stickerMessage": dict(item["message"]["imageMessage"], mimetype="image/webp")}
    assert (await post(stack, upsert(item)))[0] == 200
    msg = await stack.wait_for_message(item["key"]["id"])
    media = msg["media"][0]
    assert msg["type"] == "sticker" and media["status"] == "archived"
    assert media["sha256"] == hashlib.sha256(plain).hexdigest() != base64.b64decode(media["provider_sha256"]).hex()
    assert await stack.read_object(media["storage_key"]) == plain
