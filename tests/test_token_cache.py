"""The webhook server's memory of API tokens (wa_archive/access/token_cache.py): a token is asked of the
database once and then answered from memory, and nothing that changes a token (a revocation by the
CLI, an insider's own SQL, a change made while the server was not listening, an answer that crossed
a revocation) leaves a request served on the old answer."""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit, urlunsplit

from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from tests.conftest import until_past, wait_until
from wa_archive.access.token_cache import APPLICATION_NAME, HEARTBEAT_SECONDS, TokenCache
from wa_archive.access.tokens import Caller, create_token
from wa_archive.db import migrate
from wa_archive.devstack.embedded import APP_ROLE


def checks(answer: str) -> float:
    return REGISTRY.get_sample_value("wa_archive_api_token_checks_total", {"answer": answer}) or 0.0


async def _status(stack, token: str) -> int:
    async with stack.http.get(f"{stack.url}/api/v1/messages",
                              headers={"Authorization": f"Bearer {token}"}) as resp:
        await resp.read()
        return resp.status


async def _remembered(stack, token: str) -> None:
    """Wait until the server listens for changes and answers this token from memory."""
    async def from_memory() -> bool:
        before = checks("memory")
        assert await _status(stack, token) == 200
        return checks("memory") > before

    await wait_until(from_memory, "a token answered from memory", timeout=15)


async def _refused_soon(stack, token: str, status: int) -> None:
    """The change is heard within the time a notification takes to arrive: well under a second."""
    await wait_until(lambda: _status_is(stack, token, status), f"the token answered {status}", timeout=1,
                     interval=0.01)


async def _status_is(stack, token: str, status: int) -> bool:
    return await _status(stack, token) == status


async def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
    env["WA_ARCHIVE_DATABASE_URL"] = database_url
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "wa_archive.cli", *args], env=env,
                                   capture_output=True, text=True, timeout=60)


async def test_a_token_is_asked_of_the_database_once_then_answered_from_memory(stack):
    token = await stack.token("auditor")
    await _remembered(stack, token)
    asked, remembered = checks("database"), checks("memory")
    for _ in range(5):
        assert await _status(stack, token) == 200
    assert (checks("database"), checks("memory")) == (asked, remembered + 5)
    # An unknown token is never remembered: each try is asked of the database (and refused).
    for _ in range(3):
        assert await _status(stack, "wa_guess") == 401
    assert checks("database") == asked + 3


async def test_a_token_revoked_with_the_cli_is_refused_at_once(stack, database_url):
    name = f"leaver-{uuid.uuid4().hex[:6]}"
    token = await stack.token("auditor", name=name)
    await _remembered(stack, token)
    revoked = await _cli(database_url, "tokens", "revoke", name)
    assert revoked.returncode == 0, revoked.stderr
    await _refused_soon(stack, token, 401)


async def test_an_insiders_own_sql_on_the_tokens_is_heard_too(stack):
    """A change made without the CLI (the schema owner's UPDATE) announces itself all the same (the
    trigger of migration 023): a role taken away is refused at once."""
    name = f"demoted-{uuid.uuid4().hex[:6]}"
    token = await stack.token("auditor", name=name)
    await _remembered(stack, token)
    await stack.owner_pool.execute("UPDATE api_tokens SET role = 'sender' WHERE name = $1", name)
    await _refused_soon(stack, token, 403)


async def test_while_it_is_not_listening_the_server_asks_the_database_every_time(stack):
    """A revocation made while the listening connection is down sends its notification to nobody: the
    server forgets everything when the connection goes, asks the database meanwhile, and starts
    afresh when it is back."""
    name = f"cut-{uuid.uuid4().hex[:6]}"
    token = await stack.token("auditor", name=name)
    await _remembered(stack, token)
    killed = await stack.admin_pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
        APPLICATION_NAME)
    assert killed >= 1

    async def asked_of_the_database() -> bool:
        before = checks("database")
        assert await _status(stack, token) == 200
        return checks("database") > before

    await wait_until(asked_of_the_database, "the token asked of the database once the listener is gone",
                     timeout=5, interval=0.01)
    await stack.pool.execute("UPDATE api_tokens SET revoked_at = now() WHERE name = $1", name)
    assert await _status(stack, token) == 401
    # Back: it listens again (a new connection) and remembers a new token.
    await _remembered(stack, await stack.token("auditor"))


async def test_an_answer_read_before_a_change_is_not_kept(clean_db, database_url):
    """The database's answer for a token can cross a revocation: read before it committed, back after
    its notification was heard. Such an answer is used for that one request, never remembered."""
    asked: list[str] = []
    change_during_check = True

    async def check(pool, token: str) -> Caller | None:
        asked.append(token)
        if change_during_check:
            cache.forget_all()  # what a notification heard while the query was out does
        return Caller("someone", "auditor")

    cache = TokenCache(clean_db, database_url, max_age=60, check=check)
    listening = asyncio.create_task(cache.run())
    try:
        await wait_until(lambda: cache.listening, "the cache listening")
        assert await cache.caller("wa_x") == Caller("someone", "auditor")
        assert await cache.caller("wa_x") == Caller("someone", "auditor")
        assert asked == ["wa_x", "wa_x"]  # the first answer was not kept
        change_during_check = False
        await cache.caller("wa_x")
        await cache.caller("wa_x")
        assert asked == ["wa_x", "wa_x", "wa_x"]  # kept once no change crossed it
    finally:
        listening.cancel()


async def test_memory_lasts_at_most_the_configured_seconds_and_zero_turns_it_off(stack_factory):
    short = await stack_factory(run_worker=False, api_token_cache_seconds=1)
    token = await short.token("auditor")
    await _remembered(short, token)
    await asyncio.sleep(1.1)
    asked = checks("database")
    assert await _status(short, token) == 200
    assert checks("database") == asked + 1

    off = await stack_factory(run_worker=False, api_token_cache_seconds=0)
    token = await off.token("auditor")
    asked, remembered = checks("database"), checks("memory")
    for _ in range(3):
        assert await _status(off, token) == 200
    assert (checks("database"), checks("memory")) == (asked + 3, remembered)


# --- Changes that try to go unheard (found by attacking the first version) ----------------------------


@asynccontextmanager
async def _listening(pool, dsn: str) -> AsyncIterator[TokenCache]:
    cache = TokenCache(pool, dsn, max_age=60)
    task = asyncio.create_task(cache.run())
    try:
        await wait_until(lambda: cache.listening, "the token memory listening", timeout=15)
        yield cache
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _remembered_by(cache: TokenCache, pool, role: str = "auditor") -> tuple[str, str]:
    name = f"probe-{uuid.uuid4().hex[:8]}"
    token = await create_token(pool, name, role)
    assert await cache.caller(token) == Caller(name, role)
    remembered = checks("memory")
    assert await cache.caller(token) == Caller(name, role)
    assert checks("memory") == remembered + 1
    return name, token


async def _forgotten(cache: TokenCache, token: str, *, within: float) -> None:
    await wait_until(lambda: _is_refused(cache, token), "the changed token refused", timeout=within,
                     interval=0.02)


async def _is_refused(cache: TokenCache, token: str) -> bool:
    return await cache.caller(token) is None


async def test_changes_in_replica_mode_are_heard_too(clean_db, database_url, admin_pool):
    """A superuser's replica mode (how this suite empties evidence tables, how logical replication
    applies and some restores run) skips ordinary triggers; the announcing one fires ALWAYS, for a
    revocation and for the one TRUNCATE of api_tokens that can succeed (replica mode)."""
    async with _listening(clean_db, database_url) as cache:
        name, token = await _remembered_by(cache, clean_db)
        async with admin_pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE name = $1", name)
        await _forgotten(cache, token, within=1)
        _, token = await _remembered_by(cache, clean_db)
        async with admin_pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute("TRUNCATE api_tokens CASCADE")
        await _forgotten(cache, token, within=1)


async def test_an_owner_who_switches_the_announcement_off_around_a_change_is_caught(clean_db, database_url,
                                                                                    owner_pool):
    """The schema owner may disable the trigger, revoke, and enable it again in one transaction: no
    notification. The trigger's catalogue row changed, which the next heartbeat sees: everything is
    forgotten within two heartbeats."""
    async with _listening(clean_db, database_url) as cache:
        name, token = await _remembered_by(cache, clean_db)
        async with owner_pool.acquire() as conn, conn.transaction():
            await conn.execute("ALTER TABLE api_tokens DISABLE TRIGGER api_tokens_announce_change")
            await conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE name = $1", name)
            await conn.execute("ALTER TABLE api_tokens ENABLE ALWAYS TRIGGER api_tokens_announce_change")
        await _forgotten(cache, token, within=2 * HEARTBEAT_SECONDS + 1)



async def test_an_owner_who_silences_the_announcing_function_around_a_change_is_caught(clean_db, database_url,
                                                                                      owner_pool):
    """The trigger's row stays as it was when the owner replaces the function it calls with one that
    announces nothing, revokes, and puts the original back: the function's own catalogue row changed,
    which the next heartbeat sees too."""
    original = await owner_pool.fetchval(
        "SELECT pg_get_functiondef('announce_api_token_change()'::regprocedure)")
    async with _listening(clean_db, database_url) as cache:
        name, token = await _remembered_by(cache, clean_db)
        async with owner_pool.acquire() as conn, conn.transaction():
            await conn.execute("CREATE OR REPLACE FUNCTION announce_api_token_change() RETURNS trigger"
                               " LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$")
            await conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE name = $1", name)
            await conn.execute(original)
        await _forgotten(cache, token, within=2 * HEARTBEAT_SECONDS + 1)


