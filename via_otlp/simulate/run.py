"""Runs: a scenario through the real pipeline, offline in event time or against a live server.

Offline, every generated request goes the way `replay` sends it: `intake.prepare_request` →
`intake.process` → `Pipeline.consume`, then `finish`. The run also learns which rhythm hashes
each scenario template got (intake keeps record order), so scoring can ask "was it the right
template?", not only "the right source".

Live, the scenario is moved to start now and sent over OTLP/gRPC as fast as the server takes
it; event time then runs ahead of the wall clock, so the server's buckets close on event time
exactly as in a replay (the server needs `receive.max_future_skew` at least the scenario's
length). The anomalies come back as OTLP logs to a small receiver started here
(`collect`): point the server's `emit.endpoint` at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from via_otlp.app import Pipeline
from via_otlp.config import Config
from via_otlp.errors import ViaError
from via_otlp.model import TEMPLATE_ATTRIBUTE, AnomalyEvent, AnomalyKind
from via_otlp.receive.normalise import Normaliser
from via_otlp.simulate.generate import GeneratedRequest, Traffic, generate
from via_otlp.simulate.scenario import Scenario
from via_otlp.simulate.score import Detection, Score, detections_of, score

ProgressFn = Callable[[int, int], None]  # (records done, records in total)


@dataclass
class RunResult:
    """One scenario's run: what was sent, what came back, and its score."""

    scenario: Scenario
    traffic: Traffic
    detections: list[Detection]
    events: list[AnomalyEvent]
    rhythms_of: dict[int, frozenset[str]] | None
    records: int
    seconds: float
    score: Score
    mode: str = "offline"


def score_run(
    traffic: Traffic,
    detections: list[Detection],
    rhythms_of: dict[int, frozenset[str]] | None,
    bucket_ns: int,
    time_shift_ns: int = 0,
) -> Score:
    sc = traffic.scenario
    windows = traffic.truth
    if time_shift_ns:
        from dataclasses import replace

        windows = [
            replace(w, start_ns=w.start_ns + time_shift_ns, end_ns=w.end_ns + time_shift_ns)
            for w in windows
        ]
    start = sc.start_ns + time_shift_ns
    return score(
        windows,
        detections,
        sources=[s.key for s in sc.sources],
        run_start_ns=start,
        run_end_ns=start + sc.buckets * sc.bucket_ns,
        bucket_ns=bucket_ns,
        tolerance_ns=round(sc.tolerance * 1e9),
        rhythms_of=rhythms_of,
    )


def run_offline(
    scenario: Scenario, config: Config, progress: ProgressFn | None = None
) -> RunResult:
    """Generate the scenario and replay it through a fresh `Pipeline` in event time."""
    started = time.monotonic()
    traffic = generate(scenario)
    end_ns = scenario.start_ns + scenario.buckets * scenario.bucket_ns
    events, rhythms_of, done = replay(
        traffic.requests(), config, end_ns, traffic.total_records, progress
    )
    detections = detections_of(events)
    sc = score_run(traffic, detections, rhythms_of, config.detect.bucket_ns)
    return RunResult(
        scenario, traffic, detections, events, rhythms_of, done, time.monotonic() - started, sc
    )


def replay(
    requests: Iterable[GeneratedRequest],
    config: Config,
    end_ns: int,
    total: int = 0,
    progress: ProgressFn | None = None,
) -> tuple[list[AnomalyEvent], dict[int, frozenset[str]], int]:
    """Generated requests through a fresh `Pipeline` in event time, as `replay` sends them.

    Returns the events, the rhythm hashes each template code got, and the records consumed.
    """
    events: list[AnomalyEvent] = []
    pipeline = Pipeline(config, registry=None, sink=events.extend)
    intake = pipeline.intake
    # The receive time: after the whole run, so no record counts as from the future.
    now_ns = end_ns + 3600 * 10**9
    pairs: set[tuple[str, int]] = set()
    done = 0
    for g in requests:
        batch = intake.process(intake.prepare_request(g.request, now_ns))
        if len(batch) == len(g.codes):
            pairs.update(zip(batch.rhythm_hash, g.codes.tolist(), strict=True))
        pipeline.consume(batch)
        done += len(batch)
        if progress is not None:
            progress(done, total)
    pipeline.finish()
    rhythms: dict[int, set[str]] = {}
    for rh, code in pairs:
        rhythms.setdefault(code, set()).add(rh)
    return events, {c: frozenset(v) for c, v in rhythms.items()}, done


# -- live --------------------------------------------------------------------------------------


def _source_key(resource_attributes: dict[str, str]) -> str:
    """The source key intake gives these resource attributes (default identity attributes)."""
    return Normaliser().source_for(resource_attributes).key


