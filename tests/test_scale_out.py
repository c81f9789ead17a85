"""Several workers and webhook servers at once (issue 16): two `wa-archive worker` and two `wa-archive serve`
processes on the suite's one Temporal and one PostgreSQL (with moto's S3 and the fake Graph API) take a
burst of signed deliveries split across both servers, every body sent to both at the same moment and the
same message ids repacked into other envelopes, and archive each message exactly once into one gapless
ledger whose root matches a recomputation from its leaves."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import WorkflowExecutionStatus

from chaos.stack import REPO, kill_group, spawn
from tests.conftest import APP_SECRET, CONTACT_SECRET, LEDGER_KEY, Stack, make_settings, wait_until
from tests.test_cli_json import _json
from tests.test_logs import _env, _lines, _serving
from wa_archive.archive.fanout import record_delivery
from wa_archive.archive.handover import Delivery
from wa_archive.archive.keys import delivery_workflow_id, message_workflow_id, outbound_workflow_id
from wa_archive.db import queries
from wa_archive.devstack.embedded import free_port
from wa_archive.integrity import ledger, merkle, sequencing
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.payload import parse_delivery
from wa_archive.sources.meta.samples import dumps, envelope, media_message, message, wamid
from wa_archive.sources.signature import meta_signature

WORKERS = ("worker-1", "worker-2")
SERVERS = ("webhook-1", "webhook-2")
# 24 messages: the batch of all of them is more than the 20 updates the webhook fans out itself.
MEDIA_MESSAGES, TEXT_MESSAGES, OUTBOUND_MESSAGES = 12, 12, 4
PHONE = "447700900555"
SENDS = 5  # attempts per body and server, as Meta resends what was not acknowledged
# Error lines that are not failures of this test: the posture of the suite's bucket (checked by its own
# tests), and refusals, checked one by one against the answers.
EXPECTED_ERRORS = ("storage_posture_wrong", "delivery_not_accepted")


@dataclass
class Burst:
    """What the burst carries: each distinct message once, and every distinct body that carries them."""

    media: dict[str, FakeMedia] = field(default_factory=dict)  # inbound message id -> its one media item
    texts: list[str] = field(default_factory=list)  # inbound text message ids
    stops: list[str] = field(default_factory=list)  # those among them that are a STOP: consent evidence
    outbound: list[str] = field(default_factory=list)  # message ids only statuses speak of
    statuses: set[tuple[str, str, str]] = field(default_factory=set)  # (message id, status, raw timestamp)
    bodies: list[bytes] = field(default_factory=list)
    batch: bytes = b""  # the body too large to fan out inline: one IngestDelivery workflow

    @property
    def inbound(self) -> list[str]:
        return [*self.media, *self.texts]


def _burst(stack: Stack, rng: random.Random) -> Burst:
    """Media and text messages (a few texts a STOP: consent evidence), each in an envelope of its own,
    again in pairs with another message, and all together in one batch; statuses of outbound messages
    in one envelope per message and in two envelopes holding all of them in opposite orders."""
    burst = Burst()
    items: dict[str, dict[str, Any]] = {}
    now = int(time.time())
    for i in range(MEDIA_MESSAGES):
        media = stack.graph.add(FakeMedia(f"so{uuid.uuid4().hex[:12]}", content=rng.randbytes(rng.randint(2000, 40_000))))
        mid = wamid()
        burst.media[mid] = media
        items[mid] = media_message("image", media.media_id, media.sha256_b64(), "image/jpeg", mid=mid, phone=PHONE,
                                   ts=now - i)
    for i in range(TEXT_MESSAGES):
        mid = wamid()
        burst.texts.append(mid)
        if i % 5 == 0:
            burst.stops.append(mid)
        text = "STOP" if i % 5 == 0 else f"order {i}: buy 10"
        items[mid] = message("text", {"body": text}, mid=mid, phone=PHONE, ts=now - i)
    ids = list(items)
    burst.bodies += [dumps(envelope([items[mid]], phone=PHONE)) for mid in ids]
    paired = rng.sample(ids, len(ids))
    burst.bodies += [dumps(envelope([items[a], items[b]], phone=PHONE)) for a, b in zip(paired[::2], paired[1::2], strict=True)]
    burst.batch = dumps(envelope([items[mid] for mid in ids], phone=PHONE))
    burst.bodies.append(burst.batch)

    statuses = []
    for i in range(OUTBOUND_MESSAGES):
        mid = wamid()
        burst.outbound.append(mid)
        mine = [{"id": mid, "status": status, "timestamp": str(now - 60 + i * 2 + step), "recipient_id": PHONE}
                for step, status in enumerate(("sent", "delivered"))]
        statuses += mine
        burst.statuses |= {(s["id"], s["status"], s["timestamp"]) for s in mine}
        burst.bodies.append(dumps(envelope(statuses=mine, phone=PHONE)))
    # The same rows in opposite orders, written by two servers at once: neither may fail on the other.
    burst.bodies.append(dumps(envelope(statuses=statuses, phone=PHONE)))
    burst.bodies.append(dumps(envelope(statuses=statuses[::-1], phone=PHONE)))
    assert len(set(burst.bodies)) == len(burst.bodies)
    return burst


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    base: str  # its /healthz: the server's HTTP port, a worker's metrics port

    @property
    def identity(self) -> str:
        """The Temporal client identity the SDK gives the process: what its polls and tasks are recorded under."""
        return f"{self.proc.pid}@{socket.gethostname()}"


def _start(name: str, stack: Stack, database_url: str, temporal_address: str, run_dir: Path) -> Process:
    s = stack.settings
    port = free_port()
    command, port_setting = ("worker", "WA_ARCHIVE_METRICS_PORT") if name in WORKERS else ("serve", "WA_ARCHIVE_HTTP_PORT")
    env = _env(WA_ARCHIVE_DATABASE_URL=database_url, WA_ARCHIVE_TEMPORAL_ADDRESS=temporal_address,
               WA_ARCHIVE_STORAGE_URL=stack.store.url, WA_ARCHIVE_S3_ENDPOINT_URL=str(s.s3_endpoint_url),
               WA_ARCHIVE_S3_PART_SIZE_MIB="5", WA_ARCHIVE_META_GRAPH_URL=s.meta_graph_url,
               WA_ARCHIVE_TASK_QUEUE=s.task_queue, WA_ARCHIVE_RETRY_INITIAL_INTERVAL="0.2",
               WA_ARCHIVE_RETRY_MAX_INTERVAL="1",
               # Statuses with no send record are kept as a statuses-only row after this wait (seconds).
               WA_ARCHIVE_OUTBOUND_RECORD_WAIT="2",
               WA_ARCHIVE_DATA_DIR=str(run_dir / f"{name}-data"), **{port_setting: str(port)})
    log = run_dir / f"{name}.log"
    return Process(name, spawn([sys.executable, "-m", "wa_archive.cli", command], log, env=env, cwd=REPO), log,
                   f"http://127.0.0.1:{port}")


async def _pollers(stack: Stack) -> set[str]:
    """Identities polling the stack's task queue for both workflow and activity tasks."""
    found: set[str] | None = None
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        described = await stack.client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=stack.client.namespace, task_queue=TaskQueue(name=stack.settings.task_queue),
            task_queue_type=kind))
        polling = {p.identity for p in described.pollers}
        found = polling if found is None else found & polling
    return found or set()


