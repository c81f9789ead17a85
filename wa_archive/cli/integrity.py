"""Integrity commands: schedules, retrieval tests, the ledger, receipts and `verify`."""

from __future__ import annotations

import argparse
import json
import sys

from wa_archive.cli.support import (
    file_to_check,
    follow,
    log_cli_access,
    open_pool,
    print_json,
    show_progress,
    with_dev_defaults,
)
from wa_archive.config import Settings
from wa_archive.credentials import ledger_trust
from wa_archive.errors import ConfigError, LedgerPending


async def cmd_schedules(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.temporal.client import connect_temporal
    from wa_archive.temporal.schedules import apply_schedules

    client = await connect_temporal(with_dev_defaults(settings))
    applied = await apply_schedules(client, settings)
    if args.json:
        print_json({"applied": applied})
        return 0
    for line in applied:
        print(line)
    return 0


async def cmd_retrieval_tests(settings: Settings, args: argparse.Namespace) -> int:
    pool = await open_pool(settings)
    try:
        # The reports name sampled message ids and object keys (which hold contacts' phone numbers).
        await log_cli_access(pool, "retrieval-tests", {})
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
    from wa_archive.temporal.client import connect_temporal

    settings = with_dev_defaults(settings)
    pool = await open_pool(settings)
    try:  # its report names sampled messages and object keys: a read like any other
        await log_cli_access(pool, "retrieval-test", {"sample": args.sample})
    finally:
        await pool.close()
    client = await connect_temporal(settings)
    handle = await client.start_workflow(
        "RetrievalTest", RetrievalTestInput(sample_size=args.sample or settings.retrieval_sample),
        id=f"retrieval-test-now-{uuid.uuid4().hex[:12]}", task_queue=settings.task_queue,
        result_type=RetrievalReport)
    print(f"retrieval test started: {handle.id}", file=sys.stderr)
    try:
        report = await follow(handle.result(), lambda: handle.query("progress"), "objects")
    except WorkflowFailureError as exc:
        print(f"\nFAILED: {exc.cause}", file=sys.stderr)
        if args.json:
            print_json({"ok": False, "workflow_id": handle.id, "error": str(exc.cause)})
        return 1
    show_progress(report.sample_size, report.sample_size, "objects")
    if args.json:
        print(file=sys.stderr)  # end the progress line
        print_json({"ok": True, "workflow_id": handle.id, "report": report.model_dump(mode="json")})
        return 0
    print(f"\nPASSED: {report.passed}/{report.sample_size} objects read back intact; "
          f"slowest {report.slowest_ms} ms")
    return 0


async def cmd_ledger(settings: Settings, args: argparse.Namespace) -> int:
    import base64

    from wa_archive.credentials import ledger_signer
    from wa_archive.integrity import ledger
    from wa_archive.storage import open_store

    signer = ledger_signer(settings)
    if args.action == "public-key":
        public_key = base64.b64encode(signer.public_key()).decode()
        if args.json:
            print_json({"public_key": public_key})
        else:
            print(public_key)
        return 0
    settings = with_dev_defaults(settings)
    pool, store = await open_pool(settings), open_store(settings)
    try:
        written = await ledger.write_checkpoint(pool, store, signer)
    finally:
        await pool.close()
        await store.close()
    if args.json:
        print_json({"checkpoint": written})  # null: nothing new since the last checkpoint
        return 0
    print(f"checkpoint at tree size {written['tree_size']}, root {written['root_hash']}" if written
          else "nothing new since the last checkpoint")
    return 0


# `receipt` for a record whose leaf is not yet integrated: sysexits' EX_TEMPFAIL ("try again later"),
# apart from 1 (no such record, or no checkpoint covers it yet).
EXIT_PENDING = 75


async def cmd_receipt(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.integrity import receipts

    pool = await open_pool(settings)
    try:
        await log_cli_access(pool, "receipt", {"message_id": args.message_id})
        doc = await receipts.receipt(pool, args.message_id, public_key=ledger_trust(settings),
                                     integrate_every=settings.ledger_integrate_every)
    except LookupError as exc:
        print(f"wa-archive: {exc}", file=sys.stderr)
        return 1
    except LedgerPending as exc:  # not an absence: the same command succeeds in a moment
        print(f"wa-archive: {exc}", file=sys.stderr)
        return EXIT_PENDING
    finally:
        await pool.close()
    print(json.dumps(doc, indent=2, ensure_ascii=False))
    return 0


NO_KEY_MESSAGE = ("no trusted ledger public key: pass --public-key KEY or set WA_ARCHIVE_LEDGER_PUBLIC_KEY "
                  "(the output of `wa-archive ledger public-key`, kept apart from the archive); "
                  "a key written inside the file being checked is never trusted")


def trusted_public_key(settings: Settings, option: str | None) -> tuple[bytes, str] | None:
    """The key proofs are checked against, and where it came from; None when none was given.

    Raises ValueError (naming the source) for a key that is not 32 bytes of base64 or hex.
    """
    from wa_archive.integrity import ledger

    for text, source in ((option, "--public-key"), (settings.ledger_public_key, "WA_ARCHIVE_LEDGER_PUBLIC_KEY")):
        if text:
            try:
                return ledger.parse_public_key(text), source
            except ValueError as exc:
                raise ValueError(f"{source}: {exc}") from None
    return None


def require_public_key(settings: Settings, option: str | None) -> bytes | None:
    """The trusted key, or None after printing why the command cannot go on (exit status 2)."""
    try:
        found = trusted_public_key(settings, option)
    except ValueError as exc:
        print(f"wa-archive: {exc}", file=sys.stderr)
        return None
    if found is None:
        print(f"wa-archive: {NO_KEY_MESSAGE}", file=sys.stderr)
        return None
    return found[0]


async def cmd_verify_receipt(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from wa_archive.integrity import receipts
    from wa_archive.json_input import load_json

    if not file_to_check(args.file, "receipt"):
        return 2
    key = require_public_key(settings, args.public_key)
    if key is None:
        return 2
    try:
        doc = load_json(Path(args.file).read_bytes())  # anyone's file: refused past the nesting limit
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        print(f"wa-archive: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    problems = receipts.verify_receipt(doc, key)
    if args.json:
        print_json({"ok": not problems, "problems": problems, "record": doc.get("record"),
                    "leaf_index": doc.get("leaf_index")})
        return 1 if problems else 0
    for problem in problems:
        print(f"FAIL {problem}")
    if problems:
        return 1
    print(f"OK: {doc['record']['kind']} {doc['record']['id']} is leaf {doc['leaf_index']} of a tree signed "
          "by the trusted key")
    return 0


async def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    import time as _time

    from wa_archive.credentials import ledger_signer
    from wa_archive.integrity import sequencing, verification
    from wa_archive.storage import open_store

    settings = with_dev_defaults(settings)
    try:
        found = trusted_public_key(settings, args.public_key)
    except ValueError as exc:
        print(f"wa-archive: {exc}", file=sys.stderr)
        return 2
    if found is None:
        try:
            found = (ledger_signer(settings).public_key(), "the key derived from the configured signing key")
        except ConfigError as exc:
            raise ConfigError(f"{exc}; or give the trusted key with --public-key or "
                              "WA_ARCHIVE_LEDGER_PUBLIC_KEY") from None
    public_key, source = found
    print(f"checkpoint signatures checked against {source}", file=sys.stderr)
    pool, store = await open_pool(settings), open_store(settings)
    started = _time.perf_counter()
    try:
        problems = await verification.verify_log(
            pool, public_key, pending_bound=sequencing.pending_bound(settings.ledger_integrate_every))
        problems += await verification.verify_checkpoint_copies(pool, store, public_key)
        checked = {"bytes": 0, "objects": 0}

        def progress(n: int, total: int, done_bytes: int) -> None:
            checked.update(bytes=done_bytes, objects=n)
            show_progress(n, total, "objects")

        if args.full or args.sample:
            problems += await verification.verify_objects(pool, store, sample=None if args.full else args.sample,
                                                          on_progress=progress)
    finally:
        await pool.close()
        await store.close()
    elapsed = _time.perf_counter() - started
    if checked["objects"]:
        print(f"\nre-hashed {checked['objects']} objects, {checked['bytes']} bytes in {elapsed:.1f} s "
              f"({checked['bytes'] / elapsed / 1e6:.1f} MB/s)", file=sys.stderr)
    if args.json:
        print_json({"ok": not problems, "problems": problems, "public_key_source": source,
                    "objects_rehashed": checked["objects"], "bytes_rehashed": checked["bytes"]})
        return 1 if problems else 0
    for problem in problems:
        print(f"FAIL {problem}")
    print(f"{len(problems)} problem(s)" if problems
          else "OK: ledger, checkpoints (database and store copies) and records agree")
    return 1 if problems else 0
