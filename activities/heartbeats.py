"""Heartbeats for activities whose work is a few long database statements with no progress to report.

An attempt on a worker that died is given up at its heartbeat timeout rather than its start-to-close (or
schedule-to-close) timeout; for work whose Schedule waits while a run is going (the ledger's integrator,
whose runs last minutes, and its checkpoint), that is the difference between seconds and minutes
without the work being done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from temporalio import activity

BEATS_PER_TIMEOUT = 4  # a late beat or two under load still lands inside the timeout


@contextlib.asynccontextmanager
async def beating() -> AsyncIterator[None]:
    """Heartbeat on a timer while the body runs; nothing to do when the activity has no heartbeat timeout."""
    timeout = activity.info().heartbeat_timeout
    if not timeout:
        yield
        return
    every = timeout.total_seconds() / BEATS_PER_TIMEOUT

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    ticker = asyncio.create_task(beat())
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
