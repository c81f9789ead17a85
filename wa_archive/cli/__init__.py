"""The `wa-archive` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

from wa_archive.cli.access import COMMANDS as ACCESS_COMMANDS
from wa_archive.cli.access import add_parsers as add_access_parsers
from wa_archive.cli.capture_health import COMMANDS as CAPTURE_HEALTH_COMMANDS
from wa_archive.cli.capture_health import add_parsers as add_capture_health_parsers
from wa_archive.cli.consent import COMMANDS as CONSENT_COMMANDS
from wa_archive.cli.consent import add_parsers as add_consent_parsers
from wa_archive.cli.export import cmd_export, cmd_verify_export
from wa_archive.cli.integrity import (
    cmd_ledger,
    cmd_receipt,
    cmd_retrieval_test,
    cmd_retrieval_tests,
    cmd_schedules,
    cmd_verify,
    cmd_verify_receipt,
)
from wa_archive.cli.keys import add_parsers as add_keys_parsers
from wa_archive.cli.keys import cmd_keys
from wa_archive.cli.lookup_keys import COMMANDS as LOOKUP_KEY_COMMANDS
from wa_archive.cli.lookup_keys import add_parsers as add_lookup_key_parsers
from wa_archive.cli.processes import COMMANDS as PROCESS_COMMAND_FUNCTIONS
from wa_archive.cli.processes import add_parsers as add_process_parsers
from wa_archive.cli.processes import process_settings
from wa_archive.cli.reconciliation import COMMANDS as RECONCILIATION_COMMANDS
from wa_archive.cli.reconciliation import add_parsers as add_reconciliation_parsers
from wa_archive.cli.redrive import COMMANDS as REDRIVE_COMMANDS
from wa_archive.cli.redrive import add_parsers as add_redrive_parsers
from wa_archive.cli.retention import COMMANDS as RETENTION_COMMANDS
from wa_archive.cli.retention import add_parsers as add_retention_parsers
from wa_archive.cli.support import (
    SINCE_HELP,
    UNTIL_HELP,
    add_json_options,
    log_cli_access,
    open_pool,
    parse_until_arg,
    parse_when_arg,
    period_refusal,
)
from wa_archive.config import Settings, load_settings
from wa_archive.errors import ConfigError, ConfigProblems

# Commands --------------------------------------------------------------------------------------


async def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.db.queries import get_message

    pool = await open_pool(settings)
    try:
        await log_cli_access(pool, "view", {"message_id": args.message_id})
        message = await get_message(pool, args.message_id)
    finally:
        await pool.close()
    if message is None:
        print(f"wa-archive: no archived message with id {args.message_id!r}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(message, indent=2, ensure_ascii=False))
    else:
        _print_message(message, full=True)
    return 0


async def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.archive.keys import normalize_phone
    from wa_archive.db.queries import search_messages

    phone = None
    if args.phone is not None:
        phone = normalize_phone(args.phone)
        if phone is None:
            print(f"wa-archive: --phone {args.phone!r} is not a phone number", file=sys.stderr)
            return 2
    pool = await open_pool(settings)
    try:
        await log_cli_access(pool, "search", {k: str(v) for k, v in vars(args).items()
                                               if k in ("phone", "since", "until", "template", "direction",
                                                        "limit", "consent") and v is not None})
        found = await search_messages(pool, phone=phone, since=args.since, until=args.until,
                                      limit=args.limit, template=args.template,
                                      direction=args.direction, consent=args.consent)
    finally:
        await pool.close()
    if args.json:
        print(json.dumps(found, indent=2, ensure_ascii=False))
    else:
        for message in found:
            _print_message(message, full=False)
        print(f"{len(found)} message(s)")
    return 0


async def cmd_failures(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.db.queries import list_failures

    pool = await open_pool(settings)
    try:
        await log_cli_access(pool, "failures", {})
        failures = await list_failures(pool)
    finally:
        await pool.close()
    if args.json:
        print(json.dumps(failures, indent=2))
        return 0
    for f in failures:
        print(f"{f['created_at']}  {f['message_id']}  stage={f['stage']}  media={f['media_id']}  "
              f"{f['last_error_type']}: {f['last_error']}")
        for a in f["attempts"]:
            status = f" HTTP {a['http_status']}" if a["http_status"] else ""
            print(f"    attempt {a['attempt']} at {a['at']}{status}  {a['error_type']}: {a['error']}")
    print(f"{len(failures)} critical failure(s)")
    return 0


async def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.db.queries import get_message
    from wa_archive.devstack.dev import run_demo

    message_id = await run_demo(settings)
    pool = await open_pool(settings)
    try:
        for _ in range(300):
            message = await get_message(pool, message_id)
            if message is not None:
                _print_message(message, full=True)
                print(f"\nwa-archive show '{message_id}' --json   prints it again as JSON")
                return 0
            await asyncio.sleep(0.1)
    finally:
        await pool.close()
    print(f"wa-archive: {message_id} was not archived within 30 s; see the Temporal UI", file=sys.stderr)
    return 1


def _print_message(m: dict[str, Any], *, full: bool) -> None:
    contact = m["contact"]
    who = contact["phone"] or contact["wa_id"] or contact["user_id"] or contact["username"] or "?"
    text = (m.get("text") or "").replace("\n", " ")
    print(f"{m['timestamp']}  {m['direction']:>3}  {who:<16} {m['type']:<12} {m['id']}")
    if text:
        print(f"    {text[:200]}")
    for media in m["media"]:
        print(f"    media {media['id']} [{media['status']}] {media['mime_type']} {media['size']} bytes "
              f"sha256={media['sha256']} key={media['storage_key']}")
    if full:
        if m["flags"]:
            print(f"    flags: {', '.join(m['flags'])}")
        for d in m.get("deliveries", []):
            signed = d["signature"] or "none (a shared-secret source: the secret is not kept)"
            print(f"    delivery {d['sha256']} received {d['received_at']} signature {signed}")
        for s in m.get("statuses", []):
            print(f"    status {s['status']} at {s['timestamp']}")


# Parser ----------------------------------------------------------------------------------------

COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], Awaitable[int]]] = {
    **PROCESS_COMMAND_FUNCTIONS,
    "show": cmd_show, "search": cmd_search, "failures": cmd_failures,
    "demo": cmd_demo, "keys": cmd_keys,
    **ACCESS_COMMANDS,
    **LOOKUP_KEY_COMMANDS,
    "export": cmd_export, "verify-export": cmd_verify_export,
    "ledger": cmd_ledger, "receipt": cmd_receipt, "verify-receipt": cmd_verify_receipt, "verify": cmd_verify,
    "schedules": cmd_schedules, "retrieval-tests": cmd_retrieval_tests, "retrieval-test": cmd_retrieval_test,
    **RETENTION_COMMANDS,
    **RECONCILIATION_COMMANDS,
    **CAPTURE_HEALTH_COMMANDS,
    **CONSENT_COMMANDS,
    **REDRIVE_COMMANDS,
}


PUBLIC_KEY_HELP = ("the ledger's public key (base64 as `ledger public-key` prints it, or hex), held apart "
                   "from the archive; or WA_ARCHIVE_LEDGER_PUBLIC_KEY")


def installed_version() -> str:
    """The version of the installed distribution (pyproject.toml's, as pip recorded it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wa-archive")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser that answers a mistyped command with the closest one ("did you mean search?")
    instead of every command it knows; its subcommand parsers are of this class too."""

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if isinstance(action, argparse._SubParsersAction) and value not in action.choices:
            import difflib

            close = difflib.get_close_matches(str(value), list(action.choices), n=1)
            hint = f"did you mean {close[0]}?" if close else f"`{self.prog} --help` lists them"
            raise argparse.ArgumentError(action, f"unknown command {value!r}; {hint}")
        super()._check_value(action, value)


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="wa-archive", description="WhatsApp compliance archive")
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    # A metavar: the usage line (printed with every error) names COMMAND, not all of them.
    # Its parsers are CommandParsers (argparse's default class is the parent's); typed as the base for the
    # add_parsers functions of the other CLI modules.
    sub = cast("argparse._SubParsersAction[argparse.ArgumentParser]",
               parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    add_process_parsers(sub)
    show = sub.add_parser("show", help="show one archived message")
    show.add_argument("message_id", metavar="WAMID")
    show.add_argument("--json", action="store_true")
    search = sub.add_parser("search", help="search archived messages, newest first")
    search.add_argument("--phone")
    search.add_argument("--since", type=parse_when_arg, help=SINCE_HELP)
    search.add_argument("--until", type=parse_until_arg, help=UNTIL_HELP)
    search.add_argument("--limit", type=int, default=100)
    search.add_argument("--template", help="template name (outbound template messages)")
    search.add_argument("--direction", choices=("in", "out"))
    search.add_argument("--consent", choices=("opted_in", "opted_out", "unknown"),
                        help="outbound messages by the recipient's consent when they were sent")
    search.add_argument("--json", action="store_true")
    failures = sub.add_parser("failures", help="critical archive failures with their attempts")
    failures.add_argument("--json", action="store_true")
    sub.add_parser("demo", help="send a signed demo image webhook to a running `wa-archive dev`")
    export = sub.add_parser("export", help="eDiscovery bundle (ZIP) of the messages selected")
    export.add_argument("--phone")
    export.add_argument("--since", type=parse_when_arg, help=SINCE_HELP)
    export.add_argument("--until", type=parse_until_arg, help=UNTIL_HELP)
    export.add_argument("--out", required=True, help="path of the ZIP to write")
    export.add_argument("--local", action="store_true",
                        help="build the bundle in this process instead of as a Temporal workflow")
    verify = sub.add_parser("verify-export", help="check a bundle's signed manifest, hashes, receipts and checkpoints")
    verify.add_argument("bundle")
    verify.add_argument("--public-key", help=PUBLIC_KEY_HELP)
    ledger_p = sub.add_parser("ledger", help="the tamper-evident ledger")
    ledger_p.add_argument("action", choices=("public-key", "checkpoint"))
    receipt_p = sub.add_parser("receipt", help="a message's record digest with an inclusion proof (JSON)")
    receipt_p.add_argument("message_id", metavar="MESSAGE-ID")
    vr = sub.add_parser("verify-receipt", help="check a receipt offline, without the database")
    vr.add_argument("file")
    vr.add_argument("--public-key", help=PUBLIC_KEY_HELP)
    verify_p = sub.add_parser("verify", help="recompute the ledger from Postgres, check checkpoints against "
                                             "their store copies, re-hash objects")
    verify_p.add_argument("--public-key", help=PUBLIC_KEY_HELP + "; default: derived from the signing key")
    group = verify_p.add_mutually_exclusive_group()
    group.add_argument("--sample", type=int, help="re-hash N random objects")
    group.add_argument("--full", action="store_true", help="re-hash every object")
    schedules = sub.add_parser("schedules", help="Temporal Schedules of the archive")
    schedules.add_argument("action", choices=("apply",), help="create or update them (idempotent)")
    reports = sub.add_parser("retrieval-tests", help="reports of the retrieval tests")
    reports.add_argument("--json", action="store_true")
    rtest = sub.add_parser("retrieval-test", help="run a retrieval test now and follow it")
    rtest.add_argument("action", choices=("run",))
    rtest.add_argument("--sample", type=int, help="objects to read back (default WA_ARCHIVE_RETRIEVAL_SAMPLE)")
    add_access_parsers(sub)
    add_lookup_key_parsers(sub)
    add_keys_parsers(sub)
    add_retention_parsers(sub)
    add_reconciliation_parsers(sub)
    add_capture_health_parsers(sub)
    add_consent_parsers(sub)
    add_redrive_parsers(sub)
    add_json_options(sub, "migrate", "contact-key", "tokens revoke", "export", "verify-export", "ledger", "receipt",
                     "verify-receipt", "verify", "schedules", "retrieval-test")
    return parser


def _event_loop_run(coro: Awaitable[int]) -> int:
    """Run on uvloop: the webhook's HTTP parsing and the Postgres driver are markedly cheaper on it,
    which is what decides ingest throughput on a small machine."""
    import uvloop

    return uvloop.run(coro)  # type: ignore[arg-type]


# Long-running processes whose stderr is a log stream: even how they end is a JSON line.
PROCESS_COMMANDS = frozenset({"dev", "serve", "worker"})


def _run_process(args: argparse.Namespace) -> int:
    """Run a long-running command with every line on stderr JSON, its failure (and its traceback,
    as a field) included."""
    import structlog

    from wa_archive.logs import configure_logging

    configure_logging("INFO")  # until the settings are read: their errors are logged too
    log = structlog.get_logger("wa_archive.cli")
    try:
        settings = process_settings(args.command)
        configure_logging(settings.log_level)
        return _event_loop_run(COMMANDS[args.command](settings, args))
    except ConfigError as exc:
        log.error("configuration_error", error=str(exc),
                  problems=exc.problems if isinstance(exc, ConfigProblems) else [str(exc)])
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the process ends here; its traceback goes into the log line
        log.exception("process_failed", command=args.command, error=str(exc))
        return 1


def _config_error_text(exc: ConfigError) -> str:
    """One line for one problem; a header and one line per problem for several."""
    problems = exc.problems if isinstance(exc, ConfigProblems) else [str(exc)]
    if len(problems) == 1:
        return f"wa-archive: configuration error: {problems[0]}"
    return f"wa-archive: {len(problems)} configuration problems:\n" + "\n".join(f"  - {p}" for p in problems)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "limit", 1) is not None and getattr(args, "limit", 1) < 1:
        print("wa-archive: --limit must be at least 1", file=sys.stderr)
        return 2
    refused = period_refusal(args)  # an inverted --since/--until is refused, never "0 message(s)"
    if refused:
        print(f"wa-archive: {refused}", file=sys.stderr)
        return 2
    if args.command in PROCESS_COMMANDS:
        return _run_process(args)
    try:
        settings = load_settings()
        from wa_archive.logs import configure_logging

        configure_logging(settings.log_level)
        return _event_loop_run(COMMANDS[args.command](settings, args))
    except ConfigError as exc:
        print(_config_error_text(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except (OSError, RuntimeError) as exc:
        print(f"wa-archive: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - e.g. asyncpg's errors: one line, not a traceback
        if type(exc).__module__.startswith("asyncpg"):
            print(f"wa-archive: database error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
