"""Every metric the archive exports: names, labels, buckets, and the small functions that move them.

Label values come only from closed sets chosen here (source, direction, outcome, stage); anything else
is counted as "other". A phone number, text, message id or token never becomes a label value, and a
sender cannot create series by sending odd values.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics

# The `_created` companion of every counter doubles the exposition and no rule or panel reads it.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client

SOURCES = ("meta", "wasender")
DIRECTIONS = ("in", "out")
OUTCOMES = ("accepted", "400", "401", "413", "503")
# The stages ArchiveMessage and OutboundMessage record critical failures under (activities' attempt names).
STAGES = ("verify_message", "archive_media", "write_records", "snapshot_template", "write_outbound")
OTHER = "other"

WEBHOOK_DELIVERIES = Counter(
    "wa_archive_webhook_deliveries", "Webhook deliveries answered, by source and outcome (accepted or the HTTP"
    " status of the refusal).", ["source", "outcome"])
MESSAGES_ARCHIVED = Counter(
    "wa_archive_messages_archived", "Messages newly recorded as archived, by source and direction.",
    ["source", "direction"])
MESSAGES_FAILED = Counter(
    "wa_archive_messages_failed", "Messages newly recorded as failed (a media item could not be archived),"
    " by source and direction.", ["source", "direction"])
MEDIA_BYTES_ARCHIVED = Counter(
    "wa_archive_media_bytes_archived", "Bytes of media objects newly written to the object store.")
CRITICAL_FAILURES = Counter(
    "wa_archive_critical_failures", "Critical archive failures recorded (every retry spent), by stage.",
    ["stage"])
# From seconds (a live webhook) to days (history sync, a backlog after an outage).
CAPTURE_LATENCY = Histogram(
    "wa_archive_capture_latency_seconds", "From the message's own timestamp to its record being written.",
    ["source", "direction"],
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 86400, 7 * 86400))
INTAKE_LATENCY = Histogram(
    "wa_archive_intake_latency_seconds", "From the webhook delivery's arrival to the message's record being"
    " written (inbound).", ["source"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600))

# Database-derived gauges, set by observability.gauges' refresher (NaN: never happened yet).
DELIVERIES_AWAITING_HANDOFF = Gauge(
    "wa_archive_deliveries_awaiting_handoff", "Deliveries stored but not handed to Temporal after the grace"
    " period.")
LAST_DELIVERY = Gauge(
    "wa_archive_last_delivery_timestamp_seconds", "When the last webhook delivery was stored (Unix time).")
LEDGER_TREE_SIZE = Gauge("wa_archive_ledger_tree_size", "Leaves in the integrity ledger.")
LEDGER_CHECKPOINT_TREE_SIZE = Gauge(
    "wa_archive_ledger_checkpoint_tree_size", "Leaves covered by the last signed checkpoint.")
LEDGER_CHECKPOINT_AGE = Gauge(
    "wa_archive_ledger_checkpoint_age_seconds", "Seconds since the last signed ledger checkpoint.")
LEDGER_UNSIGNED_AGE = Gauge(
    "wa_archive_ledger_unsigned_age_seconds", "Age of the oldest ledger leaf no signed checkpoint covers yet"
    " (0 when every leaf is covered).")
LEDGER_CHECKPOINT_INTERVAL = Gauge(
    "wa_archive_ledger_checkpoint_interval_seconds", "The configured checkpoint interval"
    " (WA_ARCHIVE_LEDGER_CHECKPOINT_EVERY), for the alert that compares ages with it.")
# Batched sequencing (integrity/sequencing.py): candidates wait for the integrator to number them.
LEDGER_PENDING = Gauge(
    "wa_archive_ledger_pending_leaves", "Ledger leaf candidates written with their records and not yet"
    " integrated into the log.")
LEDGER_PENDING_AGE = Gauge(
    "wa_archive_ledger_pending_age_seconds", "Age of the oldest ledger leaf candidate not yet integrated"
    " (0 when none waits).")
LEDGER_INTEGRATE_INTERVAL = Gauge(
    "wa_archive_ledger_integrate_interval_seconds", "The configured integration interval"
    " (WA_ARCHIVE_LEDGER_INTEGRATE_EVERY), for the alert that compares the pending age with it.")
LEDGER_INTEGRATED = Counter(
    "wa_archive_ledger_integrated_leaves", "Ledger leaves integrated (numbered into the log) by this process.")
LEDGER_INTEGRATION_LAG = Histogram(
    "wa_archive_ledger_integration_lag_seconds", "From a leaf candidate being written to its integration"
    " into the log (when its receipt can exist).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800))
API_TOKEN_CHECKS = Counter(
    "wa_archive_api_token_checks", "API bearer tokens checked, by where the answer came from: memory"
    " (a token confirmed moments ago, while changes are heard of) or database.", ["answer"])
TOKEN_ANSWERS = ("memory", "database")
RETRIEVAL_TEST_LAST = Gauge(
    "wa_archive_retrieval_test_last_timestamp_seconds", "When the last retrieval test finished (Unix time).")
RETRIEVAL_TEST_OK = Gauge(
    "wa_archive_retrieval_test_last_ok", "1 when every item of the last retrieval test read back intact, else 0.")
STORAGE_CHECK_LAST = Gauge(
    "wa_archive_storage_check_last_timestamp_seconds", "When the object store's posture was last checked"
    " (Unix time).")
STORAGE_CHECK_OK = Gauge(
    "wa_archive_storage_check_last_ok", "1 when the last storage posture check passed, else 0.")
DISPOSITION_LAST = Gauge(
    "wa_archive_disposition_last_timestamp_seconds", "When the last Disposition run closed (Unix time).")
DISPOSITION_OK = Gauge(
    "wa_archive_disposition_last_ok", "1 when the last Disposition run completed, 0 when it failed or was"
    " ended.")
GAUGES_REFRESHED = Gauge(
    "wa_archive_gauges_refreshed_timestamp_seconds", "When this process last read the gauges above (Unix time).")
GAUGE_REFRESH_ERRORS = Counter(
    "wa_archive_gauge_refresh_errors", "Reads of the database-derived gauges that failed.", ["part"])

NEVER = math.nan


def _one_of(value: str, allowed: tuple[str, ...]) -> str:
    return value if value in allowed else OTHER


def _initialise() -> None:
    """Every label combination at zero from the start, so a rate or an alert sees the series before
    the first event (and the alert-rule test finds each name in a fresh process)."""
    for source in SOURCES:
        for outcome in OUTCOMES:
            WEBHOOK_DELIVERIES.labels(source, outcome)
        for direction in DIRECTIONS:
            MESSAGES_ARCHIVED.labels(source, direction)
            MESSAGES_FAILED.labels(source, direction)
            CAPTURE_LATENCY.labels(source, direction)
        INTAKE_LATENCY.labels(source)
    for stage in STAGES:
        CRITICAL_FAILURES.labels(stage)
    for part in ("database", "temporal"):
        GAUGE_REFRESH_ERRORS.labels(part)
    for answer in TOKEN_ANSWERS:
        API_TOKEN_CHECKS.labels(answer)
    for gauge in (LAST_DELIVERY, LEDGER_CHECKPOINT_AGE, RETRIEVAL_TEST_LAST, RETRIEVAL_TEST_OK,
                  STORAGE_CHECK_LAST, STORAGE_CHECK_OK, DISPOSITION_LAST, DISPOSITION_OK, GAUGES_REFRESHED):
        gauge.set(NEVER)


_initialise()


def ledger_integrated(waits: list[float]) -> None:
    """Count integrated leaves and how long each waited for its number."""
    LEDGER_INTEGRATED.inc(len(waits))
    for waited in waits:
        LEDGER_INTEGRATION_LAG.observe(max(0.0, waited))


def api_token_checked(answer: str) -> None:
    """An API token was checked; `answer`: memory or database (wa_archive.access.token_cache)."""
    API_TOKEN_CHECKS.labels(_one_of(answer, TOKEN_ANSWERS)).inc()


def delivery_answered(source: str, status: int) -> None:
    """A webhook delivery was answered with `status` (200: accepted)."""
    outcome = "accepted" if status == 200 else _one_of(str(status), OUTCOMES)
    WEBHOOK_DELIVERIES.labels(_one_of(source, SOURCES), outcome).inc()


def message_recorded(source: str, direction: str, archive_status: str, message_time: datetime,
                     received_at: datetime | None) -> None:
    """A message's record was newly written; `received_at` is its delivery's arrival (inbound only)."""
    src, way = _one_of(source, SOURCES), _one_of(direction, DIRECTIONS)
    (MESSAGES_ARCHIVED if archive_status == "archived" else MESSAGES_FAILED).labels(src, way).inc()
    now = datetime.now(timezone.utc)
    # A sender's clock may run ahead of ours: a negative latency is counted as none.
    CAPTURE_LATENCY.labels(src, way).observe(max(0.0, (now - message_time).total_seconds()))
    if received_at is not None:
        INTAKE_LATENCY.labels(src).observe(max(0.0, (now - received_at).total_seconds()))


def media_stored(size: int) -> None:
    """A media object was newly written to the store (not one found there already)."""
    MEDIA_BYTES_ARCHIVED.inc(size)


def critical_failure(stage: str) -> None:
    CRITICAL_FAILURES.labels(_one_of(stage, STAGES)).inc()


def registry_text() -> tuple[bytes, str]:
    """The whole exposition (this process's metrics, Temporal's when the worker runs here) and its type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
