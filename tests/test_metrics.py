"""Prometheus metrics on a running stack: the webhook's /metrics and the worker's port move as messages are
archived and fail, the database-derived gauges follow the archive, and no label carries personal data."""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from datetime import datetime, timedelta, timezone

from temporalio.client import Client

from tests.conftest import ACCESS_TOKEN, APP_SECRET, DATA_CONVERTER
from tests.metered import Samples, metered_fixture, scrape, value, wait_for  # noqa: F401 - the `metered` fixture
from wa_archive.credentials import ledger_signer
from wa_archive.db import create_pool, queries
from wa_archive.devstack.embedded import free_port
from wa_archive.integrity import ledger
from wa_archive.models import DispositionInput, DispositionReport
from wa_archive.observability.server import WorkerHealthDeps, health_app
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, media_message, message, wamid
from wa_archive.storage import FilesystemStore

PHONE = "447700900123"  # the samples' contact
CAPTION = "Signed mandate for account 0042"


async def test_archiving_and_a_failure_move_the_worker_metrics(metered):
    stack, worker = metered
    worker_metrics_url, webhook_metrics_url = f"{worker}/metrics", f"{stack.url}/metrics"
    before, _ = await scrape(stack, worker_metrics_url)
    hooks_before, _ = await scrape(stack, webhook_metrics_url)
    content = os.urandom(50_000)
    good = stack.graph.add(FakeMedia(f"m{uuid.uuid4().int % 10**15}", content=content))
    gone = stack.graph.add(FakeMedia(f"m{uuid.uuid4().int % 10**15}", content=b"x" * 100, status=404))
    archived_id, failed_id = wamid(), wamid()
    item = media_message("image", good.media_id, good.sha256_b64(), "image/jpeg", mid=archived_id)
    item["image"]["caption"] = CAPTION
    assert (await stack.post(dumps(envelope([item]))))[0] == 200
    assert (await stack.post(dumps(envelope([media_message("image", gone.media_id, gone.sha256_b64(), "image/jpeg",
                                                           mid=failed_id)]))))[0] == 200
    await stack.wait_for_message(archived_id)
    await stack.wait_for_failure(failed_id)

    def moved(now: Samples, name: str, **labels: str) -> float:
        return value(now, name, **labels) - value(before, name, **labels)

    inbound = {"source": "meta", "direction": "in"}
    after = await wait_for(stack, worker_metrics_url, lambda s: (
        moved(s, "wa_archive_messages_archived_total", **inbound) == 1
        and moved(s, "wa_archive_messages_failed_total", **inbound) == 1
        and moved(s, "wa_archive_critical_failures_total", stage="archive_media") == 1), "archived and failed counts")
    assert moved(after, "wa_archive_media_bytes_archived_total") == len(content)
    # Both records were written, one archived and one failed: each has its capture and intake latency.
    assert moved(after, "wa_archive_capture_latency_seconds_count", **inbound) == 2
    assert moved(after, "wa_archive_intake_latency_seconds_count", source="meta") == 2
    assert moved(after, "wa_archive_intake_latency_seconds_bucket", source="meta", le="+Inf") == 2
    assert 0 <= moved(after, "wa_archive_intake_latency_seconds_sum", source="meta") < 120
    assert moved(after, "wa_archive_messages_archived_total", source="wasender", direction="in") == 0
    # Temporal's SDK metrics, drained into the same registry, for this worker's task queue.
    tq = stack.settings.task_queue
    activity_runs = [v for (name, labels), v in after.items()
                     if name == "temporal_activity_execution_latency_count" and ("task_queue", tq) in labels]
    assert activity_runs and sum(activity_runs) >= 3, sorted({n for n, _ in after if n.startswith("temporal_")})
    await wait_for(stack, webhook_metrics_url, lambda s: value(
        s, "wa_archive_webhook_deliveries_total", source="meta", outcome="accepted")
        - value(hooks_before, "wa_archive_webhook_deliveries_total", source="meta", outcome="accepted") == 2,
        "two accepted deliveries")
    # Nothing from a message in any label or value line, on either port: no number, text, id, or token.
    for url in (worker_metrics_url, webhook_metrics_url):
        _, text = await scrape(stack, url)
        for secret in (PHONE, CAPTION, "Signed mandate", archived_id, failed_id, good.media_id, ACCESS_TOKEN,
                       APP_SECRET, stack.settings.contact_key_secret.get_secret_value()):
            assert secret not in text, (url, secret)


