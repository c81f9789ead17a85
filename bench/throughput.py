"""Ingest and end to end, the two benchmarks bound by Temporal, each measured twice in the same run:
with Temporal payloads encrypted, as deployed, and in plaintext through bench/plaintext.py. The
codec's figures keep the top-level keys; the plaintext ones sit under "plaintext", the codec's cost
(with codec / plaintext) under "codec_cost". Each takes the running Bench."""

from __future__ import annotations

import asyncio
import functools
import os
import time
import uuid
from typing import TYPE_CHECKING

from temporalio.client import Client
from temporalio.service import RPCError

from bench import codec
from bench.floor import FloorWorkflow
from bench.measure import percentile
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, media_message, message, wamid

if TYPE_CHECKING:
    from bench.__main__ import Bench

MODES = ("codec", "plaintext")
# End to end also runs the codec lane with the worker's metrics off, for the cost of metrics.
E2E_MODES = (*MODES, "no_metrics")


async def stored_encodings(client: Client, task_queue: str) -> dict[str, str]:
    """How one ArchiveMessage's payloads lie in Temporal's history: its input as the webhook started
    it, and its first activity's input as the worker scheduled it. Proof of what a lane measured:
    `binary/encrypted` with the codec, `json/plain` without."""
    query = f"TaskQueue = '{task_queue}' AND WorkflowType = 'ArchiveMessage'"
    for _ in range(100):  # visibility trails the history by a moment
        async for wf in client.list_workflows(query, limit=1):
            history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
            started = history.events[0].workflow_execution_started_event_attributes
            scheduled = next(e.activity_task_scheduled_event_attributes for e in history.events
                             if e.HasField("activity_task_scheduled_event_attributes"))
            return {"webhook": started.input.payloads[0].metadata["encoding"].decode(),
                    "worker": scheduled.input.payloads[0].metadata["encoding"].decode()}
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no ArchiveMessage workflow listed on {task_queue}")


# 1. ingest ---------------------------------------------------------------------------------------

