"""S3-compatible object store (AWS S3, Ceph RGW, MinIO, GCS interop) through aiobotocore.

Small objects are buffered up to one part and written with one conditional PUT; larger ones use a
multipart upload with bounded parts. The whole-object SHA-256 is known only after the last byte,
so the multipart upload is completed only once the hash matches the provider's; otherwise it is
aborted and nothing becomes visible. Objects are written with If-None-Match: * so that an existing
object is never replaced, with server-side encryption, and with an Object Lock retain-until date
when the bucket has Object Lock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from wa_archive.archive.media_types import header_safe_filename, normalize_mime
from wa_archive.errors import RetentionActive, StorageConflict, StorageError
from wa_archive.storage.base import ObjectInfo, ProgressCallback, StoredObject, check_digest, refuse_if_retained

SIDECAR_SUFFIX = ".sha256"


class S3Store:
    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        endpoint_url: str | None,
        region: str,
        part_size: int,
        sse: str = "AES256",
        kms_key_id: str | None = None,
        lock_mode: str = "COMPLIANCE",
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.part_size = part_size
        self._endpoint_url = endpoint_url
        self._region = region
        self._sse = sse
        self._kms_key_id = kms_key_id
        self._lock_mode = lock_mode
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._object_lock: bool | None = None

    async def _s3(self) -> Any:
        if self._client is None:
            session = get_session()
            self._client = await self._stack.enter_async_context(
                session.create_client("s3", endpoint_url=self._endpoint_url, region_name=self._region)
            )
        return self._client

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    async def _bucket_has_object_lock(self) -> bool:
        if self._object_lock is None:
            s3 = await self._s3()
            try:
                conf = await s3.get_object_lock_configuration(Bucket=self.bucket)
                enabled = conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
                self._object_lock = enabled == "Enabled"
            except ClientError:
                self._object_lock = False
        return self._object_lock

    async def _write_args(self, content_type: str, metadata: dict[str, str], retain_until: datetime,
                          legal_hold: bool = False) -> dict[str, Any]:
        # Whatever the caller passes, the object carries only a normalised type: S3 answers a GET
        # with it, and a declared "text/html" must never come back from the bucket as HTML.
        args: dict[str, Any] = {"ContentType": normalize_mime(content_type), "Metadata": metadata}
        if self._sse == "aws:kms":
            args["ServerSideEncryption"] = "aws:kms"
            if self._kms_key_id:
                args["SSEKMSKeyId"] = self._kms_key_id
        elif self._sse:
            args["ServerSideEncryption"] = self._sse
        if await self._bucket_has_object_lock():
            args["ObjectLockMode"] = self._lock_mode
            args["ObjectLockRetainUntilDate"] = retain_until
            if legal_hold:
                args["ObjectLockLegalHoldStatus"] = "ON"
        return args

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        metadata: dict[str, str],
        expected_sha256: bytes | None,
        retain_until: datetime,
        legal_hold: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> StoredObject:
        full = self._full(key)
        try:
            existing = await self.head(key)
            if existing is not None:
                stored = await self._confirm_identical(key, existing, chunks, expected_sha256)
            else:
                await self._abort_stale_uploads(full)
                meta = dict(metadata)
                if expected_sha256 is not None:
                    meta["sha256"] = expected_sha256.hex()
                args = await self._write_args(content_type, meta, retain_until, legal_hold)
                stored = await self._upload(key, full, chunks, args, expected_sha256, on_progress)
            # An earlier attempt cancelled in the middle of CreateMultipartUpload (heartbeat timeout while
            # the store was failing) never learned its upload's id, and may have created it after the abort
            # above: once the object is in place, no upload under its key can be needed.
            await self._abort_stale_uploads(full)
            return stored
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"S3 error for {key}: {exc}") from exc

    async def _upload(
        self, key: str, full: str, chunks: AsyncIterator[bytes], args: dict[str, Any],
        expected: bytes | None, on_progress: ProgressCallback | None,
    ) -> StoredObject:
        s3 = await self._s3()
        hasher = hashlib.sha256()
        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        completed = False
        digest: str | None = None
        try:
            async for chunk in chunks:
                hasher.update(chunk)
                buffer += chunk
                size += len(chunk)
                if on_progress:
                    on_progress(size)
                while len(buffer) >= self.part_size:
                    if upload_id is None:
                        upload_id = await self._create_upload(full, args)
                    part = bytes(buffer[: self.part_size])
                    del buffer[: self.part_size]
                    parts.append(await self._upload_part(full, upload_id, len(parts) + 1, part))
            if upload_id is None:
                digest = check_digest(hasher, expected, key)
                args["Metadata"]["sha256"] = digest
                await s3.put_object(
                    Bucket=self.bucket, Key=full, Body=bytes(buffer), IfNoneMatch="*",
                    ChecksumAlgorithm="SHA256", ChecksumSHA256=base64.b64encode(bytes.fromhex(digest)).decode(), **args,
                )
            else:
                if buffer:
                    parts.append(await self._upload_part(full, upload_id, len(parts) + 1, bytes(buffer)))
                    buffer.clear()
                digest = check_digest(hasher, expected, key)  # before completing: nothing visible yet
                if await self.head(key) is not None:
                    # Another writer finished first. S3 would refuse our completion (If-None-Match), but
                    # not every S3-compatible store checks it on CompleteMultipartUpload: look first.
                    return await self._settle_race(key, digest, size)
                await s3.complete_multipart_upload(
                    Bucket=self.bucket, Key=full, UploadId=upload_id, IfNoneMatch="*",
                    MultipartUpload={"Parts": parts},
                )
                if expected is None:
                    # The hash was unknown when the upload began, so it could not go in the
                    # object's metadata; a write-once sidecar carries it instead.
                    await s3.put_object(
                        Bucket=self.bucket, Key=full + SIDECAR_SUFFIX, Body=digest.encode(),
                        IfNoneMatch="*", ContentType="text/plain", ChecksumAlgorithm="SHA256",
                        **{k: v for k, v in args.items() if k not in ("ContentType", "Metadata")},  # same lock and hold
                    )
            completed = True
        except ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict") and digest is not None:
                # Another writer got there first (a timed-out attempt still running beside its retry):
                # identical bytes are the same object, anything else is never overwritten.
                return await self._settle_race(key, digest, size)
            raise
        finally:
            if upload_id is not None and not completed:
                with contextlib.suppress(ClientError, BotoCoreError):
                    await s3.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
        return StoredObject(key=key, size=size, sha256=digest,
                            stored_at=datetime.now(timezone.utc), created=True)

    async def _create_upload(self, full: str, args: dict[str, Any]) -> str:
        s3 = await self._s3()
        creating = asyncio.ensure_future(
            s3.create_multipart_upload(Bucket=self.bucket, Key=full, ChecksumAlgorithm="SHA256", **args))
        try:
            created = await asyncio.shield(creating)
        except asyncio.CancelledError:
            # Cancelled with the request in flight (a superseded attempt learns it is at its next heartbeat):
            # the store creates the upload all the same, maybe after the winning attempt's last sweep, and
            # only its answer names it. Wait for that answer and abort the upload, then stop.
            with contextlib.suppress(Exception):
                upload_id = (await creating)["UploadId"]
                await s3.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            raise
        return str(created["UploadId"])

    async def _settle_race(self, key: str, digest: str, size: int) -> StoredObject:
        existing = await self.head(key)
        if existing is None or existing.sha256 is None:
            # Its hash is not readable yet (a sidecar still to come): retryable, and the retry decides.
            raise StorageError(f"{key} was written concurrently and cannot be compared yet")
        if existing.sha256 != digest:
            raise StorageConflict(f"{key} already holds different bytes (sha256 {existing.sha256}); not overwritten")
        return StoredObject(key=key, size=size, sha256=digest, stored_at=datetime.now(timezone.utc), created=False)

    async def _upload_part(self, full: str, upload_id: str, number: int, data: bytes) -> dict[str, Any]:
        s3 = await self._s3()
        # Per-part SHA-256 checksums let the store reject a part damaged in transit (and Object
        # Lock buckets require a checksum); the whole-object hash is still ours.
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
        resp = await s3.upload_part(Bucket=self.bucket, Key=full, UploadId=upload_id,
                                    PartNumber=number, Body=data, ChecksumAlgorithm="SHA256",
                                    ChecksumSHA256=checksum)
        return {"PartNumber": number, "ETag": resp["ETag"], "ChecksumSHA256": checksum}

    async def _abort_stale_uploads(self, full: str) -> None:
        """A worker killed mid-upload leaves a multipart upload behind; the retry aborts it."""
        s3 = await self._s3()
        resp = await s3.list_multipart_uploads(Bucket=self.bucket, Prefix=full)
        for upload in resp.get("Uploads", []):
            if upload["Key"] == full:
                await s3.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload["UploadId"])

    async def _confirm_identical(
        self, key: str, existing: ObjectInfo, chunks: AsyncIterator[bytes], expected: bytes | None
    ) -> StoredObject:
        """The key exists (an earlier attempt finished): accept only identical bytes."""
        hasher = hashlib.sha256()
        size = 0
        async for chunk in chunks:
            hasher.update(chunk)
            size += len(chunk)
        digest = check_digest(hasher, expected, key)
        if existing.sha256 != digest:
            raise StorageConflict(
                f"{key} already holds different bytes (sha256 {existing.sha256}); not overwritten"
            )
        return StoredObject(key=key, size=size, sha256=digest,
                            stored_at=datetime.now(timezone.utc), created=False)

    async def presigned_url(self, key: str, expires_seconds: int = 300, *, content_type: str | None,
                            filename: str) -> str:
        """A GET URL for the object, valid for at most five minutes, that S3 answers with the
        normalised type and as an attachment whatever the type: S3 cannot add nosniff or a CSP, so
        a download is what keeps a browser from rendering the bytes on the bucket's origin."""
        s3 = await self._s3()
        url: str = await s3.generate_presigned_url(
            "get_object", Params={
                "Bucket": self.bucket, "Key": self._full(key),
                "ResponseContentType": normalize_mime(content_type),
                "ResponseContentDisposition": f'attachment; filename="{header_safe_filename(filename)}"',
            },
            ExpiresIn=min(expires_seconds, 300))
        return url

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The object's bytes from `start` to `end` (inclusive; None = to the end), in chunks."""
        s3 = await self._s3()
        extra = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end}"
        resp = await s3.get_object(Bucket=self.bucket, Key=self._full(key), **extra)
        async with resp["Body"] as body:
            while chunk := await body.read(1024 * 1024):
                yield chunk

    async def head(self, key: str) -> ObjectInfo | None:
        s3 = await self._s3()
        full = self._full(key)
        try:
            resp = await s3.head_object(Bucket=self.bucket, Key=full)
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        metadata = {k.lower(): v for k, v in resp.get("Metadata", {}).items()}
        sha = metadata.get("sha256")
        if sha is None:
            with contextlib.suppress(ClientError):
                side = await s3.get_object(Bucket=self.bucket, Key=full + SIDECAR_SUFFIX)
                async with side["Body"] as body:
                    sha = (await body.read()).decode().strip()
        retain = resp.get("ObjectLockRetainUntilDate")
        if retain:
            metadata["retain-until"] = retain.isoformat()
        restore = resp.get("Restore") or ""
        return ObjectInfo(key=key, size=resp["ContentLength"], sha256=sha, metadata=metadata,
                          storage_class=resp.get("StorageClass"), retain_until=retain,
                          restored='ongoing-request="false"' in restore,
                          lock_expected=await self._bucket_has_object_lock(),
                          legal_hold=resp.get("ObjectLockLegalHoldStatus") == "ON")

    # Retention and legal hold ------------------------------------------------------------------

    async def _versions(self, key: str) -> list[dict[str, Any]]:
        """Every version and delete marker of the object and of its hash sidecar."""
        s3 = await self._s3()
        full = self._full(key)
        wanted = (full, full + SIDECAR_SUFFIX)
        found: list[dict[str, Any]] = []
        paginator = s3.get_paginator("list_object_versions")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
                if entry["Key"] in wanted:
                    found.append(entry)
        return found

    async def set_legal_hold(self, key: str, on: bool) -> bool:
        """Legal hold on every version of the object (and its sidecar); False if the bucket has no
        Object Lock, in which case only the rows carry the hold."""
        if not await self._bucket_has_object_lock():
            return False
        s3 = await self._s3()
        try:
            for entry in await self._versions(key):
                if "Size" in entry:  # a version, not a delete marker
                    await s3.put_object_legal_hold(Bucket=self.bucket, Key=entry["Key"], VersionId=entry["VersionId"],
                                                   LegalHold={"Status": "ON" if on else "OFF"})
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"S3 legal hold on {key}: {exc}") from exc
        return True

    async def extend_retention(self, key: str, until: datetime) -> datetime | None:
        if not await self._bucket_has_object_lock():
            return None
        s3 = await self._s3()
        latest = None
        try:
            for entry in await self._versions(key):
                if "Size" not in entry:
                    continue
                head = await s3.head_object(Bucket=self.bucket, Key=entry["Key"], VersionId=entry["VersionId"])
                current = head.get("ObjectLockRetainUntilDate")
                if current is None or current < until:
                    await s3.put_object_retention(
                        Bucket=self.bucket, Key=entry["Key"], VersionId=entry["VersionId"],
                        Retention={"Mode": head.get("ObjectLockMode") or self._lock_mode, "RetainUntilDate": until})
                    current = until
                latest = current if latest is None else max(latest, current)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"S3 retention on {key}: {exc}") from exc
        return latest

    async def dispose(self, key: str) -> int:
        s3 = await self._s3()
        now = datetime.now(timezone.utc)
        try:
            entries = await self._versions(key)
            for entry in entries:  # check every version before removing any
                if "Size" in entry:
                    head = await s3.head_object(Bucket=self.bucket, Key=entry["Key"], VersionId=entry["VersionId"])
                    refuse_if_retained(key, head.get("ObjectLockRetainUntilDate"),
                                       head.get("ObjectLockLegalHoldStatus") == "ON", now)
            for entry in entries:
                await s3.delete_object(Bucket=self.bucket, Key=entry["Key"], VersionId=entry["VersionId"])
        except ClientError as exc:
            if _code(exc) == "AccessDenied":
                raise RetentionActive(f"the store refused to remove {key}: {exc}") from exc
            raise StorageError(f"S3 error removing {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 error removing {key}: {exc}") from exc
        return sum(1 for e in entries if "Size" in e)

    async def request_restore(self, key: str, days: int = 2) -> None:
        """Ask for a readable copy of an archive-tier object; an ongoing restore is fine."""
        s3 = await self._s3()
        try:
            await s3.restore_object(Bucket=self.bucket, Key=self._full(key),
                                    RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": "Standard"}})
        except ClientError as exc:
            if _code(exc) != "RestoreAlreadyInProgress":
                raise

    async def list_keys(self, prefix: str) -> list[str]:
        """Current keys under `prefix` (a key whose latest version is a delete marker is not listed)."""
        s3 = await self._s3()
        base = self._full("")
        keys = []
        async for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base + prefix):
            keys += [entry["Key"][len(base):] for entry in page.get("Contents", [])
                     if not entry["Key"].endswith(SIDECAR_SUFFIX)]
        return sorted(keys)

    async def ping(self) -> None:
        s3 = await self._s3()
        try:
            await s3.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            where = (f"at {self._endpoint_url} (from WA_ARCHIVE_S3_ENDPOINT_URL)" if self._endpoint_url
                     else "on AWS (no WA_ARCHIVE_S3_ENDPOINT_URL)")
            raise StorageError(f"bucket {self.bucket} of WA_ARCHIVE_STORAGE_URL {where} is not reachable: {exc}"
                               ) from exc

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
