"""What every handler needs: the shared dependencies of the app, and JSON errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import asyncpg
import structlog
from aiohttp import web
from temporalio.client import Client

from wa_archive.access import access_log
from wa_archive.config import Settings
from wa_archive.contacts.feed_options import ConsentFeedOptions
from wa_archive.credentials import ledger_trust
from wa_archive.errors import EnvelopeError, JsonRefused
from wa_archive.health.capture import CaptureTracker, heard_every
from wa_archive.json_input import load_json, storable_text
from wa_archive.models import ArchiveOptions, OutboundOptions
from wa_archive.sources.meta.graph import GraphClient
from wa_archive.storage import ObjectStore


@dataclass
class WebhookDeps:
    settings: Settings
    client: Client
    pool: asyncpg.Pool
    store: ObjectStore
    contact_secret: str = field(default="", repr=False)
    graph: GraphClient | None = None  # for the send proxy; made at startup when not given
    # Built once from the settings rather than on every request.
    archive_options: ArchiveOptions = field(init=False)
    outbound_options: OutboundOptions = field(init=False)
    consent_feeds: ConsentFeedOptions = field(init=False)
    capture: CaptureTracker = field(init=False)  # notes which business numbers are heard from
    # The archive's public key: checkpoint rows not signed with it are never used (integrity/checkpoints.py).
    ledger_key: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.archive_options = self.settings.archive_options()
        self.outbound_options = self.settings.outbound_options()
        self.consent_feeds = self.settings.consent_feed_options()
        self.capture = CaptureTracker(self.pool, heard_every(self.settings.silence_alert_minutes))
        self.ledger_key = ledger_trust(self.settings)


DEPS = web.AppKey("deps", WebhookDeps)
T = TypeVar("T")
# How long a request waits for Temporal to accept a start or signal before it answers 503.
START_TIMEOUT = timedelta(seconds=5)


log = structlog.get_logger("wa_archive.webhook")


async def record_read(request: web.Request, *, actor: str, role: str, action: str, target: dict[str, Any],
                      page: bool = False) -> None:
    """Write a read to the access log before anything of it is sent. A read whose access cannot be
    recorded is refused with 503 (raised, so no caller can go on to serve it), never served unrecorded."""
    try:
        await access_log.record_access(pool_of(request), actor=actor, role=role, action=action, target=target,
                                       remote_addr=request.remote)
    except Exception as exc:  # noqa: BLE001 - whatever the cause, an unrecorded read is refused
        log.error("access_not_logged", action=action, error=repr(exc))
        message = "the access log cannot be written; nothing was read, retry later"
        if page:
            raise web.HTTPServiceUnavailable(text=message) from exc
        raise web.HTTPServiceUnavailable(text=json.dumps({"error": message}),
                                         content_type="application/json") from exc


async def record_read_during(request: web.Request, read: Awaitable[T], *, actor: str, role: str, action: str,
                             target: dict[str, Any]) -> T:
    """What `read` returns, handed back only once the read is in the access log (503 as record_read()
    says otherwise, and what was read is dropped unsent). The read runs while the entry commits: the
    commit's flush to disk is most of what recording costs, and it need not come before the read,
    only before anything of it is sent."""
    reading = asyncio.ensure_future(read)
    try:
        await record_read(request, actor=actor, role=role, action=action, target=target)
    except BaseException:
        reading.cancel()
        with suppress(Exception, asyncio.CancelledError):  # its result or its failure: neither is wanted now
            await reading
        raise
    return await reading


STOP_ATTEMPTS, STOP_WAIT_SECONDS = 5, 2.0


def run_while_serving(app: web.Application, run: Callable[[], Coroutine[Any, Any, None]],
                      then: Callable[[], Awaitable[None]] | None = None) -> None:
    """`run()` as a task for the app's lifetime: cancelled when the app stops, then `then()` (a last
    flush) if given."""

    async def lifetime(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(run())
        yield
        # Cancelled again until it ends: Python 3.11's wait_for (under asyncpg's timeouts) can swallow a
        # cancellation that lands as its inner call completes, and a stop must never wait on that.
        for _attempt in range(STOP_ATTEMPTS):
            task.cancel()
            done, _pending = await asyncio.wait({task}, timeout=STOP_WAIT_SECONDS)
            if done:
                break
        else:
            log.error("background_task_did_not_stop", task=repr(run))
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("background_task_failed", error=repr(task.exception()))
        if then is not None:
            await then()

    app.cleanup_ctx.append(lifetime)


def deps_of(request: web.Request) -> WebhookDeps:
    return request.app[DEPS]


def pool_of(request: web.Request) -> asyncpg.Pool:
    return request.app[DEPS].pool


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def read_body(request: web.Request, limit: int) -> bytes | web.Response:
    """The whole body, or a 413 response once it is over `limit` (declared or actually sent)."""
    if request.content_length is not None and request.content_length > limit:
        return json_error(413, f"body exceeds {limit} bytes")
    # Read to the end: a single read() returns whatever has arrived so far, not the whole body.
    parts: list[bytes] = []
    size = 0
    async for part in request.content.iter_any():
        size += len(part)
        if size > limit:
            return json_error(413, f"body exceeds {limit} bytes")
        parts.append(part)
    return b"".join(parts)


def decode_checked(body: bytes, check: Callable[[Any], T]) -> tuple[Any, T] | web.Response:
    """(JSON document, what `check` made of it) for a signed webhook body, or a 400 naming what is wrong.

    Text PostgreSQL cannot hold (NUL, lone surrogates) is replaced by U+FFFD, never refused: a
    refused delivery is retried by the sender and then dropped, so refusing would let anyone who
    can type such a character keep a message out of the archive. The exact bytes are stored apart.
    """
    try:
        data = load_json(body, substitute=True)
    except JsonRefused as exc:
        return json_error(400, str(exc))
    try:
        return data, check(data)
    except EnvelopeError as exc:
        return json_error(400, str(exc))


async def read_json(request: web.Request) -> Any:
    """The request's JSON document, to be stored as it is; a 400 response naming what is wrong otherwise
    (not JSON, too deep, or text PostgreSQL cannot hold).

    Unlike a webhook delivery, this body is not kept byte for byte, so a substitution would leave
    no evidence of what was sent: the caller, our own application, is told instead.
    """
    body = await read_body(request, request.app[DEPS].settings.max_body_bytes)
    if isinstance(body, web.Response):
        return body
    try:
        return load_json(body, storable=True)
    except JsonRefused as exc:
        return json_error(400, str(exc))


@web.middleware
async def refuse_unstorable_urls(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    """400 for a path or query holding text PostgreSQL cannot hold (NUL, lone surrogates).

    Path and query values reach SQL parameters and the access log; refusing them here keeps every
    handler, present and future, from answering them with a 500.
    """
    values = [request.path, *request.query.keys(), *request.query.values()]
    if not all(storable_text(value) for value in values):
        return json_error(400, "the URL contains a NUL character or text that is not Unicode")
    return await handler(request)


async def read_form(request: web.Request) -> Any:
    """The posted form, or None when it cannot be decoded (bytes that are not UTF-8, a broken multipart body)."""
    try:
        return await request.post()
    except (UnicodeDecodeError, ValueError):
        return None
