"""GET and POST /webhooks/meta: the Cloud API's subscription handshake and its signed deliveries.

A delivery's sender proves itself with X-Hub-Signature-256, an HMAC of the exact bytes under the
app secret, kept with the bytes as evidence. A small delivery is fanned out before the
acknowledgement; a large one (Meta batches up to 1,000 updates) is left to one IngestDelivery
workflow, so the acknowledgement stays fast.
"""

from __future__ import annotations

import hmac
from typing import Any

import structlog
from aiohttp import web

from wa_archive.archive.handover import Delivery
from wa_archive.config import Settings
from wa_archive.health.capture import meta_numbers
from wa_archive.sources.meta.payload import Envelope, check_envelope, count_updates, parse_delivery
from wa_archive.sources.signature import meta_signature_ok
from webhook.deps import DEPS, json_error
from webhook.intake import Parsed, Rejection, Source, receiver

log = structlog.get_logger("wa_archive.webhook")

META_PATH = "/webhooks/meta"
SIGNATURE_HEADER = "X-Hub-Signature-256"


async def verify_handshake(request: web.Request) -> web.Response:
    """GET: echo hub.challenge when hub.verify_token matches, 403 otherwise."""
    settings = request.app[DEPS].settings
    q = request.query
    expected = settings.meta_verify_token.get_secret_value() if settings.meta_verify_token else None
    if (
        expected
        and q.get("hub.mode") == "subscribe"
        and q.get("hub.verify_token") is not None
        and hmac.compare_digest(q["hub.verify_token"].encode(), expected.encode())
    ):
        return web.Response(text=q.get("hub.challenge", ""), content_type="text/plain")
    log.warning("handshake_rejected", mode=q.get("hub.mode"))
    return json_error(403, "verify token does not match")


def _authenticate(request: web.Request, body: bytes, settings: Settings) -> Rejection | None:
    signature = request.headers.get(SIGNATURE_HEADER)
    secret = settings.meta_app_secret.get_secret_value()  # type: ignore[union-attr]  # required by create_app
    if meta_signature_ok(secret, body, signature):
        return None
    return Rejection(f"missing or invalid {SIGNATURE_HEADER}", {"present": signature is not None,
                                                                  "remote": request.remote})


def _parse(data: Any, envelope: Envelope, delivery: Delivery, settings: Settings) -> Parsed:
    updates = count_updates(envelope)
    if updates > settings.inline_fanout_max:
        parsed = None  # parsed by IngestDelivery once the delivery is stored
    else:
        parsed = parse_delivery(data, delivery.sha256, delivery.received_at, envelope)
    return Parsed(updates, parsed, answer={"updates": updates}, log={"updates": updates})


META = Source(name="meta", authenticate=_authenticate, rejected_event="signature_rejected",
              check=check_envelope, parse=_parse, kept_header=SIGNATURE_HEADER,
              numbers=lambda _data, envelope: meta_numbers(envelope))


def add_routes(app: web.Application) -> None:
    app.router.add_get(META_PATH, verify_handshake)
    app.router.add_post(META_PATH, receiver(META))
