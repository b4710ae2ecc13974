"""The statistics of experiments: tests that stay honest when they are looked at every day.

A fixed-horizon test (a z-test or chi-square test) promises its error rate only when it is
looked at once, at a sample size fixed in advance. Looking after every tick and stopping at
the first "significant" result makes false winners several times more likely than the
stated rate. Two methods here survive continuous monitoring:

- **mSPRT** (mixture sequential probability ratio test; Robbins 1970, Johari et al., "Always
  valid inference", 2017) for two proportions with a normal mixture N(0, τ²) over the
  difference. Its likelihood ratio Λ is a nonnegative martingale under "no difference", so by
  Ville's inequality P(Λ ever reaches 1/α) ≤ α: the p-value min(1, 1/Λ) is *always valid*
  and the interval built from it is a *confidence sequence* (it covers the true difference at
  every look at once, with probability 1 − α). The normal approximation of the difference of
  two proportions is used (plug-in variance), as in the paper; the minimum sample per arm
  keeps it in the region where that approximation holds.
- **Bayesian**: Beta posteriors per arm and the probability that each arm is the best. Its
  guarantee is of another kind: among experiments it decides, the winner is the best arm
  with probability at least the stated threshold, when the prior describes the arms' real
  rates. That calibration holds under optional stopping; it is *not* a bound on the rate of
  false winners between identical arms (use mSPRT for that).

Everything here is a pure function of counts; NumPy and SciPy only do array arithmetic,
special functions and normal quantiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


# -- mSPRT -----------------------------------------------------------------------------------


def mixture_ratio(variance: float, difference: float, tau: float) -> float:
    """Λ of the normal-mixture SPRT for an estimate `difference` with `variance`.

    Λ = sqrt(V / (V + τ²)) · exp(τ² θ̂² / (2 V (V + τ²))); 0 when there is no variance yet
    (every lead converted, or none did), which never rejects.
    """
    if variance <= 0.0:
        return 0.0
    t2 = tau * tau
    exponent = t2 * difference * difference / (2.0 * variance * (variance + t2))
    return math.sqrt(variance / (variance + t2)) * math.exp(min(exponent, 700.0))


def _pooled_variance(n_a: int, x_a: int, n_b: int, x_b: int) -> float:
    pooled = (x_a + x_b) / (n_a + n_b)
    return pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b)


def _adjusted_rate(n: int, x: int) -> float:
    """(x + 1) / (n + 2): keeps a variance estimate away from zero with few conversions."""
    return (x + 1.0) / (n + 2.0)


def confidence_radius(variance: float, tau: float, alpha: float) -> float:
    """Half-width of the normal-mixture confidence sequence: every θ with Λ(θ̂ − θ) < 1/α."""
    if variance <= 0.0:
        return math.inf
    t2 = tau * tau
    return math.sqrt(
        variance * (variance + t2) / t2 * (2.0 * math.log(1.0 / alpha) + math.log((variance + t2) / variance))
    )


@dataclass(frozen=True, slots=True)
class SequentialComparison:
    """Arm B against arm A at one look."""

    difference: float  # rate(B) − rate(A)
    ratio: float  # Λ, the mixture likelihood ratio against "no difference"
    p_value: float  # min(1, 1/Λ): always valid at this look
    interval: Interval  # confidence sequence for the difference at level 1 − alpha


def msprt(n_a: int, x_a: int, n_b: int, x_b: int, *, tau: float, alpha: float) -> SequentialComparison:
    """mSPRT of two proportions: x_a of n_a against x_b of n_b.

    The test uses the pooled variance (the variance under "no difference", which is what
    the guarantee is about); the interval uses each arm's own variance with one success
    and one failure added (Agresti–Caffo), so it neither collapses nor assumes no difference.
    """
    if n_a <= 0 or n_b <= 0:
        return SequentialComparison(0.0, 0.0, 1.0, Interval(-1.0, 1.0))
    difference = x_b / n_b - x_a / n_a
    ratio = mixture_ratio(_pooled_variance(n_a, x_a, n_b, x_b), difference, tau)
    p_a, p_b = _adjusted_rate(n_a, x_a), _adjusted_rate(n_b, x_b)
    variance = p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b
    radius = confidence_radius(variance, tau, alpha)
    interval = Interval(max(-1.0, difference - radius), min(1.0, difference + radius))
    return SequentialComparison(difference, ratio, min(1.0, 1.0 / ratio) if ratio > 0 else 1.0, interval)


def rate_band(n: int, x: int, *, tau: float, alpha: float) -> Interval:
    """An always-valid band for one arm's conversion rate (its normal-mixture confidence sequence)."""
    if n <= 0:
        return Interval(0.0, 1.0)
    rate = _adjusted_rate(n, x)
    radius = confidence_radius(rate * (1 - rate) / n, tau, alpha)
    observed = x / n
    return Interval(max(0.0, observed - radius), min(1.0, observed + radius))


