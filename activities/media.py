"""Media activities: stream one item into the object store, hashing as it goes.

archive_media fetches through the Graph API (media id); archive_link_media fetches a sender's
public link through the SSRF-guarded fetcher; archive_encrypted_media fetches WhatsApp's encrypted
file (WASenderApi) and decrypts it while streaming, or asks WASender to decrypt it when configured.
"""

import asyncpg
from temporalio import activity

from activities.attempts import record_attempts
from wa_archive.archive import media
from wa_archive.models import ArchiveMediaInput, MediaRecord
from wa_archive.names import ARCHIVE_ENCRYPTED_MEDIA, ARCHIVE_LINK_MEDIA, ARCHIVE_MEDIA
from wa_archive.retention.policies import RetentionRules
from wa_archive.sources.links import LinkFetcher
from wa_archive.sources.meta.graph import GraphClient
from wa_archive.sources.wasender.decrypt_api import WasenderClient
from wa_archive.storage import ObjectStore


def _heartbeat(done: int) -> None:
    activity.heartbeat({"bytes": done})


class MediaActivities:
    def __init__(self, graph: GraphClient, store: ObjectStore, pool: asyncpg.Pool, rules: RetentionRules,
                 links: LinkFetcher, *, media_host: str = "https://mmg.whatsapp.net",
                 wasender: WasenderClient | None = None) -> None:
        self.graph = graph
        self.media_host = media_host
        self.wasender = wasender
        self.store = store
        self.pool = pool
        self.links = links
        self.rules = rules
        self.writer = media.MediaWriter(store, pool, rules)

    @activity.defn(name=ARCHIVE_MEDIA)
    @record_attempts("archive_media", lambda inp: (inp.message_id, inp.media.media_id))
    async def archive_media(self, inp: ArchiveMediaInput) -> MediaRecord:
        """Resolve the media URL and stream the bytes into the store in the same attempt."""
        return await media.archive_graph_media(self.graph, self.writer, inp, on_progress=_heartbeat)

    @activity.defn(name=ARCHIVE_LINK_MEDIA)
    @record_attempts("archive_media", lambda inp: (inp.message_id, inp.media.media_id))
    async def archive_link_media(self, inp: ArchiveMediaInput) -> MediaRecord:
        """Fetch a sender's public media link (checked against internal addresses) into the store."""
        return await media.archive_link_media(self.links, self.writer, inp, on_progress=_heartbeat)

    @activity.defn(name=ARCHIVE_ENCRYPTED_MEDIA)
    @record_attempts("archive_media", lambda inp: (inp.message_id, inp.media.media_id))
    async def archive_encrypted_media(self, inp: ArchiveMediaInput) -> MediaRecord:
        """Download, decrypt and store WhatsApp's encrypted file; nothing is committed unless every check agrees."""
        return await media.archive_encrypted_media(self.links, self.writer, inp, media_host=self.media_host,
                                                   wasender=self.wasender, on_progress=_heartbeat)
