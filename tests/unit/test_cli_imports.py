"""A bound on the work `via-otlp --help` and `ctl status` do before they answer: what they import.

Timing would be flaky on a busy machine; the modules loaded are not. Each case runs in a fresh
interpreter, parses the command line as `via-otlp` does, and lists the heavy packages loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("numpy", "grpc", "asyncpg", "qdrant_client", "aiohttp", "google.protobuf", "xxhash")

_PROBE = """
import json, sys
from via_otlp.cli import LAZY_COMMANDS, build_parser, command_of
argv = json.loads(sys.argv[1])
command = command_of(argv)
parser = build_parser(command if command in LAZY_COMMANDS else None)
try:
    parser.parse_args(argv)
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {"numpy", "grpc", "asyncpg",
      "qdrant_client", "aiohttp", "xxhash"} or m.startswith("google.protobuf")
      or m.startswith("via_otlp."))))
"""


def loaded_after(argv: list[str]) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(argv)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def heavy(modules: list[str]) -> set[str]:
    return {h for h in HEAVY for m in modules if m == h or m.startswith(h + ".")}


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["serve", "--help"],
                                  ["replay", "--help"], ["config", "check", "--help"]])  # fmt: skip
def test_help_imports_nothing_heavy(argv: list[str]) -> None:
    modules = loaded_after(argv)
    assert heavy(modules) == set(), modules
    # Only the CLI itself and the small error module: no stage, no config tree.
    assert {m for m in modules if m.startswith("via_otlp.")} <= {"via_otlp.cli", "via_otlp.errors"}


def test_ctl_status_imports_grpc_but_not_the_pipeline() -> None:
    modules = loaded_after(["ctl", "status", "--target", "127.0.0.1:1"])
    assert heavy(modules) == {"grpc", "google.protobuf"}, heavy(modules)
    assert not any(
        m.startswith(("via_otlp.detect", "via_otlp.registry", "via_otlp.app")) for m in modules
    )


def test_every_lazy_command_is_listed_and_registers_in_full() -> None:
    from via_otlp.cli import LAZY_COMMANDS, build_parser

    stubs = build_parser(None)
    full = build_parser("")
    for name in LAZY_COMMANDS:
        # the stub accepts anything after the name; the full parser knows the command's options
        assert stubs.parse_known_args([name, "--no-such-flag"])[0].command == name
        with pytest.raises(SystemExit):
            full.parse_args([name, "--no-such-flag"])


def test_a_shard_process_imports_no_registry_correlator_or_emitter() -> None:
    """A shard restarted while serving starts a fresh interpreter: it loads the pipeline, not
    the registry client (asyncpg), the correlator (aiohttp, Qdrant) or the OTLP exporter."""
    probe = (
        "import json, sys, via_otlp.shard.worker; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('via_otlp.', 'asyncpg',"
        " 'aiohttp', 'qdrant_client')))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    modules = json.loads(out.stdout.strip().splitlines()[-1])
    assert not [m for m in modules if m.startswith(("asyncpg", "aiohttp", "qdrant_client"))]
    assert "via_otlp.pipeline" in modules  # what it does need
    assert not [
        m
        for m in modules
        if m.startswith(
            ("via_otlp.correlate.", "via_otlp.emit.exporter", "via_otlp.registry.store")
        )
        and m != "via_otlp.correlate.config"
    ], modules
