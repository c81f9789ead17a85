"""POST /webhooks/wasender: WASenderApi's webhooks, with the Meta webhook's durability rule.

WASender authenticates by putting the configured webhook secret itself in X-Webhook-Signature
(no HMAC over the body): compared in constant time, and anything else is 401 with nothing stored
or started. Then the exact bytes are stored, statuses and other events written, each message's
ArchiveMessage workflow started, and only then 200; 503 if any of that failed.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import structlog
from aiohttp import web

from wa_archive.db import queries
from wa_archive.archive.fanout import record_delivery, start_messages
from wa_archive.sources.signature import shared_secret_ok
from wa_archive.sources.wasender.payload import check_wasender, parse_wasender
from webhook.deps import DEPS, decode_checked, json_error, read_body

log = structlog.get_logger("wa_archive.webhook")

WASENDER_PATH = "/webhooks/wasender"
SIGNATURE_HEADER = "X-Webhook-Signature"
START_TIMEOUT = timedelta(seconds=5)


async def receive_wasender(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    settings = deps.settings
    body = await read_body(request, settings.max_body_bytes)
    if isinstance(body, web.Response):
        return body
    secret = settings.wasender_webhook_secret.get_secret_value() if settings.wasender_webhook_secret else None
    given = request.headers.get(SIGNATURE_HEADER)
    if secret is None:
        log.warning("wasender_rejected", reason="WA_ARCHIVE_WASENDER_WEBHOOK_SECRET is not set")
        return json_error(401, "WASender webhooks are not enabled: WA_ARCHIVE_WASENDER_WEBHOOK_SECRET is not set")
    if not shared_secret_ok(secret, given):
        log.warning("wasender_rejected", present=given is not None, remote=request.remote)
        return json_error(401, f"missing or invalid {SIGNATURE_HEADER}")
    decoded = decode_checked(body, check_wasender)
    if isinstance(decoded, web.Response):
        return decoded
    data, event = decoded

    sha = hashlib.sha256(body).hexdigest()
    received_at = datetime.now(timezone.utc)
    parsed = parse_wasender(data, sha, received_at)
    updates = len(parsed.messages) + len(parsed.statuses) + len(parsed.events)
    try:
        async with deps.pool.acquire() as conn, conn.transaction():
            # The header is the shared secret itself, so it is not kept (unlike Meta's signature).
            await queries.insert_delivery(conn, sha256=sha, source="wasender", body=body, signature=None,
                                          remote_addr=request.remote, updates=updates, received_at=received_at)
            skip = await record_delivery(conn, sha, parsed)
        await start_messages(deps.client, parsed, skip, options=deps.archive_options,
                             outbound=deps.outbound_options, task_queue=settings.task_queue,
                             contact_secret=deps.contact_secret, rpc_timeout=START_TIMEOUT,
                             signal_statuses=False)
    except Exception as exc:  # noqa: BLE001 - not durable yet: answer 503 so the sender retries
        log.error("delivery_not_accepted", delivery=sha, source="wasender", error=repr(exc))
        return json_error(503, "archive temporarily unavailable; retry later")
    flagged = sum(1 for e in parsed.events if e.kind in ("unknown_event", "unparseable"))
    log.info("delivery_accepted", delivery=sha, source="wasender", wasender_event=event, updates=updates,
             flagged=flagged)
    return web.json_response({"status": "accepted", "delivery": sha, "event": event, "updates": updates,
                              "flagged": flagged})


def add_routes(app: web.Application) -> None:
    app.router.add_post(WASENDER_PATH, receive_wasender)
