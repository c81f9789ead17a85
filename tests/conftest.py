"""Session-wide real services on loopback: Temporal dev server, PostgreSQL, moto S3, fake Graph API."""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web
from pydantic import SecretStr
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from wa_archive.config import Settings
from wa_archive.db import create_pool, migrate, queries
from wa_archive.devstack.embedded import (
    APP_ROLE,
    SQLITE_PRAGMAS,
    EmbeddedPostgres,
    ensure_database,
    ensure_roles,
    free_port,
    temporal_binary,
)
from wa_archive.integrity import sequencing
from wa_archive.names import SEARCH_ATTRIBUTES
from wa_archive.sources.meta.fake_graph import FakeGraph
from wa_archive.sources.signature import meta_signature
from wa_archive.storage import FilesystemStore, ObjectStore, S3Store
from wa_archive.temporal.client import data_converter
from webhook.app import WebhookDeps, create_app
from worker import build_worker, link_fetcher

APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
ACCESS_TOKEN = "test-access-token"
CONTACT_SECRET = "test-contact-secret"
LEDGER_KEY = "bGVkZ2VyLWtleS1mb3ItdGhlLXRlc3Qtc3VpdGUtMzI="  # base64 of 32 fixed bytes
BUCKET = "wa-archive-test"
# The payload codec's key for the whole suite: 32 fixed bytes, so a history recorded in one run decodes in the next.
PAYLOAD_KEYS = "ktest:cGF5bG9hZC1rZXktZm9yLXRoZS10ZXN0LXN1aXRlLTA="

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# The suite reaches only its own Temporal: client settings of the machine running it are dropped.
for _name in [n for n in os.environ if n.startswith(("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY",
                                                     "TEMPORAL_TLS", "TEMPORAL_PROFILE", "TEMPORAL_CONFIG_FILE",
                                                     "TEMPORAL_GRPC_META_", "TEMPORAL_CODEC_"))]:
    del os.environ[_name]


