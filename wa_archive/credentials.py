"""The archive's secrets from configuration, or from the files `dev` keeps under the data dir
(created owner-only from the first byte), and how each secret an operator creates is made
(`wa-archive keys generate`)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wa_archive.config import Settings
from wa_archive.errors import ConfigError

if TYPE_CHECKING:
    from wa_archive.integrity.ledger import Signer


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



def new_contact_key_secret() -> str:
    """A fresh key for contact and message hashes: 32 random bytes, hex."""
    return secrets.token_hex(32)



def new_ledger_signing_key() -> str:
    """A fresh Ed25519 seed for ledger checkpoints, base64 as WA_ARCHIVE_LEDGER_SIGNING_KEY reads it."""
    import base64

    return base64.b64encode(secrets.token_bytes(32)).decode()



def new_verify_token() -> str:
    """A fresh token for Meta's webhook handshake: we choose it and type the same one into Meta's app settings."""
    return secrets.token_urlsafe(32)



def new_payload_key_line() -> str:
    """A fresh `id:base64key` entry for WA_ARCHIVE_PAYLOAD_KEYS."""
    from wa_archive.temporal.codec import generate_key_line

    return generate_key_line()



def ensure_dev_contact_secret(data_dir: Path) -> None:
    path = data_dir / "contact-key.secret"
    if not path.exists():
        create_secret_file(path, new_contact_key_secret())



def ledger_signer(settings: Settings) -> Signer:
    """The archive's Ed25519 signing key; dev mode keeps one under the data dir."""
    import base64

    from wa_archive.integrity.ledger import Signer

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



def ledger_trust(settings: Settings) -> bytes:
    """The key a checkpoint row must be signed with for a server or worker to use it
    (integrity/checkpoints.py): WA_ARCHIVE_LEDGER_PUBLIC_KEY, else the public half of the signing key
    (the worker's, or the one `dev` keeps), so the webhook server needs only the public key."""
    from wa_archive.integrity.ledger import parse_public_key

    if settings.ledger_public_key:
        try:
            return parse_public_key(settings.ledger_public_key)
        except ValueError as exc:
            raise ConfigError(f"WA_ARCHIVE_LEDGER_PUBLIC_KEY: {exc}") from None
    try:
        return ledger_signer(settings).public_key()
    except ConfigError as exc:
        if settings.ledger_signing_key is not None:
            raise  # given, but not a key: that message says so
        raise ConfigError("WA_ARCHIVE_LEDGER_PUBLIC_KEY is required but not set") from exc


def ensure_dev_ledger_key(data_dir: Path) -> None:
    path = data_dir / "ledger-key.secret"
    if not path.exists():
        create_secret_file(path, new_ledger_signing_key())



@dataclass(frozen=True)
class GeneratedSecret:
    """A secret the archive's operator creates (`wa-archive keys generate --kind KIND`)."""

    kind: str
    setting: str  # the Settings field, i.e. WA_ARCHIVE_<SETTING>
    make: Callable[[], str]
    note: str  # what to do with it, printed on stderr

    @property
    def variable(self) -> str:
        return f"WA_ARCHIVE_{self.setting.upper()}"


# In the order `--kind all` prints them. A new secret setting belongs either here or in GIVEN_SECRETS
# (tests/test_keys_generate.py fails until it is placed).
GENERATED_SECRETS: tuple[GeneratedSecret, ...] = (
    GeneratedSecret("payload", "payload_keys", new_payload_key_line,
                    "put it in front of WA_ARCHIVE_PAYLOAD_KEYS (comma-separated) to encrypt with it; keep the old"
                    " keys there while any history still uses them"),
    GeneratedSecret("ledger", "ledger_signing_key", new_ledger_signing_key,
                    "the worker alone holds it; give verifiers the public key printed below, never this"),
    GeneratedSecret("contact-key", "contact_key_secret", new_contact_key_secret,
                    "webhook and worker share it; changing it later changes every workflow id and search key"),
    GeneratedSecret("verify-token", "meta_verify_token", new_verify_token,
                    "type the same token into the Meta app's webhook settings (Verify token)"),
)

# Secrets someone else issues: the archive is told them, it cannot make them.
GIVEN_SECRETS: dict[str, str] = {
    "meta_app_secret": "the Meta app's App Secret (App settings > Basic)",
    "meta_access_token": "a Meta system user's token with whatsapp_business_messaging",
    "wasender_webhook_secret": "the Webhook Secret shown in WASenderApi",
    "wasender_api_key": "the WASenderApi session's API key",
    "temporal_api_key": "an API key issued by Temporal Cloud",
}
