"""The object-store contract: write-once, hash while streaming, verify before committing."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel

from wa_archive.errors import MediaHashMismatch

ProgressCallback = Callable[[int], None]


class StoredObject(BaseModel):
    """What was committed under a key (or was already there with identical bytes)."""

    key: str
    size: int
    sha256: str
    stored_at: datetime
    created: bool


class ObjectInfo(BaseModel):
    key: str
    size: int
    sha256: str | None
    metadata: dict[str, str]
    storage_class: str | None = None  # S3: None/STANDARD, or an archive tier such as GLACIER
    restored: bool = False  # S3: a restored copy of an archive-tier object is readable
    retain_until: datetime | None = None
    lock_expected: bool = False  # the store promises a retention lock on this object


class ObjectStore(Protocol):
    """Both backends promise: no partial object is ever visible, and no object is overwritten."""

    url: str

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        metadata: dict[str, str],
        expected_sha256: bytes | None,
        retain_until: datetime,
        on_progress: ProgressCallback | None = None,
    ) -> StoredObject: ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]: ...

    async def head(self, key: str) -> ObjectInfo | None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def check_digest(hasher: "hashlib._Hash", expected: bytes | None, key: str) -> str:
    """Our hex digest, after checking it against the provider's; raises on mismatch."""
    digest = hasher.digest()
    if expected is not None and digest != expected:
        raise MediaHashMismatch(
            f"SHA-256 mismatch for {key}: provider declared {expected.hex()}, received {digest.hex()}"
        )
    return digest.hex()
