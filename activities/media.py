"""Media activities: stream one item into the object store, hashing as it goes.

archive_media fetches through the Graph API (media id); archive_link_media fetches a sender's
public link through the SSRF-guarded fetcher; archive_encrypted_media fetches WhatsApp's encrypted
file (WASenderApi) and decrypts it while streaming, or asks WASender to decrypt it when configured.
"""

import base64
from collections.abc import AsyncIterator

import asyncpg
import structlog
from temporalio import activity

from activities.attempts import record_attempts
from wa_archive.sources.meta.graph import GraphClient
from wa_archive.errors import LinkRefused, MediaHashMismatch
from wa_archive.archive.hashing import decode_sha256
from wa_archive.archive.keys import media_object_key
from wa_archive.sources.links import LinkFetcher
from wa_archive.archive.media_types import normalize_mime
from wa_archive.models import ArchiveMediaInput, MediaRecord
from wa_archive.names import ARCHIVE_ENCRYPTED_MEDIA, ARCHIVE_LINK_MEDIA, ARCHIVE_MEDIA
from wa_archive.retention.policies import RetentionRules
from wa_archive.storage import ObjectStore
from wa_archive.sources.wasender.media import MAC_LENGTH, decrypt_stream
from wa_archive.sources.wasender.decrypt_api import WasenderClient

log = structlog.get_logger("wa_archive.media")


