"""Configuration: typed, frozen, every error with its key path, env substitution as the Collector."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import json5
import pytest

from via_otlp.config import DEFAULT_CONFIG_PATH, Config, load_config, parse_config
from via_otlp.configload import (
    env_defaults,
    parse_duration,
    parse_size,
    substitute_env,
    to_plain,
)
from via_otlp.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{receive: {grpc: {port: 1}}}", "receive.grpc.port: unknown key"),
        ("{recieve: {}}", "recieve: unknown key"),
        ("{receive: {max_future_skew: 'soon'}}", "receive.max_future_skew: must be a duration"),
        ("{receive: {max_future_skew: -1}}", "receive.max_future_skew: must be >= 0, got -1.0"),
        ("{receive: {queue_max_records: 0}}", "receive.queue_max_records: must be >= 1, got 0"),
        ("{receive: {queue_max_records: 1.5}}", "receive.queue_max_records: must be an integer"),
        ("{receive: {grpc: {endpoint: 'localhost'}}}", "receive.grpc.endpoint: must be HOST:PORT"),
        (
            "{receive: {grpc: {max_recv_msg_size: 'lots'}}}",
            "receive.grpc.max_recv_msg_size: must be a size",
        ),
        (
            "{receive: {source_attributes: ['host.name']}}",
            "receive.source_attributes: must include 'service.name'",
        ),
        ("{receive: {source_attributes: []}}", "receive.source_attributes: must not be empty"),
        ("{log: {level: 'loud'}}", "log.level: must be one of"),
        ("{receive: {grpc: {enabled: 'yes'}}}", "receive.grpc.enabled: must be true or false"),
        ("[]", "must hold a JSON5 object"),
        ("{receive: ", "is not valid JSON5"),
        (
            "{receive: {grpc: {endpoint: '${env:VIA_TEST_UNSET_VAR}'}}}",
            "environment variable VIA_TEST_UNSET_VAR is not set",
        ),
    ],
)
def test_errors_name_the_key_path(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, environ={})
    assert message in str(info.value)


def test_unknown_key_lists_what_is_allowed() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("{receive: {grpc: {port: 1}}}")
    assert "allowed here: enabled, endpoint, handshake_timeout," in str(info.value)


def test_env_substitution_like_the_collector() -> None:
    env = {"GRPC": "127.0.0.1:5555", "SIZE": "1MiB", "QUEUE": "77"}
    config = parse_config(
        "{receive: {grpc: {endpoint: '${env:GRPC}', max_recv_msg_size: '${env:SIZE}'},"
        " http: {endpoint: '${env:HTTP:-0.0.0.0:9999}'}, queue_max_records: '${env:QUEUE}'}}",
        environ=env,
    )
    assert config.receive.grpc.endpoint == "127.0.0.1:5555"
    assert config.receive.grpc.max_recv_msg_size == 1024 * 1024
    assert config.receive.http.endpoint == "0.0.0.0:9999"
    assert config.receive.queue_max_records == 77
    assert substitute_env("cost: $$5", {}) == "cost: $5"


def test_units() -> None:
    assert parse_duration("250ms", "x") == 0.25
    assert parse_duration("5m", "x") == 300.0
    assert parse_duration(3, "x") == 3.0
    assert parse_size("64MiB", "x") == 64 * 1024**2
    assert parse_size("2KB", "x") == 2000


def test_config_is_frozen_and_empty_file_means_defaults() -> None:
    config = parse_config("")
    assert config == Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.receive = None  # type: ignore[misc]
    assert config.receive.grpc.max_recv_msg_size == 64 * 1024**2  # the OTLP recommendation


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.json5")


def _field_paths(cls: type, prefix: str = "") -> list[str]:
    paths = []
    for f in dataclasses.fields(cls):
        path = f"{prefix}.{f.name}" if prefix else f.name
        tp = cls.__annotations__.get(f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
        paths.append(path)
        if dataclasses.is_dataclass(default) and not isinstance(default, type):
            paths.extend(_field_paths(type(default), path))
        del tp
    return paths


def _document_paths(doc: object, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(doc, dict):
        for key, value in doc.items():
            path = f"{prefix}.{key}" if prefix else key
            out.add(path)
            out |= _document_paths(value, path)
    return out


def test_shipped_config_loads_lists_every_key_and_comments_each() -> None:
    text = DEFAULT_CONFIG_PATH.read_text()
    config = load_config(DEFAULT_CONFIG_PATH, environ={})
    assert isinstance(config, Config)
    present = _document_paths(json5.loads(text))
    missing = [p for p in _field_paths(Config) if p not in present]
    assert not missing, f"config/via.json5 does not show these keys: {missing}"
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:", line)
        if m:
            previous = next((p.strip() for p in reversed(lines[:i]) if p.strip()), "")
            assert previous.startswith("//"), (
                f"config/via.json5 line {i + 1}: key {m.group(1)!r} has no comment above it"
            )


def test_config_check_prints_the_effective_config() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "via_otlp", "config", "check", str(DEFAULT_CONFIG_PATH)],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert '"endpoint": "0.0.0.0:4317"' in out.stdout
    assert "OK" in out.stderr
    assert to_plain(Config())["receive"]["grpc"]["endpoint"] == "0.0.0.0:4317"


def test_config_check_fails_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json5"
    bad.write_text("{receive: {grpc: {endpoint: 'x'}}}")
    out = subprocess.run(
        [sys.executable, "-m", "via_otlp", "config", "check", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "receive.grpc.endpoint" in out.stderr


# -- environment variables without a config file (#14) -----------------------------------------

ENV_KEYS = {
    "receive.grpc.endpoint": ("VIA_GRPC_ENDPOINT", "127.0.0.1:14317"),
    "receive.http.endpoint": ("VIA_HTTP_ENDPOINT", "127.0.0.1:14318"),
    "control.endpoint": ("VIA_CONTROL_ENDPOINT", "127.0.0.1:14320"),
    "control.token": ("VIA_CONTROL_TOKEN", "s3cret"),
    "state.data_dir": ("VIA_DATA_DIR", "/var/lib/via"),
    "emit.endpoint": ("VIA_EMIT_ENDPOINT", "http://collector:4327"),
    "emit.protocol": ("VIA_EMIT_PROTOCOL", "http"),
    "registry.dsn": ("VIA_REGISTRY_DSN", "postgresql://via:pw@db/via"),
    "log.level": ("VIA_LOG_LEVEL", "debug"),
    "receive.auth.bearer_token": ("VIA_RECEIVE_BEARER_TOKEN", "intake-s3cret"),
}


def _get(obj: object, path: str) -> object:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("path", sorted(ENV_KEYS))
def test_each_documented_variable_works_without_a_file(path: str) -> None:
    var, value = ENV_KEYS[path]
    assert _get(load_config(None, environ={}), path) == _get(Config(), path)
    assert _get(load_config(None, environ={var: value}), path) == value
    # the same when a file leaves the key out, and the file wins when it sets it
    assert _get(parse_config("{}", environ={var: value}), path) == value


def test_a_file_that_sets_the_key_wins_over_the_variable() -> None:
    config = parse_config(
        "{receive: {grpc: {endpoint: '127.0.0.1:1'}}}", environ={"VIA_GRPC_ENDPOINT": "x:2"}
    )
    assert config.receive.grpc.endpoint == "127.0.0.1:1"


def test_a_bad_variable_names_the_key_and_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, environ={"VIA_GRPC_ENDPOINT": "nope"})
    assert str(info.value).startswith("receive.grpc.endpoint: must be HOST:PORT")
    assert "VIA_GRPC_ENDPOINT" in str(info.value)


def test_variables_are_substituted_once_like_a_file() -> None:
    config = load_config(None, environ={"VIA_CONTROL_TOKEN": "a$${env:HOME}"})
    assert config.control.token == "a$${env:HOME}"


def test_the_shipped_file_and_the_built_in_defaults_read_the_same_variables() -> None:
    doc = json5.loads(DEFAULT_CONFIG_PATH.read_text())
    for path, var in env_defaults(Config).items():
        value: object = doc
        for part in path.split("."):
            value = value[part]  # type: ignore[index]
        assert isinstance(value, str) and value.startswith(f"${{env:{var}:-"), (path, value)
    env = {var: value for var, value in ENV_KEYS.values()}
    assert load_config(None, environ=env) == load_config(DEFAULT_CONFIG_PATH, environ=env)


def test_config_check_without_a_file_shows_the_environment_and_hides_secrets() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "VIA_GRPC_ENDPOINT": "127.0.0.1:14317",
        "VIA_CONTROL_TOKEN": "hunter2",
        "VIA_REGISTRY_DSN": "postgresql://via:hunter2@db/via?sslpassword=hunter2",
    }
    out = subprocess.run(
        [sys.executable, "-m", "via_otlp", "config", "check"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    shown = json5.loads(out.stdout)
    assert shown["receive"]["grpc"]["endpoint"] == "127.0.0.1:14317"
    assert shown["control"]["token"] == "***"
    assert shown["registry"]["dsn"] == "postgresql://via:***@db/via?sslpassword=***"
    assert "hunter2" not in out.stdout + out.stderr
    assert "environment: OK" in out.stderr
