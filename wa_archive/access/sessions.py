"""Web sessions: a random cookie (only its hash stored) tied to an API token, with a CSRF secret."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import asyncpg

from wa_archive.access.tokens import Caller, token_hash

LIFETIME_HOURS = 8


@dataclass(frozen=True)
class Session:
    caller: Caller
    csrf: str


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


async def open_session(pool: asyncpg.Pool, token: str) -> str | None:
    """A new session id for a valid token, or None."""
    row = await pool.fetchrow("SELECT id FROM api_tokens WHERE token_sha256 = $1 AND revoked_at IS NULL",
                              token_hash(token))
    if row is None:
        return None
    return await open_session_for(pool, row["id"])


async def open_session_for(db: asyncpg.Pool | asyncpg.Connection, token_id: int) -> str:
    """A new session id for the token with this id (already checked by the caller: a sign-in link
    opens it in the transaction that spends the link)."""
    session_id = secrets.token_urlsafe(32)
    await db.execute(
        "INSERT INTO ui_sessions (id_sha256, token_id, csrf, expires_at)"
        " VALUES ($1, $2, $3, now() + make_interval(hours => $4))",
        _hash(session_id), token_id, secrets.token_urlsafe(24), LIFETIME_HOURS)
    return session_id


async def load_session(pool: asyncpg.Pool, session_id: str) -> Session | None:
    """The session, if it exists, has not expired, and its token is still valid."""
    row = await pool.fetchrow(
        "SELECT t.name, t.role, s.csrf FROM ui_sessions s JOIN api_tokens t ON t.id = s.token_id"
        " WHERE s.id_sha256 = $1 AND s.expires_at > now() AND t.revoked_at IS NULL", _hash(session_id))
    return Session(Caller(row["name"], row["role"]), row["csrf"]) if row else None


async def close_session(pool: asyncpg.Pool, session_id: str) -> None:
    await pool.execute("DELETE FROM ui_sessions WHERE id_sha256 = $1", _hash(session_id))
