"""The soak's judgement of "stays flat" (chaos/flatness.py) and its report and plot, on synthetic
series: pure units, no stack."""

from __future__ import annotations

import json
import random

import pytest

from chaos.flatness import ALLOWANCES, FLAT, GROWING, TOO_FEW, judge, judged_window, least_squares
from chaos.soak import judge_all, series, table
from chaos.soak_plot import write_png

RSS = ALLOWANCES["rss_mib"]
HOUR = [60.0 * m for m in range(61)]  # an hour sampled every minute


def test_least_squares_of_a_line_is_its_slope_with_no_error():
    slope, stderr = least_squares([0, 1, 2, 3], [5, 7, 9, 11])
    assert slope == pytest.approx(2.0)
    assert stderr == pytest.approx(0.0)


def test_the_judged_window_is_the_second_half_after_the_warm_up():
    assert judged_window(HOUR) == list(range(30, 61))
    assert judged_window([0, 10, 20, 30]) == [2, 3]  # the second half would be 2 and 3; 0 and 1 never


def test_a_noisy_level_series_is_flat():
    rng = random.Random(1)
    values = [120 + rng.uniform(-4, 4) for _ in HOUR]
    v = judge(HOUR, values, RSS)
    assert v["verdict"] == FLAT
    assert abs(v["growth_per_hour"]) < v["allowed_per_hour"]
    assert v["judged_samples"] == 31 and v["samples"] == 61


def test_a_steady_leak_is_growing_with_its_rate():
    rng = random.Random(2)
    values = [150 + 100 * t / 3600 + rng.uniform(-2, 2) for t in HOUR]  # 100 MiB an hour
    v = judge(HOUR, values, RSS)
    assert v["verdict"] == GROWING
    assert v["growth_per_hour"] == pytest.approx(100, abs=10)
    assert v["allowed_per_hour"] == 32.0  # 10 % of a ~230 MiB median is less than the 32 MiB floor


def test_growth_during_warm_up_then_level_is_flat():
    values = [40 + 20 * m if m < 5 else 140 for m in range(61)]  # caches fill for five minutes
    assert judge(HOUR, values, RSS)["verdict"] == FLAT


def test_a_leak_that_starts_in_the_second_half_is_growing():
    values = [200 if m < 30 else 200 + 3 * (m - 30) for m in range(61)]  # 180 MiB an hour from minute 30
    assert judge(HOUR, values, RSS)["verdict"] == GROWING


def test_the_allowance_is_relative_to_a_large_median():
    slow = [1000 + 80 * t / 3600 for t in HOUR]  # 8 % of the median an hour: within 10 %
    fast = [1000 + 150 * t / 3600 for t in HOUR]
    assert judge(HOUR, slow, RSS)["verdict"] == FLAT
    assert judge(HOUR, fast, RSS)["verdict"] == GROWING
    assert judge(HOUR, fast, RSS)["allowed_per_hour"] == pytest.approx(0.1 * 1000 + 0.1 * 150 * 0.75, rel=0.02)


def test_falling_is_flat():
    assert judge(HOUR, [300 - 2 * m for m in range(61)], RSS)["verdict"] == FLAT


def test_a_slope_the_noise_explains_is_flat_on_a_short_run():
    times = [0, 10, 20, 30, 40, 50, 60]
    values = [100, 101, 99, 100, 110, 98, 112]
    v = judge(times, values, RSS)
    assert v["growth_per_hour"] > v["allowed_per_hour"], "the extrapolated slope alone would call it a leak"
    assert v["noise_per_hour"] > v["growth_per_hour"]
    assert v["verdict"] == FLAT


def test_a_clean_ramp_on_a_short_run_is_growing():
    times = [0, 10, 20, 30, 40, 50, 60]
    v = judge(times, [100 + t / 10 for t in times], RSS)  # 360 MiB an hour, no noise
    assert v["verdict"] == GROWING


def test_too_few_samples_is_never_flat():
    v = judge([0, 60, 120], [1, 1, 1], RSS)
    assert v["verdict"] == TOO_FEW
    assert judge([], [], RSS)["verdict"] == TOO_FEW


