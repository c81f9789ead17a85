"""Postgres connection pool and the numbered SQL migrations."""

from __future__ import annotations

import json
from importlib import resources

import asyncpg

from wa_archive.db.roles import apply_roles
from wa_archive.errors import MigrateAsAppRole

# Serialized so concurrent `migrate` runs (several workers starting at once) cannot interleave.
_MIGRATION_LOCK = 0x77615F61  # "wa_a"
DEFAULT_APP_ROLE = "wa_archive_app"


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's default reset query on release: the archive never changes session state
    (no SET, LISTEN or advisory locks on pooled connections), and the extra round trip per
    request is measurable on the webhook's hot path."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections read and write jsonb as Python objects."""
    return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                     init=_init_connection, reset=_keep_session)


async def ping(pool: asyncpg.Pool, *, timeout: float) -> None:
    """Raise unless the database answers within `timeout` seconds (readiness checks)."""
    await pool.fetchval("SELECT 1", timeout=timeout)


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration shipped with the package, in order."""
    found = []
    for item in resources.files("wa_archive.db.migrations").iterdir():
        if item.name.endswith(".sql"):
            version = int(item.name.split("_", 1)[0])
            found.append((version, item.name, item.read_text()))
    return sorted(found)


async def migrate(dsn: str, *, app_role: str = DEFAULT_APP_ROLE, until: int | None = None) -> list[str]:
    """Apply pending migrations as the schema owner, each in its own transaction, then give
    `app_role` its grants again (so new tables and columns get them too); returns the names applied.

    `until` stops after that version (tests of a migration build the schema it starts from)."""
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        if await conn.fetchval("SELECT current_user") == app_role:
            raise MigrateAsAppRole(
                f"migrate connected as the application role {app_role!r}, which may not change the schema;"
                " set WA_ARCHIVE_MIGRATE_DATABASE_URL to the schema owner's URL")
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, name, sql in migration_files():
                if version in done or (until is not None and version > until):
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                    )
                applied.append(name)
            async with conn.transaction():
                await apply_roles(conn, app_role)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied
