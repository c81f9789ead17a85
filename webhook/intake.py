"""One intake for every webhook source: read the body, authenticate the sender, check and parse the
document, store its exact bytes and start its workflows, and only then acknowledge.

A source supplies what differs (how its sender proves itself, what a valid document looks like,
how it is parsed); the order, the limits and the durability rule are the same for all: nothing is
stored or started before the sender is authenticated, and 200 is sent only once Postgres and
Temporal hold the delivery. Any failure on that path answers 503, so the sender retries and
nothing is lost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

import structlog
from aiohttp import web

from wa_archive.archive.handover import Delivery, hand_over_delivery
from wa_archive.config import Settings
from wa_archive.health.capture import Heard
from wa_archive.observability import metrics
from wa_archive.sources.meta.payload import ParsedDelivery
from webhook.deps import DEPS, START_TIMEOUT, decode_checked, json_error, read_body

log = structlog.get_logger("wa_archive.webhook")
Checked = TypeVar("Checked")


@dataclass(frozen=True)
class Rejection:
    """Why the sender was not believed: the 401's message, and the fields of the warning logged."""

    message: str
    log: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Parsed:
    """What a source made of a checked document."""

    updates: int  # stored with the delivery and acknowledged
    delivery: ParsedDelivery | None  # None: too many updates to fan out here; IngestDelivery parses it
    answer: dict[str, Any]  # the acknowledgement's fields after "status" and "delivery"
    log: dict[str, Any]  # the delivery_accepted line's fields after "delivery" and "source"


@dataclass(frozen=True)
class Source(Generic[Checked]):
    """One webhook source, as the intake sees it."""

    name: str  # stored as the delivery's source
    authenticate: Callable[[web.Request, bytes, Settings], Rejection | None]
    rejected_event: str  # the log event of a sender that was not believed
    check: Callable[[Any], Checked]  # EnvelopeError with a reason when the document is not the source's
    parse: Callable[[Any, Checked, Delivery, Settings], Parsed]
    kept_header: str | None = None  # a MAC over the body, stored with it as evidence
    # The business numbers the document was for, for capture health (never read before authentication).
    numbers: Callable[[Any, Checked], Heard] = lambda _data, _checked: []
    signal_statuses: bool = True  # False for sources without outbound workflows to signal


def receiver(source: Source[Any]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The POST handler of `source`."""

    async def receive(request: web.Request) -> web.Response:
        response = await answer(request)
        metrics.delivery_answered(source.name, response.status)
        return response

    async def answer(request: web.Request) -> web.Response:
        deps = request.app[DEPS]
        settings = deps.settings
        body = await read_body(request, settings.max_body_bytes)
        if isinstance(body, web.Response):
            return body
        rejection = source.authenticate(request, body, settings)
        if rejection is not None:
            log.warning(source.rejected_event, **rejection.log)
            return json_error(401, rejection.message)
        decoded = decode_checked(body, source.check)
        if isinstance(decoded, web.Response):
            return decoded
        data, checked = decoded
        delivery = Delivery(source=source.name, body=body,
                            signature=request.headers.get(source.kept_header) if source.kept_header else None,
                            remote_addr=request.remote, received_at=datetime.now(timezone.utc))
        try:
            parsed = source.parse(data, checked, delivery, settings)
            await hand_over_delivery(
                deps.pool, deps.client, delivery, parsed.updates, parsed.delivery, options=deps.archive_options,
                outbound=deps.outbound_options, task_queue=settings.task_queue, contact_secret=deps.contact_secret,
                rpc_timeout=START_TIMEOUT, consent=deps.consent_feeds, signal_statuses=source.signal_statuses)
        except Exception as exc:  # noqa: BLE001 - any failure here means "not durable yet": ask the sender to retry
            log.error("delivery_not_accepted", delivery=delivery.sha256, source=source.name, error=repr(exc))
            return json_error(503, "archive temporarily unavailable; retry later")
        # After the hand-over: the delivery is durable whatever happens to this note (it never raises).
        await deps.capture.heard(source.numbers(data, checked), delivery.received_at)
        log.info("delivery_accepted", delivery=delivery.sha256, source=source.name, **parsed.log)
        return web.json_response({"status": "accepted", "delivery": delivery.sha256, **parsed.answer})

    return receive
