"""What the `wa-archive` commands share: settings that find a running `dev`, the database pool,
strict dates, access logging of CLI reads, and following a workflow with a progress bar."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from wa_archive.config import Settings
from wa_archive.errors import ConfigError, FilterError

if TYPE_CHECKING:
    import asyncpg

T = TypeVar("T")


# The one rule for dates (wa_archive/dates.py), as the commands' help says it.
SINCE_HELP = "a date (from its 00:00 UTC) or an ISO timestamp (inclusive)"
UNTIL_HELP = "a date (that whole day included, UTC) or an ISO timestamp (exclusive)"


def parse_when_arg(value: str) -> datetime:
    """--since (and other start times): a date's 00:00 UTC or an ISO timestamp (UTC if no offset)."""
    from wa_archive.dates import parse_when

    try:
        return parse_when(value)
    except FilterError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None


def parse_until_arg(value: str) -> datetime:
    """--until: the end of a date's whole day (the next day's 00:00 UTC) or an ISO timestamp (exclusive)."""
    from wa_archive.dates import parse_until

    try:
        return parse_until(value)
    except FilterError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None


def period_refusal(args: argparse.Namespace) -> str | None:
    """Why a command's --since/--until select nothing (an inverted or empty period), or None."""
    from wa_archive.dates import check_period

    try:
        check_period(getattr(args, "since", None), getattr(args, "until", None))
    except FilterError as exc:
        return f"--{exc}"
    return None


def with_dev_defaults(settings: Settings) -> Settings:
    """Point read commands at a running `dev` stack when no database or Temporal is configured."""
    from wa_archive.devstack.dev import dev_state

    state = dev_state(settings.data_dir.resolve())
    if state is None:
        return settings
    updates = {}
    if not settings.database_url:
        updates["database_url"] = state["database_url"]
    if not _temporal_configured(settings):
        updates["temporal_address"] = state["temporal_address"]
    return settings.model_copy(update=updates)


def _temporal_configured(settings: Settings) -> bool:
    """Whether the settings or a Temporal profile name a Temporal; a broken profile counts as named,
    so that connecting reports it (and commands that only read the database are not stopped by it)."""
    from wa_archive.temporal.connection import configured_address

    try:
        return configured_address(settings) is not None
    except ConfigError:
        return True


async def open_pool(settings: Settings) -> asyncpg.Pool:
    from wa_archive.devstack.dev import DATA_DIR_HINT
    from wa_archive.devstack.runtime import connect_db

    settings = with_dev_defaults(settings)
    if not settings.database_url:
        raise ConfigError(
            "WA_ARCHIVE_DATABASE_URL is not set and no `wa-archive dev` is running under "
            f"{settings.data_dir.resolve()}; {DATA_DIR_HINT}"
        )
    return await connect_db(settings, max_size=2)


def cli_actor() -> str:
    """Who is acting from the command line: the local user's name."""
    import getpass

    return f"cli:{getpass.getuser()}"


async def log_cli_access(pool: asyncpg.Pool, action: str, target: dict[str, Any]) -> None:
    """CLI reads are reads of the archive too: recorded under the local user's name."""
    from wa_archive.access.access_log import record_access

    await record_access(pool, actor=cli_actor(), role="cli", action=action, target=target, remote_addr="local")


def print_json(document: Any) -> None:
    """`--json`: one JSON document on stdout (dates as ISO text); everything else goes to stderr."""
    print(json.dumps(document, indent=2, ensure_ascii=False, default=str))


def add_json_options(sub: argparse._SubParsersAction[argparse.ArgumentParser], *commands: str) -> None:
    """Give the named commands ("verify", "tokens revoke") a --json flag, for commands whose parsers
    are declared beside the others in cli/__init__.py."""
    for command in commands:
        parser = sub.choices[command.split()[0]]
        for name in command.split()[1:]:
            nested = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            parser = nested.choices[name]
        parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def show_progress(done: int, total: int, unit: str = "messages") -> None:
    width = 30
    filled = width if total == 0 else int(width * done / total)
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {unit}", end="", file=sys.stderr,
          flush=True)


async def follow(result: Awaitable[T], progress: Callable[[], Awaitable[dict[str, Any] | None]],
                 unit: str) -> T:
    """Await a workflow's result, redrawing a progress bar from `progress()` ({done, total}) meanwhile."""
    waiter = asyncio.ensure_future(result)
    while not waiter.done():
        await asyncio.wait([waiter], timeout=0.5)
        if not waiter.done():
            current = await progress()
            if current:
                show_progress(current["done"], current["total"], unit)
    return waiter.result()




def file_to_check(path: str, what: str) -> bool:
    """Whether `path` is a file a verify command can read; otherwise says what is wrong with the path
    itself (exit status 2), so that a typo is never reported as a failed verification."""
    from pathlib import Path

    given = Path(path)
    if not given.exists():
        print(f"wa-archive: {path} does not exist (no such file): check the path of the {what}", file=sys.stderr)
    elif given.is_dir():
        print(f"wa-archive: {path} is a folder, not a {what} file", file=sys.stderr)
    elif not os.access(given, os.R_OK):
        print(f"wa-archive: {path}: not readable by this user", file=sys.stderr)
    else:
        return True
    return False
