"""The Temporal payload codec's cost: figures with the codec set against the same figures with
plaintext payloads from the same run, and a microbenchmark of the codec alone."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter

from wa_archive.models import ArchiveRequest, Contact
from wa_archive.sources.meta.samples import message
from wa_archive.temporal.codec import AesGcmPayloadCodec, generate_key_line, parse_payload_keys


def cost(with_codec: dict, plaintext: dict, rates: tuple[str, ...], times_ms: tuple[str, ...]) -> dict:
    """Per figure, with codec / plaintext; for a rate also the time per item it adds (1/rate), for a
    time the milliseconds it adds."""
    out: dict[str, dict] = {}
    for key in rates:
        w, p = with_codec[key], plaintext[key]
        out[key] = {"ratio": round(w / p, 3), "ms_per_item": round(1000 / w - 1000 / p, 2)}
    for key in times_ms:
        w, p = with_codec[key], plaintext[key]
        out[key] = {"ratio": round(w / p, 3), "difference_ms": round(w - p, 1)}
    return out


def archive_request(size: int) -> ArchiveRequest:
    """An ArchiveMessage input as the webhook makes one, its text grown until the JSON is `size` bytes."""
    def make(body: str) -> ArchiveRequest:
        raw = message("text", {"body": body})
        return ArchiveRequest(
            message_id=raw["id"], delivery_sha256="5" * 64, type="text", timestamp=datetime.now(timezone.utc),
            raw_timestamp=raw["timestamp"], phone_number_id="109327745812336", display_phone_number="15550000000",
            waba_id="102290129340398", contact=Contact(phone="447700900123", wa_id="447700900123", name="Priya"),
            text=body, payload=raw)

    base = len(make("").model_dump_json())
    return make("x" * max(0, (size - base) // 2))  # the text is carried twice: as text and in the payload


async def _per_second(step: Callable[[], Awaitable[object]], seconds: float) -> float:
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(50):
            await step()
        count += 50
    return count / elapsed


async def _codec_only(codec: AesGcmPayloadCodec, payload: Payload) -> None:
    await codec.decode(await codec.encode([payload]))


async def _plain(request: ArchiveRequest) -> None:
    converter = pydantic_data_converter.payload_converter
    converter.from_payloads(converter.to_payloads([request]), [ArchiveRequest])


async def _encrypted(codec: AesGcmPayloadCodec, request: ArchiveRequest) -> None:
    converter = pydantic_data_converter.payload_converter
    sealed = await codec.encode(converter.to_payloads([request]))
    converter.from_payloads(await codec.decode(sealed), [ArchiveRequest])


async def payload_codec(sizes: tuple[int, ...] = (1024, 64 * 1024), seconds: float = 1.0) -> dict:
    """Encode + decode of one ArchiveRequest payload per second: the codec alone, and the whole
    converter (pydantic JSON + codec) against the pydantic converter without it."""
    codec = AesGcmPayloadCodec(parse_payload_keys(generate_key_line(), "bench"))
    converter = pydantic_data_converter.payload_converter
    out: dict[str, dict] = {}
    for size in sizes:
        request = archive_request(size)
        [payload] = converter.to_payloads([request])

        codec_only = functools.partial(_codec_only, codec, payload)
        plain = functools.partial(_plain, request)
        encrypted = functools.partial(_encrypted, codec, request)
        codec_per_s = await _per_second(codec_only, seconds)
        # Alternated and the better of two kept, so that a busy moment on a shared machine does not decide.
        plain_rounds, encrypted_rounds = [], []
        for _ in range(2):
            plain_rounds.append(await _per_second(plain, seconds / 2))
            encrypted_rounds.append(await _per_second(encrypted, seconds / 2))
        plain_per_s, encrypted_per_s = max(plain_rounds), max(encrypted_rounds)
        out[f"{size // 1024}_kib"] = {
            "payload_bytes": len(payload.SerializeToString()),
            "codec_per_s": round(codec_per_s), "codec_us": round(1e6 / codec_per_s, 1),
            "codec_mb_per_s": round(codec_per_s * len(payload.data) / 1e6, 1),
            "plain_converter_per_s": round(plain_per_s), "encrypted_converter_per_s": round(encrypted_per_s),
            "ratio": round(encrypted_per_s / plain_per_s, 3), "target": "(report)",
        }
    return out
