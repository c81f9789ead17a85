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

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from wa_archive.access import access_log
from wa_archive.access.tokens import Caller
from wa_archive.errors import BadPayloads
from wa_archive.json_input import storable_text
from wa_archive.temporal.client import payload_keys
from wa_archive.temporal.codec import AesGcmPayloadCodec, workflow_of
from webhook.auth import check_token, note_refusal
from webhook.deps import DEPS, deps_of, json_error, pool_of, read_body

log = structlog.get_logger("wa_archive.codec")

ROLES = ("operator", "admin")
ENCODERS = ("admin",)
PATHS = ("/codec", "/ui/codec")
# The UI and the CLI send one event's payloads at a time; the caller is authenticated before the
# body is read, and the limits keep one request from holding the server.
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_PAYLOADS = 1000
CODEC = web.AppKey("payload_codec", AesGcmPayloadCodec)
ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization, Authorization-Extras"


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


async def _caller(request: web.Request, roles: tuple[str, ...]) -> Caller | web.Response:
    """The caller, by Bearer token or by the pages' signed-in session, if their role is in `roles`."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        caller = await check_token(request, token.strip(), pool_of) if scheme.lower() == "bearer" else None
        if caller is None:
            await note_refusal(request, "invalid_token" if token.strip() else "no_token")
            return _refuse(request, 401, "the API token is missing, unknown or revoked")
    else:
        from webhook.ui import signed_in

        session = await signed_in(request)
        if session is None:
            await note_refusal(request, "not_signed_in")
            return _refuse(request, 401, "sign in to the archive's pages as an operator, or send "
                                         "Authorization: Bearer <operator token>")
        # A cookie rides along with any request the browser makes; only the configured UI (or the
        # archive's own pages) may use it, as CORS alone does not stop the request being sent.
        origin = request.headers.get("Origin")
        if origin is not None and origin not in allowed_origins(request) and origin != _own_origin(request):
            return _refuse(request, 403, "this origin may not call the codec server (WA_ARCHIVE_TEMPORAL_UI_ORIGIN)")
        caller = session.caller
    if caller.role not in roles:
        await note_refusal(request, "role_not_allowed", caller)
        return _refuse(request, 403, f"role {caller.role!r} may not do this; needs {' or '.join(roles)}")
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


async def _body(request: web.Request) -> bytes | web.Response:
    if request.content_type != "application/json":
        return _refuse(request, 415, "the body must be application/json: {\"payloads\": [...]}")
    return await read_body(request, MAX_BODY_BYTES)


def _parse(body: bytes) -> Payloads:
    try:
        payloads = json_format.Parse(body, Payloads(), ignore_unknown_fields=True)
    except (json_format.ParseError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadPayloads(f"not a Payloads JSON document ({str(exc)[:200]})") from None
    if len(payloads.payloads) > MAX_PAYLOADS:
        raise BadPayloads(f"at most {MAX_PAYLOADS} payloads per request, not {len(payloads.payloads)}")
    return payloads


@dataclass
class Decoded:
    """A decode's answer, and what the access log says about it."""

    document: bytes
    payloads: int
    workflows: list[str]
    unlabelled: int
    undecodable: int


def _decode(codec: AesGcmPayloadCodec, body: bytes) -> Decoded:
    """Parse, decode and serialise (CPU work, run off the event loop). Only a label that authenticated
    with its ciphertext names a workflow: an invented label decodes nothing and is not believed."""
    payloads = _parse(body)
    out: list[Payload] = []
    workflows: set[str] = set()
    unlabelled = undecodable = 0
    for payload in payloads.payloads:
        # One at a time: a payload sealed with a retired key (or damaged) stays as it is, and the
        # rest of the page still decodes.
        try:
            opened = codec.open(payload)
        except Exception:  # noqa: BLE001 - unknown key id or failed authentication
            undecodable += 1
            out.append(payload)
            continue
        if opened is not payload:
            label = workflow_of(payload)
            if label is None:
                unlabelled += 1
            else:
                workflows.add(label)
        out.append(opened)
    return Decoded(_document(out), len(out), sorted(workflows), unlabelled, undecodable)


def _encode(codec: AesGcmPayloadCodec, body: bytes) -> tuple[bytes, int]:
    payloads = _parse(body)
    return _document(codec.seal(payloads.payloads)), len(payloads.payloads)


def _document(payloads: list[Payload]) -> bytes:
    document = json_format.MessageToDict(Payloads(payloads=payloads))
    return json.dumps({"payloads": document.get("payloads", [])}).encode()


def _namespace(request: web.Request) -> str | None:
    value = request.headers.get("X-Namespace")
    return value[:256] if value is not None and storable_text(value) else None


async def _record(request: web.Request, caller: Caller, action: str, target: dict[str, Any]) -> web.Response | None:
    try:
        await access_log.record_access(pool_of(request), actor=caller.name, role=caller.role, action=action,
                                       target=target, remote_addr=request.remote)
    except Exception as exc:  # noqa: BLE001 - unlogged reading is refused, whatever the cause
        log.error("codec_access_not_logged", error=repr(exc))
        return _refuse(request, 503, "the access log cannot be written; nothing was decoded")
    return None


async def decode(request: web.Request) -> web.Response:
    """POST .../decode: the original payloads, for an operator; logged before they are sent."""
    caller = await _caller(request, ROLES)
    if isinstance(caller, web.Response):
        return caller
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    try:
        decoded = await asyncio.to_thread(_decode, request.app[CODEC], body)
    except BadPayloads as exc:
        return _refuse(request, 400, str(exc))
    target = {"namespace": _namespace(request), "payloads": decoded.payloads,
              "workflows": decoded.workflows, "unlabelled": decoded.unlabelled,
              "undecodable": decoded.undecodable}
    refused = await _record(request, caller, "codec_decode", target)
    if refused is not None:
        return refused
    if decoded.undecodable:
        log.warning("codec_undecodable", count=decoded.undecodable, actor=caller.name)
    return _answer(request, decoded.document)


async def encode(request: web.Request) -> web.Response:
    """POST .../encode: payloads sealed as the archive seals them, for the UI's write actions; admins
    only, as sealing is how a Temporal client makes input the worker will open."""
    caller = await _caller(request, ENCODERS)
    if isinstance(caller, web.Response):
        return caller
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    try:
        document, count = await asyncio.to_thread(_encode, request.app[CODEC], body)
    except BadPayloads as exc:
        return _refuse(request, 400, str(exc))
    refused = await _record(request, caller, "codec_encode", {"namespace": _namespace(request), "payloads": count})
    if refused is not None:
        return refused
    return _answer(request, document)


def _answer(request: web.Request, document: bytes) -> web.Response:
    response = web.Response(body=document, content_type="application/json")
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

