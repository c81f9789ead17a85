"""`storage init` and `storage check` on a store that, like MinIO, has no public access block and no
storage tiers: moto's S3 behind a real HTTP proxy that answers what MinIO answers (501 NotImplemented
to `?publicAccessBlock`, 400 InvalidStorageClass to a lifecycle transition) and forwards the rest."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiobotocore.session import get_session
from aiohttp import web
from botocore.exceptions import ClientError

from tests.conftest import make_settings
from tests.test_storage_posture import _cli, _env, _fetch, _findings
from wa_archive.devstack.embedded import free_port
from wa_archive.storage import open_store
from wa_archive.storage.posture import startup_check

# Hop-by-hop and length headers: aiohttp sets them again for what it actually sends.
NOT_FORWARDED = {"host", "content-length", "transfer-encoding", "connection"}
NOT_RETURNED = {"content-length", "transfer-encoding", "connection", "content-encoding"}


def _error(status: int, code: str, message: str, resource: str) -> web.Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<Resource>{resource}</Resource><RequestId>{uuid.uuid4().hex.upper()}</RequestId></Error>")
    return web.Response(status=status, body=body.encode(), content_type="application/xml")


@pytest_asyncio.fixture
async def minio_like(s3_endpoint: str) -> AsyncIterator[str]:
    """The endpoint of the proxy in front of moto."""
    upstream = aiohttp.ClientSession(auto_decompress=False)

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if "publicAccessBlock" in request.query:
            return _error(501, "NotImplemented",
                          "A header you provided implies functionality that is not implemented", request.path)
        if request.method == "PUT" and "lifecycle" in request.query and b"<Transition>" in body:
            return _error(400, "InvalidStorageClass", "Invalid storage class.", request.path)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}
        # The signature covers the Host the client addressed: moto is given the same one.
        headers["Host"] = request.host
        async with upstream.request(request.method, s3_endpoint + request.path_qs, headers=headers,
                                    data=body, allow_redirects=False) as reply:
            content = await reply.read()
            returned = {k: v for k, v in reply.headers.items() if k.lower() not in NOT_RETURNED}
            if request.method == "HEAD":  # no body, but the length of the one a GET would give
                return web.Response(status=reply.status, headers={
                    **returned, "Content-Length": reply.headers.get("Content-Length", "0")})
            return web.Response(status=reply.status, body=content, headers=returned)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await upstream.close()


@pytest.mark.slow
async def test_init_and_check_on_a_store_without_public_access_block_or_tiers(minio_like, s3_endpoint, pool,
                                                                              database_url):
    bucket = f"minio-{uuid.uuid4().hex[:8]}"
    url = f"s3://{bucket}/prod"
    default = _env(minio_like, url)

    # The default transition is refused by the store; init stops and names the setting to change.
    refused = await _cli(default, "storage", "init")
    assert refused.returncode == 2, refused.stderr
    assert "InvalidStorageClass" in refused.stderr and "WA_ARCHIVE_S3_LIFECYCLE_STORAGE_CLASS" in refused.stderr
    assert "'GLACIER_IR'" in refused.stderr and "none" in refused.stderr

    env = _env(minio_like, url, WA_ARCHIVE_S3_LIFECYCLE_STORAGE_CLASS="none", WA_ARCHIVE_DATABASE_URL=database_url)
    init = await _cli(env, "storage", "init", "--json")
    assert init.returncode == 0, init.stderr
    configured = json.loads(init.stdout)["configured"]
    assert any(line.startswith("public access block: not supported by this store (NotImplemented)")
               for line in configured), configured
    assert not any(line == "public access: blocked" for line in configured)
    assert any(line.startswith("lifecycle: no transition (WA_ARCHIVE_S3_LIFECYCLE_STORAGE_CLASS=none)")
               for line in configured), configured

    check = await _cli(env, "storage", "check", "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    found = _findings(check)
    access = found["public access block"]
    assert access["ok"] and access["actual"] == "not supported by this store; no bucket policy (private)"
    assert "without a bucket policy nothing grants public access" in access["note"]
    transition = found["lifecycle transition"]
    assert transition["ok"] and transition["actual"] == transition["expected"] == "none"
    assert found["lock canary"]["ok"] and found["versioning"]["ok"]

    # What the proxy let through reached the store; what it refused was never set behind its back.
    async with get_session().create_client("s3", endpoint_url=s3_endpoint, region_name="us-east-1") as s3:
        rules = (await s3.get_bucket_lifecycle_configuration(Bucket=bucket))["Rules"]
        assert [r["ID"] for r in rules] == ["wa-archive-abort-incomplete-multipart"]
        with pytest.raises(ClientError) as never_set:
            await s3.get_public_access_block(Bucket=bucket)
        assert never_set.value.response["Error"]["Code"] == "NoSuchPublicAccessBlockConfiguration"

    # A worker's start-up check on the same store passes and is recorded.
    settings = make_settings(storage_url=url, s3_endpoint_url=minio_like, s3_lifecycle_storage_class="none")
    store = open_store(settings)
    try:
        findings = await startup_check(store, settings, pool, "worker:test")
        assert all(f.ok for f in findings), [f for f in findings if not f.ok]

        # Someone sets a bucket policy: the store cannot block what it grants, so the check says so.
        policy = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]}
        async with get_session().create_client("s3", endpoint_url=minio_like, region_name="us-east-1") as s3:
            await s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
        red = await _cli(env, "storage", "check", "--json", "--no-canary")
        assert red.returncode == 1, red.stdout + red.stderr
        access = _findings(red)["public access block"]
        assert not access["ok"]
        assert access["actual"] == "a bucket policy is set and this store cannot block public access: review it"
        text = await _cli(env, "storage", "check", "--no-canary")
        assert "WRONG public access block" in text.stdout and "a bucket policy is set" in text.stdout

        # The worker still starts (a policy is for a person to review), and the wrong finding is recorded.
        findings = await startup_check(store, settings, pool, "worker:test")
        assert [f.setting for f in findings if not f.ok] == ["public access block"]
    finally:
        await store.close()
    recorded = await _fetch(database_url, "SELECT ok, checked_by FROM storage_checks WHERE store_url = $1 ORDER BY id",
                            store.url)
    assert [(r["ok"], r["checked_by"]) for r in recorded if r["checked_by"] == "worker:test"] == [
        (True, "worker:test"), (False, "worker:test")]


async def test_lifecycle_none_removes_an_earlier_transition_and_expects_none(s3_endpoint):
    bucket = f"tiers-{uuid.uuid4().hex[:8]}"
    url = f"s3://{bucket}"
    tiered = _env(s3_endpoint, url)
    assert (await _cli(tiered, "storage", "init")).returncode == 0
    keep = {"ID": "keep-logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"},
            "NoncurrentVersionExpiration": {"NoncurrentDays": 9000}}
    async with get_session().create_client("s3", endpoint_url=s3_endpoint, region_name="us-east-1") as s3:
        rules = (await s3.get_bucket_lifecycle_configuration(Bucket=bucket))["Rules"]
        await s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules + [keep]})

    untiered = _env(s3_endpoint, url, WA_ARCHIVE_S3_LIFECYCLE_STORAGE_CLASS="none")
    # Expecting no transition, the check names the one still there.
    stale = await _cli(untiered, "storage", "check", "--json", "--no-canary")
    assert stale.returncode == 1
    transition = _findings(stale)["lifecycle transition"]
    assert not transition["ok"] and transition["expected"] == "none"
    assert transition["actual"] == "GLACIER_IR after 90 days"

    init = await _cli(untiered, "storage", "init")
    assert init.returncode == 0, init.stderr
    assert "no transition" in init.stdout and "1 other rules kept" in init.stdout
    assert "public access: blocked" in init.stdout  # a store that has the block still gets it
    async with get_session().create_client("s3", endpoint_url=s3_endpoint, region_name="us-east-1") as s3:
        rules = (await s3.get_bucket_lifecycle_configuration(Bucket=bucket))["Rules"]
    assert sorted(r["ID"] for r in rules) == ["keep-logs", "wa-archive-abort-incomplete-multipart"]
    check = await _cli(untiered, "storage", "check", "--json")
    assert check.returncode == 0, check.stdout
    found = _findings(check)
    assert found["lifecycle transition"]["actual"] == "none" and found["lifecycle transition"]["ok"]
    assert found["public access block"]["actual"] == "all blocked"
    # The tiered expectation, on the same bucket, now misses its transition.
    missing = _findings(await _cli(tiered, "storage", "check", "--json", "--no-canary"))["lifecycle transition"]
    assert not missing["ok"] and missing["actual"] == "none" and missing["expected"] == "GLACIER_IR after 90 days"
