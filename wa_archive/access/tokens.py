"""API tokens: shown once, stored only as a SHA-256, carried as `Authorization: Bearer <token>`."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import asyncpg

from wa_archive.errors import TokenError

ROLES = ("sender", "auditor", "operator", "admin")
PREFIX = "wa_"


@dataclass(frozen=True)
class Caller:
    """Who is calling, as the token says."""

    name: str
    role: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(pool: asyncpg.Pool, name: str, role: str) -> str:
    """A new token for `name` with `role`; the token itself is returned once and never stored."""
    if role not in ROLES:
        raise TokenError(f"role must be one of {', '.join(ROLES)}")
    if not name.strip():
        raise TokenError("name must not be empty")
    token = PREFIX + secrets.token_urlsafe(32)
    try:
        await pool.execute("INSERT INTO api_tokens (name, role, token_sha256) VALUES ($1, $2, $3)",
                           name, role, token_hash(token))
    except asyncpg.UniqueViolationError:
        raise TokenError(f"a token named {name!r} already exists") from None
    return token


async def unused_name(pool: asyncpg.Pool, base: str) -> str:
    """`base`, or `base-2`, `base-3`, ... : the first name no token has (revoked ones included)."""
    taken = {r["name"] for r in await pool.fetch(
        "SELECT name FROM api_tokens WHERE name = $1 OR starts_with(name, $1 || '-')", base)}
    return next(n for n in (base, *(f"{base}-{i}" for i in range(2, len(taken) + 3))) if n not in taken)


async def list_tokens(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT name, role, created_at, revoked_at, last_used_at FROM api_tokens ORDER BY id")
    return [{"name": r["name"], "role": r["role"], "created_at": r["created_at"].isoformat(),
             "revoked_at": r["revoked_at"].isoformat() if r["revoked_at"] else None,
             "last_used_at": r["last_used_at"].isoformat() if r["last_used_at"] else None} for r in rows]


async def revoke_token(pool: asyncpg.Pool, name: str) -> None:
    status = await pool.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL", name)
    if status.endswith(" 0"):
        raise TokenError(f"no active token named {name!r}")


async def authenticate(pool: asyncpg.Pool, token: str) -> Caller | None:
    """The caller a token belongs to, or None when it is unknown or revoked."""
    row = await pool.fetchrow(
        "SELECT id, name, role, last_used_at > now() - interval '1 minute' AS recent FROM api_tokens"
        " WHERE token_sha256 = $1 AND revoked_at IS NULL", token_hash(token))
    if row is None:
        return None
    if not row["recent"]:  # last use to the minute: not a write on every request
        await pool.execute("UPDATE api_tokens SET last_used_at = now() WHERE id = $1", row["id"])
    return Caller(row["name"], row["role"])
