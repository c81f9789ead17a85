"""An auditor's own job with an auditor's own token, over real HTTP on the real stack: the access log
(API by cursor, page, CLI) read by auditors and admins only, refused attempts logged as such (and
bounded), a message's receipt and an export bundle downloaded from the API and the pages and
verified offline, and every access-log entry said in words."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import uuid
import zipfile
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from yarl import URL

from tests.conftest import LEDGER_KEY, wait_until
from tests.test_export import PUBLIC_KEY, _cli, _env
from tests.test_openapi import check
from tests.test_ui_security import fetch, sign_in
from wa_archive.access.refusals import Refusal, RefusalLog
from wa_archive.access.wording import describe
from wa_archive.integrity import ledger, sequencing
from wa_archive.integrity.ledger import Signer
from wa_archive.sources.meta.samples import dumps, envelope, message, wamid

PHONE = "447700900123"


async def _call(stack, method: str, path: str, token: str | None, **kwargs):
    """(status, content type, body) of one request; `path` is sent as it is (already quoted)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with stack.http.request(method, URL(f"{stack.url}{path}", encoded=True), headers=headers,
                                  allow_redirects=False, **kwargs) as resp:
        return resp.status, resp.content_type, await resp.read()


async def _mark(stack) -> int:
    """The newest access-log id: the log is append-only and outlives each test's clean database."""
    return int(await stack.pool.fetchval("SELECT coalesce(max(id), 0) FROM access_log"))


async def _refused_rows(stack, after: int) -> list[dict]:
    rows = await stack.pool.fetch("SELECT * FROM access_log WHERE outcome = 'refused' AND id > $1 ORDER BY id", after)
    return [dict(r) for r in rows]


async def _archive_texts(stack, *bodies: str, phone: str = PHONE) -> list[str]:
    ids = [wamid() for _ in bodies]
    status, _ = await stack.post(dumps(envelope([
        message("text", {"body": body}, mid=mid, phone=phone, ts=1767268800 + i)
        for i, (mid, body) in enumerate(zip(ids, bodies, strict=True))])))
    assert status == 200
    for mid in ids:
        await stack.wait_for_message(mid)
    return ids


def _signer() -> Signer:
    return Signer(base64.b64decode(LEDGER_KEY))


async def _avoid_minute_end() -> None:
    """Refusals are counted per clock minute: start a burst early in one, so it stays within it."""
    while time.time() % 60 > 40:
        await asyncio.sleep(0.5)


# The access log through the API -------------------------------------------------------------------


async def test_access_log_api_is_for_auditors_and_admins_and_refusals_are_logged(stack):
    auditor, admin, sender, operator = [await stack.token(r) for r in ("auditor", "admin", "sender", "operator")]
    await _avoid_minute_end()
    start = await _mark(stack)
    status, ctype, body = await _call(stack, "GET", "/api/v1/access-log", None)
    assert status == 401
    check("get", "/api/v1/access-log", status, ctype, body)
    bogus = "wa_" + uuid.uuid4().hex  # a secret someone presented: never stored
    assert (await _call(stack, "GET", "/api/v1/access-log", bogus))[0] == 401
    for token in (sender, operator):
        status, ctype, body = await _call(stack, "GET", "/api/v1/access-log", token)
        assert status == 403 and "auditor" in json.loads(body)["error"]
    for token in (auditor, admin):
        status, ctype, body = await _call(stack, "GET", "/api/v1/access-log", token)
        assert status == 200
        check("get", "/api/v1/access-log", status, ctype, body)

    refused = await _refused_rows(stack, start)
    reasons = [(r["actor"], r["role"], r["target"]["reason"], r["target"]["path"]) for r in refused]
    sender_name, operator_name = [
        (await stack.pool.fetchval("SELECT name FROM api_tokens WHERE role = $1", role)) for role in ("sender", "operator")]
    assert reasons == [("unknown", "none", "no_token", "/api/v1/access-log"),
                       ("unknown", "none", "invalid_token", "/api/v1/access-log"),
                       (sender_name, "sender", "role_not_allowed", "/api/v1/access-log"),
                       (operator_name, "operator", "role_not_allowed", "/api/v1/access-log")]
    everything = json.dumps([dict(r) for r in await stack.pool.fetch("SELECT * FROM access_log WHERE id > $1", start)],
                            default=str)
    assert bogus not in everything
    # Each refusal is provable like any other entry: its leaf's digest is the row's, outcome included
    # (once the integrator, which the test stack does not schedule, has numbered the leaves).
    await sequencing.integrate(stack.pool)
    leaves = {r["record_id"]: r["digest"] for r in await stack.pool.fetch(
        "SELECT record_id, digest FROM ledger_leaves WHERE kind = 'access'")}
    for row in refused:
        assert leaves[str(row["id"])] == ledger.access_digest(row)
        assert ledger.access_digest(row) != ledger.access_digest({**row, "outcome": "allowed"})

    # The auditor sees the refusals, in words, newest first.
    status, _, body = await _call(stack, "GET", "/api/v1/access-log?outcome=refused&limit=4", auditor)
    items = json.loads(body)["items"]
    assert [i["target"]["reason"] for i in items] == ["role_not_allowed", "role_not_allowed", "invalid_token", "no_token"]
    assert items[-1]["description"] == "refused: no API token was given (GET /api/v1/access-log)"
    assert items[0]["description"] == "refused: the role may not do this (GET /api/v1/access-log)"


