"""`via-otlp ctl ...`: a client of the control API, for people (tables) and scripts (`--json`).

    via-otlp ctl status
    via-otlp ctl profiles [--source GLOB] [--order rate|recency|hash] [--limit N]
    via-otlp ctl profile RHYTHM_HASH [--buckets N]
    via-otlp ctl templates [--source GLOB] [--limit N]
    via-otlp ctl anomalies [--since 1h] [--kind K] [--source KEY] [--state open|resolved]
    via-otlp ctl patch add --rule mute|drop|threshold|allow|block [--source GLOB] [--template GLOB]
                           [--rhythm-hash H] [--threshold SCORE] [--ttl 2h] [--reason TEXT]
    via-otlp ctl patch list [--all]
    via-otlp ctl patch rm ID...
    via-otlp ctl schema [SOURCE]
    via-otlp ctl incidents [--since 1h] [--state open|resolved] [--source KEY] [--merged]
    via-otlp ctl incident ID
    via-otlp ctl similar "TEXT" | --episode EPISODE_ID [--limit N] [--same-incident]

`--target HOST:PORT` (default `$VIA_CONTROL_ENDPOINT` or 127.0.0.1:4320), `--token` (default
`$VIA_CONTROL_TOKEN`), `--cacert FILE` for a TLS control API (`$VIA_CONTROL_CACERT`; a
``https://`` target uses the system CAs), `--cert`/`--key` under mutual TLS, and `--json`
(proto3 JSON with the .proto field names) go before or after the subcommand. A server that cannot be reached or refuses is one line on stderr, exit code 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO, TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from via_otlp.configload import parse_duration
from via_otlp.control.gen.via.v1 import control_pb2 as pb2
from via_otlp.control.gen.via.v1 import control_pb2_grpc as pb2_grpc
from via_otlp.errors import ConfigError
from via_otlp.times import datetime_from_ns, parse_rfc3339

DEFAULT_TARGET = "127.0.0.1:4320"
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
_TEMPLATE_WIDTH = 70
_NS = 1_000_000_000


R = TypeVar("R", bound=Message)


class CtlError(Exception):
    """A failure to report in one line (exit code 1)."""


# -- argument parsing ------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    """Flags every ctl subcommand takes, before or after its name (SUPPRESS: last one wins)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--target", metavar="HOST:PORT", default=argparse.SUPPRESS,
        help=f"control API address (default: $VIA_CONTROL_ENDPOINT or {DEFAULT_TARGET})",
    )  # fmt: skip
    p.add_argument(
        "--token", default=argparse.SUPPRESS,
        help="bearer token (default: $VIA_CONTROL_TOKEN)",
    )  # fmt: skip
    p.add_argument(
        "--cacert", metavar="FILE", default=argparse.SUPPRESS,
        help="connect with TLS, trusting the CA in FILE (default: $VIA_CONTROL_CACERT; "
        "a https:// target uses TLS with the system CAs)",
    )  # fmt: skip
    p.add_argument(
        "--cert", metavar="FILE", default=argparse.SUPPRESS,
        help="client certificate for mutual TLS (default: $VIA_CONTROL_CERT; with --key)",
    )  # fmt: skip
    p.add_argument(
        "--key", metavar="FILE", default=argparse.SUPPRESS,
        help="client key for mutual TLS (default: $VIA_CONTROL_KEY)",
    )  # fmt: skip
    p.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS,
        help="print proto3 JSON for scripts instead of a table",
    )  # fmt: skip
    p.add_argument(
        "--timeout", type=float, default=argparse.SUPPRESS, metavar="SECONDS",
        help="deadline of each call (default 10)",
    )  # fmt: skip
    return p


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `ctl` subcommand and its own subcommands."""
    common = _common()
    ctl = subparsers.add_parser(
        "ctl",
        parents=[common],
        help="talk to a running via-otlp through its control API",
        description="Read and steer a running via-otlp through its control API (via.v1.Control).",
    )
    sub = ctl.add_subparsers(dest="ctl_command", metavar="COMMAND")
    sub.required = True

    def leaf(name: str, func: Callable[[argparse.Namespace], int], help: str) -> Any:
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(func=func)
        return p

    leaf("status", cmd_status, "version, uptime, counters, queue, registry and emitter state")

    p = leaf("profiles", cmd_profiles, "learned profiles (one per rhythm hash)")
    p.add_argument("--source", default="", help="source key or glob, e.g. 'shop/*'")
    p.add_argument(
        "--order", choices=["rate", "recency", "hash"], default="rate",
        help="highest rate first (default), most recently seen first, or by rhythm hash",
    )  # fmt: skip
    _limit(p)

    p = leaf("profile", cmd_profile, "one profile: baseline, cardinality, template, recent buckets")
    p.add_argument("rhythm_hash", metavar="RHYTHM_HASH")
    p.add_argument(
        "--buckets", type=int, default=10, metavar="N",
        help="list the last N recent buckets (default 10; all are in the sparkline)",
    )  # fmt: skip

    p = leaf("templates", cmd_templates, "templates the miner keeps, per source")
    p.add_argument("--source", default="", help="source key or glob")
    _limit(p)

    p = leaf("anomalies", cmd_anomalies, "recorded anomaly episodes, newest first")
    p.add_argument(
        "--since", default="",
        help="only episodes with an event in the last DURATION ('1h', '30m') or since an "
        "ISO-8601 time ('2024-05-01T12:00:00Z')",
    )  # fmt: skip
    p.add_argument("--kind", choices=[k.lower().removeprefix("anomaly_kind_") for k in _KINDS])
    p.add_argument("--source", default="", help="source key (exact)")
    p.add_argument("--state", choices=["open", "resolved"])
    _limit(p)

    patch = sub.add_parser("patch", parents=[common], help="add, list or remove patches")
    psub = patch.add_subparsers(dest="patch_command", metavar="ACTION")
    psub.required = True
    p = psub.add_parser("add", parents=[common], help="create (or replace, with --id) a patch")
    p.set_defaults(func=cmd_patch_add)
    p.add_argument(
        "--rule", required=True, type=str.lower,
        choices=["mute", "drop", "threshold", "allow", "block"],
        help="allow: always keep (wins over the others); block: drop before templating",
    )  # fmt: skip
    p.add_argument("--source", default="", help="source key glob, or re:REGEX")
    p.add_argument(
        "--template", default="",
        help="template glob, or re:REGEX (for --rule block: matched against the log body)",
    )  # fmt: skip
    p.add_argument("--rhythm-hash", default="", help="exact rhythm hash")
    p.add_argument("--threshold", type=float, help="THRESHOLD only: score (0-100) to emit from")
    p.add_argument("--ttl", default="", help="expire after this long ('30m', '2h'); default never")
    p.add_argument("--reason", default="", help="why (shown in listings)")
    p.add_argument("--author", default=None, help="who (default: your user name)")
    p.add_argument("--id", default="", help="replace the patch with this id")
    p.add_argument("--inactive", action="store_true", help="store it without applying it")
    p = psub.add_parser("list", parents=[common], help="stored patches, oldest first")
    p.set_defaults(func=cmd_patch_list)
    p.add_argument("--all", action="store_true", help="include inactive patches")
    p = psub.add_parser("rm", parents=[common], help="remove patches by id")
    p.set_defaults(func=cmd_patch_rm)
    p.add_argument("ids", nargs="+", metavar="ID")

    p = leaf("schema", cmd_schema, "learned attribute schema of a source, or all sources")
    p.add_argument("source", nargs="?", default="", metavar="SOURCE", help="source key")
    _limit(p)

    p = leaf("incidents", cmd_incidents, "recorded incidents (grouped episodes), newest first")
    p.add_argument(
        "--since", default="",
        help="only incidents changed in the last DURATION ('1h') or since an ISO-8601 time",
    )  # fmt: skip
    p.add_argument("--state", choices=["open", "resolved"])
    p.add_argument("--source", default="", help="only incidents with a member of this source key")
    p.add_argument("--merged", action="store_true", help="also list incidents merged into another")
    _limit(p)

    p = leaf("incident", cmd_incident, "one incident: its members and the graph of their links")
    p.add_argument("id", metavar="ID", help="incident id (16 hex digits)")

    p = leaf(
        "similar", cmd_similar,
        "past anomalies and incidents most similar to a text or to an episode",
    )  # fmt: skip
    p.add_argument("text", nargs="?", default="", metavar="TEXT", help="free text to search for")
    p.add_argument("--episode", default="", metavar="EPISODE_ID", help="search like this episode")
    p.add_argument(
        "--same-incident", action="store_true",
        help="with --episode: also show members of the episode's own incident",
    )  # fmt: skip
    p.add_argument(
        "--limit", type=int, default=10, metavar="N", help="show at most N items (default 10)"
    )


def _limit(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--limit", type=int, default=100, metavar="N", help="show at most N items (default 100)"
    )


_KINDS = [n for n in pb2.AnomalyKind.keys() if not n.endswith("UNSPECIFIED")]  # noqa: SIM118


# -- the connection --------------------------------------------------------------------------


class Client:
    """A Control stub with the CLI's target, token and deadline, and errors as `CtlError`."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.target = getattr(args, "target", None) or os.environ.get(
            "VIA_CONTROL_ENDPOINT", DEFAULT_TARGET
        )
        token = getattr(args, "token", None)
        if token is None:
            token = os.environ.get("VIA_CONTROL_TOKEN", "")
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = float(getattr(args, "timeout", 10.0))
        self.channel = _channel(args, self.target)
        if self.target.startswith(("https://", "http://")):
            self.target = self.target.split("://", 1)[1]
        self.stub = pb2_grpc.ControlStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def call(self, method: str, request: Message) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise CtlError(self._explain(exc)) from None

    def _explain(self, exc: grpc.RpcError) -> str:
        code: grpc.StatusCode = exc.code()
        details: str = exc.details() or ""
        if code is grpc.StatusCode.UNAVAILABLE and any(
            w in details.lower() for w in ("ssl", "handshake", "certificate")
        ):
            return (
                f"TLS with the control API at {self.target} failed: {details} (plaintext server? "
                "drop --cacert; TLS server? pass --cacert CA_FILE, and --cert/--key under mutual TLS)"
            )
        if code is grpc.StatusCode.UNAVAILABLE and "connect" in details.lower():
            return (
                f"cannot reach the control API at {self.target} (is `via-otlp serve` running "
                "there? set --target or VIA_CONTROL_ENDPOINT; a TLS control API needs --cacert)"
            )
        if code is grpc.StatusCode.UNAUTHENTICATED:
            return f"the control API at {self.target} refused the call: {details}; set --token or VIA_CONTROL_TOKEN"
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"no answer from the control API at {self.target} within {self.timeout:g}s"
        if code is grpc.StatusCode.UNIMPLEMENTED:
            return f"{self.target} does not serve via.v1.Control (is it the control port?)"
        return f"{code.name}: {details}"


