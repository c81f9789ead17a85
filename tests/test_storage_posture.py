"""`wa-archive storage init | check` against moto's S3 server and the filesystem, and the check the
worker runs at start: an unversioned bucket is reported and refused unless overridden."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from aiobotocore.session import get_session

from tests.conftest import ACCESS_TOKEN, CONTACT_SECRET, LEDGER_KEY, PAYLOAD_KEYS


def _env(s3_endpoint: str, storage_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
    env.update(WA_ARCHIVE_STORAGE_URL=storage_url, WA_ARCHIVE_S3_ENDPOINT_URL=s3_endpoint, **extra)
    return env


async def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "wa_archive.cli", *args], env=env,
                                   capture_output=True, text=True, timeout=120)


def _findings(result: subprocess.CompletedProcess) -> dict[str, dict]:
    return {f["setting"]: f for f in json.loads(result.stdout)["findings"]}


@pytest.mark.slow
async def test_unversioned_bucket_is_reported_refused_then_initialised(s3_endpoint, database_url, temporal_address):
    bucket = f"plain-{uuid.uuid4().hex[:8]}"
    async with get_session().create_client("s3", endpoint_url=s3_endpoint, region_name="us-east-1") as s3:
        await s3.create_bucket(Bucket=bucket)
    env = _env(s3_endpoint, f"s3://{bucket}/archive", WA_ARCHIVE_DATABASE_URL=database_url)

    before = await _cli(env, "storage", "check", "--json")
    assert before.returncode == 1, before.stderr
    found = _findings(before)
    assert not found["versioning"]["ok"] and found["versioning"]["expected"] == "Enabled"
    assert not found["object lock default retention"]["ok"] and not found["lock canary"]["ok"]
    text = await _cli(env, "storage", "check", "--no-canary")
    assert text.returncode == 1 and "WRONG versioning" in text.stdout and "should be: Enabled" in text.stdout

    worker_env = dict(env, WA_ARCHIVE_TEMPORAL_ADDRESS=temporal_address, WA_ARCHIVE_META_ACCESS_TOKEN=ACCESS_TOKEN,
                      WA_ARCHIVE_CONTACT_KEY_SECRET=CONTACT_SECRET, WA_ARCHIVE_LEDGER_SIGNING_KEY=LEDGER_KEY,
                      WA_ARCHIVE_PAYLOAD_KEYS=PAYLOAD_KEYS, WA_ARCHIVE_TASK_QUEUE=f"tq-{uuid.uuid4()}")
    refused = await _cli(worker_env, "worker")
    assert refused.returncode == 2 and "versioning" in refused.stderr and "storage init" in refused.stderr
    # Overridden, the worker runs, and says loudly what it is running on.
    proc = subprocess.Popen([sys.executable, "-m", "wa_archive.cli", "worker"], text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=dict(worker_env, WA_ARCHIVE_ALLOW_UNVERSIONED_BUCKET="true"))
    try:
        lines = await asyncio.wait_for(asyncio.to_thread(_read_until, proc, "worker_started"), 60)
    finally:
        proc.terminate()
        proc.wait(20)
    assert "UNVERSIONED_BUCKET_OVERRIDE" in lines

    init = await _cli(env, "storage", "init")
    assert init.returncode == 0, init.stderr
    assert "versioning: Enabled" in init.stdout and "COMPLIANCE, 2557 days" in init.stdout
    after = await _cli(env, "storage", "check", "--json")
    assert after.returncode == 0, after.stdout
    canary = _findings(after)["lock canary"]
    assert canary["ok"] and "delete refused" in canary["actual"] and "intact" in canary["actual"]
    recorded = await _fetch(database_url, "SELECT ok FROM storage_checks WHERE store_url = $1 ORDER BY id",
                            f"s3://{bucket}/archive")
    assert [r["ok"] for r in recorded][-2:] == [False, True]

    # The configuration round-trips through S3 itself.
    async with get_session().create_client("s3", endpoint_url=s3_endpoint, region_name="us-east-1") as s3:
        lock = (await s3.get_object_lock_configuration(Bucket=bucket))["ObjectLockConfiguration"]
        assert lock["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"
        assert lock["Rule"]["DefaultRetention"]["Days"] == 2557
        rules = {r["ID"]: r for r in (await s3.get_bucket_lifecycle_configuration(Bucket=bucket))["Rules"]}
        assert rules["wa-archive-transition"]["Transitions"] == [{"Days": 90, "StorageClass": "GLACIER_IR"}]
        assert rules["wa-archive-abort-incomplete-multipart"]["AbortIncompleteMultipartUpload"] == {
            "DaysAfterInitiation": 1}
        enc = (await s3.get_bucket_encryption(Bucket=bucket))["ServerSideEncryptionConfiguration"]
        assert enc["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        assert all((await s3.get_public_access_block(Bucket=bucket))["PublicAccessBlockConfiguration"].values())
        # Someone adds a rule that would expire current versions after 30 days.
        early = {"ID": "cleanup", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 30}}
        await s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={
            "Rules": list(rules.values()) + [early]})
    flagged = await _cli(env, "storage", "check", "--json", "--no-canary")
    assert flagged.returncode == 1
    assert _findings(flagged)["lifecycle: expiry of current versions"]["actual"] == "expires early: cleanup"
    again = await _cli(env, "storage", "init")  # idempotent; it keeps (and does not hide) other rules
    assert again.returncode == 0 and "1 other rules kept" in again.stdout
    assert (await _cli(env, "storage", "check", "--no-canary")).returncode == 1


async def test_governance_mode_and_a_new_bucket(s3_endpoint):
    bucket = f"gov-{uuid.uuid4().hex[:8]}"
    env = _env(s3_endpoint, f"s3://{bucket}", WA_ARCHIVE_S3_OBJECT_LOCK_MODE="GOVERNANCE",
               WA_ARCHIVE_S3_LIFECYCLE_TRANSITION_DAYS="30", WA_ARCHIVE_S3_LIFECYCLE_STORAGE_CLASS="STANDARD_IA")
    init = await _cli(env, "storage", "init")
    assert init.returncode == 0 and f"created bucket {bucket}" in init.stdout, init.stderr
    check = await _cli(env, "storage", "check", "--json")
    assert check.returncode == 0, check.stdout
    found = _findings(check)
    assert found["object lock default retention"]["actual"] == "Enabled, GOVERNANCE, 2557 days"
    assert found["lifecycle transition"]["actual"] == "STANDARD_IA after 30 days"
    # The same bucket checked against the default (COMPLIANCE) expectation is wrong, and says how.
    strict = await _cli(_env(s3_endpoint, f"s3://{bucket}"), "storage", "check", "--json", "--no-canary")
    assert strict.returncode == 1
    assert _findings(strict)["object lock default retention"]["expected"] == "Enabled, COMPLIANCE, 2557 days"


async def test_filesystem_states_what_it_can_and_cannot_promise(tmp_path, s3_endpoint):
    env = _env(s3_endpoint, (tmp_path / "objects").as_uri())
    init = await _cli(env, "storage", "init")
    assert init.returncode == 0 and "nothing to configure" in init.stdout
    check = await _cli(env, "storage", "check", "--json")
    assert check.returncode == 0, check.stdout
    found = _findings(check)
    assert "enforced by this application only" in found["object lock"]["note"]
    assert found["versioning"]["actual"] == "not available"
    canary = found["lock canary"]
    assert canary["ok"] and "removal refused" in canary["actual"] and "overwrite refused" in canary["actual"]
    assert "file mode 444" in canary["actual"] and "root or the owner can still delete" in canary["note"]


def _read_until(proc: subprocess.Popen, marker: str) -> str:
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            break
    return "".join(seen)


async def _fetch(database_url: str, sql: str, *args):
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()
