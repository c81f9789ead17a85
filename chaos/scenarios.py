"""The faults, one per scenario: each `inject(stack, seconds)` starts its fault at once, holds it for
`seconds`, ends it, and returns what it did and when."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from chaos.stack import BUCKET, ChaosStack
from chaos.verify import Fault

Inject = Callable[[ChaosStack, float], Awaitable[Fault]]


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    backend: str  # "s3" or "filesystem"
    inject: Inject
    default_seconds: float


async def _wait_for(what: str, check: Callable[[], Awaitable[bool]], timeout: float, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f}s")
        await asyncio.sleep(poll)


async def _handover_part_killed(stack: ChaosStack, part: str, seconds: float) -> Fault:
    """A part the webhook needs to hand over (PostgreSQL, Temporal) SIGKILLed, then started again on its
    state after `seconds`; the down window ends when it is started again."""
    fault = Fault(started=time.time(), ended=0.0, handover_down=True, killed={part})
    stack.kill(part)
    await asyncio.sleep(seconds)
    fault.back = time.time()
    await stack.restart(part)
    fault.ended = time.time()
    return fault


async def postgres_killed(stack: ChaosStack, seconds: float) -> Fault:
    return await _handover_part_killed(stack, "postgres", seconds)


async def temporal_restarted(stack: ChaosStack, seconds: float) -> Fault:
    return await _handover_part_killed(stack, "temporal", seconds)


async def object_store_503(stack: ChaosStack, seconds: float) -> Fault:
    fault = Fault(started=time.time(), ended=0.0)
    refused_before = stack.s3_proxy.refused
    stack.s3_proxy.refuse(503)
    await asyncio.sleep(seconds)
    await stack.s3_proxy.heal()
    fault.ended = time.time()
    fault.notes.append(f"{stack.s3_proxy.refused - refused_before} S3 requests refused with 503")
    return fault


async def object_store_unreachable(stack: ChaosStack, seconds: float) -> Fault:
    fault = Fault(started=time.time(), ended=0.0)
    await stack.s3_proxy.unreachable()
    await asyncio.sleep(seconds)
    await stack.s3_proxy.heal()
    fault.ended = time.time()
    return fault


async def worker_killed_mid_upload(stack: ChaosStack, seconds: float) -> Fault:
    """Kill the worker whose multipart upload is in flight (S3 lists it), leave the other running."""
    from aiobotocore.session import get_session

    workers = {pid: name for name, pid in stack.pids().items() if name.startswith("worker")}
    victim: list[str] = []
    async with get_session().create_client("s3", endpoint_url=stack.moto_url, region_name="us-east-1",
                                           aws_access_key_id="testing", aws_secret_access_key="testing") as s3:
        async def upload_in_flight() -> bool:
            uploads = (await s3.list_multipart_uploads(Bucket=BUCKET, Prefix=stack.s3_prefix + "/")).get("Uploads", [])
            keys = {u["Key"][len(stack.s3_prefix) + 1:] for u in uploads}
            for start in reversed(stack.s3_proxy.multipart_starts):
                if start.key.split("/", 1)[-1] in keys and start.pid in workers:
                    victim[:] = [workers[start.pid], start.key]
                    return True
            return False

        await _wait_for("a multipart upload by a worker", upload_in_flight, timeout=120, poll=0.1)
    fault = Fault(started=time.time(), ended=0.0, killed={victim[0]})
    stack.kill(victim[0])
    fault.notes.append(f"SIGKILLed {victim[0]} during the upload of {victim[1]}")
    await asyncio.sleep(seconds)
    await stack.restart(victim[0])
    fault.ended = time.time()
    return fault


async def webhook_killed_mid_request(stack: ChaosStack, seconds: float) -> Fault:
    name = "webhook-1"

    async def busy() -> bool:
        return stack.in_flight[name] > 0

    await _wait_for(f"a request in flight to {name}", busy, timeout=120, poll=0.002)
    fault = Fault(started=time.time(), ended=0.0, killed={name})
    in_flight = stack.in_flight[name]
    stack.kill(name)
    fault.notes.append(f"SIGKILLed {name} with {in_flight} request(s) in flight")
    await asyncio.sleep(seconds)
    await stack.restart(name)
    fault.ended = time.time()
    return fault


async def graph_api_errors(stack: ChaosStack, seconds: float) -> Fault:
    """Meta's API rate-limits (429, code 4) for the first half, then fails (500, code 1), then recovers."""
    fault = Fault(started=time.time(), ended=0.0)
    stack.graph.outage_status = 429
    await asyncio.sleep(seconds / 2)
    stack.graph.outage_status = 500
    await asyncio.sleep(seconds / 2)
    stack.graph.outage_status = None
    fault.ended = time.time()
    return fault


FILLER = ".chaos-filler"


def _fill(path: str) -> int:
    """Write zeros until the filesystem refuses (ENOSPC); returns the bytes written."""
    written = 0
    block = b"\0" * (1024 * 1024)
    with open(path, "wb", buffering=0) as fh:
        try:
            while True:
                written += fh.write(block) or 0
        except OSError:
            pass
        try:  # the last partial pages, so not even a metadata file fits
            while True:
                written += fh.write(b"\0" * 4096) or 0
        except OSError:
            pass
    return written


async def disk_full(stack: ChaosStack, seconds: float) -> Fault:
    fault = Fault(started=time.time(), ended=0.0)
    filler = str(stack.store_dir / FILLER)
    written = await asyncio.to_thread(_fill, filler)
    fault.notes.append(f"filled the store's tmpfs with {written // (1024 * 1024)} MiB")
    await asyncio.sleep(seconds)
    os.unlink(filler)
    fault.ended = time.time()
    return fault


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("postgres_killed", "PostgreSQL SIGKILLed (postmaster and children), restarted on its data",
             "s3", postgres_killed, 20),
    Scenario("temporal_restarted", "Temporal dev server SIGKILLed, restarted on its SQLite state",
             "s3", temporal_restarted, 60),
    Scenario("object_store_503", "S3 answers 503 ServiceUnavailable to every request, then recovers",
             "s3", object_store_503, 60),
    Scenario("object_store_unreachable", "S3 endpoint closed (connections refused), then listening again",
             "s3", object_store_unreachable, 60),
    Scenario("worker_killed_mid_upload", "the worker with a multipart upload in flight SIGKILLed; the other "
             "keeps running; restarted after", "s3", worker_killed_mid_upload, 10),
    Scenario("webhook_killed_mid_request", "a webhook server SIGKILLed with a request in flight; restarted",
             "s3", webhook_killed_mid_request, 5),
    Scenario("graph_api_errors", "Graph API answers 429 (code 4), then 500 (code 1) to every media call, "
             "then recovers", "s3", graph_api_errors, 30),
    Scenario("disk_full", "the filesystem store's tmpfs filled to ENOSPC, then the space freed",
             "filesystem", disk_full, 30),
)}
