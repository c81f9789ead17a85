"""One-time sign-in links for the pages: a random code bound to one API token, shown once on the
terminal that made it, stored only as a SHA-256, spent by the first sign-in, dead after a few minutes
or once its token is revoked.

The code travels in the URL's fragment (`/ui/login/link#code=…`), never in its path or query: a
browser sends no fragment to the server, so it reaches neither the server's nor a proxy's access
log, nor a Referer header. The page reads it there, takes it out of the address bar, and posts it
back with the login form's CSRF value; the code is spent by that POST only, never by a GET, so a
link previewer that fetches the URL spends nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from wa_archive.access.sessions import open_session_for
from wa_archive.access.tokens import Caller
from wa_archive.db import sign_in_links as db
from wa_archive.errors import TokenError

# The roles some page lets in (webhook/ui.py: search and messages for auditors and admins, failures
# for operators and admins); a sender's token opens no page, so it gets no link.
PAGE_ROLES = ("auditor", "operator", "admin")
DEFAULT_MINUTES = 10
MAX_MINUTES = 60
LINK_PATH = "/ui/login/link"
# Where each role lands once signed in: the first page it may open.
LANDING = {"operator": "/ui/failures"}
# token_urlsafe(32) gives 43 characters; anything much longer is not one of ours and is not hashed.
_MAX_CODE_CHARS = 100


@dataclass(frozen=True)
class NewLink:
    code: str
    name: str
    role: str
    expires_at: datetime


@dataclass(frozen=True)
class SignedIn:
    session_id: str
    caller: Caller

    @property
    def landing(self) -> str:
        return LANDING.get(self.caller.role, "/ui/")


@dataclass(frozen=True)
class LinkRefused:
    """Why a link signs no one in: a reason for the access log, an HTTP status, words for the reader,
    and whose link it was when that is known."""

    reason: str
    status: int
    message: str
    caller: Caller | None = None


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def link_url(base_url: str, code: str) -> str:
    return f"{base_url.rstrip('/')}{LINK_PATH}#code={code}"


async def create_link(pool: asyncpg.Pool, name: str, minutes: int = DEFAULT_MINUTES) -> NewLink:
    """A new single-use code for the unrevoked token `name`, valid `minutes`; the code is returned once
    and never stored."""
    if not 1 <= minutes <= MAX_MINUTES:
        raise TokenError(f"--minutes must be between 1 and {MAX_MINUTES}")
    token = await db.active_token(pool, name)
    if token is None:
        raise TokenError(f"no active token named {name!r} (`tokens list` shows them; `tokens create` makes one)")
    if token["role"] not in PAGE_ROLES:
        raise TokenError(f"token {name!r} has the role {token['role']}, which opens no page; sign-in links are "
                         f"for {', '.join(PAGE_ROLES)} tokens")
    code = secrets.token_urlsafe(32)
    row = await db.insert_link(pool, code_hash(code), token["id"], minutes)
    return NewLink(code, token["name"], token["role"], row["expires_at"])


async def sign_in_with(pool: asyncpg.Pool, code: str) -> SignedIn | LinkRefused:
    """Spend the link and open a session for its token, in one transaction; or say why not."""
    code = code.strip()
    if not code or len(code) > _MAX_CODE_CHARS:
        return _unknown()
    digest = code_hash(code)
    async with pool.acquire() as conn, conn.transaction():
        token = await db.spend_link(conn, digest, PAGE_ROLES)
        if token is not None:
            session_id = await open_session_for(conn, token["id"])
            return SignedIn(session_id, Caller(token["name"], token["role"]))
    return await _why_refused(pool, digest)


async def _why_refused(pool: asyncpg.Pool, digest: str) -> LinkRefused:
    state = await db.link_state(pool, digest)
    if state is None:
        return _unknown()
    caller = Caller(state["name"], state["role"])
    again = f"ask for a new one: wa-archive tokens sign-in-link --name {state['name']}"
    if state["used_at"] is not None:
        return LinkRefused("sign_in_link_used", 410, f"This sign-in link was already used (each link signs in "
                           f"once); {again}", caller)
    if state["revoked_at"] is not None:
        return LinkRefused("sign_in_link_token_revoked", 401, "The token this sign-in link was made for has been "
                           "revoked; the link signs no one in.", caller)
    if state["expired"]:
        return LinkRefused("sign_in_link_expired", 410, f"This sign-in link expired at "
                           f"{state['expires_at']:%Y-%m-%d %H:%M} UTC; {again}", caller)
    return LinkRefused("role_not_allowed", 403, f"The role {state['role']} opens no page.", caller)


def _unknown() -> LinkRefused:
    return LinkRefused("sign_in_link_unknown", 401, "This sign-in link is not valid: check that it was copied "
                       "whole, or ask for a new one (wa-archive tokens sign-in-link --name NAME).")
