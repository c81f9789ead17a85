"""Object key layout, identifiers that must be safe in any key, and the keyed hashes Temporal holds."""

from __future__ import annotations

import hashlib
import hmac
import re
import string
from datetime import datetime, timezone

from wa_archive.archive.media_types import normalize_mime

_SAFE = frozenset(string.ascii_letters + string.digits + ".-_")
_ASCII_DIGITS = frozenset(string.digits)
_PHONE = re.compile(r"\+*[0-9 -]+")

# Extensions by allow-list of normalised types: a name is what a desktop or a browser opening an
# exported file trusts, so a type not listed here (HTML, SVG, XML, script, anything unknown) is .bin
# and can never be opened as markup or run.
_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/bmp": "bmp",
    "image/avif": "avif",
    "image/heic": "heic",
    "video/mp4": "mp4",
    "video/3gpp": "3gp",
    "video/webm": "webm",
    "video/quicktime": "mov",
    "audio/ogg": "ogg",
    "audio/opus": "opus",
    "audio/mpeg": "mp3",
    "audio/mp4": "m4a",
    "audio/aac": "aac",
    "audio/amr": "amr",
    "audio/wav": "wav",
    "audio/webm": "weba",
    "application/pdf": "pdf",
    "text/plain": "txt",
    "text/csv": "csv",
    "application/zip": "zip",
    "application/msword": "doc",
    "application/vnd.ms-excel": "xls",
    "application/vnd.ms-powerpoint": "ppt",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
    "application/vnd.oasis.opendocument.presentation": "odp",
}


def safe_id(value: str) -> str:
    """Escape anything outside [A-Za-z0-9._-] as ~XX, so distinct ids never collide.

    Real wamids are base64 and may contain '/', '+' and '='; '~' itself is escaped too,
    which keeps the mapping one-to-one.
    """
    out = []
    for ch in value:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend(f"~{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def extension_for(mime_type: str | None) -> str:
    """File extension of a media type, after normalisation; "bin" for any type not on the allow-list."""
    return _EXTENSIONS.get(normalize_mime(mime_type), "bin")


def media_object_key(
    message_id: str, timestamp: datetime, contact: str, mime_type: str | None, position: int = 0
) -> str:
    """archive/YYYY/MM/DD/{contact}/{message-id}.{ext}, dated by the message time in UTC."""
    ts = timestamp.astimezone(timezone.utc)
    suffix = f"-{position}" if position else ""
    return (
        f"archive/{ts:%Y/%m/%d}/{safe_id(contact)}/"
        f"{safe_id(message_id)}{suffix}.{extension_for(mime_type)}"
    )


# A wamid is about 60 characters. A longer id than this cannot become part of an object key (S3 caps keys
# at 1,024 bytes) once escaped, so the sources refuse it.
MAX_MESSAGE_ID = 256


def message_key(secret: str, message_id: str) -> str:
    """Keyed hash of a message id: what Temporal holds in its place (workflow ids, search attribute).

    Meta's wamids are base64 of data holding the customer's number, and Temporal stores ids and
    search attributes unencrypted; the key is the contact key's secret, with its own prefix in the
    hashed bytes so a message key never equals a contact key.
    """
    digest = hmac.new(secret.encode(), b"message-id\x00" + message_id.encode(), hashlib.sha256).hexdigest()
    return f"mk_{digest[:32]}"


def message_workflow_id(secret: str, message_id: str) -> str:
    """Workflow id of a message's ArchiveMessage run: the same message always gets the same one."""
    return f"wa-msg-{message_key(secret, message_id)}"


def outbound_workflow_id(secret: str, message_id: str) -> str:
    """Workflow id of an outbound message's OutboundMessage run, fed by its send record and statuses."""
    return f"wa-out-{message_key(secret, message_id)}"


def delivery_workflow_id(delivery_sha256: str) -> str:
    """Workflow id of a webhook delivery's IngestDelivery run; redeliveries of one body share it."""
    return f"wa-delivery-{delivery_sha256}"


def contact_key(secret: str, phone_or_id: str) -> str:
    """Keyed hash of a contact, safe for unencrypted Temporal search attributes."""
    normalized = normalize_phone(phone_or_id) or phone_or_id.strip()
    digest = hmac.new(secret.encode(), normalized.encode(), hashlib.sha256).hexdigest()
    return f"ck_{digest[:32]}"


def normalize_phone(value: str | None) -> str | None:
    """Digits only ('+44 7700-900123' -> '447700900123'); None if there are no digits to keep.

    Identifiers that are not phone numbers (a BSUID such as 'GB.8830…', a username) are not
    phones and give None.
    """
    if not value:
        return None
    stripped = value.strip()
    # ASCII digits only: str.isdigit also takes '１２' and '²', which are no phone number's digits.
    if not _PHONE.fullmatch(stripped):
        return None
    digits = "".join(ch for ch in stripped if ch in _ASCII_DIGITS)
    return digits or None


def business_scopes(phone_number_id: str | None, display_phone_number: str | None) -> list[str]:
    """The retention-policy scopes that may apply to a business number, most specific first ('*' last)."""
    scopes = [s for s in (phone_number_id, normalize_phone(display_phone_number)) if s]
    return scopes + ["*"]
