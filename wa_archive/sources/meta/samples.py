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
