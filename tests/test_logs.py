"""One log format: every line a real `serve` or `worker` process writes on stderr is a JSON object, a
traceback is a field of one, and no phone number, message text or query string gets into any of them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import ACCESS_TOKEN, APP_SECRET, CONTACT_SECRET, LEDGER_KEY, PAYLOAD_KEYS, VERIFY_TOKEN, wait_until
from wa_archive.access.tokens import create_token
from wa_archive.devstack.embedded import free_port
from wa_archive.logs import scrub
from wa_archive.sources.meta.samples import dumps, envelope, media_message, message, wamid

PHONE = "447700900871"  # the customer of these tests: must appear in no log line
TEXT = "a secret the log must never hold"


def _env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")},
            "WA_ARCHIVE_META_APP_SECRET": APP_SECRET, "WA_ARCHIVE_META_VERIFY_TOKEN": VERIFY_TOKEN,
            "WA_ARCHIVE_META_ACCESS_TOKEN": ACCESS_TOKEN, "WA_ARCHIVE_CONTACT_KEY_SECRET": CONTACT_SECRET,
            "WA_ARCHIVE_LEDGER_SIGNING_KEY": LEDGER_KEY, "WA_ARCHIVE_PAYLOAD_KEYS": PAYLOAD_KEYS, **extra}


def _lines(path: Path) -> list[dict[str, Any]]:
    """Every stderr line as a JSON object; fails on the first line that is not one."""
    events = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"stderr line {number} is not JSON: {line!r}") from None
        assert isinstance(event, dict), line
        events.append(event)
    return events


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)



async def _serving(http: aiohttp.ClientSession, base: str, proc: subprocess.Popen, log: Path,
                   timeout: float = 60) -> None:
    """Wait until the `serve` process at `base` answers /healthz (failing with its log if it died)."""
    async def up() -> bool:
        try:
            async with http.get(f"{base}/healthz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            assert proc.poll() is None, log.read_text()
            return False

    await wait_until(up, f"{base} answering /healthz", timeout=timeout, interval=0.2)


async def test_serve_logs_json_lines_with_routes_not_paths_or_queries(
        clean_db, database_url, temporal_address, tmp_path):

    port = free_port()
    log = tmp_path / "serve.stderr"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wa_archive.cli", "serve"], stdout=subprocess.DEVNULL, stderr=log.open("wb"),
        env=_env(WA_ARCHIVE_DATABASE_URL=database_url, WA_ARCHIVE_TEMPORAL_ADDRESS=temporal_address,
                 WA_ARCHIVE_HTTP_PORT=str(port), WA_ARCHIVE_STORAGE_URL=(tmp_path / "objects").as_uri(),
                 WA_ARCHIVE_DATA_DIR=str(tmp_path / "data")))
    base = f"http://127.0.0.1:{port}"
    auditor = await create_token(clean_db, f"auditor-{uuid.uuid4().hex[:6]}", "auditor")
    try:
        async with aiohttp.ClientSession() as http:
            await _serving(http, base, proc, log)
            auth = {"Authorization": f"Bearer {auditor}"}
            async with http.get(f"{base}/api/v1/messages/{PHONE}?phone={PHONE}", headers=auth) as resp:
                assert resp.status == 404
            async with http.get(f"{base}/api/v1/messages?phone=%2B{PHONE}") as resp:
                assert resp.status == 401
            async with http.get(f"{base}/no/such/{PHONE}?phone={PHONE}") as resp:
                assert resp.status == 404
            async with http.get(f"{base}/webhooks/meta?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}"
                                "&hub.challenge=12345") as resp:
                assert resp.status == 200
            # A webhook with text and the customer's number, whose hand-off to Temporal goes nowhere
            # (no worker runs, but the start is accepted): accepted and logged without either.
            body = dumps(envelope([message("text", {"body": TEXT}, phone=PHONE)], phone=PHONE))
            from wa_archive.sources.signature import meta_signature

            async with http.post(f"{base}/webhooks/meta", data=body, headers={
                    "X-Hub-Signature-256": meta_signature(APP_SECRET, body),
                    "Content-Type": "application/json"}) as resp:
                assert resp.status == 200, await resp.text()

            async def logged() -> list[dict[str, Any]]:
                found = [e for e in _lines(log) if e.get("logger") == "aiohttp.access" or e["event"] == "http_request"]
                return found if len(found) >= 6 else []

            access = await wait_until(logged, "the access log lines written", interval=0.2)
    finally:
        _stop(proc)
    text = log.read_text()
    events = _lines(log)
    assert PHONE not in text and TEXT not in text and VERIFY_TOKEN not in text and "?" not in text
    routes = {(e["route"], e["status"]) for e in access}
    assert ("/api/v1/messages/{message_id}", 404) in routes
    assert ("/api/v1/messages", 401) in routes
    assert (None, 404) in routes  # an unmatched path is not named at all
    assert ("/webhooks/meta", 200) in routes
    assert any(e["event"] == "delivery_accepted" for e in events)
    assert all("timestamp" in e and "level" in e for e in events)


async def test_a_process_that_fails_logs_its_traceback_inside_one_json_object(tmp_path):
    log = tmp_path / "serve.stderr"
    # A database nobody listens on: the server cannot start, and says why.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wa_archive.cli", "serve", stdout=asyncio.subprocess.DEVNULL,
        stderr=log.open("wb"),
        env=_env(WA_ARCHIVE_DATABASE_URL=f"postgresql://nobody:pw@127.0.0.1:{free_port()}/none",
                 WA_ARCHIVE_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}", WA_ARCHIVE_HTTP_PORT=str(free_port()),
                 WA_ARCHIVE_STORAGE_URL=(tmp_path / "objects").as_uri(), WA_ARCHIVE_DATA_DIR=str(tmp_path / "d")))
    assert await asyncio.wait_for(proc.wait(), 60) == 1
    events = _lines(log)
    failed = [e for e in events if e["event"] == "process_failed"]
    assert len(failed) == 1, events
    assert failed[0]["level"] == "error" and failed[0]["command"] == "serve"
    assert failed[0]["exception"].startswith("Traceback (most recent call last):")
    assert "ConnectionRefusedError" in failed[0]["exception"] or "OSError" in failed[0]["exception"]


async def test_worker_logs_library_failures_as_json_without_customer_data(
        stack_factory, database_url, temporal_address, tmp_path):
    stack = await stack_factory(run_worker=False)
    log = tmp_path / "worker.stderr"
    s = stack.settings
    proc = subprocess.Popen(
        [sys.executable, "-m", "wa_archive.cli", "worker"], stdout=subprocess.DEVNULL, stderr=log.open("wb"),
        env=_env(WA_ARCHIVE_DATABASE_URL=database_url, WA_ARCHIVE_TEMPORAL_ADDRESS=temporal_address,
                 WA_ARCHIVE_STORAGE_URL=stack.store.url, WA_ARCHIVE_META_GRAPH_URL=s.meta_graph_url,
                 WA_ARCHIVE_TASK_QUEUE=s.task_queue, WA_ARCHIVE_RETRY_INITIAL_INTERVAL="0.2",
                 WA_ARCHIVE_RETRY_MAX_INTERVAL="0.5", WA_ARCHIVE_DATA_DIR=str(tmp_path / "data")))
    mid = wamid()
    try:
        # Media the Graph API does not know: the download fails, attempt after attempt, then critically.
        item = media_message("image", f"missing{uuid.uuid4().hex[:8]}", None, "image/jpeg", mid=mid, phone=PHONE)
        item["image"]["caption"] = TEXT
        status, _ = await stack.post(dumps(envelope([item], phone=PHONE)))
        assert status == 200
        await stack.wait_for_failure(mid, timeout=120)

        async def library_failure() -> list[dict[str, Any]]:
            return [e for e in _lines(log) if e.get("logger", "").startswith("temporalio") and "exception" in e]

        failures = await wait_until(library_failure, "the SDK's activity failure logged", interval=0.2)
    finally:
        _stop(proc)
    text = log.read_text()
    events = _lines(log)
    assert PHONE not in text and TEXT not in text
    assert failures[0]["exception"].startswith("Traceback (most recent call last):")
    assert failures[0]["activity_type"]  # Temporal's context as fields of their own
    assert any(e["event"] == "worker_started" for e in events)
    assert any(e["event"] == "worker_stopped" for e in events)


def test_scrub_drops_query_strings_and_phone_like_numbers_but_keeps_digests():
    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    line = f"GET /api/v1/messages?phone=%2B{PHONE} from +{PHONE} or {PHONE[2:]}; delivery {digest} port 8080"
    cleaned = scrub(line)
    assert PHONE not in cleaned and PHONE[2:] not in cleaned and "phone=" not in cleaned
    assert digest in cleaned and "port 8080" in cleaned


def test_fields_named_like_customer_data_or_secrets_are_redacted_whatever_their_value():
    from wa_archive.logs import REDACTED, SENSITIVE_FIELDS, redact

    event = {name: "+447700900123 hello, my token is s3cr3t" for name in SENSITIVE_FIELDS}
    out = redact(None, "info", {**event, "event": "message_recorded", "delivery": "ab12cd34", "found": True})
    assert {name: out[name] for name in SENSITIVE_FIELDS} == {name: REDACTED for name in SENSITIVE_FIELDS}
    assert (out["delivery"], out["found"]) == ("ab12cd34", True)  # an operator's identifiers stay


def test_scrub_drops_phone_numbers_written_with_spaces_dashes_and_brackets():
    formatted = ["+44 7700 900123", "+44 (0)7700 900-123", "(020) 7946 0958", "+1-202-555-0143",
                 "447 700 900 123", "07700 900 123", "447700900123 447700900456"]
    for number in formatted:
        cleaned = scrub(f"could not deliver to {number}, giving up")
        assert not any(ch.isdigit() for ch in cleaned), (number, cleaned)
    # What an operator needs stays: addresses with ports, ISO dates and times, short counts.
    kept = ("Temporal at 127.0.0.1:7233 unreachable since 2026-11-27 05:24:49; 3 of 5 attempts, 1500 ms, port 8080, "
            "id 12345678901234567890")
    assert scrub(kept) == kept


def test_lines_written_at_once_from_two_threads_stay_one_json_object_each(tmp_path):
    """Ours (structlog) from one thread and a library's (logging) from another, as the Temporal Core's
    forwarded lines come: no line may hold the end of one and the start of the other."""
    script = textwrap.dedent("""
        import logging, sys, threading
        import structlog
        from wa_archive.logs import configure_logging
        configure_logging("INFO")
        sys.setswitchinterval(1e-6)  # switch threads as often as possible: any gap inside a line shows
        theirs = threading.Thread(target=lambda: [logging.getLogger("temporalio.core").info("line %d", i)
                                                  for i in range(4000)])
        theirs.start()
        for i in range(4000):
            structlog.get_logger("wa_archive.test").info("our_line", n=i)
        theirs.join()
    """)
    log = tmp_path / "threads.stderr"
    with log.open("wb") as stderr:
        subprocess.run([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=stderr, check=True,
                       env=_env(), timeout=120)
    events = _lines(log)
    assert Counter(e["event"] == "our_line" for e in events) == {True: 4000, False: 4000}
