"""Cloud API webhook bodies shaped like Meta's documented examples: for tests, the demo and benchmarks."""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

BUSINESS = {"display_phone_number": "442071838750", "phone_number_id": "109327745812336"}
WABA_ID = "114873209948201"


def wamid() -> str:
    """A fresh message id shaped like a real one: base64 with '/', '+' and '='."""
    raw = os.urandom(30)
    return "wamid.HBgM" + base64.b64encode(b"\xfb\xff" + raw).decode() + "+/=="


def envelope(messages: list[dict[str, Any]] | None = None, *, statuses: list[dict[str, Any]] | None = None,
             phone: str = "447700900123", contacts: list[dict[str, Any]] | None = None,
             extra_changes: list[dict[str, Any]] | None = None,
             errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {"messaging_product": "whatsapp", "metadata": BUSINESS}
    if messages is not None:
        value["contacts"] = contacts if contacts is not None else [
            {"profile": {"name": "Priya Raman"}, "wa_id": phone}]
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    if errors is not None:
        value["errors"] = errors
    changes = [{"field": "messages", "value": value}] + (extra_changes or [])
    return {"object": "whatsapp_business_account", "entry": [{"id": WABA_ID, "changes": changes}]}


def message(mtype: str, body: dict[str, Any] | None = None, *, mid: str | None = None,
            phone: str = "447700900123", ts: int | None = None, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"from": phone, "id": mid or wamid(),
                            "timestamp": str(ts if ts is not None else int(time.time())), "type": mtype}
    if body is not None:
        item[mtype] = body
    item.update(extra)
    return item


def media_message(mtype: str, media_id: str, sha256_b64: str | None, mime: str, **kw: Any) -> dict[str, Any]:
    body = {"mime_type": mime, "id": media_id}
    if sha256_b64 is not None:
        body["sha256"] = sha256_b64
    if mtype in ("image", "video", "document"):
        body["caption"] = f"{mtype} caption"
    if mtype == "document":
        body["filename"] = "mandate.pdf"
    return message(mtype, body, **kw)


def dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


# Coexistence (a business onboarded with its WhatsApp Business app number) ---------------------------


def _change(field: str, value: dict[str, Any]) -> dict[str, Any]:
    value = {"messaging_product": "whatsapp", "metadata": BUSINESS, **value}
    return {"object": "whatsapp_business_account", "entry": [{"id": WABA_ID, "changes": [{"field": field,
                                                                                           "value": value}]}]}


def echo(mtype: str, body: dict[str, Any] | None = None, *, to: str = "447700900123", mid: str | None = None,
         ts: int | None = None, **extra: Any) -> dict[str, Any]:
    """A message the business sent from the WhatsApp Business app, as `smb_message_echoes` carries it."""
    return message(mtype, body, mid=mid, phone=BUSINESS["display_phone_number"], ts=ts, to=to, **extra)


def echo_envelope(echoes: list[Any]) -> dict[str, Any]:
    return _change("smb_message_echoes", {"message_echoes": echoes})


def history_message(mtype: str, body: dict[str, Any] | None = None, *, user: str = "447700900123",
                    outbound: bool = False, status: str = "READ", mid: str | None = None,
                    ts: int | None = None) -> dict[str, Any]:
    """A message of the history sync: from the user, or (outbound) from the business with `to`."""
    extra: dict[str, Any] = {"history_context": {"status": status}}
    if outbound:
        extra["to"] = user
    return message(mtype, body, mid=mid, phone=BUSINESS["display_phone_number"] if outbound else user,
                   ts=ts, **extra)


def history_chunk(threads: dict[str, list[Any]], *, phase: int = 0, chunk_order: int = 1,
                  progress: int = 50) -> dict[str, Any]:
    """One `history[]` entry: its metadata and a thread per user (wa_id -> its messages)."""
    return {"metadata": {"phase": phase, "chunk_order": chunk_order, "progress": progress},
            "threads": [{"id": user, "messages": messages} for user, messages in threads.items()]}


def history_envelope(chunks: list[Any]) -> dict[str, Any]:
    return _change("history", {"history": chunks})


def history_declined() -> dict[str, Any]:
    """The business declined to share its chat history (documented as code 2593109)."""
    return history_envelope([{"errors": [{"code": 2593109, "title": "History sharing is turned off by user",
                                          "message": "History sharing is turned off by user",
                                          "error_data": {"details": "The business declined to share chat history"}}]}])
