"""What an outbound message was, read from the Cloud API send request and Meta's answer.

Pure and sandbox-safe (stdlib and pydantic models only): the OutboundMessage workflow calls it.
The request is the sender's own JSON, kept verbatim as evidence; this only reads the fields recorded beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wa_archive.archive.keys import normalize_phone
from wa_archive.models import Contact, MediaRef
from wa_archive.sources.meta.templates import HeaderMedia, header_media, message_media


@dataclass(frozen=True)
class OutboundContent:
    """The parts of a send that the archive records beside the request itself.

    Values are as sent, unchecked: they are validated where they enter an activity's input.
    """

    type: str
    contact: Contact
    text: str | None = None  # a template's text is rendered from its snapshot instead
    media: MediaRef | None = None  # a template's header media, or the message's own media
    send_template: dict[str, Any] = field(default_factory=dict)  # what the template snapshot fills in
    template_name: str | None = None
    template_language: str | None = None


def read_send(request: dict[str, Any], response: dict[str, Any]) -> OutboundContent:
    """The message type, recipient, text, media and template a send request carries."""
    mtype = str(request.get("type") or "text")
    send_template = request.get("template") or {}
    contacts = response.get("contacts") or [{}]
    contact = Contact(phone=normalize_phone(str(request.get("to") or "")),
                      wa_id=contacts[0].get("wa_id") if isinstance(contacts[0], dict) else None)
    text: str | None = None
    if mtype == "template":
        media = header_media(send_template)
    else:
        media = message_media(request)
        body = request.get(mtype)
        if isinstance(body, dict):
            text = body.get("body") or body.get("caption")
    return OutboundContent(
        type=mtype, contact=contact, text=text, media=None if media is None else _media_ref(media),
        send_template=send_template, template_name=send_template.get("name"),
        template_language=(send_template.get("language") or {}).get("code"))


def _media_ref(media: HeaderMedia) -> MediaRef:
    """A media id is fetched through the Graph API; only media without one is fetched by its link."""
    return MediaRef(media_id=media.media_id or media.link or "?", kind=media.kind, filename=media.filename,
                    link=None if media.media_id else media.link)
