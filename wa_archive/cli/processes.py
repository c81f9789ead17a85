"""The long-running commands (`dev`, `worker`, `serve`) and `migrate`: what a deployment starts. Each
runs until SIGINT or SIGTERM; `worker` and `serve` have their whole configuration checked first."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable

from wa_archive.cli.support import with_dev_defaults
from wa_archive.config import Settings
from wa_archive.errors import ConfigProblems


async def _run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await main(stop)


async def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.devstack.dev import run_dev
    from wa_archive.errors import DevAlreadyRunning

    try:
        await _run_until_signal(lambda stop: run_dev(settings, stop))
    except DevAlreadyRunning as exc:
        # A refusal, not a crash, and for the person at the terminal: one plain line, no traceback,
        # and not a log line (whose free text is scrubbed: a seven-digit pid would read as a number).
        print(f"wa-archive dev: {exc}", file=sys.stderr)
        return 1
    return 0


async def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from worker import run_worker

    await _run_until_signal(lambda stop: run_worker(settings, stop))
    return 0


async def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.devstack.serve import serve_forever

    await _run_until_signal(lambda stop: serve_forever(settings, stop))
    return 0


async def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    import structlog

    from wa_archive.db import migrate

    dsn = settings.migrate_database_url or _dev_owner_url(settings)
    if not dsn:
        settings = with_dev_defaults(settings)
        settings.require("database_url")
        dsn = settings.database_url
        structlog.get_logger().warning(
            "migrate.no_owner_url", detail="WA_ARCHIVE_MIGRATE_DATABASE_URL is not set:"
            " migrating with WA_ARCHIVE_DATABASE_URL, which must then be the schema owner's")
    applied = await migrate(dsn, app_role=settings.database_app_role)  # type: ignore[arg-type]
    if args.json:
        print(json.dumps({"applied": applied}))
        return 0
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def _dev_owner_url(settings: Settings) -> str | None:
    """The owner's URL of a running `wa-archive dev`, when no database is configured."""
    from wa_archive.devstack.dev import dev_state

    state = dev_state(settings.data_dir.resolve()) if not settings.database_url else None
    return state.get("migrate_database_url") if state else None


def process_settings(command: str) -> Settings:
    """The settings of a long-running command, its whole configuration checked before anything is
    touched: one ConfigProblems names every invalid value and everything `worker` or `serve` lacks."""
    from wa_archive.config import read_settings

    settings, invalid = read_settings()
    if command in ("worker", "serve"):
        from wa_archive.devstack.preflight import check_configuration

        check_configuration(settings, command, invalid)
    elif invalid:
        raise ConfigProblems(invalid)
    return settings


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser("dev", help="run the embedded stack (Temporal, PostgreSQL, worker, webhook)")
    sub.add_parser("worker", help="run a worker against the configured Temporal, Postgres and store")
    sub.add_parser("serve", help="run the webhook and health HTTP server")
    sub.add_parser("migrate", help="apply database migrations as the schema owner (WA_ARCHIVE_MIGRATE_DATABASE_URL)"
                   " and grant the application role what it uses")


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], Awaitable[int]]] = {
    "dev": cmd_dev, "worker": cmd_worker, "serve": cmd_serve, "migrate": cmd_migrate}
