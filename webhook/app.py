"""The webhook HTTP server: Meta's handshake and deliveries, health and readiness.

A delivery is acknowledged with 200 only after its exact bytes are stored in Postgres and Temporal
holds it: a small delivery is fanned out here (each message's workflow started, statuses written),
a large one (Meta batches up to 1,000 updates) is handed to one IngestDelivery workflow so that the
acknowledgement stays fast. Any failure on that path answers 503, so Meta redelivers and nothing is
lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import datetime, timedelta, timezone

import aiohttp
import structlog
from aiohttp import web

from wa_archive.db import queries
from wa_archive.archive.fanout import record_delivery, start_messages
from wa_archive.sources.meta.graph import GraphClient
from wa_archive.sources.meta.payload import Envelope, check_envelope, count_updates, parse_delivery
from wa_archive.credentials import contact_secret
from wa_archive.sources.signature import meta_signature_ok
from wa_archive.archive.starter import start_ingest_delivery
from webhook import edge
from webhook.deps import DEPS, WebhookDeps, decode_checked, json_error, read_body, refuse_unstorable_urls  # noqa: F401 - WebhookDeps is part of this module's API

log = structlog.get_logger("wa_archive.webhook")

META_PATH = "/webhooks/meta"
START_TIMEOUT = timedelta(seconds=5)



async def verify_handshake(request: web.Request) -> web.Response:
    """GET: echo hub.challenge when hub.verify_token matches, 403 otherwise."""
    settings = request.app[DEPS].settings
    q = request.query
    expected = settings.meta_verify_token.get_secret_value() if settings.meta_verify_token else None
    if (
        expected
        and q.get("hub.mode") == "subscribe"
        and q.get("hub.verify_token") is not None
        and _consteq(q["hub.verify_token"], expected)
    ):
        return web.Response(text=q.get("hub.challenge", ""), content_type="text/plain")
    log.warning("handshake_rejected", mode=q.get("hub.mode"))
    return json_error(403, "verify token does not match")


async def receive_delivery(request: web.Request) -> web.Response:
    """POST: verify, store the exact bytes, start the delivery's workflow, then acknowledge."""
    deps = request.app[DEPS]
    body = await read_body(request, deps.settings.max_body_bytes)
    if isinstance(body, web.Response):
        return body
    signature = request.headers.get("X-Hub-Signature-256")
    secret = deps.settings.meta_app_secret.get_secret_value()  # type: ignore[union-attr]
    if not meta_signature_ok(secret, body, signature):
        log.warning("signature_rejected", present=signature is not None, remote=request.remote)
        return json_error(401, "missing or invalid X-Hub-Signature-256")
    decoded = decode_checked(body, check_envelope)
    if isinstance(decoded, web.Response):
        return decoded
    data, envelope = decoded

    sha = hashlib.sha256(body).hexdigest()
    updates = count_updates(envelope)
    row = dict(sha256=sha, source="meta", body=body, signature=signature,
               remote_addr=request.remote, updates=updates, received_at=datetime.now(timezone.utc))
    try:
        await _make_durable(deps, data, envelope, row)
    except Exception as exc:  # noqa: BLE001 - any failure here means "not durable yet": ask Meta to retry
        log.error("delivery_not_accepted", delivery=sha, error=repr(exc))
        return json_error(503, "archive temporarily unavailable; retry later")
    log.info("delivery_accepted", delivery=sha, updates=updates)
    return web.json_response({"status": "accepted", "delivery": sha, "updates": updates})


async def _make_durable(deps: WebhookDeps, data: dict, envelope: Envelope, row: dict) -> None:
    """Store the delivery in Postgres and hand it to Temporal; raises unless both are done."""
    settings = deps.settings
    sha = row["sha256"]
    if row["updates"] > settings.inline_fanout_max:
        await queries.insert_delivery(deps.pool, **row)
        await start_ingest_delivery(deps.client, sha, task_queue=settings.task_queue,
                                    rpc_timeout=START_TIMEOUT)
        return
    parsed = parse_delivery(data, sha, row["received_at"], envelope)
    if parsed.statuses or parsed.events or parsed.template_events:
        # One commit for the delivery with its statuses and events.
        async with deps.pool.acquire() as conn, conn.transaction():
            await queries.insert_delivery(conn, **row)
            skip = await record_delivery(conn, sha, parsed)
    else:  # messages only, the common case: a single statement
        skip = await queries.insert_delivery_with_messages(
            deps.pool, **row, message_ids=[m.message_id for m in parsed.messages])
    await start_messages(deps.client, parsed, skip, options=deps.archive_options,
                         outbound=deps.outbound_options, task_queue=settings.task_queue,
                         contact_secret=deps.contact_secret, rpc_timeout=START_TIMEOUT)


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Temporal, Postgres and the object store reachable; 503 naming what is not.

    Anyone may ask, so the answer is only "ok" or "down" per dependency: the reason (hosts,
    addresses, exception text) goes to the server log.
    """
    deps = request.app[DEPS]
    checks = {
        "temporal": deps.client.service_client.check_health(timeout=timedelta(seconds=3)),
        "postgres": deps.pool.fetchval("SELECT 1", timeout=3),
        "storage": deps.store.ping(),
    }
    results = await asyncio.gather(*(asyncio.wait_for(c, 5) for c in checks.values()),
                                   return_exceptions=True)
    report = {}
    for name, result in zip(checks, results):
        report[name] = "down" if isinstance(result, BaseException) else "ok"
        if isinstance(result, BaseException):
            log.warning("dependency_down", dependency=name, error=repr(result))
    ok = all(v == "ok" for v in report.values())
    return web.json_response({"status": "ready" if ok else "not ready", "checks": report},
                             status=200 if ok else 503)


def create_app(deps: WebhookDeps) -> web.Application:
    """The aiohttp application; deps are created by the caller so tests can supply their own."""
    deps.settings.require("meta_app_secret", "meta_verify_token")
    if not deps.contact_secret:
        deps.contact_secret = contact_secret(deps.settings)
    # aiohttp's own limit is set above ours so that we answer 413 with our message.
    app = web.Application(client_max_size=deps.settings.max_body_bytes + 1024, middlewares=[refuse_unstorable_urls])
    app[DEPS] = deps
    edge.install(app, deps.settings.trusted_proxy_networks)
    app.router.add_get(META_PATH, verify_handshake)
    app.router.add_post(META_PATH, receive_delivery)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    from webhook import api, codec, outbound, ui, wasender

    wasender.add_routes(app)
    outbound.add_routes(app)
    api.add_routes(app)
    ui.add_routes(app)
    codec.add_routes(app)
    if deps.graph is None:
        app.cleanup_ctx.append(_graph_client)
    return app


async def _graph_client(app: web.Application):
    """The Graph API client the send proxy forwards through, for the app's lifetime."""
    deps = app[DEPS]
    token = deps.settings.meta_access_token.get_secret_value() if deps.settings.meta_access_token else ""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        deps.graph = GraphClient(http, deps.settings.meta_graph_url, token)
        yield
        deps.graph = None


def _consteq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
