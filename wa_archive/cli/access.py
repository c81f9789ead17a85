"""Who may read the archive and who did: API tokens (`tokens create|list|revoke|sign-in-link`) and the
access log (`access-log`), every read and every refused attempt."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable

from wa_archive.cli.sign_in_link import add_parser as add_sign_in_link_parser
from wa_archive.cli.sign_in_link import cmd_sign_in_link
from wa_archive.cli.support import SINCE_HELP, UNTIL_HELP, log_cli_access, open_pool, parse_until_arg, parse_when_arg
from wa_archive.config import Settings
from wa_archive.errors import TokenError


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


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], Awaitable[int]]] = {
    "tokens": cmd_tokens, "access-log": cmd_access_log}
