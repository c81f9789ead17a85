"""`make chaos` / `python -m chaos [SCENARIO ...]`: run fault scenarios against the archive run as in
production (see chaos/stack.py), print the table and write chaos/results/latest.json (and a copy
named by the start time). Exits 1 if any scenario failed or could not run. `python -m chaos soak ...`
runs the soak instead (chaos/soak.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from chaos import report
from chaos.load import LoadSettings
from chaos.run import run_scenario
from chaos.scenarios import SCENARIOS
from chaos.stack import ChaosStack, MountRefused

RESULTS = Path(__file__).parent / "results"
TMPFS_MIB = 1024  # the filesystem store's disk for disk_full: room for the run's media, small enough to fill


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help=f"default: all of {', '.join(SCENARIOS)}")
    parser.add_argument("--deliveries", type=int, default=300, help="deliveries per scenario (default 300)")
    parser.add_argument("--rate", type=float, default=5.0, help="new deliveries per second (default 5)")
    parser.add_argument("--fault-seconds", type=float, default=None,
                        help="how long each fault lasts (default: each scenario's own)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.json goes (default chaos/results)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the load and the moment of each fault")
    parser.add_argument("--settle-timeout", type=float, default=900,
                        help="how long the archive may take to catch up after a scenario (default 900 s)")
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    chosen = [SCENARIOS[n] for n in (args.scenarios or SCENARIOS)]
    results: dict[str, Any] = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "settings": {"deliveries": args.deliveries, "rate": args.rate, "seed": args.seed,
                                            "fault_seconds": args.fault_seconds}, "scenarios": []}
    for backend in ("s3", "filesystem"):
        todo = [s for s in chosen if s.backend == backend]
        if not todo:
            continue
        stack = ChaosStack(backend=backend, tmpfs_mib=TMPFS_MIB if backend == "filesystem" else None)
        try:
            started = time.monotonic()
            await stack.start()
            print(f"chaos: {backend} stack up in {time.monotonic() - started:.0f} s ({stack.run_dir})", file=sys.stderr)
        except MountRefused as exc:
            for s in todo:
                results["scenarios"].append({"name": s.name, "summary": s.summary, "passed": False, "not_run": True,
                                             "problems": [f"not run: {exc}"]})
            continue
        try:
            for scenario in todo:
                print(f"chaos: {scenario.name}: {scenario.summary}", file=sys.stderr)
                load = LoadSettings(deliveries=args.deliveries, rate=args.rate, seed=args.seed)
                result = await run_scenario(stack, scenario, load, fault_seconds=args.fault_seconds, seed=args.seed,
                                            settle_timeout=args.settle_timeout)
                results["scenarios"].append(result)
                verdict = "pass" if result["passed"] else "FAIL: " + "; ".join(result["problems"])
                print(f"chaos: {scenario.name}: {verdict}", file=sys.stderr)
        finally:
            await stack.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["soak"]:  # `python -m chaos soak ...`: the soak (chaos/soak.py), not a scenario
        from chaos import soak

        return soak.main(argv[1:])
    args = parse_args(argv)
    results = asyncio.run(run(args))
    path = report.write_json(results, args.out)
    print(report.table(results))
    print(f"\nwritten to {path}")
    return 0 if results["scenarios"] and all(s["passed"] for s in results["scenarios"]) else 1


if __name__ == "__main__":
    sys.exit(main())
