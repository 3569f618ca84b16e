"""`GET /metrics`: the self-metrics as Prometheus text, through `prometheus_client`.

A custom collector reads one status snapshot per scrape (`metrics.families`), so nothing on the
hot path counts twice and a scrape costs the same at 100 or 100,000 profiles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from via_otlp.telemetry.metrics import Family, Histogram, Kind, families

CONTENT_TYPE = CONTENT_TYPE_LATEST
StatusSource = Callable[[], Mapping[str, Any]]


def _inf_buckets(h: Histogram) -> list[tuple[str, float]]:
    out = [(repr(float(b)), float(n)) for b, n in zip(h.bounds, h.buckets, strict=True)]
    out.append(("+Inf", float(h.count)))
    return out


def to_prometheus(family: Family) -> Metric:
    """One family as a prometheus_client metric family."""
    name = family.prometheus_name
    label_names = sorted({k for labels, _ in family.points for k, _ in labels})
    metric: CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily
    if family.kind is Kind.COUNTER:
        metric = CounterMetricFamily(name, family.description, labels=label_names)
    elif family.kind is Kind.GAUGE:
        metric = GaugeMetricFamily(name, family.description, labels=label_names)
    else:
        metric = HistogramMetricFamily(name, family.description, labels=label_names)
    for labels, value in family.points:
        d = dict(labels)
        values = [d.get(k, "") for k in label_names]
        if isinstance(value, Histogram):
            assert isinstance(metric, HistogramMetricFamily)
            metric.add_metric(values, _inf_buckets(value), value.sum)
        else:
            assert not isinstance(metric, HistogramMetricFamily)
            metric.add_metric(values, value)
    return metric


class StatusCollector:
    """A prometheus_client collector over a status source (e.g. `App.status`)."""

    def __init__(self, source: StatusSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        for family in families(self._source()):
            yield to_prometheus(family)

    def describe(self) -> list[Metric]:
        return []  # no fixed description: the registry must not call collect() at register time


def render(source: StatusSource) -> bytes:
    """The Prometheus text exposition of one snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(source))
    return generate_latest(registry)
