"""The soak (chaos/soak.py), short: `python -m chaos soak` for one minute at 2 deliveries a second,
sampled every 10 s, on its own production-shaped stack. A minute is too short to call anything flat
(start-up growth is most of it), so this checks what the soak records and that the run verified, not
the verdicts; the judgement itself is tested on synthetic series in test_soak_flatness.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.flatness import FLAT, GROWING, TOO_FEW
from chaos.stack import NAMES

pytestmark = [pytest.mark.xdist_group("chaos"), pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent


def test_a_short_soak_samples_every_part_and_metric_plots_them_and_verifies(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-m", "chaos", "soak", "--minutes", "1", "--interval", "10", "--rate", "2",
                           "--out", str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert (tmp_path / "soak-latest.json").exists(), done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "soak-latest.json").read_text())
    assert done.returncode == (0 if report["passed"] else 1), done.stdout[-3000:]

    check = report["verification"]
    assert check["passed"], check["problems"]
    assert check["figures"]["sent"] == 120 == check["figures"]["acknowledged"] == check["figures"]["archived"]
    assert check["figures"]["duplicates"] == 0 and check["figures"]["failures"] == 0
    assert report["problems"] == [], "a part of the stack was not running at a sample"

    samples = report["samples"]
    assert [s["t"] // 10 for s in samples] == [0, 1, 2, 3, 4, 5, 6]
    for s in samples:
        assert set(s["processes"]) == set(NAMES)
        for part, figures in s["processes"].items():
            assert figures["rss_mib"] > 10 and figures["fds"] > 0 and figures["processes"] >= 1, (part, figures)
            assert 1 < figures["pss_mib"] <= figures["rss_mib"], (part, figures)
        assert s["processes"]["postgres"]["processes"] > 1, "the postmaster's backends are not summed in"
        assert s["pg_connections"] >= 1  # at least the harness's own pool
        assert isinstance(s["workflows_running"], int) and isinstance(s["task_queue_backlog"], int)
        gauges = s["temporal_metrics"]
        assert gauges["heap_inuse_mib"] > 1 and gauges["goroutines"] > 10, gauges
        assert gauges["mutable_state_cache_size"] == 512 and 0 <= gauges["mutable_state_cache"] <= 512, gauges

    expected = {f"{metric}.{part}" for metric in ("rss_mib", "pss_mib", "fds") for part in NAMES}
    expected |= {"pg_connections", "workflows_running", "task_queue_backlog"}
    expected |= {f"{gauge}.temporal" for gauge in ("heap_inuse_mib", "goroutines", "mutable_state_cache")}
    assert set(report["verdicts"]) == expected
    for name, verdict in report["verdicts"].items():
        assert verdict["samples"] == 7 and verdict["verdict"] in (FLAT, GROWING), (name, verdict)
        assert verdict["verdict"] != TOO_FEW
    assert report["flat"] == all(v["verdict"] == FLAT for v in report["verdicts"].values() if v["counted"])

    png = Path(report["png"])
    assert png == tmp_path / "soak-latest.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"soak: {'pass' if report['passed'] else 'FAIL'} (" in done.stdout