class MediaActivities:
    def __init__(self, graph: GraphClient, store: ObjectStore, pool: asyncpg.Pool, rules: RetentionRules,
                 links: LinkFetcher, *, media_host: str = "https://mmg.whatsapp.net",
                 wasender: WasenderClient | None = None) -> None:
        self.graph = graph
        self.media_host = media_host.rstrip("/")
        self.wasender = wasender
        self.store = store
        self.pool = pool
        self.links = links
        self.rules = rules

    @activity.defn(name=ARCHIVE_MEDIA)
    @record_attempts("archive_media", lambda inp: (inp.message_id, inp.media.media_id))
    async def archive_media(self, inp: ArchiveMediaInput) -> MediaRecord:
        """Resolve the media URL and stream the bytes into the store in the same attempt.

        The URL lives minutes, so every attempt asks for a fresh one. The SHA-256 is computed while
        streaming and checked against the provider's before the object becomes visible.
        """
        info = await self.graph.media_info(inp.media.media_id)
        async with self.graph.download(info.url) as chunks:
            return await self._store(inp, chunks, inp.media.mime_type or info.mime_type,
                                     inp.media.provider_sha256 or info.sha256)

    @activity.defn(name=ARCHIVE_LINK_MEDIA)
    @record_attempts("archive_media", lambda inp: (inp.message_id, inp.media.media_id))
    async def archive_link_media(self, inp: ArchiveMediaInput) -> MediaRecord:
        """Fetch a sender's public media link (checked against internal addresses) into the store."""
        async with self.links.download(inp.media.link or "") as (chunks, content_type):
            return await self._store(inp, chunks, inp.media.mime_type or content_type, inp.media.provider_sha256)

    @activity.defn(name=ARCHIVE_ENCRYPTED_MEDIA)
    @record_attempts("archive_media", lambda inp: (inp.message_id, inp.media.media_id))
    async def archive_encrypted_media(self, inp: ArchiveMediaInput) -> MediaRecord:
        """Download the encrypted file (fileEncSha256 and MAC checked at its end), decrypt while
        streaming, and store the plaintext checked against fileSha256 and fileLength; nothing is
        committed unless all agree. With WASender's decrypt-media, the same plaintext checks apply."""
        media, enc = inp.media, inp.media.encrypted
        assert enc is not None
        if self.wasender is not None:
            url = await self.wasender.decrypted_media_url(inp.message_id, media.mime_type, media.provider_sha256,
                                                          media.filename, enc)
            async with self.links.download(url, max_bytes=enc.file_length) as (chunks, _):
                return await self._store(inp, _counted(chunks, enc.file_length), media.mime_type,
                                         media.provider_sha256)
        url = enc.url if enc.url and enc.url.startswith(("http://", "https://")) else (
            direct_path_url(self.media_host, enc.direct_path) if enc.direct_path else "")
        # The encrypted file is the plaintext padded to whole AES blocks plus the 10-byte MAC: when the
        # length is declared, nothing longer is read (WhatsApp documents may exceed the link limit).
        bound = enc.file_length + 16 + MAC_LENGTH if enc.file_length is not None else None
        async with self.links.download(url, max_bytes=bound) as (chunks, _):
            plain = decrypt_stream(chunks, media_key=base64.b64decode(enc.media_key), kind=media.kind,
                                   file_enc_sha256=decode_sha256(enc.file_enc_sha256), file_length=enc.file_length)
            # Stickers' declared fileSha256 is reported not to match their bytes (the reason is not
            # known); the MAC has proved the download, so a difference is kept for auditors, not refused.
            return await self._store(inp, plain, media.mime_type, media.provider_sha256,
                                     enforce_declared=media.kind != "sticker")

    async def _store(self, inp: ArchiveMediaInput, chunks: AsyncIterator[bytes], declared_mime: str | None,
                     declared_sha256: str | None, *, enforce_declared: bool = True) -> MediaRecord:
        media = inp.media
        # The declared type is the sender's word: parsed once here into the type the object is
        # written and served with (and its key's extension); the declaration is kept as evidence.
        mime_type = normalize_mime(declared_mime)
        bound = log.bind(message_id=inp.message_id, media_id=media.media_id)
        expected = decode_sha256(declared_sha256)
        if declared_sha256 and expected is None:
            bound.warning("provider_sha256_unreadable", provider_sha256=declared_sha256)
        key = media_object_key(inp.message_id, inp.timestamp, inp.contact_segment, mime_type, inp.position)

        def heartbeat(done: int) -> None:
            activity.heartbeat({"bytes": done})

        # Retention by the business number's policy; a contact under legal hold is held from the start.
        terms = await self.rules.terms(self.pool, scopes=inp.business_scopes, contact_phone=inp.contact_phone,
                                       ts=inp.timestamp)
        stored = await self.store.put_stream(
            key, chunks, content_type=mime_type,
            metadata={"message-id": inp.message_id, "media-id": media.media_id[:200]},
            expected_sha256=expected if enforce_declared else None, retain_until=terms.retain_until,
            legal_hold=terms.held, on_progress=heartbeat,
        )
        if expected is not None and stored.sha256 != expected.hex():  # only when not enforced
            bound.warning("declared_sha256_differs", sha256=stored.sha256, declared=expected.hex())
        # The key holds the contact's phone number, so it stays out of INFO logs.
        bound.info("media_archived", sha256=stored.sha256, size=stored.size, created=stored.created)
        return MediaRecord(
            media_id=media.media_id, position=inp.position, kind=media.kind, status="archived",
            storage_key=stored.key, size=stored.size, sha256=stored.sha256,
            provider_sha256=declared_sha256, mime_type=mime_type, declared_mime_type=declared_mime,
            filename=media.filename,
            stored_at=stored.stored_at, retain_until=terms.retain_until, legal_hold=terms.held,
        )


def direct_path_url(media_host: str, direct_path: str) -> str:
    """The media host's URL for a WhatsApp directPath. The path comes from the sender's message, so
    it must stay a path: '@evil.example/x' or '//evil.example/x' would otherwise name another host."""
    if not direct_path.startswith("/") or direct_path.startswith("//"):
        raise LinkRefused(f"directPath must be an absolute path on {media_host}, got {direct_path[:100]!r}")
    return f"{media_host}{direct_path}"


async def _counted(chunks: AsyncIterator[bytes], length: int | None) -> AsyncIterator[bytes]:
    """Pass chunks on; at the end, fail if the total differs from the declared length."""
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        yield chunk
    if length is not None and total != length:
        raise MediaHashMismatch(f"fileLength mismatch: declared {length}, received {total} bytes")
