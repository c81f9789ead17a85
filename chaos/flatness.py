"""Whether a soak series "stays flat": the judgement, pure arithmetic on (seconds, value) samples.

A series is judged on the second half of the run (samples at or after half the run's length, and
never the first `WARMUP_SAMPLES`): start-up, caches filling and the first connections happen before
that. Over those samples a least-squares line gives the growth per hour. The series is **growing**
when both
  - that growth exceeds the series' allowance: the larger of an absolute figure per hour and a
    fraction of the judged samples' median per hour (`Allowance`; RSS e.g. 32 MiB/hour or 10 % of the
    median, whichever is larger), and
  - the slope is more than twice its standard error, so the trend is not the samples' noise (a
    process whose RSS jumps up and down by a few MiB does not count as a leak on a short run);
otherwise it is **flat**. Falling is flat: only growth leaks. With fewer than `MIN_JUDGED` samples
in the judged half the verdict is `too few samples`, never flat.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

WARMUP_SAMPLES = 2
MIN_JUDGED = 3
NOISE_STDERRS = 2.0
FLAT, GROWING, TOO_FEW = "flat", "growing", "too few samples"


@dataclass(frozen=True)
class Allowance:
    per_hour: float  # growth per hour always allowed, in the series' unit
    fraction_per_hour: float  # growth per hour allowed as a fraction of the judged samples' median

    def at(self, median: float) -> float:
        return max(self.per_hour, self.fraction_per_hour * abs(median))


ALLOWANCES = {
    "rss_mib": Allowance(32.0, 0.10),
    "pss_mib": Allowance(32.0, 0.10),
    "heap_inuse_mib": Allowance(32.0, 0.10),
    "goroutines": Allowance(50.0, 0.10),
    "mutable_state_cache": Allowance(100.0, 0.25),
    "fds": Allowance(10.0, 0.10),
    "pg_connections": Allowance(3.0, 0.10),
    "workflows_running": Allowance(20.0, 0.25),
    "task_queue_backlog": Allowance(20.0, 0.25),
}


def least_squares(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """The slope of the least-squares line through the points, and its standard error (0 when the
    points lie on the line; infinite with fewer than three points)."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return 0.0, math.inf
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    if n < 3:
        return slope, math.inf
    intercept = mean_y - slope * mean_x
    residual = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return slope, math.sqrt(residual / (n - 2) / sxx)


def judged_window(times: list[float]) -> list[int]:
    """Indexes of the samples judged: the second half of the run, after the warm-up samples."""
    if not times:
        return []
    half = times[0] + (times[-1] - times[0]) / 2
    return [i for i, t in enumerate(times) if i >= WARMUP_SAMPLES and t >= half]


def judge(times: list[float], values: list[float], allowance: Allowance) -> dict[str, Any]:
    """The verdict on one series with its figures (growth and allowance per hour, start, end, median)."""
    if len(times) != len(values):
        raise ValueError("one value per sample time")
    window = judged_window(times)
    figures: dict[str, Any] = {"samples": len(values), "judged_samples": len(window),
                               "start": values[0] if values else None, "end": values[-1] if values else None,
                               "min": min(values, default=None), "max": max(values, default=None)}
    if len(window) < MIN_JUDGED:
        return {"verdict": TOO_FEW, **figures}
    xs, ys = [times[i] for i in window], [values[i] for i in window]
    slope, stderr = least_squares(xs, ys)
    median = statistics.median(ys)
    growth, allowed = slope * 3600, allowance.at(median)
    noise = NOISE_STDERRS * stderr * 3600
    growing = growth > allowed and growth > noise
    return {"verdict": GROWING if growing else FLAT, **figures, "median": round(median, 2),
            "growth_per_hour": round(growth, 2), "allowed_per_hour": round(allowed, 2),
            "noise_per_hour": round(noise, 2) if math.isfinite(noise) else None}
