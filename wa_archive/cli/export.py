"""`wa-archive export` and `verify-export`: eDiscovery bundles from the command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any, cast

from wa_archive.cli.integrity import require_public_key
from wa_archive.cli.support import (
    cli_actor,
    file_to_check,
    follow,
    log_cli_access,
    open_pool,
    print_json,
    show_progress,
    with_dev_defaults,
)
from wa_archive.config import Settings

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle


async def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    import hashlib
    from pathlib import Path

    from wa_archive.archive.keys import normalize_phone
    from wa_archive.discovery.export import ExportQuery, write_bundle
    from wa_archive.storage import open_store

    phone = normalize_phone(args.phone) if args.phone else None
    if args.phone and phone is None:
        print(f"wa-archive: --phone {args.phone!r} is not a phone number", file=sys.stderr)
        return 2
    out = Path(args.out)
    actor = cli_actor()
    settings = with_dev_defaults(settings)
    if args.local:  # in this process, for machines without a worker; signed with this machine's ledger key
        from wa_archive.credentials import ledger_signer

        signer = ledger_signer(settings)
        store = open_store(settings)
        pool = await open_pool(settings)
        try:
            await log_cli_access(pool, "export", {
                "phone": phone, "since": args.since.isoformat() if args.since else None,
                "until": args.until.isoformat() if args.until else None})
            written = await write_bundle(pool, store, ExportQuery(phone=phone, since=args.since, until=args.until),
                                         out, exported_by=f"{actor} (cli)", signer=signer,
                                         on_progress=show_progress)
        finally:
            await pool.close()
            await store.close()
        if args.json:
            print(file=sys.stderr)  # end the progress line
            print_json({"path": str(out), "export_id": None, **written.model_dump()})
            return 0
        print(f"\nwrote {out}: {written.messages} messages, {written.media} media files, {written.bytes} bytes")
        return 0
    from temporalio.client import WorkflowFailureError
    from temporalio.exceptions import TemporalError

    from wa_archive.discovery.export_jobs import new_export_id, start_export
    from wa_archive.models import ExportInput
    from wa_archive.temporal.client import connect_temporal

    store = open_store(settings)
    client = await connect_temporal(settings)
    export_id = new_export_id()
    handle = await start_export(client, ExportInput(export_id=export_id, phone=phone, since=args.since,
                                                    until=args.until, actor=actor, role="cli"),
                                task_queue=settings.task_queue)
    print(f"export {export_id} started (workflow {handle.id})", file=sys.stderr)
    try:
        result = await follow(handle.result(), lambda: _export_progress(client, handle), "messages")
    except WorkflowFailureError as exc:
        # The client decodes a workflow's failure into a FailureError, a TemporalError with its own cause.
        failure = cast(TemporalError, exc.cause)
        cause = failure.cause if failure.cause is not None else failure
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
    show_progress(result.messages, result.messages)
    if args.json:
        print(file=sys.stderr)  # end the progress line
        print_json({"path": str(out), "export_id": result.export_id, "messages": result.messages,
                    "media": result.media, "bytes": result.size, "sha256": result.sha256})
        return 0
    print(f"\nwrote {out}: {result.messages} messages, {result.media} media files, {result.size} bytes, "
          f"sha256 {result.sha256}")
    return 0


async def _export_progress(client: Client, handle: WorkflowHandle[Any, Any]) -> dict[str, Any] | None:
    """The running export activity's last heartbeat: {"done": n, "total": m}."""
    desc = await handle.describe()
    for pending in desc.raw_description.pending_activities:
        if pending.heartbeat_details.payloads:
            values = await client.data_converter.decode(pending.heartbeat_details.payloads)
            return values[0] if values and isinstance(values[0], dict) else None
    return None


async def cmd_verify_export(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from wa_archive.discovery.export_verify import verify_bundle

    if not file_to_check(args.bundle, "bundle"):
        return 2
    key = require_public_key(settings, args.public_key)
    if key is None:
        return 2
    problems = await asyncio.to_thread(verify_bundle, Path(args.bundle), key)
    if args.json:
        print_json({"bundle": args.bundle, "intact": not problems, "problems": problems})
        return 1 if problems else 0
    if problems:
        for problem in problems:
            print(f"FAIL {problem}")
        print(f"{args.bundle}: {len(problems)} problem(s); the bundle is not intact")
        return 1
    print(f"{args.bundle}: intact (manifest signed by the trusted key; every file, media hash and message digest "
          "matches, each proven by a receipt in a signed checkpoint)")
    return 0
