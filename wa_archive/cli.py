"""The `wa-archive` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from wa_archive.config import ConfigError, Settings, load_settings


def _parse_when(value: str) -> datetime:
    """A date (YYYY-MM-DD, midnight UTC) or an ISO timestamp (UTC if no offset)."""
    from wa_archive.search import FilterError, parse_when

    try:
        return parse_when(value)
    except FilterError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None


def _with_dev_defaults(settings: Settings) -> Settings:
    """Point read commands at a running `dev` stack when no database or Temporal is configured."""
    from wa_archive.dev import dev_state

    state = dev_state(settings.data_dir.resolve())
    if state is None:
        return settings
    updates = {}
    if not settings.database_url:
        updates["database_url"] = state["database_url"]
    if not settings.temporal_address:
        updates["temporal_address"] = state["temporal_address"]
    return settings.model_copy(update=updates)


async def _pool(settings: Settings):
    from wa_archive.runtime import connect_db

    settings = _with_dev_defaults(settings)
    if not settings.database_url:
        raise ConfigError(
            "WA_ARCHIVE_DATABASE_URL is not set and no `wa-archive dev` is running under "
            f"{settings.data_dir.resolve()}"
        )
    return await connect_db(settings, max_size=2)


async def _run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await main(stop)


# Commands --------------------------------------------------------------------------------------


async def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.dev import run_dev

    await _run_until_signal(lambda stop: run_dev(settings, stop))
    return 0


async def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from worker import run_worker

    await _run_until_signal(lambda stop: run_worker(settings, stop))
    return 0


async def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.serve import serve_forever

    await _run_until_signal(lambda stop: serve_forever(settings, stop))
    return 0


async def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.db import migrate

    settings = _with_dev_defaults(settings)
    settings.require("database_url")
    applied = await migrate(settings.database_url)  # type: ignore[arg-type]
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


async def _log_cli_access(pool, action: str, target: dict[str, Any]) -> None:
    """CLI reads are reads of the archive too: recorded under the local user's name."""
    import getpass

    from wa_archive.queries import record_access

    await record_access(pool, actor=f"cli:{getpass.getuser()}", role="cli", action=action,
                        target=target, remote_addr="local")


async def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.queries import get_message

    pool = await _pool(settings)
    try:
        await _log_cli_access(pool, "view", {"message_id": args.message_id})
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
    from wa_archive.keys import normalize_phone
    from wa_archive.queries import search_messages

    phone = None
    if args.phone is not None:
        phone = normalize_phone(args.phone)
        if phone is None:
            print(f"wa-archive: --phone {args.phone!r} is not a phone number", file=sys.stderr)
            return 2
    pool = await _pool(settings)
    try:
        await _log_cli_access(pool, "search", {k: str(v) for k, v in vars(args).items()
                                               if k in ("phone", "since", "until", "template", "direction",
                                                        "limit") and v is not None})
        found = await search_messages(pool, phone=phone, since=args.since, until=args.until,
                                      limit=args.limit, template=args.template,
                                      direction=args.direction)
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
    from wa_archive.queries import list_failures

    pool = await _pool(settings)
    try:
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
    from wa_archive import tokens

    pool = await _pool(settings)
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
            print(f"revoked {args.name!r}")
    except tokens.TokenError as exc:
        print(f"wa-archive: {exc}", file=sys.stderr)
        return 2
    finally:
        await pool.close()
    return 0


