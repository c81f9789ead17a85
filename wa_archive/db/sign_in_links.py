"""SQL of one-time sign-in links (table ui_sign_in_links): create one, spend one, and say why one
cannot be spent."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg

Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection


async def active_token(db: Executor, name: str) -> asyncpg.Record | None:
    """The unrevoked token called `name` (id, name, role), or None."""
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT id, name, role FROM api_tokens WHERE name = $1 AND revoked_at IS NULL", name)
    return row


async def insert_link(db: Executor, code_sha256: str, token_id: int, minutes: int) -> asyncpg.Record:
    """A new link for the token, valid `minutes` from now; returns its expires_at."""
    row: asyncpg.Record = await db.fetchrow(
        "INSERT INTO ui_sign_in_links (code_sha256, token_id, expires_at)"
        " VALUES ($1, $2, now() + make_interval(mins => $3)) RETURNING expires_at",
        code_sha256, token_id, minutes)
    return row


async def spend_link(db: Executor, code_sha256: str, roles: tuple[str, ...]) -> asyncpg.Record | None:
    """Mark the link used, if it is unused, unexpired, its token unrevoked and of one of `roles`;
    returns the token (id, name, role), or None. One statement: of two requests with the same code,
    the second waits on the first's row lock and then finds it used."""
    row: asyncpg.Record | None = await db.fetchrow(
        "UPDATE ui_sign_in_links l SET used_at = now() FROM api_tokens t"
        " WHERE l.code_sha256 = $1 AND t.id = l.token_id AND l.used_at IS NULL AND l.expires_at > now()"
        " AND t.revoked_at IS NULL AND t.role = ANY($2::text[])"
        " RETURNING t.id, t.name, t.role", code_sha256, list(roles))
    return row


async def link_state(db: Executor, code_sha256: str) -> asyncpg.Record | None:
    """What stands in the way of a link that could not be spent: used_at, expired, its token's
    name, role and revoked_at; None when no such link was ever made."""
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT l.used_at, l.expires_at <= now() AS expired, l.expires_at, t.name, t.role, t.revoked_at"
        " FROM ui_sign_in_links l JOIN api_tokens t ON t.id = l.token_id WHERE l.code_sha256 = $1",
        code_sha256)
    return row