async def test_a_migrate_with_nothing_to_apply_does_not_look_like_tampering(clean_db, database_url, database_urls):
    """`migrate` gives the application role its grants again every time. Had it rewritten the announcing
    function's catalogue row on the way, every server would take that for tampering at its next
    heartbeat and forget its tokens, after every deploy."""
    async with _listening(clean_db, database_url) as cache:
        name, token = await _remembered_by(cache, clean_db)
        with capture_logs() as logs:
            await migrate(database_urls.owner, app_role=APP_ROLE)
            await until_past(datetime.now(timezone.utc) + timedelta(seconds=2 * HEARTBEAT_SECONDS))
        assert [e for e in logs if e["event"] == "api_token_listener_lost"] == []
        remembered = checks("memory")
        assert await cache.caller(token) == Caller(name, "auditor") and checks("memory") == remembered + 1

async def _never_listens(cache: TokenCache, pool, reason: str) -> None:
    """The listener fails its first proof for `reason` and remembers nothing meanwhile."""
    with capture_logs() as logs:
        task = asyncio.create_task(cache.run())
        try:
            await wait_until(lambda: [e for e in logs if e["event"] == "api_token_listener_lost"
                                      and reason in e["error"]], f"the listener refused: {reason}", timeout=15)
            assert not cache.listening
            token = await create_token(pool, f"probe-{uuid.uuid4().hex[:8]}", "auditor")
            asked, remembered = checks("database"), checks("memory")
            await cache.caller(token)
            await cache.caller(token)
            assert (checks("database"), checks("memory")) == (asked + 2, remembered)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_without_the_announcing_trigger_nothing_is_remembered(clean_db, database_url, owner_pool):
    """New code on a schema without migration 023 (a failed migrate, an older restore) would listen
    on a channel nobody notifies: it refuses to remember instead."""
    definition = await owner_pool.fetchval(
        "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'api_tokens_announce_change'")
    await owner_pool.execute("DROP TRIGGER api_tokens_announce_change ON api_tokens")
    try:
        await _never_listens(TokenCache(clean_db, database_url, max_age=60), clean_db, "are not announced")
    finally:
        await owner_pool.execute(definition)
        await owner_pool.execute("ALTER TABLE api_tokens ENABLE ALWAYS TRIGGER api_tokens_announce_change")


async def test_a_listener_that_notifications_do_not_reach_is_never_trusted(clean_db, database_url):
    """A connection that answers queries but never delivers notifications (a pooler in transaction
    mode, or a listener left on a former primary): its heartbeat query would pass; the round trip of a
    notification sent through the pool does not."""
    async with _deaf_proxy(database_url) as dsn:
        await _never_listens(TokenCache(clean_db, dsn, max_age=60), clean_db, "did not reach the listening connection")


@asynccontextmanager
async def _deaf_proxy(dsn: str) -> AsyncIterator[str]:
    """A TCP proxy to the database that drops PostgreSQL's NotificationResponse messages; the DSN
    through it."""
    parts = urlsplit(dsn)
    unix_dir = parse_qs(parts.query).get("host", [None])[0]
    port = parts.port or 5432

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, drop: bool) -> None:
        try:
            while True:
                if not drop:
                    data = await reader.read(65536)
                    if not data:
                        return
                    writer.write(data)
                else:
                    head = await reader.readexactly(5)
                    body = await reader.readexactly(struct.unpack("!I", head[1:])[0] - 4)
                    if head[:1] != b"A":  # NotificationResponse
                        writer.write(head + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if unix_dir and unix_dir.startswith("/"):
            server_r, server_w = await asyncio.open_unix_connection(f"{unix_dir}/.s.PGSQL.{port}")
        else:
            server_r, server_w = await asyncio.open_connection(parts.hostname or "127.0.0.1", port)
        await asyncio.gather(pipe(client_r, server_w, False), pipe(server_r, client_w, True))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        proxy_port = server.sockets[0].getsockname()[1]
        # No SSL request: its one-byte answer is not a message the proxy's reader could frame.
        query = "&".join([*(f"{k}={v[0]}" for k, v in parse_qs(parts.query).items() if k not in ("host", "sslmode")),
                          "sslmode=disable"])
        userinfo = parts.netloc.rsplit("@", 1)[0]
        yield urlunsplit(parts._replace(netloc=f"{userinfo}@127.0.0.1:{proxy_port}", query=query))
    finally:
        server.close()