async def ingest(b: Bench, n: int = 1000, concurrency: int = 16) -> dict:
    """Webhook deliveries against raw starts, each with the codec (as deployed) and in plaintext:
    the figures of the codec at the top level, the plaintext ones under "plaintext"."""
    tq = f"bench-ingest-{uuid.uuid4().hex[:6]}"  # no worker: only the acknowledgement is timed

    async def run(make, count):
        gate = asyncio.Semaphore(concurrency)

        async def one(i):
            async with gate:
                await make(i)
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        return count / (time.perf_counter() - started)

    async def raw_round(client: Client) -> float:
        return await run(lambda i: client.start_workflow(
            "IngestDelivery", {"delivery_sha256": uuid.uuid4().hex}, id=f"raw-{uuid.uuid4()}", task_queue=tq), n)

    async def hook_round(url: str) -> float:
        bodies = [dumps(envelope([message("text", {"body": f"m{i}"})])) for i in range(n)]
        return await run(lambda i: b.post(url, bodies[i]), n)

    lanes = {"codec": (b.client, await b.serve(tq)),
             "plaintext": (b.plain_client, await b.serve(tq + "-plain", "serve-plain", plaintext=True))}
    # Alternate baseline and webhook rounds and compare medians, so that a noisy moment on a
    # shared 2-core machine does not decide the ratio; the codec and plaintext lanes alternate
    # too, in turn first, for the same reason.
    raws: dict[str, list[float]] = {mode: [] for mode in MODES}
    hooks: dict[str, list[float]] = {mode: [] for mode in MODES}
    for k in range(3):
        for mode in MODES if k % 2 == 0 else MODES[::-1]:
            client, url = lanes[mode]
            raws[mode].append(await raw_round(client))
            hooks[mode].append(await hook_round(url))

    # Fixed rate: 100 requests/s for 10 s, latency per request, for raw starts and the webhook. When
    # the machine cannot keep up, the webhook's 5 s start timeout answers 503: such a request counts
    # with its time to the answer and is counted as refused, rather than ending the whole run.
    async def timed_start(client: Client, i: int) -> tuple[float, bool]:
        started = time.perf_counter()
        try:
            await client.start_workflow("IngestDelivery", {"delivery_sha256": str(i)},
                                        id=f"rate-{uuid.uuid4()}", task_queue=tq)
        except RPCError:
            return time.perf_counter() - started, False
        return time.perf_counter() - started, True

    async def timed_post(url: str, body: bytes) -> tuple[float, bool]:
        started = time.perf_counter()
        try:
            return await b.post(url, body), True
        except RuntimeError:
            return time.perf_counter() - started, False

    async def at_rate(call) -> tuple[list[float], int]:
        tasks = []
        start = time.perf_counter()
        for i in range(1000):
            await asyncio.sleep(max(0.0, start + i / 100 - time.perf_counter()))
            tasks.append(asyncio.create_task(call(i)))
        answers = await asyncio.gather(*tasks)
        return [t for t, _ in answers], sum(1 for _, ok in answers if not ok)

    async def hooks_at_rate(url: str) -> tuple[list[float], int]:
        rate_bodies = [dumps(envelope([message("text", {"body": f"rate {i}"})])) for i in range(1000)]
        return await at_rate(lambda i: timed_post(url, rate_bodies[i]))

    figures = {}
    for mode in MODES:
        client, url = lanes[mode]
        raw_latencies, raw_failed = await at_rate(functools.partial(timed_start, client))
        latencies, refused = await hooks_at_rate(url)
        raw, hook = percentile(raws[mode], 50), percentile(hooks[mode], 50)
        figures[mode] = {
            "raw_start_per_s": round(raw, 1), "webhook_per_s": round(hook, 1),
            "raw_rounds": [round(r, 1) for r in raws[mode]],
            "webhook_rounds": [round(h, 1) for h in hooks[mode]],
            "ratio": round(hook / raw, 3), "target_ratio": 0.85,
            "p50_ms_at_100rps": round(percentile(latencies, 50) * 1000, 1),
            "p99_ms_at_100rps": round(percentile(latencies, 99) * 1000, 1), "target_p99_ms": 100,
            "raw_start_p50_ms_at_100rps": round(percentile(raw_latencies, 50) * 1000, 1),
            "raw_start_p99_ms_at_100rps": round(percentile(raw_latencies, 99) * 1000, 1),
            "refused_at_100rps": refused, "raw_start_failed_at_100rps": raw_failed,
        }
    batch = dumps(envelope([message("text", {"body": f"b{i}"}) for i in range(1000)]))
    acks: dict[str, list[float]] = {mode: [] for mode in MODES}
    for k in range(3):
        for mode in MODES if k % 2 == 0 else MODES[::-1]:
            acks[mode].append(await b.post(lanes[mode][1], batch.replace(b'"b', f'"{mode}{k}b'.encode())))
    for mode in MODES:
        figures[mode].update(ack_1000_updates_ms=round(min(acks[mode]) * 1000, 1), target_ack_ms=1000)
    return {**figures["codec"], "plaintext": figures["plaintext"], "codec_cost": codec.cost(
        figures["codec"], figures["plaintext"], rates=("webhook_per_s", "raw_start_per_s"),
        times_ms=("p50_ms_at_100rps", "p99_ms_at_100rps", "raw_start_p50_ms_at_100rps",
                  "raw_start_p99_ms_at_100rps", "ack_1000_updates_ms"))}


# 2. end to end -----------------------------------------------------------------------------------

