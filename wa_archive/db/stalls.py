"""The ledger's statements that no session of the application role may hold up for long.

The owner's ledger functions are serialised by locks the application role cannot take by itself
(migration 025), but it may call those functions (the worker, which connects as that role, must) inside a
transaction it then keeps open, and hold their locks for as long as it likes; an uncommitted INSERT of a
checkpoint's tree size holds up the checkpoint the same way. None of the archive's own transactions holds
such a lock while idle: integration, tiles and checkpoints are each a statement of their own. So a call
that has waited STALL_SECONDS ends the sessions of its own role that block it while idle in a transaction
(for at least that long), names them in the log, and goes on waiting for whatever else blocks it (a
session of another role is never ended: the log names it all the same).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import TypeVar

import asyncpg
import structlog

T = TypeVar("T")

STALL_SECONDS = 10.0

log = structlog.get_logger("wa_archive.ledger")

_BLOCKERS = """
SELECT a.pid, a.usename, a.application_name, a.client_addr::text AS client_addr, a.state,
       extract(epoch FROM now() - a.state_change)::float8 AS idle_seconds,
       CASE WHEN a.usename = current_user AND a.state LIKE 'idle in transaction%'
                 AND a.state_change < now() - make_interval(secs => $2)
            THEN pg_terminate_backend(a.pid) ELSE false END AS ended
  FROM pg_stat_activity a
 WHERE a.pid = ANY(pg_blocking_pids($1))
"""


async def unstalled(pool: asyncpg.Pool, statement: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """What `statement(conn)` returns, on a connection of its own, ending idle sessions of this role that
    hold it up (see above)."""
    async with pool.acquire() as conn:
        pid = conn.get_server_pid()
        running = asyncio.ensure_future(statement(conn))
        try:
            while True:
                done, _ = await asyncio.wait({running}, timeout=STALL_SECONDS)
                if done:
                    return running.result()
                for blocker in await pool.fetch(_BLOCKERS, pid, STALL_SECONDS):
                    log.error("ledger_statement_blocked", **dict(blocker))
        finally:
            if not running.done():
                running.cancel()
                with suppress(BaseException):
                    await running
