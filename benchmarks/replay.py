"""Replay read rates: file → normalised LogBatches, per input format, against the protobuf ceiling.

The same 60,000 realistic records (benchmarks/intake.py's requests: 5 services, 40 message
shapes, 4 attributes, trace ids) written as OTLP/JSON (the Collector's file exporter: one
request per line, integer enums, hex ids), NDJSON and plain text lines with ISO timestamps.
Each is read back with `replay.read_batches` (decode and normalise; templating and detection
are the same for every format and left out). In the same run: the protobuf decode ceiling
(`ExportLogsServiceRequest.FromString` alone), protobuf decode + normalise (what gRPC intake
does), and the old OTLP/JSON path (json_format into a message, then normalise).
CPU seconds (process_time), best of --repeat interleaved rounds. Target: otlp-json >= 150,000
records/s.

    python -m benchmarks.replay [--requests 60] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from benchmarks.intake import make_request
from via_otlp.config import Config
from via_otlp.patterns import PatternStage
from via_otlp.receive.intake import Intake, RecordQueue
from via_otlp.receive.normalise import Normaliser
from via_otlp.receive.otlp_codec import decode_json
from via_otlp.replay import Format, ReplayProblems, read_batches


def otlp_json_line(req: ExportLogsServiceRequest) -> str:
    """As the Collector's file exporter writes it: integer enums, hex ids, int64 as strings."""
    doc = json_format.MessageToDict(req, use_integers_for_enums=True)
    for rl in doc.get("resourceLogs", []):
        for sl in rl.get("scopeLogs", []):
            for lr in sl.get("logRecords", []):
                for key in ("traceId", "spanId"):
                    if key in lr:
                        import base64

                        lr[key] = base64.b64decode(lr[key]).hex()
    return json.dumps(doc, separators=(",", ":"))


def write_files(payloads: list[bytes], where: Path) -> dict[str, Path]:
    files = {f: where / f"in.{f}" for f in ("otlp-json", "ndjson", "text")}
    with (files["otlp-json"].open("w") as oj, files["ndjson"].open("w") as nd,
          files["text"].open("w") as tx):  # fmt: skip
        for data in payloads:
            req = ExportLogsServiceRequest.FromString(data)
            oj.write(otlp_json_line(req) + "\n")
            for rl in req.resource_logs:
                service = rl.resource.attributes[0].value.string_value
                for sl in rl.scope_logs:
                    for lr in sl.log_records:
                        t = lr.time_unix_nano / 1e9
                        nd.write(json.dumps({
                            "time": lr.time_unix_nano, "service": service,
                            "severity": lr.severity_text, "body": lr.body.string_value,
                            "trace_id": lr.trace_id.hex(),
                            "attributes": {kv.key: kv.value.string_value or kv.value.int_value
                                           for kv in lr.attributes},
                        }) + "\n")  # fmt: skip
                        stamp = datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")
                        tx.write(f"{stamp} {lr.severity_text} {lr.body.string_value}\n")
    return files


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    t = time.process_time()
    n = fn()
    return time.process_time() - t, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rng = random.Random(7)
    payloads = [make_request(rng) for _ in range(args.requests)]
    config = Config()

    def intake() -> Intake:
        return Intake(Normaliser(), PatternStage(config.patterns), RecordQueue(10**9))

    def ceiling() -> int:
        return sum(
            sum(len(sl.log_records) for rl in ExportLogsServiceRequest.FromString(d).resource_logs
                for sl in rl.scope_logs)
            for d in payloads
        )  # fmt: skip

    def protobuf() -> int:
        i = intake()
        return sum(len(i.prepare_request(ExportLogsServiceRequest.FromString(d))) for d in payloads)

    with tempfile.TemporaryDirectory() as tmp:
        files = write_files(payloads, Path(tmp))
        lines = files["otlp-json"].read_text().splitlines()

        def old_json() -> int:
            i = intake()
            return sum(len(i.prepare_request(decode_json(line.encode()))) for line in lines)

        def replay(fmt: str) -> Callable[[], int]:
            def run() -> int:
                i, problems = intake(), ReplayProblems()
                n = sum(
                    len(b) for b in read_batches(str(files[fmt]), Format(fmt), "svc", problems, i)
                )
                assert not problems.count and not problems.untimed, problems
                return n

            return run

        rows = [
            ("protobuf decode (ceiling)", ceiling),
            ("protobuf decode + normalise", protobuf),
            ("otlp-json, old path (json_format)", old_json),
            ("replay otlp-json", replay("otlp-json")),
            ("replay ndjson", replay("ndjson")),
            ("replay text (line timestamps)", replay("text")),
        ]
        # Rounds interleave the rows, so that a busy spell of the machine hits them all alike;
        # each row keeps its best round.
        results = [(float("inf"), 0)] * len(rows)
        for _ in range(args.repeat):
            results = [min(r, timed(fn)) for r, (_, fn) in zip(results, rows, strict=True)]
        top = 0.0
        for (name, _), (seconds, n) in zip(rows, results, strict=True):
            rate = n / seconds
            top = top or rate
            print(
                f"{name:36s} {n:>8,} records  {rate:>12,.0f} records/s  {rate / top:6.3f} of ceiling"
            )


if __name__ == "__main__":
    main()
