"""The `via-otlp` command: serve, replay, config check, and the tools around them.

Every failure the user can fix (bad config, port in use, unreadable file) ends with one clear
line on stderr and a non-zero exit code, never a traceback.

Start-up cost: a command imports only what it needs. The parser of `patterns`, `simulate` and
`ctl` lives in their own modules (which import numpy, grpc, ...), so `main` registers the full
parser only of the command on the command line and a stub for the others: `via-otlp --help`
imports nothing heavy, and `ctl status` imports grpc and the control stubs, not the pipeline.
`tests/unit/test_cli_imports.py` bounds this.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from via_otlp import __version__
from via_otlp.errors import ConfigError, ViaError

if TYPE_CHECKING:
    from via_otlp.config import Config
    from via_otlp.registry.embedded import EmbeddedPostgres

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

# Commands whose parser lives in a module of their own: (module with add_parser, one-line help).
# The help here is what `via-otlp --help` lists; the module's own parser says the rest.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "patterns": (
        "via_otlp.patterns.cli",
        "mine log templates from a file (one message per line)",
    ),
    "simulate": (
        "via_otlp.simulate.cli",
        "run labelled scenarios through the pipeline and score precision, recall, F1, delay",
    ),
    "ctl": ("via_otlp.control.cli", "talk to a running via-otlp through its control API"),
}


def _config_arg(parser: argparse.ArgumentParser) -> None:
    import os

    parser.add_argument(
        "--config", "-c", metavar="FILE", default=os.environ.get("VIA_CONFIG") or None,
        help="JSON5 configuration file (default: $VIA_CONFIG, else the built-in defaults with "
        "the VIA_* environment variables; see config/via.json5)",
    )  # fmt: skip


def build_parser(command: str | None = "") -> argparse.ArgumentParser:
    """The parser; `command` names the one lazily registered command to register in full
    (`""`: every command in full, `None`: none of them, only their names and help)."""
    parser = argparse.ArgumentParser(
        prog="via-otlp",
        description="Anomaly detection for OpenTelemetry logs: an OTLP endpoint that learns the "
        "rhythm of every log pattern of every service and reports when it breaks.",
    )
    parser.add_argument("--version", action="version", version=f"via-otlp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "serve", help="receive OTLP logs on :4317 (gRPC) and :4318 (HTTP) and detect anomalies"
    )
    _config_arg(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "healthcheck",
        help="exit 0 if the service answers /healthz where the configuration says it listens",
        description="Ask GET /healthz of the HTTP endpoint the configuration names (a wildcard "
        "address is asked on loopback; https when receive.http.tls is on). For container "
        "HEALTHCHECKs: it follows VIA_HTTP_ENDPOINT or --config/$VIA_CONFIG, like `serve`.",
    )
    _config_arg(p)
    p.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS")
    p.set_defaults(func=cmd_healthcheck)

    p = sub.add_parser("config", help="work with configuration files")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    check = csub.add_parser(
        "check",
        help="validate a config file and print the effective configuration (secrets hidden)",
        description="Validate a config file and print the effective configuration, secrets "
        "hidden. Without FILE: the built-in defaults with the VIA_* environment variables "
        "applied, what `via-otlp serve` without --config runs with.",
    )
    check.add_argument("file", metavar="FILE", nargs="?", help="JSON5 config file (default: none)")
    check.set_defaults(func=cmd_config_check)

    p = sub.add_parser(
        "replay",
        help="feed log files through the pipeline offline, in event time",
        description="Feed log files through the same pipeline as `serve`, offline and in event time.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="input files; - reads stdin")
    p.add_argument(
        "--format", "-f", default="auto", choices=["auto", "otlp-json", "ndjson", "text"],
        help="otlp-json: one OTLP/JSON ExportLogsServiceRequest per line (the Collector's file "
        "exporter); ndjson: one record per line; text: raw log lines; auto (default): guess",
    )  # fmt: skip
    p.add_argument(
        "--service",
        default="unknown_service",
        help="service.name for text lines and NDJSON records without one",
    )
    p.add_argument(
        "--anomalies-out", metavar="FILE",
        help="write every anomaly event as one JSON object per line to FILE (default: print them to stdout)",
    )  # fmt: skip
    _config_arg(p)
    p.set_defaults(func=cmd_replay)

    for name, (module, help) in LAZY_COMMANDS.items():
        if command == "" or command == name:
            importlib.import_module(module).add_parser(sub)
        else:
            sub.add_parser(name, help=help, add_help=False)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The command named on the command line (the first word; the top level takes no option
    with a value), or None."""
    for word in argv:
        if not word.startswith("-"):
            return word
    return None


