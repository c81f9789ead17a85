"""One media item into the archive: streamed from its source into the object store, hashed as it
goes and checked against the provider's SHA-256 before the object becomes visible.

Three sources: the Graph API (a media id), a sender's public link (through the SSRF-guarded
fetcher), and WhatsApp's encrypted file as WASenderApi forwards it (decrypted while streaming, or by
WASender's decrypt-media when configured).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import structlog

from wa_archive.archive.hashing import decode_sha256
from wa_archive.archive.keys import media_object_key
from wa_archive.archive.media_types import normalize_mime
from wa_archive.models import ArchiveMediaInput, MediaRecord
from wa_archive.observability import metrics
from wa_archive.retention.policies import RetentionRules
from wa_archive.sources.links import LinkFetcher
from wa_archive.sources.meta.graph import GraphClient
from wa_archive.sources.wasender.decrypt_api import WasenderClient
from wa_archive.sources.wasender.media import (
    checked_length,
    decrypt_stream,
    encrypted_media_url,
    encrypted_size_bound,
)
from wa_archive.storage import ObjectStore
from wa_archive.storage.base import ProgressCallback

log = structlog.get_logger("wa_archive.media")


@dataclass
class MediaWriter:
    """Writes a media item's bytes under its object key, with the retention its record will carry."""

    store: ObjectStore
    pool: asyncpg.Pool
    rules: RetentionRules

    async def put(self, inp: ArchiveMediaInput, chunks: AsyncIterator[bytes], declared_mime: str | None,
                  declared_sha256: str | None, *, enforce_declared: bool = True,
                  on_progress: ProgressCallback | None = None) -> MediaRecord:
        """Store the bytes, refused unless they match the declared SHA-256 (when `enforce_declared`)."""
        media = inp.media
        # The declared type is the sender's word: parsed once here into the type the object is
        # written and served with (and its key's extension); the declaration is kept as evidence.
        mime_type = normalize_mime(declared_mime)
        bound = log.bind(message_id=inp.message_id, media_id=media.media_id)
        expected = decode_sha256(declared_sha256)
        if declared_sha256 and expected is None:
            bound.warning("provider_sha256_unreadable", provider_sha256=declared_sha256)
        key = media_object_key(inp.message_id, inp.timestamp, inp.contact_segment, mime_type, inp.position)
        # Retention by the business number's policy; a contact under legal hold is held from the start.
        terms = await self.rules.terms(self.pool, scopes=inp.business_scopes, contact_phone=inp.contact_phone,
                                       ts=inp.timestamp)
        stored = await self.store.put_stream(
            key, chunks, content_type=mime_type,
            metadata={"message-id": inp.message_id, "media-id": media.media_id[:200]},
            expected_sha256=expected if enforce_declared else None, retain_until=terms.retain_until,
            legal_hold=terms.held, on_progress=on_progress,
        )
        if expected is not None and stored.sha256 != expected.hex():  # only when not enforced
            bound.warning("declared_sha256_differs", sha256=stored.sha256, declared=expected.hex())
        if stored.created:
            metrics.media_stored(stored.size)
        # The key holds the contact's phone number, so it stays out of INFO logs.
        bound.info("media_archived", sha256=stored.sha256, size=stored.size, created=stored.created)
        return MediaRecord(
            media_id=media.media_id, position=inp.position, kind=media.kind, status="archived",
            storage_key=stored.key, size=stored.size, sha256=stored.sha256,
            provider_sha256=declared_sha256, mime_type=mime_type, declared_mime_type=declared_mime,
            filename=media.filename,
            stored_at=stored.stored_at, retain_until=terms.retain_until, legal_hold=terms.held,
        )


async def archive_graph_media(graph: GraphClient, writer: MediaWriter, inp: ArchiveMediaInput, *,
                              on_progress: ProgressCallback | None = None) -> MediaRecord:
    """Resolve the media URL and stream the bytes into the store in the same attempt: the URL lives
    minutes, so every attempt asks for a fresh one."""
    info = await graph.media_info(inp.media.media_id)
    async with graph.download(info.url) as chunks:
        return await writer.put(inp, chunks, inp.media.mime_type or info.mime_type,
                                inp.media.provider_sha256 or info.sha256, on_progress=on_progress)


async def archive_link_media(links: LinkFetcher, writer: MediaWriter, inp: ArchiveMediaInput, *,
                             on_progress: ProgressCallback | None = None) -> MediaRecord:
    """Fetch a sender's public media link (checked against internal addresses) into the store."""
    async with links.download(inp.media.link or "") as (chunks, content_type):
        return await writer.put(inp, chunks, inp.media.mime_type or content_type, inp.media.provider_sha256,
                                on_progress=on_progress)


async def archive_encrypted_media(links: LinkFetcher, writer: MediaWriter, inp: ArchiveMediaInput, *,
                                  media_host: str, wasender: WasenderClient | None,
                                  on_progress: ProgressCallback | None = None) -> MediaRecord:
    """Download the encrypted file (fileEncSha256 and MAC checked at its end), decrypt while
    streaming, and store the plaintext checked against fileSha256 and fileLength; nothing is
    committed unless all agree. With WASender's decrypt-media, the same plaintext checks apply."""
    media, enc = inp.media, inp.media.encrypted
    assert enc is not None
    if wasender is not None:
        url = await wasender.decrypted_media_url(inp.message_id, media.mime_type, media.provider_sha256,
                                                 media.filename, enc)
        async with links.download(url, max_bytes=enc.file_length) as (chunks, _):
            return await writer.put(inp, checked_length(chunks, enc.file_length), media.mime_type,
                                    media.provider_sha256, on_progress=on_progress)
    url = encrypted_media_url(enc, media_host)
    async with links.download(url, max_bytes=encrypted_size_bound(enc.file_length)) as (chunks, _):
        plain = decrypt_stream(chunks, media_key=base64.b64decode(enc.media_key), kind=media.kind,
                               file_enc_sha256=decode_sha256(enc.file_enc_sha256), file_length=enc.file_length)
        # Stickers' declared fileSha256 is reported not to match their bytes (the reason is not
        # known); the MAC has proved the download, so a difference is kept for auditors, not refused.
        return await writer.put(inp, plain, media.mime_type, media.provider_sha256,
                                enforce_declared=media.kind != "sticker", on_progress=on_progress)
