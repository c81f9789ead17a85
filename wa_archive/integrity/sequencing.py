"""Batched sequencing of the ledger: records add leaf candidates in their own transactions, with no
row shared between writers, and the integrator numbers them into the log.

Integration runs every WA_ARCHIVE_LEDGER_INTEGRATE_EVERY seconds, before every checkpoint, and on
demand. The periodic runs are long: a Temporal Schedule starts one LedgerIntegrate run every
RUN_SECONDS, which integrates every interval for a little longer than that, so the next start is
always waiting and follows at once (integrate_until below). One workflow execution every five minutes
rather than one a second: Temporal's history and visibility keep 288 runs a day instead of 86,400,
and the server's work for them, which under load was taken from the writers on the same machine
(bench/ledger.py), all but goes. Calls are serialised inside the database (ledger_integrate() locks
the head's row, which the application role cannot lock), so any number of callers is safe. Each batch
is one transaction: its leaves are numbered after the head, in candidate order, with no gap, and the
head moves with them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

import asyncpg

from wa_archive.db import ledger_candidates, ledger_tiles
from wa_archive.db.stalls import unstalled
from wa_archive.observability import metrics

DEFAULT_EVERY = 1.0  # seconds: the default of WA_ARCHIVE_LEDGER_INTEGRATE_EVERY (config.py)
# Candidates integrated per transaction: large enough that a backlog drains in a few batches, small
# enough that one batch's transaction stays short.
INTEGRATE_BATCH = 5_000
# Batches per call at most: a writer adding candidates faster than they are integrated must not keep a
# call (and the checkpoint that integrates first) from ever returning. The rest wait for the next call.
INTEGRATE_BATCHES_PER_CALL = 10
# `verify` calls a candidate left waiting longer than this many integration intervals a problem,
# and never less than PENDING_BOUND_FLOOR seconds (a Schedule run can be late by a few seconds
# under load without anything being wrong).
PENDING_BOUND_INTERVALS = 10
PENDING_BOUND_FLOOR = 60.0


# One LedgerIntegrate run every this many seconds (its Schedule's interval), integrating every interval
# for RUN_SECONDS and two intervals more: past the next start, which waits for it (overlap: buffer one).
RUN_SECONDS = 300.0


def run_span(every: float) -> float:
    """Seconds between two starts of the integrator's Schedule: RUN_SECONDS, or ten intervals if longer."""
    return max(RUN_SECONDS, 10 * every)


def run_for(every: float) -> float:
    """How long one run integrates: past the next start by two intervals, so no gap opens between runs."""
    return run_span(every) + 2 * every


# Beyond the length of a run, how long its last attempt may still take (a last integration, a slow
# statement), and how much longer the run as a whole may last before it gives way to the next: a run
# that never gets going (its task queue polled by no worker any more) must not hold the Schedule, whose
# next start waits for it.
RUN_MARGIN_SECONDS = 60.0
RUN_OVERTIME_SECONDS = 3 * RUN_MARGIN_SECONDS


def pending_bound(every: float) -> float:
    """Seconds after which an unintegrated candidate means the integrator is not running."""
    return max(PENDING_BOUND_INTERVALS * every, PENDING_BOUND_FLOOR)


def retry_after(every: float) -> int:
    """Whole seconds after which a receipt asked for too early can be asked for again: the
    integration lag stays within two intervals."""
    return max(1, math.ceil(2 * every))


async def integrate(pool: asyncpg.Pool, *, batch: int = INTEGRATE_BATCH) -> int:
    """Integrate the candidates committed so far, in batches (at most INTEGRATE_BATCHES_PER_CALL), then
    write the tiles of the blocks of leaves they completed; returns how many leaves were added."""
    added = 0
    for _ in range(INTEGRATE_BATCHES_PER_CALL):
        waits = await unstalled(pool, lambda conn: ledger_candidates.integrate(conn, batch))
        metrics.ledger_integrated(waits)
        added += len(waits)
        if len(waits) < batch:
            break
    # Its own statement after the batches, so the integration's transaction (and the head's row lock)
    # is no longer for it; a tile not written here is written by the next run, and readers hash a
    # block without its tile from its leaves meanwhile.
    await unstalled(pool, ledger_tiles.write_all)
    return added


async def integrate_until(pool: asyncpg.Pool, until: datetime, every: float,
                          shutting_down: Callable[[], Awaitable[object]]) -> tuple[int, bool]:
    """Integrate now and every `every` seconds until `until` (at once again while a call was cut short by
    its bound: a backlog is worked off without waiting), or until `shutting_down()` completes (the worker
    stopping: whoever started this asks another worker for the rest); how many leaves were added, and
    whether it stopped for the worker."""
    added = 0
    stopping = asyncio.ensure_future(shutting_down())
    try:
        while True:
            began = time.monotonic()
            taken = await integrate(pool)
            added += taken
            left = (until - datetime.now(timezone.utc)).total_seconds()
            if left <= 0 or stopping.done():
                return added, stopping.done()
            backlog = taken >= INTEGRATE_BATCH * INTEGRATE_BATCHES_PER_CALL
            pause = 0.0 if backlog else min(left, max(0.0, every - (time.monotonic() - began)))
            await asyncio.wait({stopping}, timeout=pause)
            if stopping.done():
                return added, True
    finally:
        stopping.cancel()
