"""The report of a `make chaos` run: a JSON file and the table printed on stdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COLUMNS = (("scenario", 27), ("result", 8), ("sent", 5), ("ack", 5), ("503", 5), ("conn", 5), ("archived", 8),
           ("dup", 4), ("fail", 5), ("fault s", 8), ("1st 200 s", 10), ("caught up s", 11))


def write_json(results: dict[str, Any], out_dir: Path, prefix: str = "") -> Path:
    """`{prefix}latest.json` and a copy named by the start time (the soak's prefix is `soak-`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{prefix}latest.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    stamped = out_dir / f"{prefix}{stamp(results)}.json"
    stamped.write_text(path.read_text())
    return path


def stamp(results: dict[str, Any]) -> str:
    """The run's start time as a file name part: 20250101T120000+0000."""
    started: str = results["started"]
    return started.replace(":", "").replace("-", "")


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def table(results: dict[str, Any]) -> str:
    lines = ["  ".join(f"{name:<{width}}" for name, width in COLUMNS)]
    for s in results["scenarios"]:
        f = s.get("figures", {})
        result = "not run" if s.get("not_run") else ("pass" if s["passed"] else "FAIL")
        row = (s["name"], result, f.get("sent"), f.get("acknowledged"), f.get("refused_503"),
               f.get("connection_errors"), f.get("archived"), f.get("duplicates"), f.get("failures"),
               f.get("fault_seconds"), f.get("first_200_after_fault_s"), f.get("caught_up_after_fault_s"))
        lines.append("  ".join(f"{_cell(v):<{w}}" for v, (_, w) in zip(row, COLUMNS, strict=True)))
    for s in results["scenarios"]:
        for problem in s.get("problems", []):
            lines.append(f"  {s['name']}: {problem}")
    return "\n".join(lines)
