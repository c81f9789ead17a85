"""The soak's PNG: one panel per metric over the run's minutes, each line labelled with its verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: the plot is only ever written to a file

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

PANELS = (
    ("rss_mib", "RSS (MiB; PostgreSQL: postmaster + backends)"),
    ("pss_mib", "PSS (MiB; shared pages counted once)"),
    ("fds", "open file descriptors"),
    ("temporal_metrics", "Temporal server: Go heap in use (MiB), goroutines / 10, mutable-state cache / 10"),
    ("pg_connections", "PostgreSQL client connections"),
    ("temporal", "Temporal: running workflows, task queue backlog"),
)


TEMPORAL_LINES = (("heap_inuse_mib", "Go heap in use", 1), ("goroutines", "goroutines / 10", 10),
                  ("mutable_state_cache", "mutable-state cache / 10", 10))


def _scaled(value: float | None, scale: int) -> float | None:
    return None if value is None else value / scale


def write_png(results: dict[str, Any], path: Path) -> Path:
    samples, verdicts = results["samples"], results["verdicts"]
    minutes = [s["t"] / 60 for s in samples]
    names = sorted({name for s in samples for name in s["processes"]})
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(11, 19), sharex=True)
    for ax, (metric, title) in zip(axes, PANELS, strict=True):
        if metric in ("rss_mib", "pss_mib", "fds"):
            lines = {f"{metric}.{name}": (name, [s["processes"].get(name, {}).get(metric) for s in samples])
                     for name in names}
        elif metric == "temporal_metrics":
            lines = {f"{gauge}.temporal": (label, [_scaled(s[metric][gauge], scale) for s in samples])
                     for gauge, label, scale in TEMPORAL_LINES}
        elif metric == "temporal":
            lines = {key: (key.replace("_", " "), [s[key] for s in samples])
                     for key in ("workflows_running", "task_queue_backlog")}
        else:
            lines = {metric: ("connections", [s[metric] for s in samples])}
        for series, (label, values) in lines.items():
            judged = verdicts.get(series, {})
            verdict = judged.get("verdict", "not judged") + ("" if judged.get("counted", True) else ", not counted")
            ax.plot(minutes, [float("nan") if v is None else v for v in values], marker=".",
                    label=f"{label} ({verdict})")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[-1].set_xlabel("minutes since the load started")
    settings = results["settings"]
    fig.suptitle(f"soak {results['started']}: {settings['rate']}/s for {settings['minutes']} min, "
                 f"sampled every {settings['interval']} s — {'flat' if results['flat'] else 'NOT flat'}")
    fig.tight_layout(rect=(0, 0, 1, 0.97))  # room for the title above the first panel
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
