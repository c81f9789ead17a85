"""Process setup shared by every long-running command: the Postgres pool, retention rules (logging: wa_archive.logs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg

from wa_archive.config import Settings
from wa_archive.db import create_pool

if TYPE_CHECKING:
    from wa_archive.retention.policies import RetentionRules


async def connect_db(settings: Settings, *, max_size: int = 10) -> asyncpg.Pool:
    settings.require("database_url")
    assert settings.database_url  # require() raised ConfigError if it is unset
    return await create_pool(settings.database_url, max_size=max_size)


def retention_rules(settings: Settings) -> RetentionRules:
    """The configured default retention and minimum lock, for the activities that archive."""
    from wa_archive.retention.policies import RetentionRules

    return RetentionRules(default_days=settings.retention_days, min_lock_seconds=settings.min_lock_seconds)
