"""Outbound capture: the send proxy (`POST /graph/{phone-number-id}/messages`) and the record API
(`POST /api/v1/outbound`). Both answer only after the send and Meta's answer are in Postgres and
the message's OutboundMessage workflow holds them."""

from __future__ import annotations

from datetime import datetime, timezone

import aiohttp
import structlog
from aiohttp import web

from wa_archive.archive.handover import hand_over_send
from wa_archive.db import queries
from wa_archive.errors import JsonRefused
from wa_archive.json_input import load_json
from wa_archive.models import OutboundSend
from wa_archive.sources.meta.sends import answer_document, contacts_refusal, send_refusal, sent_message_id
from webhook.auth import CALLER, require
from webhook.deps import START_TIMEOUT, deps_of, json_error, pool_of, read_body, read_json

log = structlog.get_logger("wa_archive.outbound")


async def _hand_over(request: web.Request, send: OutboundSend) -> None:
    """Postgres first (the exact exchange), then the workflow; raises unless both are done."""
    deps = deps_of(request)
    await hand_over_send(deps.pool, deps.client, send, token_name=request[CALLER].name,
                         options=deps.outbound_options, task_queue=deps.settings.task_queue,
                         contact_secret=deps.contact_secret, rpc_timeout=START_TIMEOUT)


@require("sender", pool_of=pool_of)
async def send_proxy(request: web.Request) -> web.Response:
    """Forward a Cloud API send unchanged; archive it before answering with Meta's answer."""
    deps = deps_of(request)
    # aiohttp has already decoded %2F and friends here: the decoded value is what would reach Meta.
    pnid = request.match_info["phone_number_id"]
    if (refused := send_refusal(pnid, None)) is not None:
        return json_error(400, f"{refused}; nothing was sent")
    body = await read_body(request, deps.settings.max_body_bytes)
    if isinstance(body, web.Response):
        return body
    try:
        send_request = load_json(body, storable=True)
    except JsonRefused as exc:
        return json_error(400, f"{exc}: the Cloud API send request")
    if not isinstance(send_request, dict):
        return json_error(400, "body must be a JSON object: the Cloud API send request")
    if (refused := send_refusal(pnid, send_request)) is not None:
        return json_error(400, f"{refused}; nothing was sent")
    assert deps.graph is not None  # given, or made at startup for the app's lifetime (app._graph_client)
    try:
        status, answer, content_type = await deps.graph.send_message(pnid, body)
    except (TimeoutError, aiohttp.ClientError) as exc:
        log.error("meta_unreachable", error=repr(exc))
        return json_error(502, "the Graph API could not be reached; nothing was sent")
    response = answer_document(answer)
    wamid = sent_message_id(response) if status == 200 else None
    if wamid is None:
        # Meta refused it: nothing was sent, but the attempt is part of the record.
        await queries.record_outbound_send(
            deps.pool, message_id=None, phone_number_id=pnid, via="proxy", request=send_request,
            response=response,
            http_status=status, accepted=False, token_name=request[CALLER].name)
        log.warning("send_rejected", http_status=status)
        return web.Response(status=status, body=answer, content_type=content_type.split(";")[0])
    send = OutboundSend(message_id=wamid, phone_number_id=pnid, request=send_request,
                        response=response, via="proxy", recorded_at=datetime.now(timezone.utc))
    try:
        await _hand_over(request, send)
    except Exception as exc:  # noqa: BLE001
        # Meta has sent the message; only the archive copy is missing. Say so plainly, so the
        # caller records it through the record API instead of sending it again.
        log.error("sent_but_not_archived", message_id=wamid, error=repr(exc))
        return json_error(503, "Meta accepted the message but the archive could not record it; do not "
                      "resend: post the request and this response to /api/v1/outbound",
                      message_id=wamid, meta_response=response)
    log.info("send_archived", message_id=wamid)
    return web.Response(status=status, body=answer, content_type=content_type.split(";")[0])


@require("sender", pool_of=pool_of)
async def record_outbound(request: web.Request) -> web.Response:
    """Applications that call Meta themselves post the request and Meta's answer here."""
    data = await read_json(request)
    if isinstance(data, web.Response):
        return data
    if not isinstance(data, dict):
        return json_error(400, "body must be a JSON object")
    pnid, send_request, response = data.get("phone_number_id"), data.get("request"), data.get("response")
    if not isinstance(pnid, str) or not pnid:
        return json_error(400, "phone_number_id is required (a string)")
    if not isinstance(send_request, dict):
        return json_error(400, "request is required: the JSON body sent to Meta")
    if (refused := send_refusal(pnid, send_request)) is not None:
        return json_error(400, refused)
    if not isinstance(response, dict):
        return json_error(400, "response is required: Meta's JSON answer")
    wamid = sent_message_id(response)
    if wamid is None:
        return json_error(400, "response.messages[0].id (the wamid Meta returned) is missing")
    if (refused := contacts_refusal(response)) is not None:
        return json_error(400, refused)
    send = OutboundSend(message_id=wamid, phone_number_id=pnid, request=send_request,
                        response=response, via="record", recorded_at=datetime.now(timezone.utc))
    try:
        await _hand_over(request, send)
    except Exception as exc:  # noqa: BLE001
        log.error("record_not_accepted", message_id=wamid, error=repr(exc))
        return json_error(503, "archive temporarily unavailable; retry later")
    return web.json_response({"status": "accepted", "message_id": wamid})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/graph/{phone_number_id}/messages", send_proxy)
    app.router.add_post("/api/v1/outbound", record_outbound)
