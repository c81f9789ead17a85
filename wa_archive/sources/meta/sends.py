"""What the archive accepts of a Cloud API send and of Meta's answer to it, before either is
forwarded or recorded: ids that may reach the Graph API, and the message id Meta returned."""

from __future__ import annotations

import json
import re
from typing import Any

from wa_archive.errors import GraphRequestRefused
from wa_archive.sources.meta.graph import graph_id
from wa_archive.sources.meta.templates import carried_media_ids

_WA_ID = re.compile(r"[0-9]{1,20}")


def sent_message_id(response: Any) -> str | None:
    """The wamid in Meta's answer to a send (`messages[0].id`), or None when it is not there."""
    messages = response.get("messages") if isinstance(response, dict) else None
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        wamid = messages[0].get("id")
        return wamid if isinstance(wamid, str) and wamid else None
    return None


def answer_document(answer: bytes) -> dict[str, Any]:
    """Meta's answer to a send as the JSON object kept with it: anything else is kept as {"raw": ...}."""
    try:
        response = json.loads(answer)
    except ValueError:
        return {"raw": answer.decode("utf-8", "replace")}
    return response if isinstance(response, dict) else {"raw": response}


def send_refusal(phone_number_id: object, send_request: dict[str, Any] | None) -> str | None:
    """Why the ids of a send may not reach the Graph API (the field is named), or None. The archive
    later calls Graph with these ids and its own token, so they must be plain ids: 1-20 digits."""
    try:
        graph_id(phone_number_id, "phone_number_id")
        for field, value in carried_media_ids(send_request or {}):
            graph_id(value, field)
    except GraphRequestRefused as exc:
        return str(exc)
    return None


def contacts_refusal(response: dict[str, Any]) -> str | None:
    """Meta answers with the recipient's WhatsApp id, which is digits; when a caller supplies that
    answer, an id of anything else is refused rather than archived as the contact."""
    contacts = response.get("contacts", [])
    if not isinstance(contacts, list):
        return "response.contacts must be a list"
    for i, contact in enumerate(contacts):
        wa_id = contact.get("wa_id") if isinstance(contact, dict) else None
        if wa_id is not None and not (isinstance(wa_id, str) and _WA_ID.fullmatch(wa_id)):
            return f"response.contacts[{i}].wa_id must be a WhatsApp id of 1 to 20 digits"
    return None
