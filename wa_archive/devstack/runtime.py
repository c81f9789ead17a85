"""Process setup shared by every long-running command: logging, the Postgres pool, retention rules."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

import asyncpg
import structlog

from wa_archive.config import Settings
from wa_archive.db import create_pool

if TYPE_CHECKING:
    from wa_archive.retention.policies import RetentionRules


def configure_logging(level: str = "INFO") -> None:
    """JSON log lines on stderr, one per event, with ISO timestamps."""
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


async def connect_db(settings: Settings, *, max_size: int = 10) -> asyncpg.Pool:
    settings.require("database_url")
    assert settings.database_url  # require() raised ConfigError if it is unset
    return await create_pool(settings.database_url, max_size=max_size)


def retention_rules(settings: Settings) -> RetentionRules:
    """The configured default retention and minimum lock, for the activities that archive."""
    from wa_archive.retention.policies import RetentionRules

    return RetentionRules(default_days=settings.retention_days, min_lock_seconds=settings.min_lock_seconds)
