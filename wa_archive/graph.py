"""WhatsApp Cloud API (Graph) media client. HTTP answers become typed errors here, and only here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from pydantic import BaseModel, ValidationError

from wa_archive.errors import MediaAccessDenied, MediaNotFound, MediaSourceError, TemplateNotFound

CHUNK = 1024 * 1024


class MediaInfo(BaseModel):
    """GET /{media-id}: where to download the bytes and what the provider says they are."""

    url: str
    mime_type: str | None = None
    sha256: str | None = None
    file_size: int | None = None
    id: str | None = None


class GraphClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, access_token: str) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {access_token}"}

    async def media_info(self, media_id: str) -> MediaInfo:
        url = f"{self._base}/{media_id}"
        try:
            async with self._session.get(url, headers=self._headers) as resp:
                if resp.status != 200:
                    await _raise_for(resp, f"media metadata for {media_id}")
                data = await resp.json(content_type=None)
        except aiohttp.ClientError as exc:
            raise MediaSourceError(f"media metadata for {media_id}: {exc!r}") from exc
        try:
            return MediaInfo.model_validate(data)
        except ValidationError as exc:
            raise MediaSourceError(f"media metadata for {media_id} is not usable: {exc}") from exc

    async def send_message(self, phone_number_id: str, body: bytes) -> tuple[int, bytes, str]:
        """Forward a send request unchanged; returns Meta's status, body and content type."""
        url = f"{self._base}/{phone_number_id}/messages"
        headers = {**self._headers, "Content-Type": "application/json"}
        async with self._session.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.read(), resp.headers.get("Content-Type", "application/json")

    async def template(self, waba_id: str, name: str, language: str) -> dict:
        """The current definition of a template, by name and language, from the WABA."""
        url = f"{self._base}/{waba_id}/message_templates"
        params = {"name": name, "language": language, "limit": "100"}
        try:
            async with self._session.get(url, headers=self._headers, params=params) as resp:
                if resp.status != 200:
                    await _raise_for(resp, f"template {name}/{language}")
                data = await resp.json(content_type=None)
        except aiohttp.ClientError as exc:
            raise MediaSourceError(f"template {name}/{language}: {exc!r}") from exc
        for item in data.get("data") or []:
            if item.get("name") == name and item.get("language") == language:
                return item
        raise TemplateNotFound(f"no template {name!r} in language {language!r} in WABA {waba_id}")

    @asynccontextmanager
    async def download(self, url: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """Open the media URL with the bearer token; yields an iterator over body chunks."""
        try:
            async with self._session.get(url, headers=self._headers) as resp:
                if resp.status != 200:
                    await _raise_for(resp, "media download")
                yield _chunks(resp)
        except aiohttp.ClientError as exc:
            raise MediaSourceError(f"media download failed: {exc!r}") from exc


async def _chunks(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    expected = resp.content_length
    received = 0
    async for chunk in resp.content.iter_chunked(CHUNK):
        received += len(chunk)
        yield chunk
    if expected is not None and received != expected:
        raise MediaSourceError(f"media download truncated: {received} of {expected} bytes")


async def _raise_for(resp: aiohttp.ClientResponse, what: str) -> None:
    text = (await resp.text(errors="replace"))[:300]
    message = f"{what}: HTTP {resp.status}: {text}"
    if resp.status in (401, 403):
        raise MediaAccessDenied(f"{message} ({MediaAccessDenied.SCOPE_HINT})", http_status=resp.status)
    if resp.status == 404:
        raise MediaNotFound(message, http_status=resp.status)
    raise MediaSourceError(message, http_status=resp.status)
