"""`make bench`: eleven measurements, each against a baseline taken in the same run (the README's
Benchmarks section describes each): outbound and one 1 GiB file here; ingest and end to end, each
also with plaintext Temporal payloads for the codec's cost, in bench/throughput.py; the payload codec
alone in bench/codec.py; search in bench/search.py; the daily reconciliation of 1,000,000 messages in
bench/reconciliation.py; the consent report and send-time judgement in bench/consent.py; `verify --full`, disposition and encrypted media
in bench/stored.py. `python -m bench NAME …` runs some of them and only prints.
`python -m bench scale N` (`make bench SCALE=N`) is the scale run of bench/scale.py instead, written to
bench/results/scale-<time>.json (and scale-latest.json).

Results go to bench/results/<time>.json (and latest.json) and a table on stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import asyncpg
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from bench import codec, report, stored, throughput
from bench import consent as consent_bench
from bench import ledger as ledger_bench
from bench import reconciliation as reconciliation_bench
from bench import scale as scale_bench
from bench import search as search_bench
from bench.measure import rss_kib
from wa_archive.db import migrate
from wa_archive.devstack.embedded import (
    APP_ROLE,
    DATABASE,
    EmbeddedPostgres,
    TemporalDevServer,
    ensure_database,
    ensure_roles,
    free_port,
)
from wa_archive.sources.meta.fake_graph import FakeGraph, FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, media_message, wamid
from wa_archive.sources.signature import meta_signature
from wa_archive.temporal.codec import encrypted_data_converter, generate_key_line, parse_payload_keys

SECRET, TOKEN = "bench-secret", "bench-token"
RESULTS = Path(__file__).parent / "results"
ALL = ("ingest", "end_to_end", "payload_codec", "outbound", "search", "verify_full", "disposition",
       "encrypted_media", "large_file", "reconciliation", "consent", "ledger")
# How the bench starts each process: the archive's own entry points (the codec on, as deployed), or
# through bench/plaintext.py for the plaintext baseline.
ENTRY = {"serve": ["wa_archive.cli", "serve"], "worker": ["wa_archive.cli", "worker"], "floor": ["bench.floor"]}


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.payload_keys = generate_key_line()  # every process of the run encrypts Temporal payloads, as deployed

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
        env.update({
            "WA_ARCHIVE_TEMPORAL_ADDRESS": self.temporal.address, "WA_ARCHIVE_DATABASE_URL": self.db_url,
            "WA_ARCHIVE_META_APP_SECRET": SECRET, "WA_ARCHIVE_META_VERIFY_TOKEN": "v",
            "WA_ARCHIVE_META_ACCESS_TOKEN": TOKEN, "WA_ARCHIVE_META_GRAPH_URL": self.graph.graph_url,
            "WA_ARCHIVE_CONTACT_KEY_SECRET": "bench", "WA_ARCHIVE_LOG_LEVEL": "WARNING",
            "WA_ARCHIVE_LEDGER_SIGNING_KEY": "YmVuY2gtbGVkZ2VyLWtleS0tLS0tLS0tLS0tLS0tLS0=",
            "WA_ARCHIVE_STORAGE_URL": (self.root / "objects").as_uri(),
            "WA_ARCHIVE_PAYLOAD_KEYS": self.payload_keys,
        })
        env.update(extra)
        return env

    def spawn(self, args: list[str], env: dict[str, str], name: str) -> subprocess.Popen:
        proc = subprocess.Popen(args, env=env, stdout=(self.root / f"{name}.log").open("ab"),
                                stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    async def start(self) -> None:
        self.temporal = TemporalDevServer(self.root / "temporal", port=free_port(), ui_port=None)
        await self.temporal.start()
        self.pg = EmbeddedPostgres(self.root / "pg")
        admin_url = await ensure_database(await asyncio.to_thread(self.pg.start))
        # As in production: migrations as the schema owner, the archive's processes as the application
        # role; the bench's own loading and baselines use the superuser's pool.
        owner_url, self.db_url = await ensure_roles(admin_url, DATABASE, owner_password=secrets.token_urlsafe(16),
                                                    app_password=secrets.token_urlsafe(16))
        await migrate(owner_url, app_role=APP_ROLE)
        self.pool = await asyncpg.create_pool(admin_url, min_size=1, max_size=4)
        self.graph = FakeGraph(TOKEN)
        self.graph_runner = await self.graph.start()
        self.client = await Client.connect(self.temporal.address, data_converter=encrypted_data_converter(
            parse_payload_keys(self.payload_keys, "bench")))
        # Only for the plaintext baseline: its starts and the workers of bench/plaintext.py.
        self.plain_client = await Client.connect(self.temporal.address, data_converter=pydantic_data_converter)
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))

    def end_processes(self, first: int = 0) -> None:
        """Stop the processes spawned from self.procs[first] on: a benchmark's own, once it is done, so
        the servers and workers it started (polling Temporal, timers, metrics) do not load the machine
        under the benchmarks after it."""
        for proc in self.procs[first:]:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        del self.procs[first:]

    async def settle(self, timeout: float = 300.0) -> float:
        """Start from a quiet database; returns the seconds it took. In the full run the benches come one
        after another, several loading a million rows, whose checkpoint and autovacuum otherwise run
        during whichever measurement they happen to fall in, on one side of a comparison or the other."""
        began = time.perf_counter()
        # Autovacuum's launcher looks at a database once a minute, so "no worker running now" does not mean
        # none is about to start on the tables just loaded: vacuum and analyse them now instead.
        await self.pool.execute("VACUUM (ANALYZE)")
        await self.pool.execute("CHECKPOINT")
        while time.perf_counter() - began < timeout and await self.pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"):
            await asyncio.sleep(0.5)
        return round(time.perf_counter() - began, 1)

    async def stop(self) -> None:
        """Stop whatever was started, also after a partial start."""
        self.end_processes()
        for name, close in (("http", "close"), ("graph_runner", "cleanup"), ("pool", "close")):
            if hasattr(self, name):
                await getattr(getattr(self, name), close)()
        if hasattr(self, "pg"):
            self.pg.stop()
        if hasattr(self, "temporal"):
            self.temporal.stop()

    @staticmethod
    def command(name: str, plaintext: bool = False) -> list[str]:
        return [sys.executable, "-m", *(["bench.plaintext", name] if plaintext else ENTRY[name])]

    async def serve(self, task_queue: str, name: str = "serve", *, plaintext: bool = False, **extra: str) -> str:
        port = free_port()
        self.spawn(self.command("serve", plaintext),
                   self.env(WA_ARCHIVE_HTTP_PORT=str(port), WA_ARCHIVE_TASK_QUEUE=task_queue, **extra), name)
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                async with self.http.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return url
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("serve did not start")

    def worker(self, task_queue: str, *, plaintext: bool = False, **extra: str) -> subprocess.Popen:
        # Metrics on, as deployed (the SDK's buffer drained, the gauges refreshed), so every figure includes their cost.
        extra.setdefault("WA_ARCHIVE_METRICS_PORT", str(free_port()))
        return self.spawn(self.command("worker", plaintext),
                          self.env(WA_ARCHIVE_TASK_QUEUE=task_queue, **extra), f"worker-{task_queue}")

    async def post(self, url: str, body: bytes) -> float:
        started = time.perf_counter()
        async with self.http.post(url + "/webhooks/meta", data=body, headers={
            "X-Hub-Signature-256": meta_signature(SECRET, body), "Content-Type": "application/json"}) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"webhook answered {resp.status}")
        return time.perf_counter() - started

    async def wait_archived(self, ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = await self.pool.fetchval(
                "SELECT count(*) FROM messages WHERE id = ANY($1::text[]) AND archive_status = 'archived'", ids)
            if n == len(ids):
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"only {n} of {len(ids)} archived within {timeout}s")

    async def peak_rss_until_archived(self, proc: subprocess.Popen, ids: list[str]) -> int:
        """The worker's peak resident memory (KiB) while it archives `ids`."""
        peak = rss_kib(proc.pid)
        waiter = asyncio.create_task(self.wait_archived(ids, timeout=900))
        while not waiter.done():
            peak = max(peak, rss_kib(proc.pid))
            await asyncio.sleep(0.05)
        await waiter
        return peak

    # 2b. outbound -------------------------------------------------------------------------------

    async def outbound(self, inbound_per_s: float, n: int = 300, size: int = 100 * 1024) -> dict:
        """Template messages recorded through the API, then `sent` webhooks, until each is archived
        with its template snapshot and header image — against the inbound figure of this run."""
        from wa_archive.access.tokens import create_token
        from wa_archive.sources.meta.samples import WABA_ID

        self.graph.set_template(WABA_ID, {
            "id": "9001", "name": "bench_notice", "language": "en_US", "category": "UTILITY",
            "components": [{"type": "HEADER", "format": "IMAGE"},
                           {"type": "BODY", "text": "Hello {{1}}, statement {{2}} is attached."}]})
        token = await create_token(self.pool, f"bench-{uuid.uuid4().hex[:6]}", "sender")
        tq = f"bench-out-{uuid.uuid4().hex[:6]}"
        url = await self.serve(tq)
        self.worker(tq)
        await asyncio.sleep(2)
        records, statuses, ids = [], [], []
        for i in range(n):
            media = self.graph.add(FakeMedia(str(uuid.uuid4().int % 10**15), content=os.urandom(size)))
            mid = "wamid.BENCHOUT" + uuid.uuid4().hex
            ids.append(mid)
            records.append(json.dumps({"phone_number_id": "109327745812336", "response": {"messages": [{"id": mid}]},
                                       "request": {"messaging_product": "whatsapp", "to": "+447700900123",
                                                   "type": "template", "template": {
                                                       "name": "bench_notice", "language": {"code": "en_US"},
                                                       "components": [
                                                           {"type": "header", "parameters": [
                                                               {"type": "image", "image": {"id": media.media_id}}]},
                                                           {"type": "body", "parameters": [
                                                               {"type": "text", "text": "Priya"},
                                                               {"type": "text", "text": str(i)}]}]}}}).encode())
            statuses.append(dumps(envelope(statuses=[{"id": mid, "status": "sent", "timestamp": str(int(time.time())),
                                                     "recipient_id": "447700900123"}])))
        gate = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with gate:
                async with self.http.post(url + "/api/v1/outbound", data=records[i], headers={
                        "Authorization": f"Bearer {token}", "Content-Type": "application/json"}) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"record API answered {resp.status}: {await resp.text()}")
                await self.post(url, statuses[i])

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        await self.wait_archived(ids, timeout=600)
        rate = n / (time.perf_counter() - started)
        snapshots = await self.pool.fetchval("SELECT count(*) FROM template_snapshots WHERE name = 'bench_notice'")
        return {"messages": n, "header_bytes": size, "outbound_msgs_per_s": round(rate, 1),
                "inbound_msgs_per_s": round(inbound_per_s, 1), "ratio": round(rate / inbound_per_s, 3),
                "template_snapshots": snapshots}

    async def _drop_synthetic(self, pattern: str) -> None:
        """Synthetic rows carry no retention; the retention guard is set aside for their removal only."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute("DELETE FROM media WHERE message_id LIKE $1", pattern)
            await conn.execute("DELETE FROM messages WHERE id LIKE $1", pattern)

    # 3. one 1 GiB file -------------------------------------------------------------------------

    async def large_file(self, size: int = 1024 ** 3) -> dict:
        media = self.graph.add(FakeMedia(f"big-{uuid.uuid4().hex}", mime_type="video/mp4", size=size, seed=11))
        src = self.root / "floor-src.bin"
        with src.open("wb") as fh:
            for block in media.blocks():
                fh.write(block)
        os.sync()
        started = time.perf_counter()
        subprocess.run(["sha256sum", str(src)], check=True, capture_output=True)
        hashed = time.perf_counter()
        shutil.copyfile(src, self.root / "floor-copy.bin")
        os.sync()
        floor = time.perf_counter() - started
        hash_s, copy_s = hashed - started, floor - (hashed - started)
        (self.root / "floor-copy.bin").unlink()
        src.unlink()

        tq = f"bench-big-{uuid.uuid4().hex[:6]}"
        url = await self.serve(tq)
        proc = self.worker(tq)
        await asyncio.sleep(3)
        baseline = rss_kib(proc.pid)
        mid = wamid()
        body = dumps(envelope([media_message("video", media.media_id, media.sha256_b64(), "video/mp4", mid=mid)]))
        started = time.perf_counter()
        await self.post(url, body)
        peak = await self.peak_rss_until_archived(proc, [mid])
        wall = time.perf_counter() - started
        return {"bytes": size, "floor_hash_plus_copy_s": round(floor, 2), "floor_sha256sum_s": round(hash_s, 2),
                "floor_copy_and_sync_s": round(copy_s, 2), "archive_s": round(wall, 2),
                "ratio": round(wall / floor, 3), "target_ratio_max": 1.5,
                "rss_growth_mib": round((peak - baseline) / 1024, 1), "target_rss_growth_mib": 64}


async def main() -> None:
    chosen = sys.argv[1:] or list(ALL)
    scale_rows = None
    if chosen[0] == "scale":
        if len(chosen) != 2 or not chosen[1].isdigit() or int(chosen[1]) < 1:
            raise SystemExit("usage: python -m bench scale N (N messages, e.g. 10000000)")
        scale_rows = int(chosen[1])
    root = Path(tempfile.mkdtemp(prefix="wa-archive-bench-", dir=os.environ.get("BENCH_TMP")))
    bench = Bench(root)
    results: dict = {"when": datetime.now(timezone.utc).isoformat(), "cpus": os.cpu_count()}
    try:
        await bench.start()
        if scale_rows is not None:
            results.update(await scale_bench.scale(bench, scale_rows))
            chosen = []
        for name, fn in (("ingest", lambda: throughput.ingest(bench)),
                         ("end_to_end", lambda: throughput.end_to_end(bench)),
                         ("payload_codec", codec.payload_codec),
                         ("outbound", bench.outbound), ("search", lambda: search_bench.search(bench)),
                         ("verify_full", lambda: stored.verify_full(bench)),
                         ("disposition", lambda: stored.disposition(bench)),
                         ("encrypted_media", lambda: stored.encrypted_media(bench)),
                         ("large_file", bench.large_file),
                         ("reconciliation", lambda: reconciliation_bench.reconcile(bench)),
                         ("consent", lambda: consent_bench.consent(bench)),
                         ("ledger", lambda: ledger_bench.ledger_appends(bench))):
            if name not in chosen:
                continue
            print(f"running {name} ...", flush=True)
            first = len(bench.procs)
            if name == "outbound":
                if "end_to_end" not in results:
                    results["end_to_end"] = await throughput.end_to_end(bench)
                results[name] = await fn(results["end_to_end"]["archive_msgs_per_s"])
            else:
                results[name] = await fn()
            bench.end_processes(first)
            print(json.dumps(results[name]), flush=True)
    finally:
        await bench.stop()
        shutil.rmtree(root, ignore_errors=True)
    if scale_rows is not None:
        report.print_scale(results)
        print(f"\nwritten to {write_results(results, 'scale-')}")
        return
    if not set(ALL) <= set(results):  # a partial run (python -m bench ingest) only prints what it measured
        return
    written = write_results(results)
    report.print_tables(results)
    print(f"\nwritten to {written}")


def write_results(results: dict, prefix: str = "") -> Path:
    """bench/results/<prefix><time>.json and <prefix>latest.json; returns the latter."""
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for path in (RESULTS / f"{prefix}{stamp}.json", RESULTS / f"{prefix}latest.json"):
        path.write_text(json.dumps(results, indent=2))
    return RESULTS / f"{prefix}latest.json"

if __name__ == "__main__":
    asyncio.run(main())
