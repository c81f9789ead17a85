"""What an API read pays for its access-log entry (issue 16, "reads pay only for what they must"): the
entry and its ledger candidate in one statement whose digest is the one `verify` recomputes from the
row, committed together or not at all, and a search that sends no statement it does not need."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from wa_archive.access.access_log import record_access
from wa_archive.db import access_log as access_sql
from wa_archive.integrity import ledger, sequencing, verification

UTC = timezone.utc
# Targets as the archive writes them (query values, ids, flags, counts) and the text an attacker
# chooses: quotes, backslashes, markup, controls, non-ASCII, direction marks.
TARGETS = [
    {},
    {"phone": "447700900123", "since": "2026-01-01", "until": "2026-02-01"},
    {"q": 'quote " backslash \\ slash / </script>'},
    {"name": "Zoë 🙂 \u202edrow\u202c 中文"},
    {"controls": "\x01\x1f\x7f line\nbreak\ttab\u2028"},
    {"media": "m1", "found": False, "range": None, "nested": [1, None, True, {"b": ["x", 2**70]}]},
    {"limit": 500, "cursor": "-1"},
]
TIMES = [
    datetime(2026, 5, 17, 9, 30, tzinfo=UTC),                      # whole second: isoformat() omits microseconds
    datetime(2026, 5, 17, 9, 30, 0, 1, tzinfo=UTC),
    datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(1999, 1, 2, 3, 4, 5, 500000, tzinfo=timezone(timedelta(hours=5, minutes=45))),
]


def _spliced_digest(head: str, tail: str, at: datetime, entry_id: int) -> str:
    """What INSERT_WITH_LEAF hashes, built the way its SQL builds it."""
    text = head + '"' + at.astimezone(UTC).isoformat() + '","id":' + str(entry_id) + tail
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("outcome", ["allowed", "refused"])
@pytest.mark.parametrize("remote", ["127.0.0.1", None])
def test_the_text_around_time_and_id_makes_the_digest_verify_recomputes(target, outcome, remote):
    head, tail = ledger.access_digest_parts(actor='aud"itor', role="auditor", action="search", target=target,
                                            remote_addr=remote, outcome=outcome)
    for at in TIMES:
        for entry_id in (1, 42, 2**63 - 1):
            row = {"id": entry_id, "at": at, "actor": 'aud"itor', "role": "auditor", "action": "search",
                   "target": target, "remote_addr": remote, "outcome": outcome}
            assert _spliced_digest(head, tail, at, entry_id) == ledger.access_digest(row)


async def test_the_statement_writes_an_entrys_time_as_python_does_whatever_the_session_zone(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        # A session setting the application could change must not change the digest.
        await conn.execute("SET TIME ZONE 'Asia/Kathmandu'")
        await conn.execute("SET datestyle = 'SQL, DMY'")
        for at in TIMES + [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=n) for n in (10, 100000, 999000)]:
            written = await conn.fetchval(f"SELECT {access_sql.AT_ISO} FROM (SELECT $1::timestamptz AS at) AS entry",
                                          at)
            assert written == at.astimezone(UTC).isoformat()
    finally:
        await conn.close()


async def _entries_with_candidates(pool: asyncpg.Pool, actor: str) -> list[tuple[asyncpg.Record, list[asyncpg.Record]]]:
    rows = await pool.fetch("SELECT * FROM access_log WHERE actor = $1 ORDER BY id", actor)
    return [(row, list(await pool.fetch("SELECT * FROM ledger_candidates WHERE kind = 'access' AND record_id = $1",
                                        str(row["id"])))) for row in rows]


async def test_each_entry_commits_with_one_candidate_that_verify_accepts(clean_db):
    pool = clean_db
    actor = f"auditor-{uuid.uuid4().hex[:6]}"
    for i, target in enumerate(TARGETS):
        await record_access(pool, actor=actor, role="auditor", action="search", target=target,
                            remote_addr=None if i % 2 else "10.0.0.7", outcome="refused" if i % 3 == 0 else "allowed")
    # A float is stored by jsonb in its own form (1e16 comes back as 10000000000000000): such a target
    # is digested from the row as stored.
    await record_access(pool, actor=actor, role="auditor", action="search", target={"ratio": 1e16, "p": 0.1},
                        remote_addr="10.0.0.7")
    written = await _entries_with_candidates(pool, actor)
    assert len(written) == len(TARGETS) + 1
    for row, candidates in written:
        assert [c["digest"] for c in candidates] == [ledger.access_digest(row)], row["target"]
    assert written[-1][0]["target"] == {"ratio": 10000000000000000, "p": 0.1}

    assert await sequencing.integrate(pool) >= len(written)
    assert await verification.verify_log(pool, None) == []
    leaves = {r["record_id"]: r["digest"] for r in await pool.fetch(
        "SELECT record_id, digest FROM ledger_leaves WHERE kind = 'access'")}
    assert all(leaves[str(row["id"])] == ledger.access_digest(row) for row, _ in written)


async def test_an_entry_whose_candidate_cannot_be_written_is_not_written_either(clean_db):
    pool = clean_db
    actor = f"auditor-{uuid.uuid4().hex[:6]}"
    head, tail = ledger.access_digest_parts(actor=actor, role="auditor", action="view", target={"message_id": "x"},
                                            remote_addr=None, outcome="allowed")
    # No text before the time: the digest is NULL, which ledger_candidates refuses; the entry goes with it.
    with pytest.raises(asyncpg.NotNullViolationError):
        await pool.fetchrow(access_sql.INSERT_WITH_LEAF, actor, "auditor", "view", {"message_id": "x"}, None,
                            "allowed", None, tail)
    assert await pool.fetchval("SELECT count(*) FROM access_log WHERE actor = $1", actor) == 0
    await access_sql.insert_with_leaf(pool, actor=actor, role="auditor", action="view", target={"message_id": "x"},
                                      remote_addr=None, outcome="allowed", digest_head=head, digest_tail=tail)
    [(row, candidates)] = await _entries_with_candidates(pool, actor)
    assert [c["digest"] for c in candidates] == [ledger.access_digest(row)]


async def test_a_search_sends_the_token_check_one_access_statement_and_one_statement_for_the_page(
        clean_db, admin_pool, database_url, client, tmp_path):
    """Counted on the wire (asyncpg's query log of the server's own pool): no BEGIN, COMMIT or second
    ledger statement per read, and the page with its messages' media in one statement. The app's gauge refresher shares
    the pool, so the request's statements are told apart by what they carry (token hash, caller,
    phone, message id); it opens no transaction, so any BEGIN is the request's."""
    from aiohttp import ClientSession, web

    from tests.conftest import make_settings
    from wa_archive.access.tokens import create_token, token_hash
    from wa_archive.db import create_pool
    from wa_archive.devstack.embedded import free_port
    from wa_archive.storage import FilesystemStore
    from webhook.app import WebhookDeps, create_app

    await admin_pool.execute(
        "INSERT INTO messages (id, source, direction, type, ts, contact_phone, archive_status, payload, text)"
        " VALUES ('wamid.COST1', 'meta', 'in', 'text', '2026-01-10T10:00:00Z', '447700900123', 'archived', '{}',"
        " 'hello')")
    logged: list[asyncpg.connection.LoggedQuery] = []
    pool = await create_pool(database_url, min_size=2, max_size=2)
    connections = [await pool.acquire() for _ in range(2)]
    for conn in connections:
        conn.add_query_logger(logged.append)
        await pool.release(conn)
    store = FilesystemStore(tmp_path / "objects")
    runner = web.AppRunner(create_app(WebhookDeps(settings=make_settings(metrics_refresh_seconds=3600), client=client, pool=pool, store=store)))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    name = f"auditor-{uuid.uuid4().hex[:6]}"
    token = await create_token(clean_db, name, "auditor")
    try:
        async with ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            url = f"http://127.0.0.1:{port}/api/v1/messages"
            params = {"phone": "447700900123", "since": "2026-01-01", "until": "2026-01-31"}
            async with http.get(url, params=params) as resp:  # the token's first use also notes when it was used
                assert resp.status == 200
            logged.clear()
            async with http.get(url, params=params) as resp:
                assert resp.status == 200
                assert [m["id"] for m in (await resp.json())["items"]] == ["wamid.COST1"]
    finally:
        await runner.cleanup()
        await pool.close()
        await store.close()
    assert not [q.query for q in logged if q.query.split()[0].upper().rstrip(";") in ("BEGIN", "COMMIT")]
    markers = (token_hash(token), name, "447700900123", "wamid.COST1")
    sent = [q.query for q in logged if any(m in repr(q.args) for m in markers)]
    assert len(sent) == 3, sent
    assert sent.count(access_sql.INSERT_WITH_LEAF) == 1 and not [q for q in sent if q.startswith("UPDATE")]
    assert sum("FROM api_tokens" in q for q in sent) == 1
    [page] = [q for q in sent if "FROM messages" in q]
    assert "FROM media" in page  # the media come in the page's own statement
    row, candidates = (await _entries_with_candidates(clean_db, name))[-1]
    assert row["action"] == "search" and [c["digest"] for c in candidates] == [ledger.access_digest(row)]
