"""The auditors' reconciliation pages over real HTTP: the days with their status and counts, one day's
gaps named by message id (hostile ids inert, links quoted), earlier versions, roles, and every read
written to the access log."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from markupsafe import escape

from tests.test_ui_security import HOSTILE, assert_inert, assert_strict_csp, fetch, sign_in
from wa_archive.integrity import reconciliation
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import BUSINESS, dumps, envelope, media_message, message, wamid

NUMBER = BUSINESS["phone_number_id"]


async def _red_day(stack) -> dict[str, str]:
    """A day with an archived message, a message whose media cannot be fetched (failed) and a status for
    a message the archive never saw sent (off-channel); both gap ids carry hostile markup. The report is
    made as of eight days later, past every deadline, and stored twice (versions 1 and 2)."""
    ids = {"archived": wamid(), "failed": f"wamid.F{HOSTILE}", "stray": f"wamid.S{HOSTILE}"}
    status, _ = await stack.post(dumps(envelope([message("text", {"body": "hello"}, mid=ids["archived"])])))
    assert status == 200
    missing = stack.graph.add(FakeMedia(f"x{uuid.uuid4().hex[:10]}", status=404))
    status, _ = await stack.post(dumps(envelope([media_message("image", missing.media_id, None, "image/jpeg",
                                                               mid=ids["failed"])])))
    assert status == 200
    status, _ = await stack.post(dumps(envelope(statuses=[
        {"id": ids["stray"], "status": "delivered", "timestamp": str(int(datetime.now(timezone.utc).timestamp())),
         "recipient_id": "447700900999"}])))
    assert status == 200
    await stack.wait_for_message(ids["archived"])
    await stack.wait_for_failure(ids["failed"])
    day = datetime.now(timezone.utc).date()
    for _ in range(2):
        report = await reconciliation.compute(stack.pool, day, as_of=datetime.now(timezone.utc) + timedelta(days=8),
                                              deadlines=reconciliation.deadlines_of(stack.settings))
        gaps = reconciliation.finish(report, None)
        assert report["status"] == "red" and gaps
        await reconciliation.save(stack.pool, report, gaps, workflow_id=None, run_id=None)
    return {**ids, "day": day.isoformat()}


async def test_the_days_and_a_day_s_gaps_are_shown_by_message_id_with_hostile_ids_inert(stack):
    seeded = await _red_day(stack)
    name = f"auditor-{uuid.uuid4().hex[:6]}"
    cookie = await sign_in(stack, await stack.token("auditor", name=name))

    status, headers, body = await fetch(stack, "/ui/", cookie)
    assert status == 200 and b'href="/ui/reconciliation"' in body  # in the pages' navigation

    status, headers, body = await fetch(stack, "/ui/reconciliation", cookie)
    html = body.decode()
    assert status == 200
    assert_strict_csp(headers, html)
    assert f'<a href="/ui/reconciliation/{seeded["day"]}">{seeded["day"]}</a>' in html
    assert "2 of 2" in html and ">red</span>" in html and NUMBER in html
    # The per-number counts: received 3 (archived, failed, stray), archived 1, failed 1, pending 1, off-channel 1.
    assert "<td>3</td><td>1</td><td>1</td><td>1</td>\n<td>1</td>" in html

    status, headers, body = await fetch(stack, f"/ui/reconciliation/{seeded['day']}", cookie)
    html = body.decode()
    assert status == 200, html
    assert_strict_csp(headers, html)
    assert_inert(html)
    assert "Version</dt><dd>2 of 2" in html
    for key in ("failed", "stray"):
        assert str(escape(seeded[key])) in html  # named, as text
    # The failed message has a message row (its media failed), so its id links to its page, quoted as one
    # path segment; the stray status's id has no message at all and is marked so, not linked.
    has_row = await stack.pool.fetchval("SELECT count(*) FROM messages WHERE id = $1", seeded["failed"])
    assert has_row == 1
    assert f'href="/ui/messages/{quote(seeded["failed"], safe="")}"' in html
    assert f'{str(escape(seeded["stray"]))}</span> <span class="muted">(no message record)' in html
    assert "Off-channel: statuses with no send record and no echo (1)" in html
    assert "Pending past their deadline (1)" in html and "Failed (1)" in html
    assert seeded["archived"] not in html  # archived in time: no gap to name
    assert f'href="/ui/reconciliation/{seeded["day"]}?version=1"' in html

    status, headers, body = await fetch(stack, f"/ui/reconciliation/{seeded['day']}?version=1", cookie)
    html = body.decode()
    assert status == 200 and "Version</dt><dd>1 of 2" in html and "an earlier version" in html
    assert_inert(html)

    for path, code in ((f"/ui/reconciliation/{seeded['day']}?version=x", 400),
                       (f"/ui/reconciliation/{seeded['day']}?version=9", 404),
                       ("/ui/reconciliation/2026-02-30", 400),
                       (f"/ui/reconciliation/{quote(HOSTILE, safe='')}", 400),
                       ("/ui/reconciliation/1999-01-01", 404)):
        status, headers, body = await fetch(stack, path, cookie)
        assert status == code, (path, status)
        assert_strict_csp(headers, body.decode())
        assert "<img src=x" not in body.decode()

    # Every read that reached the data was logged (bad dates and versions are refused before any read).
    logged = [(r["action"], r["target"].get("date"), r["target"].get("version")) for r in await stack.pool.fetch(
        "SELECT action, target FROM access_log WHERE actor = $1 AND target->>'via' = 'web' ORDER BY id", name)]
    assert logged == [("reconciliation", None, None), ("reconciliation", seeded["day"], None),
                      ("reconciliation", seeded["day"], 1), ("reconciliation", seeded["day"], 9),
                      ("reconciliation", "1999-01-01", None)]


async def test_only_signed_in_auditors_and_admins_read_reconciliation_pages(stack):
    async with stack.http.get(f"{stack.url}/ui/reconciliation", allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"].startswith("/ui/login?next=")
    refused = [f"{role}-{uuid.uuid4().hex[:6]}" for role in ("operator", "sender")]
    for name in refused:
        cookie = await sign_in(stack, await stack.token(name.split("-")[0], name=name))
        status, headers, body = await fetch(stack, "/ui/reconciliation", cookie)
        assert status == 403 and b"may not open this page" in body
        assert b'href="/ui/reconciliation"' not in body  # not offered in the navigation either
    assert await stack.pool.fetchval("SELECT count(*) FROM access_log WHERE action = 'reconciliation'"
                                     " AND actor = ANY($1::text[])", refused) == 0
    cookie = await sign_in(stack, await stack.token("admin"))
    status, _, body = await fetch(stack, "/ui/reconciliation", cookie)
    assert status == 200 and b"No day has been reconciled yet." in body
