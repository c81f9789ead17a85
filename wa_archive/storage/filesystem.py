"""Filesystem object store: temp file, fsync, atomic no-overwrite link, read-only.

What it promises: no partial object is visible, no object is overwritten by this code, files are
read-only. What it cannot promise: anyone with filesystem access can still delete or chmod them;
retention (the object's .meta.json) and legal hold (a .legal-hold marker file) are recorded beside
the object and enforced by our code only. `wa-archive storage check` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, BinaryIO

from wa_archive.archive.keys import safe_id
from wa_archive.archive.media_types import normalize_mime
from wa_archive.errors import StorageConflict, StorageError
from wa_archive.storage.base import ObjectInfo, ProgressCallback, StoredObject, check_digest, refuse_if_retained

READ_CHUNK = 1024 * 1024
META_SUFFIX = ".meta.json"
HOLD_SUFFIX = ".legal-hold"
# A temp file's name for the instant between its creation and its lock (_create_locked); one left by a
# writer killed in that instant is swept once older than FRESH_ABANDONED_AFTER seconds.
FRESH_SUFFIX = ".fresh"
FRESH_ABANDONED_AFTER = 3600


# What the disk, not the source, says: a write the retry may get through once the disk is fixed.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})

class FilesystemStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.url = self.root.as_uri()
        self._tmp = self.root / ".tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise StorageError(f"key escapes the store root: {key!r}")
        return path

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
        final = self._path(key)
        stem = safe_id(key)
        # A worker killed mid-write leaves its temp file behind; the retry cleans it up. A writer still
        # at work (a timed-out attempt beside its retry) holds a lock on its file and is left alone.
        await asyncio.to_thread(_remove_abandoned, self._tmp.glob(f"{stem}.*.part"))
        await asyncio.to_thread(_remove_stale_fresh, self._tmp.glob(f"{stem}.*{FRESH_SUFFIX}"))
        hasher = hashlib.sha256()
        size = 0
        created: tuple[Path, BinaryIO] | None = None
        try:
            created = await asyncio.to_thread(_create_locked, self._tmp, stem)
            tmp, fh = created
            async for chunk in chunks:
                await asyncio.to_thread(_hash_and_write, hasher, fh, chunk)
                size += len(chunk)
                if on_progress:
                    on_progress(size)
            await asyncio.to_thread(_flush_and_sync, fh)
            digest = check_digest(hasher, expected_sha256, key)
            stored_at = datetime.now(timezone.utc)
            if legal_hold:  # the hold exists before the object does: never a moment without it
                await asyncio.to_thread(self._set_hold, final, True)
            return await asyncio.to_thread(
                self._commit, tmp, final, key, digest, size, stored_at, content_type, metadata,
                retain_until,
            )
        except OSError as exc:
            if exc.errno not in DISK_ERRNOS:
                raise  # the source's (a connection reset is an OSError too): its own error
            # A full disk, a quota, a read-only or failing mount: nothing half-written stays, and the
            # retry may find the space again (never a critical failure on the first attempt).
            raise StorageError(f"cannot write {key} to the filesystem store: {exc}") from exc
        finally:
            # Removed while still locked, and only then closed: until the object is committed (or the
            # write given up) a sweep by a retry running beside this attempt leaves the file alone.
            if created is not None:
                created[0].unlink(missing_ok=True)
                created[0].with_suffix(".meta").unlink(missing_ok=True)
                created[1].close()

    def _commit(
        self, tmp: Path, final: Path, key: str, digest: str, size: int, stored_at: datetime,
        content_type: str, metadata: dict[str, str], retain_until: datetime,
    ) -> StoredObject:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o444)
        meta = {
            "sha256": digest, "size": size, "content_type": normalize_mime(content_type),
            "stored_at": stored_at.isoformat(), "retain_until": retain_until.isoformat(),
            "metadata": metadata,
        }
        # The retention metadata is in place before the object: an object never exists without it,
        # whatever fails in between (a full disk); a metadata file without its object is inert.
        self._link_meta(tmp.with_suffix(".meta"), final, meta)
        try:
            os.link(tmp, final)  # atomic, and fails instead of replacing an existing object
        except FileExistsError:
            existing = self._existing_digest(final)
            if existing != digest:
                raise StorageConflict(
                    f"{key} already holds different bytes (sha256 {existing}); not overwritten"
                ) from None
            return StoredObject(key=key, size=final.stat().st_size, sha256=digest,
                                stored_at=stored_at, created=False)
        _fsync_dir(final.parent)
        return StoredObject(key=key, size=size, sha256=digest, stored_at=stored_at, created=True)

    @staticmethod
    def _link_meta(meta_tmp: Path, final: Path, meta: dict[str, Any]) -> None:
        """Write the object's metadata file once (an earlier attempt's, for the same bytes, is kept)."""
        meta_path = final.with_name(final.name + META_SUFFIX)
        if meta_path.exists():
            if final.exists() or json.loads(meta_path.read_text()).get("sha256") == meta["sha256"]:
                return  # the object's own, or an interrupted attempt's for these very bytes
            meta_path.unlink()  # an interrupted attempt's for other bytes, whose object never landed
        meta_tmp.write_text(json.dumps(meta, sort_keys=True))
        os.chmod(meta_tmp, 0o444)
        try:
            os.link(meta_tmp, meta_path)
        except FileExistsError:
            pass
        finally:
            meta_tmp.unlink(missing_ok=True)

    def _existing_digest(self, path: Path) -> str:
        hasher = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(READ_CHUNK):
                hasher.update(block)
        return hasher.hexdigest()

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The object's bytes from `start` to `end` (inclusive; None = to the end), in chunks."""
        path = self._path(key)
        fh = await asyncio.to_thread(open, path, "rb")
        try:
            if start:
                fh.seek(start)
            remaining = None if end is None else end - start + 1
            while remaining is None or remaining > 0:
                size = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                block = await asyncio.to_thread(fh.read, size)
                if not block:
                    break
                if remaining is not None:
                    remaining -= len(block)
                yield block
        finally:
            fh.close()

    async def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        if not path.exists():
            return None
        meta_path = path.with_name(path.name + META_SUFFIX)
        meta: dict[str, Any] = {}
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
        sha = meta.get("sha256") or await asyncio.to_thread(self._existing_digest, path)
        flat = {k: str(v) for k, v in (meta.get("metadata") or {}).items()}
        retain = None
        if "retain_until" in meta:
            flat["retain-until"] = meta["retain_until"]
            retain = datetime.fromisoformat(meta["retain_until"])
        return ObjectInfo(key=key, size=path.stat().st_size, sha256=sha, metadata=flat, retain_until=retain,
                          legal_hold=self._hold_path(path).exists())

    async def request_restore(self, key: str, days: int = 2) -> None:
        """Nothing to restore: a file has no archive tier and is always readable."""

    async def presigned_url(self, key: str, expires_seconds: int = 300, *, content_type: str | None,
                            filename: str) -> str | None:
        """None: files have no URL of their own; the caller serves the bytes."""
        return None

    # Retention and legal hold (recorded beside the object, enforced by this code) ------------------

    @staticmethod
    def _hold_path(path: Path) -> Path:
        return path.with_name(path.name + HOLD_SUFFIX)

    def _set_hold(self, path: Path, on: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        marker = self._hold_path(path)
        if on:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)
        _fsync_dir(path.parent)

    async def set_legal_hold(self, key: str, on: bool) -> bool:
        await asyncio.to_thread(self._set_hold, self._path(key), on)
        return True

    def _read_meta(self, path: Path) -> dict[str, Any]:
        meta_path = path.with_name(path.name + META_SUFFIX)
        return json.loads(meta_path.read_text()) if meta_path.exists() else {}

    def _extend(self, path: Path, until: datetime) -> datetime | None:
        meta = self._read_meta(path)
        if not meta:
            return None
        current = datetime.fromisoformat(meta["retain_until"]) if "retain_until" in meta else None
        if current is not None and current >= until:
            return current
        meta["retain_until"] = until.isoformat()
        meta_path = path.with_name(path.name + META_SUFFIX)
        tmp = self._tmp / f"{uuid.uuid4().hex}.meta"
        tmp.write_text(json.dumps(meta, sort_keys=True))
        os.chmod(tmp, 0o444)
        os.replace(tmp, meta_path)  # atomic: the old or the new date, never none
        _fsync_dir(path.parent)
        return until

    async def extend_retention(self, key: str, until: datetime) -> datetime | None:
        return await asyncio.to_thread(self._extend, self._path(key), until)

    def _dispose(self, key: str, path: Path) -> int:
        if not path.exists():
            return 0
        meta = self._read_meta(path)
        retain = datetime.fromisoformat(meta["retain_until"]) if "retain_until" in meta else None
        # A file without its metadata is treated as retained: nothing proves it may go.
        refuse_if_retained(key, retain or datetime.max.replace(tzinfo=timezone.utc),
                           self._hold_path(path).exists(), datetime.now(timezone.utc))
        for victim in (path, path.with_name(path.name + META_SUFFIX)):
            victim.unlink(missing_ok=True)
        _fsync_dir(path.parent)
        return 1

    async def dispose(self, key: str) -> int:
        return await asyncio.to_thread(self._dispose, key, self._path(key))

    def _list_keys(self, prefix: str) -> list[str]:
        # Walk only the prefix's directory: the store holds every media object besides.
        top = self._path(prefix.rsplit("/", 1)[0]) if "/" in prefix else self.root
        keys = []
        for path in top.rglob("*") if top.is_dir() else []:
            key = path.relative_to(self.root).as_posix()
            if (path.is_file() and key.startswith(prefix) and ".tmp" not in path.relative_to(self.root).parts
                    and not key.endswith((META_SUFFIX, HOLD_SUFFIX))):
                keys.append(key)
        return sorted(keys)

    async def list_keys(self, prefix: str) -> list[str]:
        return await asyncio.to_thread(self._list_keys, prefix)

    async def ping(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"store root {self.root} is not writable")

    async def close(self) -> None:
        return None


