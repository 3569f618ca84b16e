"""For every false opening row in a dump: which tests were under p_alarm there (single-series replay)."""

import collections
import json
import subprocess
import sys
from pathlib import Path

d = json.load(open(sys.argv[2]))
variant = sys.argv[1]
tree = sys.argv[3]
LAB = {
    "752": "bucket",
    "w60": "win-fore",
    "790": "lag",
    "w806": "held",
    "832": "bucket",
    "w847": "win-fore",
    "853": "lag",
    "w884": "held",
}
tally = collections.Counter()
for x in d:
    rows = sorted(
        {r["row"] for r in x["dets"] if r["win"] is None and r["kind"] in ("spike", "drop")}
    )
    if not rows:
        continue
    out = subprocess.run(
        [
            "/work/main/.venv/bin/python",
            str(Path(__file__).with_name("trace.py")),
            variant,
            str(x["seed"]),
            x["name"],
            str(min(rows)),
            str(max(rows) + 1),
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": tree, "PATH": "/usr/bin:/bin"},
    ).stdout.splitlines()
    for line in out:
        r = int(line.split()[0])
        if r not in rows:
            continue
        kinds = [k for k in x["dets"] if k["row"] == r and k["win"] is None]
        parts = line.split(" | ")[-2].split()
        fired = []
        for p in parts:
            lab = p.split(":")[0]
            pv = float(p.split(":")[1].split("(")[0])
            if pv < 3e-3:
                fired.append(("U" if lab[0] == "U" else "D") + LAB.get(lab[1:], lab[1:]))
        if not fired:
            fired = ["silent-run"] if any(k["kind"] == "drop" for k in kinds) else ["?"]
        key = "+".join(sorted(set(fired)))
        tally[key] += 1
        print(x["seed"], x["name"], r, [k["kind"] for k in kinds], key, line.split(" ")[2:5])
print(variant, dict(tally.most_common()))