def _option(args: argparse.Namespace, name: str, env: str) -> str:
    value = getattr(args, name, None)
    return os.environ.get(env, "") if value is None else str(value)


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise CtlError(f"cannot read the {what} {path}: {exc.strerror}") from None


def _channel(args: argparse.Namespace, target: str) -> grpc.Channel:
    """Plaintext, or TLS with --cacert (or a https:// target), plus --cert/--key (mutual TLS)."""
    cacert = _option(args, "cacert", "VIA_CONTROL_CACERT")
    cert = _option(args, "cert", "VIA_CONTROL_CERT")
    key = _option(args, "key", "VIA_CONTROL_KEY")
    scheme, sep, rest = target.partition("://")
    address = rest if sep else target
    if bool(cert) != bool(key):
        raise CtlError("--cert and --key go together (mutual TLS)")
    if not (cacert or cert or (scheme == "https" and sep)):
        return grpc.insecure_channel(address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(cacert, "CA file") if cacert else None,
        private_key=_read(key, "client key") if key else None,
        certificate_chain=_read(cert, "client certificate") if cert else None,
    )
    return grpc.secure_channel(address, credentials)


def _run(args: argparse.Namespace, body: Callable[[Client], int]) -> int:
    try:
        client = Client(args)
    except CtlError as exc:
        print(f"via-otlp ctl: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        return body(client)
    except CtlError as exc:
        print(f"via-otlp ctl: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ConfigError as exc:
        print(f"via-otlp ctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        client.close()


def _collect(client: Client, method: str, request: Message, field: str, limit: int) -> Message:
    """Follow pages until `limit` items; the result is one response holding them all."""
    merged: Message | None = None
    while True:
        remaining = limit - (len(getattr(merged, field)) if merged is not None else 0)
        request.page_size = max(1, min(remaining, 1000))
        response = client.call(method, request)
        if merged is None:
            merged = response
        else:
            getattr(merged, field).extend(getattr(response, field))
            merged.next_page_token = response.next_page_token
        items = getattr(merged, field)
        if len(items) >= limit or not response.next_page_token:
            if len(items) > limit:
                del items[limit:]
            return merged
        request.page_token = response.next_page_token


# -- output ----------------------------------------------------------------------------------


def _wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def print_json(message: Message, out: TextIO | None = None) -> None:
    data = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    (out or sys.stdout).write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _answer(args: argparse.Namespace, response: R, render: Callable[[R], None]) -> int:
    """Print `response` as proto3 JSON with --json, else as `render` draws it."""
    if _wants_json(args):
        print_json(response)
    else:
        render(response)
    return EXIT_OK


def _show_list(
    args: argparse.Namespace,
    client: Client,
    method: str,
    request: Message,
    what: str,
    headers: Sequence[str],
    row: Callable[[Any], Sequence[Any]],
) -> int:
    """A List call followed over pages up to --limit (its repeated field is named `what`),
    shown as a table of `row(item)` with a footer that says what was left out (or as JSON)."""

    def render(r: Message) -> None:
        items = getattr(r, what)
        table(headers, [row(x) for x in items])
        if "total_size" in r.DESCRIPTOR.fields_by_name:
            _footer(len(items), r.total_size, what)
        else:
            _footer(len(items), None, what, more=bool(r.next_page_token))

    return _answer(args, _collect(client, method, request, what, args.limit), render)


def fields(rows: Sequence[tuple[str, Any]], out: TextIO | None = None) -> None:
    """One `name  value` line per row, the values aligned."""
    out = out or sys.stdout
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out.write(f"{key.ljust(width)}  {value}\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO | None = None) -> None:
    """Columns aligned to their widest cell; numbers right-aligned."""
    out = out or sys.stdout
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [
        bool(rows) and all(isinstance(r[i], int | float) for r in rows) for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out.write(line(headers) + "\n")
    for row in cells:
        out.write(line(row) + "\n")


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def when(unix_nano: int) -> str:
    """A time as short UTC ISO-8601 ("-" for 0)."""
    if not unix_nano:
        return "-"
    return datetime_from_ns(unix_nano).strftime("%Y-%m-%d %H:%M:%SZ")


_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    """One character per value, its height relative to the largest ("▁" for 0).

    >>> sparkline([0, 1, 2, 4, 8])
    '▁▃▄▅█'
    """
    top = max(values, default=0.0)
    if top <= 0:
        return _BARS[0] * len(values)
    steps = len(_BARS) - 2  # 0 gets the lowest bar, anything above it one of the others
    return "".join(_BARS[0] if v <= 0 else _BARS[1 + round(v / top * steps)] for v in values)


def _short(text: str, width: int = _TEMPLATE_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _enum(enum_type: Any, value: int, prefix: str) -> str:
    return str(enum_type.Name(value)).removeprefix(prefix).lower()


# -- commands --------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    def render(s: pb2.GetStatusResponse) -> None:
        i, p, t, r, e = s.intake, s.profiles, s.templates, s.registry, s.emitter
        requests = ", ".join(f"{x.transport}/{x.outcome} {x.count:,}" for x in i.requests) or "none"
        rows = [
            ("version", s.version),
            ("state", f"{s.state}, up {s.uptime_seconds:,.0f}s"),
            ("queue", f"{s.queue.depth:,} of {s.queue.capacity:,} records"),
            ("requests", requests),
            ("records", f"{i.records_accepted:,} accepted, {i.records_consumed:,} consumed, "
                        f"{i.records_dropped_by_patch:,} dropped by patches"),
            ("profiles", f"{p.tracked:,} tracked ({p.learning:,} learning), "
                         f"{p.open_episodes:,} episodes open, {p.episodes_opened:,} opened"),
            ("watermark", when(p.watermark_unix_nano)),
            ("templates", f"{t.templates:,} in {t.sources:,} sources, {t.lines:,} lines mined"),
            ("events", f"{s.events.emitted:,} emitted, {s.events.suppressed:,} held back by patches"),
            ("registry", f"{r.state}" + (f" ({r.database})" if r.database else "")
                         + f", patches in force: {r.patches_active:,}"
                         + ("" if r.patches_listening or r.state == "disabled" else ", NOT listening")),
            ("emitter", f"{e.state}, {e.sent:,} sent, {e.retries:,} retries"
                        + (f", last error: {e.last_error}" if e.last_error else "")),
        ]  # fmt: skip
        fields(rows)

    return _run(args, lambda c: _answer(args, c.call("GetStatus", pb2.GetStatusRequest()), render))


def cmd_profiles(args: argparse.Namespace) -> int:
    order = {
        "rate": pb2.PROFILE_ORDER_RATE,
        "recency": pb2.PROFILE_ORDER_RECENCY,
        "hash": pb2.PROFILE_ORDER_UNSPECIFIED,
    }[args.order]
    request = pb2.ListProfilesRequest(source=args.source, order_by=order)
    headers = ["RHYTHM HASH", "SOURCE", "SEVERITY", "STATE", "PER MIN", "TOTAL", "LAST SEEN",
               "TEMPLATE"]  # fmt: skip

    def row(p: pb2.Profile) -> tuple[Any, ...]:
        return (p.rhythm_hash, p.source.key, p.severity, _enum(pb2.ProfileState, p.state, "PROFILE_STATE_"),
                p.rate_per_minute, p.total_count, when(p.last_seen_unix_nano), _short(p.template))  # fmt: skip

    return _run(
        args, lambda c: _show_list(args, c, "ListProfiles", request, "profiles", headers, row)
    )


def cmd_profile(args: argparse.Namespace) -> int:
    def render(r: pb2.GetProfileResponse) -> None:
        p = r.profile
        per = f"per {p.bucket_seconds:g}s bucket"
        rows = [
            ("rhythm hash", p.rhythm_hash),
            ("source", p.source.key),
            ("severity", p.severity),
            ("template", f"{p.template}  (id {p.template_id})"),
            ("state", _enum(pb2.ProfileState, p.state, "PROFILE_STATE_")),
            ("baseline", f"{p.baseline_mean:.3g} ± {p.baseline_std:.3g} {per} ({p.rate_per_minute:.3g}/min)"),
            ("cardinality", f"{p.distinct_mean:.3g} distinct ids {per}"),
            ("seen", f"{p.total_count:,} records over {p.buckets_seen:,} buckets, "
                     f"{when(p.first_seen_unix_nano)} … {when(p.last_seen_unix_nano)}"),
        ]  # fmt: skip
        recent = list(r.recent_buckets)
        if recent:
            top = max(b.count for b in recent)
            rows.append(
                ("recent", f"{sparkline([b.count for b in recent])}  {len(recent)} buckets, "
                           f"oldest first, max {top:,.0f} (the last {min(len(recent), args.buckets)} below)"),
            )  # fmt: skip
        fields(rows)
        if recent and args.buckets > 0:
            print()
            table(
                ["BUCKET START", "COUNT", "EXPECTED", "DISTINCT"],
                [
                    (when(b.start_unix_nano), round(b.count), b.expected, round(b.distinct))
                    for b in recent[-args.buckets :]
                ],
            )

    request = pb2.GetProfileRequest(rhythm_hash=args.rhythm_hash)
    return _run(args, lambda c: _answer(args, c.call("GetProfile", request), render))


def cmd_templates(args: argparse.Namespace) -> int:
    request = pb2.ListTemplatesRequest(source=args.source)
    headers = ["SOURCE", "ID", "COUNT", "RHYTHM HASHES", "TEMPLATE"]

    def row(t: pb2.Template) -> tuple[Any, ...]:
        return (t.source_key, t.template_id, t.count, ",".join(t.rhythm_hashes) or "-",
                _short(t.template))  # fmt: skip

    return _run(
        args, lambda c: _show_list(args, c, "ListTemplates", request, "templates", headers, row)
    )


def parse_since(text: str, now_ns: int | None = None) -> int:
    """`--since`: a duration ago ("1h") or an ISO-8601 time; Unix nanoseconds."""
    if not text:
        return 0
    now = time.time_ns() if now_ns is None else now_ns
    try:
        return now - round(parse_duration(text, "--since") * _NS)
    except ConfigError:
        pass
    try:
        return parse_rfc3339(text, naive_is_utc=True)
    except ValueError:
        raise ConfigError(
            "--since", f"must be a duration ('1h') or an ISO-8601 time, got {text!r}"
        ) from None


def cmd_anomalies(args: argparse.Namespace) -> int:
    since = parse_since(args.since)

    request = pb2.ListAnomaliesRequest(since_unix_nano=since, source=args.source)
    if args.kind:
        request.kind = pb2.AnomalyKind.Value("ANOMALY_KIND_" + args.kind.upper())
    if args.state:
        request.state = pb2.EpisodeState.Value("EPISODE_STATE_" + args.state.upper())
    headers = ["STARTED", "KIND", "STATE", "SCORE", "MUTED", "SOURCE", "EXPLANATION"]

    def row(a: pb2.Anomaly) -> tuple[Any, ...]:
        return (when(a.started_unix_nano), _enum(pb2.AnomalyKind, a.kind, "ANOMALY_KIND_"),
                _enum(pb2.EpisodeState, a.state, "EPISODE_STATE_"), a.max_score, a.muted,
                a.source.key, _short(a.explanation, 90))  # fmt: skip

    return _run(
        args, lambda c: _show_list(args, c, "ListAnomalies", request, "anomalies", headers, row)
    )


def cmd_patch_add(args: argparse.Namespace) -> int:
    ttl = parse_duration(args.ttl, "--ttl") if args.ttl else 0.0
    patch = pb2.Patch(
        id=args.id,
        rule=pb2.PatchRule.Value("PATCH_RULE_" + args.rule.upper()),
        rhythm_hash=args.rhythm_hash,
        source=args.source,
        template=args.template,
        reason=args.reason,
        author=args.author if args.author is not None else _user(),
        active=not args.inactive,
    )
    if args.threshold is not None:
        patch.threshold = args.threshold

    request = pb2.UpsertPatchRequest(patch=patch, ttl_seconds=ttl)
    return _run(
        args,
        lambda c: _answer(args, c.call("UpsertPatch", request), lambda r: _patch_table([r.patch])),
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def cmd_patch_list(args: argparse.Namespace) -> int:
    def render(r: pb2.ListPatchesResponse) -> None:
        _patch_table(r.patches)
        _footer(len(r.patches), None, "patches")

    request = pb2.ListPatchesRequest(include_inactive=args.all)
    return _run(args, lambda c: _answer(args, c.call("ListPatches", request), render))


def _patch_table(patches: Sequence[pb2.Patch]) -> None:
    table(
        ["ID", "RULE", "IN FORCE", "SOURCE", "TEMPLATE", "RHYTHM HASH", "THRESHOLD", "EXPIRES", "REASON"],
        [
            (p.id, _enum(pb2.PatchRule, p.rule, "PATCH_RULE_").upper(), p.in_force,
             p.source or "*", _short(p.template or "*", 50), p.rhythm_hash or "*",
             f"{p.threshold:g}" if p.HasField("threshold") else "-",
             when(p.expires_unix_nano) if p.expires_unix_nano else "never", p.reason)
            for p in patches
        ],
    )  # fmt: skip


def cmd_patch_rm(args: argparse.Namespace) -> int:
    def body(client: Client) -> int:
        for patch_id in args.ids:
            client.call("DeletePatch", pb2.DeletePatchRequest(id=patch_id))
            if not _wants_json(args):
                print(f"removed patch {patch_id}")
        if _wants_json(args):
            sys.stdout.write(json.dumps({"removed": list(args.ids)}) + "\n")
        return EXIT_OK

    return _run(args, body)


def cmd_schema(args: argparse.Namespace) -> int:
    if args.source:
        request = pb2.GetSchemaRequest(source=args.source)
        return _run(
            args,
            lambda c: _answer(
                args, c.call("GetSchema", request), lambda r: _schema_detail(r.schema)
            ),
        )
    headers = ["SOURCE", "KEYS", "SAMPLES", "WINDOWS", "UPDATED"]

    def row(s: pb2.Schema) -> tuple[Any, ...]:
        return (s.source.key, len(s.attributes), s.samples, s.windows, when(s.updated_unix_nano))

    listing = pb2.ListSchemasRequest()
    return _run(
        args, lambda c: _show_list(args, c, "ListSchemas", listing, "schemas", headers, row)
    )


def _schema_detail(s: pb2.Schema) -> None:
    print(
        f"source {s.source.key}: {s.samples:,} samples over {s.windows:,} windows, "
        f"updated {when(s.updated_unix_nano)}"
    )
    print()
    table(
        ["SCOPE", "KEY", "PRESENCE", "TYPES"],
        [
            (a.scope, a.key, f"{a.presence:.0%}",
             ", ".join(f"{k} {v:.0%}" for k, v in sorted(a.types.items(), key=lambda kv: -kv[1])))
            for a in s.attributes
        ],
    )  # fmt: skip
    if s.top_templates:
        print()
        table(
            ["TEMPLATE ID", "PER SEC", "SHARE", "TEMPLATE"],
            [
                (t.template_id, t.rate_per_second, f"{t.share:.0%}", _short(t.template))
                for t in s.top_templates
            ],
        )


def _footer(shown: int, total: int | None, what: str, more: bool = False) -> None:
    if not shown and not more:
        print(f"(no {what})", file=sys.stderr)
    elif total is not None and total > shown:
        print(f"({shown:,} of {total:,} {what}; --limit shows more)", file=sys.stderr)
    elif more:
        print(f"({shown:,} {what} shown, more exist; --limit shows more)", file=sys.stderr)


# -- incidents -------------------------------------------------------------------------------

_LINK_WORD = {
    pb2.LINK_TYPE_TEMPORAL: "time",
    pb2.LINK_TYPE_TRACE: "trace",
    pb2.LINK_TYPE_SEMANTIC: "similar",
}


def cmd_incidents(args: argparse.Namespace) -> int:
    since = parse_since(args.since)

    request = pb2.ListIncidentsRequest(
        since_unix_nano=since, source=args.source, include_merged=args.merged
    )
    if args.state:
        request.state = pb2.IncidentState.Value("INCIDENT_STATE_" + args.state.upper())
    headers = ["ID", "STARTED", "STATE", "SCORE", "EPISODES", "LINKS", "SOURCES", "TITLE"]

    def row(i: pb2.Incident) -> tuple[Any, ...]:
        return (i.id, when(i.started_unix_nano), _incident_state(i), i.score, i.member_count,
                _link_summary(i), _short(", ".join(i.sources), 40), _short(i.title, 80))  # fmt: skip

    return _run(
        args, lambda c: _show_list(args, c, "ListIncidents", request, "incidents", headers, row)
    )


def _incident_state(i: pb2.Incident) -> str:
    state = _enum(pb2.IncidentState, i.state, "INCIDENT_STATE_")
    return f"merged into {i.merged_into}" if i.merged_into else state


def _link_summary(i: pb2.Incident) -> str:
    parts = [
        f"{n} {word}"
        for n, word in (
            (i.trace_links, "trace"),
            (i.temporal_links, "time"),
            (i.semantic_links, "similar"),
        )
        if n
    ]
    return ", ".join(parts) or "-"


def cmd_incident(args: argparse.Namespace) -> int:
    request = pb2.GetIncidentRequest(id=args.id)
    return _run(
        args,
        lambda c: _answer(
            args, c.call("GetIncident", request), lambda r: _incident_detail(r.incident)
        ),
    )


def _incident_detail(i: pb2.Incident, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    ended = when(i.ended_unix_nano) if i.ended_unix_nano else "-"
    rows = [
        ("incident", i.id),
        ("title", i.title),
        ("state", _incident_state(i)),
        ("score", f"{i.score:.3g}"),
        ("time", f"{when(i.started_unix_nano)} … {ended}"),
        ("sources", ", ".join(i.sources)),
        ("graph", f"{len(i.members)} episodes, {_link_summary(i)} links"),
    ]
    fields(rows, out)
    out.write("\n")
    for line in incident_graph_lines(i):
        out.write(line + "\n")


def incident_graph_lines(i: pb2.Incident) -> list[str]:
    """The graph as a tree: each episode under the member it joined through (its strongest
    link to an earlier member), with the link's type and confidence; other links listed after.

    >>> inc = pb2.Incident(root_episode_id="a", members=[
    ...     pb2.IncidentMember(episode_id="a", source=pb2.Source(key="db"), template="down"),
    ...     pb2.IncidentMember(episode_id="b", source=pb2.Source(key="api"), template="timeout")],
    ...     links=[pb2.IncidentLink(episode_id="b", linked_episode_id="a",
    ...                             type=pb2.LINK_TYPE_TRACE, confidence=0.95)])
    >>> print("\\n".join(incident_graph_lines(inc)))
    a  db  unspecified  unspecified  score 0  down
    └─ trace 0.95 ── b  api  unspecified  unspecified  score 0  timeout
    """
    members = {m.episode_id: m for m in i.members}
    order = [m.episode_id for m in i.members]  # earliest start first
    placed: list[str] = []
    parent: dict[str, pb2.IncidentLink] = {}
    root = i.root_episode_id if i.root_episode_id in members else (order[0] if order else "")
    if root:
        placed.append(root)
    for eid in order:
        if eid == root:
            continue
        candidates = [
            link
            for link in i.links
            if (link.episode_id == eid and link.linked_episode_id in placed)
            or (link.linked_episode_id == eid and link.episode_id in placed)
        ]
        if candidates:
            parent[eid] = max(candidates, key=lambda x: x.confidence)
        placed.append(eid)
    children: dict[str, list[str]] = {}
    orphans: list[str] = []
    for eid in placed[1:]:
        link = parent.get(eid)
        if link is None:
            orphans.append(eid)
            continue
        up = link.linked_episode_id if link.episode_id == eid else link.episode_id
        children.setdefault(up, []).append(eid)

    def node(eid: str) -> str:
        m = members[eid]
        kind = _enum(pb2.AnomalyKind, m.kind, "ANOMALY_KIND_")
        state = _enum(pb2.EpisodeState, m.state, "EPISODE_STATE_")
        return (
            f"{eid}  {m.source.key}  {kind}  {state}  score {m.score:.3g}  {_short(m.template, 60)}"
        )

    lines: list[str] = []

    def walk(eid: str, prefix: str, last: bool, top: bool) -> None:
        if top:
            lines.append(node(eid))
            inner = ""
        else:
            link = parent[eid]
            branch = "└─ " if last else "├─ "
            word = _LINK_WORD.get(link.type, "link")
            lines.append(f"{prefix}{branch}{word} {link.confidence:.2f} ── {node(eid)}")
            inner = prefix + ("   " if last else "│  ")
        kids = children.get(eid, [])
        for n, kid in enumerate(kids):
            walk(kid, inner, n == len(kids) - 1, False)

    if root:
        walk(root, "", True, True)
    for eid in orphans:  # joined by a merge, with no link to an earlier member kept
        lines.append(f"(merged) {node(eid)}")
    used = {id(link) for link in parent.values()}
    extra = [link for link in i.links if id(link) not in used]
    if extra:
        lines.append("")
        lines.append("other links:")
        for link in extra:
            word = _LINK_WORD.get(link.type, "link")
            lines.append(
                f"  {link.episode_id} ── {word} {link.confidence:.2f} ── {link.linked_episode_id}"
            )
    return lines


def cmd_similar(args: argparse.Namespace) -> int:
    if bool(args.text) == bool(args.episode):
        print("via-otlp ctl similar: give a TEXT or --episode EPISODE_ID (one of them)",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE

    request = pb2.SearchSimilarRequest(
        text=args.text,
        episode_id=args.episode,
        limit=max(1, args.limit),
        include_same_incident=args.same_incident,
    )

    def render(r: pb2.SearchSimilarResponse) -> None:
        table(
            ["SIMILARITY", "STARTED", "KIND", "SOURCE", "EPISODE", "INCIDENT", "TEMPLATE"],
            [
                (round(e.similarity, 3), when(e.started_unix_nano),
                 _enum(pb2.AnomalyKind, e.kind, "ANOMALY_KIND_"), e.source, e.episode_id,
                 e.incident_id or "-", _short(e.template, 60))
                for e in r.episodes
            ],
        )  # fmt: skip
        if r.incidents:
            print()
            table(
                ["SIMILARITY", "INCIDENT", "VIA EPISODE", "TITLE"],
                [
                    (round(i.similarity, 3), i.incident_id, i.best_episode_id,
                     _short(i.title or "-", 80))
                    for i in r.incidents
                ],
            )  # fmt: skip
        _footer(len(r.episodes), None, "similar episodes")

    return _run(args, lambda c: _answer(args, c.call("SearchSimilar", request), render))
