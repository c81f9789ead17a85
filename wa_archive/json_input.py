"""JSON from outside the archive: parsed with a nesting limit, and made storable in PostgreSQL.

PostgreSQL's `text` and `jsonb` cannot hold NUL, and UTF-8 cannot encode a lone surrogate, yet both
are valid JSON escapes (`\\u0000`, `\\ud800`). A signed webhook body holding them must still be
archived, or any WhatsApp user could keep a message out of the archive by typing one: so, right
after decoding, each such character becomes U+FFFD REPLACEMENT CHARACTER, and every string so
changed is a `SubstitutedText`, which lets the parsers flag the message (`text_substituted`). The
exact bytes stay in the delivery row and remain the evidence.
"""

from __future__ import annotations

import json
import re
from typing import Any

from wa_archive.errors import JsonRefused

# Webhook bodies and Cloud API send requests are about ten levels deep; a document far deeper is
# refused before anything (pydantic, asyncpg's encoder, Temporal's converter) recurses through it.
# No WhatsApp payload nests so, so refusing a signed one loses no message.
MAX_DEPTH = 64

REPLACEMENT = "\ufffd"
# After decoding, a surrogate pair is one code point, so every surrogate left is a lone one.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_REFUSED = "body contains a NUL character or text that is not Unicode"


class SubstitutedText(str):
    """Text in which NUL and lone surrogates were replaced by U+FFFD; the original is in the signed bytes."""

    __slots__ = ()


def storable_text(value: str) -> bool:
    """False for text PostgreSQL cannot hold (NUL) or UTF-8 cannot encode (lone surrogates)."""
    return _UNSTORABLE.search(value) is None


def as_storable(value: str) -> str:
    """`value` with what PostgreSQL cannot hold spelled out: NUL as \\x00, undecodable bytes as \\xNN."""
    try:
        raw = value.encode("utf-8", "surrogateescape")  # header bytes as they arrived
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


def substitute_text(value: str) -> str:
    """`value` unchanged when storable; otherwise a SubstitutedText with U+FFFD for each NUL and lone surrogate."""
    if storable_text(value):
        return value
    return SubstitutedText(_UNSTORABLE.sub(REPLACEMENT, value))


def substituted(value: Any) -> bool:
    """True when `value`, or any key or string inside it, was changed by the substitution of load_json."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, SubstitutedText):
            return True
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def load_json(body: bytes, *, storable: bool = False, substitute: bool = False) -> Any:
    """The document in `body`, refused when nested more than MAX_DEPTH deep.

    Text PostgreSQL cannot hold is refused with `storable`, replaced (see substitute_text) with
    `substitute`, and kept as parsed with neither.
    """
    try:
        data = json.loads(body)
    except RecursionError:
        raise JsonRefused(f"body is nested more than {MAX_DEPTH} levels deep") from None
    except (ValueError, UnicodeDecodeError):
        raise JsonRefused("body is not valid JSON") from None

    def text(value: str) -> str:
        if substitute:
            return substitute_text(value)
        if storable and not storable_text(value):
            raise JsonRefused(_REFUSED)
        return value

    def walk(value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return text(value)
        if not isinstance(value, (dict, list)):
            return value
        if depth >= MAX_DEPTH:
            raise JsonRefused(f"body is nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, list):
            return [walk(item, depth + 1) for item in value]
        made: dict[str, Any] = {}
        for key, item in value.items():
            key = text(key)
            if isinstance(key, SubstitutedText):
                # A sent key equal to the substituted one would otherwise keep its own, unmarked,
                # key object in the dict: drop it so the mark survives (the signed bytes keep both).
                made.pop(key, None)
            made[key] = walk(item, depth + 1)
        return made

    return walk(data, 0)
