"""The search benchmark: 1,000,000 synthetic messages, each query through the HTTP API and as the
same SQL run directly, in the same run."""

from __future__ import annotations

import random
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from bench.measure import percentile

if TYPE_CHECKING:
    from bench.__main__ import Bench


async def search(b: Bench, rows: int = 1_000_000, runs: int = 200, phone_runs: int = 1000) -> dict:
    """1,000,000 synthetic messages loaded with COPY; phone + 30-day and full-text queries through
    the HTTP API against the same SQL run directly with asyncpg, and the phone query's API p95 minus
    its SQL p95 (the fixed cost of an API read). The phone query is cheap, so it runs more often:
    its p95 is then steady enough to compare in tenths of a millisecond."""
    from wa_archive.access.tokens import create_token
    from wa_archive.discovery.search import build_query, parse_filters

    rng = random.Random(5)
    words = [f"w{i:04d}" for i in range(3000)] + ["transfer", "mandate", "statement", "invoice"]
    phones = [f"44770{i:07d}" for i in range(10_000)]
    start = datetime(2024, 11, 1, tzinfo=timezone.utc)
    span = 730 * 86400

    def records():
        for i in range(rows):
            text = " ".join(rng.choice(words) for _ in range(12))
            yield (f"wamid.SEARCH{i:09d}", "meta", "in", "text", start + timedelta(seconds=rng.randrange(span)),
                   rng.choice(phones), text, "archived", "{}")

    loaded = time.perf_counter()
    async with b.pool.acquire() as conn:
        await conn.copy_records_to_table(
            "messages", records=records(),
            columns=["id", "source", "direction", "type", "ts", "contact_phone", "text", "archive_status", "payload"])
        await conn.execute("ANALYZE messages")
    load_s = time.perf_counter() - loaded
    token = await create_token(b.pool, f"bench-auditor-{uuid.uuid4().hex[:6]}", "auditor")
    url = await b.serve(f"bench-search-{uuid.uuid4().hex[:6]}")

    def cases(kind: str, n: int):
        for _ in range(n):
            if kind == "phone_30d":
                since = start + timedelta(days=rng.randrange(700))
                yield {"phone": rng.choice(phones), "since": since.isoformat(),
                       "until": (since + timedelta(days=30)).isoformat()}
            else:
                yield {"q": rng.choice(words[:3000])}

    async def api(params: dict) -> float:
        t = time.perf_counter()
        async with b.http.get(url + "/api/v1/messages", params=params,
                                 headers={"Authorization": f"Bearer {token}"}) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"API answered {resp.status}")
        return time.perf_counter() - t

    # Direct SQL on one connection held for the whole run: the query alone, without a pool's
    # acquire and reset around it (the bench's pool resets on release; the archive's does not).
    sql_conn = await b.pool.acquire()

    async def direct(params: dict) -> float:
        t = time.perf_counter()
        sql, args = build_query(parse_filters(params))
        await sql_conn.fetch(sql, *args)
        return time.perf_counter() - t

    async def http_floor() -> float:
        """The same server's /healthz (no token, no database): what HTTP alone costs on this machine."""
        t = time.perf_counter()
        async with b.http.get(url + "/healthz") as resp:
            await resp.read()
        return time.perf_counter() - t

    def ms(values: list[float], p: float) -> float:
        return round(percentile(values, p) * 1000, 2)

    out: dict = {"rows": rows, "load_s": round(load_s, 1), "load_rows_per_s": round(rows / load_s)}
    for kind, n in (("phone_30d", phone_runs), ("full_text", runs)):
        params = list(cases(kind, n))
        for p in params[:10]:  # warm caches for both paths alike
            await direct(p)
            await api(p)
        # Interleaved, the order alternating, so a busy moment of the machine falls on both paths alike.
        d, a, h = [], [], []
        for i, p in enumerate(params):
            if i % 2:
                a.append(await api(p))
                d.append(await direct(p))
            else:
                d.append(await direct(p))
                a.append(await api(p))
            if kind == "phone_30d":
                h.append(await http_floor())
        out[kind] = {
            "runs": n, "direct_p50_ms": ms(d, 50), "direct_p95_ms": ms(d, 95),
            "api_p50_ms": ms(a, 50), "api_p95_ms": ms(a, 95),
            "api_overhead_p95": round(percentile(a, 95) / percentile(d, 95) - 1, 3),
            # The measure: what the API adds to the same SQL at p95, in ms, and the ratio.
            "api_minus_direct_p95_ms": round((percentile(a, 95) - percentile(d, 95)) * 1000, 2),
            "api_over_direct_p95": round(percentile(a, 95) / percentile(d, 95), 2),
            "target_p95_ms": 50 if kind == "phone_30d" else 200, "target_overhead": 0.3,
        }
        if kind == "phone_30d":
            out[kind].update({"target_api_minus_direct_p95_ms": 1.0,
                              "http_floor_p50_ms": ms(h, 50), "http_floor_p95_ms": ms(h, 95)})
    await b.pool.release(sql_conn)
    await b._drop_synthetic("wamid.SEARCH%")
    return out
