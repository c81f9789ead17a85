"""What a scenario must leave behind, checked against the archive's own records and stores.

After the load: wait (bounded, failing loudly) until every acknowledged delivery's message is archived
or has its critical failure recorded; then every 200-acknowledged delivery archived exactly once, its
media with the SHA-256 the source declared, every object stored once (S3: one version per key and no
incomplete multipart upload; filesystem: one file per media and no temp file left), the ledger
verifying (`wa-archive verify --json --full`), critical failures only when the fault outlasted the
retry policy's five attempts (then one per affected message, with every attempt), and no answer but
200 or 503 from a live webhook server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from chaos.load import Delivery
from chaos.stack import BUCKET, REPO, ChaosStack
from wa_archive.archive.keys import safe_id


@dataclass
class Fault:
    """What a scenario's inject did, and when (wall-clock times, comparable with database times)."""

    started: float
    ended: float
    killed: set[str] = field(default_factory=set)  # parts SIGKILLed: connection errors there are expected
    notes: list[str] = field(default_factory=list)
    outlasts_retries: bool = False  # the fault was longer than the media retry policy's five attempts
    handover_down: bool = False  # the webhook could not hand over (PostgreSQL or Temporal down): no 200 then
    # When the downed part was started again (it may serve from then on, before the restart returns).
    back: float | None = None


@dataclass
class Verdict:
    figures: dict[str, Any]
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems


async def wait_settled(stack: ChaosStack, message_ids: list[str], timeout: float) -> list[str]:
    """Wait until every message is recorded (archived or failed); returns those that never were."""
    assert stack.pool is not None
    deadline = time.monotonic() + timeout
    missing = list(message_ids)
    while True:
        try:
            found = {r["id"] for r in await stack.pool.fetch(
                "SELECT id FROM messages WHERE id = ANY($1::text[])", missing)}
            missing = [m for m in missing if m not in found]
        except (OSError, ConnectionError) as exc:  # PostgreSQL still coming back: keep waiting
            print(f"chaos: verifier waiting for PostgreSQL: {exc}", file=sys.stderr)
        if not missing or time.monotonic() > deadline:
            return missing
        await asyncio.sleep(0.5)


def _count(deliveries: list[Delivery], predicate: Any) -> int:
    return sum(1 for d in deliveries for a in d.attempts if predicate(a))


async def verify(stack: ChaosStack, deliveries: list[Delivery], fault: Fault, *, settle_timeout: float,
                 retry_max_attempts: int = 5) -> Verdict:
    assert stack.pool is not None
    problems: list[str] = []
    acked = [d for d in deliveries if d.acknowledged]
    ids = [d.message_id for d in deliveries]
    never = await wait_settled(stack, [d.message_id for d in acked], settle_timeout)
    if never:
        problems.append(f"{len(never)} acknowledged message(s) neither archived nor failed within "
                        f"{settle_timeout:.0f}s: {', '.join(never[:5])}")

    # Answers: a live server says 200 or 503; a connection error only where a server was killed.
    statuses = [a.outcome for d in deliveries for a in d.attempts]
    odd = sorted({str(s) for s in statuses if isinstance(s, int) and s not in (200, 503)})
    if odd:
        problems.append(f"webhook answered other than 200/503: {', '.join(odd)}")
    conn_errors = _count(deliveries, lambda a: isinstance(a.outcome, str))
    live_errors = _count(deliveries, lambda a: isinstance(a.outcome, str) and a.server not in fault.killed)
    if live_errors:
        problems.append(f"{live_errors} connection error(s)/timeout(s) from webhook servers that were not killed")

    # While the webhook cannot store or hand over, it may hold a request (the Temporal client retries) but
    # must never answer 200. Only a request sent after the fault began counts (one sent before may have
    # stored and handed over already), and only an answer given a second before the fault's end was
    # recorded (the component is back, and serving, a moment before that).
    during = [a for d in deliveries for a in d.attempts if fault.started <= a.at <= fault.ended]
    early_200 = [a for d in deliveries for a in d.attempts
                 if a.outcome == 200 and fault.started + 0.5 < a.at
                 and a.at + a.seconds < (fault.back if fault.back is not None else fault.ended - 1.0)]
    if fault.handover_down and early_200:
        problems.append(f"{len(early_200)} delivery(ies) answered 200 while the hand-off was down")

    rows = {r["id"]: r for r in await stack.pool.fetch(
        "SELECT id, archive_status, archived_at FROM messages WHERE id = ANY($1::text[])", ids)}
    media = {r["message_id"]: r for r in await stack.pool.fetch(
        "SELECT message_id, status, sha256, size, storage_key FROM media WHERE message_id = ANY($1::text[])", ids)}
    media_rows = await stack.pool.fetchval("SELECT count(*) FROM media WHERE message_id = ANY($1::text[])", ids)
    failures = await stack.pool.fetch(
        "SELECT message_id, attempts, created_at FROM archive_failures WHERE message_id = ANY($1::text[])", ids)
    failures_by_message: dict[str, list[Any]] = {}
    for f in failures:
        failures_by_message.setdefault(f["message_id"], []).append(f)

    archived = 0
    by_id = {d.message_id: d for d in deliveries}
    for d in acked:
        row, item = rows.get(d.message_id), media.get(d.message_id)
        if row is None:
            continue  # reported above
        if row["archive_status"] == "archived":
            if item is None or item["status"] != "archived":
                problems.append(f"{d.message_id}: archived without its media")
            elif item["sha256"] != d.sha256 or item["size"] != d.size:
                problems.append(f"{d.message_id}: media sha256/size {item['sha256']}/{item['size']} "
                                f"!= declared {d.sha256}/{d.size}")
            else:
                archived += 1
        elif d.message_id not in failures_by_message:
            problems.append(f"{d.message_id}: recorded as failed without a critical failure")
    if media_rows != len(media):
        problems.append(f"{media_rows - len(media)} extra media row(s)")
    for message_id, found in failures_by_message.items():
        if not fault.outlasts_retries:
            problems.append(f"{message_id}: critical failure although the fault ended within the retry policy")
        if len(found) != 1:
            problems.append(f"{message_id}: {len(found)} critical failures, expected one")
        for f in found:
            attempts = json.loads(f["attempts"]) if isinstance(f["attempts"], str) else f["attempts"]
            # An attempt row is written to PostgreSQL (best effort, activities/attempts.py): attempts made
            # while PostgreSQL itself was down have no row, so then fewer rows, never more, are right.
            expected_all = "postgres" not in fault.killed
            if len(attempts) > retry_max_attempts or (expected_all and len(attempts) != retry_max_attempts):
                problems.append(f"{message_id}: failure records {len(attempts)} attempts, not {retry_max_attempts}")
        if message_id not in by_id:
            problems.append(f"{message_id}: failure for a message this run did not send")

    duplicates = await _objects(stack, ids, media, problems)

    verified = await asyncio.to_thread(_verify_ledger, stack)
    if not verified.get("ok"):
        problems.append(f"ledger verification failed: {verified.get('problems', verified)}")

    # Recovery: the first 200 after the fault ended, and the archive caught up (the last record written).
    after = [a.at for d in deliveries for a in d.attempts if a.outcome == 200 and a.at >= fault.ended]
    settled_times = [r["archived_at"].timestamp() for r in rows.values()]
    settled_times += [f["created_at"].timestamp() for f in failures]
    figures = {
        "sent": len(deliveries),
        "attempts": len(statuses),
        "acknowledged": len(acked),
        "refused_503": statuses.count(503),
        "connection_errors": conn_errors,
        "archived": archived,
        "recorded_not_acknowledged": len([m for m in rows if not by_id[m].acknowledged]),
        "duplicates": duplicates,
        "failures": len(failures),
        "attempts_during_fault": len(during),
        "fault_seconds": round(fault.ended - fault.started, 1),
        "first_200_after_fault_s": round(min(after) - fault.ended, 2) if after else None,
        "caught_up_after_fault_s": round(max(max(settled_times) - fault.ended, 0.0), 2) if settled_times else None,
        "killed": sorted(fault.killed),
        "notes": fault.notes,
    }
    return Verdict(figures=figures, problems=problems)


