"""Process setup shared by every command: logging, the Temporal client, the Postgres pool."""

from __future__ import annotations

import logging
import os
import secrets
import sys
from pathlib import Path

import structlog
from temporalio.client import Client
from temporalio.converter import DataConverter

from wa_archive.config import ConfigError, Settings
from wa_archive.db import create_pool
from wa_archive.payload_codec import PayloadKeys, encrypted_data_converter, generate_key_line, parse_payload_keys
from wa_archive.temporal_connection import TemporalConnectError, resolve_connection


def configure_logging(level: str = "INFO") -> None:
    """JSON log lines on stderr, one per event, with ISO timestamps."""
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


async def connect_temporal(settings: Settings, *, lazy: bool = False) -> Client:
    """A client with the encrypting converter, the same in the webhook, worker, CLI and `dev`.

    Address, namespace, TLS and API key as `temporal_connection` resolves them; a refused or failed
    connection raises TemporalConnectError saying where and how it tried (never the secrets).
    """
    connection = resolve_connection(settings)
    converter = data_converter(settings)
    structlog.get_logger("wa_archive.temporal").info("temporal_connect", lazy=lazy, **connection.describe())
    try:
        return await Client.connect(**connection.connect_kwargs(), data_converter=converter, lazy=lazy)
    except RuntimeError as exc:
        raise TemporalConnectError(connection, exc) from None


PAYLOAD_KEYS_DEV_FILE = "payload-keys.secret"


def payload_keys(settings: Settings) -> PayloadKeys:
    """The payload codec's keys: from the variable, else its file, else the one `dev` keeps in the data dir."""
    if settings.payload_keys is not None:
        return parse_payload_keys(settings.payload_keys.get_secret_value(), "WA_ARCHIVE_PAYLOAD_KEYS")
    if settings.payload_keys_file is not None:
        try:
            text = settings.payload_keys_file.read_text()
        except OSError as exc:
            raise ConfigError(f"WA_ARCHIVE_PAYLOAD_KEYS_FILE: cannot read it ({exc.strerror})") from None
        return parse_payload_keys(text, "WA_ARCHIVE_PAYLOAD_KEYS_FILE")
    path = Path(settings.data_dir) / PAYLOAD_KEYS_DEV_FILE
    if path.exists():
        return parse_payload_keys(path.read_text(), str(path))
    raise ConfigError("WA_ARCHIVE_PAYLOAD_KEYS or WA_ARCHIVE_PAYLOAD_KEYS_FILE is required but not set"
                      " (`wa-archive keys generate` prints a key)")


def data_converter(settings: Settings) -> DataConverter:
    """The one converter of every Temporal client, worker and replayer: pydantic, encrypted."""
    return encrypted_data_converter(payload_keys(settings))


def ensure_dev_payload_key(data_dir: Path) -> None:
    path = data_dir / PAYLOAD_KEYS_DEV_FILE
    if not path.exists():
        create_secret_file(path, generate_key_line() + "\n")


async def connect_db(settings: Settings, *, max_size: int = 10):
    settings.require("database_url")
    return await create_pool(settings.database_url, max_size=max_size)


def contact_secret(settings: Settings) -> str:
    """The key for contact hashes in search attributes; dev mode keeps one under the data dir."""
    if settings.contact_key_secret is not None:
        return settings.contact_key_secret.get_secret_value()
    path = Path(settings.data_dir) / "contact-key.secret"
    if path.exists():
        return path.read_text().strip()
    raise ConfigError("WA_ARCHIVE_CONTACT_KEY_SECRET is required but not set")


def create_secret_file(path: Path, text: str) -> None:
    """Create `path` readable by its owner only from the first byte (never written, then chmod-ed);
    fails if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def replace_secret_file(path: Path, text: str) -> None:
    """Write `path` anew, owner-only: a fresh 0600 file renamed over the old one."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    create_secret_file(tmp, text)
    os.replace(tmp, path)


def ensure_dev_contact_secret(data_dir: Path) -> None:
    path = data_dir / "contact-key.secret"
    if not path.exists():
        create_secret_file(path, secrets.token_hex(32))


def ledger_signer(settings: Settings):
    """The archive's Ed25519 signing key; dev mode keeps one under the data dir."""
    import base64

    from wa_archive.ledger import Signer

    if settings.ledger_signing_key is not None:
        raw = settings.ledger_signing_key.get_secret_value()
    else:
        path = Path(settings.data_dir) / "ledger-key.secret"
        if not path.exists():
            raise ConfigError("WA_ARCHIVE_LEDGER_SIGNING_KEY is required but not set")
        raw = path.read_text().strip()
    try:
        seed = base64.b64decode(raw)
        if len(seed) != 32:
            raise ValueError
    except ValueError:
        raise ConfigError("WA_ARCHIVE_LEDGER_SIGNING_KEY must be base64 of 32 bytes") from None
    return Signer(seed)


def ensure_dev_ledger_key(data_dir: Path) -> None:
    import base64

    path = data_dir / "ledger-key.secret"
    if not path.exists():
        create_secret_file(path, base64.b64encode(secrets.token_bytes(32)).decode())


def retention_rules(settings: Settings):
    """The configured default retention and minimum lock, for the activities that archive."""
    from wa_archive.retention import RetentionRules

    return RetentionRules(default_days=settings.retention_days, min_lock_seconds=settings.min_lock_seconds)
