"""The fault harness (chaos/), short: each scenario of `make chaos` with a small load and a fault of a
few seconds, on one production-shaped stack per store backend (every part its own process), each
scenario with its own messages and the verifier's verdict scoped to them.

The workers run with short retry intervals (0.5 s, doubling, at most 2 s: five attempts span 5.5 s)
and a 2 s heartbeat timeout, so a killed worker's upload moves to the other one quickly and one
scenario can outlast the retry policy on purpose."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiobotocore.session import get_session

from chaos.load import LoadSettings
from chaos.run import run_scenario
from chaos.scenarios import SCENARIOS
from chaos.stack import BUCKET, ChaosStack
from chaos.verify import verify

pytestmark = [pytest.mark.xdist_group("chaos"), pytest.mark.slow]

SHORT_RETRIES = {"WA_ARCHIVE_RETRY_INITIAL_INTERVAL": "0.5", "WA_ARCHIVE_RETRY_BACKOFF": "2",
                 "WA_ARCHIVE_RETRY_MAX_INTERVAL": "2", "WA_ARCHIVE_MEDIA_HEARTBEAT_TIMEOUT": "2"}
FAULT_SECONDS = 3.0  # shorter than the 5.5 s the five attempts span: no critical failure is allowed
MIB = 1024 * 1024


def load(seed: int, **overrides: object) -> LoadSettings:
    # Every 4th message carries a 6 MiB file (two parts of 5 MiB) streamed at 3 MiB/s.
    settings = LoadSettings(deliveries=12, rate=4.0, large_every=4, large_bytes=6 * MIB,
                            large_bytes_per_second=3 * MIB, redelivery_deadline=90, seed=seed)
    for name, value in overrides.items():
        setattr(settings, name, value)
    return settings


@pytest_asyncio.fixture(scope="module")
async def s3_stack() -> AsyncIterator[ChaosStack]:
    stack = ChaosStack(backend="s3", env=SHORT_RETRIES)
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()
    assert stack.pids() == {}, "a process of the stack outlived stop()"


@pytest_asyncio.fixture(scope="module")
async def fs_stack() -> AsyncIterator[ChaosStack]:
    stack = ChaosStack(backend="filesystem", tmpfs_mib=128, env=SHORT_RETRIES)
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()


async def scenario(stack: ChaosStack, name: str, seed: int, seconds: float = FAULT_SECONDS,
                   **load_overrides: object) -> dict:
    result = await run_scenario(stack, SCENARIOS[name], load(seed, **load_overrides), fault_seconds=seconds,
                                seed=seed, settle_timeout=120)
    assert result["passed"], result["problems"]
    figures = result["figures"]
    assert figures["acknowledged"] == figures["sent"], "Meta's redelivery did not get every delivery a 200"
    assert figures["duplicates"] == 0
    return figures


def _all_archived_unless_the_restart_outlasted_the_retries(f: dict) -> None:
    """A killed part's down window ends when it is running again, so on a loaded machine its restart can
    stretch the window past the five attempts' 5.5 s: then, as the verifier allows, a message whose
    media was tried only meanwhile ends with its one critical failure, and nothing is lost either way."""
    if f["fault_outlasted_retries"]:
        assert f["archived"] + f["failures"] == f["sent"]
    else:
        assert f["archived"] == f["sent"] and f["failures"] == 0


async def test_postgres_killed_then_restarted_loses_nothing(s3_stack):
    f = await scenario(s3_stack, "postgres_killed", seed=1)
    assert f["refused_503"] > 0, "no delivery arrived while PostgreSQL was down"
    _all_archived_unless_the_restart_outlasted_the_retries(f)
    assert f["first_200_after_fault_s"] is not None


async def test_temporal_restarted_on_its_state_loses_nothing(s3_stack):
    f = await scenario(s3_stack, "temporal_restarted", seed=2)
    # The webhook holds a request while its Temporal client retries, or answers 503; the verifier
    # fails the run if any was answered 200 before Temporal was back.
    assert f["attempts_during_fault"] > 0, "no delivery arrived while Temporal was down"
    _all_archived_unless_the_restart_outlasted_the_retries(f)


async def test_object_store_503_is_retried(s3_stack):
    f = await scenario(s3_stack, "object_store_503", seed=3)
    assert f["archived"] == f["sent"] and f["failures"] == 0
    assert not f["notes"][0].startswith("0 "), f"no upload met the refusing store: {f['notes']}"


async def test_object_store_unreachable_is_retried(s3_stack):
    f = await scenario(s3_stack, "object_store_unreachable", seed=4)
    assert f["archived"] == f["sent"] and f["failures"] == 0


async def test_worker_killed_mid_upload_leaves_one_object_and_no_upload(s3_stack):
    f = await scenario(s3_stack, "worker_killed_mid_upload", seed=5)
    assert len(f["killed"]) == 1 and f["killed"][0].startswith("worker-")
    assert f["archived"] == f["sent"] and f["failures"] == 0
    assert set(s3_stack.pids()) >= {"worker-1", "worker-2"}, "the killed worker was not restarted"


async def test_webhook_killed_mid_request_is_redelivered(s3_stack):
    f = await scenario(s3_stack, "webhook_killed_mid_request", seed=6)
    assert f["connection_errors"] > 0, "the kill landed on no request"
    assert f["archived"] == f["sent"] and f["failures"] == 0


async def test_graph_api_errors_within_the_retry_policy(s3_stack):
    f = await scenario(s3_stack, "graph_api_errors", seed=7)
    assert f["archived"] == f["sent"] and f["failures"] == 0


async def test_graph_api_outage_outlasting_five_attempts_is_one_failure_each(s3_stack):
    # 12 s of errors against 5.5 s of retries: messages whose media was tried only during the outage
    # end with exactly one critical failure holding all five attempts (the verifier checks both).
    f = await scenario(s3_stack, "graph_api_errors", seed=8, seconds=12.0, large_every=0)
    assert f["fault_outlasted_retries"] is True
    assert f["failures"] > 0
    assert f["archived"] + f["failures"] == f["sent"]


async def test_disk_full_then_freed_loses_nothing(fs_stack):
    f = await scenario(fs_stack, "disk_full", seed=9, large_bytes=2 * MIB)
    assert f["archived"] == f["sent"] and f["failures"] == 0


async def test_the_verifier_catches_an_object_stored_twice(s3_stack):
    """The harness can fail: a second version of one archived object is named as a duplicate."""
    settings = load(10, deliveries=3, large_every=0)
    from chaos.load import Load
    from chaos.stack import APP_SECRET
    from chaos.verify import Fault

    deliveries = await Load(s3_stack.graph, s3_stack.webhook_urls, APP_SECRET, settings).run()
    clean = await verify(s3_stack, deliveries, Fault(started=0, ended=0), settle_timeout=60)
    assert clean.passed, clean.problems
    key = await s3_stack.pool.fetchval("SELECT storage_key FROM media WHERE message_id = $1",
                                       deliveries[0].message_id)
    full = f"{s3_stack.s3_prefix}/{key}"
    async with get_session().create_client("s3", endpoint_url=s3_stack.moto_url, region_name="us-east-1",
                                           aws_access_key_id="testing", aws_secret_access_key="testing") as s3:
        body = await (await s3.get_object(Bucket=BUCKET, Key=full))["Body"].read()
        await s3.put_object(Bucket=BUCKET, Key=full, Body=body)  # the same bytes: the ledger still verifies
    caught = await verify(s3_stack, deliveries, Fault(started=0, ended=0), settle_timeout=60)
    assert caught.figures["duplicates"] == 1
    assert any("2 versions, expected one" in p for p in caught.problems), caught.problems