async def test_delivery_outcomes_are_counted_by_source(metered):
    stack, _ = metered
    url = f"{stack.url}/metrics"
    before, _ = await scrape(stack, url)
    assert (await stack.post(b'{"object": "whatsapp_business_account", "entry": ['))[0] == 400  # not JSON
    assert (await stack.post(dumps(envelope([message("text", {"body": "hi"})])), signature="sha256=00"))[0] == 401
    assert (await stack.post(b" " * (65 * 1024)))[0] == 413
    async with stack.http.post(f"{stack.url}/webhooks/wasender", data=b"{}") as resp:
        assert resp.status == 401  # WASender is not enabled here: refused like a bad secret
    after, _ = await scrape(stack, url)
    delta = {(src, outcome): value(after, "wa_archive_webhook_deliveries_total", source=src, outcome=outcome)
             - value(before, "wa_archive_webhook_deliveries_total", source=src, outcome=outcome)
             for src in ("meta", "wasender") for outcome in ("accepted", "400", "401", "413", "503")}
    assert {k: v for k, v in delta.items() if v} == {("meta", "400"): 1, ("meta", "401"): 1, ("meta", "413"): 1,
                                                     ("wasender", "401"): 1}


async def test_a_delivery_temporal_did_not_take_is_counted_503(stack_factory, client):
    from aiohttp import web

    from webhook.app import WebhookDeps, create_app

    stack = await stack_factory(run_worker=False)
    dead = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True, data_converter=DATA_CONVERTER)
    runner = web.AppRunner(create_app(WebhookDeps(settings=stack.settings, client=dead, pool=stack.pool,
                                                  store=stack.store)))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        before, _ = await scrape(stack, f"{stack.url}/metrics")
        stack.url, real = f"http://127.0.0.1:{port}", stack.url
        assert (await stack.post(dumps(envelope([message("text", {"body": "hello"})]))))[0] == 503
        after, _ = await scrape(stack, f"{real}/metrics")  # one registry per process: either port tells
    finally:
        await runner.cleanup()
    assert (value(after, "wa_archive_webhook_deliveries_total", source="meta", outcome="503")
            - value(before, "wa_archive_webhook_deliveries_total", source="meta", outcome="503")) == 1