def _setup_logging(config: Config | None = None) -> None:
    import logging

    logging.basicConfig(
        level=config.log_level if config else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import time

    began = time.monotonic()  # "N s to start" and the uptime count the imports below too
    from via_otlp.config import load_config  # (imports no numpy: see `begin_embedded`)

    config = load_config(args.config)
    _setup_logging(config)
    embedded = begin_embedded(config)
    try:
        from via_otlp.app import serve

        return asyncio.run(serve(config, began=began, embedded=embedded))
    finally:
        if embedded is not None:  # (stopped by the registry already, unless the start failed)
            embedded.stop()


def begin_embedded(config: Config) -> EmbeddedPostgres | None:
    """The registry's embedded PostgreSQL with its start begun (its initdb, or its server,
    spawned), or None (registry off, or a DSN). `serve` calls this before it imports numpy,
    the pipeline and the servers (half a second), which then overlap initdb, and before it
    forks the shards (it starts no thread). The registry's start finishes it."""
    if not config.registry.enabled or config.registry.dsn:
        return None
    from via_otlp.registry.embedded import embedded_for
    from via_otlp.security.files import private_dir, restrict_new_files

    restrict_new_files()  # as `serve` does first: the cluster and its log are private
    private_dir(config.state.data_dir)
    embedded = embedded_for(config.registry, config.state.data_dir)
    embedded.begin()
    return embedded


def healthz_url(endpoint: str, tls: bool) -> str:
    """The /healthz URL of an HTTP endpoint as `serve` binds it (wildcards asked on loopback).

    >>> healthz_url("0.0.0.0:4318", False), healthz_url("[::]:9000", True)
    ('http://127.0.0.1:4318/healthz', 'https://[::1]:9000/healthz')
    """
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}/healthz"


def cmd_healthcheck(args: argparse.Namespace) -> int:
    import ssl
    import urllib.error
    import urllib.request

    from via_otlp.config import load_config

    http = load_config(args.config).receive.http
    if not http.enabled:
        print("via-otlp healthcheck: receive.http is off: nothing to ask", file=sys.stderr)
        return EXIT_ERROR
    url = healthz_url(http.endpoint, http.tls.enabled)
    context = None
    if http.tls.enabled:  # a probe of our own listener: its name is not what we dial
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=args.timeout, context=context) as resp:
            ok = resp.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"via-otlp healthcheck: {url}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK if ok else EXIT_ERROR


def cmd_config_check(args: argparse.Namespace) -> int:
    import json

    from via_otlp.config import load_config
    from via_otlp.configload import to_plain
    from via_otlp.redact import redact_config

    config = load_config(args.file)
    print(json.dumps(redact_config(to_plain(config)), indent=2))
    origin = args.file or "built-in defaults and the environment"
    print(f"{origin}: OK", file=sys.stderr)
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    import time

    from via_otlp.app import Pipeline
    from via_otlp.config import load_config
    from via_otlp.emit import JsonLinesSink
    from via_otlp.emit.console import ConsoleWriter
    from via_otlp.replay import Format, Progress, ReplayProblems, read_batches

    config = load_config(args.config)
    _setup_logging(config)
    sink = JsonLinesSink(args.anomalies_out) if args.anomalies_out else None
    console = ConsoleWriter(sys.stdout, config.emit.error_score)
    if sink is not None:
        sink.open()
    pipeline = Pipeline(config, sink=sink.write if sink is not None else console.write)
    problems = ReplayProblems()
    progress = Progress()
    started = time.monotonic()
    try:
        for path in args.files:
            intake = pipeline.intake
            for batch in read_batches(
                path, Format(args.format), args.service, problems, intake, progress
            ):
                progress.add_records(len(batch))
                pipeline.consume(intake.process(batch))
        pipeline.finish()
    finally:
        progress.close()
        if sink is not None:
            sink.close()
    elapsed = time.monotonic() - started
    stats = pipeline.stats
    print(
        f"replayed {stats.records_consumed:,} records from {len(args.files)} file(s) in {elapsed:.2f}s "
        f"({stats.records_consumed / max(elapsed, 1e-9):,.0f} records/s): "
        f"{pipeline.rhythm_hashes:,} rhythm hashes, {pipeline.events_emitted:,} anomaly events"
        + (f" written to {args.anomalies_out}" if sink is not None else ""),
        file=sys.stderr,
    )
    if problems.untimed:
        print(
            f"{problems.untimed:,} text line(s) carried no timestamp: each took the time of the "
            f"line before it ({problems.read_time:,} with none before: the read time)",
            file=sys.stderr,
        )
    if problems.count:
        print(f"{problems.count:,} line(s) could not be read; first ones:", file=sys.stderr)
        for line in problems.shown:
            print(f"  {line}", file=sys.stderr)
    return EXIT_OK if stats.records_consumed or not problems.count else EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    command = command_of(words)
    parser = build_parser(command if command in LAZY_COMMANDS else None)
    args = parser.parse_args(words)
    func: Any = args.func
    try:
        return int(func(args))
    except ConfigError as exc:
        print(f"via-otlp: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ViaError as exc:
        print(f"via-otlp: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
