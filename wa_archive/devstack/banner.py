"""What `wa-archive dev` prints once it is up: where each part listens, and lines a second terminal can
copy as they are (the venv not activated, the data dir found) — one per role, the auditor's with the
address of the pages to sign in to.

No link carries a token: a token in a URL lands in server and proxy logs, browser history and Referer
headers, and an API token does not expire. For the auditor the banner prints the command that creates
a token (shown once, on the user's own terminal) and then the one that makes a one-time sign-in link
for it: a code that signs one browser in once, within minutes, carried in the URL's fragment, which
no server or proxy sees (wa_archive/access/sign_in_links.py).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

from wa_archive.config import Settings

DEFAULT_DATA_DIR = Settings.model_fields["data_dir"].default
# Each role, with what its token is for; the token names the banner suggests are the roles' names.
ROLES = ("auditor", "sender", "operator", "admin")


def cli_command(cwd: Path) -> str:
    """How a fresh shell in `cwd` runs this installation's `wa-archive` without the venv on PATH."""
    script = Path(sys.executable).parent / "wa-archive"
    if not script.exists():  # not installed as a script (run as `python -m` from a source tree)
        return f"{shlex.quote(sys.executable)} -m wa_archive.cli"
    local = cwd / ".venv" / "bin" / "wa-archive"
    if local.exists() and os.path.samefile(local, script):
        return ".venv/bin/wa-archive"  # what `make run` prints: the checkout's venv
    return shlex.quote(str(script))


def shell_setup(data_dir: Path, cwd: Path) -> list[str]:
    """The lines that put a fresh shell where this dev's commands work: its directory (the default
    data dir and .venv/bin are relative to it) and, for any other data dir, the variable naming it."""
    lines = [f"cd {shlex.quote(str(cwd))}"]
    if data_dir != (cwd / DEFAULT_DATA_DIR).resolve():
        lines.append(f"export WA_ARCHIVE_DATA_DIR={shlex.quote(str(data_dir))}")
    return lines


async def token_names(settings: Settings) -> dict[str, str]:
    """For each role a token name not yet taken, so that each printed `tokens create` works once."""
    from wa_archive.access.tokens import unused_name
    from wa_archive.devstack.runtime import connect_db

    pool = await connect_db(settings, max_size=1)
    try:
        return {role: await unused_name(pool, role) for role in ROLES}
    finally:
        await pool.close()


def banner(state: dict[str, Any], data_dir: Path, secrets_file: Path, names: dict[str, str],
           cwd: Path) -> str:
    base = state["http_url"]
    cli = cli_command(cwd)
    lines = [
        "",
        "WhatsApp compliance archive is running (Ctrl-C to stop)",
        f"  auditor pages    {base}/ui/   (sign in with an auditor token: below)",
        f"  webhook URL      {state['webhook_url']}",
        f"  WASender URL     {state['wasender_url']}   (X-Webhook-Signature: wasender_secret in "
        f"{secrets_file}, unless WA_ARCHIVE_WASENDER_WEBHOOK_SECRET is set)",
        "  Temporal UI      "
        f"{state['temporal_ui_url'] or '(external Temporal: ' + str(state['temporal_address']) + ')'}",
        f"  codec server     {base}/codec   (payloads are encrypted; operators decode them: README,"
        " \"Reading a workflow in the Temporal UI\")",
        f"  readiness        {base}/readyz",
        f"  metrics          {state['metrics_url']}   (HTTP server; Prometheus format)",
        f"  worker metrics   {state['worker_metrics_url']}   (and /healthz, /readyz; WA_ARCHIVE_METRICS_PORT)",
        f"  storage          {state['storage_url']}",
        f"  data dir         {data_dir}",
    ]
    if state["fake_graph"]:
        lines.append(f"  media source     local fake Graph API at {state['meta_graph_url']} (no Meta token set)")
    lines += [
        "",
        "Try it from another terminal (the venv need not be active); each line runs as it is:",
        *(f"  {line}" for line in shell_setup(data_dir, cwd)),
        "  # send a signed image webhook, then show the archived record",
        f"  {cli} demo",
        f"  {cli} search --json",
        "",
        "A token for each role (printed once by the command: keep it; `tokens revoke NAME` ends it):",
        f"  # auditor: search, read, download receipts and exports, read the access log at {base}/ui/"
        f" and {base}/api/v1/; the second line prints a link that signs a browser in once (10 minutes)",
        f"  {cli} tokens create --role auditor --name {names['auditor']}",
        f"  {cli} tokens sign-in-link --name {names['auditor']}",
        f"  # sender: the send proxy at {base}/graph/<phone-number-id>/messages and POST {base}/api/v1/outbound",
        f"  {cli} tokens create --role sender --name {names['sender']}",
        f"  # operator: the failures page at {base}/ui/failures and decoding payloads in the Temporal UI",
        f"  {cli} tokens create --role operator --name {names['operator']}",
        "  # admin: every page and API call, tokens and policies included",
        f"  {cli} tokens create --role admin --name {names['admin']}",
        "",
    ]
    return "\n".join(lines)
