"""walkdrop: run a seed through the pipeline; for one series, per row, each drop test's p."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import count_series_variants as variants

import via_otlp.detect.profile as prof
import via_otlp.simulate.countseries as cs

VARIANT, SEED, NAME, LO, HI = (
    sys.argv[1],
    int(sys.argv[2]),
    sys.argv[3],
    int(sys.argv[4]),
    int(sys.argv[5]),
)
if VARIANT != "base":
    variants.install(VARIANT)
from via_otlp.config import load_config
from via_otlp.detect.profile import ProfileTable
from via_otlp.simulate.run import replay

config = load_config(cs.CONFIG)
styles = [st for st, k in zip(cs.STYLES, cs.SERIES_PER_SEED) for _ in range(k)]
series = [cs.make_series(SEED, i, st) for i, st in enumerate(styles)]
traffic = cs.series_traffic(series, SEED)
sc = traffic.scenario
s = series[[x.name for x in series].index(NAME)]
B0 = sc.start_ns // sc.bucket_ns
LO += B0
HI += B0
rec = []
orig = ProfileTable._tail_tests


def tt(self, p_out, cand, s_, e, v, upper, rows=None, share=None, spread=None):
    f = sys._getframe(1)
    lab = f.f_lineno
    if f.f_code.co_name == "_window_tails":
        lab = f"w{sys._getframe(2).f_lineno}"
    before = len(self._tails_due or [])
    orig(self, p_out, cand, s_, e, v, upper, rows, share, spread)
    for d in (self._tails_due or [])[before:]:
        rec.append(
            (
                lab,
                prof._TailsDue(
                    np.ones_like(p_out), d.rows, d.k, d.e, d.v, d.upper, d.share, d.spread
                ),
            )
        )


ProfileTable._tail_tests = tt
orig_close = ProfileTable.close


def close(self, bucket, counts, distinct, partial=False, with_id=None):
    rec.clear()
    slot = next(
        (
            i
            for i in range(self.capacity)
            if self.source[i] is not None
            and self.source[i].attributes
            and NAME in str(self.source[i].key)
        ),
        None,
    )
    v = orig_close(self, bucket, counts, distinct, partial, with_id)
    if slot is not None and LO <= bucket < HI:
        prof._settle([d for _, d in rec])
        parts = []
        for lab, d in rec:
            m = d.rows == slot
            if not m.any():
                continue
            p = d.p_out[slot]
            if p >= 1:
                continue
            i = np.nonzero(m)[0][0]
            parts.append(
                f"{'U' if d.upper else 'D'}{lab}:{p:.1e}(k{d.k[i]:.0f}/e{d.e[i]:.0f}/sd{np.sqrt(d.v[i]):.0f})"
            )
        al = [(a.kind.value, f"{a.p_value:.1e}") for a in v.alarms if a.slot == slot]
        print(bucket - B0, "c", counts[slot], "partial", partial, " ".join(parts), al, flush=True)
    return v


ProfileTable.close = close
end_ns = sc.start_ns + sc.buckets * sc.bucket_ns
events, _, done = replay(traffic.requests(), config, end_ns, traffic.total_records, None)
