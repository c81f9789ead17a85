"""One-time sign-in links for the pages, over real HTTP on the real stack and through the real CLI: a
link signs a browser in once (the token form's session cookie, the code in no URL the server sees),
and a used, expired, unknown or revoked-token link is refused and logged as a refused attempt; a
sender's token gets no link; the code is in no server log line and only its hash is stored."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
import sys
import uuid
from urllib.parse import urlsplit

import pytest

from tests.test_browser import browser  # noqa: F401 - the Chromium fixture
from tests.test_logs import _env as _serve_env
from tests.test_logs import _lines, _serving, _stop
from wa_archive.access.sign_in_links import LINK_PATH, create_link, link_url
from wa_archive.access.tokens import create_token, revoke_token
from wa_archive.access.wording import describe
from wa_archive.devstack.embedded import free_port
from wa_archive.errors import TokenError

SESSION = "wa_archive_session"
LOGIN_CSRF = "wa_archive_login_csrf"


async def _mark(pool) -> int:
    """The newest access-log id: the log is append-only and outlives each test's clean database."""
    return int(await pool.fetchval("SELECT coalesce(max(id), 0) FROM access_log"))


async def _refused(pool, after: int) -> list[tuple[str, str, str, str]]:
    rows = await pool.fetch("SELECT actor, role, target FROM access_log WHERE outcome = 'refused' AND id > $1"
                            " ORDER BY id", after)
    return [(r["actor"], r["role"], r["target"]["reason"], r["target"]["path"]) for r in rows]


def _code_of(url: str) -> str:
    parts = urlsplit(url)
    assert parts.path == LINK_PATH and not parts.query, url
    found = re.fullmatch(r"code=([A-Za-z0-9_-]{43})", parts.fragment)
    assert found, url
    return found.group(1)


async def _open_link(http, base: str) -> tuple[str, str, str]:
    """GET the link's page as a browser does (the fragment stays in the browser): (html, form csrf, cookie)."""
    async with http.get(f"{base}{LINK_PATH}", allow_redirects=False) as resp:
        assert resp.status == 200, await resp.text()
        html = await resp.text()
        cookie = resp.cookies[LOGIN_CSRF]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    csrf = re.search(r'name="csrf" value="([^"]*)"', html).group(1)
    return html, csrf, cookie.value


async def _use(http, base: str, code: str) -> tuple[int, dict[str, str], str, object]:
    """Open the link's page and press "Sign in": (status, headers, body, session cookie or None)."""
    _, csrf, login_cookie = await _open_link(http, base)
    async with http.post(f"{base}{LINK_PATH}", data={"code": code, "csrf": csrf},
                         headers={"Cookie": f"{LOGIN_CSRF}={login_cookie}"}, allow_redirects=False) as resp:
        return resp.status, dict(resp.headers), await resp.text(), resp.cookies.get(SESSION)


async def _page(http, base: str, path: str, session: str) -> tuple[int, str]:
    async with http.get(f"{base}{path}", headers={"Cookie": f"{SESSION}={session}"}, allow_redirects=False) as resp:
        return resp.status, await resp.text()


async def test_a_link_signs_a_browser_in_once_with_the_token_forms_cookie(stack):
    name = f"auditor-{uuid.uuid4().hex[:6]}"
    await stack.token("auditor", name)
    link = await create_link(stack.pool, name)
    code = _code_of(link_url(stack.url, link.code))
    start = await _mark(stack.pool)

    html, _, _ = await _open_link(stack.http, stack.url)
    assert code not in html  # the page is the same for every link: the code arrives only in the fragment
    status, headers, _, session = await _use(stack.http, stack.url, code)
    assert status == 302 and headers["Location"] == "/ui/", (status, headers)
    assert session["httponly"] and session["samesite"] == "Strict" and session["path"] == "/ui"
    assert code not in json.dumps(headers)
    page_status, page = await _page(stack.http, stack.url, "/ui/", session.value)
    assert page_status == 200 and f"{name} · auditor" in page

    again = await _use(stack.http, stack.url, code)
    assert again[0] == 410 and "already used" in again[2] and again[3] is None
    assert await _refused(stack.pool, start) == [(name, "auditor", "sign_in_link_used", LINK_PATH)]
    target = await stack.pool.fetchval("SELECT target FROM access_log WHERE id > $1", start)
    assert code not in json.dumps(target)
    assert describe("refused", target, "refused") == f"refused: the sign-in link was already used (POST {LINK_PATH})"


async def test_two_concurrent_uses_sign_in_exactly_once(stack):
    name = f"auditor-{uuid.uuid4().hex[:6]}"
    await stack.token("auditor", name)
    link = await create_link(stack.pool, name)
    outcomes = await asyncio.gather(*(_use(stack.http, stack.url, link.code) for _ in range(4)))
    assert sorted(o[0] for o in outcomes) == [302, 410, 410, 410]
    assert await stack.pool.fetchval("SELECT count(*) FROM ui_sessions s JOIN api_tokens t ON t.id = s.token_id"
                                     " WHERE t.name = $1", name) == 1