def detections_from_request(request: ExportLogsServiceRequest) -> list[Detection]:
    """Opening anomaly events carried by an OTLP logs request that via-otlp emitted."""
    out = []
    for rl in request.resource_logs:
        res = {kv.key: kv.value.string_value for kv in rl.resource.attributes}
        key = _source_key(res)
        for sl in rl.scope_logs:
            for lr in sl.log_records:
                a = {kv.key: kv.value for kv in lr.attributes}
                if "via.anomaly.kind" not in a or a["via.anomaly.state"].string_value != "open":
                    continue
                out.append(
                    Detection(
                        AnomalyKind(a["via.anomaly.kind"].string_value),
                        key,
                        a["via.rhythm_hash"].string_value,
                        int(a["via.episode.start_time_unix_nano"].int_value),
                        int(lr.time_unix_nano),
                        a[TEMPLATE_ATTRIBUTE].string_value if TEMPLATE_ATTRIBUTE in a else "",
                    )
                )
    return out


class Collector(logs_service_pb2_grpc.LogsServiceServicer):
    """An OTLP/gRPC logs receiver that keeps the anomaly events via-otlp emits to it."""

    def __init__(self) -> None:
        self.detections: list[Detection] = []
        self.last_change = time.monotonic()
        self._server: grpc.aio.Server | None = None
        self.port = 0

    async def Export(
        self, request: ExportLogsServiceRequest, context: grpc.aio.ServicerContext
    ) -> ExportLogsServiceResponse:
        found = detections_from_request(request)
        if found:
            self.detections += found
            self.last_change = time.monotonic()
        return ExportLogsServiceResponse()

    async def start(self, endpoint: str) -> None:
        self._server = grpc.aio.server()
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port(endpoint)
        if not self.port:
            raise ViaError(f"cannot listen on {endpoint} to collect anomalies")
        await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0.5)
            self._server = None


async def run_live(
    scenario: Scenario,
    target: str,
    collector: Collector,
    bucket_ns: int,
    progress: ProgressFn | None = None,
    settle: float = 5.0,
    deadline: float = 600.0,
    drained: Callable[[int], bool] | None = None,
) -> RunResult:
    """Send the scenario to `target` (host:port, OTLP/gRPC), starting now; collect and score.

    After sending, `drained(records sent)` (when given; called in a thread) is polled until the
    target says it has processed everything, so a slow target is not scored early; then the
    collector waits `settle` seconds and until nothing has arrived for one second."""
    started = time.monotonic()
    traffic = generate(scenario)
    total = traffic.total_records
    now = time.time_ns()
    shift = (now // bucket_ns + 1) * bucket_ns - scenario.start_ns
    before = len(collector.detections)
    done = 0
    async with grpc.aio.insecure_channel(
        target, options=[("grpc.max_send_message_length", 64 * 1024**2)]
    ) as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        for g in traffic.requests(shift):
            await _export(stub, g.request, started + deadline)
            done += len(g.codes)
            if progress is not None:
                progress(done, total)
    while drained is not None and not await asyncio.to_thread(drained, done):
        if time.monotonic() > started + deadline:
            break
        await asyncio.sleep(0.2)
    end = time.monotonic() + settle
    collector.last_change = time.monotonic()
    while time.monotonic() < end or time.monotonic() - collector.last_change < 1.0:
        await asyncio.sleep(0.2)
        if time.monotonic() > started + deadline:
            break
    detections = collector.detections[before:]
    sc = score_run(traffic, detections, None, bucket_ns, shift)
    return RunResult(
        scenario, traffic, detections, [], None, done, time.monotonic() - started, sc, "live"
    )


async def _export(
    stub: logs_service_pb2_grpc.LogsServiceStub, req: ExportLogsServiceRequest, until: float
) -> None:
    delay = 0.05
    while True:
        try:
            await stub.Export(req, timeout=30)
            return
        except grpc.aio.AioRpcError as exc:
            retryable = exc.code() in (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.UNAVAILABLE,
            )
            if not retryable or time.monotonic() > until:
                raise ViaError(
                    f"live target refused the scenario: {exc.code().name}: {exc.details()}"
                ) from None
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)


def run_live_sync(
    scenarios: list[Scenario],
    target: str,
    collect: str,
    bucket_ns: int,
    progress_for: Callable[[Scenario], ProgressFn | None] | None = None,
    settle: float = 5.0,
    drained: Callable[[int], bool] | None = None,
) -> list[RunResult]:
    """`run_live` for each scenario in turn, with one collector on `collect`."""

    async def main() -> list[RunResult]:
        collector = Collector()
        await collector.start(collect)
        try:
            out = []
            for sc in scenarios:
                p = progress_for(sc) if progress_for is not None else None
                out.append(
                    await run_live(sc, target, collector, bucket_ns, p, settle, drained=drained)
                )
            return out
        finally:
            with contextlib.suppress(Exception):
                await collector.stop()

    return asyncio.run(main())
