"""The coexistence fields: what a business sends from the WhatsApp Business app (`smb_message_echoes`)
and the chat history Meta syncs when such a business is onboarded (`history`).

Both carry message objects shaped like webhook messages, so payload.py parses each of them with the
parser of live messages (and the worker's provenance check builds them again the same way). This
module says only what differs: who the other party is, which way the message went, and the flags and
ids that tell an echo or a backfilled message from live capture.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from wa_archive.archive.keys import normalize_phone
from wa_archive.models import Contact

ECHO_FIELD = "smb_message_echoes"
HISTORY_FIELD = "history"
FIELDS = frozenset({ECHO_FIELD, HISTORY_FIELD})

# Meta's code for a business that declined to share its chat history.
HISTORY_DECLINED_CODE = 2593109

BUSINESS_APP = "business_app"  # sent from the WhatsApp Business app or a linked device, not through the API
BACKFILLED = "backfilled"  # from the history sync: not live capture (latency figures leave it out)
HISTORY_MEDIA = "history_media"  # the media a later history webhook named for an earlier message
# A later history webhook names the media of a message an earlier chunk gave without it; it is kept as
# a record of its own under the message's id with this suffix (the first record is never changed).
HISTORY_MEDIA_SUFFIX = "#media"


@dataclass(frozen=True)
class Origin:
    """How a coexistence message object differs from a live inbound one."""

    direction: Literal["in", "out"]
    counterpart: str | None  # the WhatsApp user: the echo's `to`, the history thread's id
    flags: tuple[str, ...]
    invalid_kind: str  # the raw event kind when the object cannot be parsed


@dataclass(frozen=True)
class Unit:
    """One thing in a coexistence change: a message object with its origin, or a raw event."""

    item: Any = None
    origin: Origin | None = None
    raw_kind: str | None = None
    raw_payload: dict[str, Any] = field(default_factory=dict)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _small_int(value: Any) -> str | None:
    """A phase or chunk number as written in a flag; None for anything that is not a small integer."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**6:
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6:
        return str(int(value))
    return None


def count_items(field_name: str, value: dict[str, Any]) -> int:
    """Message objects a coexistence change carries (a history webhook can describe thousands)."""
    if field_name == ECHO_FIELD:
        return len(_list(value.get("message_echoes")))
    if field_name != HISTORY_FIELD:
        return 0
    total = 0
    for chunk in _list(value.get("history")):
        if isinstance(chunk, dict):
            total += sum(len(_list(t.get("messages"))) for t in _list(chunk.get("threads")) if isinstance(t, dict))
    return total


def units(field_name: str, value: dict[str, Any]) -> Iterator[Unit]:
    """The message objects and raw events of one `smb_message_echoes` or `history` change, in order."""
    if field_name == ECHO_FIELD:
        yield from _echo_units(value)
    else:
        yield from _history_units(value)


def _echo_units(value: dict[str, Any]) -> Iterator[Unit]:
    echoes = value.get("message_echoes")
    if not isinstance(echoes, list) or not echoes:
        yield Unit(raw_kind="invalid_echoes" if echoes is not None else "empty_change", raw_payload=value)
        return
    for item in echoes:
        to = _text(item.get("to")) if isinstance(item, dict) else None
        yield Unit(item=item, origin=Origin(direction="out", counterpart=to, flags=(BUSINESS_APP,),
                                            invalid_kind="invalid_echo"))


def _declined(errors: list[Any]) -> bool:
    return any(isinstance(e, dict) and str(e.get("code")) == str(HISTORY_DECLINED_CODE) for e in errors)


def _history_units(value: dict[str, Any]) -> Iterator[Unit]:
    business = normalize_phone(_text((value.get("metadata") or {}).get("display_phone_number")))
    chunks = value.get("history")
    top_errors = _list(value.get("errors"))
    if top_errors:
        yield Unit(raw_kind="history_declined" if _declined(top_errors) else "history_error", raw_payload=value)
    if chunks is None:
        if not top_errors:
            yield Unit(raw_kind="empty_change", raw_payload=value)
        return
    if not isinstance(chunks, list):
        yield Unit(raw_kind="invalid_history", raw_payload=value)
        return
    for chunk in chunks:
        if not isinstance(chunk, dict) or not isinstance(chunk.get("threads", []), list):
            yield Unit(raw_kind="invalid_history", raw_payload={"chunk": chunk})
            continue
        errors = _list(chunk.get("errors"))
        if errors:
            yield Unit(raw_kind="history_declined" if _declined(errors) else "history_error", raw_payload=chunk)
        threads = chunk.get("threads") or []
        if not threads and not errors:
            # Progress without messages (a phase with no chat history): kept, so the sync's course is on record.
            yield Unit(raw_kind="history_progress", raw_payload=chunk)
        meta = chunk.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        flags = [BACKFILLED]
        if (phase := _small_int(meta.get("phase"))) is not None:
            flags.append(f"history_phase:{phase}")
        if (order := _small_int(meta.get("chunk_order"))) is not None:
            flags.append(f"history_chunk:{order}")
        for thread in threads:
            messages = thread.get("messages") if isinstance(thread, dict) else None
            if not isinstance(messages, list):
                yield Unit(raw_kind="invalid_history_thread", raw_payload={"thread": thread})
                continue
            user = _text(thread.get("id"))
            for item in messages:
                yield Unit(item=item, origin=_history_origin(item, user, business, tuple(flags)))


def _history_origin(item: Any, user: str | None, business: str | None, flags: tuple[str, ...]) -> Origin:
    """A history message went out when its `from` is the business's own number."""
    sender = normalize_phone(_text(item.get("from"))) if isinstance(item, dict) else None
    outbound = business is not None and sender == business
    return Origin(direction="out" if outbound else "in", counterpart=user, flags=flags,
                  invalid_kind="invalid_history_message")


def counterpart_contact(user: str | None) -> Contact:
    """The WhatsApp user a coexistence message was exchanged with: a phone number, or a business-scoped id."""
    phone = normalize_phone(user)
    return Contact(phone=phone, wa_id=user, user_id=None if phone or not user else user)
