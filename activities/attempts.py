"""Record every failed attempt of an activity, since Temporal's history keeps only the last one."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from wa_archive.db import queries
from wa_archive.errors import NON_RETRYABLE, ArchiveError

log = structlog.get_logger("wa_archive.activities")

T = TypeVar("T")


class HoldsPool(Protocol):
    """An activities class whose failed attempts can be recorded: it holds the database pool."""

    pool: asyncpg.Pool


def record_attempts(
    stage: str, target: Callable[[Any], tuple[str, str | None]]
) -> Callable[[Callable[..., Awaitable[T]]], Callable[..., Awaitable[T]]]:
    """Decorate an activity method: on failure write an attempt row, then fail with a typed error.

    `target(input)` gives (message_id, media_id) for the row; the class must hold `pool`. The attempt
    row is best effort: when Postgres itself is the failure, the error is still raised and logged.
    """

    def decorate(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        @functools.wraps(fn)
        async def wrapper(self: HoldsPool, inp: Any) -> T:
            try:
                return await fn(self, inp)
            except ApplicationError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is recorded, then re-raised
                info = activity.info()
                message_id, media_id = target(inp)
                error_type = type(exc).__name__
                http_status = exc.http_status if isinstance(exc, ArchiveError) else None
                error = str(exc) or repr(exc)
                log.warning("attempt_failed", message_id=message_id, stage=stage,
                            attempt=info.attempt, error_type=error_type, http_status=http_status)
                try:
                    await queries.record_attempt(
                        self.pool, message_id=message_id, stage=stage, media_id=media_id,
                        attempt=info.attempt, error_type=error_type, error=error,
                        http_status=http_status, workflow_id=info.workflow_id,
                        run_id=info.workflow_run_id,
                    )
                except Exception as db_exc:  # noqa: BLE001
                    log.error("attempt_not_recorded", message_id=message_id, error=repr(db_exc))
                raise ApplicationError(
                    error, {"http_status": http_status}, type=error_type,
                    non_retryable=error_type in NON_RETRYABLE,
                ) from exc

        return wrapper

    return decorate
