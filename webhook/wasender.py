"""POST /webhooks/wasender: WASenderApi's webhooks, through the same intake as Meta's.

WASender authenticates by putting the configured webhook secret itself in X-Webhook-Signature
(no HMAC over the body): compared in constant time, and anything else is 401 with nothing stored
or started. Being the secret, the header is never stored.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from wa_archive.archive.handover import Delivery
from wa_archive.config import Settings
from wa_archive.health.capture import wasender_numbers
from wa_archive.sources.signature import shared_secret_ok
from wa_archive.sources.wasender.payload import check_wasender, parse_wasender
from webhook.intake import Parsed, Rejection, Source, receiver

WASENDER_PATH = "/webhooks/wasender"
SIGNATURE_HEADER = "X-Webhook-Signature"
# Event kinds a person should look at: events we do not know, and items we could not read.
FLAGGED_KINDS = ("unknown_event", "unparseable")


def _authenticate(request: web.Request, _: bytes, settings: Settings) -> Rejection | None:
    secret = settings.wasender_webhook_secret.get_secret_value() if settings.wasender_webhook_secret else None
    given = request.headers.get(SIGNATURE_HEADER)
    if secret is None:
        return Rejection("WASender webhooks are not enabled: WA_ARCHIVE_WASENDER_WEBHOOK_SECRET is not set",
                         {"reason": "WA_ARCHIVE_WASENDER_WEBHOOK_SECRET is not set"})
    if not shared_secret_ok(secret, given):
        return Rejection(f"missing or invalid {SIGNATURE_HEADER}", {"present": given is not None,
                                                                     "remote": request.remote})
    return None


def _parse(data: Any, event: str, delivery: Delivery, _: Settings) -> Parsed:
    parsed = parse_wasender(data, delivery.sha256, delivery.received_at)
    updates = len(parsed.messages) + len(parsed.statuses) + len(parsed.events)
    flagged = sum(1 for e in parsed.events if e.kind in FLAGGED_KINDS)
    return Parsed(updates, parsed, answer={"event": event, "updates": updates, "flagged": flagged},
                  log={"wasender_event": event, "updates": updates, "flagged": flagged})


WASENDER = Source(name="wasender", authenticate=_authenticate, rejected_event="wasender_rejected",
                  check=check_wasender, parse=_parse, signal_statuses=False, numbers=wasender_numbers)


def add_routes(app: web.Application) -> None:
    app.router.add_post(WASENDER_PATH, receiver(WASENDER))
