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


async def search(b: Bench, rows: int = 1_000_000, runs: int = 200) -> dict:
    """1,000,000 synthetic messages loaded with COPY; phone + 30-day and full-text queries through
    the HTTP API against the same SQL run directly with asyncpg."""
    from wa_archive.access.tokens import create_token
    from wa_archive.discovery.search import build_query

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

    def cases(kind: str):
        for _ in range(runs):
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

    async def direct(params: dict) -> float:
        from wa_archive.discovery.search import parse_filters

        t = time.perf_counter()
        sql, args = build_query(parse_filters(params))
        await b.pool.fetch(sql, *args)
        return time.perf_counter() - t

    out: dict = {"rows": rows, "load_s": round(load_s, 1), "load_rows_per_s": round(rows / load_s)}
    for kind in ("phone_30d", "full_text"):
        params = list(cases(kind))
        for p in params[:10]:  # warm caches for both paths alike
            await direct(p)
            await api(p)
        d = [await direct(p) for p in params]
        a = [await api(p) for p in params]
        out[kind] = {
            "direct_p50_ms": round(percentile(d, 50) * 1000, 2), "direct_p95_ms": round(percentile(d, 95) * 1000, 2),
            "api_p50_ms": round(percentile(a, 50) * 1000, 2), "api_p95_ms": round(percentile(a, 95) * 1000, 2),
            "api_overhead_p95": round(percentile(a, 95) / percentile(d, 95) - 1, 3),
            "target_p95_ms": 50 if kind == "phone_30d" else 200, "target_overhead": 0.3,
        }
    await b._drop_synthetic("wamid.SEARCH%")
    return out
