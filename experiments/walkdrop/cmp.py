import json
import sys

a = {(x["seed"], x["name"]): x for x in json.load(open(sys.argv[1]))}
b = {(x["seed"], x["name"]): x for x in json.load(open(sys.argv[2]))}


def false(x):
    return [
        (
            d["row"],
            d["kind"],
            d["hour"],
            d["count"],
            round(d["exp"], 1),
            round(d["obs"], 1),
            d["expl"][:150],
        )
        for d in x["dets"]
        if d["win"] is None
    ]


def firsthit(x, wi):
    ds = [d for d in x["dets"] if d["win"] == wi]
    return ds[0] if ds else None


for k in a:
    xa, xb = a[k], b[k]
    for wi, (ha, hb) in enumerate(zip(xa["hit"], xb["hit"])):
        if ha != hb:
            an = xa["anomalies"][wi]
            d = firsthit(xa if ha else xb, wi)
            print(
                f"WINDOW {'LOST' if ha else 'GAINED'} {k} {an} win {xa['windows'][wi]} first det in the other: {d['row'], d['kind'], round(d['exp'], 1), d['obs'], d['expl'][:120] if d else None}"
            )
    fa, fb = false(xa), false(xb)
    ra = {f[0] for f in fa}
    rb = {f[0] for f in fb}
    for f in fb:
        if f[0] not in ra:
            print("  +FALSE", k, f)
    for f in fa:
        if f[0] not in rb:
            print("  -FALSE", k, f)