async def wait_until(check: Any, what: str, *, timeout: float = 60, interval: float = 0.1) -> Any:
    """Poll `check()` (plain or async) until it returns something truthy and return that; fail naming
    `what` when it never does. How the suite waits for a state: never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout}s")
        await asyncio.sleep(interval)


async def until_past(instant: datetime) -> None:
    """Wait until the wall clock (which the object store's locks and the database follow) is past `instant`."""
    await wait_until(lambda: datetime.now(timezone.utc) > instant + timedelta(milliseconds=100),
                     f"the clock passing {instant.isoformat()}", timeout=120, interval=0.05)


async def workflow_closed(client: Client, workflow_id: str, timeout: float = 60) -> WorkflowExecutionStatus:
    """The status of `workflow_id`'s latest run once it is no longer running."""
    async def status() -> WorkflowExecutionStatus | None:
        current = (await client.get_workflow_handle(workflow_id).describe()).status
        return None if current == WorkflowExecutionStatus.RUNNING else current

    closed: WorkflowExecutionStatus = await wait_until(status, f"{workflow_id} closed", timeout=timeout)
    return closed


@pytest.hookimpl(trylast=True)  # after pytest-xdist has named each grouped test's group in its id
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first (a stable sort keeps each file's order): the parallel suite's processes then finish
    together instead of waiting on one long test handed out last. Under `--dist loadgroup`, a group
    whose tests do not carry its name would be spread over every process (each building the group's
    stacks at once): that stops the run instead."""
    if getattr(config.option, "loadgroup", False):  # set in each pytest-xdist process
        ungrouped = [item.nodeid for item in items
                     if item.get_closest_marker("xdist_group") and not item.nodeid.endswith(
                         "@" + str(item.get_closest_marker("xdist_group").args[0]))]  # type: ignore[union-attr]
        if ungrouped:
            raise pytest.UsageError(f"pytest-xdist could not group {len(ungrouped)} tests (e.g. {ungrouped[0]}):"
                                    " this pytest and pytest-xdist do not work together; see pyproject.toml")
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def tmp_root() -> Path:
    path = Path(tempfile.mkdtemp(prefix="wa-archive-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    extra = ["--dynamic-config-value", "system.forceSearchAttributesCacheRefreshOnRead=true"]
    for pragma in SQLITE_PRAGMAS:
        extra += ["--sqlite-pragma", pragma]
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=DATA_CONVERTER,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=extra,
        dev_server_log_level="never",
    ) as env:
        yield env


@pytest.fixture(scope="session")
def temporal_address(temporal_env: WorkflowEnvironment) -> str:
    return temporal_env.client.service_client.config.target_host


@pytest.fixture(scope="session")
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@dataclass(frozen=True)
class DatabaseUrls:
    """The test database as each of its three users: the superuser, the schema owner, the application."""

    admin: str
    owner: str
    app: str


@pytest.fixture(scope="session")
def database_urls(tmp_root: Path) -> DatabaseUrls:
    pg = EmbeddedPostgres(tmp_root / "pg")
    admin = pg.start()
    urls = asyncio.run(_prepare_db(admin))
    yield urls
    pg.stop()


async def _prepare_db(admin: str) -> DatabaseUrls:
    await ensure_database(admin, "wa_test")
    owner, app = await ensure_roles(admin, "wa_test", owner_password="owner-pw", app_password="app-pw")
    await migrate(owner, app_role=APP_ROLE)
    return DatabaseUrls(admin=admin.replace("/postgres?", "/wa_test?", 1), owner=owner, app=app)


@asynccontextmanager
async def scratch_database(urls: DatabaseUrls, prefix: str) -> AsyncIterator[tuple[str, str]]:
    """A database of its own beside the test database, with the owner and application roles and no
    migration applied (the test migrates it as far as it needs): (owner URL, application URL). Dropped
    at the end, connections and all."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = urls.admin.replace("/wa_test?", "/postgres?", 1)
    await ensure_database(admin, name)
    try:
        yield await ensure_roles(admin, name, owner_password="owner-pw", app_password="app-pw")
    finally:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def database_url(database_urls: DatabaseUrls) -> str:
    """The application role's URL: what the worker, the webhook server and the CLI connect with."""
    return database_urls.app


@pytest_asyncio.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The application role's pool, so the whole suite proves its grants suffice."""
    p = await create_pool(database_url, max_size=20)
    yield p
    await p.close()


@pytest_asyncio.fixture(scope="session")
async def owner_pool(database_urls: DatabaseUrls) -> AsyncIterator[asyncpg.Pool]:
    """The schema owner: an insider with the migration credentials (triggers still apply)."""
    p = await create_pool(database_urls.owner, max_size=2)
    yield p
    await p.close()


@pytest_asyncio.fixture(scope="session")
async def admin_pool(database_urls: DatabaseUrls) -> AsyncIterator[asyncpg.Pool]:
    """The database superuser: resets state between tests and plays the insider who switches triggers off."""
    p = await create_pool(database_urls.admin, max_size=2)
    yield p
    await p.close()


@pytest_asyncio.fixture
async def clean_db(pool: asyncpg.Pool, admin_pool: asyncpg.Pool) -> asyncpg.Pool:
    # Evidence tables refuse TRUNCATE by trigger, even to their owner; a superuser in replica mode
    # (which fires no ordinary triggers) is the only way to empty them, as it should be.
    # The stacks a module shares keep their timers running between tests (gauges, re-drive, the ledger
    # integrator), in this very process. One of them may hold a transaction open while it awaits
    # something that queues behind this TRUNCATE: a deadlock that crosses the client, which PostgreSQL
    # cannot see. So TRUNCATE waits only briefly; when it cannot have its locks, the application
    # backends waiting on their client inside a transaction are ended (their tasks retry) and named, and it tries again.
    for attempt in range(20):
        try:
            await _truncate_everything(admin_pool)
            break
        except asyncpg.LockNotAvailableError:
            if attempt == 19:
                raise
            stuck = await admin_pool.fetch(
                "SELECT pid, usename, state, wait_event, left(query, 200) AS query,"
                " pg_terminate_backend(pid) AS ended FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND (state LIKE 'idle in transaction%' OR wait_event_type = 'Client')"
                " AND xact_start IS NOT NULL AND state_change < now() - interval '1 second'")
            for backend in stuck:
                warnings.warn(f"ended a backend waiting on its client inside a transaction that kept the tables locked: {dict(backend)}",
                              stacklevel=1)
    return pool


async def _truncate_everything(admin_pool: asyncpg.Pool) -> None:
    async with admin_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("SET LOCAL lock_timeout = '3s'")
        await conn.execute(
            "TRUNCATE media, messages, message_deliveries, status_events, webhook_events,"
            " archive_attempts, archive_failures, deliveries, template_events, template_snapshots,"
            " outbound_sends, api_tokens, ledger_leaves, ledger_checkpoints, retrieval_reports, dispositions,"
            " erasure_requests, legal_holds, retention_policies, storage_checks, reconciliation_reports,"
            " capture_silences, capture_numbers,"
            " contacts, contact_links, contact_sightings, consent_entries, message_consent CASCADE"
        )
        await conn.execute("TRUNCATE delivery_handoffs, redrive_runs")
        await conn.execute("TRUNCATE ledger_candidates")
        await conn.execute("TRUNCATE ledger_tiles")  # derived from the leaves just emptied
        await conn.execute("UPDATE ledger_head SET size = 0")


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    yield endpoint
    server.stop()


@pytest_asyncio.fixture(scope="session")
async def s3_bucket(s3_endpoint: str) -> str:
    from aiobotocore.session import get_session

    async with get_session().create_client("s3", endpoint_url=s3_endpoint, region_name="us-east-1") as s3:
        await s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
        await s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return BUCKET


@pytest_asyncio.fixture(scope="session")
async def fake_graph() -> AsyncIterator[FakeGraph]:
    graph = FakeGraph(ACCESS_TOKEN)
    runner = await graph.start()
    yield graph
    await runner.cleanup()


def make_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = dict(
        meta_app_secret=SecretStr(APP_SECRET), meta_verify_token=SecretStr(VERIFY_TOKEN),
        meta_access_token=SecretStr(ACCESS_TOKEN), contact_key_secret=SecretStr(CONTACT_SECRET),
        ledger_signing_key=SecretStr(LEDGER_KEY), payload_keys=SecretStr(PAYLOAD_KEYS),
        retry_initial_interval=0.2, retry_backoff=1.5, retry_max_interval=1.0,
        media_heartbeat_timeout=5.0, task_queue=f"tq-{uuid.uuid4()}", s3_part_size_mib=5,
        media_fetch_allowlist="127.0.0.1",  # the fake media host; the refusal tests clear it
    )
    base.update(overrides)
    return Settings(_env_file=None, **base)


# The suite's converter, built where the archive builds its own: encrypting, with the fixed test key.
DATA_CONVERTER = data_converter(make_settings())


async def wait_for_archived(pool: asyncpg.Pool, message_id: str, timeout: float = 60) -> dict:
    """The message's record (`show --json`) once it is written; fails naming it when it never is."""
    record: dict = await wait_until(lambda: queries.get_message(pool, message_id), f"{message_id} archived",
                                    timeout=timeout)
    return record


@dataclass
class Stack:
    """A worker and a webhook server wired to the session services, for one test."""

    settings: Settings
    client: Client
    pool: asyncpg.Pool
    store: ObjectStore
    url: str
    http: aiohttp.ClientSession
    graph: FakeGraph
    owner_pool: asyncpg.Pool  # the schema owner, for tests that play an insider
    admin_pool: asyncpg.Pool  # the superuser, for insiders who switch triggers off

    async def post(self, body: bytes, *, signature: str | None = "valid", headers: dict | None = None):
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if signature == "valid":
            hdrs["X-Hub-Signature-256"] = meta_signature(APP_SECRET, body)
        elif signature is not None:
            hdrs["X-Hub-Signature-256"] = signature
        async with self.http.post(f"{self.url}/webhooks/meta", data=body, headers=hdrs) as resp:
            return resp.status, await resp.json(content_type=None)

    async def wait_for_message(self, message_id: str, timeout: float = 60) -> dict:
        """The message's record once written, with its ledger leaf numbered: the stack runs no integrator
        Schedule, so this does what it does within WA_ARCHIVE_LEDGER_INTEGRATE_EVERY in a deployment."""
        record = await wait_for_archived(self.pool, message_id, timeout)
        await sequencing.integrate(self.pool)
        return record

    async def wait_for_failure(self, message_id: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for f in await queries.list_failures(self.pool):
                if f["message_id"] == message_id:
                    return f
            await asyncio.sleep(0.1)
        raise AssertionError(f"no critical failure for {message_id} within {timeout}s")

    async def token(self, role: str = "sender", name: str | None = None) -> str:
        from wa_archive.access.tokens import create_token

        return await create_token(self.pool, name or f"{role}-{uuid.uuid4().hex[:6]}", role)

    async def read_object(self, key: str) -> bytes:
        return b"".join([chunk async for chunk in self.store.read(key)])

    async def stored_objects(self) -> list[str]:
        """Every media object (all versions, on S3) in this test's store."""
        if isinstance(self.store, S3Store):
            from aiobotocore.session import get_session

            async with get_session().create_client("s3", endpoint_url=self.settings.s3_endpoint_url,
                                                   region_name="us-east-1") as s3:
                resp = await s3.list_object_versions(Bucket=self.store.bucket, Prefix=self.store.prefix + "/")
                return [v["Key"] for v in resp.get("Versions", [])]
        root = self.store.root
        return [str(p.relative_to(root)) for p in root.rglob("*")
                if p.is_file() and ".tmp" not in p.parts and not p.name.endswith(".meta.json")]


@pytest.fixture(params=["filesystem", "s3"])
def storage_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest_asyncio.fixture
async def stack_factory(client, clean_db, owner_pool, admin_pool, fake_graph, tmp_root, s3_endpoint, s3_bucket,
                        database_url):
    """Build stacks (worker + webhook) with chosen settings; everything is torn down after the test."""
    # Released in the reverse of the order taken: within a stack the worker first and the store last, stacks
    # newest first; a stack whose build failed halfway releases what it had taken.
    teardown = AsyncExitStack()

    async def build(backend: str = "filesystem", run_worker: bool = True, **overrides: Any) -> Stack:
        run_id = uuid.uuid4().hex[:8]
        if backend == "s3":
            store: ObjectStore = S3Store(s3_bucket, f"t-{run_id}", endpoint_url=s3_endpoint,
                                         region="us-east-1", part_size=5 * 1024 * 1024)
            storage_url = store.url
        else:
            store = FilesystemStore(tmp_root / f"objects-{run_id}")
            storage_url = store.url
        teardown.push_async_callback(store.close)
        overrides.setdefault("meta_graph_url", fake_graph.graph_url)
        overrides.setdefault("database_url", database_url)  # as deployed: the token memory listens on it
        settings = make_settings(storage_url=storage_url, s3_endpoint_url=s3_endpoint, **overrides)
        http = aiohttp.ClientSession()
        teardown.push_async_callback(http.close)
        app = create_app(WebhookDeps(settings=settings, client=client, pool=clean_db, store=store))
        runner = web.AppRunner(app)
        await runner.setup()
        teardown.push_async_callback(runner.cleanup)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        links = link_fetcher(settings)
        teardown.push_async_callback(links.close)
        if run_worker:
            await teardown.enter_async_context(build_worker(client, settings, clean_db, store, http, links))
        return Stack(settings=settings, client=client, pool=clean_db, store=store,
                     url=f"http://127.0.0.1:{port}", http=http, graph=fake_graph, owner_pool=owner_pool,
                     admin_pool=admin_pool)

    async with teardown:
        yield build


@pytest_asyncio.fixture
async def stack(stack_factory) -> Stack:
    return await stack_factory()


@dataclass
class OwnTemporal:
    """A webhook server on a Temporal dev server of its own, which a test may stop and start again."""

    server: Any  # TemporalDevServer: stop() makes it unreachable, start() brings it back on the same port and file
    client: Client
    url: str
    http: aiohttp.ClientSession

    async def post_meta(self, body: bytes) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(APP_SECRET, body)}
        async with self.http.post(f"{self.url}/webhooks/meta", data=body, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)


@asynccontextmanager
async def webhook_on_own_temporal(pool: asyncpg.Pool, settings: Settings, store: ObjectStore,
                                  workdir: Path) -> AsyncIterator[OwnTemporal]:
    """The session's Temporal is shared by every test, so an outage gets a dev server of its own; the
    webhook server's client stays connected across stop() and start(), as a deployed one would."""
    from wa_archive.devstack.embedded import TemporalDevServer

    server = TemporalDevServer(workdir / "temporal", port=free_port(), ui_port=None)
    runner = None
    try:
        await server.start()
        client = await Client.connect(server.address, data_converter=DATA_CONVERTER)
        runner = web.AppRunner(create_app(WebhookDeps(settings=settings, client=client, pool=pool, store=store)))
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        async with aiohttp.ClientSession() as http:
            yield OwnTemporal(server=server, client=client, url=f"http://127.0.0.1:{port}", http=http)
    finally:
        if runner is not None:
            await runner.cleanup()
        server.stop()
