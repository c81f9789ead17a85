"""Bearer-token authentication and role checks for the archive's own API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from wa_archive.access.tokens import Caller, authenticate

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CALLER = web.RequestKey("caller", Caller)


def require(*roles: str, pool_of: Callable[[web.Request], object]) -> Callable[[Handler], Handler]:
    """401 without a valid, unrevoked token; 403 when the token's role is not among `roles`
    (admin may do everything)."""

    def decorate(handler: Handler) -> Handler:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return _json_error(401, "an API token is required: Authorization: Bearer <token>",
                                   challenge=True)
            caller = await authenticate(pool_of(request), token.strip())
            if caller is None:
                return _json_error(401, "the API token is unknown or revoked", challenge=True)
            if caller.role not in roles and caller.role != "admin":
                return _json_error(403, f"role {caller.role!r} may not do this; needs {' or '.join(roles)}")
            request[CALLER] = caller
            return await handler(request)

        return wrapper

    return decorate


def _json_error(status: int, message: str, *, challenge: bool = False) -> web.Response:
    headers = {"WWW-Authenticate": "Bearer"} if challenge else None
    return web.json_response({"error": message}, status=status, headers=headers)
