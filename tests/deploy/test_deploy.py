"""The demo stack (deploy/) and the container files, checked as far as this machine can.

No container engine runs here, so `docker compose up` itself is not run. What is checked:
the Collector config (its graph in Python, and the real `otelcol-contrib validate` on the logs
pipelines with the components this build has), the compose file (the compose-spec rules the
stack relies on), the dashboard (structure, datasources, and every via-otlp metric it queries
exists in `/metrics`), the demo config, the Dockerfile and .dockerignore, the healthcheck
command against a real server, and the load generator run for real against a real via-otlp.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import BIN, REPO, ServerProcess, start_server
from tests.e2e.test_collector import collector_binary
from via_otlp.config import load_config
from via_otlp.configload import env_defaults
from via_otlp.telemetry.prometheus import render

DEPLOY = REPO / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
COLLECTOR = yaml.safe_load((DEPLOY / "collector.yaml").read_text())
DASHBOARD = json.loads((DEPLOY / "grafana" / "dashboards" / "via-otlp.json").read_text())


# --- Collector -------------------------------------------------------------------------------


def test_collector_graph_is_complete() -> None:
    """Every component a pipeline names is defined, and every defined one is used."""
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for name, pipeline in COLLECTOR["service"]["pipelines"].items():
        assert name.split("/")[0] in ("logs", "traces", "metrics"), name
        for kind in used:
            for component in pipeline.get(kind, []):
                assert component in COLLECTOR[kind], f"{name}: {component} is not defined"
                used[kind].add(component)
    for kind, names in used.items():
        assert set(COLLECTOR[kind]) == names, f"{kind} defined but not used"
    # via-otlp's own output never flows back into via-otlp
    for name, pipeline in COLLECTOR["service"]["pipelines"].items():
        if "otlp/via-anomalies" in pipeline["receivers"]:
            assert "otlp/via" not in pipeline["exporters"], name


def test_collector_endpoints_match_the_compose_services() -> None:
    services = set(COMPOSE["services"])
    assert COLLECTOR["exporters"]["otlp/via"]["endpoint"] == "via-otlp:4317"
    assert COLLECTOR["exporters"]["otlphttp/backend"]["endpoint"].startswith("http://lgtm:")
    assert {"via-otlp", "lgtm"} <= services
    via_env = COMPOSE["services"]["via-otlp"]["environment"]
    port = COLLECTOR["receivers"]["otlp/via-anomalies"]["protocols"]["grpc"]["endpoint"].split(":")[
        -1
    ]
    assert via_env["VIA_EMIT_ENDPOINT"] == f"http://collector:{port}"


def twin(config: dict[str, Any], log_file: Path) -> dict[str, Any]:
    """The logs pipelines of `config` with the components this otelcol build lacks replaced:
    OTLP receivers by `filelog`, the OTLP/gRPC exporter by `otlphttp`. Processors, the
    otlphttp exporter and the pipeline graph are validated as written."""
    out: dict[str, Any] = {"receivers": {}, "processors": config["processors"], "exporters": {}}
    rename: dict[str, str] = {}
    for name in config["receivers"]:
        rename[name] = "filelog/" + name.replace("/", "_")
        out["receivers"][rename[name]] = {"include": [str(log_file)]}
    for name, exporter in config["exporters"].items():
        if name.startswith("otlp/"):
            rename[name] = "otlphttp/" + name.split("/", 1)[1] + "_grpc"
            out["exporters"][rename[name]] = {"endpoint": "http://" + exporter["endpoint"]}
        else:
            rename[name] = name
            out["exporters"][name] = exporter
    pipelines = {}
    for name, p in config["service"]["pipelines"].items():
        if name.split("/")[0] == "logs":
            pipelines[name] = {
                "receivers": [rename[r] for r in p["receivers"]],
                "processors": p.get("processors", []),
                "exporters": [rename[e] for e in p["exporters"]],
            }
    out["service"] = {"pipelines": pipelines, "telemetry": {"metrics": {"level": "none"}}}
    used = {c for p in pipelines.values() for c in p["receivers"] + p["exporters"]}
    out["receivers"] = {k: v for k, v in out["receivers"].items() if k in used}
    out["exporters"] = {k: v for k, v in out["exporters"].items() if k in used}
    return out


def validate(config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "twin.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [str(collector_binary()), "validate", f"--config={path}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.slow
def test_real_collector_validates_the_logs_pipelines(tmp_path: Path) -> None:
    (tmp_path / "in.log").write_text("")
    config = twin(COLLECTOR, tmp_path / "in.log")
    ok = validate(config, tmp_path)
    assert ok.returncode == 0, ok.stderr
    # and the same binary does refuse a broken one, so the check is not vacuous
    config["processors"]["batch"]["send_batch_size"] = "lots"
    assert validate(config, tmp_path).returncode != 0


def test_collector_config_explains_the_component_renames() -> None:
    for path in (DEPLOY / "collector.yaml", REPO / "collector-config.yaml"):
        text = path.read_text()
        assert "otlp_grpc" in text and "otlp_http" in text and "v0.144" in text, path
        assert "v0.13x" not in text, path


# --- compose ---------------------------------------------------------------------------------


def test_compose_file_follows_the_compose_spec_rules_it_uses() -> None:
    top = set(COMPOSE) - {"name", "services", "volumes", "networks"}
    assert not top, f"unknown top-level keys {top}"
    services = COMPOSE["services"]
    assert set(services) == {"lgtm", "collector", "via-otlp", "loadgen"}
    allowed = {"image", "build", "command", "entrypoint", "environment", "ports", "volumes",
               "depends_on", "healthcheck", "restart"}  # fmt: skip
    named_volumes = set(COMPOSE.get("volumes") or {})
    for name, svc in services.items():
        assert set(svc) <= allowed, (name, set(svc) - allowed)
        assert "image" in svc or "build" in svc, name
        for port in svc.get("ports", []):
            assert re.fullmatch(r"\d+:\d+", port), (name, port)
        for volume in svc.get("volumes", []):
            source, target = volume.split(":")[:2]
            assert target.startswith("/"), (name, volume)
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)
            else:
                assert source in named_volumes, (name, source)
        for dep, cond in (
            (svc.get("depends_on") or {}).items()
            if isinstance(svc.get("depends_on"), dict)
            else ((d, {}) for d in svc.get("depends_on", []))
        ):
            assert dep in services, (name, dep)
            if cond.get("condition") == "service_healthy":
                # a healthcheck of its own, or the image's (via-otlp's Dockerfile HEALTHCHECK)
                assert "healthcheck" in services[dep] or dep == "via-otlp", (name, dep)
        if "build" in svc:
            assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).exists()
    # every VIA_* variable the stack sets is one via-otlp reads
    known = set(env_defaults_names()) | {"VIA_CONFIG", "VIA_SCENARIOS_DIR"}
    for name, svc in services.items():
        for var in svc.get("environment", {}) or {}:
            if var.startswith("VIA_"):
                assert var in known, (name, var)


def env_defaults_names() -> list[str]:
    from via_otlp.config import Config

    return list(env_defaults(Config).values())


def test_demo_config_loads() -> None:
    config = load_config(DEPLOY / "via-demo.json5", environ={})
    assert config.emit.signals == "both"
    assert config.detect.bucket == 10.0


# --- dashboard -------------------------------------------------------------------------------

RICH_STATUS: dict[str, Any] = {
    "version": "0", "state": "serving", "uptime_seconds": 1,
    "queue": {"depth": 1, "capacity": 2, "body_bytes": 3},
    "intake": {"requests": {"grpc": {"accepted": 1}}, "records": {"grpc": {"accepted": 1, "queue_full": 1}},
               "records_consumed": 1, "records_dropped_by_patch": 0, "invalid_utf8_requests": 0,
               "records_missing_timestamp": 0},
    "latency": {"bounds": [0.1], "stages": {"detect": {"buckets": [1], "count": 1, "sum": 0.1}}},
    "patterns": {"templates": 1, "sources": 1, "flooding_sources": 0, "lines": 1, "created": 1,
                 "evictions": 0, "source_evictions": 0},
    "detect": {"profiles": 1, "profiles_learning": 1, "open_episodes": 0, "episodes_opened": 0,
               "episodes_resolved": 0, "evictions_idle": 0, "evictions_capacity": 0,
               "late_records": 0, "buckets_closed": 0, "watermark_ns": 1},
    "events": {"emitted": 1, "suppressed": 0, "by_kind": {"spike/open": 1}},
    "correlate": {"queued": 0, "dropped_queue_full": 0, "events_by_kind": {"opened": 1},
                  "correlator": {"open_incidents": 0, "incidents_opened": 0}},
    "emit": {"state": "ok", "queued": 0, "sent": 1, "retries": 0, "rejected": 0,
             "dropped_queue_full": 0},
    "registry": {"state": "ok", "writer": {"buffered": 0, "written": 0, "dropped": 0},
                 "patches_active": 0, "patches_listening": True},
}  # fmt: skip


def exposed_metric_names() -> set[str]:
    text = render(lambda: RICH_STATUS).decode()
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"
    }


def test_dashboard_is_well_formed_and_queries_what_via_otlp_exposes() -> None:
    d = DASHBOARD
    assert d["uid"] == "via-otlp" and d["title"] and isinstance(d["schemaVersion"], int)
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    exposed = exposed_metric_names()
    kinds = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert all(isinstance(g[k], int) for k in "xywh") and g["x"] + g["w"] <= 24, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] in ("prometheus", "loki", "tempo"), p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)) and refs, p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == p["datasource"]["uid"], p["title"]
            query = t.get("expr") or t.get("query")
            assert query, p["title"]
            kinds.add(t["datasource"]["uid"])
            for name in re.findall(r"\bvia_otlp_[a-z_]+", query):
                assert name in exposed, f"{p['title']}: {name} is not a via-otlp metric"
            if t["datasource"]["uid"] == "loki":
                assert query.count("{") == query.count("}") and query.count("(") == query.count(")")
                for attr in re.findall(r"\b(via_[a-z_]+)\s*(?:!=|=)", query):
                    assert attr in ("via_anomaly_kind", "via_anomaly_state", "via_incident_id")
    assert kinds == {"prometheus", "loki", "tempo"}
    titles = " ".join(p["title"] for p in d["panels"])
    assert "by service and kind" in titles and "timeline" in titles.lower()


def test_dashboard_provider_points_where_compose_mounts_the_dashboards() -> None:
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "via-otlp.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    mounts = [v.split(":")[1] for v in COMPOSE["services"]["lgtm"]["volumes"]]
    assert path in mounts


# --- container -------------------------------------------------------------------------------


def test_dockerfile_keeps_state_builds_dependencies_first_and_follows_the_endpoint() -> None:
    text = (REPO / "Dockerfile").read_text()
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    assert any(line.startswith("VOLUME") and "/var/lib/via" in line for line in lines)
    assert "ENV VIA_DATA_DIR=/var/lib/via" in text
    deps = next(
        i for i, line in enumerate(lines) if "pip wheel" in line and "--no-deps" not in line
    )
    source = next(i for i, line in enumerate(lines) if line.startswith("COPY via_otlp"))
    assert deps < source, "dependencies must be built before the source is copied"
    health = next(line for line in lines if line.startswith("HEALTHCHECK"))
    assert "127.0.0.1:4318" not in text and "healthcheck" in text[text.index("HEALTHCHECK") :]
    assert health
    assert "COPY config/scenarios" in text
    # PID 1 must reap orphans (the embedded PostgreSQL's backends when its server is killed)
    # and forward SIGTERM: via-otlp runs under tini, installed in the image it runs in.
    entry = next(line for line in lines if line.startswith("ENTRYPOINT"))
    assert json.loads(entry.removeprefix("ENTRYPOINT"))[:3] == ["tini", "--", "via-otlp"]
    runtime = text[text.rindex("FROM ") :]
    assert "install -y --no-install-recommends tini" in runtime
    ignore = [
        w
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if not line.startswith("#")
        for w in line.split()
    ]
    assert ignore[0] == "**" and "!via_otlp/" in ignore and "!pyproject.toml" in ignore


def test_readme_docker_run_mounts_the_data_volume() -> None:
    readme = (REPO / "README.md").read_text()
    runs = [line for line in readme.splitlines() if "docker run" in line]
    assert runs and all("/var/lib/via" in line for line in runs), runs


@pytest.mark.slow
def test_healthcheck_follows_the_configured_endpoint(tmp_path: Path) -> None:
    srv = start_server(tmp_path, {"registry": {"enabled": False}, "correlate": {"enabled": False}})
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIA_")}

    def check(*args: str, **extra: str) -> int:
        return subprocess.run([str(BIN / "via-otlp"), "healthcheck", *args], env={**env, **extra},
                              capture_output=True, timeout=30).returncode  # fmt: skip

    try:
        assert check(VIA_HTTP_ENDPOINT=f"0.0.0.0:{srv.http_port}") == 0
        assert check(VIA_CONFIG=str(srv.config_path)) == 0
        assert check("--config", str(srv.config_path)) == 0
    finally:
        assert srv.stop() == 0
    assert check("--config", str(srv.config_path)) == 1


# --- load generator --------------------------------------------------------------------------


@pytest.mark.slow
def test_load_generator_against_a_real_via_otlp_finds_its_incident(tmp_path: Path) -> None:
    srv: ServerProcess = start_server(tmp_path, {
        "registry": {"enabled": False}, "correlate": {"enabled": False},
        "detect": {"bucket": "5s", "allowed_lateness": "1s", "warmup": "5m", "cooldown": "30s",
                   "novelty": {"source_warmup": "5m", "threshold": 0}},
    })  # fmt: skip
    try:
        run = subprocess.run(
            [sys.executable, str(DEPLOY / "loadgen" / "loadgen.py"), "--endpoint", srv.http_url,
             "--backfill", "1200", "--incident-after", "-240", "--incident-duration", "120",
             "--duration", "0"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        sent = int(re.search(r"sent (\d+) records", run.stderr).group(1))  # type: ignore[union-attr]
        assert sent > 20_000
        status = srv.wait_for(
            lambda s: (
                s["intake"]["records_consumed"] >= sent
                and any(k.startswith("novelty/open") for k in s["events"]["by_kind"])
            ),
            timeout=120,
            what="every record consumed and the incident found",
        )
        kinds = status["events"]["by_kind"]
        assert any(k.startswith(("spike/", "novelty/")) for k in kinds), kinds
    finally:
        assert srv.stop() == 0, srv.log()
