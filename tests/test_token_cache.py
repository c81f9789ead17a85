"""The webhook server's memory of API tokens (wa_archive/access/token_cache.py): a token is asked of the
database once and then answered from memory, and nothing that changes a token (a revocation by the
CLI, an insider's own SQL, a change made while the server was not listening, an answer that crossed
a revocation) leaves a request served on the old answer."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

from prometheus_client import REGISTRY

from tests.conftest import wait_until
from wa_archive.access.token_cache import APPLICATION_NAME, TokenCache
from wa_archive.access.tokens import Caller


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
