"""The ledger benchmark (issue 16): appends from 32 concurrent writers against a plain INSERT of the same rows,
and how long an appended leaf waits for its number (the integration lag) with the integrator running as
deployed: a worker process and the wa-archive-ledger-integrate Schedule, every WA_ARCHIVE_LEDGER_INTEGRATE_EVERY.

- appends: 32 connections of the application role, each committing one candidate INSERT per transaction
  (ledger_candidates.ADD: what every record's transaction adds), against the same 32 connections each committing one INSERT of
  the same (kind, record id, digest) into a plain table with an identity key, in the same run;
- before the rounds, a VACUUM (ANALYZE) of the database, a CHECKPOINT and a wait (at most five minutes)
  for any autovacuum still running (`settled_s`): what the benches before this one loaded is not
  vacuumed during the rounds; then one round a side not counted (warm caches), so
  both sides run on a quiet database;
- lag: for a sample of the appends above, from the writer's commit until the leaf is in the log (when a
  receipt can be made), one query every 50 ms for all sampled leaves still waiting; p50, p99 and max against the interval;
- where the ledger side's time goes: the CPU the Temporal server and the worker use during its rounds,
  and the write-ahead log each side writes (the ledger side's holds the integrator's leaves too).
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import time
import uuid
from typing import TYPE_CHECKING

import asyncpg

from bench.measure import cpu_seconds
from wa_archive.config import Settings
from wa_archive.db import ledger_candidates
from wa_archive.names import LEDGER_INTEGRATE_SCHEDULE_ID
from wa_archive.temporal.schedules import ledger_integrate_schedule

if TYPE_CHECKING:
    from bench.__main__ import Bench

# Rounds of a few seconds each, alternated, three a side: the integrator runs once a second, so in a
# round of a second or so whether one or two of its runs fall inside swung the ratio from 0.65 to 0.99.
WRITERS, PER_WRITER, ROUNDS = 32, 500, 3
EVERY = 1.0  # seconds: the default WA_ARCHIVE_LEDGER_INTEGRATE_EVERY
SAMPLE_EVERY = 25  # one append in this many has its lag measured
PLAIN_INSERT = "INSERT INTO bench_plain_leaves (kind, record_id, digest) VALUES ($1, $2, $3)"


def _rows(tag: str) -> list[list[tuple[str, str, str]]]:
    return [[("access", f"{tag}-{w}-{i}", hashlib.sha256(f"{tag}{w}.{i}".encode()).hexdigest())
             for i in range(PER_WRITER)] for w in range(WRITERS)]


async def _run(url: str, rows: list[list[tuple[str, str, str]]], sql: str,
               on_commit: object | None = None) -> float:
    """Seconds for WRITERS connections to commit their rows one transaction each, all at once."""
    conns = [await asyncpg.connect(url) for _ in range(WRITERS)]
    try:
        start = asyncio.Event()

        async def writer(conn: asyncpg.Connection, mine: list[tuple[str, str, str]]) -> None:
            await start.wait()
            for n, row in enumerate(mine):
                await conn.execute(sql, *row)  # one statement, its own transaction
                if on_commit is not None and n % SAMPLE_EVERY == 0:
                    on_commit(row)  # type: ignore[operator]

        tasks = [asyncio.create_task(writer(c, mine)) for c, mine in zip(conns, rows, strict=True)]
        began = time.perf_counter()
        start.set()
        await asyncio.gather(*tasks)
        return time.perf_counter() - began
    finally:
        for conn in conns:
            await conn.close()


async def ledger_appends(bench: Bench) -> dict:
    await bench.pool.execute("CREATE TABLE IF NOT EXISTS bench_plain_leaves (id bigint GENERATED ALWAYS AS IDENTITY"
                             " PRIMARY KEY, kind text NOT NULL, record_id text NOT NULL, digest text NOT NULL)")
    await bench.pool.execute("GRANT INSERT ON bench_plain_leaves TO wa_archive_app")
    task_queue = f"ledger-{uuid.uuid4().hex[:8]}"
    worker = bench.worker(task_queue)
    settings = Settings(_env_file=None, task_queue=task_queue, ledger_integrate_every=EVERY)
    await bench.client.create_schedule(LEDGER_INTEGRATE_SCHEDULE_ID, ledger_integrate_schedule(settings),
                                       trigger_immediately=True)  # as `schedules apply` starts it
    lags: list[float] = []
    waiting: dict[str, float] = {}  # sampled record id -> when its append committed
    writing = asyncio.Event()

    async def watch() -> None:
        """One query every 50 ms for every sampled leaf still waiting, so watching costs the writers little."""
        while writing.is_set() or waiting:
            if waiting:
                rows = await bench.pool.fetch("SELECT record_id FROM ledger_leaves WHERE kind = 'access'"
                                              " AND record_id = ANY($1::text[])", list(waiting))
                now = time.perf_counter()
                for r in rows:
                    lags.append(now - waiting.pop(r["record_id"]))
                if waiting and now - min(waiting.values()) > 120:
                    raise RuntimeError("a sampled leaf was not integrated within 120 s")
            await asyncio.sleep(0.05)

    def sampled(row: tuple[str, str, str]) -> None:
        waiting[row[1]] = time.perf_counter()

    try:
        settled_s = await bench.settle()
        # Wait for the worker and the first integration run, so the lag measured is the steady state.
        await _wait_for_integration(bench)
        results: dict = {"writers": WRITERS, "appends": WRITERS * PER_WRITER * ROUNDS, "interval_s": EVERY,
                         "settled_s": settled_s}
        # One round a side first, not counted: in the full run the log already holds millions of leaves
        # from the benches before, and the first round to touch its index pays for reading it into
        # memory (5.6 s against 2.8–3.6 s for the ledger rounds after it, 2026-11-27).
        await _run(bench.db_url, _rows("plain-warm"), PLAIN_INSERT)
        await _run(bench.db_url, _rows("ledger-warm"), ledger_candidates.ADD)
        await _drained(bench)  # its integration is not to fall in the first counted round
        plain_s, ledger_s = [], []
        # What the integrator's processes spend during the ledger rounds, beside the writers: Temporal's
        # server (its runs and activities) and the worker (each integration's loop).
        spent = {"temporal_server": 0.0, "worker": 0.0}
        pids = {"temporal_server": bench.temporal.process.pid, "worker": worker.pid}
        # The write-ahead log each side makes, which every writer's commit waits to flush: the ledger side's
        # includes the integrator's leaves, their two indexes and the candidates it removes.
        wal = {"plain": 0, "ledger": 0}
        for round_ in range(ROUNDS):  # alternated, so neither side has the warmer cache
            position = await _wal_position(bench)
            plain_s.append(await _run(bench.db_url, _rows(f"plain{round_}"), PLAIN_INSERT))
            wal["plain"] += await _wal_since(bench, position)
            writing.set()
            watcher = asyncio.create_task(watch())
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            position = await _wal_position(bench)
            ledger_s.append(await _run(bench.db_url, _rows(f"ledger{round_}"), ledger_candidates.ADD,
                                       sampled))
            wal["ledger"] += await _wal_since(bench, position)
            for name, pid in pids.items():
                spent[name] += cpu_seconds(pid) - before[name]
            writing.clear()
            await watcher
        # Every round counted (rows over the time of all rounds), not the best: the integrator's work
        # belongs to the appends' cost, and the best round is the one it happened to miss.
        plain, appended = sum(plain_s), sum(ledger_s)
        rows = WRITERS * PER_WRITER * ROUNDS
        results.update({
            "rounds": ROUNDS, "plain_rounds_s": [round(s, 2) for s in plain_s],
            "ledger_rounds_s": [round(s, 2) for s in ledger_s],
            "plain_insert_per_s": round(rows / plain), "ledger_append_per_s": round(rows / appended),
            "ratio": round(plain / appended, 2), "target_ratio": 0.8,
            "cpu_s_during_ledger_rounds": {name: round(v, 2) for name, v in spent.items()},
            "wal_mib": {side: round(n / 2**20, 1) for side, n in wal.items()},
            "lag_samples": len(lags), "lag_p50_s": round(statistics.median(lags), 3),
            "lag_p99_s": round(statistics.quantiles(lags, n=100)[98], 3), "lag_max_s": round(max(lags), 3),
        })
        results["lag_p99_over_interval"] = round(results["lag_p99_s"] / EVERY, 2)
        results["gapless"] = await bench.pool.fetchval(
            "SELECT count(*) = coalesce(max(seq) + 1, 0) FROM ledger_leaves") and await bench.pool.fetchval(
            "SELECT size FROM ledger_head") == await bench.pool.fetchval("SELECT count(*) FROM ledger_leaves")
        return results
    finally:
        await bench.client.get_schedule_handle(LEDGER_INTEGRATE_SCHEDULE_ID).delete()
        worker.terminate()
        worker.wait(20)
        await bench.pool.execute("DROP TABLE IF EXISTS bench_plain_leaves")


async def _wal_position(bench: Bench) -> int:
    """Where the write-ahead log ends now, in bytes (asyncpg reads a pg_lsn as an integer)."""
    return int(await bench.pool.fetchval("SELECT pg_current_wal_lsn()"))


async def _wal_since(bench: Bench, position: int) -> int:
    """Bytes of write-ahead log written since `position`."""
    return await _wal_position(bench) - position


async def _drained(bench: Bench, timeout: float = 120) -> None:
    deadline = time.perf_counter() + timeout
    while await bench.pool.fetchval("SELECT count(*) FROM ledger_candidates"):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the integrator left candidates waiting for {timeout:g} s")
        await asyncio.sleep(0.1)


async def _wait_for_integration(bench: Bench) -> None:
    conn = await asyncpg.connect(bench.db_url)
    try:
        await conn.execute(ledger_candidates.ADD, "access", "bench-warm-up", "warm-up")
        for _ in range(1200):
            if await conn.fetchval("SELECT 1 FROM ledger_leaves WHERE record_id = 'bench-warm-up'"):
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("the integrator's Schedule did not run within 60 s")
    finally:
        await conn.close()
