"""Never a 500 from bad input to the record API and the send proxy: mutated send records and raw bytes.

Every answer must be below 500, a 4xx must say what is wrong and no body may carry a traceback.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.fuzz_http import fuzz_stack, request
from tests.strategies import PHONE, as_body, deep, explore, mutated
from wa_archive.sources.meta.samples import wamid


async def test_outbound_and_send_proxy_never_crash(stack_factory):
    stack = await fuzz_stack(stack_factory)
    auth = {"Authorization": f"Bearer {await stack.token('sender')}", "Content-Type": "application/json"}
    record = {"phone_number_id": "109327745812336", "request": {"messaging_product": "whatsapp", "to": PHONE,
              "type": "text", "text": {"body": "hi"}}, "response": {"messages": [{"id": "wamid.X"}]}}

    async def outbound(doc: Any, raw: bytes) -> None:
        if isinstance(doc, dict) and isinstance(doc.get("response"), dict):
            doc["response"] = {"messages": [{"id": wamid()}]}  # a fresh wamid, so each valid record is new
        status, _, body = await request(stack, "POST", f"{stack.url}/api/v1/outbound", data=as_body(doc), headers=auth,
                                        where=f"outbound {as_body(doc)[:200]!r}")
        assert status in (200, 400), body
        status, _, body = await request(stack, "POST", f"{stack.url}/api/v1/outbound", data=raw, headers=auth,
                                        where=f"outbound raw {raw[:100]!r}")
        assert status == 400, body

    await explore(outbound, mutated(record), st.binary(max_size=200) | deep)

    send = {"messaging_product": "whatsapp", "to": PHONE, "type": "text", "text": {"body": "hi"}}

    async def proxy(doc: Any, raw: bytes) -> None:
        url = f"{stack.url}/graph/109327745812336/messages"
        status, _, body = await request(stack, "POST", url, data=as_body(doc), headers=auth, json_errors=False,
                                        where=f"proxy {as_body(doc)[:200]!r}")
        assert status in (200, 400), body
        status, _, body = await request(stack, "POST", url, data=raw, headers=auth, where=f"proxy raw {raw[:100]!r}")
        assert status == 400, body

    await explore(proxy, mutated(send).filter(lambda d: isinstance(d, dict)), st.binary(max_size=200) | deep)
