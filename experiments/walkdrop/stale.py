import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import via_otlp.simulate.countseries as cs

styles = [st for st, k in zip(cs.STYLES, cs.SERIES_PER_SEED) for _ in range(k)]
base = {}
for seed in range(1, 6):
    for i, st in enumerate(styles):
        s = cs.make_series(seed, i, st)
        base[(seed, s.name)] = s
import count_series_variants as variants

variants.install("walk")
walk = {}
for seed in range(1, 6):
    for i, st in enumerate(styles):
        s = cs.make_series(seed, i, st)
        walk[(seed, s.name)] = s
lam = 1 - 2 ** (-1 / 180)  # 15 h half-life in 5-min rows
stale = {}
for k in base:
    w = walk[k].rates / np.maximum(base[k].rates, 1e-9)
    lw = np.log(w)
    e = np.zeros_like(lw)
    acc = 0.0
    for t in range(len(lw)):
        e[t] = acc
        acc += lam * (lw[t] - acc)
    stale[k] = np.exp(lw - e)
allst = np.concatenate([v[int(len(v) * 0.15) :] for v in stale.values()])
print(
    "all rows: stale quantiles 10/25/50/75/90",
    np.round(np.quantile(allst, [0.1, 0.25, 0.5, 0.75, 0.9]), 2),
)
for tag, fn in (("base", "/tmp/walkdrop/main-base.json"), ("walk", "/tmp/walkdrop/main-walk.json")):
    d = json.load(open(fn))
    for kind in ("spike", "drop", "drift"):
        v = [
            stale[(x["seed"], x["name"])][r["row"]]
            for x in d
            for r in x["dets"]
            if r["win"] is None and r["kind"] == kind
        ]
        print(
            tag,
            kind,
            len(v),
            "stale quantiles",
            np.round(np.quantile(v, [0.1, 0.25, 0.5, 0.75, 0.9]), 2) if v else "",
        )
np.save("/tmp/walkdrop/stale.npy", np.array([0]))
json.dump(
    {f"{k[0]}|{k[1]}": v.round(3).tolist() for k, v in stale.items()},
    open("/tmp/walkdrop/stale.json", "w"),
)
