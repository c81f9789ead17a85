"""The `wa-archive` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

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
from wa_archive.cli.reconciliation import COMMANDS as RECONCILIATION_COMMANDS
from wa_archive.cli.reconciliation import add_parsers as add_reconciliation_parsers
from wa_archive.cli.redrive import COMMANDS as REDRIVE_COMMANDS
from wa_archive.cli.redrive import add_parsers as add_redrive_parsers
from wa_archive.cli.retention import COMMANDS as RETENTION_COMMANDS
from wa_archive.cli.retention import add_parsers as add_retention_parsers
from wa_archive.cli.sign_in_link import add_parser as add_sign_in_link_parser
from wa_archive.cli.sign_in_link import cmd_sign_in_link
from wa_archive.cli.support import (
    SINCE_HELP,
    UNTIL_HELP,
    add_json_options,
    log_cli_access,
    open_pool,
    parse_until_arg,
    parse_when_arg,
    period_refusal,
    with_dev_defaults,
)
from wa_archive.config import Settings, load_settings
from wa_archive.errors import ConfigError, ConfigProblems, TokenError


async def _run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await main(stop)


# Commands --------------------------------------------------------------------------------------


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


async def cmd_tokens(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.access import tokens

    if args.tokens_command == "sign-in-link":
        return await cmd_sign_in_link(settings, args)
    pool = await open_pool(settings)
    try:
        if args.tokens_command == "create":
            token = await tokens.create_token(pool, args.name, args.role)
            if args.json:
                print(json.dumps({"token": token, "name": args.name, "role": args.role}))
            else:
                print(token)
                print(f"token for {args.name!r} ({args.role}); it is shown only now, store it safely",
                      file=sys.stderr)
        elif args.tokens_command == "list":
            listed = await tokens.list_tokens(pool)
            if args.json:
                print(json.dumps(listed, indent=2))
            else:
                for t in listed:
                    state = f"revoked {t['revoked_at']}" if t["revoked_at"] else "active"
                    print(f"{t['name']:<24} {t['role']:<9} created {t['created_at']}  {state}")
        else:
            await tokens.revoke_token(pool, args.name)
            print(json.dumps({"revoked": args.name}) if args.json else f"revoked {args.name!r}")
    except TokenError as exc:
        print(f"wa-archive: {exc}", file=sys.stderr)
        return 2
    finally:
        await pool.close()
    return 0


async def cmd_access_log(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.access.access_log import list_access
    from wa_archive.access.wording import source

    since, until = args.since, args.until  # checked by main(): --limit at least 1, the period not empty
    pool = await open_pool(settings)
    try:
        # Reading who read the archive is itself a read: the entry is written first and is listed too.
        await log_cli_access(pool, "access-log", {
            "since": since.isoformat() if since else None, **({"until": until.isoformat()} if until else {}),
            **({"outcome": args.outcome} if args.outcome else {})})
        entries = await list_access(pool, since=since, until=until, outcome=args.outcome, limit=args.limit)
    finally:
        await pool.close()
    if args.json:
        print(json.dumps(entries, indent=2, ensure_ascii=False))
        return 0
    for e in entries:
        refused = "  REFUSED" if e["outcome"] == "refused" else ""
        print(f"{e['at'][:19].replace('T', ' ')} UTC  {e['actor']} ({e['role']}){refused}  {e['description']}"
              f"  — from {source(e['remote_addr'])}")
    print(f"{len(entries)} access(es)" + (f" (the first {args.limit}; narrow with --since/--until)"
                                          if len(entries) == args.limit else ""))
    return 0


async def cmd_contact_key(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.archive.keys import contact_key
    from wa_archive.credentials import contact_secret
    from wa_archive.names import CONTACT_KEY

    key = contact_key(contact_secret(settings), args.contact)
    if args.json:
        print(json.dumps({"contact_key": key, "search_attribute": CONTACT_KEY.name}))
        return 0
    print(key)
    print(f"Temporal UI query: {CONTACT_KEY.name} = '{key}'", file=sys.stderr)
    return 0


async def cmd_message_key(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.archive.keys import message_key, message_workflow_id, outbound_workflow_id
    from wa_archive.credentials import contact_secret
    from wa_archive.names import MESSAGE_ID

    secret = contact_secret(settings)
    key = message_key(secret, args.message_id)
    if args.json:
        print(json.dumps({"message_key": key, "inbound_workflow_id": message_workflow_id(secret, args.message_id),
                          "outbound_workflow_id": outbound_workflow_id(secret, args.message_id)}))
        return 0
    print(key)
    print(f"Temporal UI query: {MESSAGE_ID.name} = '{key}'\n"
          f"workflow id: {message_workflow_id(secret, args.message_id)} (received or WASender message), "
          f"{outbound_workflow_id(secret, args.message_id)} (outbound message)", file=sys.stderr)
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
    "dev": cmd_dev, "worker": cmd_worker, "serve": cmd_serve, "migrate": cmd_migrate,
    "show": cmd_show, "search": cmd_search, "failures": cmd_failures,
    "contact-key": cmd_contact_key, "message-key": cmd_message_key, "demo": cmd_demo, "tokens": cmd_tokens,
    "access-log": cmd_access_log, "keys": cmd_keys,
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
    sub.add_parser("dev", help="run the embedded stack (Temporal, PostgreSQL, worker, webhook)")
    sub.add_parser("worker", help="run a worker against the configured Temporal, Postgres and store")
    sub.add_parser("serve", help="run the webhook and health HTTP server")
    sub.add_parser("migrate", help="apply database migrations as the schema owner (WA_ARCHIVE_MIGRATE_DATABASE_URL)"
                   " and grant the application role what it uses")
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
    ck = sub.add_parser("contact-key", help="the keyed contact hash used in Temporal search attributes")
    ck.add_argument("contact", help="phone number or other contact id")
    mk = sub.add_parser("message-key", help="the keyed message hash Temporal holds: search attribute and workflow ids")
    mk.add_argument("message_id", metavar="MESSAGE-ID", help="a wamid or a WASender message id")
    mk.add_argument("--json", action="store_true")
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
    access = sub.add_parser("access-log", help="every read of the archive: who, what, when, from where")
    access.add_argument("--since", type=parse_when_arg, help=SINCE_HELP)
    access.add_argument("--until", type=parse_until_arg, help=UNTIL_HELP)
    access.add_argument("--outcome", choices=("allowed", "refused"),
                        help="only allowed reads, or only refused attempts")
    access.add_argument("--limit", type=int, default=10000, help="at most this many entries, oldest first")
    access.add_argument("--json", action="store_true")
    tokens = sub.add_parser("tokens", help="API tokens for the send proxy, record API and auditors")
    tsub = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tsub.add_parser("create", help="create a token; it is printed once")
    create.add_argument("--role", required=True, choices=("sender", "auditor", "operator", "admin"))
    create.add_argument("--name", required=True)
    create.add_argument("--json", action="store_true")
    tlist = tsub.add_parser("list", help="list tokens (never the tokens themselves)")
    tlist.add_argument("--json", action="store_true")
    revoke = tsub.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name")
    add_sign_in_link_parser(tsub)
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
        settings = _process_settings(args.command)
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


def _process_settings(command: str) -> Settings:
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