async def cmd_access_log(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.queries import list_access

    pool = await _pool(settings)
    try:
        entries = await list_access(pool, since=args.since)
    finally:
        await pool.close()
    if args.json:
        print(json.dumps(entries, indent=2, ensure_ascii=False))
        return 0
    for e in entries:
        print(f"{e['at']}  {e['actor']} ({e['role']})  {e['action']:<12} {json.dumps(e['target'], ensure_ascii=False)}"
              f"  from {e['remote_addr']}")
    print(f"{len(entries)} access(es)")
    return 0


async def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    import getpass
    import hashlib
    import uuid
    from pathlib import Path

    from wa_archive.export import ExportQuery, write_bundle
    from wa_archive.keys import normalize_phone
    from wa_archive.storage import open_store

    phone = normalize_phone(args.phone) if args.phone else None
    if args.phone and phone is None:
        print(f"wa-archive: --phone {args.phone!r} is not a phone number", file=sys.stderr)
        return 2
    out = Path(args.out)
    actor = f"cli:{getpass.getuser()}"
    settings = _with_dev_defaults(settings)
    store = open_store(settings)
    if args.local:  # in this process, for machines without a worker
        pool = await _pool(settings)
        try:
            await _log_cli_access(pool, "export", {"phone": phone, "since": str(args.since), "until": str(args.until)})
            result = await write_bundle(pool, store, ExportQuery(phone=phone, since=args.since, until=args.until),
                                        out, exported_by=f"{actor} (cli)", on_progress=_progress)
        finally:
            await pool.close()
            await store.close()
        print(f"\nwrote {out}: {result.messages} messages, {result.media} media files, {result.bytes} bytes")
        return 0
    from temporalio.client import WorkflowFailureError

    from wa_archive.models import ExportInput, ExportOutput
    from wa_archive.runtime import connect_temporal

    client = await connect_temporal(settings)
    export_id = uuid.uuid4().hex
    handle = await client.start_workflow(
        "ExportBundle", ExportInput(export_id=export_id, phone=phone, since=args.since, until=args.until,
                                    actor=actor, role="cli"),
        id=f"export-{export_id}", task_queue=settings.task_queue, result_type=ExportOutput)
    print(f"export {export_id} started (workflow export-{export_id})", file=sys.stderr)
    waiter = asyncio.ensure_future(handle.result())
    while not waiter.done():
        await asyncio.wait([waiter], timeout=0.5)
        progress = await _export_progress(client, handle)
        if progress:
            _progress(progress["done"], progress["total"])
    try:
        result = waiter.result()
    except WorkflowFailureError as exc:
        cause = exc.cause.cause if exc.cause is not None and exc.cause.cause is not None else exc.cause
        print(f"\nwa-archive: export failed: {cause}", file=sys.stderr)
        await store.close()
        return 1
    hasher = hashlib.sha256()
    with open(out, "wb") as fh:
        async for chunk in store.read(result.storage_key):
            hasher.update(chunk)
            fh.write(chunk)
    await store.close()
    if hasher.hexdigest() != result.sha256:
        print(f"wa-archive: the stored bundle does not match its SHA-256; {out} is not trustworthy",
              file=sys.stderr)
        return 1
    _progress(result.messages, result.messages)
    print(f"\nwrote {out}: {result.messages} messages, {result.media} media files, {result.size} bytes, "
          f"sha256 {result.sha256}")
    return 0


async def _export_progress(client, handle) -> dict | None:
    """The running export activity's last heartbeat: {"done": n, "total": m}."""
    desc = await handle.describe()
    for pending in desc.raw_description.pending_activities:
        if pending.heartbeat_details.payloads:
            values = await client.data_converter.decode(pending.heartbeat_details.payloads)
            return values[0] if values and isinstance(values[0], dict) else None
    return None


def _progress(done: int, total: int, unit: str = "messages") -> None:
    width = 30
    filled = width if total == 0 else int(width * done / total)
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {unit}", end="", file=sys.stderr,
          flush=True)


