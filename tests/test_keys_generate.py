"""`wa-archive keys generate`: every secret the operator creates comes out in a form the archive accepts,
as VAR=value lines ready for .env; the bare default output stays what scripts read; and every secret
setting is either generated here or named as issued by someone else."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

from pydantic import SecretStr

from wa_archive.config import Settings
from wa_archive.credentials import GENERATED_SECRETS, GIVEN_SECRETS, contact_secret, ledger_signer, ledger_trust
from wa_archive.integrity.ledger import parse_public_key
from wa_archive.temporal.codec import parse_payload_keys


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
    return subprocess.run([sys.executable, "-m", "wa_archive.cli", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def _env_lines(stdout: str) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in stdout.splitlines()]
    assert all(len(p) == 2 and p[0].startswith("WA_ARCHIVE_") for p in pairs), stdout
    return dict(pairs)  # type: ignore[arg-type]


def test_every_secret_setting_is_either_generated_here_or_issued_by_someone_else():
    secret_fields = {name for name, field in Settings.model_fields.items()
                     if field.annotation is not None and "SecretStr" in str(field.annotation)}
    generated = {s.setting for s in GENERATED_SECRETS}
    assert generated.isdisjoint(GIVEN_SECRETS)
    assert secret_fields == generated | set(GIVEN_SECRETS), (
        "a secret setting must be placed in GENERATED_SECRETS or GIVEN_SECRETS (wa_archive/credentials.py)")


def test_all_prints_one_env_line_per_secret_and_each_value_is_accepted_by_what_reads_it(tmp_path):
    done = _cli("keys", "generate", "--kind", "all")
    assert done.returncode == 0, done.stderr
    values = _env_lines(done.stdout)
    assert list(values) == [s.variable for s in GENERATED_SECRETS]
    settings = Settings(data_dir=tmp_path, **{s.setting: SecretStr(values[s.variable]) for s in GENERATED_SECRETS})
    assert len(parse_payload_keys(values["WA_ARCHIVE_PAYLOAD_KEYS"], "v").keys[0][1]) == 32
    signer = ledger_signer(settings)
    assert contact_secret(settings) == values["WA_ARCHIVE_CONTACT_KEY_SECRET"]
    assert len(bytes.fromhex(values["WA_ARCHIVE_CONTACT_KEY_SECRET"])) == 32
    assert len(values["WA_ARCHIVE_META_VERIFY_TOKEN"]) >= 40  # 32 random bytes, URL-safe base64
    # The public key on stderr is the signing key's, in the form verifiers are given.
    public = next(line for line in done.stderr.splitlines() if line.startswith("WA_ARCHIVE_LEDGER_PUBLIC_KEY="))
    assert parse_public_key(public.split("=", 1)[1]) == signer.public_key()
    # The line goes into .env as it is: the server takes it as its trusted key.
    env_file = tmp_path / ".env"
    env_file.write_text(public + "\n")
    assert ledger_trust(Settings(_env_file=env_file)) == signer.public_key()
    again = _env_lines(_cli("keys", "generate", "--kind", "all").stdout)
    assert all(again[v] != values[v] for v in values), "every run draws fresh secrets"


def test_one_kind_prints_its_bare_value_or_an_env_line_and_the_default_is_unchanged():
    default = _cli("keys", "generate")
    assert default.returncode == 0 and len(default.stdout.splitlines()) == 1
    assert parse_payload_keys(default.stdout.strip(), "stdout").current_id.startswith("k")
    ledger = _cli("keys", "generate", "--kind", "ledger")
    assert len(base64.b64decode(ledger.stdout.strip(), validate=True)) == 32
    line = _cli("keys", "generate", "--kind", "contact-key", "--env")
    assert list(_env_lines(line.stdout)) == ["WA_ARCHIVE_CONTACT_KEY_SECRET"]
    token = _cli("keys", "generate", "--kind", "verify-token", "--env").stdout
    assert list(_env_lines(token)) == ["WA_ARCHIVE_META_VERIFY_TOKEN"]
    refused = _cli("keys", "generate", "--kind", "meta-app-secret")
    assert refused.returncode == 2 and "invalid choice: 'meta-app-secret'" in refused.stderr


def test_json_is_one_object_of_what_was_generated_with_the_ledger_public_key(tmp_path):
    done = _cli("keys", "generate", "--kind", "all", "--json")
    assert done.returncode == 0, done.stderr
    values = json.loads(done.stdout)  # the whole of stdout is the one object
    expected = [name for s in GENERATED_SECRETS
                for name in (s.variable, *(["WA_ARCHIVE_LEDGER_PUBLIC_KEY"] if s.kind == "ledger" else []))]
    assert list(values) == expected  # in `--kind all` order, the public key beside its signing key
    settings = Settings(data_dir=tmp_path, **{s.setting: SecretStr(values[s.variable]) for s in GENERATED_SECRETS})
    assert parse_public_key(values["WA_ARCHIVE_LEDGER_PUBLIC_KEY"]) == ledger_signer(settings).public_key()
    assert contact_secret(settings) == values["WA_ARCHIVE_CONTACT_KEY_SECRET"]
    assert "WA_ARCHIVE_PAYLOAD_KEYS:" in done.stderr  # the notes stay on stderr
    one = json.loads(_cli("keys", "generate", "--json").stdout)
    assert list(one) == ["WA_ARCHIVE_PAYLOAD_KEYS"]
    assert parse_payload_keys(one["WA_ARCHIVE_PAYLOAD_KEYS"], "json").current_id.startswith("k")
    token = json.loads(_cli("keys", "generate", "--kind", "verify-token", "--json").stdout)
    assert list(token) == ["WA_ARCHIVE_META_VERIFY_TOKEN"] and len(token["WA_ARCHIVE_META_VERIFY_TOKEN"]) >= 40


def test_version_comes_from_the_installed_package_metadata():
    from importlib.metadata import version

    done = _cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"wa-archive {version('wa-archive')}"
