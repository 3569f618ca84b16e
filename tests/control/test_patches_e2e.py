"""Patches steer the pipeline end to end: `via-otlp serve` emits anomalies to a real OTLP/gRPC
server on loopback, and patches made through the control API change what arrives there.
Two instances on one database see each other's patches through LISTEN/NOTIFY.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLIENT_TIMEOUT, ServerProcess, start_server
from tests.control.conftest import (
    AUTH,
    call,
    control_config,
    ctl,
    history_then_novel_error,
    ingest,
    stub,
    wait_until,
)
from tests.emit.conftest import GrpcServerFactory, Recorder
from via_otlp.control.gen.via.v1 import control_pb2 as pb2

pytestmark = pytest.mark.slow


def emitting_to(endpoint: str) -> dict[str, Any]:
    config = control_config()
    config["emit"] = {"endpoint": endpoint, "batch": {"interval": "50ms"}}
    return config


def attrs(record: Any) -> dict[str, Any]:
    out = {}
    for kv in record.attributes:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out


def emitted_services(rec: Recorder) -> list[str]:
    """service.name of every anomaly log record received (incident records left aside)."""
    return [
        kv.value.string_value
        for req in rec.logs
        for rl in req.resource_logs
        for kv in rl.resource.attributes
        if kv.key == "service.name"
        for sl in rl.scope_logs
        for r in sl.log_records
        if r.event_name == "via.anomaly"
    ]


async def in_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


def anomalies_of(server: ServerProcess, source: str) -> list[dict[str, Any]]:
    return call(server.control_target, "ListAnomalies", {"source": source}).get("anomalies", [])


async def test_mute_and_drop_change_what_is_emitted(
    tmp_path: Path, grpc_server_factory: GrpcServerFactory
) -> None:
    downstream = await grpc_server_factory()
    server = await in_thread(start_server, tmp_path, emitting_to(downstream.endpoint))
    target = server.control_target
    try:
        muted = await in_thread(ctl, "patch", "add", "--rule", "mute", "--source", "ctl-muted",
                                "--reason", "known noisy", target=target)  # fmt: skip
        dropped = await in_thread(ctl, "patch", "add", "--rule", "drop", "--source", "ctl-dropped",
                                  "--template", "re:failing", target=target)  # fmt: skip
        assert muted.returncode == 0 and dropped.returncode == 0, muted.stderr + dropped.stderr

        now = time.time_ns()
        records = []
        for service in ("ctl-plain", "ctl-muted", "ctl-dropped"):
            records += history_then_novel_error(service, now, copies=3)
        await in_thread(ingest, server, records)

        # the unpatched source's novelty arrives downstream...
        await in_thread(
            wait_until,
            lambda: "ctl-plain" in emitted_services(downstream.rec),
            CLIENT_TIMEOUT,
            "ctl-plain",
        )
        # ...the muted one is recorded (flagged muted) in the same bucket, and not emitted
        (episode,) = await in_thread(
            wait_until,
            lambda: anomalies_of(server, "ctl-muted"),
            CLIENT_TIMEOUT,
            "the muted episode",
        )
        assert episode["muted"] and episode["kind"] == "ANOMALY_KIND_NOVELTY"
        assert not anomalies_of(server, "ctl-dropped"), "dropped records made an anomaly"
        await asyncio.sleep(0.5)  # one more emit batch interval, for good measure
        assert emitted_services(downstream.rec) == ["ctl-plain"]
        (plain,) = [r for r in downstream.rec.log_records if r.event_name == "via.anomaly"]
        assert "failing" in attrs(plain)["log.record.template"]  # what the DROP patch selects

        status = call(target, "GetStatus")
        assert int(status["intake"]["records_dropped_by_patch"]) == 3
        assert int(status["registry"]["events_muted"]) == 1
        assert int(status["events"]["suppressed"]) == 1 and int(status["events"]["emitted"]) == 1
        # the dropped ERROR records never reached a baseline: no profile for them
        dropped_profiles = call(target, "ListProfiles", {"source": "ctl-dropped"})["profiles"]
        assert [p["severity"] for p in dropped_profiles] == ["INFO"]

        # remove the MUTE patch: the next new pattern of ctl-muted is emitted
        patches = call(target, "ListPatches")["patches"]
        mute_id = next(p["id"] for p in patches if p["rule"] == "PATCH_RULE_MUTE")
        assert (await in_thread(ctl, "patch", "rm", mute_id, target=target)).returncode == 0
        later = time.time_ns()
        await in_thread(ingest, server, [
            {"time": later, "service": "ctl-muted", "severity": "ERROR",
             "body": "Replica lag above limit on shard 7"},
        ])  # fmt: skip
        await in_thread(
            wait_until,
            lambda: "ctl-muted" in emitted_services(downstream.rec),
            CLIENT_TIMEOUT,
            "ctl-muted",
        )
    finally:
        code = await in_thread(server.stop)
    assert code == 0, server.log()


async def test_a_threshold_patch_holds_back_lower_scores(
    tmp_path: Path, grpc_server_factory: GrpcServerFactory
) -> None:
    downstream = await grpc_server_factory()
    server = await in_thread(start_server, tmp_path, emitting_to(downstream.endpoint))
    target = server.control_target
    try:
        call(target, "UpsertPatch", {
            "patch": {"rule": "PATCH_RULE_THRESHOLD", "source": "ctl-strict", "threshold": 100},
        })  # fmt: skip
        now = time.time_ns()
        records = history_then_novel_error("ctl-plain", now) + history_then_novel_error(
            "ctl-strict", now
        )
        await in_thread(ingest, server, records)
        await in_thread(
            wait_until,
            lambda: "ctl-plain" in emitted_services(downstream.rec),
            CLIENT_TIMEOUT,
            "ctl-plain",
        )
        await in_thread(
            wait_until, lambda: anomalies_of(server, "ctl-strict"), CLIENT_TIMEOUT, "recorded"
        )
        await asyncio.sleep(0.5)
        assert emitted_services(downstream.rec) == ["ctl-plain"]
    finally:
        code = await in_thread(server.stop)
    assert code == 0, server.log()


def patches_in_force(server: ServerProcess) -> int:
    channel, control = stub(server.control_target)
    with channel:
        status = control.GetStatus(pb2.GetStatusRequest(), metadata=AUTH, timeout=CLIENT_TIMEOUT)
    return int(status.registry.patches_active)


def seconds_until(predicate: Any, timeout: float = CLIENT_TIMEOUT) -> float:
    """Seconds until `predicate()` held (printed, not asserted: a deadline only; the instances
    here reload patches only every hour, so a change seen at all came through NOTIFY)."""
    start = time.monotonic()
    wait_until(predicate, timeout, "the other instance to apply the patch")
    return time.monotonic() - start


def test_two_instances_on_one_database_share_patches_through_notify(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    config = control_config()
    config["registry"]["patch_refresh_interval"] = "1h"  # changes come through NOTIFY alone
    first = start_server(tmp_path / "a", config)
    second: ServerProcess | None = None
    try:
        database = call(first.control_target, "GetStatus")["registry"]["database"]
        extra = control_config()
        extra["registry"]["patch_refresh_interval"] = "1h"
        extra["registry"]["dsn"] = database
        second = start_server(tmp_path / "b", extra)
        assert not call(second.control_target, "GetStatus")["registry"].get("embedded")
        before = patches_in_force(first)

        # a DROP patch made through the second instance...
        created = call(second.control_target, "UpsertPatch", {
            "patch": {"rule": "PATCH_RULE_DROP", "source": "shared-*", "template": "re:noise"},
        })["patch"]  # fmt: skip
        took = seconds_until(lambda: patches_in_force(first) == before + 1)
        print(f"the first instance applied the patch after {took:.2f}s")
        # ...drops records at the first one's intake
        ingest(first, [{"service": "shared-api", "body": f"noise {i}"} for i in range(4)])
        wait_until(
            lambda: first.status()["intake"]["records_dropped_by_patch"] == 4,
            CLIENT_TIMEOUT,
            "the drop",
        )

        # and a removal through the first is seen by the second
        assert call(first.control_target, "DeletePatch", {"id": created["id"]}) == {}
        took = seconds_until(lambda: patches_in_force(second) == before)
        print(f"the second instance dropped the patch after {took:.2f}s")
    finally:
        codes = []
        if second is not None:
            codes.append(second.stop())
        codes.append(first.stop())
    assert codes == [0] * len(codes), first.log() + (second.log() if second else "")


async def test_allow_keeps_what_drop_and_mute_would_take_and_block_drops_before_templating(
    tmp_path: Path, grpc_server_factory: GrpcServerFactory
) -> None:
    """The seed plan's lists through ctl: BLOCK a noisy source's health checks before they
    reach the miner, DROP and MUTE a whole source but ALLOW its payment errors."""
    downstream = await grpc_server_factory()
    server = await in_thread(start_server, tmp_path, emitting_to(downstream.endpoint))
    target = server.control_target
    try:
        for args in (
            ("--rule", "block", "--source", "ctl-blocked", "--template", "GET /api/items/*"),
            ("--rule", "drop", "--source", "ctl-kept", "--template", "re:Connection"),
            ("--rule", "mute", "--source", "ctl-kept"),
            ("--rule", "allow", "--source", "ctl-kept", "--template", "Connection refused *"),
        ):
            done = await in_thread(ctl, "patch", "add", *args, target=target)
            assert done.returncode == 0, done.stderr
        rules = sorted(p["rule"] for p in call(target, "ListPatches")["patches"])
        assert rules == ["PATCH_RULE_ALLOW", "PATCH_RULE_BLOCK", "PATCH_RULE_DROP",
                         "PATCH_RULE_MUTE"]  # fmt: skip

        now = time.time_ns()
        records = history_then_novel_error(
            "ctl-kept", now, error="Connection refused by ledger at 10.0.0.7", copies=3
        )
        records += history_then_novel_error("ctl-blocked", now)
        await in_thread(ingest, server, records)
        # ALLOW beat DROP (the records were kept) and MUTE (the novelty is emitted)
        await in_thread(
            wait_until,
            lambda: "ctl-kept" in emitted_services(downstream.rec),
            CLIENT_TIMEOUT,
            "ctl-kept",
        )
        (episode,) = await in_thread(
            wait_until, lambda: anomalies_of(server, "ctl-kept"), CLIENT_TIMEOUT, "the kept episode"
        )
        assert not episode.get("muted")
        # BLOCK: the 55 history lines never reached the miner; the novel error did
        status = call(target, "GetStatus")
        assert int(status["intake"]["records_dropped_by_patch"]) == 55
        templates = call(target, "ListTemplates", {"source": "ctl-blocked"}).get("templates", [])
        assert len(templates) == 1 and "failing" in templates[0]["template"], templates
    finally:
        code = await in_thread(server.stop)
    assert code == 0, server.log()
