"""An access-log entry as a person would write it: "exported messages from 2026-11-01 to 2026-11-26,
phone +447700900123", never the stored dict. Shared by the page, the API's `description` and the CLI,
so the three say the same thing. Targets hold values a sender chose (ids, search text): the result is
plain text for the caller to escape, never markup."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time, timedelta, timezone
from typing import Any

# What each action did, as a verb phrase; an action not named here is shown by its own name.
ACTIONS = {
    "search": "searched messages",
    "view": "opened",
    "conversation": "read the conversation",
    "media": "downloaded",
    "export": "exported messages",
    "export_download": "downloaded",
    "export_status": "checked",
    "receipt": "took the receipt of",
    "access_log": "read the access log",
    "access-log": "read the access log",
    "failures": "read the list of archive failures",
    "reconciliation": "read the reconciliation report",
    "reconciliation-list": "read the list of reconciliation reports",
    "reconciliation-show": "read the reconciliation report",
    "reconcile": "reconciled",
    "contact": "read the contact and consent timeline of",
    "consent-report": "read the consent report",
    "retrieval-test": "ran a retrieval test",
    "codec_decode": "decoded Temporal payloads",
    "codec_encode": "encoded Temporal payloads",
    "hold.set": "set a legal hold",
    "hold.release": "released a legal hold",
    "hold.list": "listed the legal holds",
    "retention.set": "set a retention period",
    "disposition.list": "listed the dispositions",
    "disposition.plan": "listed what is due for disposition",
    "erasure.request": "asked for an erasure",
}
REASONS = {
    "no_token": "no API token was given",
    "invalid_token": "the token is unknown or revoked",
    "role_not_allowed": "the role may not do this",
    "not_signed_in": "not signed in",
    "sign_in_link_unknown": "the sign-in link is not valid",
    "sign_in_link_used": "the sign-in link was already used",
    "sign_in_link_expired": "the sign-in link had expired",
    "sign_in_link_token_revoked": "the sign-in link's token is revoked",
}
# Fields whose value is worth a word before it; the rest are said as "name value".
LABELS = {
    "phone": "phone", "message_id": "message", "export_id": "export", "media": "file", "sha256": "SHA-256",
    "date": "for", "version": "version", "q": "containing", "template": "template", "type": "type",
    "case": "case", "reason": "reason", "messages": "messages", "days": "days", "scope": "scope",
    "basis": "legal basis", "request": "request", "namespace": "namespace", "payloads": "payloads",
    "workflow_id": "workflow", "sample": "sample of", "range": "bytes", "outcome": "only", "actor": "by",
}
_ORDER = {name: i for i, name in enumerate(("phone", "message_id", "export_id", "media", "date", "version", "case",
                                            "q", "template", "type"))}
# Paging and bookkeeping fields that say nothing about what was read.
QUIET = {"limit", "cursor", "via", "found", "previous_days", "consent_required", "active_only"}


def describe(action: str, target: dict[str, Any] | None, outcome: str = "allowed") -> str:
    """One sentence for one entry (without who: that is its own column), on one line whatever it quotes.
    A target that is not an object (a row written by other means than record_access) is shown as the
    value it is."""
    shown = dict(target) if isinstance(target, Mapping) else ({} if target is None else {"target": target})
    return _one_line(_sentence(action, shown, outcome))


def _sentence(action: str, target: dict[str, Any], outcome: str) -> str:
    if outcome == "refused":
        return _refusal(target)
    verb = ACTIONS.get(action, action.replace("_", " ").replace(".", " "))
    if target.get("found") is False:
        verb = "asked for a file that is not archived:"
    phrases = []
    period = period_phrase(target.pop("since", None), target.pop("until", None))
    if period:
        phrases.append(period)
    elif action == "export":
        phrases.append("of all dates")
    direction = target.pop("direction", None)
    if direction in ("in", "out"):
        phrases.append("inbound only" if direction == "in" else "outbound only")
    # A fixed order (jsonb keeps keys by length, not as written): the phone right after the period
    # ("from … to …, phone +…"), then what was read, then the rest alphabetically.
    ordered = sorted(target.items(), key=lambda item: (_ORDER.get(item[0], len(_ORDER)), item[0]))
    for name, value in ordered:
        if name in QUIET or _absent(value):
            continue
        label = LABELS.get(name, name.replace("_", " "))
        if name == "phone":
            value = _phone(value)
            if action in ("conversation", "contact"):
                phrases.insert(0, f"with {value}" if action == "conversation" else value)
                continue
        elif name == "q":
            value = f"“{value}”"
        phrases.append(f"{label} {_text(value)}")
    sentence = verb
    if phrases:
        # "opened message X", "exported messages from …"; "searched messages: phone …" where no object follows.
        joiner = " " if phrases[0] == period or action in _OBJECT_FIRST or verb.endswith(":") else ": "
        sentence += joiner + ", ".join(phrases)
    if target.get("via") == "web":
        sentence += " (on the web pages)"
    return sentence


# Actions whose verb wants its object right after it ("opened message X", not "opened: message X").
_OBJECT_FIRST = {"view", "media", "export_download", "export_status", "receipt", "reconcile", "export",
                 "reconciliation", "reconciliation-show", "conversation", "contact"}


def _refusal(target: dict[str, Any]) -> str:
    reason = REASONS.get(str(target.get("reason")), _text(target.get("reason")))
    where = " ".join(str(target[k]) for k in ("method", "path") if not _absent(target.get(k)))
    repeated = target.get("repeated")
    if isinstance(repeated, int) and not isinstance(repeated, bool):
        sources = target.get("sources")
        who = f" from {sources} sources" if isinstance(sources, int) and not isinstance(sources, bool) else ""
        minute = _instant(target.get("minute"))
        within = f" in the minute from {minute}" if minute else ""
        return (f"refused {repeated} more time{'s' if repeated != 1 else ''}{who}{within}: {reason}"
                + (f" (last: {where})" if where else ""))
    return f"refused: {reason}" + (f" ({where})" if where else "")


def period_phrase(since: Any, until: Any) -> str:
    """'from 2026-11-01 to 2026-11-26' for [since, until): an until at midnight ends the day before it,
    since the archive's periods are half open and a date means the whole day."""
    start = _when(since)
    end = _when(until)
    words = []
    if start is not None:
        words.append(f"from {_day_or_instant(start)}")
    if end is not None:
        if end.timetz() == time(tzinfo=timezone.utc):
            words.append(f"to {(end - timedelta(days=1)).date().isoformat()}")
        else:
            words.append(f"until {_day_or_instant(end)}")
    return " ".join(words)


