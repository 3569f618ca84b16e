"""Generation: a scenario's traffic as OTLP ExportLogsServiceRequests, and its truth windows.

Counts come first, for every template and bucket at once (numpy): base rate × daily and weekly
seasonality × what the anomalies do, then Poisson or negative binomial noise. Records are built
per chunk of buckets, only when they are sent, so a week of traffic never sits in memory. Every
random draw comes from a generator seeded by (scenario seed, template, chunk): the same file
gives the same bytes, and a chunk can be rebuilt on its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from via_otlp.receive.otlp_codec import request_to_json_line
from via_otlp.simulate.scenario import (
    _PLACEHOLDER,
    AnomalySpec,
    DailyShape,
    InjectedKind,
    NoiseKind,
    NoiseSpec,
    Scenario,
    SchemaChangeKind,
    SeasonalitySpec,
    TemplateSpec,
)

TARGET_RECORDS_PER_REQUEST = 5000
MAX_CHUNK_BUCKETS = 360
SCOPE_NAME = "via-otlp-simulate"
_SEVERITY_NUMBER = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17, "FATAL": 21}
_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")
_INT_ATTRIBUTE_VALUES = ("{ms}", "{id}", "{int}")


@dataclass(frozen=True, slots=True)
class TruthWindow:
    """One labelled anomaly: kind, where (source, affected template codes) and when."""

    index: int
    kind: InjectedKind
    service: str
    source_key: str
    template_codes: tuple[int, ...]
    start_ns: int
    end_ns: int
    description: str


@dataclass(frozen=True, slots=True)
class GenTemplate:
    """A template of the generated traffic (scenario templates, then injected new ones)."""

    code: int
    service: str
    source_index: int
    spec: TemplateSpec

    @property
    def key(self) -> str:
        return f"{self.service}:{self.spec.name}"


@dataclass(frozen=True, slots=True)
class _SchemaEdit:
    start: int
    end: int
    change: SchemaChangeKind
    attribute: str
    type: str


@dataclass(slots=True)
class GeneratedRequest:
    """A request, the template code of each of its records (in intake order), its buckets."""

    request: ExportLogsServiceRequest
    codes: np.ndarray
    first_bucket: int
    last_bucket: int


@dataclass
class Traffic:
    """The generated traffic of one scenario: expected rates, drawn counts and the truth."""

    scenario: Scenario
    templates: list[GenTemplate]
    rates: np.ndarray  # [template, bucket] expected records per bucket
    counts: np.ndarray  # [template, bucket] drawn
    truth: list[TruthWindow]
    fresh_ids: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    schema_edits: dict[int, list[_SchemaEdit]] = field(default_factory=dict)
    # Edits each request before it is sent (request, time shift): shared trace ids (incidents.py).
    decorate: Callable[[GeneratedRequest, int], None] | None = None

    @property
    def total_records(self) -> int:
        return int(self.counts.sum())

    def chunk_buckets(self) -> int:
        per_bucket = float(self.counts.sum()) / max(1, self.counts.shape[1])
        return int(max(1, min(MAX_CHUNK_BUCKETS, TARGET_RECORDS_PER_REQUEST // max(per_bucket, 1))))

    def requests(self, time_shift_ns: int = 0, chunk: int = 0) -> Iterator[GeneratedRequest]:
        """The traffic as requests in time order (`time_shift_ns` moves every timestamp), one per
        `chunk` buckets (0: sized to about `TARGET_RECORDS_PER_REQUEST` records)."""
        n_b = self.counts.shape[1]
        step = chunk or self.chunk_buckets()
        for ci, lo in enumerate(range(0, n_b, step)):
            hi = min(n_b, lo + step)
            g = self._chunk(ci, lo, hi, time_shift_ns)
            if self.decorate is not None:
                self.decorate(g, time_shift_ns)
            yield g

    def write_jsonl(self, path: str | Path) -> int:
        """Write the traffic as OTLP/JSON lines (the `replay` format); returns the requests written."""
        n = 0
        with Path(path).open("w", encoding="utf-8") as f:
            for g in self.requests():
                f.write(request_to_json_line(g.request))
                f.write("\n")
                n += 1
        return n

    # -- building records --------------------------------------------------------------------

    def _chunk(self, ci: int, lo: int, hi: int, shift: int) -> GeneratedRequest:
        sc = self.scenario
        bns = sc.bucket_ns
        t0 = sc.start_ns + shift
        per_source: dict[int, list[LogRecord]] = {}
        codes_of: dict[int, list[np.ndarray]] = {}
        for tpl in self.templates:
            c = self.counts[tpl.code, lo:hi].astype(np.int64)
            n = int(c.sum())
            if n == 0:
                continue
            rng = np.random.default_rng([sc.seed, tpl.code, ci, 7])
            bk = np.repeat(np.arange(lo, hi, dtype=np.int64), c)
            t = t0 + bk * bns + np.sort(rng.integers(0, bns, n))
            order = np.lexsort((t,))
            t = t[order]
            recs = self._records(tpl, rng, bk, t)
            per_source.setdefault(tpl.source_index, []).extend(recs)
            codes_of.setdefault(tpl.source_index, []).append(np.full(n, tpl.code, dtype=np.int32))
        req = ExportLogsServiceRequest()
        codes: list[np.ndarray] = []
        for si in sorted(per_source):
            src = sc.sources[si]
            rl = req.resource_logs.add()
            rl.resource.attributes.extend(
                _resource_attributes(src.service, src.namespace, src.environment)
            )
            sl = rl.scope_logs.add()
            sl.scope.name = SCOPE_NAME
            sl.log_records.extend(per_source[si])
            codes.extend(codes_of[si])
        arr = np.concatenate(codes) if codes else np.zeros(0, dtype=np.int32)
        return GeneratedRequest(req, arr, lo, hi - 1)

    def _records(
        self, tpl: GenTemplate, rng: np.random.Generator, bk: np.ndarray, t: np.ndarray
    ) -> list[LogRecord]:
        spec = tpl.spec
        n = len(t)
        needed = set(_PLACEHOLDER.findall(spec.text))
        for v in spec.attributes.values():
            needed.update(_PLACEHOLDER.findall(v))
        values: dict[str, list[str]] = {}
        ints: dict[str, np.ndarray] = {}
        for var in sorted(needed):
            strs, num = _draw(var, n, rng, spec, self._fresh_mask(tpl.code, bk))
            values[var] = strs
            if num is not None:
                ints[var] = num
        parts = _PLACEHOLDER.split(spec.text)  # literal, var, literal, var, ..., literal
        lits, vars_ = parts[0::2], parts[1::2]
        cols = [values[v] for v in vars_]
        if cols:
            bodies = [
                lits[0] + "".join(x + lit for x, lit in zip(row, lits[1:], strict=True))
                for row in zip(*cols, strict=True)
            ]
        else:
            bodies = [spec.text] * n
        attrs = self._attribute_columns(tpl, rng, bk, n, values, ints)
        sev = spec.severity
        sev_number: Any = _SEVERITY_NUMBER.get(sev, 9)
        out = []
        times = t.tolist()
        for i in range(n):
            kvs = [col[i] for col in attrs]
            out.append(
                LogRecord(
                    time_unix_nano=times[i],
                    severity_text=sev,
                    severity_number=sev_number,
                    body=AnyValue(string_value=bodies[i]),
                    attributes=[kv for kv in kvs if kv is not None],
                )
            )
        return out

    def _fresh_mask(self, code: int, bk: np.ndarray) -> np.ndarray | None:
        wins = self.fresh_ids.get(code)
        if not wins:
            return None
        m = np.zeros(len(bk), dtype=bool)
        for a, b in wins:
            m |= (bk >= a) & (bk < b)
        return m

    def _attribute_columns(
        self,
        tpl: GenTemplate,
        rng: np.random.Generator,
        bk: np.ndarray,
        n: int,
        values: dict[str, list[str]],
        ints: dict[str, np.ndarray],
    ) -> list[list[KeyValue | None]]:
        cols: list[list[KeyValue | None]] = []
        edits = self.schema_edits.get(tpl.code, [])
        for key, text in sorted(tpl.spec.attributes.items()):
            retyped: np.ndarray | None = None
            new_type = ""
            for e in edits:
                if e.change is SchemaChangeKind.TYPE_CHANGE and e.attribute == key:
                    m = (bk >= e.start) & (bk < e.end)
                    retyped = m if retyped is None else retyped | m
                    new_type = e.type
            col = _attribute_values(key, text, n, values, ints)
            if retyped is not None and retyped.any():
                alt = _typed_values(key, new_type, rng, n)
                col = [a if r else c for c, a, r in zip(col, alt, retyped.tolist(), strict=True)]
            cols.append(col)
        for e in edits:
            if e.change is SchemaChangeKind.NEW_KEY:
                m = ((bk >= e.start) & (bk < e.end)).tolist()
                vals = _typed_values(e.attribute, e.type, rng, n)
                cols.append([v if on else None for v, on in zip(vals, m, strict=True)])
        return cols


def _resource_attributes(service: str, namespace: str, environment: str) -> list[KeyValue]:
    out = [KeyValue(key="service.name", value=AnyValue(string_value=service))]
    if namespace:
        out.append(KeyValue(key="service.namespace", value=AnyValue(string_value=namespace)))
    if environment:
        out.append(
            KeyValue(key="deployment.environment.name", value=AnyValue(string_value=environment))
        )
    return out


def _draw(
    var: str, n: int, rng: np.random.Generator, spec: TemplateSpec, fresh: np.ndarray | None
) -> tuple[list[str], np.ndarray | None]:
    if var == "id":
        a = rng.integers(100_000, 100_000_000, n)
        return [str(x) for x in a.tolist()], a
    if var == "int":
        a = rng.integers(0, 100, n)
        return [str(x) for x in a.tolist()], a
    if var == "ms":
        a = np.maximum(1, rng.lognormal(math.log(80), 0.8, n)).astype(np.int64)
        return [str(x) for x in a.tolist()], a
    if var == "hex":
        a = rng.integers(0, 2**40, n)
        return [f"{x:010x}" for x in a.tolist()], None
    if var == "ip":
        a = rng.integers(0, 2**16, n)
        return [f"10.{(x >> 8) & 255}.{x & 255}.{(x * 7) % 250 + 1}" for x in a.tolist()], None
    if var == "word":
        a = rng.integers(0, len(_WORDS), n)
        return [_WORDS[x] for x in a.tolist()], None
    # user: from the template's population, or every one fresh inside a cardinality window
    a = rng.integers(0, spec.users, n)
    users = [f"user-{x:06d}" for x in a.tolist()]
    if fresh is not None and fresh.any():
        f = rng.integers(10**8, 10**9, n)
        users = [
            f"guest-{y}" if m else u
            for u, y, m in zip(users, f.tolist(), fresh.tolist(), strict=True)
        ]
    return users, None


def _attribute_values(
    key: str, text: str, n: int, values: dict[str, list[str]], ints: dict[str, np.ndarray]
) -> list[KeyValue | None]:
    if text in _INT_ATTRIBUTE_VALUES and text[1:-1] in ints:
        return [KeyValue(key=key, value=AnyValue(int_value=x)) for x in ints[text[1:-1]].tolist()]
    parts = _PLACEHOLDER.split(text)
    lits, vars_ = parts[0::2], parts[1::2]
    if not vars_:
        kv = KeyValue(key=key, value=AnyValue(string_value=text))
        return [kv] * n
    cols = [values[v] for v in vars_]
    return [
        KeyValue(
            key=key,
            value=AnyValue(
                string_value=lits[0]
                + "".join(x + lit for x, lit in zip(row, lits[1:], strict=True))
            ),
        )
        for row in zip(*cols, strict=True)
    ]


def _typed_values(
    key: str, type_name: str, rng: np.random.Generator, n: int
) -> list[KeyValue | None]:
    a = rng.integers(1, 10_000, n).tolist()
    if type_name == "int":
        return [KeyValue(key=key, value=AnyValue(int_value=x)) for x in a]
    if type_name == "double":
        return [KeyValue(key=key, value=AnyValue(double_value=x / 7.0)) for x in a]
    if type_name == "bool":
        return [KeyValue(key=key, value=AnyValue(bool_value=bool(x & 1))) for x in a]
    return [KeyValue(key=key, value=AnyValue(string_value=f"v{x}")) for x in a]


def wander(noise: NoiseSpec, bucket: float, n_buckets: int, rng: np.random.Generator) -> np.ndarray:
    """Per-bucket rate factors, mean 1: one Gamma(shape, 1/shape) draw per `period`, held."""
    per = max(1, round(noise.period / bucket))
    g = rng.gamma(noise.shape, 1.0 / noise.shape, -(-n_buckets // per))
    return np.repeat(g, per)[:n_buckets]


# -- the rates and the truth -----------------------------------------------------------------


def seasonal_factor(scenario: Scenario, n_buckets: int) -> np.ndarray:
    """The daily × weekly shape per bucket (mean about 1 over a week of equal day factors)."""
    s = scenario.seasonality
    start = datetime.fromtimestamp(scenario.start_ns / 1e9, tz=UTC)
    day0 = start.weekday() + (start.hour * 3600 + start.minute * 60 + start.second) / 86400.0
    days = day0 + (np.arange(n_buckets) + 0.5) * scenario.bucket / 86400.0
    hour = (days % 1.0) * 24.0
    if s.shape is DailyShape.BUSINESS:
        daily = business_day(s, hour)
    else:
        daily = 1.0 + s.daily * np.cos(2 * np.pi * (hour - s.peak_hour) / 24.0)
    w = np.asarray(s.weekly, dtype=np.float64)
    pos = days - 0.5  # day centres at noon; smooth (cosine) between them
    i = np.floor(pos).astype(np.int64)
    f = pos - i
    blend = (1 - np.cos(np.pi * f)) / 2
    weekly = w[i % 7] * (1 - blend) + w[(i + 1) % 7] * blend
    return daily * weekly


# A logistic goes from 10 % to 90 % of its way in this many of its scale units (2 ln 9).
_LOGISTIC_10_90 = 2.0 * math.log(9.0)
_LUNCH_SD_HOURS = 0.75


def business_day(s: SeasonalitySpec, hour: np.ndarray) -> np.ndarray:
    """The `DailyShape.BUSINESS` curve at `hour` (0-24): ``1 - daily`` at night, the plateau
    such that the mean over the day is 1 (see `SeasonalitySpec`)."""
    night = 1.0 - s.daily
    grid = (np.arange(1440) + 0.5) / 60.0  # the day's minutes, for the mean
    return night + s.daily * _working(s, hour) / float(_working(s, grid).mean())


def _working(s: SeasonalitySpec, hour: np.ndarray) -> np.ndarray:
    """How far into the working day `hour` is (0 at night, ~1 on the plateau), periodic: the
    rise, lunch and fall of the day before and after added, so midnight joins up."""
    wr, wf = s.rise_hours / _LOGISTIC_10_90, s.fall_hours / _LOGISTIC_10_90
    out = np.zeros(np.shape(hour))
    for shift in (-24.0, 0.0, 24.0):
        h = np.asarray(hour, dtype=np.float64) + shift
        up = 1.0 / (1.0 + np.exp(-(h - s.rise_hour) / wr))
        down = 1.0 / (1.0 + np.exp((h - s.fall_hour) / wf))
        lunch = 1.0 - s.lunch_dip * np.exp(-0.5 * ((h - s.lunch_hour) / _LUNCH_SD_HOURS) ** 2)
        out += up * down * lunch
    return out


def walk_log(noise: NoiseSpec, shocks: np.ndarray) -> np.ndarray:
    """The stationary AR(1) (an Ornstein-Uhlenbeck process sampled per `period`) of unit
    variance driven by the standard normal `shocks` (one row per series, a column per period)."""
    phi = noise.walk_phi
    keep = math.sqrt(1.0 - phi * phi)
    x = np.empty_like(shocks)
    x[..., 0] = shocks[..., 0]
    for k in range(1, shocks.shape[-1]):
        x[..., k] = phi * x[..., k - 1] + keep * shocks[..., k]
    return x


def walk_factors(sc: Scenario, templates: list[GenTemplate], rngs: list[np.random.Generator],
                 n_buckets: int) -> np.ndarray:  # fmt: skip
    """Per template and bucket, the `NoiseKind.WALK` rate factor exp(x - v/2) (mean 1): x the
    sum of a walk per service (variance `shared`·v, drawn from its own generator) and one per
    template (the rest, from the template's `rngs[i]`), held for a `period`."""
    noise = sc.noise
    per = max(1, round(noise.period / sc.bucket))
    steps = -(-n_buckets // per)
    v = noise.walk_var
    own = walk_log(noise, np.stack([r.standard_normal(steps) for r in rngs]))
    n_src = len(sc.sources)
    common = walk_log(
        noise,
        np.stack([np.random.default_rng([sc.seed, si, 1]).standard_normal(steps)
                  for si in range(n_src)]),
    )  # fmt: skip
    src = np.array([g.source_index for g in templates])
    x = math.sqrt(v * (1.0 - noise.shared)) * own + math.sqrt(v * noise.shared) * common[src]
    return np.repeat(np.exp(x - 0.5 * v), per, axis=1)[:, :n_buckets]


def window_buckets(a: AnomalySpec, bucket: float, n_buckets: int) -> tuple[int, int]:
    """The buckets [b0, b1) anomaly `a` is labelled to (a drift's factor holds after b1)."""
    b0 = math.ceil(a.at / bucket - 1e-9)
    return b0, min(n_buckets, b0 + max(1, math.ceil(a.duration / bucket - 1e-9)))


def drift_factor(a: AnomalySpec, bucket: float, length: int, since: np.ndarray) -> np.ndarray:
    """Drift `a`'s rate factor `since` (>= 0) buckets after its first of `length` (b1 - b0): its
    percent an hour from the end of that first bucket, held from the last on, at least 0.05."""
    hours = np.minimum(since + 1, length) * bucket / 3600.0
    return np.maximum(0.05, 1.0 + a.percent_per_hour / 100.0 * hours)


def generate(scenario: Scenario) -> Traffic:
    """Rates, counts and truth windows of a scenario (records are built later, per chunk)."""
    sc = scenario
    n_b = sc.buckets
    bucket = sc.bucket
    templates: list[GenTemplate] = []
    for si, src in enumerate(sc.sources):
        for t in src.templates:
            templates.append(GenTemplate(len(templates), src.service, si, t))
    extra: list[tuple[int, GenTemplate]] = []
    for ai, a in enumerate(sc.anomalies):
        if a.kind is InjectedKind.NEW_TEMPLATE:
            si = next(i for i, s in enumerate(sc.sources) if s.service == a.source)
            spec = TemplateSpec(
                name=a.template or f"new-{ai}", text=a.text, rate=0.0, severity=a.severity
            )
            g = GenTemplate(len(templates) + len(extra), a.source, si, spec)
            extra.append((ai, g))
    templates += [g for _, g in extra]
    new_of = dict(extra)
    season = seasonal_factor(sc, n_b)
    base = np.array([t.spec.rate for t in templates])
    rates = base[:, None] * season[None, :]
    for g in templates:  # a template that starts later has no records before
        rates[g.code, : min(n_b, math.ceil(g.spec.starts / bucket - 1e-9))] = 0.0
    traffic = Traffic(sc, templates, rates, np.zeros_like(rates), [])
    truth: list[TruthWindow] = []
    for ai, a in enumerate(sc.anomalies):
        b0, b1 = window_buckets(a, bucket, n_b)
        src = sc.source(a.source)
        if a.kind is InjectedKind.NEW_TEMPLATE:
            g = new_of[ai]
            rates[g.code, b0:b1] = a.rate * season[b0:b1]
            codes: tuple[int, ...] = (g.code,)
        else:
            codes = tuple(
                t.code
                for t in templates
                if t.service == a.source
                and (not a.template or t.spec.name == a.template)
                and t.code not in {x.code for x in new_of.values()}
            )
        idx = list(codes)
        if a.kind is InjectedKind.SPIKE:
            rates[idx, b0:b1] *= a.factor
        elif a.kind is InjectedKind.DROP:
            rates[idx, b0:b1] /= a.factor
        elif a.kind is InjectedKind.SILENCE:
            rates[idx, b0:b1] = 0.0
        elif a.kind is InjectedKind.DRIFT:
            rates[idx, b0:] *= drift_factor(a, bucket, b1 - b0, np.arange(n_b - b0))[None, :]
        elif a.kind is InjectedKind.CARDINALITY:
            rates[idx, b0:b1] *= a.volume
            for c in codes:
                traffic.fresh_ids.setdefault(c, []).append((b0, b1))
        elif a.kind is InjectedKind.SCHEMA:
            for c in codes:
                traffic.schema_edits.setdefault(c, []).append(
                    _SchemaEdit(b0, b1, a.change, a.attribute, a.type)
                )
        what = a.template or "all templates"
        truth.append(
            TruthWindow(
                ai, a.kind, a.source, src.key, codes, sc.start_ns + b0 * sc.bucket_ns,
                sc.start_ns + b1 * sc.bucket_ns, f"{a.kind.value} on {a.source}/{what}",
            )
        )  # fmt: skip
    traffic.truth = truth
    traffic.counts = draw_counts(sc, templates, rates)
    if any(a.traces for a in sc.anomalies):
        from via_otlp.simulate.incidents import shared_trace_ids

        traffic.decorate = shared_trace_ids(traffic)
    return traffic


def draw_counts(sc: Scenario, templates: list[GenTemplate], rates: np.ndarray) -> np.ndarray:
    counts = np.zeros_like(rates)
    if sc.noise.kind is NoiseKind.WALK:
        walked = [g for g in templates if not g.spec.dispersion]
        rngs = [np.random.default_rng([sc.seed, g.code, 0]) for g in walked]
        if walked:
            factors = walk_factors(sc, walked, rngs, rates.shape[1])
            for g, rng, f in zip(walked, rngs, factors, strict=True):
                counts[g.code] = rng.poisson(rates[g.code] * f)
        templates = [g for g in templates if g.spec.dispersion]
    for g in templates:
        rng = np.random.default_rng([sc.seed, g.code, 0])
        lam = rates[g.code]
        if sc.noise.kind is NoiseKind.GAMMA and not g.spec.dispersion:
            counts[g.code] = rng.poisson(lam * wander(sc.noise, sc.bucket, len(lam), rng))
            continue
        disp = g.spec.dispersion or (
            sc.noise.dispersion if sc.noise.kind is NoiseKind.NEGBIN else 1.0
        )
        if disp <= 1.0 + 1e-9:
            counts[g.code] = rng.poisson(lam)
        else:
            # variance = disp × mean: NB with r = mean / (disp - 1), p = 1 / disp
            r = np.where(lam > 0, lam / (disp - 1.0), 1.0)
            x = rng.negative_binomial(r, 1.0 / disp)
            counts[g.code] = np.where(lam > 0, x, 0)
    return counts