async def cmd_verify_export(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from wa_archive.export import verify_bundle

    problems = await asyncio.to_thread(verify_bundle, Path(args.bundle))
    if problems:
        for problem in problems:
            print(f"FAIL {problem}")
        print(f"{args.bundle}: {len(problems)} problem(s); the bundle is not intact")
        return 1
    print(f"{args.bundle}: intact (every file matches manifest.json and the archived hashes)")
    return 0


async def cmd_schedules(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.runtime import connect_temporal
    from wa_archive.schedules import apply_schedules

    client = await connect_temporal(_with_dev_defaults(settings))
    for line in await apply_schedules(client, settings):
        print(line)
    return 0


async def cmd_retrieval_tests(settings: Settings, args: argparse.Namespace) -> int:
    pool = await _pool(settings)
    try:
        rows = await pool.fetch("SELECT * FROM retrieval_reports ORDER BY started_at DESC LIMIT 100")
    finally:
        await pool.close()
    reports = [{"workflow_id": r["workflow_id"], "run_id": r["run_id"], "started_at": r["started_at"].isoformat(),
                "finished_at": r["finished_at"].isoformat(), "sample_size": r["sample_size"], "passed": r["passed"],
                "failed": r["failed"], "slowest_ms": r["slowest_ms"], "items": r["items"]} for r in rows]
    if args.json:
        print(json.dumps(reports, indent=2))
        return 0
    for r in reports:
        verdict = "PASSED" if r["failed"] == 0 else "FAILED"
        print(f"{r['started_at']}  {verdict}  {r['passed']}/{r['sample_size']} intact, slowest {r['slowest_ms']} ms"
              f"  ({r['workflow_id']})")
        for item in r["items"]:
            if item["status"] == "failed":
                print(f"    {item['item']['message_id']}: {item['problem']}")
    print(f"{len(reports)} report(s)")
    return 0


async def cmd_retrieval_test(settings: Settings, args: argparse.Namespace) -> int:
    import uuid

    from temporalio.client import WorkflowFailureError

    from wa_archive.models import RetrievalReport, RetrievalTestInput
    from wa_archive.runtime import connect_temporal

    settings = _with_dev_defaults(settings)
    client = await connect_temporal(settings)
    handle = await client.start_workflow(
        "RetrievalTest", RetrievalTestInput(sample_size=args.sample or settings.retrieval_sample),
        id=f"retrieval-test-now-{uuid.uuid4().hex[:12]}", task_queue=settings.task_queue,
        result_type=RetrievalReport)
    print(f"retrieval test started: {handle.id}", file=sys.stderr)
    waiter = asyncio.ensure_future(handle.result())
    while not waiter.done():
        await asyncio.wait([waiter], timeout=0.5)
        if not waiter.done():
            progress = await handle.query("progress")
            _progress(progress["done"], progress["total"], "objects")
    try:
        report = waiter.result()
    except WorkflowFailureError as exc:
        print(f"\nFAILED: {exc.cause}", file=sys.stderr)
        return 1
    _progress(report.sample_size, report.sample_size, "objects")
    print(f"\nPASSED: {report.passed}/{report.sample_size} objects read back intact; "
          f"slowest {report.slowest_ms} ms")
    return 0


async def cmd_ledger(settings: Settings, args: argparse.Namespace) -> int:
    import base64

    from wa_archive import ledger
    from wa_archive.runtime import ledger_signer
    from wa_archive.storage import open_store

    signer = ledger_signer(settings)
    if args.action == "public-key":
        print(base64.b64encode(signer.public_key()).decode())
        return 0
    settings = _with_dev_defaults(settings)
    pool, store = await _pool(settings), open_store(settings)
    try:
        written = await ledger.write_checkpoint(pool, store, signer)
    finally:
        await pool.close()
        await store.close()
    print(f"checkpoint at tree size {written['tree_size']}, root {written['root_hash']}" if written
          else "nothing new since the last checkpoint")
    return 0


async def cmd_receipt(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive import ledger

    pool = await _pool(settings)
    try:
        await _log_cli_access(pool, "receipt", {"message_id": args.message_id})
        doc = await ledger.receipt(pool, args.message_id)
    except LookupError as exc:
        print(f"wa-archive: {exc}", file=sys.stderr)
        return 1
    finally:
        await pool.close()
    print(json.dumps(doc, indent=2, ensure_ascii=False))
    return 0


async def cmd_verify_receipt(settings: Settings, args: argparse.Namespace) -> int:
    import base64
    from pathlib import Path

    from wa_archive import ledger

    try:
        doc = json.loads(Path(args.file).read_text())
    except (OSError, ValueError) as exc:
        print(f"wa-archive: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    key = base64.b64decode(args.public_key) if args.public_key else None
    problems = ledger.verify_receipt(doc, key)
    for problem in problems:
        print(f"FAIL {problem}")
    if problems:
        return 1
    print(f"OK: {doc['record']['kind']} {doc['record']['id']} is leaf {doc['leaf_index']} of the signed tree"
          + ("" if key else " (signature checked against the key in the receipt; pass --public-key to pin it)"))
    return 0


async def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    import time as _time

    from wa_archive import ledger
    from wa_archive.runtime import ledger_signer
    from wa_archive.storage import open_store

    settings = _with_dev_defaults(settings)
    public_key = ledger_signer(settings).public_key()
    pool, store = await _pool(settings), open_store(settings)
    started = _time.perf_counter()
    try:
        problems = await ledger.verify_log(pool, public_key)
        checked = {"bytes": 0, "objects": 0}

        def progress(n: int, total: int, done_bytes: int) -> None:
            checked.update(bytes=done_bytes, objects=n)
            _progress(n, total, "objects")

        if args.full or args.sample:
            problems += await ledger.verify_objects(pool, store, sample=None if args.full else args.sample,
                                                    on_progress=progress)
    finally:
        await pool.close()
        await store.close()
    elapsed = _time.perf_counter() - started
    if checked["objects"]:
        print(f"\nre-hashed {checked['objects']} objects, {checked['bytes']} bytes in {elapsed:.1f} s "
              f"({checked['bytes'] / elapsed / 1e6:.1f} MB/s)", file=sys.stderr)
    for problem in problems:
        print(f"FAIL {problem}")
    print(f"{len(problems)} problem(s)" if problems else "OK: ledger, checkpoints and records agree")
    return 1 if problems else 0


async def cmd_contact_key(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.keys import contact_key
    from wa_archive.names import CONTACT_KEY
    from wa_archive.runtime import contact_secret

    key = contact_key(contact_secret(settings), args.contact)
    print(key)
    print(f"Temporal UI query: {CONTACT_KEY.name} = '{key}'", file=sys.stderr)
    return 0


async def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.dev import run_demo
    from wa_archive.queries import get_message

    message_id = await run_demo(settings)
    pool = await _pool(settings)
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
            print(f"    delivery {d['sha256']} received {d['received_at']} signature {d['signature']}")
        for s in m.get("statuses", []):
            print(f"    status {s['status']} at {s['timestamp']}")


# Parser ----------------------------------------------------------------------------------------

COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], Awaitable[int]]] = {
    "dev": cmd_dev, "worker": cmd_worker, "serve": cmd_serve, "migrate": cmd_migrate,
    "show": cmd_show, "search": cmd_search, "failures": cmd_failures,
    "contact-key": cmd_contact_key, "demo": cmd_demo, "tokens": cmd_tokens,
    "access-log": cmd_access_log,
    "export": cmd_export, "verify-export": cmd_verify_export,
    "ledger": cmd_ledger, "receipt": cmd_receipt, "verify-receipt": cmd_verify_receipt, "verify": cmd_verify,
    "schedules": cmd_schedules, "retrieval-tests": cmd_retrieval_tests, "retrieval-test": cmd_retrieval_test,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wa-archive", description="WhatsApp compliance archive")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("dev", help="run the embedded stack (Temporal, PostgreSQL, worker, webhook)")
    sub.add_parser("worker", help="run a worker against the configured Temporal, Postgres and store")
    sub.add_parser("serve", help="run the webhook and health HTTP server")
    sub.add_parser("migrate", help="apply database migrations")
    show = sub.add_parser("show", help="show one archived message")
    show.add_argument("message_id", metavar="WAMID")
    show.add_argument("--json", action="store_true")
    search = sub.add_parser("search", help="search archived messages, newest first")
    search.add_argument("--phone")
    search.add_argument("--since", type=_parse_when, help="date or ISO timestamp (inclusive)")
    search.add_argument("--until", type=_parse_when, help="date or ISO timestamp (exclusive)")
    search.add_argument("--limit", type=int, default=100)
    search.add_argument("--template", help="template name (outbound template messages)")
    search.add_argument("--direction", choices=("in", "out"))
    search.add_argument("--json", action="store_true")
    failures = sub.add_parser("failures", help="critical archive failures with their attempts")
    failures.add_argument("--json", action="store_true")
    ck = sub.add_parser("contact-key", help="the keyed contact hash used in Temporal search attributes")
    ck.add_argument("contact", help="phone number or other contact id")
    sub.add_parser("demo", help="send a signed demo image webhook to a running `wa-archive dev`")
    export = sub.add_parser("export", help="eDiscovery bundle (ZIP) of the messages selected")
    export.add_argument("--phone")
    export.add_argument("--since", type=_parse_when)
    export.add_argument("--until", type=_parse_when)
    export.add_argument("--out", required=True, help="path of the ZIP to write")
    export.add_argument("--local", action="store_true",
                        help="build the bundle in this process instead of as a Temporal workflow")
    verify = sub.add_parser("verify-export", help="check a bundle against its manifest and hashes")
    verify.add_argument("bundle")
    ledger_p = sub.add_parser("ledger", help="the tamper-evident ledger")
    ledger_p.add_argument("action", choices=("public-key", "checkpoint"))
    receipt_p = sub.add_parser("receipt", help="a message's record digest with an inclusion proof (JSON)")
    receipt_p.add_argument("message_id", metavar="MESSAGE-ID")
    vr = sub.add_parser("verify-receipt", help="check a receipt offline, without the database")
    vr.add_argument("file")
    vr.add_argument("--public-key", help="the archive's public key (base64), held apart from the archive")
    verify_p = sub.add_parser("verify", help="recompute the ledger from Postgres, check checkpoints, re-hash objects")
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
    access.add_argument("--since", type=_parse_when, help="date or ISO timestamp")
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
    return parser


def _event_loop_run(coro: Awaitable[int]) -> int:
    """Run on uvloop: the webhook's HTTP parsing and the Postgres driver are markedly cheaper on it,
    which is what decides ingest throughput on a small machine."""
    import uvloop

    return uvloop.run(coro)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "limit", 1) is not None and getattr(args, "limit", 1) < 1:
        print("wa-archive: --limit must be at least 1", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
        from wa_archive.runtime import configure_logging

        configure_logging(settings.log_level)
        return _event_loop_run(COMMANDS[args.command](settings, args))
    except ConfigError as exc:
        print(f"wa-archive: configuration error: {exc}", file=sys.stderr)
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