def test_counts_have_their_own_allowance():
    connections = [7 + (m % 2) for m in range(61)]
    assert judge(HOUR, connections, ALLOWANCES["pg_connections"])["verdict"] == FLAT
    leaking = [7 + m // 6 for m in range(61)]  # a connection more every six minutes: 10 an hour
    assert judge(HOUR, leaking, ALLOWANCES["pg_connections"])["verdict"] == GROWING


def synthetic_samples(minutes: int = 10, leak_worker: bool = False) -> list[dict]:
    rng = random.Random(3)
    samples = []
    for m in range(minutes + 1):
        processes = {name: {"rss_mib": 120 + rng.uniform(-1, 1), "pss_mib": 100 + rng.uniform(-1, 1), "fds": 30,
                            "processes": 1} for name in ("worker-1", "webhook-1", "temporal")}
        processes["moto"] = {"rss_mib": 80 + 5 * m, "pss_mib": 70 + 5 * m, "fds": 4, "processes": 1}  # its objects
        # Summed RSS climbing as backends touch shared buffers while PSS (each page once) stays level.
        processes["postgres"] = {"rss_mib": 170 + 25 * m, "pss_mib": 90 + rng.uniform(-1, 1), "fds": 400,
                                 "processes": 19}
        if leak_worker:
            processes["worker-1"]["rss_mib"] = 120 + 8 * m
            processes["worker-1"]["pss_mib"] = 100 + 8 * m
        if m == 4:
            del processes["webhook-1"]  # not running at that sample: left out of its series
        samples.append({"t": 60.0 * m, "processes": processes, "pg_connections": 6,
                        "workflows_running": 3 + m % 2, "task_queue_backlog": None if m == 0 else 0,
                        "temporal_metrics": {"heap_inuse_mib": 40 + rng.uniform(-2, 2), "goroutines": 2300,
                                             "mutable_state_cache": min(512, 100 * m), "mutable_state_cache_size": 512}})
    return samples


def test_every_series_is_judged_and_moto_is_reported_but_not_counted():
    samples = synthetic_samples()
    found = series(samples)
    assert len(found["rss_mib.webhook-1"][0]) == 10 and len(found["rss_mib.worker-1"][0]) == 11
    assert len(found["task_queue_backlog"][0]) == 10
    verdicts = judge_all(samples)
    parts = ("worker-1", "webhook-1", "temporal", "moto", "postgres")
    assert set(verdicts) == {f"{m}.{p}" for m in ("rss_mib", "pss_mib", "fds") for p in parts} | {
        "pg_connections", "workflows_running", "task_queue_backlog", "heap_inuse_mib.temporal",
        "goroutines.temporal", "mutable_state_cache.temporal"}
    for name in ("rss_mib.moto", "pss_mib.moto", "rss_mib.postgres"):
        assert verdicts[name]["verdict"] == GROWING and verdicts[name]["counted"] is False, name
    assert verdicts["pss_mib.postgres"]["verdict"] == FLAT and verdicts["pss_mib.postgres"]["counted"] is True
    assert all(v["verdict"] == FLAT for name, v in verdicts.items() if v["counted"]), verdicts
    leaking = judge_all(synthetic_samples(leak_worker=True))
    assert leaking["rss_mib.worker-1"]["verdict"] == leaking["pss_mib.worker-1"]["verdict"] == GROWING


def report(samples: list[dict]) -> dict:
    verdicts = judge_all(samples)
    flat = all(v["verdict"] == FLAT for v in verdicts.values() if v["counted"])
    return {"started": "2025-01-01T00:00:00+00:00", "samples": samples, "verdicts": verdicts, "flat": flat,
            "passed": flat, "problems": [], "settings": {"minutes": 10, "interval": 60, "rate": 2.0},
            "verification": {"passed": True, "problems": [], "figures": {
                "sent": 1200, "acknowledged": 1200, "archived": 1200, "duplicates": 0, "failures": 0,
                "caught_up_after_load_s": 1.5}}}


def test_the_table_names_each_verdict_and_the_overall_one():
    text = table(report(synthetic_samples(leak_worker=True)))
    assert "rss_mib.worker-1" in text and "growing" in text
    assert "(growing)" in text and "not counted: moto" in text  # moto's verdict in brackets
    assert text.splitlines()[-1] == "soak: FAIL (NOT flat)"
    assert table(report(synthetic_samples())).splitlines()[-1] == "soak: pass (flat)"


def test_the_plot_is_a_png(tmp_path):
    path = write_png(report(synthetic_samples()), tmp_path / "soak.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000  # four panels of lines, not an empty canvas


def test_temporal_gauges_take_the_process_value_from_its_services_lines():
    from chaos.sampling import temporal_gauges

    page = "\n".join([
        "# HELP memory_heapinuse memory_heapinuse",
        'memory_heapinuse{service_name="frontend"} 2.097152e+07',
        'memory_heapinuse{service_name="history"} 2.3068672e+07',
        'num_goroutines{service_name="history"} 2326',
        'num_goroutines{service_name="matching"} 58',
        'cache_usage{cache_type="events",service_name="history"} 519',
        'cache_usage{cache_type="mutablestate",service_name="history"} 4',
        'cache_size{cache_type="mutablestate",service_name="history"} 512',
        'cache_size{cache_type="events",service_name="history"} 524288',
    ])
    assert temporal_gauges(page) == {"heap_inuse_mib": 22.0, "goroutines": 2326.0, "mutable_state_cache": 4.0,
                                     "mutable_state_cache_size": 512.0}
    assert temporal_gauges("") == dict.fromkeys(("heap_inuse_mib", "goroutines", "mutable_state_cache",
                                                 "mutable_state_cache_size"))


def test_a_finished_report_is_judged_again_by_todays_rules(tmp_path):
    from chaos.soak import NOT_COUNTED, rejudge

    finished = report(synthetic_samples())
    for verdict in finished["verdicts"].values():  # as an older version might have judged it
        verdict.update(verdict="growing", counted=True)
    finished["flat"] = finished["passed"] = False
    path = tmp_path / "soak.json"
    path.write_text(json.dumps(finished))
    again = rejudge(path)
    assert again["flat"] and again["passed"]
    assert again["samples"] == finished["samples"] and again["verification"] == finished["verification"]
    assert again["verdicts"]["pss_mib.worker-1"]["counted"] is False and "pss_mib.worker-1" in NOT_COUNTED
    assert again["verdicts"]["pss_mib.postgres"]["counted"] is True  # a group of processes: PSS counts it once