def msprt_power(base: float, lift: float, n_per_arm: int, *, tau: float, alpha: float) -> float:
    """A lower bound on the chance that mSPRT finds a true `lift` over `base` by `n_per_arm`.

    The probability that the boundary is crossed at the last look (normal approximation);
    crossing at any earlier look only adds to it. Used to state the power of a plan.
    """
    other = min(max(base + lift, 0.0), 1.0)
    pooled = (base + other) / 2
    null_variance = 2 * pooled * (1 - pooled) / n_per_arm
    if null_variance <= 0:
        return 0.0
    t2 = tau * tau
    # |θ̂| needed for Λ ≥ 1/α under the pooled variance.
    needed = math.sqrt(
        2
        * null_variance
        * (null_variance + t2)
        / t2
        * (math.log(1 / alpha) + 0.5 * math.log((null_variance + t2) / null_variance))
    )
    spread = math.sqrt(base * (1 - base) / n_per_arm + other * (1 - other) / n_per_arm)
    if spread <= 0:
        return 1.0 if abs(lift) >= needed else 0.0
    return float(special.ndtr((abs(lift) - needed) / spread) + special.ndtr((-needed - abs(lift)) / spread))


# -- fixed horizon (what not to do while peeking) -----------------------------------------------


def z_test_p_value(n_a: int, x_a: int, n_b: int, x_b: int) -> float:
    """Two-sided p-value of the classical two-proportion z-test: valid for ONE look only.

    Kept to show, in tests and benchmarks, what peeking with it does to the error rate.
    """
    if n_a <= 0 or n_b <= 0:
        return 1.0
    variance = _pooled_variance(n_a, x_a, n_b, x_b)
    if variance <= 0:
        return 1.0
    z = (x_b / n_b - x_a / n_a) / math.sqrt(variance)
    return float(2 * special.ndtr(-abs(z)))


# -- Bayesian ------------------------------------------------------------------------------------


def _grid(alphas: np.ndarray, betas: np.ndarray, points: int = 600) -> np.ndarray:
    """Where the posteriors have their mass: from the lowest arm's far left tail to the highest's right."""
    low = float(np.min(special.betaincinv(alphas, betas, 1e-10)))
    high = float(np.max(special.betaincinv(alphas, betas, 1 - 1e-10)))
    return np.linspace(low, high, points)


def probability_best(counts: list[tuple[int, int]], prior: tuple[float, float] = (1.0, 1.0)) -> list[float]:
    """P(arm i has the highest rate) under independent Beta(prior + counts) posteriors.

    `counts` are (assigned, converted) per arm. P(i best) = ∫ f_i(p) Π_{j≠i} F_j(p) dp,
    computed by quadrature on a grid that covers every posterior's mass.
    """
    a = np.array([prior[0] + x for _, x in counts], dtype=float)
    b = np.array([prior[1] + n - x for n, x in counts], dtype=float)
    grid = _grid(a, b)
    inner = np.clip(grid, 1e-300, 1 - 1e-16)
    log_pdf = (
        (a[:, None] - 1) * np.log(inner)[None, :]
        + (b[:, None] - 1) * np.log1p(-inner)[None, :]
        - special.betaln(a, b)[:, None]
    )
    pdf = np.exp(log_pdf)
    cdf = special.betainc(a[:, None], b[:, None], grid[None, :])
    result = []
    for i in range(len(counts)):
        others = np.prod(np.delete(cdf, i, axis=0), axis=0) if len(counts) > 1 else np.ones_like(grid)
        result.append(float(np.trapezoid(pdf[i] * others, grid)))
    total = sum(result)
    return [r / total for r in result] if total > 0 else [1.0 / len(counts)] * len(counts)


def posterior_difference(
    winner: tuple[int, int], other: tuple[int, int], level: float, prior: tuple[float, float] = (1.0, 1.0)
) -> tuple[float, Interval]:
    """Posterior mean of rate(winner) − rate(other) and its central credible interval
    (normal approximation of the two Beta posteriors' difference)."""
    moments = []
    for n, x in (winner, other):
        a, b = prior[0] + x, prior[1] + n - x
        mean = a / (a + b)
        moments.append((mean, a * b / ((a + b) ** 2 * (a + b + 1))))
    mean = moments[0][0] - moments[1][0]
    sd = math.sqrt(moments[0][1] + moments[1][1])
    z = float(special.ndtri(0.5 + level / 2))
    return mean, Interval(max(-1.0, mean - z * sd), min(1.0, mean + z * sd))


def credible_band(n: int, x: int, level: float, prior: tuple[float, float] = (1.0, 1.0)) -> Interval:
    a, b = prior[0] + x, prior[1] + n - x
    tail = (1 - level) / 2
    return Interval(float(special.betaincinv(a, b, tail)), float(special.betaincinv(a, b, 1 - tail)))
