"""One soak sample of a running ChaosStack: per part, the RSS, PSS and open file descriptors of its
process and every process it started, summed (PostgreSQL: the postmaster and all its backends and
background processes); PostgreSQL's client connections; Temporal's running workflows on the stack's
task queue and the task queue's backlog; and, from the Temporal server's own /metrics, its Go heap in
use, its goroutines and how full its mutable-state cache is.

PSS is there because summed RSS overstates a group of processes sharing memory: each PostgreSQL
backend's RSS counts every shared buffer it has touched, so the sum climbs towards backends x
shared_buffers without any leak. PSS divides each shared page among the processes mapping it, so the
group's PSS counts it once."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import psutil
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from chaos.stack import ChaosStack

MIB = 1024 * 1024


def process_group(pid: int) -> dict[str, float | None]:
    """RSS and PSS (MiB) and open file descriptors of a process and all its descendants, summed, with
    how many processes that is. A process that exits between listing and reading is left out; PSS is
    None when a process's smaps cannot be read (another user's process, without root)."""
    rss = pss = fds = count = 0
    pss_readable = True
    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        members = []
    for proc in members:
        try:
            with proc.oneshot():
                rss += proc.memory_info().rss
                fds += proc.num_fds()
                try:
                    pss += proc.memory_full_info().pss
                except psutil.AccessDenied:
                    pss_readable = False
            count += 1
        except psutil.NoSuchProcess:
            continue
    return {"rss_mib": round(rss / MIB, 2), "pss_mib": round(pss / MIB, 2) if pss_readable else None,
            "fds": fds, "processes": count}


# The Temporal server's own gauges (Prometheus text) the soak follows, by the name it records them
# under. Every service of the dev server (frontend, history, matching, worker) runs in one process and
# reports the same Go runtime, so the largest of their values is the process's.
TEMPORAL_GAUGES = {
    "heap_inuse_mib": ("memory_heapinuse", None),
    "goroutines": ("num_goroutines", None),
    "mutable_state_cache": ("cache_usage", 'cache_type="mutablestate"'),
    "mutable_state_cache_size": ("cache_size", 'cache_type="mutablestate"'),
}


def temporal_gauges(text: str) -> dict[str, float | None]:
    """TEMPORAL_GAUGES read from a /metrics page (None for a gauge it does not show)."""
    found: dict[str, float | None] = dict.fromkeys(TEMPORAL_GAUGES)
    for line in text.splitlines():
        for name, (metric, label) in TEMPORAL_GAUGES.items():
            if line.startswith(metric + "{") and (label is None or label in line):
                value = float(line.rsplit(" ", 1)[1])
                if name == "heap_inuse_mib":
                    value = round(value / MIB, 2)
                current = found[name]
                found[name] = value if current is None else max(current, value)
    return found


async def temporal_metrics(stack: ChaosStack) -> dict[str, float | None]:
    """The Temporal server's gauges; all None when its /metrics does not answer (it is restarting)."""
    url = f"http://127.0.0.1:{stack.temporal.metrics_port}/metrics"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            async with http.get(url) as response:
                response.raise_for_status()
                return temporal_gauges(await response.text())
    except (aiohttp.ClientError, TimeoutError):
        return dict.fromkeys(TEMPORAL_GAUGES)


async def postgres_connections(stack: ChaosStack) -> int:
    """Client connections (pg_stat_activity's client backends: the workers', webhook servers' and this
    harness's pools; not PostgreSQL's own background processes)."""
    assert stack.pool is not None
    count: int = await stack.pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
    return count


async def running_workflows(stack: ChaosStack) -> int:
    assert stack.client is not None
    found = await stack.client.count_workflows(
        f"TaskQueue = '{stack.task_queue}' AND ExecutionStatus = 'Running'")
    return found.count


async def task_queue_backlog(stack: ChaosStack) -> int | None:
    """Tasks waiting for a worker on the stack's task queue (workflow and activity tasks), as the
    server estimates them; None when the server does not report it."""
    assert stack.client is not None
    total = 0
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        described = await stack.client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=stack.client.namespace, task_queue=TaskQueue(name=stack.task_queue), task_queue_type=kind,
            report_stats=True))
        if not described.HasField("stats"):
            return None
        total += described.stats.approximate_backlog_count
    return total


async def sample(stack: ChaosStack, started: float) -> dict[str, Any]:
    """One sample; `started` is the run's time.monotonic() origin."""
    return {
        "t": round(time.monotonic() - started, 1),
        "at": time.time(),
        "processes": {name: process_group(pid) for name, pid in sorted(stack.pids().items())},
        "pg_connections": await postgres_connections(stack),
        "workflows_running": await running_workflows(stack),
        "task_queue_backlog": await task_queue_backlog(stack),
        "temporal_metrics": await temporal_metrics(stack),
    }
