"""A long-running process's configuration checked whole before it touches anything.

`worker` and `serve` each need a set of settings; every one that is missing or unusable is named in
one ConfigProblems, so that one run shows an operator everything to fix. The checks are the very
functions that read each secret later (credentials, temporal.client, temporal.connection), so what is
checked here is what the process will use; none of them writes anything or opens a connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from wa_archive.config import ENV_PREFIX, Settings
from wa_archive.credentials import GIVEN_SECRETS, contact_secret, ledger_signer, ledger_trust
from wa_archive.errors import ConfigError, ConfigProblems
from wa_archive.temporal.client import payload_keys
from wa_archive.temporal.connection import resolve_connection

# What a valid value of each plain required setting looks like.
_EXAMPLES: dict[str, str] = {
    **GIVEN_SECRETS,
    "database_url": "the application role's PostgreSQL URL, e.g."
                    " postgresql://wa_archive_app:PASSWORD@db.example.com:5432/wa_archive",
    "meta_verify_token": "a token you choose and type into the Meta app's webhook settings"
                         " (`wa-archive keys generate --kind verify-token` makes one)",
}

_REQUIRED: dict[str, tuple[str, ...]] = {
    "worker": ("meta_access_token", "database_url"),
    "serve": ("meta_app_secret", "meta_verify_token", "database_url"),
}

# Secrets read through their own function, which also takes the file `dev` keeps under the data dir.
_READERS: dict[str, tuple[Callable[[Settings], object], ...]] = {
    "worker": (resolve_connection, payload_keys, ledger_signer, contact_secret),
    # The server only checks checkpoint rows against the ledger's public key (integrity/checkpoints.py).
    "serve": (resolve_connection, payload_keys, contact_secret, ledger_trust),
}

# The hint each reader's "required but not set" gets: how to make the secret.
_MAKE_ONE: dict[str, str] = {
    "WA_ARCHIVE_LEDGER_SIGNING_KEY": "base64 of a 32-byte Ed25519 seed (`wa-archive keys generate --kind ledger`"
                                     " makes one)",
    "WA_ARCHIVE_LEDGER_PUBLIC_KEY": "the ledger's Ed25519 public key, which the server checks checkpoints"
                                    " against (`wa-archive ledger public-key` prints it where the signing key"
                                    " is; `wa-archive keys generate --kind ledger` prints both)",
    "WA_ARCHIVE_CONTACT_KEY_SECRET": "a random secret shared by webhook server and worker"
                                     " (`wa-archive keys generate --kind contact-key` makes one)",
    "WA_ARCHIVE_TEMPORAL_ADDRESS": "host:port of the Temporal frontend, e.g. temporal.example.com:7233",
}


def configuration_problems(settings: Settings, command: str, *, invalid: Sequence[str] = ()) -> list[str]:
    """Every problem of the configuration `command` needs, one sentence each (empty: all is well).
    `invalid`: problems already found in the values; a setting named there is not also called unset."""
    named = {problem.split(":", 1)[0] for problem in invalid}
    problems = [f"{ENV_PREFIX}{name.upper()} is required but not set: {_EXAMPLES[name]}"
                for name in _REQUIRED[command]
                if getattr(settings, name) in (None, "") and f"{ENV_PREFIX}{name.upper()}" not in named]
    if command == "worker" and settings.wasender_decrypt_via_api and not settings.wasender_api_key:
        problems.append(f"{ENV_PREFIX}WASENDER_API_KEY is required when {ENV_PREFIX}WASENDER_DECRYPT_VIA_API is"
                        f" true: {GIVEN_SECRETS['wasender_api_key']}")
    for read in _READERS[command]:
        try:
            read(settings)
        except ConfigError as exc:
            problems.append(_with_hint(str(exc)))
    return problems


def check_configuration(settings: Settings, command: str, earlier: list[str] | None = None) -> None:
    """Raise one ConfigProblems naming every problem: `earlier` (the settings' invalid values, as
    config.read_settings found them) and what `command` needs but lacks."""
    earlier = earlier or []
    problems = [*earlier, *configuration_problems(settings, command, invalid=earlier)]
    if problems:
        raise ConfigProblems(problems)


def _with_hint(message: str) -> str:
    for variable, hint in _MAKE_ONE.items():
        if message.startswith(variable) and message.endswith("is required but not set"):
            return f"{message}: {hint}"
    return message
