"""`make soak` / `python -m chaos soak [--minutes M] [--interval S] [--rate R]`: the archive run as in
production (chaos/stack.py, S3 backend) under a steady signed webhook load at a fixed rate, no fault,
sampled every interval (chaos/sampling.py): each part's RSS and open file descriptors, PostgreSQL's
client connections, Temporal's running workflows and task queue backlog. At the end the run is
verified as a chaos scenario is (every acknowledged delivery archived once, every object once, the
ledger verifying), each series is judged flat or growing (chaos/flatness.py), and
chaos/results/soak-latest.json and soak-latest.png (with copies named by the start time) are written.
Exits 1 unless the verification passed and every judged series is flat. The real soak is an hour:
`make soak SOAK_MINUTES=60`."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from chaos import report
from chaos.flatness import ALLOWANCES, FLAT, judge
from chaos.load import Load, LoadSettings
from chaos.sampling import sample
from chaos.soak_plot import write_png
from chaos.stack import APP_SECRET, NAMES, ChaosStack
from chaos.verify import Fault, verify

RESULTS = Path(__file__).parent / "results"
KIB = 1024
# Reported with their verdict but left out of the overall one, with the reason.
MOTO_HOLDS_OBJECTS = "moto's S3 server keeps every stored object in memory, so it grows by the bytes archived"
NOT_COUNTED = {
    "rss_mib.moto": MOTO_HOLDS_OBJECTS,
    "pss_mib.moto": MOTO_HOLDS_OBJECTS,
    "rss_mib.postgres": ("summed over the postmaster and its backends, RSS counts each shared buffer once per "
                         "process that touched it; its PSS (each shared page counted once) is judged instead"),
    "mutable_state_cache.temporal": ("a bounded cache filling by design (to its size, see the samples); shown "
                                     "so that the Temporal server's memory can be read against it"),
}
# PSS divides each shared page among every process on the machine that maps it, so a single process's
# PSS moves with whatever else runs (another Temporal server or Python process mapping the same binary
# and libraries lowers it; one exiting raises it): for a part that is one process its RSS is judged.
SHARES_FILES = ("PSS shares the pages of its binary and libraries with any other process on the machine that "
                "maps them, so it moves with what else runs; its RSS is judged (one process: nothing counted twice)")
NOT_COUNTED.update({f"pss_mib.{part}": SHARES_FILES for part in NAMES if part not in ("postgres", "moto")})
# The Temporal dev server's history service keeps the mutable state of up to 8,096 workflows in a cache
# for up to an hour, so in an hour's soak at 2/s it would still be filling at the end and its memory
# would climb for that reason alone. The soak bounds it to a size the first minutes fill, so that the
# judged half shows whatever else grows.
TEMPORAL_CACHE = {"history.hostLevelCacheMaxSize": "512"}
VERIFY_FIGURES = ("sent", "attempts", "acknowledged", "refused_503", "connection_errors", "archived",
                  "recorded_not_acknowledged", "duplicates", "failures")


def soak_load(minutes: float, rate: float, seed: int) -> LoadSettings:
    """`rate` deliveries a second for `minutes`, each with a small image (4-32 KiB). No large files:
    moto and the fake Graph hold media in memory, and an hour of 12 MiB videos would fill it."""
    return LoadSettings(deliveries=max(1, round(minutes * 60 * rate)), rate=rate, large_every=0,
                        small_bytes=(4 * KIB, 32 * KIB), seed=seed)


def series(samples: list[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """Every sampled series as (seconds, values): `rss_mib.<part>`, `pss_mib.<part>`, `fds.<part>`, the
    three counts and the Temporal server's gauges as `<gauge>.temporal`; a sample missing a value (a
    part not running, a backlog not reported) is left out of its series."""
    found: dict[str, tuple[list[float], list[float]]] = {}

    def add(name: str, t: float, value: float | None) -> None:
        if value is not None:
            times, values = found.setdefault(name, ([], []))
            times.append(t)
            values.append(value)

    for s in samples:
        for part, figures in s["processes"].items():
            for metric in ("rss_mib", "pss_mib", "fds"):
                add(f"{metric}.{part}", s["t"], figures[metric])
        for metric in ("pg_connections", "workflows_running", "task_queue_backlog"):
            add(metric, s["t"], s[metric])
        for gauge in ("heap_inuse_mib", "goroutines", "mutable_state_cache"):
            add(f"{gauge}.temporal", s["t"], s["temporal_metrics"][gauge])
    return found


def judge_all(samples: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    verdicts = {}
    for name, (times, values) in sorted(series(samples).items()):
        verdict = judge(times, values, ALLOWANCES[name.split(".", 1)[0]])
        verdict["counted"] = name not in NOT_COUNTED
        if name in NOT_COUNTED:
            verdict["note"] = NOT_COUNTED[name]
        verdicts[name] = verdict
    return verdicts


async def soak(stack: ChaosStack, *, minutes: float, interval: float, rate: float, seed: int = 0,
               settle_timeout: float = 900) -> dict[str, Any]:
    """Drive the load and sample a started stack; returns the report (without the PNG's path)."""
    load = Load(stack.graph, stack.webhook_urls, APP_SECRET, soak_load(minutes, rate, seed),
                in_flight=stack.in_flight)
    results: dict[str, Any] = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {"minutes": minutes, "interval": interval, "rate": rate, "seed": seed,
                     "deliveries": load.settings.deliveries},
        "samples": [], "problems": []}
    started = time.monotonic()
    load_task = asyncio.create_task(load.run())
    try:
        # Samples at 0, interval, 2 x interval ... up to the end of the sending, on the clock.
        for k in range(int(minutes * 60 // interval) + 1):
            await asyncio.sleep(max(0.0, started + k * interval - time.monotonic()))
            results["samples"].append(await sample(stack, started))
            print(f"soak: sample {k} at {results['samples'][-1]['t']:.0f} s", file=sys.stderr)
        deliveries = await load_task
    finally:
        if not load_task.done():
            load_task.cancel()
    expected = set(NAMES)
    for s in results["samples"]:
        gone = expected - set(s["processes"])
        if gone:
            results["problems"].append(f"at {s['t']:.0f} s not running: {', '.join(sorted(gone))}")
    # Verified as a scenario whose "fault" is the end of the load: the catch-up figure is then the
    # seconds from the last delivery's answer to the last record written.
    end = Fault(started=load.finished_at, ended=load.finished_at)
    verdict = await verify(stack, deliveries, end, settle_timeout=settle_timeout)
    figures = {key: verdict.figures[key] for key in VERIFY_FIGURES}
    figures["caught_up_after_load_s"] = verdict.figures["caught_up_after_fault_s"]
    results["verification"] = {"passed": verdict.passed, "problems": verdict.problems, "figures": figures}
    results["verdicts"] = judge_all(results["samples"])
    results["flat"] = all(v["verdict"] == FLAT for v in results["verdicts"].values() if v["counted"])
    results["passed"] = verdict.passed and results["flat"] and not results["problems"]
    return results


def table(results: dict[str, Any]) -> str:
    columns = (("series", 22), ("verdict", 16), ("start", 9), ("end", 9), ("median", 9), ("growth/h", 9),
               ("allowed/h", 10), ("noise/h", 9))
    lines = ["  ".join(f"{name:<{width}}" for name, width in columns)]
    for name, v in results["verdicts"].items():
        verdict = v["verdict"] if v["counted"] else f"({v['verdict']})"
        row = (name, verdict, v["start"], v["end"], v.get("median"), v.get("growth_per_hour"),
               v.get("allowed_per_hour"), v.get("noise_per_hour"))
        lines.append("  ".join(f"{'-' if x is None else x!s:<{w}}" for x, (_, w) in zip(row, columns, strict=True)))
    for name, v in results["verdicts"].items():
        if "note" in v:
            lines.append(f"  {name}: not counted: {v['note']}")
    check = results["verification"]
    f = check["figures"]
    lines.append(f"verification: {'pass' if check['passed'] else 'FAIL'}: sent {f['sent']}, acknowledged "
                 f"{f['acknowledged']}, archived {f['archived']}, duplicates {f['duplicates']}, failures "
                 f"{f['failures']}, caught up {f['caught_up_after_load_s']} s after the load")
    lines += [f"  {p}" for p in check["problems"] + results["problems"]]
    lines.append(f"soak: {'pass' if results['passed'] else 'FAIL'} ({'flat' if results['flat'] else 'NOT flat'})")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chaos soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="how long the load runs (default 10; the real soak: 60)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between samples (default 60)")
    parser.add_argument("--rate", type=float, default=2.0, help="new deliveries per second (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the load")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON and PNG go (default chaos/results)")
    parser.add_argument("--settle-timeout", type=float, default=900,
                        help="how long the archive may take to catch up after the load (default 900 s)")
    parser.add_argument("--rejudge", type=Path, metavar="REPORT",
                        help="judge a finished soak's JSON report again (no run); rewrites its JSON and PNG")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.interval <= 0 or args.rate <= 0:
        parser.error("--minutes, --interval and --rate must be positive")
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    stack = ChaosStack(backend="s3", temporal_config=TEMPORAL_CACHE)
    try:
        begun = time.monotonic()
        await stack.start()
        print(f"soak: stack up in {time.monotonic() - begun:.0f} s ({stack.run_dir}); {args.rate}/s for "
              f"{args.minutes} min, a sample every {args.interval} s", file=sys.stderr)
        return await soak(stack, minutes=args.minutes, interval=args.interval, rate=args.rate, seed=args.seed,
                          settle_timeout=args.settle_timeout)
    finally:
        await stack.stop()


def rejudge(path: Path) -> dict[str, Any]:
    """A finished soak's report judged again by today's rules (its samples and verification as they were)."""
    results: dict[str, Any] = json.loads(path.read_text())
    results["verdicts"] = judge_all(results["samples"])
    results["flat"] = all(v["verdict"] == FLAT for v in results["verdicts"].values() if v["counted"])
    results["passed"] = results["verification"]["passed"] and results["flat"] and not results["problems"]
    return results


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    results = rejudge(args.rejudge) if args.rejudge else asyncio.run(run(args))
    png = write_png(results, args.out / f"soak-{report.stamp(results)}.png")
    latest_png = args.out / "soak-latest.png"
    shutil.copyfile(png, latest_png)
    results["png"] = str(latest_png)
    path = report.write_json(results, args.out, prefix="soak-")
    print(table(results))
    print(f"\nwritten to {path} and {latest_png}")
    return 0 if results["passed"] else 1