def _hash_and_write(hasher: hashlib._Hash, fh: IO[bytes], chunk: bytes) -> None:
    hasher.update(chunk)
    fh.write(chunk)


def _flush_and_sync(fh: IO[bytes]) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_locked(directory: Path, stem: str) -> tuple[Path, BinaryIO]:
    """A new temp file `<stem>.<random>.part`, locked for as long as it is open (the kernel drops the
    lock if we die). Created and locked under a name the sweep of abandoned files does not match, then
    renamed (the lock is the inode's and moves with it): a sweep can never find it unlocked between
    its creation and its lock."""
    name = f"{stem}.{uuid.uuid4().hex}"
    fresh = directory / f"{name}{FRESH_SUFFIX}"
    fh = open(fresh, "xb")  # noqa: SIM115 - closed by the caller, after the object is committed
    try:
        fcntl.flock(fh, fcntl.LOCK_EX)
        path = directory / f"{name}.part"
        os.rename(fresh, path)
    except BaseException:
        fh.close()
        fresh.unlink(missing_ok=True)
        raise
    return path, fh


def _remove_stale_fresh(paths: Iterable[Path]) -> None:
    """Delete the files of writers killed between creating and locking them (an instant; see
    _create_locked), once old enough that no live writer can still be in that instant."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            if time.time() - path.stat().st_mtime > FRESH_ABANDONED_AFTER:
                path.unlink(missing_ok=True)


def _remove_abandoned(paths: Iterable[Path]) -> None:
    """Delete the temp files no live writer holds."""
    for path in paths:
        try:
            with open(path, "rb") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path.unlink(missing_ok=True)
        except BlockingIOError:
            continue  # a writer is still at it
        except FileNotFoundError:
            continue
