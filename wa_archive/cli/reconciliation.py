"""Reconciliation commands: `reconcile run` (as the Reconciliation workflow), `reconciliation list|show`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from wa_archive.cli.support import log_cli_access, open_pool, with_dev_defaults
from wa_archive.config import Settings
from wa_archive.credentials import ledger_trust


def _day(value: str) -> date:
    from wa_archive.integrity.reconciliation import parse_day

    try:
        return parse_day(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _print_report(shown: dict[str, Any]) -> None:
    report = shown["report"]
    checkpoint = report.get("checkpoint")
    print(f"{shown['date']}  {shown['status'].upper()}  version {shown['version']}  sha256 {shown['sha256']}"
          f"  checkpoint {checkpoint['tree_size'] if checkpoint else 'none'}")
    for e in report["numbers"]:
        meta = ("n/a" if e["meta_sent"] is None else
                f"{e['meta_sent']} sent / {e['meta_delivered']} delivered (difference {e['meta_difference']:+d})")
        print(f"  {e['phone_number_id']}: {e['status']}  received {e['received']}  archived {e['archived']}"
              f"  failed {e['failed']}  pending {e['pending']}  in progress {e['in_progress']}"
              f"  backfilled {e['backfilled']}  archived outbound {e['archived_outbound']}  Meta {meta}")
        for label, ids in (("failed", e["failed_ids"]), ("pending past deadline", e["pending_ids"]),
                           ("off-channel", e["off_channel"])):
            for message_id in ids:
                print(f"    {label}: {message_id}")
        for d in e["unhanded_delivery_ids"]:
            carried = ", ".join(d["message_ids"]) or "nothing recorded"
            print(f"    delivery not handed over: {d['delivery']} ({carried})")
        for m in e["late_media_ids"]:
            print(f"    late media: {m['message_id']} item {m['position']} ({m['status']})")
        if e["meta_sent"] is None and e["meta_note"]:
            print(f"    Meta: {e['meta_note']}")


async def cmd_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    """Run the Reconciliation workflow for a day (default yesterday, UTC) and print its report; 1 when red."""
    import uuid
    from datetime import datetime, timedelta, timezone

    from temporalio.client import WorkflowFailureError

    from wa_archive.db import reconciliation as queries
    from wa_archive.integrity.reconciliation import report_json
    from wa_archive.models import ReconcileInput, ReconcileResult
    from wa_archive.temporal.client import connect_temporal

    settings = with_dev_defaults(settings)
    day = args.date or (datetime.now(timezone.utc) - timedelta(days=1)).date()
    pool = await open_pool(settings)
    try:  # the report names message ids: a read like any other
        await log_cli_access(pool, "reconcile", {"date": day.isoformat()})
        client = await connect_temporal(settings)
        handle = await client.start_workflow(
            "Reconciliation", ReconcileInput(date=day.isoformat()), id=f"reconciliation-{day}-{uuid.uuid4().hex[:8]}",
            task_queue=settings.task_queue, result_type=ReconcileResult)
        print(f"reconciliation started: {handle.id}", file=sys.stderr)
        red = False
        try:
            await handle.result()
        except WorkflowFailureError as exc:
            red = True
            print(f"RED: {exc.cause}", file=sys.stderr)
        rows = await queries.reports(pool, day)
    finally:
        await pool.close()
    if not rows:
        print(f"wa-archive: no report was stored for {day}", file=sys.stderr)
        return 1
    shown = report_json(rows[0])
    if args.json:
        print(json.dumps(shown["report"], indent=2, ensure_ascii=False))
    else:
        _print_report(shown)
    return 1 if red or shown["status"] == "red" else 0


async def cmd_reconciliation(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.db import reconciliation as queries
    from wa_archive.integrity.reconciliation import receipt, receipt_pending, report_json

    pool = await open_pool(settings)
    try:
        if args.action == "list":
            await log_cli_access(pool, "reconciliation-list", {})
            rows = await queries.reports(pool)
            listed = [{"date": r["report_date"].isoformat(), "status": r["status"], "version": r["version"],
                       "versions": r["versions"], "sha256": r["sha256"], "created_at": r["created_at"].isoformat(),
                       "checkpoint_tree_size": r["checkpoint_tree_size"]} for r in rows]
            if args.json:
                print(json.dumps(listed, indent=2))
                return 0
            for item in listed:
                print(f"{item['date']}  {item['status'].upper():<5}  version {item['version']} of {item['versions']}"
                      f"  {item['created_at']}  sha256 {item['sha256']}")
            print(f"{len(listed)} day(s)")
            return 0
        await log_cli_access(pool, "reconciliation-show", {"date": args.date.isoformat()})
        rows = await queries.reports(pool, args.date)
        if not rows:
            print(f"wa-archive: no reconciliation report for {args.date}", file=sys.stderr)
            return 1
        shown = report_json(rows[0])
        shown["receipt"] = await receipt(pool, rows[0], ledger_trust(settings))
        pending = await receipt_pending(pool, rows[0], settings.ledger_integrate_every)
        if pending is not None:
            shown["receipt_pending"] = pending
        shown["earlier_versions"] = [{"version": r["version"], "status": r["status"], "sha256": r["sha256"],
                                      "created_at": r["created_at"].isoformat()} for r in rows[1:]]
    finally:
        await pool.close()
    if args.json:
        print(json.dumps(shown, indent=2, ensure_ascii=False))
    else:
        _print_report(shown)
        for earlier in shown["earlier_versions"]:
            print(f"  earlier: version {earlier['version']} {earlier['status']} {earlier['created_at']}")
    return 0


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], Awaitable[int]]] = {
    "reconcile": cmd_reconcile, "reconciliation": cmd_reconciliation,
}


def add_parsers(sub: Any) -> None:
    run = sub.add_parser("reconcile", help="reconcile a UTC day now (the Reconciliation workflow); exit 1 on a gap")
    run.add_argument("action", choices=("run",))
    run.add_argument("--date", type=_day, help="YYYY-MM-DD (UTC); default yesterday")
    run.add_argument("--json", action="store_true")
    reports = sub.add_parser("reconciliation", help="the daily reconciliation reports")
    rsub = reports.add_subparsers(dest="action", required=True)
    rlist = rsub.add_parser("list", help="every reconciled day, latest version, with its status")
    rlist.add_argument("--json", action="store_true")
    show = rsub.add_parser("show", help="one day's latest report, its gaps by message id, and its ledger receipt")
    show.add_argument("date", type=_day, metavar="DATE")
    show.add_argument("--json", action="store_true")
