"""The self-metrics pushed as OTLP metrics, as the Collector's own telemetry is.

`encode` turns the families of one status snapshot (`metrics.families`) into an
`ExportMetricsServiceRequest`: counters as cumulative monotonic sums, gauges as gauges, stage
latencies as cumulative explicit-bucket histograms, labels as attributes, under the resource
`service.name=via-otlp`. `MetricsPusher` sends one every `telemetry.metrics.interval` to
`emit.endpoint` through the emitter's transport (protocol, TLS, headers, compression), and once
more at shutdown. Metrics are cumulative, so a failed push loses nothing: the next one carries
the totals; it is logged once per new error, not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Gauge,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import Histogram as HistogramProto
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from via_otlp import __version__
from via_otlp.emit.config import EmitConfig
from via_otlp.telemetry.config import MetricsConfig
from via_otlp.telemetry.metrics import Family, Histogram, Kind, families

log = logging.getLogger(__name__)

SCOPE_NAME = "via-otlp.telemetry"
StatusSource = Callable[[], Mapping[str, Any]]
_CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


def _attributes(labels: tuple[tuple[str, str], ...]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in labels]


def _metric(family: Family, start_ns: int, now_ns: int) -> Metric:
    metric = Metric(name=family.name, unit=family.unit, description=family.description)
    if family.kind is Kind.HISTOGRAM:
        points = []
        for labels, value in family.points:
            assert isinstance(value, Histogram)
            cumulative = [*value.buckets, value.count]
            per_bucket = [b - a for a, b in zip([0, *cumulative[:-1]], cumulative, strict=True)]
            points.append(
                HistogramDataPoint(
                    attributes=_attributes(labels), start_time_unix_nano=start_ns,
                    time_unix_nano=now_ns, count=value.count, sum=value.sum,
                    bucket_counts=per_bucket, explicit_bounds=list(value.bounds),
                )
            )  # fmt: skip
        metric.histogram.CopyFrom(
            HistogramProto(data_points=points, aggregation_temporality=_CUMULATIVE)
        )
        return metric
    numbers = [
        NumberDataPoint(
            attributes=_attributes(labels),
            start_time_unix_nano=start_ns,
            time_unix_nano=now_ns,
            as_double=float(value),
        )
        for labels, value in family.points
        if not isinstance(value, Histogram)
    ]
    if family.kind is Kind.COUNTER:
        metric.sum.CopyFrom(
            Sum(data_points=numbers, aggregation_temporality=_CUMULATIVE, is_monotonic=True)
        )
    else:
        metric.gauge.CopyFrom(Gauge(data_points=numbers))
    return metric


def encode(
    status: Mapping[str, Any], start_ns: int, now_ns: int, instance_id: str = ""
) -> ExportMetricsServiceRequest:
    """One snapshot as an OTLP metrics request (cumulative since `start_ns`)."""
    resource = Resource(
        attributes=_attributes(
            (("service.name", "via-otlp"), ("service.version", __version__))
            + ((("service.instance.id", instance_id),) if instance_id else ())
        )
    )
    scope = InstrumentationScope(name=SCOPE_NAME, version=__version__)
    metrics = [_metric(f, start_ns, now_ns) for f in families(status)]
    return ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(
                resource=resource, scope_metrics=[ScopeMetrics(scope=scope, metrics=metrics)]
            )
        ]
    )


class MetricsPusher:
    """Pushes the self-metrics to `emit.endpoint` on an interval; `start()` / `shutdown()`."""

    def __init__(self, config: MetricsConfig, emit: EmitConfig, source: StatusSource) -> None:
        self.config = config
        self.emit = emit
        self.source = source
        self.pushed = 0
        self.failed = 0
        self.last_error = ""
        self._start_ns = time.time_ns()
        self._instance = f"{socket.gethostname()}:{os.getpid()}"
        self._transport: Any = None
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.config.otlp and bool(self.emit.endpoint)

    async def start(self) -> None:
        if not self.enabled or self._task is not None:
            if self.config.otlp and not self.emit.endpoint:
                log.warning("telemetry.metrics.otlp is on but emit.endpoint is empty: not pushed")
            return
        from via_otlp.emit.config import parse_endpoint
        from via_otlp.emit.transport import make_transport

        target = parse_endpoint(self.emit.endpoint, self.emit.protocol, self.emit.tls.insecure)
        self._transport = make_transport(target, self.emit)
        await self._transport.start()
        self._task = asyncio.create_task(self._loop(), name="via-telemetry-push")

    async def push(self) -> bool:
        """Send one snapshot now; False (logged once per new error) when it failed."""
        if self._transport is None:
            return False
        request = encode(self.source(), self._start_ns, time.time_ns(), self._instance)
        try:
            await self._transport.send(request, self.config.timeout)
        except Exception as exc:
            self.failed += 1
            message = str(exc)
            if message != self.last_error:
                log.warning("self-metrics push to %s failed: %s", self.emit.endpoint, message)
            self.last_error = message
            return False
        self.pushed += 1
        self.last_error = ""
        return True

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.interval)
            await self.push()

    async def shutdown(self) -> None:
        """A last push (the final totals), then close; idempotent, safe without start."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.push()
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.close()
