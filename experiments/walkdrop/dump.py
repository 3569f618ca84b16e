"""walkdrop probe: per series, every detection (row, kind, in window?, exp, obs, explanation)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import count_series_variants as variants

import via_otlp.simulate.countseries as cs

VARIANT, SEEDS, OUT = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], sys.argv[3]
if VARIANT != "base":
    variants.install(VARIANT)
import os

from via_otlp.config import load_config
from via_otlp.simulate.run import replay

config = load_config(os.environ.get("WD_CONF", cs.CONFIG))
out = []
allsc = []
for seed in SEEDS:
    styles = [st for st, k in zip(cs.STYLES, cs.SERIES_PER_SEED) for _ in range(k)]
    series = [cs.make_series(seed, i, st) for i, st in enumerate(styles)]
    traffic = cs.series_traffic(series, seed)
    sc = traffic.scenario
    end_ns = sc.start_ns + sc.buckets * sc.bucket_ns
    events, _, done = replay(traffic.requests(), config, end_ns, traffic.total_records, None)
    rows = cs.alarm_rows(events, sc.start_ns, config.detect.bucket_ns)
    opens = {}
    for e in events:
        if e.state.value != "open":
            continue
        row = max(0, -(-(e.time_ns - sc.start_ns) // config.detect.bucket_ns) - 1)
        opens.setdefault(e.source.key, []).append(
            dict(
                row=int(row),
                kind=e.kind.value,
                exp=float(e.expected),
                obs=float(e.observed),
                score=float(e.score),
                expl=e.explanation,
            )
        )
    for s, src in zip(series, sc.sources):
        r = rows.get(src.key, [])
        score = cs.score_series(s, r)
        allsc.append(score)
        dets = []
        for d in opens.get(src.key, []):
            if d["row"] >= len(s.counts) or d["row"] < s.probation:
                continue
            wi = next((i for i, (a, b) in enumerate(s.windows) if a <= d["row"] <= b), None)
            d["win"] = wi
            d["hour"] = round((d["row"] % 288) / 12, 1)
            d["count"] = int(s.counts[d["row"]])
            dets.append(d)
        out.append(
            dict(
                seed=seed,
                name=s.name,
                anomalies=[list(a) for a in s.anomalies],
                windows=[list(w) for w in s.windows],
                hit=score.window_hit,
                false_rows=score.false_rows,
                raw=score.raw,
                dets=dets,
            )
        )
print(VARIANT, cs.normalised(allsc), sum(x.hit for x in allsc), sum(x.false_rows for x in allsc))
json.dump(out, open(OUT, "w"), indent=0)
