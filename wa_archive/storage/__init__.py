"""Object-store backends, chosen by WA_ARCHIVE_STORAGE_URL (file:// or s3://)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from wa_archive.config import Settings
from wa_archive.storage.base import ObjectInfo, ObjectStore, StoredObject
from wa_archive.storage.filesystem import FilesystemStore
from wa_archive.storage.s3 import S3Store

__all__ = ["ObjectInfo", "ObjectStore", "StoredObject", "FilesystemStore", "S3Store", "open_store"]


def open_store(settings: Settings) -> ObjectStore:
    """The store named by the settings; the filesystem under the data dir by default."""
    parsed = urlparse(settings.resolved_storage_url)
    if parsed.scheme == "file":
        return FilesystemStore(Path(unquote(parsed.path)))
    return S3Store(
        parsed.netloc,
        parsed.path,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        part_size=settings.s3_part_size_mib * 1024 * 1024,
        sse=settings.s3_sse,
        kms_key_id=settings.s3_kms_key_id,
        lock_mode=settings.s3_object_lock_mode,
    )
