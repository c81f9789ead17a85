"""Never a 500 from bad input to the consent API: mutated consent records, raw bytes, idempotency keys,
contact paths and report windows.

Every answer must be below 500, a 4xx must say what is wrong and no body may carry a traceback.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from yarl import URL

from tests.fuzz_http import fuzz_stack, path_segment, request
from tests.strategies import (
    PHONE,
    as_body,
    deep,
    explore,
    header_text,
    mutated,
    nasty_strings,
    query_keys,
    query_values,
)


async def test_consent_api_never_crashes(stack_factory):
    stack = await fuzz_stack(stack_factory)
    sender = {"Authorization": f"Bearer {await stack.token('sender')}", "Content-Type": "application/json"}
    auditor = {"Authorization": f"Bearer {await stack.token('auditor')}"}
    api = f"{stack.url}/api/v1"
    record = {"phone": PHONE, "state": "opted_in", "source": "web form", "evidence": "https://forms.example/1",
              "at": "2026-01-02T03:04:05Z", "business_phone_number_id": "109327745812336",
              "category": "marketing_messages"}

    async def consent(doc: Any, raw: bytes, key: str | None) -> None:
        headers = dict(sender) | ({"Idempotency-Key": key} if key is not None else {})
        status, _, body = await request(stack, "POST", f"{api}/consent", data=as_body(doc), headers=headers,
                                        where=f"consent {as_body(doc)[:200]!r} key {key!r}")
        assert status in (200, 201, 400, 409), body
        status, _, body = await request(stack, "POST", f"{api}/consent", data=raw, headers=sender,
                                        where=f"consent raw {raw[:100]!r}")
        assert status == 400, body

    await explore(consent, mutated(record), st.binary(max_size=200) | deep, st.none() | header_text)

    async def reads(text: str, query: dict[str, str]) -> None:
        segment = path_segment(text)
        status, _, body = await request(stack, "GET", URL(f"{api}/contacts/{segment}", encoded=True).with_query(query),
                                        headers=auditor, where=f"contacts/{segment} {query!r}")
        assert status in (200, 400, 404), body
        status, _, body = await request(stack, "GET", f"{api}/consent/report", params=query, headers=auditor,
                                        where=f"report {query!r}")
        assert status in (200, 400), body

    await explore(reads, st.text(max_size=40) | nasty_strings, st.dictionaries(query_keys, query_values, max_size=3))
