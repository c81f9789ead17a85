"""WASenderApi's decrypt-media endpoint: WASender decrypts the file and hands back a public URL
that lives one hour. Used only when WA_ARCHIVE_WASENDER_DECRYPT_VIA_API is set; the archive then
checks the plaintext's SHA-256 and length itself, exactly as after its own decryption."""

from __future__ import annotations

import aiohttp

from wa_archive.errors import MediaAccessDenied, MediaSourceError
from wa_archive.models import EncryptedMedia


class WasenderClient:
    def __init__(self, http: aiohttp.ClientSession, api_url: str, api_key: str) -> None:
        self.http = http
        self.api_url = api_url.rstrip("/")
        self.api_key = api_key

    async def decrypted_media_url(self, message_id: str, mime_type: str | None, file_sha256: str | None,
                                  filename: str | None, enc: EncryptedMedia) -> str:
        media = {"url": enc.url, "mimetype": mime_type, "mediaKey": enc.media_key, "fileSha256": file_sha256,
                 "fileLength": str(enc.file_length) if enc.file_length is not None else None, "fileName": filename}
        fields = {k: v for k, v in media.items() if v is not None}
        body = {"data": {"messages": {"key": {"id": message_id}, "message": {enc.message_field: fields}}}}
        try:
            async with self.http.post(f"{self.api_url}/api/decrypt-media", json=body,
                                      headers={"Authorization": f"Bearer {self.api_key}"}) as resp:
                text = await resp.text()
                if resp.status in (401, 403):
                    raise MediaAccessDenied(f"WASender decrypt-media answered {resp.status}: check "
                                            "WA_ARCHIVE_WASENDER_API_KEY", http_status=resp.status)
                if resp.status != 200:
                    raise MediaSourceError(f"WASender decrypt-media answered HTTP {resp.status}: {text[:200]}",
                                           http_status=resp.status)
                url: str | None = (await resp.json(content_type=None)).get("publicUrl")
        except aiohttp.ClientError as exc:
            raise MediaSourceError(f"WASender decrypt-media could not be reached: {exc!r}") from exc
        if not url:
            raise MediaSourceError("WASender decrypt-media answered without a publicUrl")
        return url
