"""The codec server: Temporal's remote codec protocol, so that operators can read the archive's
encrypted workflow histories in the Temporal UI or CLI, one logged request at a time.

`POST /codec/decode` and `POST /codec/encode` take and return `{"payloads": [...]}` (Payloads in
protobuf JSON, data base64). The same handlers answer under `/ui/codec/...`, where the browser sends the
signed-in session cookie of the archive's pages (its path is /ui): that is how the Temporal UI, which
cannot hold an archive token, authenticates. The CLI sends a Bearer token
(`temporal workflow show --codec-endpoint ... --codec-auth "Bearer <token>"`).

Only operators and admins may use it. Every request is written to the access log, naming the caller,
the namespace and the workflows whose payloads were decoded, before anything decoded is sent; a
request whose access cannot be recorded is refused (503). Cross-origin calls are allowed only from
the configured Temporal UI origins (WA_ARCHIVE_TEMPORAL_UI_ORIGIN).
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from wa_archive import access_log
from wa_archive.json_input import storable_text
from wa_archive.payload_codec import AesGcmPayloadCodec, ENCODING, workflow_of
from wa_archive.runtime import payload_keys
from wa_archive.tokens import Caller, authenticate
from webhook.deps import DEPS, deps_of, json_error, pool_of, read_body

log = structlog.get_logger("wa_archive.codec")

ROLES = ("operator", "admin")
PATHS = ("/codec", "/ui/codec")
# A page of history can carry many large payloads; the caller is authenticated before this is read.
MAX_BODY_BYTES = 32 * 1024 * 1024
CODEC = web.AppKey("payload_codec", AesGcmPayloadCodec)
ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization, Authorization-Extras"
# The access log names at most this many workflows per request, then counts the rest.
LOGGED_WORKFLOWS = 100


def allowed_origins(request: web.Request) -> frozenset[str]:
    return deps_of(request).settings.temporal_ui_origins


def _cors_headers(request: web.Request) -> dict[str, str]:
    """CORS for a configured UI origin (credentials included, so the session cookie can be sent);
    nothing for any other origin, which the browser then refuses to read."""
    origin = request.headers.get("Origin")
    if origin is None or origin not in allowed_origins(request):
        return {"Vary": "Origin"}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


async def preflight(request: web.Request) -> web.Response:
    """OPTIONS: the browser's question before a cross-origin POST with a JSON body."""
    headers = _cors_headers(request)
    if "Access-Control-Allow-Origin" not in headers:
        return json_error(403, "this origin may not call the codec server (WA_ARCHIVE_TEMPORAL_UI_ORIGIN)")
    headers.update({
        "Access-Control-Allow-Methods": "POST",
        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Max-Age": "600",
    })
    return web.Response(status=204, headers=headers)


async def _caller(request: web.Request) -> Caller | web.Response:
    """The operator or admin calling, by Bearer token or by the pages' signed-in session."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        caller = await authenticate(pool_of(request), token.strip()) if scheme.lower() == "bearer" else None
        if caller is None:
            return _refuse(request, 401, "the API token is missing, unknown or revoked")
    else:
        from webhook.ui import signed_in

        session = await signed_in(request)
        if session is None:
            return _refuse(request, 401, "sign in to the archive's pages as an operator, or send "
                                         "Authorization: Bearer <operator token>")
        # A cookie rides along with any request the browser makes; only the configured UI (or the
        # archive's own pages) may use it, as CORS alone does not stop the request being sent.
        origin = request.headers.get("Origin")
        if origin is not None and origin not in allowed_origins(request) and origin != _own_origin(request):
            return _refuse(request, 403, "this origin may not call the codec server (WA_ARCHIVE_TEMPORAL_UI_ORIGIN)")
        caller = session.caller
    if caller.role not in ROLES:
        return _refuse(request, 403, f"role {caller.role!r} may not decode workflow payloads; needs operator or admin")
    return caller


def _own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _refuse(request: web.Request, status: int, message: str) -> web.Response:
    log.warning("codec_refused", status=status, remote=request.remote)
    response = json_error(status, message)
    response.headers.update(_cors_headers(request))
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def _payloads(request: web.Request) -> Payloads | web.Response:
    if request.content_type != "application/json":
        return _refuse(request, 415, "the body must be application/json: {\"payloads\": [...]}")
    body = await read_body(request, MAX_BODY_BYTES)
    if isinstance(body, web.Response):
        return body
    try:
        return json_format.Parse(body, Payloads(), ignore_unknown_fields=True)
    except (json_format.ParseError, UnicodeDecodeError, ValueError) as exc:
        return _refuse(request, 400, f"not a Payloads JSON document ({str(exc)[:200]})")


def _namespace(request: web.Request) -> str | None:
    value = request.headers.get("X-Namespace")
    return value[:256] if value is not None and storable_text(value) else None


def _workflows(payloads: Payloads) -> dict[str, Any]:
    """Which workflows' payloads these are, from the authenticated labels the codec put on them."""
    labelled = [workflow_of(p) for p in payloads.payloads if p.metadata.get("encoding") == ENCODING]
    names = sorted({w for w in labelled if w is not None})
    return {"workflows": names[:LOGGED_WORKFLOWS], "more_workflows": max(0, len(names) - LOGGED_WORKFLOWS),
            "unlabelled": sum(1 for w in labelled if w is None)}