async def test_an_expired_link_is_refused_with_410_and_logged(stack):
    name = f"auditor-{uuid.uuid4().hex[:6]}"
    await stack.token("auditor", name)
    link = await create_link(stack.pool, name, minutes=5)
    # The clock: the link made an hour ago and expired a second ago (the owner may rewrite what the app may not).
    changed = await stack.owner_pool.execute(
        "UPDATE ui_sign_in_links SET created_at = now() - interval '1 hour', expires_at = now() - interval '1 second'"
        " WHERE code_sha256 = $1", hashlib.sha256(link.code.encode()).hexdigest())
    assert changed == "UPDATE 1"
    start = await _mark(stack.pool)
    status, _, body, session = await _use(stack.http, stack.url, link.code)
    assert status == 410 and "expired" in body and session is None
    assert await _refused(stack.pool, start) == [(name, "auditor", "sign_in_link_expired", LINK_PATH)]


async def test_a_link_whose_token_was_revoked_meanwhile_is_refused_with_401(stack):
    name = f"auditor-{uuid.uuid4().hex[:6]}"
    await stack.token("auditor", name)
    link = await create_link(stack.pool, name)
    await revoke_token(stack.pool, name)
    start = await _mark(stack.pool)
    status, _, body, session = await _use(stack.http, stack.url, link.code)
    assert status == 401 and "revoked" in body and session is None
    assert await _refused(stack.pool, start) == [(name, "auditor", "sign_in_link_token_revoked", LINK_PATH)]
    with pytest.raises(TokenError, match="no active token"):
        await create_link(stack.pool, name)


async def test_an_unknown_or_malformed_code_is_refused_with_401(stack):
    start = await _mark(stack.pool)
    for code in ("x" * 43, "", "é" * 500):
        status, _, body, session = await _use(stack.http, stack.url, code)
        assert status == 401 and "not valid" in body and session is None, (code, status)
    # The first of each kind a minute is written at once; the repeats are counted (access/refusals.py).
    assert await _refused(stack.pool, start) == [("unknown", "none", "sign_in_link_unknown", LINK_PATH)]


async def test_without_the_login_csrf_the_code_is_not_spent(stack):
    name = f"auditor-{uuid.uuid4().hex[:6]}"
    await stack.token("auditor", name)
    link = await create_link(stack.pool, name)
    _, csrf, login_cookie = await _open_link(stack.http, stack.url)
    for form, cookie in (({"code": link.code, "csrf": csrf}, None),  # another site's form: no cookie
                         ({"code": link.code, "csrf": "forged"}, login_cookie),
                         ({"code": link.code}, login_cookie)):
        headers = {"Cookie": f"{LOGIN_CSRF}={cookie}"} if cookie else {}
        async with stack.http.post(f"{stack.url}{LINK_PATH}", data=form, headers=headers,
                                   allow_redirects=False) as resp:
            assert resp.status == 403 and SESSION not in resp.cookies
    assert (await _use(stack.http, stack.url, link.code))[0] == 302


async def test_a_sender_gets_no_link_and_an_operator_lands_on_a_page_it_may_open(stack):
    sender = f"sender-{uuid.uuid4().hex[:6]}"
    await stack.token("sender", sender)
    with pytest.raises(TokenError, match="opens no page"):
        await create_link(stack.pool, sender)
    assert await stack.pool.fetchval("SELECT count(*) FROM ui_sign_in_links") == 0
    with pytest.raises(TokenError, match="between 1 and 60"):
        await create_link(stack.pool, sender, minutes=61)

    operator = f"operator-{uuid.uuid4().hex[:6]}"
    await stack.token("operator", operator)
    status, headers, _, session = await _use(stack.http, stack.url, (await create_link(stack.pool, operator)).code)
    assert status == 302 and headers["Location"] == "/ui/failures"
    page_status, page = await _page(stack.http, stack.url, "/ui/failures", session.value)
    assert page_status == 200 and f"{operator} · operator" in page


async def test_the_stored_row_holds_only_the_codes_hash(stack):
    name = f"admin-{uuid.uuid4().hex[:6]}"
    await stack.token("admin", name)
    link = await create_link(stack.pool, name, minutes=60)
    rows = await stack.pool.fetch("SELECT * FROM ui_sign_in_links")
    assert len(rows) == 1
    assert rows[0]["code_sha256"] == hashlib.sha256(link.code.encode()).hexdigest()
    assert link.code not in json.dumps([dict(r) for r in rows], default=str)
    assert rows[0]["used_at"] is None and rows[0]["expires_at"] == link.expires_at
    assert 3590 <= (rows[0]["expires_at"] - rows[0]["created_at"]).total_seconds() <= 3600
    # The table refuses a link that lives longer than an hour, whoever writes it.
    with pytest.raises(Exception, match="check constraint"):
        await stack.owner_pool.execute("UPDATE ui_sign_in_links SET expires_at = created_at + interval '61 minutes'")


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wa_archive.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


