"""JSON from outside the archive: parsed with a nesting limit, and checked for text PostgreSQL can hold."""

from __future__ import annotations

import json
from typing import Any

# Webhook bodies and Cloud API send requests are about ten levels deep; a document far deeper is
# refused before anything (pydantic, asyncpg's encoder, Temporal's converter) recurses through it.
MAX_DEPTH = 64


class JsonRefused(ValueError):
    """The body is not JSON this archive accepts; the message says why."""


def storable_text(value: str) -> bool:
    """False for text PostgreSQL cannot hold (NUL) or UTF-8 cannot encode (lone surrogates)."""
    if "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def as_storable(value: str) -> str:
    """`value` with what PostgreSQL cannot hold spelled out: NUL as \\x00, undecodable bytes as \\xNN."""
    try:
        raw = value.encode("utf-8", "surrogateescape")  # header bytes as they arrived
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


def load_json(body: bytes, *, storable: bool = False) -> Any:
    """The document in `body`. With `storable`, every key and string must also pass storable_text."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise JsonRefused(f"body is nested more than {MAX_DEPTH} levels deep") from None
    except (ValueError, UnicodeDecodeError):
        raise JsonRefused("body is not valid JSON") from None
    pending: list[tuple[Any, int]] = [(data, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                raise JsonRefused(f"body is nested more than {MAX_DEPTH} levels deep")
            children = list(value.items()) if isinstance(value, dict) else [(None, v) for v in value]
            for key, child in children:
                if storable and key is not None and not storable_text(key):
                    raise JsonRefused("body contains a NUL character or text that is not Unicode")
                pending.append((child, depth + 1))
        elif storable and isinstance(value, str) and not storable_text(value):
            raise JsonRefused("body contains a NUL character or text that is not Unicode")
    return data
