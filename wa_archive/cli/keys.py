"""`wa-archive keys generate`: the secrets an operator creates, ready for a .env file."""

from __future__ import annotations

import argparse
import sys

from wa_archive.cli.support import print_json
from wa_archive.config import Settings
from wa_archive.credentials import GENERATED_SECRETS

KINDS = tuple(s.kind for s in GENERATED_SECRETS)
# Not a secret: the key verifiers are given with a new ledger signing key (their own setting of this name).
LEDGER_PUBLIC_KEY = "WA_ARCHIVE_LEDGER_PUBLIC_KEY"


async def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    chosen = GENERATED_SECRETS if args.kind == "all" else tuple(s for s in GENERATED_SECRETS if s.kind == args.kind)
    # Several values on stdout only make sense as VAR=value lines; one kind alone keeps the bare value
    # that scripts already read from `keys generate`.
    as_env = args.env or len(chosen) > 1
    generated: dict[str, str] = {}
    for secret in chosen:
        value = secret.make()
        generated[secret.variable] = value
        if secret.kind == "ledger":
            generated[LEDGER_PUBLIC_KEY] = _ledger_public_key(value)
        if not args.json:
            print(f"{secret.variable}={value}" if as_env else value)
        print(f"{secret.variable}: {secret.note}", file=sys.stderr)
        if secret.kind == "ledger" and not args.json:  # with --json the public key is in the object
            # A line that goes into .env as it is (for the webhook server), its note on a comment line.
            print(f"# {LEDGER_PUBLIC_KEY}: for verifiers, held apart from the archive, and for the webhook"
                  " server's .env", file=sys.stderr)
            print(f"{LEDGER_PUBLIC_KEY}={generated[LEDGER_PUBLIC_KEY]}", file=sys.stderr)
    if args.json:
        print_json(generated)
    return 0


def _ledger_public_key(seed_b64: str) -> str:
    import base64

    from wa_archive.integrity.ledger import Signer

    return base64.b64encode(Signer(base64.b64decode(seed_b64)).public_key()).decode()


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="generate the secrets the archive needs")
    keys.add_argument("action", choices=("generate",),
                      help="print new secrets (default: a payload-codec key line `id:base64key`)")
    keys.add_argument("--kind", choices=(*KINDS, "all"), default="payload",
                      help="which secret: " + ", ".join(f"{s.kind} ({s.variable})" for s in GENERATED_SECRETS)
                      + "; all: every one, as VAR=value lines")
    keys.add_argument("--env", action="store_true", help="print `VAR=value` lines ready for a .env file")
    keys.add_argument("--json", action="store_true",
                      help="print one JSON object {VAR: value} (with the ledger's public key when it made one)")