async def _post_to_both(http: aiohttp.ClientSession, servers: list[Process], body: bytes) -> list[tuple[str, int]]:
    """The same signed body to every server at the same moment, as Meta's retry and a second region might;
    like Meta, a server that does not answer 200 gets the body again (a few times, backing off). Every
    answer is returned, in order, as (server, status)."""
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(APP_SECRET, body)}

    async def post(server: Process) -> list[tuple[str, int]]:
        answers: list[tuple[str, int]] = []
        for attempt in range(SENDS):
            async with http.post(f"{server.base}/webhooks/meta", data=body, headers=headers) as resp:
                await resp.read()
                answers.append((server.name, resp.status))
            if resp.status == 200:
                break
            await asyncio.sleep(0.5 * (attempt + 1))
        return answers

    return [answer for answers in await asyncio.gather(*(post(server) for server in servers)) for answer in answers]


@pytest.mark.slow
async def test_two_workers_and_two_webhook_servers_archive_a_duplicated_burst_once_into_one_gapless_ledger(
        stack_factory, database_url, temporal_address, tmp_path):
    stack = await stack_factory("s3", run_worker=False)
    pool, client, tq = stack.pool, stack.client, stack.settings.task_queue
    burst = _burst(stack, random.Random(16))
    processes = [_start(name, stack, database_url, temporal_address, tmp_path) for name in (*WORKERS, *SERVERS)]
    workers, servers = processes[:2], processes[2:]
    stop_integrating = asyncio.Event()
    integrated: list[int] = []
    integrators: list[asyncio.Task[None]] = []

    async def integrator() -> None:
        # Two integrators while the records are written, as overlapping Schedule runs would be.
        while not stop_integrating.is_set():
            integrated.append(await sequencing.integrate(pool, batch=5))
            await asyncio.sleep(0.02)

    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            # Four interpreters starting at once on a busy 2-core machine: allow them time.
            await asyncio.gather(*(_serving(http, p.base, p.proc, p.log, timeout=120) for p in processes))
            wanted = {w.identity for w in workers}

            async def both_polling() -> bool:
                return wanted <= await _pollers(stack)

            await wait_until(both_polling, "both workers polling the task queue", interval=0.2)
            integrators += [asyncio.create_task(integrator()) for _ in range(2)]
            answers = await asyncio.gather(*(_post_to_both(http, servers, body)
                                             for body in random.Random(7).sample(burst.bodies, len(burst.bodies))))

            outbound_ids = burst.outbound
            everything = [*burst.inbound, *outbound_ids]

            async def all_archived() -> bool:
                done = await pool.fetchval("SELECT count(*) FROM messages WHERE id = ANY($1::text[])"
                                           " AND archive_status = 'archived'", everything)
                return done == len(everything)

            await wait_until(all_archived, "every message of the burst archived", timeout=90, interval=0.2)
            expected_workflows = {message_workflow_id(CONTACT_SECRET, m) for m in burst.inbound}
            expected_workflows |= {outbound_workflow_id(CONTACT_SECRET, m) for m in outbound_ids}
            expected_workflows.add(delivery_workflow_id(hashlib.sha256(burst.batch).hexdigest()))

            async def all_closed() -> list[Any]:
                runs = [w async for w in client.list_workflows(f"TaskQueue = '{tq}'")]
                running = [w for w in runs if w.status == WorkflowExecutionStatus.RUNNING]
                return runs if not running and {w.id for w in runs} >= expected_workflows else []

            runs = await wait_until(all_closed, "every workflow of the burst closed (visibility)", timeout=30,
                                    interval=0.3)
            stop_integrating.set()
            await asyncio.gather(*integrators)
    finally:
        stop_integrating.set()
        await asyncio.gather(*integrators, return_exceptions=True)  # a failure was raised above already
        # All at once: each shuts down gracefully (SIGTERM), and what it logs on the way out is read below.
        await asyncio.gather(*(asyncio.to_thread(kill_group, p.proc, signal.SIGTERM, 20) for p in processes))

    # Both servers acknowledged every body, duplicates included: each one's last answer to each body is 200.
    assert all(dict(answers_of_body)[name] == 200 for answers_of_body in answers for name in SERVERS)
    refused = Counter(name for answers_of_body in answers for name, status in answers_of_body if status != 200)
    assert {status for answers_of_body in answers for _, status in answers_of_body} <= {200, 503}
    for server in servers:
        events = _lines(server.log)
        assert len([e for e in events if e["event"] == "delivery_accepted"]) == len(burst.bodies), server.name
        # A refusal (503, resent as Meta would) may come only from Temporal not accepting the start within
        # the webhook's timeout on a busy machine; never from the database (a deadlock, a unique violation).
        not_accepted = [e for e in events if e["event"] == "delivery_not_accepted"]
        assert len(not_accepted) == refused[server.name]
        assert [e["error"] for e in not_accepted if not e["error"].startswith("RPCError(")] == [], server.name
    # Nothing else anywhere went wrong on the way, not even an attempt that a retry then covered. (The
    # suite's bucket is not set up as production's, which every process says at start: not a failure here.)
    for p in processes:
        troubles = [e for e in _lines(p.log)
                    if (e.get("level") in ("error", "critical") and e["event"] not in EXPECTED_ERRORS)
                    or (e.get("logger", "").startswith("temporalio") and "exception" in e)]
        assert troubles == [], f"{p.name}: {troubles[:3]}"

    # One workflow run per message (and one for the batch), each completed; no other.
    assert Counter(w.id for w in runs) == Counter(expected_workflows), "a message got more than one run, or a stray one"
    assert {w.status for w in runs} == {WorkflowExecutionStatus.COMPLETED}
    # Both workers did the work: every workflow and activity task went to one of the two (the identity each
    # process's Temporal client has: its pid), and each ran workflow tasks and activities of its own.
    tasks: Counter[tuple[str, str]] = Counter()
    for w in runs:
        history = await client.get_workflow_handle(w.id, run_id=w.run_id).fetch_history()
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                tasks["activity", event.activity_task_started_event_attributes.identity] += 1
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                tasks["workflow", event.workflow_task_started_event_attributes.identity] += 1
    assert set(tasks) == {(kind, w.identity) for kind in ("activity", "workflow") for w in workers}, tasks

    # Exactly once in the archive: one row per message, one media row and one stored object per media id.
    rows = await pool.fetch("SELECT id, direction, archive_status FROM messages")
    assert sorted(r["id"] for r in rows) == sorted(everything)
    assert {r["id"] for r in rows if r["direction"] == "out"} == set(outbound_ids)
    media_rows = await pool.fetch("SELECT message_id, media_id, status, sha256, storage_key FROM media")
    assert Counter(r["media_id"] for r in media_rows) == Counter(m.media_id for m in burst.media.values())
    for row in media_rows:
        assert row["status"] == "archived" and row["sha256"] == burst.media[row["message_id"]].declared_sha256
    # Every version of every archived object under the test's prefix (each process's start-up check of
    # the store leaves its own canary beside them, under _canary/).
    stored = [key for key in await stack.stored_objects() if key.startswith(f"{stack.store.prefix}/archive/")]
    assert Counter(stored) == Counter(f"{stack.store.prefix}/{r['storage_key']}" for r in media_rows)
    status_rows = await pool.fetch("SELECT id, message_id, status, raw_timestamp FROM status_events")
    assert sorted((r["message_id"], r["status"], r["raw_timestamp"]) for r in status_rows) == sorted(burst.statuses)
    assert await pool.fetchval("SELECT count(*) FROM archive_failures") == 0
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == len(burst.bodies)
    assert await pool.fetchval("SELECT count(*) FROM delivery_handoffs") == len(burst.bodies)

    # One gapless ledger: every record exactly one leaf, numbered 0..n-1, the root recomputed from the leaves.
    integrated.append(await sequencing.integrate(pool))
    leaves = await pool.fetch("SELECT seq, kind, record_id, digest, leaf_hash FROM ledger_leaves ORDER BY seq")
    assert [leaf["seq"] for leaf in leaves] == list(range(len(leaves)))
    assert sum(integrated) == len(leaves) and await pool.fetchval("SELECT size FROM ledger_head") == len(leaves)
    assert await pool.fetchval("SELECT count(*) FROM ledger_candidates") == 0
    entries = Counter((leaf["kind"], leaf["record_id"]) for leaf in leaves)
    assert [entry for entry, n in entries.items() if n > 1] == []
    assert {rid for kind, rid in entries if kind == "message"} == set(everything)
    assert {rid for kind, rid in entries if kind == "status_event"} == {str(r["id"]) for r in status_rows}
    consent = await pool.fetch("SELECT id, evidence_message_id FROM consent_entries")
    assert sorted(e["evidence_message_id"] for e in consent) == sorted(burst.stops)
    assert {rid for kind, rid in entries if kind == "consent"} == {str(e["id"]) for e in consent}
    recomputed = merkle.root([merkle.leaf_hash(ledger.leaf_bytes(leaf["kind"], leaf["record_id"], leaf["digest"]))
                              for leaf in leaves])
    assert merkle.root([bytes(leaf["leaf_hash"]) for leaf in leaves]) == recomputed
    checkpoint = await ledger.write_checkpoint(pool, stack.store, ledger.Signer(base64.b64decode(LEDGER_KEY)))
    assert checkpoint is not None and (checkpoint["tree_size"], checkpoint["root_hash"]) == (len(leaves), recomputed.hex())
    env = _env(WA_ARCHIVE_DATABASE_URL=database_url, WA_ARCHIVE_STORAGE_URL=stack.store.url,
               WA_ARCHIVE_S3_ENDPOINT_URL=str(stack.settings.s3_endpoint_url))
    verified = await _json(env, "verify", "--full")
    assert verified["ok"] and verified["objects_rehashed"] == len(media_rows), verified