async def test_access_log_pages_by_a_stable_cursor_newest_first(stack):
    auditor = await stack.token("auditor")
    began = await stack.pool.fetchval("SELECT now()")
    ids = await _archive_texts(stack, "one", "two", "three")
    for mid in ids:
        assert (await _call(stack, "GET", f"/api/v1/messages/{quote(mid, safe='')}", auditor))[0] == 200
    everything = [r["id"] for r in await stack.pool.fetch("SELECT id FROM access_log WHERE at >= $1 ORDER BY id DESC",
                                                          began)]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        path = f"/api/v1/access-log?limit=2&since={quote(began.isoformat(), safe='')}" + (
            f"&cursor={cursor}" if cursor else "")
        status, ctype, body = await _call(stack, "GET", path, auditor)
        assert status == 200, body
        page = check("get", "/api/v1/access-log", status, ctype, body)
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Each page's own read was logged as it was asked, above the cursor: the walk is exactly the log as it
    # was, plus the first page's own entry, each once and in order, however much was written meanwhile.
    assert seen == sorted(set(seen), reverse=True)
    assert seen[1:] == everything and pages == (len(everything) + 1 + 1) // 2
    # Only this test's entries: the log is not emptied between tests, and earlier ones opened messages too.
    newest = json.loads((await _call(stack, "GET", f"/api/v1/access-log?limit=20&since={quote(began.isoformat(), safe='')}",
                                     auditor))[2])["items"]
    views = [e for e in newest if e["action"] == "view"]
    assert [v["description"] for v in views] == [f"opened message {mid}" for mid in reversed(ids)]


async def test_access_log_dates_mean_whole_days_and_bad_filters_are_400(stack):
    auditor = await stack.token("auditor")
    today = datetime.now(timezone.utc).date()
    yesterday, tomorrow = today - timedelta(days=1), today + timedelta(days=1)
    status, _, body = await _call(stack, "GET", f"/api/v1/access-log?since={today}&until={today}", auditor)
    assert status == 200 and json.loads(body)["items"], "an until date includes its whole day"
    # The log outlives each test's database, and a run may pass midnight: what is asked is that no entry
    # of the wrong day comes back, not that the earlier days were empty.
    status, _, body = await _call(stack, "GET", f"/api/v1/access-log?until={yesterday}", auditor)
    assert status == 200 and all(datetime.fromisoformat(i["at"]).date() < today for i in json.loads(body)["items"])
    status, _, body = await _call(stack, "GET", f"/api/v1/access-log?since={tomorrow}", auditor)
    assert status == 200 and all(datetime.fromisoformat(i["at"]).date() >= tomorrow
                                 for i in json.loads(body)["items"])
    for query, name in ((f"since={today}&until={yesterday}", "until"), ("cursor=abc", "cursor"), ("limit=0", "limit"),
                        ("limit=501", "limit"), ("outcome=maybe", "outcome"), ("colour=red", "colour"),
                        ("since=yesterday", "since")):
        status, ctype, body = await _call(stack, "GET", f"/api/v1/access-log?{query}", auditor)
        assert status == 400 and json.loads(body)["filter"] == name, (query, body)
        check("get", "/api/v1/access-log", status, ctype, body)


