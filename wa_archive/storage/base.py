"""The object-store contract: write-once, hash while streaming, verify before committing."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Protocol, runtime_checkable

from pydantic import BaseModel

from wa_archive.errors import MediaHashMismatch, RetentionActive

ProgressCallback = Callable[[int], None]

# S3 storage classes whose objects must be restored before they can be read.
ARCHIVE_TIERS = ("GLACIER", "DEEP_ARCHIVE", "GLACIER_IR")


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
    legal_hold: bool = False

    @property
    def needs_restore(self) -> bool:
        """In an archive tier with no restored copy yet: unreadable until `request_restore`."""
        return self.storage_class in ARCHIVE_TIERS and not self.restored


@runtime_checkable
class ObjectStore(Protocol):
    """Both backends promise: no partial object is ever visible, and no object is overwritten.

    Every method here is implemented by both; where a backend has nothing to do (a filesystem has
    no archive tier to restore from, no presigned URLs), its answer says so rather than the method
    being absent, so callers never ask which backend they hold.
    """

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
        legal_hold: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> StoredObject: ...

    async def set_legal_hold(self, key: str, on: bool) -> bool:
        """Set or release the hold on every version of the object; False when the store cannot
        enforce holds (a bucket without Object Lock), so that only the index carries it."""

    async def extend_retention(self, key: str, until: datetime) -> datetime | None:
        """Move the object's retain-until later (never earlier); returns the date now in force."""

    async def dispose(self, key: str) -> int:
        """Remove every version of a key whose retention has lapsed and that is not on hold;
        raises RetentionActive otherwise. Returns the number of versions removed (0: already gone)."""

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]: ...

    async def head(self, key: str) -> ObjectInfo | None: ...

    async def request_restore(self, key: str, days: int = 2) -> None:
        """Ask for a readable copy of an object that `head` says needs a restore; one already
        under way is fine. Nothing to do where objects are always readable."""

    async def presigned_url(self, key: str, expires_seconds: int = 300, *, content_type: str | None,
                            filename: str) -> str | None:
        """A short-lived URL that serves the object as a download, normalised type; None when the
        store cannot hand one out, and the caller serves the bytes itself."""

    async def list_keys(self, prefix: str) -> list[str]:
        """Every object key under `prefix`, sorted (never the store's own bookkeeping files)."""

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def refuse_if_retained(key: str, retain_until: datetime | None, legal_hold: bool, now: datetime) -> None:
    """Our own guard in front of every removal: stores that do not enforce locks still refuse."""
    if legal_hold:
        raise RetentionActive(f"{key} is on legal hold; not removed")
    if retain_until is not None and retain_until > now:
        raise RetentionActive(f"{key} is retained until {retain_until}; not removed")


def check_digest(hasher: hashlib._Hash, expected: bytes | None, key: str) -> str:
    """Our hex digest, after checking it against the provider's; raises on mismatch."""
    digest = hasher.digest()
    if expected is not None and digest != expected:
        raise MediaHashMismatch(
            f"SHA-256 mismatch for {key}: provider declared {expected.hex()}, received {digest.hex()}"
        )
    return digest.hex()