async def _store_as_the_webhook_does(pool: Any, body: bytes) -> None:
    """The webhook's one transaction for a delivery with statuses or consent evidence (archive/handover.py)."""
    delivery = Delivery(source="meta", body=body, signature=None, remote_addr=None,
                        received_at=datetime.now(timezone.utc))
    parsed = parse_delivery(json.loads(body), delivery.sha256, delivery.received_at)
    async with pool.acquire() as conn, conn.transaction():
        await queries.insert_delivery(conn, **delivery.row(len(parsed.messages) + len(parsed.statuses)))
        await record_delivery(conn, delivery.sha256, parsed, consent=make_settings().consent_feed_options())


async def test_two_servers_storing_the_same_statuses_in_opposite_orders_both_commit(clean_db):
    """Two servers at once, given two envelopes that carry the same statuses in opposite orders: both
    commit (neither fails with a deadlock), and each status is stored once with one ledger leaf."""
    pool = clean_db
    statuses = [{"id": wamid(), "status": status, "timestamp": str(1_790_000_000 + i), "recipient_id": PHONE}
                for i in range(20) for status in ("sent", "delivered")]
    await asyncio.gather(*(_store_as_the_webhook_does(pool, dumps(envelope(statuses=order)))
                           for order in (statuses, statuses[::-1])))
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 2
    rows = await pool.fetch("SELECT id FROM status_events")
    assert len(rows) == len(statuses)
    await sequencing.integrate(pool)
    leaves = await pool.fetch("SELECT record_id FROM ledger_leaves WHERE kind = 'status_event'")
    assert sorted(leaf["record_id"] for leaf in leaves) == sorted(str(r["id"]) for r in rows)


async def test_two_servers_storing_the_same_stop_texts_in_opposite_orders_both_commit(clean_db):
    """The same for consent evidence: STOP texts of a few people, in opposite orders, stored at once.
    Each is one consent entry with one ledger leaf, and each person one contact."""
    pool = clean_db
    people = [f"4477009002{n:02d}" for n in range(3)]
    texts = [message("text", {"body": "STOP"}, mid=wamid(), phone=people[i % 3]) for i in range(12)]
    contacts = [{"profile": {"name": f"person {n}"}, "wa_id": phone} for n, phone in enumerate(people)]
    await asyncio.gather(*(_store_as_the_webhook_does(pool, dumps(envelope(order, contacts=contacts)))
                           for order in (texts, texts[::-1])))
    entries = await pool.fetch("SELECT id, evidence_message_id, contact_id FROM consent_entries")
    assert sorted(e["evidence_message_id"] for e in entries) == sorted(t["id"] for t in texts)
    assert len({e["contact_id"] for e in entries}) == len(people)
    await sequencing.integrate(pool)
    leaves = await pool.fetch("SELECT record_id FROM ledger_leaves WHERE kind = 'consent'")
    assert sorted(leaf["record_id"] for leaf in leaves) == sorted(str(e["id"]) for e in entries)
