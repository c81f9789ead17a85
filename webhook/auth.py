"""Bearer-token authentication and role checks for the archive's own API, and refused attempts
(401 and 403, on the API and the pages) written to the access log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

from wa_archive.access.refusals import Refusal, RefusalLog
from wa_archive.access.token_cache import TokenCache
from wa_archive.access.tokens import Caller, authenticate
from webhook.deps import run_while_serving

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CALLER = web.RequestKey("caller", Caller)
REFUSALS = web.AppKey("refusals", RefusalLog)
TOKENS = web.AppKey("tokens", TokenCache)


def require(*roles: str, pool_of: Callable[[web.Request], object]) -> Callable[[Handler], Handler]:
    """401 without a valid, unrevoked token; 403 when the token's role is not among `roles`
    (admin may do everything). Either refusal is written to the access log (the token never is)."""

    def decorate(handler: Handler) -> Handler:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                await note_refusal(request, "no_token")
                return _json_error(401, "an API token is required: Authorization: Bearer <token>",
                                   challenge=True)
            caller = await check_token(request, token.strip(), pool_of)
            if caller is None:
                await note_refusal(request, "invalid_token")
                return _json_error(401, "the API token is unknown or revoked", challenge=True)
            if caller.role not in roles and caller.role != "admin":
                await note_refusal(request, "role_not_allowed", caller)
                return _json_error(403, f"role {caller.role!r} may not do this; needs {' or '.join(roles)}")
            request[CALLER] = caller
            return await handler(request)

        return wrapper

    return decorate


async def check_token(request: web.Request, token: str, pool_of: Callable[[web.Request], object]) -> Caller | None:
    """The token's caller (None: unknown or revoked), through the app's token memory when it has one."""
    tokens = request.app.get(TOKENS)
    if tokens is not None:
        return await tokens.caller(token)
    return await authenticate(pool_of(request), token)


async def note_refusal(request: web.Request, reason: str, caller: Caller | None = None) -> None:
    """A refused request, in the access log (rate-bounded: see wa_archive.access.refusals)."""
    who = {"actor": caller.name, "role": caller.role} if caller is not None else {}
    await request.app[REFUSALS].note(Refusal(reason=reason, method=request.method, path=request.path,
                                             remote=request.remote, **who))


def install_refusal_log(app: web.Application, pool: asyncpg.Pool) -> None:
    """The app's refusal log, its minute rolled over on a timer and its counts written on a clean stop."""
    refusals = RefusalLog(pool)
    app[REFUSALS] = refusals
    run_while_serving(app, refusals.run, then=refusals.flush)


def install_token_cache(app: web.Application, pool: asyncpg.Pool, dsn: str | None, max_age: float) -> None:
    """The app's memory of confirmed API tokens, listening for changes to them while the app runs."""
    tokens = TokenCache(pool, dsn, max_age=max_age)
    app[TOKENS] = tokens
    run_while_serving(app, tokens.run)


def _json_error(status: int, message: str, *, challenge: bool = False) -> web.Response:
    headers = {"WWW-Authenticate": "Bearer"} if challenge else None
    return web.json_response({"error": message}, status=status, headers=headers)
