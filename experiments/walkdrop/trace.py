"""walkdrop: feed one count series to a ProfileTable; per row, each test's own p (both sides)."""

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
base_series = None
styles = [st for st, k in zip(cs.STYLES, cs.SERIES_PER_SEED) for _ in range(k)]
idx = [f"cs-{st}-{i}-s{SEED}" for i, st in enumerate(styles)].index(NAME)
b0 = cs.make_series(SEED, idx, styles[idx])
if VARIANT != "base":
    variants.install(VARIANT)
s = cs.make_series(SEED, idx, styles[idx])
from via_otlp.config import load_config

B0 = cs.series_traffic([s], SEED).scenario.start_ns // int(cs.BUCKET * 1e9)
from via_otlp.detect.profile import ProfileTable
from via_otlp.model import Source

cfg = load_config(cs.CONFIG).detect
table = ProfileTable(cfg)
src = Source.from_attributes((("service.name", s.name),))
slot = table.add("0" * 16, src, "t", "Event <*> recorded", "INFO", B0 * 300 * 10**9, B0)
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
        mine = prof._TailsDue(
            np.ones_like(p_out), d.rows, d.k, d.e, d.v, d.upper, d.share, d.spread
        )
        rec.append((lab, mine))


ProfileTable._tail_tests = tt
orig_wt = ProfileTable._window_tails
wlog = []
orig_tda = prof.tail_dispersion_at
last_tda = {}


def tda(*a, **k):
    r = orig_tda(*a, **k)
    last_tda["v"] = r
    return r


prof.tail_dispersion_at = tda
orig_lj = prof.lag_judged
ljlog = []


def lj(blocks, lag, ready, wander=None, *a):
    r = orig_lj(blocks, lag, ready, wander, *a)
    A, EA, B, EB, OK = blocks
    m_up, v_up, m_dn, v_dn = r
    us = a[0][slot] if a and a[0] is not None else None
    for k in range(A.shape[1]):
        if ready[slot, k]:
            z = (A[slot, k] - m_dn[slot, k]) / np.sqrt(v_dn[slot, k]) if v_dn[slot, k] > 0 else 0
            ljlog.append(
                f"L{k}:a{A[slot, k]:.0f}/ea{EA[slot, k]:.0f} b{B[slot, k]:.0f}/eb{EB[slot, k]:.0f} m{m_dn[slot, k]:.0f} sd{np.sqrt(v_dn[slot, k]):.0f} z{z:.1f}{'' if us is None else ('u' if us[k] else 'X')}"
            )
    return r


prof.lag_judged = lj


def wt(self, p_out, rows, cols, s_, e, phi_w, upper, *a, **k):
    f = sys._getframe(1).f_lineno
    last_tda.clear()
    orig_wt(self, p_out, rows, cols, s_, e, phi_w, upper, *a, **k)
    if not upper and len(rows):
        fl = k.get("floor") if "floor" in k else (a[4] if len(a) > 4 else None)
        ph = last_tda.get("v")
        for i, (r, c) in enumerate(zip(rows, cols)):
            if r != slot:
                continue
            flv = None if fl is None else (fl[r] if fl.ndim == 1 else fl[r, c])
            wlog.append(
                f"W{f}c{c}:s{s_[i]:.0f}/e{e[i]:.0f} td{ph[i, c] if ph is not None else -1:.1f} cap{phi_w[r, c]:.1f} fl{flv if flv is None else round(float(flv), 1)}"
            )


ProfileTable._window_tails = wt
row, zeros = np.zeros(table.capacity), np.zeros(table.capacity)
for b in range(HI):
    rec.clear()
    wlog.clear()
    ljlog.clear()
    row[slot] = s.counts[b]
    g = table._season_factor(b + B0)[slot] if b >= LO else 1
    mu = max(table.rate.mean[slot] + table.rate_trend[slot], 0) * g if b >= LO else 0
    dref = table.drop_ref[slot] * g if b >= LO else 0
    v = table.close(b + B0, row, zeros)
    if b < LO:
        continue
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
    al = [(a.kind.value, f"{a.p_value:.1e}") for a in v.alarms] if hasattr(v, "alarms") else ""
    wf = s.rates[b] / max(b0.rates[b], 1e-9)
    print(
        f"{b} h{(b % 288) / 12:4.1f} c={s.counts[b]} rate={s.rates[b]:.1f} walk={wf:.2f} mu={mu:.1f} ref={dref:.1f} unus={table.unusual_len[slot]} lag={np.round(table.win.lag[slot], 3).tolist()} | {' '.join(ljlog)} | {' '.join(wlog)} | {' '.join(parts)} | {al}"
    )
