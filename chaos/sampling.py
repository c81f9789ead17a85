"""One soak sample of a running ChaosStack: per part, the RSS and open file descriptors of its process
and every process it started, summed (PostgreSQL: the postmaster and all its backends and background
processes); PostgreSQL's client connections; Temporal's running workflows on the stack's task queue
and the task queue's backlog."""

from __future__ import annotations

import time
from typing import Any

import psutil
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from chaos.stack import ChaosStack

MIB = 1024 * 1024


def process_group(pid: int) -> dict[str, float]:
    """RSS (MiB) and open file descriptors of a process and all its descendants, summed, with how many
    processes that is. A process that exits between listing and reading is left out."""
    rss = fds = count = 0
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
            count += 1
        except psutil.NoSuchProcess:
            continue
    return {"rss_mib": round(rss / MIB, 2), "fds": fds, "processes": count}


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
    }