async def end_to_end(b: Bench, n: int = 500, size: int = 100 * 1024) -> dict:
    """Archive throughput against the Temporal floor, with the codec (as deployed), in plaintext, and
    with the codec but the worker's metrics off (no metrics port, so no SDK metric buffer: the cost of
    metrics). Rounds run the lanes in order, then in reverse, so that a drift over the run weighs on
    all alike; each figure is the mean of its two rounds."""
    lanes = {}
    for mode in E2E_MODES:
        plaintext = mode == "plaintext"
        floor_tq, tq = f"bench-floor-{uuid.uuid4().hex[:6]}", f"bench-e2e-{uuid.uuid4().hex[:6]}"
        b.spawn([*b.command("floor", plaintext), b.temporal.address, floor_tq], b.env(), f"floor-{mode}")
        url = await b.serve(tq, f"serve-e2e-{mode}", plaintext=plaintext)
        # An empty setting is no setting: the worker runs without its metrics port.
        b.worker(tq, plaintext=plaintext, **({"WA_ARCHIVE_METRICS_PORT": ""} if mode == "no_metrics" else {}))
        lanes[mode] = (b.plain_client if plaintext else b.client, floor_tq, tq, url)
    await asyncio.sleep(2)
    floors: dict[str, list[float]] = {mode: [] for mode in E2E_MODES}
    archives: dict[str, list[float]] = {mode: [] for mode in E2E_MODES}
    for mode in (*E2E_MODES, *E2E_MODES[::-1]):
        client, floor_tq, tq, url = lanes[mode]
        floors[mode].append(await _floor_round(client, floor_tq, n))
        archives[mode].append(await _archive_round(b, url, n, size))
    figures, encodings = {}, {}
    for mode in E2E_MODES:
        client, _, tq, _ = lanes[mode]
        floor, archive = sum(floors[mode]) / 2, sum(archives[mode]) / 2
        figures[mode] = {"floor_msgs_per_s": round(floor, 1), "archive_msgs_per_s": round(archive, 1),
                         "ratio": round(archive / floor, 3), "target_ratio": 0.7,
                         "floor_rounds": [round(f, 1) for f in floors[mode]],
                         "archive_rounds": [round(a, 1) for a in archives[mode]]}
        encodings[mode] = await stored_encodings(client, tq)
    encrypted = {mode: {enc == "binary/encrypted" for enc in encodings[mode].values()} for mode in E2E_MODES}
    if encrypted != {"codec": {True}, "plaintext": {False}, "no_metrics": {True}}:
        raise RuntimeError(f"a lane did not run as labelled: {encodings}")
    return {"messages": n, "media_bytes": size, **figures["codec"], "plaintext": figures["plaintext"],
            "codec_cost": codec.cost(figures["codec"], figures["plaintext"],
                                     rates=("archive_msgs_per_s", "floor_msgs_per_s"), times_ms=()),
            "no_metrics": figures["no_metrics"],
            "metrics_cost": codec.cost(figures["codec"], figures["no_metrics"],
                                       rates=("archive_msgs_per_s", "floor_msgs_per_s"), times_ms=()),
            "payload_encoding": encodings}


async def _floor_round(client: Client, task_queue: str, n: int) -> float:
    started = time.perf_counter()
    handles = await asyncio.gather(*(client.start_workflow(
        FloorWorkflow.run, i, id=f"floor-{uuid.uuid4()}", task_queue=task_queue) for i in range(n)))
    await asyncio.gather(*(h.result() for h in handles))
    return n / (time.perf_counter() - started)


async def _archive_round(b: Bench, url: str, n: int, size: int) -> float:
    ids, bodies = [], []
    for _ in range(n):
        media = b.graph.add(FakeMedia(f"e2e-{uuid.uuid4().hex}", content=os.urandom(size)))
        mid = wamid()
        ids.append(mid)
        bodies.append(dumps(envelope([media_message("image", media.media_id, media.sha256_b64(),
                                                    "image/jpeg", mid=mid)])))
    started = time.perf_counter()
    gate = asyncio.Semaphore(16)

    async def send(body):
        async with gate:
            await b.post(url, body)
    await asyncio.gather(*(send(body) for body in bodies))
    await b.wait_archived(ids, timeout=600)
    return n / (time.perf_counter() - started)