async def _objects(stack: ChaosStack, ids: list[str], media: dict[str, Any], problems: list[str]) -> int:
    """Every object once; returns how many extra copies (versions or files) were found."""
    names = {safe_id(m) for m in ids}

    def ours(key: str) -> bool:
        stem = key.rsplit("/", 1)[-1].rsplit(".", 1)[0]  # {message-id}[-{position}].{ext}
        return stem in names or stem.rsplit("-", 1)[0] in names

    expected = {row["storage_key"] for row in media.values() if row["status"] == "archived"}
    duplicates = 0
    if stack.backend == "s3":
        from aiobotocore.session import get_session

        async with get_session().create_client("s3", endpoint_url=stack.moto_url, region_name="us-east-1",
                                               aws_access_key_id="testing", aws_secret_access_key="testing") as s3:
            versions: dict[str, int] = {}
            paginator = s3.get_paginator("list_object_versions")
            async for page in paginator.paginate(Bucket=BUCKET, Prefix=stack.s3_prefix + "/archive/"):
                for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    key = v["Key"][len(stack.s3_prefix) + 1:]
                    if ours(key):
                        versions[key] = versions.get(key, 0) + 1
            uploads = (await s3.list_multipart_uploads(Bucket=BUCKET, Prefix=stack.s3_prefix + "/")).get("Uploads", [])
        left = [u["Key"] for u in uploads if ours(u["Key"][len(stack.s3_prefix) + 1:])]
        if left:
            problems.append(f"{len(left)} incomplete multipart upload(s) left: {left[:3]}")
        for key, n in versions.items():
            if n > 1:
                duplicates += n - 1
                problems.append(f"{key}: {n} versions, expected one")
        found = set(versions)
    else:
        root = stack.store_dir
        files = [p.relative_to(root).as_posix() for p in root.rglob("*")
                 if p.is_file() and ".tmp" not in p.relative_to(root).parts and not p.name.endswith(".meta.json")
                 and not p.name.startswith(".chaos")]
        found = {f for f in files if ours(f)}
        leftovers = [p.name for p in (root / ".tmp").glob("*")] if (root / ".tmp").exists() else []
        if leftovers:
            problems.append(f"{len(leftovers)} temporary file(s) left in the store: {leftovers[:3]}")
        missing_meta = [f for f in found if not (root / (f + ".meta.json")).exists()]
        if missing_meta:
            problems.append(f"{len(missing_meta)} object(s) without their retention metadata: {missing_meta[:3]}")
    for key in expected - found:
        problems.append(f"{key}: recorded as archived but not in the store")
    orphans = found - expected
    if orphans:
        problems.append(f"{len(orphans)} object(s) in the store with no archived record: {sorted(orphans)[:3]}")
    return duplicates


def _verify_ledger(stack: ChaosStack) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "wa_archive.cli", "verify", "--json", "--full"],
                          env=stack.cli_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    try:
        result: dict[str, Any] = json.loads(done.stdout)
        return result
    except json.JSONDecodeError:
        return {"ok": False, "problems": [f"exit {done.returncode}: {done.stderr[-1500:]}"]}
