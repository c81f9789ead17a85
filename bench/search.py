"""The search benchmark: 1,000,000 synthetic messages, each query through the HTTP API and as the
same SQL run directly, in the same run. The loader and the API-against-SQL comparison are shared
with the scale run (bench/scale.py)."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import asyncpg

from bench.measure import percentile

if TYPE_CHECKING:
    from bench.__main__ import Bench

WORDS = [f"w{i:04d}" for i in range(3000)] + ["transfer", "mandate", "statement", "invoice"]
START = datetime(2024, 11, 1, tzinfo=timezone.utc)
SPAN = 730 * 86400  # two years of messages
COLUMNS = ["id", "source", "direction", "type", "ts", "contact_phone", "text", "archive_status", "payload"]


def phones(n: int) -> list[str]:
    return [f"44770{i:07d}" for i in range(n)]


def synthetic_messages(rows: int, rng: random.Random, contacts: list[str], *, prefix: str = "SEARCH",
                       media_every: int = 0) -> Iterator[tuple[Any, ...]]:
    """Inbound messages of twelve words each (COLUMNS), spread over two years and the contacts; with
    media_every, every media_every-th is an image (its text the caption), whose media row the caller adds."""
    for i in range(rows):
        text = " ".join(rng.choice(WORDS) for _ in range(12))
        kind = "image" if media_every and i % media_every == 0 else "text"
        yield (f"wamid.{prefix}{i:09d}", "meta", "in", kind, START + timedelta(seconds=rng.randrange(SPAN)),
               rng.choice(contacts), text, "archived", "{}")


async def copy_messages(conn: asyncpg.Connection, records: Any) -> None:
    await conn.copy_records_to_table("messages", records=records, columns=COLUMNS)


def query_cases(kind: str, rng: random.Random, contacts: list[str], runs: int) -> list[dict[str, str]]:
    """Query parameters of the API: a contact and a 30-day window, or one word of the texts."""
    out = []
    for _ in range(runs):
        if kind == "phone_30d":
            since = START + timedelta(days=rng.randrange(700))
            out.append({"phone": rng.choice(contacts), "since": since.isoformat(),
                        "until": (since + timedelta(days=30)).isoformat()})
        else:
            out.append({"q": rng.choice(WORDS[:3000])})
    return out


Request = Callable[[dict[str, str]], tuple[str, dict[str, str]]]


def messages_api(params: dict[str, str]) -> tuple[str, dict[str, str]]:
    return "/api/v1/messages", params


async def compare(b: Bench, url: str, token: str, request: Request, params: list[dict[str, str]],
                  direct: Callable[[dict[str, str]], Awaitable[Any]]) -> dict:
    """p50/p95 of each request through the HTTP API (request(p): its path and query) against
    direct(p), the same SQL run with asyncpg; both warmed alike on the first ten."""
    async def api(p: dict[str, str]) -> float:
        path, query = request(p)
        started = time.perf_counter()
        async with b.http.get(url + path, params=query,
                              headers={"Authorization": f"Bearer {token}"}) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"API answered {resp.status}")
        return time.perf_counter() - started

    async def sql(p: dict[str, str]) -> float:
        started = time.perf_counter()
        await direct(p)
        return time.perf_counter() - started

    for p in params[:10]:  # warm caches for both paths alike
        await sql(p)
        await api(p)
    d = [await sql(p) for p in params]
    a = [await api(p) for p in params]
    return {"direct_p50_ms": round(percentile(d, 50) * 1000, 2), "direct_p95_ms": round(percentile(d, 95) * 1000, 2),
            "api_p50_ms": round(percentile(a, 50) * 1000, 2), "api_p95_ms": round(percentile(a, 95) * 1000, 2),
            "api_overhead_p95": round(percentile(a, 95) / percentile(d, 95) - 1, 3)}


async def search_sql(b: Bench, params: dict[str, str]) -> None:
    """What GET /api/v1/messages runs for these parameters."""
    from wa_archive.discovery.search import build_query, parse_filters

    sql, args = build_query(parse_filters(params))
    await b.pool.fetch(sql, *args)


async def search(b: Bench, rows: int = 1_000_000, runs: int = 200) -> dict:
    """1,000,000 synthetic messages loaded with COPY; phone + 30-day and full-text queries through
    the HTTP API against the same SQL run directly with asyncpg."""
    from wa_archive.access.tokens import create_token

    rng = random.Random(5)
    contacts = phones(10_000)
    loaded = time.perf_counter()
    async with b.pool.acquire() as conn:
        await copy_messages(conn, synthetic_messages(rows, rng, contacts))
        await conn.execute("ANALYZE messages")
    load_s = time.perf_counter() - loaded
    token = await create_token(b.pool, f"bench-auditor-{uuid.uuid4().hex[:6]}", "auditor")
    url = await b.serve(f"bench-search-{uuid.uuid4().hex[:6]}")

    out: dict = {"rows": rows, "load_s": round(load_s, 1), "load_rows_per_s": round(rows / load_s)}
    for kind in ("phone_30d", "full_text"):
        figures = await compare(b, url, token, messages_api, query_cases(kind, rng, contacts, runs),
                                lambda p: search_sql(b, p))
        out[kind] = {**figures, "target_p95_ms": 50 if kind == "phone_30d" else 200, "target_overhead": 0.3}
    await b._drop_synthetic("wamid.SEARCH%")
    return out
