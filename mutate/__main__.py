"""`python -m mutate [--list] [--only NAME ...] [--timeout S] [--no-baseline]`: run the curated mutations.

Exit 0 when every mutation run was killed; 1 naming each survivor (and each run that errored or timed
out); 2 when a mutation is stale (its original snippet no longer occurs exactly once) or unknown.
"""

from __future__ import annotations

import argparse
import sys
import time

from mutate.mutations import MUTATIONS
from mutate.runner import Outcome, StaleMutation, check, run, write_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mutate", description=__doc__.split("\n")[0])
    parser.add_argument("--list", action="store_true", help="print the mutations and the tests that must catch them")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this mutation (repeatable)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per mutation's test run")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip running the named tests unmutated first")
    args = parser.parse_args(argv)

    if args.list:
        for m in MUTATIONS:
            print(f"{m.name}\n  promise: {m.promise}\n  file:    {m.file}\n  tests:   " + "\n           ".join(m.tests))
        return 0
    selected = MUTATIONS
    if args.only:
        known = {m.name for m in MUTATIONS}
        unknown = [n for n in args.only if n not in known]
        if unknown:
            print(f"unknown mutation(s): {', '.join(unknown)} (see --list)", file=sys.stderr)
            return 2
        selected = [m for m in MUTATIONS if m.name in args.only]
    stale = []
    for m in selected:
        try:
            check(m)
        except StaleMutation as exc:
            stale.append(str(exc))
    if stale:
        print("stale mutations (update mutate/mutations.py):\n  " + "\n  ".join(stale), file=sys.stderr)
        return 2

    width = max(len(m.name) for m in selected)
    print(f"{'mutation':<{width}}  {'result':<8}  {'seconds':>7}  first failing test (or last line)")

    def report(o: Outcome) -> None:
        print(f"{o.name:<{width}}  {o.status:<8}  {o.seconds:7.1f}  {o.detail}", flush=True)

    started = time.monotonic()
    outcomes = run(selected, timeout=args.timeout, baseline=not args.no_baseline, report=report)
    seconds = time.monotonic() - started
    path = write_results(outcomes, selected, seconds)
    ran = [o for o in outcomes if o.name in {m.name for m in selected}]
    killed = sum(1 for o in ran if o.status == "killed")
    bad = [o for o in outcomes if o.status not in ("killed", "passed")]
    print(f"\n{len(ran)} of {len(selected)} mutations run, {killed} killed, in {seconds / 60:.1f} min; results: {path}")
    if bad:
        for o in bad:
            print(f"NOT KILLED: {o.name} ({o.status}): {o.detail}", file=sys.stderr)
        return 1
    if len(ran) != len(selected):
        print("the baseline failed: the named tests must pass before mutations are run", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