def selection(phone: str | None, since: Any, until: Any) -> str:
    """What an export or search selects: "messages from 2026-11-01 to 2026-11-26, phone +447700900123"."""
    words = "messages " + (period_phrase(since, until) or "of all dates")
    return words + (f", phone {_phone(phone)}" if phone else "")


def source(remote_addr: str | None) -> str:
    """Where a read came from, in words: an address, this machine's command line, or the worker."""
    if remote_addr is None:
        return "the worker (a job started by the reader)"
    if remote_addr == "local":
        return "the command line on the archive's machine"
    return remote_addr


def _when(value: Any) -> datetime | None:
    if _absent(value):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def _day_or_instant(value: datetime) -> str:
    if value.timetz() == time(tzinfo=timezone.utc):
        return value.date().isoformat()
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _instant(value: Any) -> str | None:
    parsed = _when(value)
    return parsed.strftime("%Y-%m-%d %H:%M UTC") if parsed else None


def _phone(value: Any) -> str:
    text = str(value)
    return f"+{text}" if text.isdigit() else text


def _absent(value: Any) -> bool:
    # Some older command-line entries stored a missing date as the text "None".
    return value is None or value == "" or value == "None" or value == [] or value == {}


# Characters that would make a quoted value start a new line, rewrite the terminal or reorder the text
# around it: controls (C0, DEL, C1), line and paragraph separators, and the bidirectional controls.
_UNPRINTABLE = {*range(0x20), *range(0x7F, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F),
                *range(0x2066, 0x206A)}
_ESCAPED = {code: chr(code).encode("unicode_escape").decode("ascii") for code in _UNPRINTABLE}


def _one_line(sentence: str) -> str:
    """The sentence with each such character written as its escape (\\n, \\x1b, \\u202e): a refused
    request's path is any text an unauthenticated client chose, and must not forge a line of the
    CLI's listing or read differently from what is stored."""
    return sentence.translate(_ESCAPED)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_text(v)}" for k, v in value.items() if not _absent(v))
    return str(value)
