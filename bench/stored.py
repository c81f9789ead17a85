"""Benchmarks of what the archive keeps: re-hashing it (`verify --full`), disposing of it, and
decrypting WhatsApp's encrypted media on the way in. Each takes the running Bench."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from bench.measure import rss_kib
from wa_archive.devstack.embedded import free_port
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, media_message, wamid

if TYPE_CHECKING:
    from bench.__main__ import Bench


# 2d. verify --full ------------------------------------------------------------------------

async def verify_full(b: Bench, total: int = 2 * 1024 ** 3, object_size: int = 32 * 1024 ** 2) -> dict:
    """`verify --full`'s object re-hashing over 2 GiB on the filesystem backend, against
    `sha256sum` reading and hashing the same files in the same run."""
    from wa_archive.integrity.verification import verify_objects
    from wa_archive.storage import FilesystemStore

    store = FilesystemStore(b.root / "verify-objects")
    block = os.urandom(1024 * 1024)
    retain = datetime.now(timezone.utc)
    paths = []
    for i in range(total // object_size):
        mid = f"wamid.VERIFY{i:05d}"

        async def chunks(i=i):
            for j in range(object_size // len(block)):
                yield bytes([i % 256, j % 256]) + block[2:]

        stored = await store.put_stream(f"verify/{i:05d}.bin", chunks(), content_type="application/octet-stream",
                                        metadata={}, expected_sha256=None, retain_until=retain)
        await b.pool.execute(
            "INSERT INTO messages (id, source, direction, type, ts, archive_status, payload)"
            " VALUES ($1, 'meta', 'in', 'document', now(), 'archived', '{}')", mid)
        await b.pool.execute(
            "INSERT INTO media (message_id, position, media_id, kind, status, storage_key, size, sha256)"
            " VALUES ($1, 0, $1, 'document', 'archived', $2, $3, $4)", mid, stored.key, stored.size, stored.sha256)
        paths.append(str(store.root / stored.key))
    started = time.perf_counter()
    subprocess.run(["sha256sum", *paths], check=True, capture_output=True)
    floor = time.perf_counter() - started
    started = time.perf_counter()
    problems = await verify_objects(b.pool, store, sample=None)
    ours = time.perf_counter() - started
    await b._drop_synthetic("wamid.VERIFY%")
    # verify reads every archived media row; those of the benches before this one name objects in their
    # own store, not in this one, and are found missing here at once (no bytes read): only this bench's
    # objects must verify.
    own = [p for p in problems if p.startswith("message wamid.VERIFY")]
    if own:
        raise RuntimeError(f"verify named problems in the bench's own objects: {own[:3]}")
    mb = total / 1e6
    return {"bytes": total, "objects": len(paths), "problems": len(own),
            "other_benches_rows_not_in_this_store": len(problems) - len(own),
            "sha256sum_mb_per_s": round(mb / floor, 1), "verify_mb_per_s": round(mb / ours, 1),
            "ratio": round(floor / ours, 3), "target_ratio": 0.7}

# 2e. disposition ---------------------------------------------------------------------------

async def disposition(b: Bench, n: int = 500, size: int = 64 * 1024) -> dict:
    """Disposition of n past-retention messages (one 64 KiB object each, filesystem store): the
    Disposer (re-check under the row lock, store refusal check, disposition record with hashes,
    ledger leaf, rows) against plain removal of the same files and rows in the same run."""
    from wa_archive.db import create_pool
    from wa_archive.retention.disposition import Disposer
    from wa_archive.storage import FilesystemStore

    store = FilesystemStore(b.root / "dispose-objects")
    past = datetime.now(timezone.utc) - timedelta(days=1)
    block = os.urandom(size)

    async def make(prefix: str) -> list[tuple[str, str]]:
        made = []
        for i in range(n):
            mid = f"wamid.{prefix}{i:05d}"

            async def chunks(i=i):
                yield bytes([i % 256]) + block[1:]
            stored = await store.put_stream(f"dispose/{prefix}/{i:05d}.bin", chunks(), content_type="image/jpeg",
                                            metadata={}, expected_sha256=None, retain_until=past)
            await b.pool.execute(
                "INSERT INTO messages (id, source, direction, type, ts, archive_status, payload, retain_until,"
                " contact_phone, text) VALUES ($1, 'meta', 'in', 'image', $2, 'archived', '{\"n\": 1}', $2,"
                " '447700900999', 'caption')", mid, past)
            await b.pool.execute(
                "INSERT INTO media (message_id, position, media_id, kind, status, storage_key, size, sha256,"
                " retain_until) VALUES ($1, 0, $1, 'image', 'archived', $2, $3, $4, $5)",
                mid, stored.key, stored.size, stored.sha256, past)
            made.append((mid, stored.key))
        return made

    plain = await make("DISPPLAIN")
    started = time.perf_counter()
    for mid, key in plain:
        async with b.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM media WHERE message_id = $1", mid)
            await conn.execute("DELETE FROM messages WHERE id = $1", mid)
        path = store.root / key
        for victim in (path, path.with_name(path.name + ".meta.json")):
            victim.unlink()
    floor = time.perf_counter() - started

    await make("DISPOSE")
    pool = await create_pool(b.db_url, max_size=2)  # the archive's own pool: jsonb as Python objects
    disposer = Disposer(pool, store, None)
    started = time.perf_counter()
    due = await disposer.due(limit=n)
    removed = [await disposer.dispose_message(d["id"]) for d in due]
    ours = time.perf_counter() - started
    await pool.close()
    return {"messages": n, "object_bytes": size, "removed": sum(1 for r in removed if r),
            "plain_msgs_per_s": round(n / floor, 1), "disposition_msgs_per_s": round(n / ours, 1),
            "ratio": round(floor / ours, 3), "target": "(report)"}

# 2f. encrypted media (WASender) --------------------------------------------------------------

async def encrypted_media(b: Bench, size: int = 512 * 1024 ** 2) -> dict:
    """One WhatsApp-encrypted file through /webhooks/wasender (download, MAC and hashes, AES-CBC
    decryption while streaming, store), against the same plaintext size through the Graph path in
    the same run with the same worker; and the worker's RSS growth while decrypting."""
    import base64
    import hashlib
    import hmac as hmac_mod

    from aiohttp import web
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from wa_archive.sources.wasender.media import expand_media_key

    media = FakeMedia(f"plain-{uuid.uuid4().hex}", mime_type="application/pdf", size=size, seed=17)
    b.graph.add(media)
    media_key = os.urandom(32)
    iv, cipher_key, mac_key = expand_media_key(media_key, "document")
    enc, mac = Cipher(algorithms.AES(cipher_key), modes.CBC(iv)).encryptor(), hmac_mod.new(mac_key, iv, hashlib.sha256)
    plain_hash, enc_hash = hashlib.sha256(), hashlib.sha256()
    path = b.root / "encrypted.bin"
    with path.open("wb") as fh:
        for block in media.blocks():
            plain_hash.update(block)
            out = enc.update(block)
            mac.update(out)
            enc_hash.update(out)
            fh.write(out)
        out = enc.update(bytes([16]) * 16) + enc.finalize()  # size is a multiple of 16: a whole pad block
        tag = mac.update(out) or mac.digest()[:10]
        enc_hash.update(out + tag)
        fh.write(out + tag)

    async def serve_file(_: web.Request) -> web.FileResponse:
        return web.FileResponse(path)
    app = web.Application()
    app.router.add_get("/blob", serve_file)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    tq = f"bench-enc-{uuid.uuid4().hex[:6]}"
    extra = {"WA_ARCHIVE_WASENDER_WEBHOOK_SECRET": "bench-wasender", "WA_ARCHIVE_MEDIA_FETCH_ALLOWLIST": "127.0.0.1"}
    url = await b.serve(tq, "serve-enc", **extra)
    proc = b.worker(tq, **extra)
    await asyncio.sleep(3)
    try:
        mid = wamid()
        body = dumps(envelope([media_message("document", media.media_id, media.sha256_b64(), "application/pdf",
                                             mid=mid)]))
        started = time.perf_counter()
        await b.post(url, body)
        await b.wait_archived([mid], timeout=900)
        plain_s = time.perf_counter() - started

        baseline_rss = rss_kib(proc.pid)
        kid = "3EB0" + uuid.uuid4().hex[:16].upper()
        item = {"key": {"id": kid, "fromMe": False, "remoteJid": "447700900123@s.whatsapp.net",
                        "cleanedSenderPn": "447700900123"},
                "message": {"documentMessage": {
                    "url": f"http://127.0.0.1:{port}/blob", "mimetype": "application/pdf",
                    "fileSha256": base64.b64encode(plain_hash.digest()).decode(),
                    "fileEncSha256": base64.b64encode(enc_hash.digest()).decode(),
                    "fileLength": str(size), "mediaKey": base64.b64encode(media_key).decode()}},
                "messageTimestamp": int(time.time())}
        payload = json.dumps({"event": "messages.upsert", "timestamp": int(time.time()),
                              "data": {"messages": [item]}}).encode()
        started = time.perf_counter()
        async with b.http.post(url + "/webhooks/wasender", data=payload, headers={
                "X-Webhook-Signature": "bench-wasender", "Content-Type": "application/json"}) as resp:
            if resp.status != 200:
                raise RuntimeError(f"wasender webhook answered {resp.status}")
        peak = await b.peak_rss_until_archived(proc, [kid])
        enc_s = time.perf_counter() - started
    finally:
        await runner.cleanup()
        path.unlink(missing_ok=True)
    return {"bytes": size, "plain_graph_s": round(plain_s, 2), "encrypted_wasender_s": round(enc_s, 2),
            "ratio": round(enc_s / plain_s, 3), "target": "(report)",
            "rss_growth_mib": round((peak - baseline_rss) / 1024, 1), "target_rss_growth_mib": 64}