async def test_the_command_prints_a_link_that_signs_in_and_no_server_log_line_holds_the_code(
        clean_db, database_url, temporal_address, tmp_path):
    import aiohttp

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = _serve_env(WA_ARCHIVE_DATABASE_URL=database_url, WA_ARCHIVE_TEMPORAL_ADDRESS=temporal_address,
                     WA_ARCHIVE_HTTP_PORT=str(port), WA_ARCHIVE_STORAGE_URL=(tmp_path / "objects").as_uri(),
                     WA_ARCHIVE_DATA_DIR=str(tmp_path / "data"), WA_ARCHIVE_LOG_LEVEL="DEBUG")
    name = f"auditor-{uuid.uuid4().hex[:6]}"
    await create_token(clean_db, name, "auditor")
    await create_token(clean_db, f"sender-{name}", "sender")

    # Refusals before anything is made: no address to put in the link, a sender's token, too long a life.
    no_base = await asyncio.to_thread(_cli, env, "tokens", "sign-in-link", "--name", name)
    assert no_base.returncode == 2 and "--base-url is required" in no_base.stderr, no_base.stderr
    sender = await asyncio.to_thread(_cli, env, "tokens", "sign-in-link", "--name", f"sender-{name}",
                                     "--base-url", base)
    assert sender.returncode == 2 and "opens no page" in sender.stderr, sender.stderr
    for bad in (("--minutes", "61"), ("--minutes", "0"), ("--base-url", "javascript:alert(1)"),
                ("--base-url", f"{base}/?next=x")):
        refused = await asyncio.to_thread(_cli, env, "tokens", "sign-in-link", "--name", name,
                                          "--base-url", base, *bad)
        assert refused.returncode == 2 and "argument" in refused.stderr, (bad, refused.stderr)
    assert await clean_db.fetchval("SELECT count(*) FROM ui_sign_in_links") == 0

    made = await asyncio.to_thread(_cli, env, "tokens", "sign-in-link", "--name", name, "--base-url", base + "/",
                                   "--json")
    assert made.returncode == 0, made.stderr
    document = json.loads(made.stdout)
    assert (document["name"], document["role"]) == (name, "auditor")
    url = document["url"]
    assert url.startswith(f"{base}{LINK_PATH}#code=")
    code = _code_of(url)
    plain = await asyncio.to_thread(_cli, env, "tokens", "sign-in-link", "--name", name, "--base-url", base,
                                    "--minutes", "2")
    assert plain.returncode == 0 and plain.stdout.startswith(f"{base}{LINK_PATH}#code="), plain.stderr
    assert "signs in once" in plain.stderr

    log = tmp_path / "serve.stderr"
    proc = subprocess.Popen([sys.executable, "-m", "wa_archive.cli", "serve"], stdout=subprocess.DEVNULL,
                            stderr=log.open("wb"), env=env)
    try:
        async with aiohttp.ClientSession() as http:
            await _serving(http, base, proc, log)
            status, headers, _, session = await _use(http, base, code)
            assert status == 302 and headers["Location"] == "/ui/"
            page_status, page = await _page(http, base, "/ui/", session.value)
            assert page_status == 200 and f"{name} · auditor" in page
            assert (await _use(http, base, code))[0] == 410
            # Even a code sent where the server would see it, in a query string, is not logged.
            async with http.get(f"{base}{LINK_PATH}?code={code}") as resp:
                assert resp.status == 200
    finally:
        _stop(proc)
    text = log.read_text()
    assert code not in text
    requests = [e for e in _lines(log) if e.get("logger") == "aiohttp.access" or e["event"] == "http_request"]
    assert {e.get("route") for e in requests} >= {LINK_PATH}, requests


async def test_in_chromium_the_code_leaves_the_address_bar_and_one_click_signs_in(stack, browser):  # noqa: F811
    """The page's script takes the code from the fragment into the form and out of the address bar (and
    the history); nothing is sent until the reader clicks, and no request the browser makes holds the code."""
    name = f"auditor-{uuid.uuid4().hex[:6]}"
    await stack.token("auditor", name)
    link = await create_link(stack.pool, name)
    context = await browser.new_context()
    page = await context.new_page()
    sent: list[str] = []
    page.on("request", lambda r: sent.append(f"{r.method} {r.url} {r.headers} {r.post_data or ''}"))
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    await page.goto(link_url(stack.url, link.code))
    assert page.url == f"{stack.url}{LINK_PATH}"  # the fragment is gone from the address bar
    assert await page.input_value("#code") == link.code
    assert await stack.pool.fetchval("SELECT used_at FROM ui_sign_in_links") is None  # opening spent nothing
    assert not any(link.code in s for s in sent), sent
    await page.click("#sign-in")
    await page.wait_for_url(f"{stack.url}/ui/")
    assert f"{name} · auditor" in await page.content()
    assert [s for s in sent if link.code in s and not s.startswith(f"POST {stack.url}{LINK_PATH} ")] == []
    assert not violations, violations
    await page.go_back()  # back to the link's page: no code in the address or the form any more
    assert "code=" not in page.url and await page.input_value("#code") == ""
    await context.close()
