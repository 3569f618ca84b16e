"""The `emit` config section: defaults, validation with key paths, endpoint parsing."""

from __future__ import annotations

import pytest

from via_otlp.configload import load_dataclass
from via_otlp.emit.config import EmitConfig, parse_endpoint
from via_otlp.errors import ConfigError


def _load(data: dict, environ: dict | None = None) -> EmitConfig:
    return load_dataclass(EmitConfig, data, "emit", environ or {})


def test_defaults_print_to_the_console() -> None:
    config = _load({})
    assert config.endpoint == ""
    assert (config.protocol, config.signals, config.compression) == ("grpc", "logs", "gzip")
    assert config.queue_size > config.batch.max_size


def test_full_section_with_units_and_env() -> None:
    config = _load(
        {
            "endpoint": "${env:OTLP:-collector:4317}",
            "headers": {"authorization": "Bearer ${env:TOKEN}"},
            "timeout": "2s",
            "batch": {"max_size": 10, "interval": "250ms"},
            "retry": {"initial_interval": "100ms", "max_interval": "5s", "max_elapsed_time": "1m"},
            "tls": {"insecure": True},
        },
        {"TOKEN": "abc"},
    )
    assert config.endpoint == "collector:4317"
    assert config.headers == {"authorization": "Bearer abc"}
    assert config.batch.interval == 0.25
    assert config.retry.max_elapsed_time == 60.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"endpoint": "collector"}, "emit.endpoint: must be HOST:PORT"),
        ({"endpoint": "ftp://x:1"}, "emit.endpoint: scheme must be http or https"),
        ({"endpoint": "https://u:pw@x:1"}, "emit.endpoint: must not carry credentials"),
        ({"endpoint": "http://x:1/otlp"}, "emit.endpoint: a gRPC endpoint has no path"),
        ({"endpoint": "https://x:4317", "tls": {"insecure": True}}, "emit.tls.insecure: is true"),
        ({"endpoint": "http://x:4317", "tls": {"insecure": False}}, "emit.tls.insecure: is false"),
        ({"protocol": "udp"}, "emit.protocol: must be one of"),
        ({"signals": "metrics"}, "emit.signals: must be one of"),
        ({"queue_size": 0}, "emit.queue_size: must be >= 1"),
        ({"batch": {"interval": 0}}, "emit.batch.interval: must be > 0"),
        (
            {"retry": {"initial_interval": 5, "max_interval": 1}},
            "emit.retry.max_interval: must be >=",
        ),
        ({"tls": {"cert_file": "c.pem"}}, "emit.tls.cert_file: cert_file and key_file"),
        ({"headers": {"bad name": "x"}}, "emit.headers.bad name: is not a valid header name"),
        ({"endpont": "x:1"}, "emit.endpont: unknown key"),
    ],
)
def test_bad_values_name_their_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(data)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("endpoint", "protocol", "insecure", "secure", "base_url"),
    [
        # no scheme: TLS unless tls.insecure is true, loopback or not (the Collector's rule)
        ("localhost:4317", "grpc", None, True, "https://localhost:4317"),
        ("127.0.0.1:4317", "grpc", None, True, "https://127.0.0.1:4317"),
        ("[::1]:4317", "grpc", True, False, "http://[::1]:4317"),
        ("collector:4327", "grpc", None, True, "https://collector:4327"),
        ("collector:4327", "grpc", True, False, "http://collector:4327"),
        ("collector:4327", "grpc", False, True, "https://collector:4327"),
        # a scheme decides by itself
        ("http://collector:4327", "grpc", None, False, "http://collector:4327"),
        ("https://collector:4327", "grpc", None, True, "https://collector:4327"),
        ("http://collector:4318", "http", None, False, "http://collector:4318"),
        (
            "https://otlp.example.com/prefix/",
            "http",
            None,
            True,
            "https://otlp.example.com:443/prefix",
        ),
    ],
)
def test_parse_endpoint(endpoint, protocol, insecure, secure, base_url) -> None:
    target = parse_endpoint(endpoint, protocol, insecure)
    assert (target.secure, target.base_url) == (secure, base_url)
