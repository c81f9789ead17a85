"""The archive worker: runs the workflows and activities against Temporal, Postgres and the store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import aiohttp
import asyncpg
import structlog
from temporalio.client import Client
from temporalio.worker import Worker

from activities.capture_health import CaptureHealthActivities
from activities.delivery import DeliveryActivities
from activities.disposition import DispositionActivities
from activities.exports import ExportActivities
from activities.ledger import LedgerActivities
from activities.media import MediaActivities
from activities.outbound import OutboundActivities
from activities.reconciliation import ReconciliationActivities
from activities.records import RecordActivities
from activities.redrive import RedriveActivities
from activities.retrieval import RetrievalActivities
from wa_archive.archive.keys import contact_key
from wa_archive.config import Settings
from wa_archive.credentials import contact_secret, ledger_signer
from wa_archive.devstack.runtime import connect_db, retention_rules
from wa_archive.integrity import reconciliation
from wa_archive.observability.server import WorkerHealthDeps, worker_metrics
from wa_archive.observability.temporal_sdk import metrics_runtime, register_types
from wa_archive.retention.disposition import Disposer
from wa_archive.sources.links import Allowlist, LinkFetcher
from wa_archive.sources.meta.graph import GraphClient
from wa_archive.sources.wasender.decrypt_api import WasenderClient
from wa_archive.storage import ObjectStore
from wa_archive.storage.posture import open_checked_store
from wa_archive.temporal.client import connect_temporal
from workflows.archive_message import ArchiveMessage
from workflows.capture_health import CaptureHealth
from workflows.disposition import Disposition
from workflows.export_bundle import ExportBundle
from workflows.ingest_delivery import IngestDelivery
from workflows.ledger_checkpoint import LedgerCheckpoint
from workflows.ledger_integrate import LedgerIntegrate
from workflows.outbound_message import OutboundMessage
from workflows.reconciliation import Reconciliation
from workflows.redrive import Redrive
from workflows.retrieval_test import RetrievalTest

log = structlog.get_logger("wa_archive.worker")


def build_worker(
    client: Client, settings: Settings, pool: asyncpg.Pool, store: ObjectStore,
    http: aiohttp.ClientSession, links: LinkFetcher,
) -> Worker:
    """A Worker with every workflow and activity of the archive, dependencies injected."""
    token = settings.meta_access_token.get_secret_value() if settings.meta_access_token else ""
    graph = GraphClient(http, settings.meta_graph_url, token, media_hosts=settings.meta_media_hosts)
    rules = retention_rules(settings)
    if settings.wasender_decrypt_via_api:
        settings.require("wasender_api_key")
    wasender = (WasenderClient(http, settings.wasender_api_url, settings.wasender_api_key.get_secret_value())
                if settings.wasender_decrypt_via_api and settings.wasender_api_key else None)
    media = MediaActivities(graph, store, pool, rules, links, media_host=settings.whatsapp_media_host,
                            wasender=wasender)
    records = RecordActivities(pool, store, rules)
    outbound = OutboundActivities(graph, pool, store.url, rules, waba_id=settings.meta_waba_id)
    signer = ledger_signer(settings)
    exports = ExportActivities(pool, store, settings.retention_days, signer)
    retrieval = RetrievalActivities(pool, store)
    ledger_acts = LedgerActivities(pool, store, signer)
    secret = contact_secret(settings)
    delivery = DeliveryActivities(pool, settings.archive_options(), settings.outbound_options(),
                                  secret, settings.task_queue, settings.consent_feed_options())
    disposition = DispositionActivities(pool, Disposer(pool, store, lambda c: contact_key(secret, c)), rules)
    reconcile = ReconciliationActivities(pool, graph, reconciliation.deadlines_of(settings),
                                         reconciliation.tolerance_of(settings), settings.meta_waba_id,
                                         signer.public_key())
    capture_health = CaptureHealthActivities(pool, settings)
    redrive = RedriveActivities(pool, grace=timedelta(seconds=settings.redrive_grace_seconds),
                                batch=settings.redrive_batch, task_queue=settings.task_queue)
    workflows: list[type] = [ArchiveMessage, IngestDelivery, OutboundMessage, ExportBundle, RetrievalTest,
                             LedgerCheckpoint, Disposition, Reconciliation, CaptureHealth, Redrive]
    activities: list[Callable[..., object]] = [
                    media.archive_media, media.archive_link_media, records.verify_message, records.write_records,
                    media.archive_encrypted_media, records.record_critical_failure, delivery.fan_out_delivery,
                    outbound.snapshot_template, outbound.read_stored_outbound, outbound.write_outbound,
                    exports.export_bundle,
                    retrieval.sample_media, retrieval.check_objects, retrieval.request_restore,
                    retrieval.save_retrieval_report, ledger_acts.write_checkpoint,
                    disposition.prepare_disposition, disposition.dispose_batch, disposition.settle_erasures,
                    reconcile.reconcile_day, capture_health.check_capture_health, redrive.redrive_deliveries]
    workflows.append(LedgerIntegrate)  # batched sequencing of the ledger
    activities += [ledger_acts.integrate_ledger, ledger_acts.integrate_ledger_until]
    register_types(workflows, activities)  # the SDK metrics' type labels take only these values
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=workflows,
        activities=activities,
        max_concurrent_activities=settings.max_concurrent_activities,
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


def link_fetcher(settings: Settings) -> LinkFetcher:
    return LinkFetcher(Allowlist(settings.media_fetch_allowlist), max_bytes=settings.media_fetch_max_bytes,
                       timeout=settings.media_fetch_timeout)


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (or forever); shuts down gracefully so activities can finish."""
    settings.require("meta_access_token")
    # With metrics on, the client's runtime records the SDK's metrics for the worker's /metrics.
    runtime, collector = metrics_runtime(settings.log_level) if settings.metrics_port is not None else (None, None)
    client = await connect_temporal(settings, runtime=runtime)
    pool = await connect_db(settings, max_size=settings.max_concurrent_activities + 2)
    try:
        store = await open_checked_store(settings, pool, "worker", must_reach=True)
    except BaseException:
        await pool.close()
        raise
    timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_read=60)
    links = link_fetcher(settings)
    health = WorkerHealthDeps(client=client, pool=pool, store=store)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        worker = build_worker(client, settings, pool, store, http, links)
        log.info("worker_started", task_queue=settings.task_queue, storage=store.url)
        try:
            async with worker_metrics(settings, health, collector):
                if stop is None:
                    await worker.run()
                else:
                    async with worker:
                        await stop.wait()
        finally:
            await links.close()
            await store.close()
            await pool.close()
            log.info("worker_stopped")