async def test_database_gauges_follow_the_archive(metered, admin_pool):
    stack, worker = metered
    url = f"{worker}/metrics"
    mid = wamid()
    await stack.post(dumps(envelope([message("text", {"body": "gauge me"}, mid=mid)])))
    await stack.wait_for_message(mid)
    size = await stack.pool.fetchval("SELECT size FROM ledger_head")
    last = await stack.pool.fetchval("SELECT max(received_at) FROM deliveries")
    samples = await wait_for(stack, url, lambda s: value(s, "wa_archive_ledger_tree_size") == size,
                             "the ledger's tree size")
    assert value(samples, "wa_archive_last_delivery_timestamp_seconds") == last.timestamp()
    assert value(samples, "wa_archive_ledger_checkpoint_tree_size") == 0
    assert math.isnan(value(samples, "wa_archive_ledger_checkpoint_age_seconds"))  # never signed
    assert value(samples, "wa_archive_ledger_unsigned_age_seconds") >= 0
    assert value(samples, "wa_archive_ledger_checkpoint_interval_seconds") == stack.settings.ledger_checkpoint_every
    assert value(samples, "wa_archive_ledger_integrate_interval_seconds") == stack.settings.ledger_integrate_every
    assert value(samples, "wa_archive_ledger_pending_age_seconds") >= 0
    assert value(samples, "wa_archive_deliveries_awaiting_handoff") == 0

    # A checkpoint covers every leaf; a delivery stored 20 minutes ago whose message never got a record;
    # a red retrieval test and a red storage check.
    await ledger.write_checkpoint(stack.pool, stack.store, ledger_signer(stack.settings))
    await queries.insert_delivery_with_messages(
        stack.pool, sha256=uuid.uuid4().hex * 2, source="meta", body=b"{}", signature=None, remote_addr=None,
        updates=1, received_at=datetime.now(timezone.utc) - timedelta(minutes=20), message_ids=[wamid()])
    finished = datetime.now(timezone.utc).replace(microsecond=0)
    await admin_pool.execute(
        "INSERT INTO retrieval_reports (workflow_id, run_id, started_at, finished_at, sample_size, passed, failed,"
        " items) VALUES ('retrieval-test', $1, $2, $2, 2, 1, 1, '[]')", uuid.uuid4().hex, finished)
    await admin_pool.execute("INSERT INTO storage_checks (store_url, ok, findings, checked_by) VALUES ($1, false,"
                             " '[]', 'test')", stack.store.url)
    samples = await wait_for(stack, url, lambda s: (
        value(s, "wa_archive_ledger_checkpoint_tree_size") == size
        and value(s, "wa_archive_deliveries_awaiting_handoff") == 1
        and value(s, "wa_archive_retrieval_test_last_ok") == 0
        and value(s, "wa_archive_storage_check_last_ok") == 0), "checkpoint, hand-off, retrieval and storage gauges")
    assert value(samples, "wa_archive_ledger_unsigned_age_seconds") == 0
    assert 0 <= value(samples, "wa_archive_ledger_checkpoint_age_seconds") < 60
    assert value(samples, "wa_archive_retrieval_test_last_timestamp_seconds") == finished.timestamp()
    assert time.time() - value(samples, "wa_archive_storage_check_last_timestamp_seconds") < 60

    # A Disposition run on this task queue, as Temporal's visibility lists it once closed.
    started = time.time()
    await stack.client.execute_workflow("Disposition", DispositionInput(batch=50), id=f"disposition-{uuid.uuid4()}",
                                        task_queue=stack.settings.task_queue, result_type=DispositionReport)
    # Other tests' runs share this Temporal: wait for a run that closed after this one started.
    samples = await wait_for(stack, url, lambda s: (
        value(s, "wa_archive_disposition_last_timestamp_seconds") >= started - 1
        and value(s, "wa_archive_disposition_last_ok") == 1), "this Disposition run")
    assert value(samples, "wa_archive_disposition_last_timestamp_seconds") <= time.time()


async def test_worker_readyz_names_postgres_when_it_is_down(metered, tmp_path):
    from aiohttp import web

    stack, worker = metered
    async with stack.http.get(f"{worker}/healthz") as resp:
        assert resp.status == 200 and await resp.json() == {"status": "ok"}
    async with stack.http.get(f"{worker}/readyz") as resp:
        assert resp.status == 200 and await resp.json() == {"status": "ready", "checks": {
            "temporal": "ok", "postgres": "ok", "storage": "ok"}}
    dead_port = free_port()
    pool = await create_pool(f"postgresql://u:pw@127.0.0.1:{dead_port}/internal_db", min_size=0)
    runner = web.AppRunner(health_app(WorkerHealthDeps(client=stack.client, pool=pool,
                                                       store=FilesystemStore(tmp_path / "objects"))))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with stack.http.get(f"http://127.0.0.1:{port}/readyz") as resp:
            status, answer = resp.status, await resp.read()
    finally:
        await runner.cleanup()
        await pool.close()
    assert status == 503
    assert json.loads(answer) == {"status": "not ready", "checks": {"temporal": "ok", "postgres": "down",
                                                                    "storage": "ok"}}
    assert str(dead_port).encode() not in answer and b"internal_db" not in answer


def test_delivery_labels_outside_their_closed_sets_are_counted_as_other():
    """Whatever a caller passes, the series stay the closed set's: no sender can add one."""
    from prometheus_client import REGISTRY

    from wa_archive.observability import metrics

    def count(source: str, outcome: str) -> float:
        return REGISTRY.get_sample_value("wa_archive_webhook_deliveries_total",
                                         {"source": source, "outcome": outcome}) or 0.0

    before = count("other", "other")
    metrics.delivery_answered("<script>", 418)
    assert count("other", "other") == before + 1
    assert REGISTRY.get_sample_value("wa_archive_webhook_deliveries_total",
                                     {"source": "<script>", "outcome": "418"}) is None
