"""Both object stores keep their promises: write-once, verify before visible, no orphan uploads."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import pytest_asyncio
from aiobotocore.session import get_session

from chaos.s3_faults import FaultProxy
from tests.conftest import until_past, wait_until
from wa_archive.devstack.embedded import free_port
from wa_archive.errors import MediaHashMismatch, StorageConflict, StorageError
from wa_archive.storage import FilesystemStore, S3Store

RETAIN = datetime(2033, 1, 1, tzinfo=timezone.utc)


@pytest_asyncio.fixture(params=["filesystem", "s3"])
async def store(request, tmp_path, s3_endpoint, s3_bucket):
    if request.param == "s3":
        s = S3Store(s3_bucket, f"store-{uuid.uuid4().hex[:8]}", endpoint_url=s3_endpoint,
                    region="us-east-1", part_size=5 * 1024 * 1024)
    else:
        s = FilesystemStore(tmp_path / "objects")
    yield s
    await s.close()


async def _chunks(data: bytes, size: int = 1024 * 1024):
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def _put(store, key: str, data: bytes, expected: bytes | None = None, **kw):
    return await store.put_stream(key, _chunks(data), content_type="application/octet-stream",
                                  metadata={"message-id": "m1"}, expected_sha256=expected,
                                  retain_until=RETAIN, **kw)


async def _read(store, key: str) -> bytes:
    return b"".join([c async for c in store.read(key)])


@pytest.mark.parametrize("size", [0, 1000, 11 * 1024 * 1024 + 7])
async def test_round_trip_with_hash_and_metadata(store, size):
    data = os.urandom(size)
    digest = hashlib.sha256(data).digest()
    stored = await _put(store, "archive/a/b.bin", data, expected=digest)
    assert stored.created and stored.sha256 == digest.hex() and stored.size == size
    assert await _read(store, "archive/a/b.bin") == data
    info = await store.head("archive/a/b.bin")
    assert info.sha256 == digest.hex() and info.metadata["message-id"] == "m1"


async def test_hash_unknown_up_front_is_still_recorded(store):
    data = os.urandom(6 * 1024 * 1024)  # multipart on S3: the hash goes to a write-once sidecar
    await _put(store, "k/nohash.bin", data)
    assert (await store.head("k/nohash.bin")).sha256 == hashlib.sha256(data).hexdigest()


async def test_identical_bytes_succeed_and_different_bytes_never_overwrite(store):
    data = os.urandom(2000)
    await _put(store, "k/once.bin", data)
    again = await _put(store, "k/once.bin", data)
    assert again.created is False
    with pytest.raises(StorageConflict):
        await _put(store, "k/once.bin", os.urandom(2000))
    assert await _read(store, "k/once.bin") == data


@pytest.mark.parametrize("size", [3000, 12 * 1024 * 1024])
async def test_hash_mismatch_leaves_nothing_visible(store, size, s3_endpoint):
    data = os.urandom(size)
    with pytest.raises(MediaHashMismatch):
        await _put(store, "k/bad.bin", data, expected=hashlib.sha256(b"other").digest())
    assert await store.head("k/bad.bin") is None
    if isinstance(store, S3Store):
        async with get_session().create_client("s3", endpoint_url=s3_endpoint, region_name="us-east-1") as s3:
            uploads = await s3.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
            assert uploads.get("Uploads", []) == []
    else:
        assert list((store.root / ".tmp").iterdir()) == []


async def test_failing_source_aborts_the_upload(store, s3_endpoint):
    async def broken():
        yield os.urandom(6 * 1024 * 1024)
        raise ConnectionError("source went away")

    with pytest.raises(ConnectionError):
        await store.put_stream("k/broken.bin", broken(), content_type="x", metadata={},
                               expected_sha256=None, retain_until=RETAIN)
    assert await store.head("k/broken.bin") is None
    if isinstance(store, S3Store):
        async with get_session().create_client("s3", endpoint_url=s3_endpoint, region_name="us-east-1") as s3:
            uploads = await s3.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
            assert uploads.get("Uploads", []) == []


async def test_s3_objects_are_encrypted_and_locked_until_retention(s3_endpoint, s3_bucket):
    store = S3Store(s3_bucket, f"lock-{uuid.uuid4().hex[:8]}", endpoint_url=s3_endpoint,
                    region="us-east-1", part_size=5 * 1024 * 1024)
    try:
        await _put(store, "k/locked.bin", b"evidence")
        async with get_session().create_client("s3", endpoint_url=s3_endpoint, region_name="us-east-1") as s3:
            head = await s3.head_object(Bucket=s3_bucket, Key=f"{store.prefix}/k/locked.bin")
            assert head["ServerSideEncryption"] == "AES256"
            assert head["ObjectLockMode"] == "COMPLIANCE"
            assert abs(head["ObjectLockRetainUntilDate"] - RETAIN) < timedelta(seconds=1)
    finally:
        await store.close()


async def test_filesystem_objects_are_read_only(tmp_path):
    store = FilesystemStore(tmp_path / "objects")
    await _put(store, "k/ro.bin", b"evidence")
    path = store.root / "k" / "ro.bin"
    assert path.stat().st_mode & 0o222 == 0
    meta = path.with_name("ro.bin.meta.json")
    assert meta.exists() and meta.stat().st_mode & 0o222 == 0
    assert (await store.head("k/ro.bin")).metadata["retain-until"] == RETAIN.isoformat()


async def test_filesystem_rejects_keys_escaping_the_root(tmp_path):
    store = FilesystemStore(tmp_path / "objects")
    with pytest.raises(Exception, match="escapes"):
        await _put(store, "../outside.bin", b"x")


# Retention and legal hold at the store level: the store refuses, whatever asks it. ---------------


async def test_dispose_refuses_retained_and_held_objects_and_removes_lapsed_ones(store):
    from wa_archive.errors import RetentionActive

    now = datetime.now(timezone.utc)
    await store.put_stream("r/retained.bin", _chunks(b"keep"), content_type="x", metadata={}, expected_sha256=None,
                           retain_until=now + timedelta(days=1))
    with pytest.raises(RetentionActive):
        await store.dispose("r/retained.bin")
    assert await _read(store, "r/retained.bin") == b"keep"

    await store.put_stream("r/held.bin", _chunks(b"held"), content_type="x", metadata={}, expected_sha256=None,
                           retain_until=now + timedelta(seconds=1), legal_hold=True)
    assert (await store.head("r/held.bin")).legal_hold
    await until_past(now + timedelta(seconds=1))  # its retention has lapsed; the hold has not
    with pytest.raises(RetentionActive):
        await store.dispose("r/held.bin")
    assert await store.set_legal_hold("r/held.bin", False)
    assert not (await store.head("r/held.bin")).legal_hold
    assert await store.dispose("r/held.bin") >= 1
    assert await store.head("r/held.bin") is None
    assert await store.dispose("r/held.bin") == 0  # already gone: idempotent


async def test_retention_is_extended_never_shortened(store):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    first = now + timedelta(days=10)
    await store.put_stream("r/ext.bin", _chunks(b"x"), content_type="x", metadata={}, expected_sha256=None,
                           retain_until=first)
    if isinstance(store, S3Store):
        assert (await store.head("r/ext.bin")).retain_until == first
    later = now + timedelta(days=20)
    assert await store.extend_retention("r/ext.bin", later) == later
    assert await store.extend_retention("r/ext.bin", now + timedelta(days=5)) == later  # not shortened
    assert (await store.head("r/ext.bin")).retain_until == later


async def test_lapsed_lock_canaries_are_swept_and_live_ones_kept(store):
    from wa_archive.storage.posture import sweep_canaries

    now = datetime.now(timezone.utc)
    for name, until in (("lock-old", now + timedelta(seconds=1)), ("lock-live", now + timedelta(days=1))):
        await store.put_stream(f"_canary/{name}", _chunks(b"c"), content_type="x", metadata={},
                               expected_sha256=None, retain_until=until)
    await until_past(now + timedelta(seconds=1))
    assert await sweep_canaries(store) == 1
    assert await store.head("_canary/lock-old") is None and await store.head("_canary/lock-live") is not None


async def test_upload_started_by_a_cancelled_attempt_is_aborted_once_the_object_is_in_place(s3_endpoint, s3_bucket):
    """An attempt cancelled during CreateMultipartUpload (the store failing, the heartbeat timed out) never
    learns its upload's id, and the store may create it after the retry's own clean-up: found by the
    fault harness as an incomplete upload left after `object_store_503`. The retry that completes the
    object aborts it; so does one that finds the object already there."""
    store = S3Store(s3_bucket, f"store-{uuid.uuid4().hex[:8]}", endpoint_url=s3_endpoint,
                    region="us-east-1", part_size=5 * 1024 * 1024)
    data = os.urandom(6 * 1024 * 1024)
    full = f"{store.prefix}/k/late.bin"
    async with get_session().create_client("s3", endpoint_url=s3_endpoint, region_name="us-east-1") as s3:
        async def late_stray_upload():  # the cancelled attempt's create lands while this one streams
            yield data[: 3 * 1024 * 1024]
            await s3.create_multipart_upload(Bucket=store.bucket, Key=full)
            yield data[3 * 1024 * 1024:]

        try:
            await store.put_stream("k/late.bin", late_stray_upload(), content_type="x", metadata={},
                                   expected_sha256=hashlib.sha256(data).digest(), retain_until=RETAIN)
            uploads = await s3.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
            assert uploads.get("Uploads", []) == []
            await s3.create_multipart_upload(Bucket=store.bucket, Key=full)
            stored = await _put(store, "k/late.bin", data)
            assert stored.created is False
            uploads = await s3.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
            assert uploads.get("Uploads", []) == []
        finally:
            await store.close()


async def test_an_attempt_cancelled_while_creating_its_upload_aborts_the_upload_the_store_creates(s3_endpoint,
                                                                                                    s3_bucket):
    """A superseded attempt is cancelled when its next heartbeat learns so, which can fall while its
    CreateMultipartUpload is in flight: the store creates the upload anyway, possibly after the attempt
    that won has made its last sweep (the fault harness found one incomplete upload left after
    `object_store_503` this way). The cancelled attempt waits for the store's answer and aborts the upload
    it names before its cancellation completes."""
    proxy = FaultProxy(s3_endpoint, free_port())
    await proxy.start()
    proxy.create_delay = 1.0  # the request has left the client; the store answers a second later
    store = S3Store(s3_bucket, f"store-{uuid.uuid4().hex[:8]}", endpoint_url=proxy.url,
                    region="us-east-1", part_size=5 * 1024 * 1024)
    data = os.urandom(6 * 1024 * 1024)
    try:
        attempt = asyncio.create_task(_put(store, "k/cancelled.bin", data, hashlib.sha256(data).digest()))
        await wait_until(lambda: proxy.multipart_starts, "the attempt's CreateMultipartUpload in flight",
                         timeout=30, interval=0.01)
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        await wait_until(lambda: proxy.creates_answered == 1, "the store answering the create", timeout=30)
        async with get_session().create_client("s3", endpoint_url=s3_endpoint, region_name="us-east-1") as s3:
            uploads = await s3.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
        assert [u["Key"] for u in uploads.get("Uploads", [])] == []
    finally:
        await store.close()
        await proxy.stop()


async def _race(store, key: str, first: bytes, second: bytes) -> list:
    """Two writers of `key` that both look for it and find nothing, then write one after the other: a
    timed-out attempt still running beside its retry. (Ordered writes, because moto's check of
    If-None-Match is not atomic against a write at the same instant; S3's is.)"""
    looked = asyncio.Barrier(2)
    first_done = asyncio.Event()

    async def chunks(data: bytes, after: asyncio.Event | None):
        await looked.wait()
        if after is not None:
            await after.wait()
        yield data

    async def write(data: bytes, after: asyncio.Event | None):
        try:
            return await store.put_stream(key, chunks(data, after), content_type="application/octet-stream",
                                          metadata={"message-id": "m1"}, retain_until=RETAIN,
                                          expected_sha256=hashlib.sha256(data).digest())
        finally:
            if after is None:
                first_done.set()

    return await asyncio.gather(write(first, None), write(second, first_done), return_exceptions=True)


async def test_two_writers_of_identical_bytes_at_once_both_succeed_with_one_object(store):
    data = os.urandom(30_000)
    key = f"race/{uuid.uuid4().hex}.bin"
    first, second = await _race(store, key, data, data)
    assert first.created and not second.created, (first, second)
    assert first.sha256 == second.sha256 == hashlib.sha256(data).hexdigest()
    assert await _read(store, key) == data


async def test_two_writers_of_different_bytes_at_once_one_conflicts(store):
    key = f"race/{uuid.uuid4().hex}.bin"
    first, second = os.urandom(3000), os.urandom(3000)
    stored, refused = await _race(store, key, first, second)
    assert isinstance(refused, StorageConflict) and "different bytes" in str(refused), refused
    assert stored.created and await _read(store, key) == first


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (the suite runs as root, as `make test` installs as root), filled to the last
    page by a filler file the test shrinks to leave exactly the space it wants."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        filler = mount / "filler"
        with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as fh:
            while True:
                fh.write(b"\0" * 4096)
        yield mount, filler
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


async def test_a_full_disk_is_a_retryable_error_and_never_an_object_without_its_metadata(small_disk):
    mount, filler = small_disk
    store = FilesystemStore(mount / "objects")
    data = os.urandom(5 * 4096)  # fits exactly in the room left below: its metadata file does not
    os.truncate(filler, filler.stat().st_size - 5 * 4096)
    with pytest.raises(StorageError) as refused:
        await _put(store, "full/a.bin", data, hashlib.sha256(data).digest())
    assert not isinstance(refused.value, StorageConflict) and "No space" in str(refused.value)
    assert await store.head("full/a.bin") is None, "the object landed without its retention metadata"
    assert [p.name for p in (mount / "objects" / ".tmp").iterdir()] == [], "temporary files left"
    filler.unlink()  # space again: the retry stores it, with its metadata
    stored = await _put(store, "full/a.bin", data, hashlib.sha256(data).digest())
    assert stored.created and (await store.head("full/a.bin")).retain_until == RETAIN
    assert await _read(store, "full/a.bin") == data


def test_a_temp_file_is_never_swept_as_abandoned_while_its_writer_lives(tmp_path):
    """A retry sweeps temp files no live writer holds; a writer's file must be held from the moment
    its name can be seen, and until its object is committed. Thousands of creations beside a sweeper
    that never stops: not one live writer's file is taken."""
    import threading

    from wa_archive.storage import filesystem

    stop = threading.Event()

    def sweep() -> None:
        while not stop.is_set():
            filesystem._remove_abandoned(tmp_path.glob("k.*.part"))

    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    taken = 0
    try:
        for _ in range(3000):
            path, fh = filesystem._create_locked(tmp_path, "k")
            try:
                if not path.exists():
                    taken += 1
            finally:
                path.unlink(missing_ok=True)
                fh.close()
    finally:
        stop.set()
        sweeper.join()
    assert taken == 0, f"{taken} live writers' temp files were swept"
