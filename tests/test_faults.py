"""Faults as tests: a worker process killed in the middle of a large upload."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid

from aiobotocore.session import get_session

from tests.conftest import ACCESS_TOKEN, CONTACT_SECRET
from wa_archive.sample_payloads import dumps, envelope, media_message, wamid
from wa_archive.fake_graph import FakeMedia


def _start_worker(stack, temporal_address: str, database_url: str, log_path) -> subprocess.Popen:
    s = stack.settings
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")},
        "WA_ARCHIVE_TEMPORAL_ADDRESS": temporal_address,
        "WA_ARCHIVE_DATABASE_URL": database_url,
        "WA_ARCHIVE_STORAGE_URL": stack.store.url,
        "WA_ARCHIVE_S3_ENDPOINT_URL": s.s3_endpoint_url,
        "WA_ARCHIVE_META_ACCESS_TOKEN": ACCESS_TOKEN,
        "WA_ARCHIVE_META_GRAPH_URL": s.meta_graph_url,
        "WA_ARCHIVE_CONTACT_KEY_SECRET": CONTACT_SECRET,
        "WA_ARCHIVE_TASK_QUEUE": s.task_queue,
        "WA_ARCHIVE_RETRY_INITIAL_INTERVAL": "0.2",
        "WA_ARCHIVE_MEDIA_HEARTBEAT_TIMEOUT": "2",
        "WA_ARCHIVE_S3_PART_SIZE_MIB": "5",
    }
    return subprocess.Popen([sys.executable, "-m", "wa_archive.cli", "worker"], env=env,
                            stdout=log_path.open("ab"), stderr=subprocess.STDOUT)


async def test_killed_worker_leaves_one_object_and_no_orphan_upload(
    stack_factory, temporal_address, database_url, tmp_path
):
    stack = await stack_factory("s3", run_worker=False, media_heartbeat_timeout=2.0)
    media = stack.graph.add(FakeMedia(f"big{uuid.uuid4().hex[:8]}", mime_type="video/mp4",
                                      size=40 * 1024 * 1024, seed=3, bytes_per_second=8 * 1024 * 1024))
    mid = wamid()
    log = tmp_path / "worker.log"
    first = _start_worker(stack, temporal_address, database_url, log)
    second = None
    try:
        status, _ = await stack.post(dumps(envelope([media_message("video", media.media_id, media.sha256_b64(),
                                                                   "video/mp4", mid=mid)])))
        assert status == 200
        store = stack.store
        async with get_session().create_client("s3", endpoint_url=stack.settings.s3_endpoint_url,
                                               region_name="us-east-1") as s3:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # wait until the upload is in flight
                uploads = (await s3.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)).get("Uploads", [])
                if uploads:
                    break
                await asyncio.sleep(0.1)
            assert uploads, "the multipart upload never started: " + log.read_text()[-2000:]
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            second = _start_worker(stack, temporal_address, database_url, log)
            msg = await stack.wait_for_message(mid, timeout=120)
            item = msg["media"][0]
            assert item["status"] == "archived" and item["sha256"] == media.declared_sha256
            assert media.downloads >= 2, "the second worker downloaded again"
            full = f"{store.prefix}/{item['storage_key']}"
            versions = await s3.list_object_versions(Bucket=store.bucket, Prefix=full)
            assert len([v for v in versions.get("Versions", []) if v["Key"] == full]) == 1
            left = (await s3.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)).get("Uploads", [])
            assert left == [], "an incomplete multipart upload was left behind"
        import hashlib
        hasher = hashlib.sha256()
        async for chunk in store.read(item["storage_key"]):
            hasher.update(chunk)
        assert hasher.hexdigest() == media.declared_sha256
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(15)
