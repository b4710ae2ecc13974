"""Large seeded simulations of experiments watched after every tick (the suite runs small ones).

    python bench/experiments.py            # 4,000 experiments per row (a few minutes)
    python bench/experiments.py --quick    # 500 per row

Prints, per row: the share of experiments that declared a winner, what the plan promises,
and the binomial 99.7% band of the measured share. Rows:
- A/A: identical arms, looked at daily. mSPRT must stay at or below α; the fixed-horizon
  z-test looked at daily (peeking) shows what the sequential test protects against; the
  Bayesian rule is shown for comparison (it promises calibration, not an A/A error rate).
- Lift: a planted difference; the share of experiments that found it in the right arm,
  against the stated power (a lower bound: crossing at the last look).
- Bayesian calibration: rates drawn from the prior; the share of decisions that picked the
  truly best arm, against the threshold.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta

from nurture.experiments import stats
from nurture.experiments.montecarlo import bayesian_calibration, simulate
from nurture.experiments.plan import Plan

LONG = timedelta(days=100_000)


def band(share: float, runs: int) -> str:
    spread = 3 * (share * (1 - share) / runs) ** 0.5
    return f"[{max(0.0, share - spread):.3f}, {min(1.0, share + spread):.3f}]"


def row(label: str, measured: float, promise: str, runs: int, seconds: float) -> None:
    print(f"{label:<58} {measured:>7.3f}  {promise:<14} {band(measured, runs):<16} {seconds:5.1f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    runs = 500 if parser.parse_args().quick else 4000
    msprt = Plan(method="msprt", alpha=0.05, effect=0.05, min_per_arm=100, max_duration=LONG)
    bayes = Plan(method="bayesian", threshold=0.95, min_per_arm=100, max_duration=LONG)
    print(f"{'row':<58} {'measured':>7}  {'promise':<14} {'99.7% band':<16} time")
    for base in (0.02, 0.1, 0.3):
        for plan, rule, name in ((msprt, "plan", "mSPRT α=0.05"), (msprt, "peeking", "z-test peeking daily")):
            started = time.perf_counter()
            result = simulate(plan, [base, base], experiments=runs, ticks=60, leads_per_tick=25, seed=1, rule=rule)  # type: ignore[arg-type]
            promise = "≤ 0.05" if rule == "plan" else "(none)"
            row(
                f"A/A base {base:.0%}, 60 daily looks: {name}",
                result.any_winner / runs,
                promise,
                runs,
                time.perf_counter() - started,
            )
    started = time.perf_counter()
    result = simulate(msprt, [0.1] * 4, experiments=runs // 2, ticks=60, leads_per_tick=25, seed=2)
    row(
        "A/A/A/A base 10%, 60 daily looks: mSPRT α=0.05",
        result.any_winner / (runs // 2),
        "≤ 0.05",
        runs // 2,
        time.perf_counter() - started,
    )
    started = time.perf_counter()
    result = simulate(bayes, [0.1, 0.1], experiments=runs // 4, ticks=60, leads_per_tick=25, seed=3)
    row(
        "A/A base 10%, 60 daily looks: Bayesian P(best) ≥ 0.95",
        result.any_winner / (runs // 4),
        "(calibration)",
        runs // 4,
        time.perf_counter() - started,
    )
    for base, lift, daily in ((0.1, 0.03, 50), (0.1, 0.05, 25), (0.05, 0.02, 100)):
        started = time.perf_counter()
        stated = stats.msprt_power(base, lift, 60 * daily, tau=msprt.effect, alpha=msprt.alpha)
        result = simulate(msprt, [base, base + lift], experiments=runs, ticks=60, leads_per_tick=daily, seed=4)
        row(
            f"lift {base:.0%}→{base + lift:.0%}, {daily}/arm/day, 60 looks: found in 'b'",
            result.share("b"),
            f"≥ {stated:.3f}",
            runs,
            time.perf_counter() - started,
        )
    started = time.perf_counter()
    calibrated = Plan(method="bayesian", threshold=0.95, prior=(2, 18), min_per_arm=50, max_duration=LONG)
    decided, right = bayesian_calibration(calibrated, experiments=runs // 2, ticks=40, leads_per_tick=20, seed=5)
    row(
        f"Bayesian, rates from the prior: best arm among {decided} decided",
        right / decided,
        "≥ 0.95",
        decided,
        time.perf_counter() - started,
    )


if __name__ == "__main__":
    main()
