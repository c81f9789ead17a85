"""Temporal's own SDK metrics (polls, task latencies, slots, sticky cache, failed activities), in the
same registry as the archive's, so the worker has one port to scrape.

The SDK's Core records into a MetricBuffer, which is drained into a collector here: counters are
summed, gauges keep their last value, histogram values are bucketed. Temporal's own Prometheus exporter
would need a second port; the buffer puts everything behind the worker's /metrics. Names are the SDK's
(prefix `temporal_`), counters with Prometheus' `_total`, durations in seconds.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import REGISTRY
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from temporalio import activity, workflow
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_GAUGE,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
)

from wa_archive.logs import core_logging_config

# Updates the Core holds between two drains; the worker drains every few seconds and on every scrape.
BUFFER_SIZE = 100_000
# Seconds: the SDK's latencies run from milliseconds (a workflow task) to minutes (a long activity).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
Labels = tuple[tuple[str, str], ...]
# Labels whose value whoever starts a workflow on the cluster chooses (a type this worker does not
# have still gets a failed task, labelled with its name): only the types registered here are kept,
# any other is "other", so nobody outside can add series (memory) or put their bytes on /metrics.
_REGISTERED: dict[str, frozenset[str]] = {"workflow_type": frozenset(), "activity_type": frozenset()}
OTHER = "other"


def register_types(workflows: Iterable[type], activities: Iterable[Callable[..., object]]) -> None:
    """The workflow and activity types this process's worker runs: the values their labels may take."""
    _REGISTERED["workflow_type"] = frozenset(str(workflow._Definition.must_from_class(w).name) for w in workflows)
    _REGISTERED["activity_type"] = frozenset(
        str(activity._Definition.must_from_callable(a).name) for a in activities)


@dataclass
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    count: int = 0
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(BUCKETS, value)] += 1
        self.count += 1
        self.total += value


@dataclass
class _Family:
    kind: int
    help: str
    values: dict[Labels, float] = field(default_factory=dict)
    histograms: dict[Labels, _Histogram] = field(default_factory=dict)


class TemporalMetrics(Collector):
    """Drains a MetricBuffer and presents what it held as Prometheus families."""

    def __init__(self, buffer: MetricBuffer) -> None:
        self.buffer = buffer
        self._families: dict[str, _Family] = {}
        self._lock = threading.Lock()

    def drain(self) -> None:
        """Fold the updates recorded since the last drain into the totals."""
        with self._lock:
            for update in self.buffer.retrieve_updates():
                m = update.metric
                family = self._families.setdefault(m.name, _Family(m.kind, m.description or m.name))
                labels = _labels(update.attributes)
                if m.kind == BUFFERED_METRIC_KIND_COUNTER:
                    family.values[labels] = family.values.get(labels, 0.0) + update.value
                elif m.kind == BUFFERED_METRIC_KIND_GAUGE:
                    family.values[labels] = float(update.value)
                else:
                    family.histograms.setdefault(labels, _Histogram()).observe(float(update.value))

    def collect(self) -> Iterator[Metric]:
        self.drain()
        with self._lock:
            for name, family in sorted(self._families.items()):
                yield _metric(name, family)


def _labels(attributes: Mapping[str, str | int | float | bool]) -> Labels:
    return tuple(sorted((key, _label_value(key, str(value))) for key, value in attributes.items()))


def _label_value(key: str, value: str) -> str:
    allowed = _REGISTERED.get(key)
    return value if allowed is None or value in allowed else OTHER


def _metric(name: str, family: _Family) -> Metric:
    # Label sets differ between updates of one SDK metric, so samples are built one by one rather
    # than through a family with fixed label names.
    if family.kind == BUFFERED_METRIC_KIND_COUNTER:
        metric = Metric(name, family.help, "counter")
        metric.samples = [Sample(f"{name}_total", dict(labels), value) for labels, value in family.values.items()]
    elif family.kind == BUFFERED_METRIC_KIND_GAUGE:
        metric = Metric(name, family.help, "gauge")
        metric.samples = [Sample(name, dict(labels), value) for labels, value in family.values.items()]
    else:
        metric = Metric(name, family.help, "histogram")
        for labels, hist in family.histograms.items():
            running = 0
            for bound, count in zip([*map(str, BUCKETS), "+Inf"], hist.buckets, strict=True):
                running += count
                metric.samples.append(Sample(f"{name}_bucket", {**dict(labels), "le": bound}, running))
            metric.samples.append(Sample(f"{name}_count", dict(labels), hist.count))
            metric.samples.append(Sample(f"{name}_sum", dict(labels), hist.total))
    return metric


_runtime: tuple[Runtime, TemporalMetrics] | None = None


def metrics_runtime(log_level: str = "INFO") -> tuple[Runtime, TemporalMetrics]:
    """The process's Temporal runtime whose SDK metrics land in the registry (made once: each runtime
    has its own threads). A client connected with it gives its workers' metrics to the collector; its
    Core logs are forwarded into Python logging like the default runtime's, so they stay JSON."""
    global _runtime
    if _runtime is None:
        buffer = MetricBuffer(BUFFER_SIZE, MetricBufferDurationFormat.SECONDS)
        runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer, logging=core_logging_config(log_level)))
        collector = TemporalMetrics(buffer)
        REGISTRY.register(collector)
        _runtime = (runtime, collector)
    return _runtime
