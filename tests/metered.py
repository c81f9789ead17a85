"""A stack whose worker serves its metrics port, and scraping helpers, for the metrics and alert-rule tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from tests.conftest import DATA_CONVERTER, Stack
from wa_archive.observability.server import WorkerHealthDeps, worker_metrics
from wa_archive.observability.temporal_sdk import metrics_runtime
from worker import build_worker, link_fetcher

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(stack: Stack, url: str) -> tuple[Samples, str]:
    async with stack.http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        text = await resp.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, text


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def wait_for(stack: Stack, url: str, condition, what: str, timeout: float = 60) -> Samples:
    """Scrape until `condition(samples)` holds; fail naming `what` when it never does."""
    deadline = time.monotonic() + timeout
    while True:
        samples, _ = await scrape(stack, url)
        if condition(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen on {url} within {timeout}s")
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture(name="metered")
async def metered_fixture(stack_factory, temporal_address) -> AsyncIterator[tuple[Stack, str]]:
    """A stack whose worker runs as `wa-archive worker` does with WA_ARCHIVE_METRICS_PORT set: its client
    on the metrics runtime, its health and metrics port open (an ephemeral one here)."""
    stack = await stack_factory(run_worker=False, metrics_port=0, metrics_refresh_seconds=0.3,
                                max_body_bytes=64 * 1024)
    runtime, collector = metrics_runtime()
    client = await Client.connect(temporal_address, runtime=runtime, data_converter=DATA_CONVERTER)
    links = link_fetcher(stack.settings)
    health = WorkerHealthDeps(client=client, pool=stack.pool, store=stack.store)
    try:
        async with build_worker(client, stack.settings, stack.pool, stack.store, stack.http, links), \
                worker_metrics(stack.settings, health, collector) as port:
            yield stack, f"http://127.0.0.1:{port}"
    finally:
        await links.close()


