"""Attacks on the production-operations promises: JSON-only stderr without customer data, metric labels
no one outside can steer, and a re-drive that loses no stored delivery."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import textwrap
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp

from tests.conftest import DATA_CONVERTER, wait_until
from tests.metered import Samples, metered_fixture, scrape, wait_for  # noqa: F401 - the `metered` fixture
from tests.test_logs import PHONE, _env, _lines, _serving, _stop
from wa_archive.db import handoffs, queries
from wa_archive.devstack.embedded import free_port
from wa_archive.models import RedriveReport
from wa_archive.sources.meta.samples import dumps, envelope, message, wamid

BEARER = "tok_" + "s3cr3t" * 6  # a client's token that must appear in no log line


async def test_malformed_http_requests_are_access_lines_not_unhandled_exceptions_or_leaked_headers(
        clean_db, database_url, temporal_address, tmp_path):
    """Raw bytes no HTTP parser accepts: each is a 400 and one JSON access line; the access logger
    does not crash on a request that never matched a route, and a header the parser quotes back in
    its error (an Authorization header with a stray control character) does not reach the log."""
    port = free_port()
    log = tmp_path / "serve.stderr"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wa_archive.cli", "serve"], stdout=subprocess.DEVNULL, stderr=log.open("wb"),
        env=_env(WA_ARCHIVE_DATABASE_URL=database_url, WA_ARCHIVE_TEMPORAL_ADDRESS=temporal_address,
                 WA_ARCHIVE_HTTP_PORT=str(port), WA_ARCHIVE_STORAGE_URL=(tmp_path / "objects").as_uri(),
                 WA_ARCHIVE_DATA_DIR=str(tmp_path / "data"), WA_ARCHIVE_HTTP_ACCESS_LOG="true"))
    bad = [
        f"GET /api/v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {BEARER}\x01\r\n\r\n".encode(),
        f"GET /api/v1/messages HTTP/1.1\r\nHost: x\r\nCookie: wa_session={BEARER}\x00\r\n\r\n".encode(),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        f"\x16\x03\x01 {PHONE} garbage\r\n\r\n".encode(),
    ]
    try:
        async with aiohttp.ClientSession() as http:
            await _serving(http, f"http://127.0.0.1:{port}", proc, log)
        for raw in bad:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(raw)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(100), 10)
            assert answer.startswith(b"HTTP/1.") and b" 400 " in answer, answer
            writer.close()

        async def logged() -> list[dict[str, Any]]:
            found = [e for e in _lines(log) if e["event"] == "http_request" and e.get("status") == 400]
            return found if len(found) >= len(bad) else []

        refusals = await wait_until(logged, "one access line per malformed request", interval=0.2)
    finally:
        _stop(proc)
    text = log.read_text()
    events = _lines(log)
    assert [e for e in events if e["event"] == "Unhandled exception"] == []
    assert all(e["route"] is None for e in refusals)
    assert BEARER not in text and PHONE not in text


def test_no_wamid_and_no_raw_text_reach_stderr_from_any_logger_or_hook(tmp_path):
    """A wamid is base64 of data holding the customer's number: whichever field carries one (a message id,
    a reconciliation gap line, a retrieval item, a library's message or exception text) it is redacted.
    Exceptions nobody catches (in a thread, in a destructor) come out as JSON lines too."""
    mid = wamid()
    script = textwrap.dedent(f"""
        import gc, logging, threading
        import structlog
        from wa_archive.logs import configure_logging
        configure_logging("INFO")
        mid = {mid!r}
        log = structlog.get_logger("wa_archive.outbound")
        log.info("template_snapshot", message_id=mid, template="t")
        log.critical("reconciliation_red", gaps=["123: 1 pending past their deadline: " + mid])
        log.critical("retrieval_test_failed", items=[mid + " (k): gone"], nested={{"ids": (mid,)}})
        logging.getLogger("temporalio.activity").warning("Completing activity as failed (%s)", mid)
        try:
            raise ValueError("duplicate key value (id)=(" + mid + ")")
        except ValueError:
            log.exception("boom")
        t = threading.Thread(target=lambda: 1 / 0, name="worker-thread")
        t.start(); t.join()
        class Leaky:
            def __del__(self):
                raise RuntimeError("in a destructor " + mid)
        Leaky()
        gc.collect()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60,
                          env=_env(), check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    path = tmp_path / "stderr"
    path.write_bytes(proc.stderr)
    events = _lines(path)  # every line JSON, the hooks' included
    text = proc.stderr.decode()
    assert mid not in text and mid.split(".", 1)[1][:20] not in text, text
    assert {e["event"] for e in events} >= {"template_snapshot", "reconciliation_red", "retrieval_test_failed",
                                            "boom", "uncaught_exception", "unraisable_exception"}
    thread = next(e for e in events if e["event"] == "uncaught_exception")
    assert "ZeroDivisionError" in thread["exception"] and thread["thread"] == "worker-thread"


async def test_a_delivery_committed_after_a_redrive_run_passed_its_arrival_is_still_redriven(stack_factory):
    """The webhook stamps a delivery with its arrival, but the row becomes visible only when it commits:
    a commit held up (a busy pool, a lock) past the re-drive's grace lands behind the horizon a run
    already recorded. It must still be handed over (and counted as awaiting), not lost."""
    stack = await stack_factory(redrive_grace_seconds=60.0)
    first = await stack.client.execute_workflow("Redrive", id=f"redrive-{uuid.uuid4().hex[:8]}",
                                                task_queue=stack.settings.task_queue, result_type=RedriveReport)
    assert first.redriven == []
    mid = wamid()
    body = dumps(envelope([message("text", {"body": "late commit"}, mid=mid)]))
    sha256 = hashlib.sha256(body).hexdigest()
    # Arrived before the first run's cutoff; committed only now, its hand-off failed (Temporal down).
    await queries.insert_delivery(stack.pool, sha256=sha256, source="meta", body=body, signature=None,
                                  remote_addr=None, updates=1,
                                  received_at=datetime.now(timezone.utc) - timedelta(seconds=90))
    assert await handoffs.deliveries_awaiting_handoff(stack.pool, grace=timedelta(seconds=60)) == 1
    second = await stack.client.execute_workflow("Redrive", id=f"redrive-{uuid.uuid4().hex[:8]}",
                                                 task_queue=stack.settings.task_queue, result_type=RedriveReport)
    assert second.redriven == [sha256]
    await stack.wait_for_message(mid)


async def test_a_workflow_type_anyone_can_start_does_not_become_a_metric_label(metered, temporal_address):
    """Whoever can start a workflow on the cluster chooses its type name; the worker's SDK metrics must
    not grow a series (memory) or print a label per name."""
    stack, worker = metered
    from temporalio.client import Client

    client = await Client.connect(temporal_address, data_converter=DATA_CONVERTER)
    names = [f"Evil{uuid.uuid4().hex}" for _ in range(3)]
    for name in names:
        await client.start_workflow(name, id=f"evil-{uuid.uuid4().hex[:8]}", task_queue=stack.settings.task_queue)

    def failed_tasks(samples: Samples) -> float:
        return sum(v for (name, _), v in samples.items() if name == "temporal_workflow_task_execution_failed_total")

    await wait_for(stack, f"{worker}/metrics", lambda s: failed_tasks(s) >= len(names),
                   "the unknown workflow types' failed tasks")
    _, text = await scrape(stack, f"{worker}/metrics")
    for name in names:
        assert name not in text
