"""Encryption of everything the archive hands to Temporal: an AES-256-GCM payload codec, its keys, and
the one data converter every client, worker and replayer uses.

Temporal's history is otherwise a second, unlogged copy of the archive; with this codec it holds only
ciphertext, and reading it takes a key the archive keeps.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
)

from wa_archive.errors import ConfigError, UnknownPayloadKey

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
# The workflow a payload belongs to, in clear and authenticated: the codec server logs whose payloads an
# operator decoded from it, and a payload cannot be relabelled as another workflow's.
WORKFLOW_ID_METADATA = "wa-archive-workflow-id"
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
NONCE_BYTES = 12
KEY_BYTES = 32


@dataclass(frozen=True)
class PayloadKeys:
    """Key ids with their 32-byte AES keys, in order: the first encrypts, every one decrypts."""

    keys: tuple[tuple[str, bytes], ...]

    @property
    def current_id(self) -> str:
        return self.keys[0][0]

    def by_id(self) -> dict[str, bytes]:
        return dict(self.keys)


def parse_payload_keys(text: str, variable: str) -> PayloadKeys:
    """`id:base64key` entries separated by commas or newlines; ConfigError naming `variable` if bad."""
    keys: list[tuple[str, bytes]] = []
    for entry in (part.strip() for part in text.replace("\n", ",").split(",")):
        if not entry:
            continue
        key_id, sep, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not key_id:
            raise ConfigError(f"{variable}: entries must be id:base64key (as `wa-archive keys generate` prints)")
        if not _KEY_ID.fullmatch(key_id):
            raise ConfigError(f"{variable}: key id {key_id!r} must be 1-64 of A-Z a-z 0-9 . _ -")
        try:
            raw = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{variable}: key {key_id!r} is not valid base64") from None
        if len(raw) != KEY_BYTES:
            raise ConfigError(f"{variable}: key {key_id!r} must be {KEY_BYTES} bytes, not {len(raw)}")
        if any(existing == key_id for existing, _ in keys):
            raise ConfigError(f"{variable}: key id {key_id!r} appears twice")
        keys.append((key_id, raw))
    if not keys:
        raise ConfigError(f"{variable}: no key given")
    return PayloadKeys(tuple(keys))


def generate_key_line() -> str:
    """A new `id:base64key` line; the id carries the date so rotations read in order."""
    key_id = f"k{datetime.now(timezone.utc):%Y%m%d}{secrets.token_hex(3)}"
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


class AesGcmPayloadCodec(PayloadCodec, WithSerializationContext):
    """Each payload, metadata included, serialized and sealed with AES-256-GCM under a fresh nonce."""

    def __init__(self, keys: PayloadKeys, *, workflow_id: str | None = None) -> None:
        self._keys = keys
        self._current_id = keys.current_id
        self._ciphers = {key_id: AESGCM(raw) for key_id, raw in keys.keys}
        self._workflow_id = workflow_id

    def with_context(self, context: SerializationContext) -> AesGcmPayloadCodec:
        """The same keys, labelling what they seal with the workflow the SDK says it belongs to."""
        workflow_id = getattr(context, "workflow_id", None)
        if workflow_id == self._workflow_id:
            return self
        return AesGcmPayloadCodec(self._keys, workflow_id=workflow_id)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self.seal(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.open(payload) for payload in payloads]

    def seal(self, payloads: Sequence[Payload]) -> list[Payload]:
        """The payloads encrypted under the current key, labelled with this codec's workflow."""
        cipher = self._ciphers[self._current_id]
        metadata = {"encoding": ENCODING, KEY_ID_METADATA: self._current_id.encode()}
        if self._workflow_id:
            metadata[WORKFLOW_ID_METADATA] = self._workflow_id.encode()
        associated = _associated_data(self._current_id, self._workflow_id)
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), associated)
            encoded.append(Payload(metadata=metadata, data=nonce + sealed))
        return encoded

    def open(self, payload: Payload) -> Payload:
        """One payload as it was before `seal`; one not sealed by this codec is returned as it is.
        Raises UnknownPayloadKey, or cryptography's InvalidTag when it was altered or relabelled."""
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written before the codec (or by Temporal itself): as it is
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownPayloadKey(
                f"payload encrypted with key id {key_id!r}, which is not among the configured payload keys "
                "(WA_ARCHIVE_PAYLOAD_KEYS / WA_ARCHIVE_PAYLOAD_KEYS_FILE)")
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        original = Payload()
        original.ParseFromString(cipher.decrypt(nonce, sealed, _associated_data(key_id, workflow_of(payload))))
        return original


def workflow_of(payload: Payload) -> str | None:
    """The workflow id a sealed payload is labelled with (authenticated on decode), if any."""
    raw = payload.metadata.get(WORKFLOW_ID_METADATA)
    return raw.decode(errors="replace") if raw else None


def _associated_data(key_id: str, workflow_id: str | None) -> bytes:
    """What is authenticated beside the ciphertext: the key id, so that a payload cannot be moved to
    another key, and the workflow label when there is one. Without a label this is the key id alone,
    as for payloads sealed before labels existed."""
    if workflow_id is None:
        return key_id.encode()
    return key_id.encode() + b"\x00" + workflow_id.encode()


def encrypted_data_converter(keys: PayloadKeys) -> DataConverter:
    """The pydantic converter with the codec, and failures whose messages and traces are encoded too."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=AesGcmPayloadCodec(keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