# Refusals are bounded ---------------------------------------------------------------------------


async def test_a_flood_of_refusals_writes_one_entry_per_source_and_reason_a_minute(stack):
    await _avoid_minute_end()
    start = await _mark(stack)
    for _ in range(25):
        assert (await _call(stack, "GET", "/api/v1/messages", "wa_" + uuid.uuid4().hex))[0] == 401
    # The first is written before its 401 is sent; the 24 after it are only counted in this minute.
    rows = await _refused_rows(stack, start)
    assert [(r["remote_addr"], r["target"]["reason"]) for r in rows] == [("127.0.0.1", "invalid_token")]


async def test_the_rest_of_a_minute_is_one_counted_entry_and_many_sources_share_one(stack):
    start = await _mark(stack)
    now = [1_800_000_000.0]  # a minute's start
    refusals = RefusalLog(stack.pool, clock=lambda: now[0], max_sources=3)

    def refusal(remote: str, reason: str = "no_token") -> Refusal:
        return Refusal(reason=reason, method="GET", path="/api/v1/messages", remote=remote)

    for _ in range(10):
        await refusals.note(refusal("10.0.0.1"))
    await refusals.note(refusal("10.0.0.1", "invalid_token"))
    for n in range(2, 8):  # sources beyond the limit of three keys are counted together
        await refusals.note(refusal(f"10.0.0.{n}"))
    rows = await _refused_rows(stack, start)
    assert [(r["remote_addr"], r["target"]["reason"]) for r in rows] == [
        ("10.0.0.1", "no_token"), ("10.0.0.1", "invalid_token"), ("10.0.0.2", "no_token")]
    now[0] += 60
    await refusals.note(refusal("10.0.0.1"))  # the next minute: its first is written, the last minute's counts too
    rows = (await _refused_rows(stack, start))[3:]
    shown = [(r["remote_addr"], r["target"]["reason"], r["target"].get("repeated")) for r in rows]
    assert shown == [("10.0.0.1", "no_token", 9), ("(other sources)", "no_token", 5), ("10.0.0.1", "no_token", None)]
    assert describe("refused", rows[0]["target"], "refused") == (
        "refused 9 more times in the minute from 2027-01-15 08:00 UTC: no API token was given "
        "(last: GET /api/v1/messages)")
    await refusals.flush()  # a clean stop writes nothing more when nothing more was counted
    assert len(await _refused_rows(stack, start)) == 6


# The access-log page ------------------------------------------------------------------------------


