"""Generated input for the property tests, and the driver that runs them from an async test.

Each property test over HTTP builds one real stack and lets hypothesis drive it from a worker thread while
every example is awaited on the test's own event loop (hypothesis has no async driver of its own).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import APP_SECRET
from wa_archive.sources.meta.samples import envelope, message, wamid
from wa_archive.sources.signature import meta_signature

PHONE = "447700900123"
EXAMPLES = int(os.environ.get("WA_ARCHIVE_FUZZ_EXAMPLES", "60"))


# Driving hypothesis from an async test -------------------------------------------------------------

async def explore(check: Callable[..., Awaitable[None]], *strategies: st.SearchStrategy,
                  examples: int = EXAMPLES) -> None:
    """Run `check` on generated examples (shrunk on failure) without leaving the test's event loop."""
    loop = asyncio.get_running_loop()

    @settings(max_examples=examples, deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(st.tuples(*strategies))
    def drive(args: tuple) -> None:
        asyncio.run_coroutine_threadsafe(check(*args), loop).result(timeout=60)

    await asyncio.to_thread(drive)


# Strategies --------------------------------------------------------------------------------------

# Anything a JSON parser gives back, NUL and lone surrogates included (json.dumps escapes them).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# Text a header or a query value can carry through an HTTP client (no controls, no surrogates).
header_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=80)
deep = st.integers(200, 200_000).map(lambda n: ("[" * n + "]" * n).encode())
# Deep enough to exhaust the JSON parser's recursion limit, short enough for a request line (8 KiB).
deep_in_url = st.integers(200, 2500).map(lambda n: ("[" * n + "]" * n).encode())
nasty_strings = st.sampled_from(["\x00", "\ud800", "é", "%00", "../..", "'; DROP TABLE messages; --",
                                 "<script>alert(1)</script>", "9" * 2000, "", " ", "\u202e", "\uffff"])


def _paths(doc: Any, here: tuple = ()) -> list[tuple]:
    found = [here]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, here + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += _paths(value, here + (i,))
    return found


@st.composite
def mutated(draw: st.DrawFn, doc: Any) -> Any:
    """`doc` with one to three subtrees replaced by arbitrary JSON, or deleted."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        replacement = draw(json_values | nasty_strings)
        if not path:
            doc = replacement
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, (dict, list)):
            del parent[path[-1]]
        else:
            parent[path[-1]] = replacement
    return doc


def meta_doc() -> dict:
    return envelope([message("text", {"body": "hello"}, mid=wamid())])


def wasender_doc() -> dict:
    return {"event": "messages.upsert", "timestamp": 1792496120, "data": {"messages": [
        {"key": {"id": "3EB0" + uuid.uuid4().hex[:16].upper(), "fromMe": False,
                 "remoteJid": f"{PHONE}@s.whatsapp.net"}, "message": {"conversation": "hi"}}]}}


def as_body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


bodies = st.one_of(
    st.binary(max_size=600),
    json_values.map(as_body),
    mutated(meta_doc()).map(as_body),
    mutated(wasender_doc()).map(as_body),
    deep,
)
signatures = st.one_of(
    st.none(), header_text, st.just("sha256=é"), st.just("sha256=\udce9" * 3),
    st.text("0123456789abcdefABCDEF", max_size=70).map(lambda h: "sha256=" + h),
    header_text.map(lambda t: "sha256=" + t),
    st.binary(max_size=32).map(lambda b: meta_signature(APP_SECRET, b)),  # valid, for another body
)
# Header values as raw bytes beyond ASCII (a client sends them; the server decodes with surrogateescape).
raw_header = st.binary(min_size=1, max_size=40).filter(lambda b: not set(b) & set(range(32)) and 127 not in b)
digits = st.integers(1, 6000).map(lambda n: "9" * n)
ranges = st.one_of(
    header_text,
    st.builds(lambda a, b: f"bytes={a}-{b}", st.integers(0, 6000) | digits | st.just(""),
              st.integers(0, 6000) | digits | st.just("")),
    st.builds(lambda a: f"bytes=-{a}", st.integers(0, 6000) | digits),
    st.sampled_from(["bytes=0-1,3-4", "bytes= 1-2", "bytes=١-٢", "bytes=-", "bytes=5-2", "lines=1-2", "bytes=0x10-"]),
)
query_keys = st.sampled_from(["phone", "since", "until", "direction", "type", "template", "has_media", "q",
                              "limit", "cursor", "redirect"]) | header_text
query_values = st.one_of(
    header_text, nasty_strings.filter(lambda s: "\ud800" not in s),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-02-30", "0001-01-01",
                     "-1", "1e9", "999999999999999999999", "true", "in", "out", "presigned", "+44 7700 900123"]),
    st.datetimes().map(lambda d: d.isoformat()),
)
raw_query_parts = st.sampled_from(["%00", "%FF", "%ED%A0%80", "%", "%2", "&", "=", "+", ";", "cursor", "since",
                                   "q", "phone", "2026-01-01", "a", "%C3%A9", "[", "]", "%0A"])
raw_queries = st.lists(raw_query_parts, max_size=12).map("".join)


@st.composite
def cursors(draw: st.DrawFn) -> str:
    """Cursor values: base64 of arbitrary or deeply nested JSON, and plain junk."""
    kind = draw(st.sampled_from(["json", "deep", "junk", "pair"]))
    if kind == "junk":
        return draw(header_text)
    if kind == "deep":
        raw = draw(deep_in_url)
    elif kind == "pair":
        raw = as_body([draw(st.text(max_size=40) | query_values), draw(json_values | nasty_strings)])
    else:
        raw = as_body(draw(json_values))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
