"""A receipt asked for while the record's ledger leaf waits for the integrator: the API and the page
say so with 409 and Retry-After (the CLI exits 75), and give the receipt once it is integrated."""

from __future__ import annotations

import json
from urllib.parse import quote

from tests.test_auditor_access import _archive_texts, _call
from tests.test_ui_security import fetch, sign_in
from wa_archive.credentials import ledger_signer
from wa_archive.integrity import ledger, sequencing


async def test_a_receipt_of_a_leaf_not_yet_integrated_says_when_to_ask_again(stack):
    auditor = await stack.token("auditor")
    (mid,) = await _archive_texts(stack, "integrated, then appended to again")
    await ledger.write_checkpoint(stack.pool, stack.store, ledger_signer(stack.settings))
    path = f"/api/v1/messages/{quote(mid, safe='')}/receipt"
    status, _, body = await _call(stack, "GET", path, auditor)
    assert status == 200 and json.loads(body)["record"]["id"] == mid

    # A newer leaf for the same record, written but not yet numbered (as a status change would add).
    async with stack.pool.acquire() as conn:
        await ledger.append_message(conn, mid)
    async with stack.http.get(f"{stack.url}{path}", headers={"Authorization": f"Bearer {auditor}"}) as resp:
        answer = await resp.json()
        assert resp.status == 409, answer
        assert int(resp.headers["Retry-After"]) >= 1 and "ask again" in answer["error"]
    cookie = await sign_in(stack, auditor)
    status, headers, page = await fetch(stack, f"/ui/receipts/{quote(mid, safe='')}", cookie)
    assert status == 409 and int(headers["Retry-After"]) >= 1 and "ask again" in page.decode()

    await sequencing.integrate(stack.pool)
    await ledger.write_checkpoint(stack.pool, stack.store, ledger_signer(stack.settings))
    status, _, body = await _call(stack, "GET", path, auditor)
    assert status == 200 and json.loads(body)["record"]["id"] == mid
