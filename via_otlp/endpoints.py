"""HOST:PORT endpoints, parsed in one place for every server and client of via-otlp.

>>> split_endpoint("0.0.0.0:4317"), split_endpoint("[::1]:4318"), split_endpoint("nope")
(('0.0.0.0', 4317), ('::1', 4318), None)
>>> is_loopback("localhost"), is_loopback("127.0.0.2"), is_loopback("10.0.0.1")
(True, True, False)
"""

from __future__ import annotations

import ipaddress

from via_otlp.errors import ConfigError


def split_endpoint(endpoint: str, *, allow_port_zero: bool = True) -> tuple[str, int] | None:
    """(host, port) of ``HOST:PORT`` (IPv6 hosts in brackets), or None when it is not one."""
    host, sep, port = endpoint.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        return None
    number = int(port)
    if not (0 if allow_port_zero else 1) <= number <= 65535:
        return None
    return host, number


def check_endpoint(endpoint: str, path: str) -> None:
    """A listener's ``HOST:PORT`` setting, or a `ConfigError` at `path` saying what is wrong."""
    if split_endpoint(endpoint) is None:
        raise ConfigError(path, f"must be HOST:PORT with a port 0-65535, got {endpoint!r}")


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (localhost or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
