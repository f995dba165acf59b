"""Prometheus metrics of autobuild. Label sets are bounded: outcomes and stage names only,
never repositories or tags (one series per repository would grow without limit)."""
from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class _QueueCollector:
    def __init__(self, counts: Callable[[], dict[str, int]]):
        self.counts = counts

    def collect(self):
        counts = self.counts()
        gauge = GaugeMetricFamily("asci_autobuild_builds", "Builds currently in each state", labels=["status"])
        for status in ("queued", "running"):
            gauge.add_metric([status], counts.get(status, 0))
        yield gauge
        yield GaugeMetricFamily("asci_autobuild_queue_depth", "Builds waiting to run", value=counts.get("queued", 0))


class BuildMetrics:
    def __init__(self, counts: Callable[[], dict[str, int]]):
        self.registry = CollectorRegistry()
        self.builds = Counter("asci_autobuild_builds_finished", "Builds finished, by outcome", ["outcome"],
                              registry=self.registry)
        self.retries = Counter("asci_autobuild_retries", "Builds put back in the queue after a transient failure",
                               registry=self.registry)
        self.deliveries = Counter("asci_autobuild_deliveries", "Webhook deliveries, by answer", ["answer"],
                                  registry=self.registry)
        self.stage_seconds = Histogram("asci_autobuild_stage_duration_seconds", "Time spent in each build stage",
                                       ["stage"], buckets=STAGE_BUCKETS, registry=self.registry)
        self.registry.register(_QueueCollector(counts))

    def render(self) -> bytes:
        return generate_latest(self.registry)
