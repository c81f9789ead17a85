"""`wa-archive retention | hold | disposition | erasure | storage`: keeping records as long as the
law requires, freezing them for a case, removing them when due, and proving the store enforces it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from wa_archive.cli.support import (
    SINCE_HELP,
    UNTIL_HELP,
    cli_actor,
    log_cli_access,
    open_pool,
    parse_until_arg,
    parse_when_arg,
    show_progress,
    with_dev_defaults,
)
from wa_archive.config import Settings
from wa_archive.errors import ErasureError, HoldError

if TYPE_CHECKING:
    import asyncpg

    from wa_archive.retention.disposition import Disposer
    from wa_archive.storage import ObjectStore
    from wa_archive.storage.posture import Finding


@asynccontextmanager
async def _pool_and_store(settings: Settings) -> AsyncIterator[tuple[asyncpg.Pool, ObjectStore]]:
    from wa_archive.storage import open_store

    settings = with_dev_defaults(settings)
    pool = await open_pool(settings)
    store = open_store(settings)
    try:
        yield pool, store
    finally:
        await store.close()
        await pool.close()


def _emit(data: Any, as_json: bool, lines: Callable[[Any], object]) -> None:
    if as_json:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        lines(data)


def _disposer(pool: asyncpg.Pool, store: ObjectStore, settings: Settings) -> Disposer:
    from wa_archive.archive.keys import contact_key
    from wa_archive.credentials import contact_secret
    from wa_archive.retention.disposition import Disposer

    try:
        secret = contact_secret(settings)
    except Exception:  # noqa: BLE001 - without the secret, records carry no contact hash
        secret = None
    return Disposer(pool, store, (lambda c: contact_key(secret, c)) if secret else None)


# retention ---------------------------------------------------------------------------------------


async def cmd_retention(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.retention import policies as retention

    async with _pool_and_store(settings) as (pool, store):
        if args.retention_command == "list":
            policies = await retention.list_policies(pool, settings.retention_days)
            _emit(policies, args.json, lambda ps: [print(
                f"{p['scope']:<18} {p['days']:>6} days  {p['legal_basis']}"
                f"  (policy {p['id'] or '-'}, set by {p['set_by']})")
                for p in ps])
            return 0
        scope = retention.scope_of(None if args.default else args.business_phone)
        changed = await retention.set_policy(pool, scope=scope, days=args.days, legal_basis=args.basis,
                                             set_by=cli_actor())
        previous = changed["previous"]["days"] if changed["previous"] else (
            settings.retention_days if scope == retention.DEFAULT_SCOPE else None)
        await log_cli_access(pool, "retention.set", {"scope": scope, "days": args.days, "basis": args.basis,
                                                     "previous_days": previous})
        messages, objects = await retention.extend_existing(
            pool, store, scope=scope, days=args.days, policy_id=changed["policy"]["id"],
            on_progress=lambda d, t: show_progress(d, t, "objects"))
        if objects:
            print(file=sys.stderr)  # end the progress line
        changed.update(extended_messages=messages, extended_objects=objects)
        _emit(changed, args.json, lambda c: print(
            f"policy {c['policy']['id']}: {scope} keeps records {args.days} days ({args.basis}); "
            f"retention extended on {messages} messages and {objects} objects"
            + ("" if previous is None or args.days >= previous else
               f"; shorter than before ({previous} days): applies to new records only, none is shortened")))
    return 0


# hold --------------------------------------------------------------------------------------------


async def cmd_hold(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.retention import holds

    async with _pool_and_store(settings) as (pool, store):
        try:
            if args.hold_command == "set":
                result = await holds.set_hold(pool, store, case_id=args.case, phone=args.phone, since=args.since,
                                              until=args.until, reason=args.reason, actor=cli_actor(), role="cli")
                _emit(result, args.json, lambda r: print(
                    f"case {r['case']}: {r['messages']} messages of +{r['phone']} on hold "
                    f"({r['objects_changed']} objects held in the store); later messages are held from the start"))
            elif args.hold_command == "release":
                result = await holds.release_hold(pool, store, case_id=args.case, actor=cli_actor(), role="cli")
                _emit(result, args.json, lambda r: print(
                    f"case {r['case']} released: {r['messages']} messages ({r['objects_changed']} objects "
                    "released in the store, unless another case still holds them)"))
            else:
                listed = await holds.list_holds(pool, include_released=not args.active)
                await log_cli_access(pool, "hold.list", {"active_only": args.active})
                _emit(listed, args.json, lambda hs: [print(
                    f"{h['case']:<16} {h['status']:<8} +{h['phone']:<15} {h['since'] or '…'} → {h['until'] or 'open'}"
                    f"  {h['messages']} messages  {h['reason']}") for h in hs] or print("no legal holds"))
        except HoldError as exc:
            print(f"wa-archive: {exc}", file=sys.stderr)
            return 2
    return 0


# disposition -------------------------------------------------------------------------------------


async def cmd_disposition(settings: Settings, args: argparse.Namespace) -> int:
    if args.disposition_command == "run":
        return await _disposition_run(settings, args)
    from wa_archive.archive.keys import normalize_phone
    from wa_archive.retention.disposition import list_dispositions

    async with _pool_and_store(settings) as (pool, store):
        if args.disposition_command == "list":
            records = await list_dispositions(pool, since=args.since)
            await log_cli_access(pool, "disposition.list", {"since": args.since.isoformat() if args.since else None})
            _emit(records, args.json, lambda rs: [print(
                f"{r['disposed_at']}  {r['reason']:<17} {r['message_id']}  retained until {r['retain_until']}"
                f"  policy {r['policy_id'] or 'default'}  {len(r['record']['media'])} objects") for r in rs]
                or print("nothing has been disposed of"))
            return 0
        disposer = _disposer(pool, store, settings)
        due = await disposer.due(phone=normalize_phone(args.phone) if args.phone else None, limit=args.limit)
        held = await disposer.held_past_retention()
        unset = await pool.fetchval("SELECT count(*) FROM messages WHERE retain_until IS NULL")
        await log_cli_access(pool, "disposition.plan", {"phone": args.phone})
        plan = {"due": due, "count": len(due), "bytes": sum(d["bytes"] for d in due),
                "held_past_retention": held, "without_retention_yet": unset}
        _emit(plan, args.json, _print_plan)
    return 0


def _print_plan(plan: dict[str, Any]) -> None:
    for d in plan["due"]:
        print(f"{d['retain_until']}  {d['direction']:>3}  {d['id']}  {d['objects']} objects, {d['bytes']} bytes")
    print(f"the next disposition run would remove {plan['count']} messages ({plan['bytes']} bytes of media)")
    if plan["held_past_retention"]:
        print(f"{plan['held_past_retention']} messages past retention are kept: on legal hold")
    if plan["without_retention_yet"]:
        print(f"{plan['without_retention_yet']} messages archived before retention was recorded get the policy in"
              " force at the next run (and are removed then if already past it)")


async def _disposition_run(settings: Settings, args: argparse.Namespace) -> int:
    import uuid

    from wa_archive.archive.keys import normalize_phone
    from wa_archive.models import DispositionInput, DispositionReport
    from wa_archive.temporal.client import connect_temporal

    settings = with_dev_defaults(settings)
    client = await connect_temporal(settings)
    handle = await client.start_workflow(
        "Disposition", DispositionInput(batch=settings.disposition_batch,
                                        phone=normalize_phone(args.phone) if args.phone else None),
        id=f"disposition-now-{uuid.uuid4().hex[:12]}", task_queue=settings.task_queue, result_type=DispositionReport)
    print(f"disposition started: {handle.id}", file=sys.stderr)
    report = await handle.result()
    _emit(report.model_dump(), args.json, lambda r: print(
        f"removed {r['removed']} messages ({r['bytes']} bytes of media); {len(r['deferred'])} still locked in the "
        f"store; {r['erasures_completed']} erasure requests completed"))
    return 0


# erasure -----------------------------------------------------------------------------------------


async def cmd_erasure(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.retention import erasure
    from wa_archive.retention.policies import DEFAULT_BASIS

    async with _pool_and_store(settings) as (pool, store):
        if args.erasure_command == "request":
            try:
                result = await erasure.request_erasure(pool, _disposer(pool, store, settings), phone=args.phone,
                                                       reason=args.reason, actor=cli_actor(), role="cli",
                                                       default_basis=DEFAULT_BASIS)
            except ErasureError as exc:
                print(f"wa-archive: {exc}", file=sys.stderr)
                return 2
            _emit(result, args.json, _print_request)
            return 0
        requests = await erasure.list_requests(pool)
        await log_cli_access(pool, f"erasure.{args.erasure_command}", {})
        if args.erasure_command == "export":
            fmt = "jsonl" if args.out.endswith((".jsonl", ".json")) else "csv"
            with open(args.out, "w", encoding="utf-8", newline="") as fh:
                fh.write(erasure.export_requests(requests, fmt))
            _emit({"path": args.out, "format": fmt, "requests": len(requests)}, args.json,
                  lambda _: print(f"{len(requests)} erasure requests written to {args.out} ({fmt})"))
            return 0
        _emit(requests, args.json, _print_requests)
    return 0


def _print_requests(requests: list[dict[str, Any]]) -> None:
    for r in requests:
        _print_request(r)
    if not requests:
        print("no erasure requests")


def _print_request(r: dict[str, Any]) -> None:
    line = f"#{r['id']} +{r['phone']} {r['status']}: {r['outcome']}"
    if r["status"] == "deferred":
        line += f" until {r['deferred_until']} ({r['legal_basis']})"
    print(line)


# storage -----------------------------------------------------------------------------------------


async def cmd_storage(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.storage import S3Store, open_store
    from wa_archive.storage.posture import check_store, init_s3, record_check

    settings = with_dev_defaults(settings)
    store = open_store(settings)
    try:
        if args.storage_command == "init":
            if not isinstance(store, S3Store):
                if args.json:
                    _emit({"store": store.url, "configured": []}, True, print)
                    return 0
                print(f"{store.url} is a filesystem store: nothing to configure (see `wa-archive storage check`"
                      " for what it can and cannot promise)")
                return 0
            configured = await init_s3(store, settings)
            _emit({"store": store.url, "configured": configured}, args.json,
                  lambda _: [print(f"ok  {line}") for line in configured])
            return 0
        findings = await check_store(store, settings, canary=not args.no_canary)
        if settings.database_url:
            pool = await open_pool(settings)
            try:
                await record_check(pool, store.url, findings, cli_actor())
            finally:
                await pool.close()
    finally:
        await store.close()
    ok = all(f.ok for f in findings)
    _emit({"store": store.url, "ok": ok, "findings": [f.as_dict() for f in findings]}, args.json,
          lambda _: _print_findings(store.url, findings))
    return 0 if ok else 1


def _print_findings(url: str, findings: list[Finding]) -> None:
    print(f"storage {url}")
    for f in findings:
        mark = "ok   " if f.ok else "WRONG"
        print(f"{mark} {f.setting:<46} is: {f.actual}")
        if not f.ok:
            print(f"      {'':<46} should be: {f.expected}")
        if f.note:
            print(f"      {'':<46} note: {f.note}")


# parser ------------------------------------------------------------------------------------------

COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], Awaitable[int]]] = {
    "retention": cmd_retention, "hold": cmd_hold, "disposition": cmd_disposition, "erasure": cmd_erasure,
    "storage": cmd_storage,
}


def _days(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 36500:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of days between 1 and 36500")
    return int(value)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ret = sub.add_parser("retention", help="retention policies per business number").add_subparsers(
        dest="retention_command", required=True)
    rset = ret.add_parser("set", help="a new policy version; existing retention is extended, never shortened")
    which = rset.add_mutually_exclusive_group(required=True)
    which.add_argument("--business-phone", help="business phone-number id or display number")
    which.add_argument("--default", action="store_true", help="the policy for numbers without their own")
    rset.add_argument("--days", type=_days, required=True)
    rset.add_argument("--basis", required=True, help="the legal basis, e.g. 'SEC 17a-4(f): 6 years'")
    rset.add_argument("--json", action="store_true")
    ret.add_parser("list", help="the policy in force per scope").add_argument("--json", action="store_true")

    hold = sub.add_parser("hold", help="legal holds").add_subparsers(dest="hold_command", required=True)
    hset = hold.add_parser("set", help="hold a contact's messages for a case (later ones too)")
    hset.add_argument("--phone", required=True, help="the contact's phone number")
    hset.add_argument("--since", type=parse_when_arg, help=SINCE_HELP)
    hset.add_argument("--until", type=parse_until_arg, help=UNTIL_HELP)
    hset.add_argument("--case", required=True)
    hset.add_argument("--reason", required=True)
    hset.add_argument("--json", action="store_true")
    hrel = hold.add_parser("release", help="release a case's hold")
    hrel.add_argument("--case", required=True)
    hrel.add_argument("--json", action="store_true")
    hlist = hold.add_parser("list", help="legal holds, active and released")
    hlist.add_argument("--active", action="store_true", help="active holds only")
    hlist.add_argument("--json", action="store_true")

    disp = sub.add_parser("disposition", help="removal of what is past retention").add_subparsers(
        dest="disposition_command", required=True)
    plan = disp.add_parser("plan", help="what the next run would remove (a dry run)")
    plan.add_argument("--phone")
    plan.add_argument("--limit", type=int, default=1000)
    plan.add_argument("--json", action="store_true")
    run = disp.add_parser("run", help="run disposition now (as a Temporal workflow) and wait for it")
    run.add_argument("--phone")
    run.add_argument("--json", action="store_true")
    dlist = disp.add_parser("list", help="disposition records")
    dlist.add_argument("--since", type=parse_when_arg, help=SINCE_HELP)
    dlist.add_argument("--json", action="store_true")

    era = sub.add_parser("erasure", help="erasure requests (GDPR Art. 17)").add_subparsers(
        dest="erasure_command", required=True)
    req = era.add_parser("request", help="erase a contact's data now, or defer it under retention duties")
    req.add_argument("--phone", required=True)
    req.add_argument("--reason", required=True)
    req.add_argument("--json", action="store_true")
    era.add_parser("list", help="requests and their outcomes").add_argument("--json", action="store_true")
    exp = era.add_parser("export", help="requests and outcomes as CSV (or JSON Lines for .jsonl)")
    exp.add_argument("--out", required=True)
    exp.add_argument("--json", action="store_true")

    storage = sub.add_parser("storage", help="object-store posture").add_subparsers(
        dest="storage_command", required=True)
    storage.add_parser("init", help="configure the S3 bucket: versioning, Object Lock, encryption, lifecycle"
                       ).add_argument("--json", action="store_true")
    chk = storage.add_parser("check", help="each setting as it is and should be, and a lock canary")
    chk.add_argument("--no-canary", action="store_true", help="skip writing the locked canary object")
    chk.add_argument("--json", action="store_true")
