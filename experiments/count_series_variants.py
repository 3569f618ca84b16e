"""The count-series evaluation on series shapes it was never tuned on (#10; lead, stop 41).

Patches `via_otlp.simulate.countseries`'s rate wander and count noise with paired draws (each
variant's extra noise comes from its own generator, so the series, their anomalies and labels
stay those of the default run) and scores the shipped 5-minute config:

    cd /tmp && PYTHONPATH=<tree> python <tree>/experiments/count_series_variants.py walk 1,2,3,4,5

Variants: `base` (none), `fast` (× a 5-minute gamma wander at the series' hour shape), `walk`
(× exp of an Ornstein-Uhlenbeck log-rate walk, sd 0.25, correlation 6 h), `trend` (× 1 → 1.6
over the series), `heavy` (`fast` and the counts' dispersion doubled). Per-series lines follow the
table: mean, lag-1 difference variance / mean, share of empty rows, windows hit, false rows.
"""

from __future__ import annotations

import sys

import numpy as np

import via_otlp.simulate.countseries as cs

VARIANTS = ("base", "fast", "walk", "trend", "heavy")
_WANDER, _NOISY = cs._wander, cs._noisy


def install(variant: str) -> None:
    """Patch the generator for `variant` (see the module docstring)."""
    if variant not in VARIANTS:
        raise SystemExit(f"variant must be one of {VARIANTS}, got {variant!r}")

    def wander(rng0: np.random.Generator, n: int, shape: float, per: int) -> np.ndarray:
        x = _WANDER(rng0, n, shape, per)
        rng = np.random.default_rng([n, int(shape * 1e6), 99])  # own draws: series stay paired
        if variant in ("fast", "heavy"):
            x = x * rng.gamma(shape, 1.0 / shape, n)
        if variant == "trend":
            x = x * np.linspace(1.0, 1.6, n)
        if variant == "walk":
            a, sd = np.exp(-1 / 72), 0.25  # 72 rows = 6 h
            e = rng.normal(0.0, sd * np.sqrt(1 - a * a), n)
            w = np.zeros(n)
            for i in range(1, n):
                w[i] = a * w[i - 1] + e[i]
            x = x * np.exp(w - 0.5 * sd * sd)
        return x

    def noisy(rng: np.random.Generator, rates: np.ndarray, disp: float) -> np.ndarray:
        return _NOISY(rng, rates, disp * 2.0 if variant == "heavy" else disp)

    cs._wander, cs._noisy = wander, noisy


def main() -> None:
    variant, seeds = sys.argv[1], [int(s) for s in sys.argv[2].split(",")]
    install(variant)
    rep = cs.run_count_series(seeds)
    print(variant, rep.table())
    for seed, scores in rep.by_seed.items():
        for s, sc in zip(rep.by_seed_series[seed], scores, strict=True):
            m = float(np.mean(s.counts))
            dv = float(np.var(np.diff(s.counts)) / 2) / max(m, 1e-9)
            print(
                f"{s.name:22s} mean {m:6.1f} dvar/mean {dv:5.2f} empty {np.mean(s.counts == 0):.3f}"
                f" hit {sc.window_hit} kinds {[k for _, k in s.anomalies]} false {sc.false_rows}"
                f" {sc.false_kinds}"
            )


if __name__ == "__main__":
    main()
