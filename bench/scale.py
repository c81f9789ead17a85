"""The scale run (`make bench SCALE=N`, issue 16): N synthetic messages with their media rows and ledger
leaves, then the reads an archive of that size must still answer quickly, each with its p50/p95.

Loading: the search benchmark's messages (bench/search.py, COPY in batches), every tenth an image whose
media row points at one of a few hundred real objects in the run's store (so `verify --sample` and
exports read real bytes); each batch's messages, media and ledger leaves commit together. A leaf carries
the message's record digest, computed in PostgreSQL by the definition of the archive's message_digest()
(proven equal by tests/test_scale_load.py), and its leaf hash by the archive's own ledger_leaf_hash(),
numbered after the head with no gap (written directly, as the integrator would, without the candidate
step: the load is the bench's, not a record's transaction). Contacts have MESSAGES_PER_CONTACT messages each
(over two years), whatever N is, so the exported contact is of the same size at every scale.

Measured: the phone + 30-day search and full-text search (HTTP API and the same SQL), a conversation
page (API and SQL), the export of one contact (the bundle as the export activity writes it), `wa-archive
verify --sample 1000` (the command, as an operator runs it) and the reconciliation of one day
(bench/reconciliation.py, a day of N / 10 messages added to the archive); the load's time and rate and the
database's size with its largest tables and indexes.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import asyncpg

from bench import reconciliation as reconciliation_bench
from bench import search as search_bench
from bench.measure import percentile

if TYPE_CHECKING:
    from bench.__main__ import Bench

MESSAGES_PER_CONTACT = 500  # two years of a client's conversation: about five messages a week
MEDIA_EVERY = 10  # one message in ten is an image
OBJECTS = 256  # distinct stored objects the media rows share
OBJECT_SIZE = 16 * 1024
BATCH = 50_000  # messages per COPY transaction
QUERY_RUNS, EXPORT_RUNS, VERIFY_RUNS, RECONCILE_RUNS = 200, 5, 3, 2
# verify reads every record and leaf, so a run takes minutes at ten million: one run from this size on.
VERIFY_ONCE_FROM = 2_000_000
TARGETS_MS = {"phone_30d": 20, "full_text": 200}  # p95 at 10,000,000 messages (issue 16)


async def _objects(b: Bench) -> list[tuple[str, str, int]]:
    """OBJECTS small objects in the run's store: (key, sha256, size) each."""
    from wa_archive.storage import FilesystemStore

    store = FilesystemStore(b.root / "objects")
    retain = datetime.now(timezone.utc) + timedelta(days=3650)
    made = []
    for i in range(OBJECTS):
        async def chunks(i: int = i) -> Any:
            yield os.urandom(OBJECT_SIZE - 2) + bytes([i % 256, i // 256])
        stored = await store.put_stream(f"scale/{i:04d}.jpg", chunks(), content_type="image/jpeg", metadata={},
                                        expected_sha256=None, retain_until=retain)
        made.append((stored.key, stored.sha256, stored.size))
    return made


# A message's record digest as wa_archive.integrity.ledger.message_digest() computes it: the canonical JSON
# (keys sorted, no spaces, strings as json.dumps() writes them with ensure_ascii off, which is what
# to_json() writes too) hashed with SHA-256, so that ten million digests cost no Python and no round trip.
# The payload's own hash is an argument: its canonical JSON is Python's (the bench's payloads are all `{}`).
# tests/test_scale_load.py proves the two equal on awkward rows. Functions of the loading session only.
DIGEST_FUNCTIONS = ("""
CREATE FUNCTION pg_temp.j(value text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(to_json(value)::text, 'null')
$$""", """
CREATE FUNCTION pg_temp.scale_message_digest(m messages, media text, payload_sha256 text) RETURNS text
    LANGUAGE sql STABLE AS $$
    SELECT encode(sha256(convert_to(
        '{"contact":[' || pg_temp.j(m.contact_phone) || ',' || pg_temp.j(m.contact_wa_id) || ','
        || pg_temp.j(m.contact_user_id) || ',' || pg_temp.j(m.contact_username) || ',' || pg_temp.j(m.contact_name)
        || '],"direction":' || pg_temp.j(m.direction) || ',"flags":' || array_to_json(m.flags)::text
        || ',"id":' || pg_temp.j(m.id) || ',"media":[' || coalesce(media, '') || ']'
        || ',"payload_sha256":' || pg_temp.j(payload_sha256) || ',"related":' || pg_temp.j(m.related_message_id)
        || ',"source":' || pg_temp.j(m.source) || ',"status":' || pg_temp.j(m.archive_status)
        || ',"template_sha256":' || pg_temp.j(m.template_sha256) || ',"text":' || pg_temp.j(m.text)
        || ',"ts":' || pg_temp.j(to_char(m.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
                                 || CASE WHEN extract(microseconds FROM m.ts)::bigint % 1000000 <> 0
                                         THEN to_char(m.ts AT TIME ZONE 'UTC', '.US') ELSE '' END || '+00:00')
        || ',"type":' || pg_temp.j(m.type) || '}', 'UTF8')), 'hex')
$$""")


# The media part of the digest, for the messages with ids $1 to $2: each message's media rows as the list
# message_digest() writes, in position order (NULL for a message without media).
MEDIA_LISTS = """
SELECT d.message_id, string_agg('[' || d.position || ',' || pg_temp.j(d.media_id) || ',' || pg_temp.j(d.status)
                                || ',' || pg_temp.j(d.sha256) || ',' || pg_temp.j(d.storage_key) || ','
                                || coalesce(d.size::text, 'null') || ']', ',' ORDER BY d.position) AS media
  FROM media d WHERE d.message_id BETWEEN $1 AND $2 GROUP BY d.message_id
"""


async def create_digest_function(conn: asyncpg.Connection) -> None:
    """pg_temp.scale_message_digest(a messages row, its media list (MEDIA_LISTS), its payload's hash) on
    this connection; inlined by the planner (one SQL expression, no subquery, no SET)."""
    for sql in DIGEST_FUNCTIONS:
        await conn.execute(sql)


# Per batch of messages just copied (ids $1 to $2): the images' media rows, each pointing at one of the
# stored objects (scale_objects), then every message's leaf, numbered after the head in id order and
# hashed by the archive's own ledger_leaf_hash() (what the integrator runs); the head then moves over them.
_MEDIA = """
INSERT INTO media (message_id, position, media_id, kind, status, storage_key, size, sha256, mime_type, stored_at)
SELECT m.id, 0, 'scale-media-' || substr(m.id, 12), 'image', 'archived', o.key, o.size, o.sha256, 'image/jpeg', m.ts
  FROM messages m JOIN pg_temp.scale_objects o ON o.n = substr(m.id, 12)::bigint % $3
 WHERE m.id BETWEEN $1 AND $2 AND m.type = 'image'
"""
# Every message's record digest, for the messages with ids $1 to $2 (payload hash $3).
DIGESTS = """
SELECT m.id, pg_temp.scale_message_digest(m, l.media, $3) AS digest
  FROM messages m LEFT JOIN (""" + MEDIA_LISTS + """) l ON l.message_id = m.id
 WHERE m.id BETWEEN $1 AND $2
"""
_LEAVES = """
WITH head AS (SELECT size FROM ledger_head WHERE id = 1 FOR UPDATE)
INSERT INTO ledger_leaves (seq, kind, record_id, digest, leaf_hash)
SELECT head.size + row_number() OVER (ORDER BY d.id) - 1, 'message', d.id, d.digest,
       ledger_leaf_hash('message', d.id, d.digest)
  FROM head, (""" + DIGESTS + """) d
"""
_HEAD = "UPDATE ledger_head SET size = (SELECT max(seq) + 1 FROM ledger_leaves) WHERE id = 1"
# The indexes the load fills, other than the keys it relies on: built once after it (as a restore does)
# rather than entry by entry during it, each from its own definition.
LOADED_TABLES = ("messages", "media", "ledger_leaves")
_SECONDARY_INDEXES = """
SELECT i.indexname, i.indexdef FROM pg_indexes i
 WHERE i.schemaname = 'public' AND i.tablename = ANY($1::text[])
   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
 ORDER BY i.indexname
"""


async def load(b: Bench, rows: int, *, batch_rows: int = BATCH,
               per_contact: int = MESSAGES_PER_CONTACT) -> tuple[dict, list[str]]:
    """The archive of `rows` messages, `batch_rows` to a COPY transaction, about `per_contact` to a
    contact; its figures and the contacts' phone numbers."""
    from wa_archive.db import ledger_tiles
    from wa_archive.integrity.ledger import canonical, sha256_hex

    objects = await _objects(b)
    contacts = search_bench.phones(max(1, rows // per_contact))
    messages = search_bench.synthetic_messages(rows, random.Random(16), contacts, prefix="SCALE",
                                               media_every=MEDIA_EVERY)
    started = time.perf_counter()
    copied = leaves = 0.0
    n = 0
    async with b.pool.acquire() as conn:
        await create_digest_function(conn)
        await conn.execute("CREATE TEMP TABLE scale_objects (n bigint PRIMARY KEY, key text, sha256 text, size bigint)")
        await conn.executemany("INSERT INTO pg_temp.scale_objects VALUES ($1, $2, $3, $4)",
                               [(i, *o) for i, o in enumerate(objects)])
        indexes = await conn.fetch(_SECONDARY_INDEXES, list(LOADED_TABLES))
        for index in indexes:
            await conn.execute(f'DROP INDEX "{index["indexname"]}"')
        while batch := list(itertools.islice(messages, batch_rows)):
            t = time.perf_counter()
            async with conn.transaction():  # messages, their media and their leaves commit together
                await search_bench.copy_messages(conn, batch)
                copied += time.perf_counter() - t
                t = time.perf_counter()
                await conn.execute(_MEDIA, batch[0][0], batch[-1][0], len(objects))
                await conn.execute(_LEAVES, batch[0][0], batch[-1][0], sha256_hex(canonical({})))
                await conn.execute(_HEAD)
            leaves += time.perf_counter() - t
            n += len(batch)
            if n % (10 * batch_rows) == 0:
                print(f"  loaded {n} messages in {time.perf_counter() - started:.0f} s", flush=True)
        t = time.perf_counter()
        # The tiles of the loaded log, as the integrator writes them after its batches (roots and
        # proofs read them), by the archive's own ledger_write_tiles().
        await ledger_tiles.write_all(conn)
        tiled = time.perf_counter() - t
        t = time.perf_counter()
        await conn.execute("SET maintenance_work_mem = '512MB'")
        for index in indexes:
            await conn.execute(index["indexdef"])
        await conn.execute("RESET maintenance_work_mem")
        indexed = time.perf_counter() - t
        t = time.perf_counter()
        for table in LOADED_TABLES:
            await conn.execute(f"VACUUM ANALYZE {table}")
        analyzed = time.perf_counter() - t
    load_s = time.perf_counter() - started
    return {"messages": rows, "media_rows": rows // MEDIA_EVERY + (1 if rows % MEDIA_EVERY else 0),
            "contacts": len(contacts), "load_s": round(load_s, 1), "load_msgs_per_s": round(rows / load_s),
            "copy_messages_s": round(copied, 1), "media_and_leaves_s": round(leaves, 1), "tiles_s": round(tiled, 1),
            "secondary_indexes": len(indexes), "build_indexes_s": round(indexed, 1),
            "vacuum_analyze_s": round(analyzed, 1)}, contacts


async def sizes(b: Bench) -> dict:
    """The database's size and its largest tables (with their indexes) and indexes."""
    total = await b.pool.fetchval("SELECT pg_database_size(current_database())")
    tables = await b.pool.fetch(
        "SELECT c.relname, pg_total_relation_size(c.oid) AS total, pg_relation_size(c.oid) AS heap"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY total DESC LIMIT 6")
    indexes = await b.pool.fetch(
        "SELECT c.relname, pg_relation_size(c.oid) AS size FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'i'"
        " ORDER BY size DESC LIMIT 8")
    mib = 1024 ** 2
    return {"database_mib": round(total / mib),
            "tables_mib": {r["relname"]: {"total": round(r["total"] / mib), "heap": round(r["heap"] / mib)}
                           for r in tables},
            "indexes_mib": {r["relname"]: round(r["size"] / mib) for r in indexes}}


async def queries(b: Bench, contacts: list[str]) -> dict:
    """Search, full text and a conversation page: the API against the same SQL run directly."""
    from wa_archive.access.tokens import create_token
    from wa_archive.db.queries import LISTED_WITH_MEDIA
    from wa_archive.discovery.search import build_query, parse_filters

    rng = random.Random(61)
    token = await create_token(b.pool, f"bench-scale-{uuid.uuid4().hex[:6]}", "auditor")
    url = await b.serve(f"bench-scale-{uuid.uuid4().hex[:6]}", "serve-scale")
    out: dict = {}
    for kind in ("phone_30d", "full_text"):
        figures = await search_bench.compare(
            b, url, token, search_bench.messages_api, search_bench.query_cases(kind, rng, contacts, QUERY_RUNS),
            search_bench.search_sql)
        out[kind] = {**figures, "target_p95_ms": TARGETS_MS[kind]}

    def page(p: dict[str, str]) -> tuple[str, dict[str, str]]:
        return f"/api/v1/conversations/{p['phone']}", {"since": p["since"], "limit": "50"}

    async def page_sql(conn: asyncpg.Connection, p: dict[str, str]) -> None:
        sql, args = build_query(parse_filters({"phone": p["phone"], "since": p["since"], "limit": "50"}),
                                ascending=True, columns=LISTED_WITH_MEDIA)
        await conn.fetch(sql, *args)

    pages = [{"phone": c["phone"], "since": c["since"]}
             for c in search_bench.query_cases("phone_30d", rng, contacts, QUERY_RUNS)]
    out["conversation_page"] = {**await search_bench.compare(b, url, token, page, pages, page_sql), "limit": 50}
    return out


async def exports(b: Bench, contacts: list[str]) -> dict:
    """The bundle of one contact's whole history (messages, media, receipts, signed manifest), as the
    export activity writes it, for EXPORT_RUNS different contacts."""
    from wa_archive.db import create_pool
    from wa_archive.discovery.export import ExportQuery, write_bundle
    from wa_archive.storage import FilesystemStore

    signer = _signer(b)
    store = FilesystemStore(b.root / "objects")
    pool = await create_pool(b.db_url, max_size=2)  # the archive's own pool: jsonb as Python objects
    walls, counts = [], []
    try:
        for phone in random.Random(7).sample(contacts, min(EXPORT_RUNS, len(contacts))):
            out = b.root / "scale-export.zip"
            started = time.perf_counter()
            written = await write_bundle(pool, store, ExportQuery(phone=phone), out, exported_by="bench", signer=signer)
            walls.append(time.perf_counter() - started)
            counts.append((written.messages, written.media, written.bytes))
            out.unlink()
    finally:
        await pool.close()
    return {"runs": len(walls), "p50_s": round(percentile(walls, 50), 2), "p95_s": round(percentile(walls, 95), 2),
            "messages_per_export": sorted({c[0] for c in counts}), "media_per_export": sorted({c[1] for c in counts}),
            "bundle_mib_max": round(max(c[2] for c in counts) / 1024 ** 2, 1)}


def _signer(b: Bench) -> Any:
    from wa_archive.integrity.ledger import Signer

    return Signer(base64.b64decode(b.env()["WA_ARCHIVE_LEDGER_SIGNING_KEY"]))


async def checkpoint(b: Bench) -> dict:
    """The first signed checkpoint over the loaded log, as the checkpoint Schedule writes it."""
    from wa_archive.db import create_pool
    from wa_archive.integrity import ledger
    from wa_archive.storage import FilesystemStore

    pool = await create_pool(b.db_url, max_size=2)
    try:
        started = time.perf_counter()
        signed = await ledger.write_checkpoint(pool, FilesystemStore(b.root / "objects"), _signer(b))
        wall = time.perf_counter() - started
    finally:
        await pool.close()
    if signed is None:
        raise RuntimeError("no checkpoint was written over the loaded log")
    return {"tree_size": signed["tree_size"], "s": round(wall, 2)}


def verify(b: Bench, rows: int) -> dict:
    """`wa-archive verify --sample 1000 --json`, as an operator runs it (the application role); the
    run fails when it names a problem, since every loaded record has its leaf. It reads the archive a
    page at a time (verification.CHUNK rows), so it runs at any scale; its peak RSS is reported."""
    walls, peaks = [], []
    for _ in range(1 if rows >= VERIFY_ONCE_FROM else VERIFY_RUNS):
        started = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "wa_archive.cli", "verify",
                               "--sample", "1000", "--json"], env=b.env(), capture_output=True, text=True)
        walls.append(time.perf_counter() - started)
        peaks.append(int(done.stderr.strip().splitlines()[-1]))  # KiB, /usr/bin/time's last line
        report = json.loads(done.stdout)
        if done.returncode != 0 or not report["ok"] or report["objects_rehashed"] != 1000:
            raise RuntimeError(f"verify --sample 1000 failed ({done.returncode}): {report['problems'][:5]}")
    return {"runs": len(walls), "p50_s": round(percentile(walls, 50), 2), "p95_s": round(percentile(walls, 95), 2),
            "peak_rss_mib": round(max(peaks) / 1024)}


async def scale(b: Bench, rows: int) -> dict:
    results: dict = {"scale": rows}
    print(f"loading {rows} messages ...", flush=True)
    results["load"], contacts = await load(b, rows)
    print(json.dumps(results["load"]), flush=True)
    results["checkpoint"] = await checkpoint(b)
    results["sizes"] = await sizes(b)
    for name, step in (("queries", lambda: queries(b, contacts)), ("export_one_contact", lambda: exports(b, contacts))):
        print(f"running {name} ...", flush=True)
        results[name] = await step()
        print(json.dumps(results[name]), flush=True)
    print("running verify --sample 1000 ...", flush=True)
    results["verify_sample_1000"] = verify(b, rows)  # before the reconciliation day, whose rows are not records
    print(json.dumps(results["verify_sample_1000"]), flush=True)
    print("running reconciliation ...", flush=True)
    results["reconciliation"] = await reconciliation_bench.reconcile(b, rows=max(10_000, rows // 10),
                                                                     runs=RECONCILE_RUNS)
    print(json.dumps(results["reconciliation"]), flush=True)
    return results
