"""WhatsApp Cloud API (Graph) client. HTTP answers become typed errors here, and only here.

Every Graph URL is built from validated, quoted path segments, never by pasting a string into a
URL; and the bearer token goes only to the Graph base URL's origin and to the media download hosts
the operator allows (WA_ARCHIVE_META_MEDIA_HOSTS).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ValidationError
from yarl import URL

from wa_archive.errors import (
    GraphRequestRefused,
    MediaAccessDenied,
    MediaNotFound,
    MediaSourceError,
    TemplateNotFound,
)

CHUNK = 1024 * 1024
_GRAPH_ID = re.compile(r"[0-9]{1,20}")
# Meta's media ids are digits; the fake Graph API used by tests and the demo names media with
# letters, '-' and '_' too. Nothing here can leave its path segment: no '/', '?', '#', '%' or dot.
_MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def graph_id(value: object, field: str) -> str:
    """`value` when it is a Graph id (1 to 20 ASCII digits); GraphRequestRefused naming `field` if not."""
    if isinstance(value, str) and _GRAPH_ID.fullmatch(value):
        return value
    raise GraphRequestRefused(f"{field} must be a Graph id of 1 to 20 digits, got {_shown(value)}")


def _media_id(value: object) -> str:
    if isinstance(value, str) and _MEDIA_ID.fullmatch(value):
        return value
    raise GraphRequestRefused(f"media id must be 1 to 128 letters, digits, '-' or '_', got {_shown(value)}")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class MediaHosts:
    """Where a media download may carry the bearer token: the Graph base URL's origin, host names
    listed exactly (any scheme), and `*.suffix` patterns (https only).

    Hosts are compared in the IDNA/ASCII form yarl gives (`raw_host`), which is the host aiohttp
    connects to; configured names are folded the same way."""

    def __init__(self, spec: str, graph_url: str) -> None:
        self.names: set[str] = set()
        self.suffixes: list[str] = []
        for item in spec.split(","):
            item = item.strip().lower().rstrip(".")
            if item.startswith("*."):
                self.suffixes.append("." + _ascii_host(item[2:]))
            elif item:
                self.names.add(_ascii_host(item))
        self.graph_origin = URL(graph_url).origin()

    def check(self, url: str) -> URL:
        """The download URL, when the token may go there; GraphRequestRefused naming the host if not."""
        try:
            parsed = URL(url)
            origin = parsed.origin()
            if parsed.scheme not in ("http", "https"):
                raise ValueError(parsed.scheme)
        except (ValueError, TypeError):
            raise GraphRequestRefused(f"media download URL is not an absolute http(s) URL: {_shown(url)}; "
                                      "the access token was not sent") from None
        host = (parsed.raw_host or "").lower().rstrip(".")
        if origin == self.graph_origin or host in self.names:
            return parsed
        shown = f"{host}:{parsed.explicit_port}" if parsed.explicit_port else host
        if any(host.endswith(suffix) for suffix in self.suffixes):
            if parsed.scheme == "https":
                return parsed
            raise GraphRequestRefused(f"media download URL on {shown} is not https; the access token "
                                      "was not sent")
        raise GraphRequestRefused(f"media download URL is on host {shown or '?'}, which is not a Meta media "
                                  "host (WA_ARCHIVE_META_MEDIA_HOSTS); the access token was not sent")


def _ascii_host(name: str) -> str:
    """A configured host name in the form yarl connects to (IDNA/ASCII), or as given if unparseable."""
    try:
        return (URL.build(scheme="https", host=name).raw_host or name).lower().rstrip(".")
    except (ValueError, TypeError, UnicodeError):
        return name


class MediaInfo(BaseModel):
    """GET /{media-id}: where to download the bytes and what the provider says they are."""

    url: str
    mime_type: str | None = None
    sha256: str | None = None
    file_size: int | None = None
    id: str | None = None


class AnalyticsPoint(BaseModel):
    """One data point of the WABA's messaging analytics (Unix times; Meta's counts are approximate)."""

    start: int
    end: int
    sent: int = 0
    delivered: int = 0


class GraphClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, access_token: str, *,
                 media_hosts: str = "") -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {access_token}"}
        # Without a list, downloads may go only to the Graph origin itself: fail closed.
        self.media_hosts = MediaHosts(media_hosts, self._base)

    def _url(self, *segments: str) -> URL:
        """The Graph base URL with each (already validated) segment quoted as exactly one segment."""
        path = "/".join(quote(segment, safe="") for segment in segments)
        return URL(f"{self._base}/{path}", encoded=True)

    async def _get_json(self, url: URL, what: str, params: dict[str, str] | None = None) -> Any:
        """GET a Graph object with the token: its JSON, or the typed error of what went wrong."""
        try:
            async with self._session.get(url, headers=self._headers, params=params) as resp:
                if resp.status != 200:
                    await _raise_for(resp, what)
                return await resp.json(content_type=None)
        except aiohttp.ClientError as exc:
            raise MediaSourceError(f"{what}: {exc!r}") from exc

    async def media_info(self, media_id: str) -> MediaInfo:
        data = await self._get_json(self._url(_media_id(media_id)), f"media metadata for {media_id}")
        try:
            return MediaInfo.model_validate(data)
        except ValidationError as exc:
            raise MediaSourceError(f"media metadata for {media_id} is not usable: {exc}") from exc

    async def send_message(self, phone_number_id: str, body: bytes) -> tuple[int, bytes, str]:
        """Forward a send request unchanged; returns Meta's status, body and content type."""
        url = self._url(graph_id(phone_number_id, "phone_number_id"), "messages")
        headers = {**self._headers, "Content-Type": "application/json"}
        async with self._session.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.read(), resp.headers.get("Content-Type", "application/json")

    async def template(self, waba_id: str, name: str, language: str) -> dict[str, Any]:
        """The current definition of a template, by name and language, from the WABA."""
        url = self._url(graph_id(waba_id, "WABA id (WA_ARCHIVE_META_WABA_ID or the webhook's entry id)"),
                        "message_templates")
        params = {"name": name, "language": language, "limit": "100"}
        data = await self._get_json(url, f"template {name}/{language}", params)
        for item in data.get("data") or []:
            if item.get("name") == name and item.get("language") == language:
                return cast(dict[str, Any], item)  # a template in the list is a JSON object: .get() worked
        raise TemplateNotFound(f"no template {name!r} in language {language!r} in WABA {waba_id}")

    async def messaging_analytics(self, waba_id: str, phone_number: str, start: int, end: int
                                  ) -> list[AnalyticsPoint]:
        """Meta's daily sent/delivered counts for one business display number between two Unix times:
        `GET /{waba-id}?fields=analytics.start(T).end(T).granularity(DAY).phone_numbers([...])`."""
        number = graph_id(phone_number, "display phone number (digits only)")
        url = self._url(graph_id(waba_id, "WABA id (WA_ARCHIVE_META_WABA_ID or the webhook's entry id)"))
        fields = f'analytics.start({int(start)}).end({int(end)}).granularity(DAY).phone_numbers(["{number}"])'
        data = await self._get_json(url, f"messaging analytics of WABA {waba_id}", {"fields": fields})
        try:
            points = (data.get("analytics") or {}).get("data_points") or []
            return [AnalyticsPoint.model_validate(p) for p in points]
        except (AttributeError, ValidationError) as exc:
            raise MediaSourceError(f"messaging analytics of WABA {waba_id} is not usable: {exc}") from exc

    @asynccontextmanager
    async def download(self, url: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """Open the media URL with the bearer token, if its host may see the token; yields an
        iterator over body chunks. Redirects to another origin are followed without the token."""
        target = self.media_hosts.check(url)
        try:
            async with self._session.get(target, headers=self._headers) as resp:
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
