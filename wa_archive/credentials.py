"""The archive's secrets from configuration, or from the files `dev` keeps under the data dir
(created owner-only from the first byte)."""

from __future__ import annotations

import os
import secrets
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



def ensure_dev_contact_secret(data_dir: Path) -> None:
    path = data_dir / "contact-key.secret"
    if not path.exists():
        create_secret_file(path, secrets.token_hex(32))



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



def ensure_dev_ledger_key(data_dir: Path) -> None:
    import base64

    path = data_dir / "ledger-key.secret"
    if not path.exists():
        create_secret_file(path, base64.b64encode(secrets.token_bytes(32)).decode())
