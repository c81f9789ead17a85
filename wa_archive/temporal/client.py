"""The one way the archive reaches Temporal: the connection as configured, with the encrypting
converter and its keys."""

from __future__ import annotations

from pathlib import Path

import structlog
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime

from wa_archive.config import Settings
from wa_archive.credentials import create_secret_file
from wa_archive.errors import ConfigError
from wa_archive.temporal.codec import PayloadKeys, encrypted_data_converter, generate_key_line, parse_payload_keys
from wa_archive.temporal.connection import resolve_connection


async def connect_temporal(settings: Settings, *, lazy: bool = False, runtime: Runtime | None = None) -> Client:
    """A client with the encrypting converter, the same in the webhook, worker, CLI and `dev`.

    Address, namespace, TLS and API key as `temporal.connection` resolves them; a refused or failed
    connection raises TemporalConnectError saying where and how it tried (never the secrets). A
    `runtime` (the worker's, observability.temporal_sdk) collects the SDK's metrics of the client's workers.
    """
    connection = resolve_connection(settings)
    converter = data_converter(settings)
    structlog.get_logger("wa_archive.temporal").info("temporal_connect", lazy=lazy, **connection.describe())
    try:
        return await Client.connect(**connection.connect_kwargs(), data_converter=converter, lazy=lazy,
                                    runtime=runtime)
    except RuntimeError as exc:
        raise connection.connect_failure(exc) from None



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