async def _record(request: web.Request, caller: Caller, action: str, target: dict[str, Any]) -> web.Response | None:
    try:
        await access_log.record_access(pool_of(request), actor=caller.name, role=caller.role, action=action,
                                       target=target, remote_addr=request.remote)
    except Exception as exc:  # noqa: BLE001 - unlogged reading is refused, whatever the cause
        log.error("codec_access_not_logged", error=repr(exc))
        return _refuse(request, 503, "the access log cannot be written; nothing was decoded")
    return None


async def decode(request: web.Request) -> web.Response:
    """POST .../decode: the original payloads, for an operator, logged first."""
    caller = await _caller(request)
    if isinstance(caller, web.Response):
        return caller
    payloads = await _payloads(request)
    if isinstance(payloads, web.Response):
        return payloads
    target = {"namespace": _namespace(request), "payloads": len(payloads.payloads), **_workflows(payloads)}
    refused = await _record(request, caller, "codec_decode", target)
    if refused is not None:
        return refused
    codec = request.app[CODEC]
    out = []
    undecodable = 0
    for payload in payloads.payloads:
        # One at a time: a payload sealed with a retired key (or damaged) stays as it is, and the
        # rest of the page still decodes.
        try:
            out.extend(await codec.decode([payload]))
        except Exception:  # noqa: BLE001 - unknown key id or failed authentication
            undecodable += 1
            out.append(payload)
    if undecodable:
        log.warning("codec_undecodable", count=undecodable, actor=caller.name)
    return _answer(request, out)


async def encode(request: web.Request) -> web.Response:
    """POST .../encode: payloads sealed as the archive seals them (for the UI's write actions), logged."""
    caller = await _caller(request)
    if isinstance(caller, web.Response):
        return caller
    payloads = await _payloads(request)
    if isinstance(payloads, web.Response):
        return payloads
    refused = await _record(request, caller, "codec_encode",
                            {"namespace": _namespace(request), "payloads": len(payloads.payloads)})
    if refused is not None:
        return refused
    return _answer(request, await request.app[CODEC].encode(payloads.payloads))


def _answer(request: web.Request, payloads: list) -> web.Response:
    document = json_format.MessageToDict(Payloads(payloads=payloads))
    response = web.json_response({"payloads": document.get("payloads", [])})
    response.headers.update(_cors_headers(request))
    response.headers["Cache-Control"] = "no-store"  # decoded messages must not stay in any cache
    return response


def add_routes(app: web.Application) -> None:
    # The keys of this process's own Temporal client: what the archive sealed, it can open.
    app[CODEC] = AesGcmPayloadCodec(payload_keys(app[DEPS].settings))
    for base in PATHS:
        app.router.add_post(f"{base}/decode", decode)
        app.router.add_post(f"{base}/encode", encode)
        app.router.add_route("OPTIONS", f"{base}/decode", preflight)
        app.router.add_route("OPTIONS", f"{base}/encode", preflight)

