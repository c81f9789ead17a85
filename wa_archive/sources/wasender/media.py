"""WhatsApp's end-to-end encrypted media, decrypted while it streams.

The blob is AES-256-CBC(cipherKey, IV, PKCS#7(plaintext)) followed by the first 10 bytes of
HMAC-SHA256(macKey, IV || ciphertext); IV, cipherKey and macKey come from HKDF-SHA256 over the
32-byte mediaKey with an info string per media type. fileEncSha256 covers the whole blob, fileSha256
the plaintext. The MAC is the last 10 bytes, so it can only be checked at the end: plaintext flows
on to the store as it is decrypted (which keeps memory flat), and the checks run when the download
ends, before the stream does: a failure raises out of the stream, and the store, which commits only
after the last chunk, leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from wa_archive.errors import LinkRefused, MediaHashMismatch
from wa_archive.models import EncryptedMedia

MAC_LENGTH = 10
THREAD_MIN = 64 * 1024  # smaller pieces are cheaper to decrypt than to hand to a thread
INFO = {
    "image": b"WhatsApp Image Keys", "sticker": b"WhatsApp Image Keys",
    "video": b"WhatsApp Video Keys", "gif": b"WhatsApp Video Keys", "ptv": b"WhatsApp Video Keys",
    "audio": b"WhatsApp Audio Keys", "ptt": b"WhatsApp Audio Keys",
    "document": b"WhatsApp Document Keys",
}


def encrypted_media_url(enc: EncryptedMedia, media_host: str) -> str:
    """Where the encrypted file is: the message's own http(s) URL, else its directPath on the media host."""
    if enc.url and enc.url.startswith(("http://", "https://")):
        return enc.url
    return direct_path_url(media_host.rstrip("/"), enc.direct_path) if enc.direct_path else ""


def direct_path_url(media_host: str, direct_path: str) -> str:
    """The media host's URL for a WhatsApp directPath. The path comes from the sender's message, so
    it must stay a path: '@evil.example/x' or '//evil.example/x' would otherwise name another host."""
    if not direct_path.startswith("/") or direct_path.startswith("//"):
        raise LinkRefused(f"directPath must be an absolute path on {media_host}, got {direct_path[:100]!r}")
    return f"{media_host}{direct_path}"


def encrypted_size_bound(file_length: int | None) -> int | None:
    """The most an encrypted download may hold: the plaintext padded to whole AES blocks plus the
    MAC. When the length is declared, nothing longer is read (WhatsApp documents may exceed the
    link limit); None when it is not."""
    return file_length + 16 + MAC_LENGTH if file_length is not None else None


async def checked_length(chunks: AsyncIterator[bytes], length: int | None) -> AsyncIterator[bytes]:
    """Pass chunks on; at the end, fail if the total differs from the declared length."""
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        yield chunk
    if length is not None and total != length:
        raise MediaHashMismatch(f"fileLength mismatch: declared {length}, received {total} bytes")


def expand_media_key(media_key: bytes, kind: str) -> tuple[bytes, bytes, bytes]:
    """(IV, cipher key, MAC key) for a media key and media type."""
    if len(media_key) != 32:
        raise MediaHashMismatch(f"mediaKey must be 32 bytes, got {len(media_key)}")
    info = INFO.get(kind)
    if info is None:
        raise MediaHashMismatch(f"no WhatsApp key derivation for media type {kind!r}")
    expanded = HKDF(algorithm=hashes.SHA256(), length=112, salt=None, info=info).derive(media_key)
    return expanded[:16], expanded[16:48], expanded[48:80]


async def decrypt_stream(chunks: AsyncIterator[bytes], *, media_key: bytes, kind: str,
                         file_enc_sha256: bytes | None, file_length: int | None) -> AsyncIterator[bytes]:
    """Plaintext chunks of an encrypted download; raises MediaHashMismatch (naming the check) at the end
    if the encrypted hash, the MAC, the padding or the length is wrong."""
    iv, cipher_key, mac_key = expand_media_key(media_key, kind)
    enc_hash = hashlib.sha256()
    mac = hmac.new(mac_key, iv, hashlib.sha256)
    decryptor = Cipher(algorithms.AES(cipher_key), modes.CBC(iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    tail = b""  # the last 10 bytes seen: the MAC, once the download ends
    produced = 0

    def step(chunk: bytes) -> bytes:
        # Hashing, MAC and AES release the GIL on large buffers: in a thread, they overlap with the
        # download and with the store's own hashing and writing.
        nonlocal tail
        enc_hash.update(chunk)
        data = tail + chunk
        if len(data) <= MAC_LENGTH:
            tail = data
            return b""
        body, tail = data[:-MAC_LENGTH], data[-MAC_LENGTH:]
        mac.update(body)
        return unpadder.update(decryptor.update(body))

    async for chunk in _coalesced(chunks):
        plain = await asyncio.to_thread(step, chunk) if len(chunk) >= THREAD_MIN else step(chunk)
        produced += len(plain)
        if plain:
            yield plain
    if file_enc_sha256 is not None and enc_hash.digest() != file_enc_sha256:
        raise MediaHashMismatch(f"fileEncSha256 mismatch: declared {file_enc_sha256.hex()}, "
                                f"downloaded {enc_hash.hexdigest()}")
    if len(tail) < MAC_LENGTH or not hmac.compare_digest(mac.digest()[:MAC_LENGTH], tail):
        raise MediaHashMismatch("media MAC mismatch: the encrypted file was altered or truncated")
    try:
        last = unpadder.update(decryptor.finalize()) + unpadder.finalize()
    except ValueError:
        raise MediaHashMismatch("decrypted media has no valid padding (truncated or not AES-CBC)") from None
    produced += len(last)
    if file_length is not None and produced != file_length:
        raise MediaHashMismatch(f"fileLength mismatch: declared {file_length}, decrypted {produced} bytes")
    if last:
        yield last


async def _coalesced(chunks: AsyncIterator[bytes], size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    """Network reads come in pieces of a few KiB; the crypto runs best (and is handed to a thread
    once) per MiB. Memory stays bounded by one such piece."""
    pending: list[bytes] = []
    held = 0
    async for chunk in chunks:
        pending.append(chunk)
        held += len(chunk)
        if held >= size:
            yield b"".join(pending)
            pending, held = [], 0
    if pending:
        yield b"".join(pending)
