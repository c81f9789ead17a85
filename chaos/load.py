"""A steady signed Meta webhook load, each message with one media item the fake Graph API holds.

Mostly small images; every `large_every`-th message carries a file larger than the S3 part size,
streamed slowly by the fake Graph, so a worker killed at a random moment can land mid multipart
upload. Deliveries go round-robin over the webhook servers. Like Meta, a delivery that did not get
200 (503, another status, a connection error or a timeout) is sent again after a backoff, to the next
server, until it gets 200 or the redelivery deadline passes. Every attempt is recorded.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from wa_archive.sources.meta.fake_graph import FakeGraph, FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, media_message, wamid
from wa_archive.sources.signature import meta_signature


@dataclass
class Attempt:
    at: float  # wall-clock time the request was sent (time.time(), comparable with database times)
    server: str
    outcome: int | str  # the HTTP status, or "connection_error" / "timeout"
    seconds: float


@dataclass
class Delivery:
    message_id: str
    media_id: str
    sha256: str  # what the source declared, hex
    size: int
    large: bool
    body: bytes = field(repr=False)
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        return any(a.outcome == 200 for a in self.attempts)


@dataclass
class LoadSettings:
    deliveries: int = 200
    rate: float = 5.0  # new deliveries per second
    large_every: int = 10  # every n-th message carries a large slow file (0: none)
    large_bytes: int = 12 * 1024 * 1024  # above the 5 MiB part size: a multipart upload
    large_bytes_per_second: int = 3 * 1024 * 1024
    small_bytes: tuple[int, int] = (8 * 1024, 96 * 1024)
    request_timeout: float = 30.0
    redelivery_deadline: float = 600.0  # seconds after the first attempt Meta gives up on a delivery
    seed: int = 0


class Load:
    def __init__(self, graph: FakeGraph, webhook_urls: dict[str, str], app_secret: str, settings: LoadSettings,
                 in_flight: Counter[str] | None = None) -> None:
        self.graph, self.urls, self.secret, self.settings = graph, webhook_urls, app_secret, settings
        self.in_flight = in_flight if in_flight is not None else Counter()  # shared with the stack
        self.rng = random.Random(settings.seed)
        self.deliveries: list[Delivery] = []
        self.started_at = 0.0
        self.finished_at = 0.0

    def make_delivery(self, index: int) -> Delivery:
        s = self.settings
        large = s.large_every > 0 and index % s.large_every == s.large_every - 1
        media_id = str(self.rng.randrange(10**15, 10**16))  # numeric, as Meta's media ids are
        if large:
            media = FakeMedia(media_id, mime_type="video/mp4", size=s.large_bytes, seed=self.rng.randrange(2**31),
                              bytes_per_second=s.large_bytes_per_second)
            kind, mime = "video", "video/mp4"
        else:
            media = FakeMedia(media_id, content=self.rng.randbytes(self.rng.randint(*s.small_bytes)))
            kind, mime = "image", "image/jpeg"
        self.graph.add(media)
        mid = wamid()
        body = dumps(envelope([media_message(kind, media_id, media.sha256_b64(), mime, mid=mid)]))
        return Delivery(message_id=mid, media_id=media_id, sha256=media.declared_sha256 or "", size=media.size,
                        large=large, body=body)

    async def run(self) -> list[Delivery]:
        s = self.settings
        servers = sorted(self.urls)
        self.started_at = time.time()
        connector = aiohttp.TCPConnector(limit=0, force_close=True)  # one connection per attempt, as Meta's
        async with aiohttp.ClientSession(connector=connector) as http:
            tasks = []
            paced_from = time.monotonic()
            for i in range(s.deliveries):
                delivery = self.make_delivery(i)
                self.deliveries.append(delivery)
                tasks.append(asyncio.create_task(self._deliver(http, delivery, servers, i)))
                # Paced by the clock, not by a fixed pause after each send: the time spent making a
                # delivery does not slow the rate, so an hour's soak sends rate x 3600 deliveries.
                await asyncio.sleep(max(0.0, paced_from + (i + 1) / s.rate - time.monotonic()))
            await asyncio.gather(*tasks)
        self.finished_at = time.time()
        return self.deliveries

    async def _deliver(self, http: aiohttp.ClientSession, delivery: Delivery, servers: list[str], index: int) -> None:
        s = self.settings
        deadline = time.monotonic() + s.redelivery_deadline
        headers = {"Content-Type": "application/json",
                   "X-Hub-Signature-256": meta_signature(self.secret, delivery.body)}
        for attempt in range(10**6):
            server = servers[(index + attempt) % len(servers)]
            sent, started = time.time(), time.monotonic()
            outcome: int | str
            self.in_flight[server] += 1
            try:
                async with http.post(self.urls[server] + "/webhooks/meta", data=delivery.body, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=s.request_timeout)) as resp:
                    await resp.read()
                    outcome = resp.status
            except TimeoutError:
                outcome = "timeout"
            except aiohttp.ClientError:
                outcome = "connection_error"
            finally:
                self.in_flight[server] -= 1
            delivery.attempts.append(Attempt(at=sent, server=server, outcome=outcome,
                                             seconds=time.monotonic() - started))
            if outcome == 200:
                return
            # Meta backs off further each time; compressed here so a run takes minutes, not hours.
            pause = min(0.5 * 2 ** attempt, 8.0) * (0.5 + self.rng.random())
            if time.monotonic() + pause > deadline:
                return
            await asyncio.sleep(pause)