async def test_access_log_page_reads_in_sentences_for_auditors_and_refuses_senders(stack):
    start = await _mark(stack)
    ids = await _archive_texts(stack, "page one")
    auditor = await stack.token("auditor")
    await _call(stack, "GET", f"/api/v1/messages/{quote(ids[0], safe='')}", auditor)
    status, _, _ = await _call(stack, "POST", "/api/v1/exports", auditor, json={
        "phone": PHONE, "since": "2026-11-01", "until": "2026-11-27T00:00:00Z"})
    assert status == 202
    # The export job writes its own entry when it starts reading.
    await wait_until(lambda: stack.pool.fetchval("SELECT id FROM access_log WHERE action = 'export' AND id > $1", start),
                     "export logged")
    cookie = await sign_in(stack, auditor)
    status, _, body = await fetch(stack, "/ui/access-log", cookie)
    html = body.decode()
    assert status == 200 and 'href="/ui/access-log"' in html
    assert f"opened message {ids[0]}" in html
    assert f"exported messages from 2026-11-01 to 2026-11-26, phone +{PHONE}" in html
    assert "{&#34;" not in html and "{&quot;" not in html and '{"' not in html  # no dict text
    for role in ("sender", "operator"):
        other = await sign_in(stack, await stack.token(role))
        status, _, _ = await fetch(stack, "/ui/access-log", other)
        assert status == 403
    admin = await sign_in(stack, await stack.token("admin"))
    assert (await fetch(stack, "/ui/access-log", admin))[0] == 200
    # Not signed in: sent to sign in, and the attempt is in the log.
    async with stack.http.get(f"{stack.url}/ui/access-log", allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"].startswith("/ui/login")
    reasons = [(r["role"], r["target"]["reason"], r["target"]["path"]) for r in await _refused_rows(stack, start)]
    assert ("sender", "role_not_allowed", "/ui/access-log") in reasons
    assert ("operator", "role_not_allowed", "/ui/access-log") in reasons
    assert ("none", "not_signed_in", "/ui/access-log") in reasons
    # The refused page reads are shown to the auditor as refusals, with their outcome.
    status, _, body = await fetch(stack, "/ui/access-log?outcome=refused", cookie)
    html = body.decode()
    assert status == 200 and "refused: the role may not do this (GET /ui/access-log)" in html
    assert "not signed in (GET /ui/access-log)" in html and 'class="tag failed">refused' in html
    status, _, body = await fetch(stack, "/ui/access-log?since=2026-02-01&until=2026-01-01", cookie)
    assert status == 400 and "until: the period is empty" in body.decode()


async def test_a_failed_sign_in_is_a_refused_attempt(stack):
    start = await _mark(stack)
    async with stack.http.get(f"{stack.url}/ui/login") as resp:
        html = await resp.text()
        login_cookie = resp.cookies["wa_archive_login_csrf"].value
    csrf = re.search(r'name="csrf" value="([^"]*)"', html).group(1)
    secret = "wa_" + uuid.uuid4().hex
    async with stack.http.post(f"{stack.url}/ui/login", data={"token": secret, "csrf": csrf},
                               headers={"Cookie": f"wa_archive_login_csrf={login_cookie}"},
                               allow_redirects=False) as resp:
        assert resp.status == 401
    rows = await _refused_rows(stack, start)
    assert [(r["target"]["reason"], r["target"]["method"], r["target"]["path"]) for r in rows] == [
        ("invalid_token", "POST", "/ui/login")]
    assert secret not in json.dumps([dict(r) for r in rows], default=str)


# Receipts -----------------------------------------------------------------------------------------


async def test_a_receipt_from_the_api_and_the_page_verifies_offline(stack, database_url, temporal_address, tmp_path):
    start = await _mark(stack)
    ids = await _archive_texts(stack, "the receipt's message")
    mid = ids[0]
    auditor = await stack.token("auditor")
    path = f"/api/v1/messages/{quote(mid, safe='/')}/receipt"  # the id's own '/' as it is
    status, ctype, body = await _call(stack, "GET", path, auditor)
    assert status == 409 and "checkpoint" in json.loads(body)["error"]
    check("get", "/api/v1/messages/{message_id}/receipt", status, ctype, body)
    await ledger.write_checkpoint(stack.pool, stack.store, _signer())

    status, ctype, api_receipt = await _call(stack, "GET", path, auditor)
    assert status == 200, api_receipt
    assert check("get", "/api/v1/messages/{message_id}/receipt", status, ctype, api_receipt)["record"]["id"] == mid
    assert (await _call(stack, "GET", path, None))[0] == 401
    assert (await _call(stack, "GET", path, await stack.token("sender")))[0] == 403
    status, ctype, body = await _call(stack, "GET", "/api/v1/messages/wamid.nothing/receipt", auditor)
    assert status == 404
    check("get", "/api/v1/messages/{message_id}/receipt", status, ctype, body)
    # The message route still answers for the same id (and the receipt route does not shadow it).
    status, _, body = await _call(stack, "GET", f"/api/v1/messages/{quote(mid, safe='/')}", auditor)
    assert status == 200 and json.loads(body)["id"] == mid

    cookie = await sign_in(stack, auditor)
    status, _, page = await fetch(stack, f"/ui/messages/{quote(mid, safe='')}", cookie)
    link = f'href="/ui/receipts/{quote(mid, safe="")}"'
    assert status == 200 and link in page.decode()
    status, headers, page_receipt = await fetch(stack, f"/ui/receipts/{quote(mid, safe='')}", cookie)
    assert status == 200 and headers["Content-Disposition"].startswith("attachment;")
    assert page_receipt == api_receipt

    env = _env(stack, database_url, temporal_address)
    printed = await _cli(env, "receipt", mid)
    assert printed.returncode == 0 and printed.stdout.encode() == api_receipt  # the same JSON the CLI gives
    for name, data in (("api.json", api_receipt), ("page.json", page_receipt)):
        (tmp_path / name).write_bytes(data)
        verified = await _cli(env, "verify-receipt", str(tmp_path / name), "--public-key", PUBLIC_KEY)
        assert verified.returncode == 0 and verified.stdout.startswith("OK:"), verified.stdout + verified.stderr
    tampered = json.loads(api_receipt)
    tampered["record"]["digest"] = "0" * 64
    (tmp_path / "bad.json").write_text(json.dumps(tampered))
    assert (await _cli(env, "verify-receipt", str(tmp_path / "bad.json"), "--public-key", PUBLIC_KEY)).returncode == 1

    logged = [(r["action"], r["target"].get("via")) for r in await stack.pool.fetch(
        "SELECT * FROM access_log WHERE action = 'receipt' AND outcome = 'allowed' AND id > $1 ORDER BY id", start)]
    assert logged.count(("receipt", None)) >= 3 and ("receipt", "web") in logged


async def test_an_id_ending_in_receipt_is_still_its_own_message(stack):
    mid = f"wamid.{uuid.uuid4().hex}/receipt"
    await stack.post(dumps(envelope([message("text", {"body": "tricky id"}, mid=mid)])))
    await stack.wait_for_message(mid)
    await ledger.write_checkpoint(stack.pool, stack.store, _signer())
    auditor = await stack.token("auditor")
    status, _, body = await _call(stack, "GET", f"/api/v1/messages/{quote(mid, safe='')}", auditor)
    assert status == 200 and json.loads(body)["id"] == mid  # its slash sent as %2F
    status, _, body = await _call(stack, "GET", f"/api/v1/messages/{quote(mid, safe='/')}/receipt", auditor)
    assert status == 200 and json.loads(body)["record"]["id"] == mid


# Exports ------------------------------------------------------------------------------------------


async def test_an_export_started_and_downloaded_through_the_api_verifies_offline(
        stack, database_url, temporal_address, tmp_path):
    ids = await _archive_texts(stack, "first for export", "second for export")
    await _archive_texts(stack, "someone else", phone="15550001111")
    await ledger.write_checkpoint(stack.pool, stack.store, _signer())
    auditor, sender = await stack.token("auditor"), await stack.token("sender")
    request = {"phone": f"+{PHONE}", "since": "2026-01-01", "until": "2026-02-01T00:00:00Z"}
    assert (await _call(stack, "POST", "/api/v1/exports", None, json=request))[0] == 401
    assert (await _call(stack, "POST", "/api/v1/exports", sender, json=request))[0] == 403
    for bad, name in (({"colour": "red"}, "colour"), ({"phone": "bob"}, "phone"), ({"since": 5}, "since"),
                      ({"since": "2026-02-01", "until": "2026-01-01"}, "until")):
        status, ctype, body = await _call(stack, "POST", "/api/v1/exports", auditor, json=bad)
        assert status == 400 and json.loads(body)["filter"] == name, body
        check("post", "/api/v1/exports", status, ctype, body)
    status, ctype, body = await _call(stack, "POST", "/api/v1/exports", auditor, json=request)
    assert status == 202, body
    started = check("post", "/api/v1/exports", status, ctype, body)
    export_id = started["export_id"]
    assert started["description"].startswith("messages from 2026-01-01 to ") and f"phone +{PHONE}" in started["description"]

    async def completed():
        status, ctype, body = await _call(stack, "GET", started["status_url"], auditor)
        shown = check("get", "/api/v1/exports/{export_id}", status, ctype, body)
        return shown if shown["status"] == "completed" else None

    shown = await wait_until(completed, f"export {export_id} completed", timeout=90)
    assert shown["messages"] == len(ids)
    assert (await _call(stack, "GET", started["bundle_url"], sender))[0] == 403
    status, ctype, bundle = await _call(stack, "GET", started["bundle_url"], auditor)
    assert status == 200 and ctype == "application/zip"
    check("get", "/api/v1/exports/{export_id}/bundle", status, ctype, bundle)
    out = tmp_path / "bundle.zip"
    out.write_bytes(bundle)
    with zipfile.ZipFile(out) as zf:
        lines = [json.loads(line) for line in zf.read("messages.jsonl").decode().splitlines()]
    assert sorted(m["id"] for m in lines) == sorted(ids)
    verified = await _cli(_env(stack, database_url, temporal_address), "verify-export", str(out),
                          "--public-key", PUBLIC_KEY)
    assert verified.returncode == 0 and "intact" in verified.stdout, verified.stdout + verified.stderr

    for path in (f"/api/v1/exports/{uuid.uuid4().hex}", f"/api/v1/exports/{uuid.uuid4().hex}/bundle",
                 "/api/v1/exports/not-an-id"):
        status, ctype, body = await _call(stack, "GET", path, auditor)
        assert status == 404, (path, body)
    # The export, its status with counts and its download are each in the access log, said in words.
    status, _, body = await _call(stack, "GET", "/api/v1/access-log?limit=50", auditor)
    entries = {e["action"]: e for e in reversed(json.loads(body)["items"])}  # the newest of each action
    assert entries["export"]["description"] == (
        f"exported messages from 2026-01-01 to 2026-01-31, phone +{PHONE}, export {export_id}")
    assert entries["export_download"]["description"].startswith(f"downloaded export {export_id}, SHA-256 ")
    assert entries["export_status"]["description"] == f"checked export {export_id}"


# The command line ---------------------------------------------------------------------------------


async def test_cli_access_log_says_each_entry_in_words_with_dates_as_whole_days(
        stack, database_url, temporal_address):
    await _avoid_minute_end()
    since = (await stack.pool.fetchval("SELECT now()")).isoformat()
    await _call(stack, "GET", "/api/v1/messages", None)
    env = _env(stack, database_url, temporal_address)
    today = datetime.now(timezone.utc).date().isoformat()
    listed = await _cli(env, "access-log", "--since", since, "--until", today, "--outcome", "refused")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[-1] == "1 access(es)"
    assert "unknown (none)  REFUSED  refused: no API token was given (GET /api/v1/messages)  — from 127.0.0.1" in lines[0]
    inverted = await _cli(env, "access-log", "--since", today, "--until", "2020-01-01")
    assert inverted.returncode == 2 and "--until: the period is empty" in inverted.stderr
    everything = await _cli(env, "access-log", "--since", since, "--json")
    entries = json.loads(everything.stdout)
    assert entries[-1]["action"] == "access-log" and entries[-1]["description"].startswith("read the access log")
    plain = (await _cli(env, "access-log", "--since", since)).stdout.splitlines()
    assert all("from None" not in line and "{" not in line for line in plain)


async def test_refused_codec_reads_are_logged_too(stack):
    start = await _mark(stack)
    document = json.dumps({"payloads": []})
    headers = {"Content-Type": "application/json"}
    for token, expected in ((None, 401), ("wa_" + uuid.uuid4().hex, 401), (await stack.token("auditor"), 403)):
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        async with stack.http.post(f"{stack.url}/codec/decode", data=document, headers={**headers, **auth}) as resp:
            assert resp.status == expected
    rows = await _refused_rows(stack, start)
    assert [(r["role"], r["target"]["reason"], r["target"]["path"]) for r in rows] == [
        ("none", "not_signed_in", "/codec/decode"), ("none", "invalid_token", "/codec/decode"),
        ("auditor", "role_not_allowed", "/codec/decode")]


def test_entries_older_than_the_wording_read_as_sentences_too():
    # Command-line exports once stored a missing date as the text "None"; searches stored str(datetime).
    assert describe("export", {"phone": PHONE, "since": "None", "until": "None"}) == (
        f"exported messages of all dates, phone +{PHONE}")
    assert describe("search", {"since": "2026-11-01 00:00:00+00:00", "until": "2026-11-02 09:30:00+00:00",
                               "limit": "50"}) == "searched messages from 2026-11-01 until 2026-11-02 09:30:00 UTC"
    assert describe("media", {"media": "m1", "found": False}) == "asked for a file that is not archived: file m1"
    assert describe("hold.set", {"case": "C-7", "phone": PHONE, "since": None, "until": None, "reason": "subpoena",
                                 "messages": 3}) == f"set a legal hold: phone +{PHONE}, case C-7, messages 3, reason subpoena"
