"""API tokens checked without a query on every request: the callers of tokens the database confirmed,
trusted only while this process is shown to hear of every change to api_tokens, and never for long.

An API read used to spend a round trip on its token before anything else could start (the access-log
entry needs the caller's name and role). Here a confirmed token is remembered, under three rules that
keep a revoked token from being honoured:

- Only while provably listening. A dedicated connection LISTENs on CHANNEL, which a trigger on
  api_tokens (migration 023, enabled ALWAYS, so replica mode and restores fire it too) notifies in the
  transaction of any revocation, change of name, role or hash, deletion or truncation; a notification
  forgets every remembered token. Listening counts only once it is proved, and every HEARTBEAT_SECONDS
  again: a notification sent through the pool (another connection, as a revocation would come) must
  reach this listener (a pooler in transaction mode, or a listener left on a former primary, does not
  pass), and the trigger must be there, enabled ALWAYS, it and its function unchanged since the last
  proof (an owner who disabled it, or silenced its function, around a change is caught by the changed
  catalogue row). Nothing is remembered before the first
  proof, and everything is forgotten the moment a proof fails or the connection is lost, so a change
  nobody heard cannot keep a token alive past the next heartbeat.
- Not across a change. Each check notes the count of notifications before it asks the database,
  and its answer is remembered only if none arrived meanwhile: an answer read before a revocation
  committed is never kept after the revocation is heard of.
- Not for long. An answer is used for at most `max_age` seconds (WA_ARCHIVE_API_TOKEN_CACHE_SECONDS);
  0 turns the memory off and every request asks the database, as before.

What is left: the time a notification takes to arrive after the revocation commits (milliseconds), and,
when the listening connection fails silently, until the next heartbeat's proof fails (at most two
heartbeats). Unknown and revoked tokens are never remembered: an attacker's guesses cost a query each
(and a refusal in the access log), and cannot fill the memory.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from wa_archive.access.tokens import Caller, authenticate, token_hash
from wa_archive.errors import TokenChangesUnheard
from wa_archive.observability import metrics

CHANNEL = "wa_archive_api_tokens"
# How the listening connection shows in pg_stat_activity.
APPLICATION_NAME = "wa-archive-token-listener"
# How often listening is proved (a notification round trip, the trigger's state); a failed proof
# forgets everything.
HEARTBEAT_SECONDS = 2.0
BEAT = "beat:"  # the payload prefix of the proofs' notifications, which forget nothing
# The trigger's row and the row of the function it calls: a version that changes when either is altered
# (disabled and enabled again, or the function replaced by one that announces nothing and put back).
TRIGGER_STATE = ("SELECT t.tgenabled::text AS tgenabled, t.xmin::text || '/' || p.xmin::text AS version"
                 " FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
                 " WHERE t.tgrelid = 'api_tokens'::regclass AND t.tgname = 'api_tokens_announce_change'")
RECONNECT_SECONDS = 1.0
# More distinct tokens than any deployment issues; past it the memory starts afresh.
MAX_ENTRIES = 10_000

log = structlog.get_logger("wa_archive.access")


@dataclass(frozen=True)
class _Confirmed:
    caller: Caller
    checked_at: float  # time.monotonic() when the confirming check began


class TokenCache:
    """The caller of a token (None: unknown or revoked), from memory when the rules above allow."""

    def __init__(self, pool: asyncpg.Pool, dsn: str | None, *, max_age: float,
                 check: Callable[[asyncpg.Pool, str], Awaitable[Caller | None]] = authenticate) -> None:
        self._pool = pool
        self._check = check  # the database's answer (tokens.authenticate)
        self._dsn = dsn
        self._max_age = max_age
        self._confirmed: dict[str, _Confirmed] = {}
        self._changes = 0  # notifications heard, and connections lost or made
        self._listening = False
        self._awaited: tuple[str, asyncio.Event] | None = None  # the proof's notification, until heard

    @property
    def enabled(self) -> bool:
        return self._dsn is not None and self._max_age > 0

    @property
    def listening(self) -> bool:
        return self._listening

    async def caller(self, token: str) -> Caller | None:
        key = token_hash(token)
        began = time.monotonic()
        known = self._confirmed.get(key)
        if known is not None and self._listening and began - known.checked_at < self._max_age:
            metrics.api_token_checked("memory")
            return known.caller
        changes = self._changes
        caller = await self._check(self._pool, token)
        metrics.api_token_checked("database")
        if caller is None:
            self._confirmed.pop(key, None)
        elif self._listening and changes == self._changes and self.enabled:
            if len(self._confirmed) >= MAX_ENTRIES:
                self._confirmed.clear()
            self._confirmed[key] = _Confirmed(caller, began)
        return caller

    def forget_all(self) -> None:
        """Forget every token, and any answer still on its way from the database."""
        self._changes += 1
        self._confirmed.clear()

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith(BEAT):  # a proof's (this server's or another's): not a change
            if self._awaited is not None and payload == self._awaited[0]:
                self._awaited[1].set()
            return
        self.forget_all()

    def _lost(self, *_: Any) -> None:
        self._listening = False
        self.forget_all()

    async def _prove(self, conn: asyncpg.Connection, announced: str | None) -> str:
        """Raises unless a notification sent through the pool reaches `conn` within a heartbeat and the
        announcing trigger is enabled ALWAYS and, once `announced` (its row's version at the first
        proof) is known, unchanged; returns that version."""
        state = await conn.fetchrow(TRIGGER_STATE, timeout=HEARTBEAT_SECONDS)
        if state is None or state["tgenabled"] != "A":
            raise TokenChangesUnheard("changes to api_tokens are not announced (migration 023's trigger is"
                               f" {'missing' if state is None else 'not enabled ALWAYS'})")
        if announced is not None and state["version"] != announced:
            raise TokenChangesUnheard("the trigger announcing changes to api_tokens, or its function, was altered"
                               " (disabled and enabled again?): a change may have gone unannounced")
        beat = BEAT + secrets.token_hex(8)
        heard = asyncio.Event()
        self._awaited = (beat, heard)
        try:
            await self._pool.execute("SELECT pg_notify($1, $2)", CHANNEL, beat, timeout=HEARTBEAT_SECONDS)
            try:
                await asyncio.wait_for(heard.wait(), HEARTBEAT_SECONDS)
            except TimeoutError:
                raise TokenChangesUnheard("a notification sent through the pool did not reach the listening connection"
                                   " (a pooler in transaction mode, or another server?)") from None
        finally:
            self._awaited = None
        return str(state["version"])

    async def run(self) -> None:
        """Listen for as long as the task runs, connecting again after any loss (nothing is remembered
        meanwhile). Does nothing when the memory is off."""
        if not self.enabled:
            return
        assert self._dsn is not None
        failing = False  # logged once per outage, not once per attempt
        # Ends when its task is cancelled; a cancellation swallowed on the way (Python 3.11's wait_for under
        # asyncpg's timeouts) is repeated by webhook.deps.run_while_serving, which owns the task.
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=10,
                                             server_settings={"application_name": APPLICATION_NAME})
                conn.add_termination_listener(self._lost)
                await conn.add_listener(CHANNEL, self._heard)
                announced = await self._prove(conn, None)
                self.forget_all()
                self._listening = True
                if failing:
                    log.info("api_token_listener_back")
                    failing = False
                while not conn.is_closed():
                    await asyncio.sleep(HEARTBEAT_SECONDS)
                    await self._prove(conn, announced)
            except Exception as exc:  # noqa: BLE001 - whatever it was, nothing is remembered until listening again
                if not failing:
                    log.warning("api_token_listener_lost", error=repr(exc),
                                consequence="every API token is checked in the database until it is back")
                failing = True
            finally:
                self._lost()
                if conn is not None:
                    with suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(RECONNECT_SECONDS)
