"""`wa-archive redrive run`: hand over now the deliveries stored but never handed to Temporal."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Awaitable, Callable

from wa_archive.cli.support import with_dev_defaults
from wa_archive.config import Settings


async def cmd_redrive(settings: Settings, args: argparse.Namespace) -> int:
    """Run the Redrive workflow now, on the workers, as the Schedule would; print its report."""
    from wa_archive.models import RedriveReport
    from wa_archive.temporal.client import connect_temporal

    client = await connect_temporal(with_dev_defaults(settings))
    report = await client.execute_workflow(
        "Redrive", id=f"redrive-now-{uuid.uuid4().hex[:12]}", task_queue=settings.task_queue,
        result_type=RedriveReport)
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        for sha256 in report.redriven:
            print(f"re-driven  {sha256}")
        for sha256 in report.failed:
            print(f"FAILED     {sha256}")
        more = "; more are waiting (the next run continues)" if report.more else ""
        print(f"{len(report.redriven)} delivery(ies) re-driven, {len(report.failed)} failed{more}")
    if report.failed:
        print("wa-archive: some hand-offs failed; see the worker's log (redrive_failed)", file=sys.stderr)
        return 1
    return 0


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], Awaitable[int]]] = {"redrive": cmd_redrive}


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    redrive = sub.add_parser("redrive", help="hand to Temporal the deliveries stored but never handed over"
                                             " (a 503 while it was down); the Redrive Schedule does it every minute")
    redrive.add_argument("action", choices=("run",), help="run it now and print what it re-drove")
    redrive.add_argument("--json", action="store_true")
