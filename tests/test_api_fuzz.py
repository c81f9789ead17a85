"""Never a 500 from bad input to the HTTP API: generated filters, cursors, paths, Range and If-None-Match.

Every answer must be below 500, a 4xx must say what is wrong and no body may carry a traceback.
"""

from __future__ import annotations

import json
import uuid

from hypothesis import strategies as st
from yarl import URL

from tests.fuzz_http import fuzz_stack, path_segment, raw_request, request, seed
from tests.strategies import (
    EXAMPLES,
    cursors,
    explore,
    header_text,
    nasty_strings,
    query_keys,
    query_values,
    ranges,
    raw_header,
    raw_queries,
)

# The holes of issue 11, item 6, one request each -------------------------------------------------

async def test_a_deeply_nested_cursor_is_400_naming_cursor(stack_factory):
    import base64

    stack = await fuzz_stack(stack_factory)
    token = await stack.token("auditor")
    nested = base64.urlsafe_b64encode(b"[" * 2500 + b"]" * 2500).decode()
    for cursor in (nested, "A" * 6000, base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", {"a": 1}]').decode(),
                   base64.urlsafe_b64encode(b'["0001-01-01T00:00:00+14:00", "x"]').decode(),
                   base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", "a\\u0000b"]').decode()):
        status, _, answer = await request(stack, "GET", f"{stack.url}/api/v1/messages", params={"cursor": cursor},
                                          headers={"Authorization": f"Bearer {token}"}, where=cursor[:40])
        assert status == 400 and json.loads(answer)["filter"] == "cursor"


async def test_a_range_of_thousands_of_digits_is_answered_with_a_reason(stack_factory):
    stack = await fuzz_stack(stack_factory)
    seeded = await seed(stack)
    token = await stack.token("auditor")
    url = f"{stack.url}/api/v1/media/{seeded['archive_id']}"
    auth = {"Authorization": f"Bearer {token}"}
    size = len(seeded["image"])
    status, headers, answer = await request(stack, "GET", url, headers={**auth, "Range": "bytes=" + "9" * 5000 + "-"},
                                            where="huge start")
    assert status == 416 and headers["Content-Range"] == f"bytes */{size}" and json.loads(answer)["error"]
    # A last position beyond the end is clamped (RFC 9110), however many digits it has.
    status, headers, answer = await request(stack, "GET", url, headers={**auth, "Range": "bytes=10-" + "9" * 5000},
                                            where="huge end")
    assert status == 206 and answer == seeded["image"][10:] and headers["Content-Range"] == f"bytes 10-{size - 1}/{size}"
    status, _, answer = await request(stack, "GET", url, headers={**auth, "Range": "bytes=-" + "9" * 5000},
                                      where="huge suffix")
    assert status == 206 and answer == seeded["image"]
    status, _, answer = await request(stack, "GET", url, headers={**auth, "Range": "bytes=9000-9001"}, where="past end")
    assert status == 416 and json.loads(answer)["error"]


# Properties over generated input -----------------------------------------------------------------

async def test_api_never_crashes(stack_factory):
    stack = await fuzz_stack(stack_factory)
    seeded = await seed(stack)
    auth = {"Authorization": f"Bearer {await stack.token('auditor')}"}
    api = f"{stack.url}/api/v1"

    async def search(query: dict[str, str], raw: str, cursor: str) -> None:
        await request(stack, "GET", f"{api}/messages", params=query, headers=auth, where=f"messages {query!r}")
        await request(stack, "GET", URL(f"{api}/messages?{raw}", encoded=True), headers=auth, where=raw)
        status, _, body = await request(stack, "GET", f"{api}/messages", params={"cursor": cursor}, headers=auth,
                                        where=f"cursor {cursor[:60]}")
        assert status in (200, 400)
        if status == 400:
            assert json.loads(body)["filter"] == "cursor"

    await explore(search, st.dictionaries(query_keys, query_values, max_size=4), raw_queries, cursors())

    async def by_path(text: str, query: dict[str, str]) -> None:
        segment = path_segment(text)
        for route in ("messages", "conversations", "media"):
            await request(stack, "GET", URL(f"{api}/{route}/{segment}", encoded=True).with_query(query),
                          headers=auth, where=f"{route}/{segment}")

    await explore(by_path, st.text(max_size=40) | nasty_strings, st.dictionaries(query_keys, header_text, max_size=2))

    etag = f'"{seeded["sha256"]}"'

    async def media(ref: str, range_header: str | None, if_none_match: str | None) -> None:
        headers = dict(auth)
        if range_header is not None:
            headers["Range"] = range_header
        if if_none_match is not None:
            headers["If-None-Match"] = if_none_match
        status, got, body = await request(stack, "GET", f"{api}/media/{ref}", headers=headers,
                                          where=f"media {range_header!r} {if_none_match!r}")
        assert status in (200, 206, 304, 400, 404, 416)
        if status in (200, 206):
            assert int(got["Content-Length"]) == len(body)
            first, _, last = (got.get("Content-Range", "bytes 0-").split(" ")[1].split("/")[0]).partition("-")
            assert body == seeded["image"][int(first):int(last) + 1 if last else None]

    async def media_raw_headers(range_header: bytes, if_none_match: bytes) -> None:
        token = auth["Authorization"].encode()
        status, _ = await raw_request(stack, "GET", f"/api/v1/media/{seeded['archive_id']}",
                                      {"Authorization": token, "Range": b"bytes=" + range_header,
                                       "If-None-Match": if_none_match}, where=f"raw {range_header!r}")
        assert status in (200, 206, 304, 416)

    await explore(media_raw_headers, raw_header, raw_header, examples=EXAMPLES // 2)

    refs = st.sampled_from([seeded["archive_id"], seeded["media_id"], str(uuid.uuid4())])
    inm = st.none() | header_text | st.just(etag) | header_text.map(lambda t: f"{t}, {etag}")
    await explore(media, refs, st.none() | ranges, inm)
