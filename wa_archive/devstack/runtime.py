"""Process setup shared by every long-running command: the Postgres pool, retention rules (logging: wa_archive.logs)."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlparse

import asyncpg

from wa_archive.config import Settings
from wa_archive.db import create_pool
from wa_archive.errors import DatabaseConnectError

if TYPE_CHECKING:
    from wa_archive.retention.policies import RetentionRules


async def connect_db(settings: Settings, *, max_size: int = 10) -> asyncpg.Pool:
    """The application role's pool; a failure to connect names the server and the variable, never the password."""
    settings.require("database_url")
    assert settings.database_url  # require() raised ConfigError if it is unset
    try:
        return await create_pool(settings.database_url, max_size=max_size)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:  # OSError: TimeoutError too
        raise DatabaseConnectError(database_failure(settings.database_url, "WA_ARCHIVE_DATABASE_URL", exc)) from exc


def database_failure(url: str, variable: str, exc: BaseException) -> str:
    """Why PostgreSQL at `url` could not be used, in our words: where, set by which variable, and the
    likely cause; the URL's password is never repeated."""
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    host = parsed.hostname or (query.get("host") or ["localhost"])[0]
    where = f"{host}:{parsed.port or (query.get('port') or ['5432'])[0]}"
    database = parsed.path.lstrip("/") or parsed.username or "?"
    if isinstance(exc, ConnectionRefusedError):
        cause = "nothing accepts connections at this address (PostgreSQL is not running, or on another port)"
    elif isinstance(exc, socket.gaierror):
        cause = f"the host name {host!r} does not resolve"
    elif isinstance(exc, TimeoutError):
        cause = "no answer in time (a firewall, or the wrong host)"
    elif isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        cause = f"it refused the credentials of the user {parsed.username!r}"
    elif isinstance(exc, asyncpg.InvalidCatalogNameError):
        cause = f"it has no database {database!r}"
    else:
        cause = f"{type(exc).__name__}: {exc}".replace(parsed.password or "\0", "***")
    return f"cannot connect to PostgreSQL at {where} (database {database}; from {variable}): {cause}"


def retention_rules(settings: Settings) -> RetentionRules:
    """The configured default retention and minimum lock, for the activities that archive."""
    from wa_archive.retention.policies import RetentionRules

    return RetentionRules(default_days=settings.retention_days, min_lock_seconds=settings.min_lock_seconds)
