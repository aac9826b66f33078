r"""Empirical sample complexity: success curves, m̂(ρ) with bootstrap intervals, log-log slope fits.

The path from trials to a figure next to a bound of :mod:`bounds`:

1. run K independent trials of an algorithm at each query budget m_b and record whether it succeeded
   (e.g. the output is (ε, δ)-sharpened): ``successes[b, k]``;
2. :func:`success_curve` gives the success rate per budget with a Wilson or Clopper–Pearson interval;
3. :func:`empirical_sample_complexity` reads off m̂(ρ) = the smallest budget whose success rate is ≥ 1 − ρ (the
   empirical analogue of "with probability ≥ 1 − ρ, m queries suffice"), with a bootstrap interval over trials;
4. :func:`fit_loglog_slope` fits log m̂ = a + b log x against a sweep variable x (C_cov, log|Π|, 1/ε, 1/δ,
   1/γ_margin, d) and compares b with the exponent predicted by ``bounds.<result>.exponent``.

Everything is NumPy/SciPy: the inputs are small arrays of results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats

__all__ = [
    "SuccessCurve",
    "SampleComplexity",
    "SlopeFit",
    "proportion_interval",
    "bootstrap_means",
    "percentile_interval",
    "tv_concentration_bound",
    "success_curve",
    "empirical_sample_complexity",
    "fit_loglog_slope",
    "budget_at_rate",
    "clopper_pearson",
    "MIN_SLOPE_POINTS",
    "first_budget_at_rate",
    "geometric_lattice",
    "grid_frontier",
    "GridComplexity",
    "grid_sample_complexity",
    "first_stable_index",
    "reference_coverage",
    "binned_counts",
    "fixed_vs_adaptive_budgets",
    "standard_error",
    "estimate_with_interval",
    "mean_z",
    "paired_lift",
    "saturation_point",
    "finite_interval_mask",
    "fit_loglog_slope_finite",
    "first_success",
    "success_from_first",
    "min_budget_clopper_pearson",
]

_METHODS = {"wilson": "wilson", "clopper-pearson": "exact"}


# ---------------------------------------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------------------------------------


def _check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level!r}.")
    return level


def _check_budgets_successes(budgets: Any, successes: Any) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(budgets, dtype=float)
    s = np.asarray(successes)
    if m.ndim != 1 or m.size == 0:
        raise ValueError(f"budgets must be a non-empty 1-D array, got shape {m.shape}.")
    if s.ndim != 2 or s.shape[0] != m.shape[0]:
        raise ValueError(
            f"successes must have shape [B, K] = [{m.shape[0]}, trials] (one row per budget), got {s.shape}."
        )
    if s.shape[1] == 0:
        raise ValueError("successes has no trials (K = 0).")
    if s.dtype != bool:
        if not np.all(np.isin(s, (0, 1))):
            raise ValueError("successes must be boolean (or 0/1).")
        s = s.astype(bool)
    if np.any(~np.isfinite(m)) or np.any(m <= 0):
        raise ValueError("budgets must be finite and > 0 (they live on a log axis).")
    if np.any(np.diff(m) <= 0):
        raise ValueError("budgets must be strictly increasing.")
    return m, s


# ---------------------------------------------------------------------------------------------------------
# success curves
# ---------------------------------------------------------------------------------------------------------


def proportion_interval(k: Any, n: Any, *, method: str = "wilson", level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Confidence interval for a binomial proportion k/n, elementwise: ``(lower, upper)``.

    ``method="wilson"``: the score interval without continuity correction (Wilson 1927);
    ``method="clopper-pearson"``: the exact interval from Beta quantiles, coverage ≥ ``level`` for every p.
    These are the intervals of ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson" | "exact")``,
    evaluated in vectorised form (``binomtest`` takes one (k, n) at a time, which is slow for coverage tables).
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}.")
    level = _check_level(level)
    k_arr, n_arr = np.broadcast_arrays(np.asarray(k), np.asarray(n))
    if np.any(n_arr < 1) or np.any(k_arr < 0) or np.any(k_arr > n_arr) or np.any(k_arr != np.round(k_arr)):
        raise ValueError("need integers 0 <= k <= n and n >= 1.")
    k_f, n_f = k_arr.astype(float), n_arr.astype(float)
    alpha = 1.0 - level
    if method == "clopper-pearson":
        return clopper_pearson(k_f, n_f, level=level)
    z = scipy.stats.norm.ppf(1 - alpha / 2)
    p_hat = k_f / n_f
    denom = 1.0 + z**2 / n_f
    centre = (p_hat + z**2 / (2 * n_f)) / denom
    half = z / denom * np.sqrt(p_hat * (1 - p_hat) / n_f + z**2 / (4 * n_f**2))
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def tv_concentration_bound(p: Any, n: int, delta: float) -> float:
    """Upper bound, holding with probability ≥ 1 − δ, on TV(empirical law of n i.i.d. draws, p).

    E TV ≤ ½ Σ_y √(p_y(1 − p_y)/n) (Jensen per coordinate); TV moves by ≤ 1/n when one draw changes, so
    McDiarmid adds √(ln(1/δ)/(2n)). Used to judge samplers against an exact law.
    """
    p = np.asarray(p, np.float64)
    return 0.5 * float(np.sum(np.sqrt(p * (1 - p) / n))) + float(np.sqrt(np.log(1 / delta) / (2 * n)))


def bootstrap_means(samples: Any, *, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Bootstrap replicates of the mean over trials (axis 0) of ``samples [T, ...]``: ``[n_boot, ...]``.

    Trials are resampled with replacement, whole rows at a time (paired: every column of a trial moves with
    it). The resamples are ``numpy.random.default_rng(seed).integers(0, T, (n_boot, T))``, so calls with the
    same ``seed`` on the same trials resample the same trials, and replicates of several quantities can be
    combined replicate by replicate (a ratio of two means, a difference of two grid points).
    """
    x = np.asarray(samples, float)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"samples must have at least one trial along axis 0, got shape {x.shape}.")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}.")
    idx = np.random.default_rng(seed).integers(0, x.shape[0], size=(int(n_boot), x.shape[0]))
    return x[idx].mean(axis=1)


def percentile_interval(replicates: Any, *, level: float = 0.95, ignore_nan: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap interval over axis 0 of ``replicates [n_boot, ...]``: the (1 ∓ level)/2 percentiles
    (linear interpolation, as ``numpy.percentile``); ``ignore_nan`` skips NaN replicates (all-NaN: NaN)."""
    level = _check_level(level)
    r = np.asarray(replicates, float)
    q = [50.0 * (1.0 - level), 50.0 * (1.0 + level)]
    if ignore_nan:
        if not np.isfinite(r).any():
            return np.full(r.shape[1:], np.nan), np.full(r.shape[1:], np.nan)
        lo, hi = np.nanpercentile(r, q, axis=0)
    else:
        lo, hi = np.percentile(r, q, axis=0)
    return lo, hi

def estimate_with_interval(value: Any, replicates: Any, *, level: float = 0.95, ignore_nan: bool = False) -> dict:
    """``{"value", "lower", "upper"}`` (floats): a point estimate with the :func:`percentile_interval` of its
    bootstrap ``replicates`` (the form a check reads)."""
    lo, hi = percentile_interval(replicates, level=level, ignore_nan=ignore_nan)
    return {"value": float(value), "lower": float(lo), "upper": float(hi)}


def standard_error(samples: Any, *, axis: int = 0) -> np.ndarray:
    """Standard error of the mean along ``axis``: s/√n with the unbiased s (ddof = 1); NaN with fewer than 2
    samples (no spread estimate)."""
    x = np.asarray(samples, float)
    n = x.shape[axis]
    if n < 2:
        return np.full(np.delete(x.shape, axis), np.nan)
    return x.std(axis=axis, ddof=1) / math.sqrt(n)


def mean_z(samples: Any, reference: Any = 0.0, *, axis: int = 0) -> np.ndarray:
    """The CLT z of the mean of ``samples`` along ``axis`` against an exact ``reference``:
    (mean − reference) / max(:func:`standard_error`, 1e-12) (the floor keeps a zero-spread sample finite)."""
    x = np.asarray(samples, float)
    return (x.mean(axis=axis) - reference) / np.maximum(standard_error(x, axis=axis), 1e-12)


def paired_lift(samples: Any, baseline: Any, *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Mean of ``samples [T, G]`` (e.g. accuracy per trial at every N of a grid) and its relative lift over the
    mean of ``baseline [T]`` (the same trials), mean/baseline − 1, with 95% percentile-bootstrap intervals.

    Both are resampled with the same trials (:func:`bootstrap_means` with one ``seed``: paired). Returns the
    arrays ``acc``, ``acc_se`` (:func:`standard_error`), ``acc_lower``/``acc_upper``, ``lift``,
    ``lift_lower``/``lift_upper`` (``[G]``) and the replicates ``acc_boot`` ``[n_boot, G]``.
    """
    A, g = np.asarray(samples, float), np.asarray(baseline, float)
    acc, acc_boot = A.mean(axis=0), bootstrap_means(A, n_boot=n_boot, seed=seed)
    g_boot = bootstrap_means(g, n_boot=n_boot, seed=seed)
    lift, lift_boot = acc / g.mean() - 1.0, acc_boot / g_boot[:, None] - 1.0
    (a_lo, a_hi), (l_lo, l_hi) = percentile_interval(acc_boot), percentile_interval(lift_boot)
    return dict(acc=acc, acc_se=standard_error(A), acc_lower=a_lo, acc_upper=a_hi, lift=lift, lift_lower=l_lo,
                lift_upper=l_hi, acc_boot=acc_boot, lift_boot=lift_boot)


def saturation_point(curves: Any, grid: Any, fraction: float = 0.9) -> np.ndarray:
    """The smallest grid value where a curve (last axis, aligned with ``grid``) first reaches ``fraction`` of its
    value at the last grid point; NaN when that last value is ≤ 0 (no saturation to speak of)."""
    c = np.asarray(curves, float)
    final = c[..., -1]
    return np.where(final > 0, np.asarray(grid, float)[np.argmax(c >= fraction * final[..., None], axis=-1)], np.nan)


def clopper_pearson(k: Any, n: Any, *, level: float = 0.95, side: str = "two-sided") -> tuple[np.ndarray, np.ndarray]:
    """The exact (Clopper–Pearson) interval for a binomial proportion k/n from Beta quantiles, elementwise.

    The one home of this interval in the toolkit (``proportion_interval``, ``ar_metrics.argmax_mass``, the
    deprecated ``decoding.clopper_pearson`` and the bridge planner call it). ``side="two-sided"``: [B(α/2; k, n−k+1), B(1−α/2; k+1, n−k)] with α = 1 − level,
    coverage ≥ ``level`` for every p; ``side="lower"``: the one-sided lower bound B(α; k, n−k+1) (upper = 1);
    ``side="upper"``: the one-sided upper bound (lower = 0). k = 0 gives lower 0 and k = n upper 1.
    """
    if side not in ("two-sided", "lower", "upper"):
        raise ValueError(f"side must be 'two-sided', 'lower' or 'upper', got {side!r}.")
    level = _check_level(level)
    k_f, n_f = (a.astype(float) for a in np.broadcast_arrays(np.asarray(k), np.asarray(n)))
    if np.any(n_f < 1) or np.any(k_f < 0) or np.any(k_f > n_f):
        raise ValueError("need 0 <= k <= n and n >= 1.")
    alpha = 1.0 - level
    a_lo = alpha / 2 if side == "two-sided" else alpha
    with np.errstate(invalid="ignore"):
        lower = np.where(k_f == 0, 0.0, scipy.stats.beta.ppf(a_lo, k_f, n_f - k_f + 1))
        upper = np.where(k_f == n_f, 1.0, scipy.stats.beta.ppf(1 - a_lo, k_f + 1, n_f - k_f))
    if side == "lower":
        upper = np.ones_like(upper)
    elif side == "upper":
        lower = np.zeros_like(lower)
    return lower, upper


@dataclass(frozen=True)
class SuccessCurve:
    """Success rate per budget with a ``level`` interval (``method`` = wilson | clopper-pearson)."""

    budgets: np.ndarray
    rate: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    trials: np.ndarray
    successes: np.ndarray
    method: str
    level: float


def success_curve(budgets: Any, successes: Any, *, method: str = "wilson", level: float = 0.95) -> SuccessCurve:
    """Success probability vs query budget from ``successes[B, K]`` (trial k at budget b succeeded).

    ``budgets`` must be strictly increasing and positive.
    """
    m, s = _check_budgets_successes(budgets, successes)
    k = s.sum(axis=1)
    trials = np.full(m.shape, s.shape[1])
    lower, upper = proportion_interval(k, trials, method=method, level=level)
    return SuccessCurve(
        budgets=m, rate=k / trials, lower=lower, upper=upper, trials=trials, successes=k, method=method,
        level=float(level),
    )


# ---------------------------------------------------------------------------------------------------------
# empirical sample complexity m̂(ρ)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleComplexity:
    """m̂(ρ): the smallest budget whose success rate is ≥ 1 − ρ, with a bootstrap percentile interval.

    ``reached`` is False when no budget reaches 1 − ρ (then ``estimate = inf``). ``below_grid`` is True when the
    smallest budget already succeeds (m̂ is then only an upper estimate). ``upper`` is ``inf`` when more than
    (1 − level)/2 of the bootstrap replicates never reach 1 − ρ. ``reached_fraction`` is the fraction of
    replicates that reach it.
    """

    estimate: float
    lower: float
    upper: float
    level: float
    rho: float
    reached: bool
    below_grid: bool
    reached_fraction: float
    n_boot: int


def _threshold_budget(m: np.ndarray, rates: np.ndarray, target: float, interpolate: str, rule: str) -> np.ndarray:
    """m̂ for each row of ``rates`` ([R, B]); inf where the target is never reached. ``m`` is the budget grid
    ``[B]`` shared by every row, or ``[R, B]`` (per-row budgets, e.g. realised mean queries of a bootstrap)."""
    mm = np.broadcast_to(np.asarray(m, float), rates.shape)
    B = rates.shape[1]
    ok = rates >= target
    if rule == "first":
        hit = ok.any(axis=1)
        i = np.argmax(ok, axis=1)  # first budget at the target
    else:  # "stable": one past the last budget below the target
        below = ~ok
        any_below = below.any(axis=1)
        last_below = B - 1 - np.argmax(below[:, ::-1], axis=1)
        i = np.where(any_below, last_below + 1, 0)
        hit = i < B
        i = np.minimum(i, B - 1)
    rows = np.arange(rates.shape[0])
    est = mm[rows, i]
    if interpolate == "log":
        j = np.maximum(i - 1, 0)
        r_lo, r_hi = rates[rows, j], rates[rows, i]
        frac = np.where(r_hi > r_lo, (target - r_lo) / np.where(r_hi > r_lo, r_hi - r_lo, 1.0), 1.0)
        frac = np.clip(frac, 0.0, 1.0)
        interp = np.exp(np.log(mm[rows, j]) + frac * (np.log(mm[rows, i]) - np.log(mm[rows, j])))
        est = np.where(i > 0, interp, est)
    return np.where(hit, est, np.inf)


def first_budget_at_rate(budgets: Any, rates: Any, rho: float) -> np.ndarray:
    """Row-wise :func:`budget_at_rate` for per-row budgets ``[R, B]`` and rates ``[R, B]`` (e.g. bootstrap
    replicates of realised mean queries and success rates): the first budget with rate ≥ 1 − ρ, log-interpolated
    from the previous grid point; inf where never reached."""
    r = np.asarray(rates, float)
    return _threshold_budget(np.asarray(budgets, float), r, 1.0 - float(rho), "log", "first")


def budget_at_rate(budgets: Any, rates: Any, rho: float, *, interpolate: str = "log") -> float:
    """The functional of :func:`empirical_sample_complexity` applied to known success probabilities ``rates[B]``
    (e.g. exact ones from :mod:`sharpsim.finite_size`): the first budget with rate ≥ 1 − ρ, log-interpolated."""
    m = np.asarray(budgets, float)
    r = np.asarray(rates, float)
    if m.ndim != 1 or r.shape != m.shape:
        raise ValueError(f"budgets and rates must be 1-D of the same length, got {m.shape} and {r.shape}.")
    return float(_threshold_budget(m, r[None, :], 1.0 - float(rho), interpolate, "first")[0])


def empirical_sample_complexity(
    budgets: Any,
    successes: Any,
    rho: float,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    interpolate: str = "log",
    rule: str = "first",
    paired: bool = False,
) -> SampleComplexity:
    """m̂(ρ) = the smallest budget m with empirical success ≥ 1 − ρ, with a bootstrap interval.

    Parameters
    ----------
    budgets, successes:
        Strictly increasing budgets ``[B]`` and outcomes ``[B, K]``.
    rho:
        Allowed failure probability, in (0, 1).
    interpolate:
        ``"log"``: between the last grid point below the target and the first at it, interpolate the rate
        linearly in log m (so m̂ is not tied to the grid); ``"none"``: the grid point itself.
    rule:
        ``"first"``: the first budget at the target (the literal definition); ``"stable"``: one past the last
        budget below the target (robust to a noisy early crossing).
    paired:
        Resample trial *columns* jointly across budgets (trials share randomness across budgets, e.g. prefix
        masks of one large sample); otherwise trials are resampled independently within each budget.
    n_boot, seed, level:
        Percentile bootstrap with ``n_boot`` replicates from ``numpy.random.default_rng(seed)``.
    """
    m, s = _check_budgets_successes(budgets, successes)
    rho = float(rho)
    if not 0.0 < rho < 1.0:
        raise ValueError(f"rho must lie in the open interval (0, 1), got {rho!r}.")
    level = _check_level(level)
    if interpolate not in ("log", "none"):
        raise ValueError(f"interpolate must be 'log' or 'none', got {interpolate!r}.")
    if rule not in ("first", "stable"):
        raise ValueError(f"rule must be 'first' or 'stable', got {rule!r}.")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}.")
    n_boot = int(n_boot)
    target = 1.0 - rho
    K = s.shape[1]
    rates = s.mean(axis=1)
    est = float(_threshold_budget(m, rates[None, :], target, interpolate, rule)[0])

    rng = np.random.default_rng(seed)
    if paired:
        idx = rng.integers(0, K, size=(n_boot, K))
        boot_rates = s[:, idx].mean(axis=2).T  # [n_boot, B]
    else:
        # resampling K trials with replacement within a budget: the count is Binomial(K, rate) exactly
        boot_rates = rng.binomial(K, rates, size=(n_boot, m.size)) / K
    boot = _threshold_budget(m, boot_rates, target, interpolate, rule)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha], method="inverted_cdf")
    return SampleComplexity(
        estimate=est, lower=float(lo), upper=float(hi), level=level, rho=rho, reached=bool(np.isfinite(est)),
        below_grid=bool(rates[0] >= target), reached_fraction=float(np.isfinite(boot).mean()), n_boot=n_boot,
    )


# ---------------------------------------------------------------------------------------------------------
# log-log slope fits
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlopeFit:
    """log y = intercept + slope · log x, with a ``level`` interval [lower, upper] for the slope."""

    slope: float
    intercept: float
    lower: float
    upper: float
    intercept_lower: float
    intercept_upper: float
    level: float
    method: str
    x: np.ndarray
    y: np.ndarray
    #: lack of fit of the straight line: ``lof_method`` "chi2" (weighted residuals Σ (r_i/σ_i)² against χ²_{k−2},
    #: parametric fits with per-point s.d.) or "curvature-F" (F test of an added quadratic term in log x, ≥ 4
    #: points, OLS/bootstrap fits); ``lof_pvalue`` small = the power law does not describe the points (e.g. a
    #: pre-asymptotic range), so the slope depends on the range fitted.
    lof_stat: float = float("nan")
    lof_dof: float = float("nan")
    lof_pvalue: float = float("nan")
    lof_method: str = "none"
    #: fewer than :data:`MIN_SLOPE_POINTS` points: the interval rests on too few points to be trusted
    #: (``runner.check_slope`` then says "inconclusive").
    few_points: bool = False

    def predict(self, x: Any) -> np.ndarray:
        """exp(intercept) · x^slope."""
        return np.exp(self.intercept) * np.asarray(x, dtype=float) ** self.slope

    def contains(self, slope: float) -> bool:
        """Whether ``slope`` (e.g. a predicted exponent) lies in the interval."""
        return bool(self.lower <= float(slope) <= self.upper)

    @classmethod
    def from_dict(cls, d: dict) -> "SlopeFit":
        """Rebuild a fit saved in a summary (needs slope, intercept, lower, upper; the rest is optional),
        so figures can be drawn from result files alone."""
        nan = float("nan")
        return cls(
            slope=float(d["slope"]), intercept=float(d["intercept"]), lower=float(d["lower"]),
            upper=float(d["upper"]), intercept_lower=float(d.get("intercept_lower", nan)),
            intercept_upper=float(d.get("intercept_upper", nan)), level=float(d.get("level", nan)),
            method=str(d.get("method", "saved")), x=np.asarray(d.get("x", []), float), y=np.asarray(d.get("y", []), float),
            lof_stat=float(d.get("lof_stat", nan)), lof_dof=float(d.get("lof_dof", nan)),
            lof_pvalue=float(d.get("lof_pvalue", nan)), lof_method=str(d.get("lof_method", "none")),
            few_points=bool(d.get("few_points", False)),
        )

    def as_dict(self) -> dict:
        """The JSON-able fields a summary stores (slope, interval, intercept, lack of fit, point count)."""
        return {"slope": self.slope, "lower": self.lower, "upper": self.upper, "intercept": self.intercept,
                "intercept_lower": self.intercept_lower, "intercept_upper": self.intercept_upper,
                "level": self.level, "method": self.method, "n_points": int(np.size(self.x)),
                "lof_stat": self.lof_stat, "lof_dof": self.lof_dof, "lof_pvalue": self.lof_pvalue,
                "lof_method": self.lof_method, "few_points": self.few_points}


#: slope fits from fewer points are flagged (``SlopeFit.few_points``) and not used for a verdict
MIN_SLOPE_POINTS = 5


def _curvature_f(lx: np.ndarray, ly: np.ndarray) -> tuple[float, float, float]:
    """F test of a quadratic term in log x against the straight line (unweighted): (F, dof2, p)."""
    k = lx.size
    if k < 4 or np.unique(lx).size < 3:
        return float("nan"), float("nan"), float("nan")
    rss1 = float(np.sum((ly - np.polyval(np.polyfit(lx, ly, 1), lx)) ** 2))
    rss2 = float(np.sum((ly - np.polyval(np.polyfit(lx, ly, 2), lx)) ** 2))
    if rss2 <= 0:
        return float("inf"), float(k - 3), 0.0
    F = (rss1 - rss2) / (rss2 / (k - 3))
    return float(F), float(k - 3), float(scipy.stats.f.sf(F, 1, k - 3))


def _positive_finite(v: np.ndarray, name: str) -> None:
    if np.any(~np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"{name} must be finite and > 0 (log axis); got {v!r}.")


def _wls(lx: np.ndarray, ly: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares line(s) along the last axis: (slope, intercept)."""
    sw = w.sum(-1)
    mx = (w * lx).sum(-1) / sw
    my = (w * ly).sum(-1) / sw
    slope = (w * (lx - mx[..., None]) * (ly - my[..., None])).sum(-1) / (w * (lx - mx[..., None]) ** 2).sum(-1)
    return slope, my - slope * mx


def fit_loglog_slope(
    x: Any,
    y: Any,
    *,
    y_lower: Any = None,
    y_upper: Any = None,
    method: str | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> SlopeFit:
    """Fit log y = a + b log x and give a ``level`` interval for the slope b.

    Methods
    -------
    ``"ols"`` (default without intervals): ordinary least squares with the Student-t interval of
        :func:`scipy.stats.linregress` (exact under Gaussian noise in log y; needs ≥ 3 points).
    ``"bootstrap"``: OLS with a case-resampling percentile bootstrap (needs ≥ 3 distinct x).
    ``"parametric"`` (default when ``y_lower``/``y_upper`` are given, e.g. m̂'s bootstrap intervals): weighted
        least squares with per-point log-scale s.d. σ_i = (log y_upper − log y_lower)/(2 z_level), and a
        parametric bootstrap log y_i* = log y_i + σ_i Z.

    Every fit reports a lack-of-fit statistic (``lof_*``: χ² of the weighted residuals for "parametric", an F
    test of curvature otherwise) and flags ``few_points`` below :data:`MIN_SLOPE_POINTS` = 5 points; 3 points
    remain the hard minimum (e.g. for the exact along-sweep slope of a bound's shape).
    """
    lx_raw = np.asarray(x, dtype=float)
    ly_raw = np.asarray(y, dtype=float)
    if lx_raw.ndim != 1 or lx_raw.shape != ly_raw.shape:
        raise ValueError(f"x and y must be 1-D arrays of the same length, got shapes {lx_raw.shape} and {ly_raw.shape}.")
    _positive_finite(lx_raw, "x")
    _positive_finite(ly_raw, "y")
    level = _check_level(level)
    if (y_lower is None) != (y_upper is None):
        raise ValueError("give both y_lower and y_upper, or neither.")
    if method is None:
        method = "ols" if y_lower is None else "parametric"
    if method not in ("ols", "bootstrap", "parametric"):
        raise ValueError(f"method must be 'ols', 'bootstrap' or 'parametric', got {method!r}.")
    if method == "parametric" and y_lower is None:
        raise ValueError("method='parametric' needs y_lower and y_upper.")
    k = lx_raw.size
    if k < 3:
        raise ValueError(f"a slope interval needs at least 3 points, got {k}.")
    if np.unique(lx_raw).size < 2:
        raise ValueError("x must take at least 2 distinct values.")
    lx, ly = np.log(lx_raw), np.log(ly_raw)
    alpha = (1.0 - level) / 2.0
    rng = np.random.default_rng(seed)

    if method == "ols":
        res = scipy.stats.linregress(lx, ly)
        t = scipy.stats.t.ppf(1.0 - alpha, df=k - 2)
        return SlopeFit(
            slope=float(res.slope), intercept=float(res.intercept),
            lower=float(res.slope - t * res.stderr), upper=float(res.slope + t * res.stderr),
            intercept_lower=float(res.intercept - t * res.intercept_stderr),
            intercept_upper=float(res.intercept + t * res.intercept_stderr),
            level=level, method=method, x=lx_raw, y=ly_raw,
            **_lof_curvature(lx, ly),
        )

    if method == "bootstrap":
        slope, intercept = _wls(lx, ly, np.ones(k))
        idx = rng.integers(0, k, size=(int(n_boot), k))
        bx, by = lx[idx], ly[idx]
        degenerate = np.ptp(bx, axis=1) == 0
        while np.any(degenerate):  # redraw resamples with a single distinct x (slope undefined)
            idx[degenerate] = rng.integers(0, k, size=(int(degenerate.sum()), k))
            bx, by = lx[idx], ly[idx]
            degenerate = np.ptp(bx, axis=1) == 0
        bs, bi = _wls(bx, by, np.ones_like(bx))
    else:
        lo_raw, hi_raw = np.asarray(y_lower, dtype=float), np.asarray(y_upper, dtype=float)
        if lo_raw.shape != lx_raw.shape or hi_raw.shape != lx_raw.shape:
            raise ValueError("y_lower and y_upper must have the same shape as y.")
        _positive_finite(lo_raw, "y_lower")
        _positive_finite(hi_raw, "y_upper")
        if np.any(lo_raw > ly_raw) or np.any(hi_raw < ly_raw):
            raise ValueError("need y_lower <= y <= y_upper.")
        z = scipy.stats.norm.ppf(1.0 - alpha)
        sigma = (np.log(hi_raw) - np.log(lo_raw)) / (2.0 * z)
        floor = max(1e-12, 1e-3 * float(sigma.max())) if sigma.max() > 0 else 1e-12
        sigma = np.maximum(sigma, floor)  # a zero-width interval would get infinite weight
        w = 1.0 / sigma**2
        slope, intercept = _wls(lx, ly, w)
        by = ly + sigma * rng.standard_normal((int(n_boot), k))
        bs, bi = _wls(np.broadcast_to(lx, by.shape), by, np.broadcast_to(w, by.shape))
    s_lo, s_hi = np.quantile(bs, [alpha, 1.0 - alpha])
    i_lo, i_hi = np.quantile(bi, [alpha, 1.0 - alpha])
    if method == "parametric":
        chi2 = float(np.sum(w * (ly - (intercept + slope * lx)) ** 2))
        lof = {"lof_stat": chi2, "lof_dof": float(k - 2), "lof_pvalue": float(scipy.stats.chi2.sf(chi2, k - 2)),
               "lof_method": "chi2", "few_points": k < MIN_SLOPE_POINTS}
    else:
        lof = _lof_curvature(lx, ly)
    return SlopeFit(
        slope=float(slope), intercept=float(intercept), lower=float(s_lo), upper=float(s_hi),
        intercept_lower=float(i_lo), intercept_upper=float(i_hi), level=level, method=method, x=lx_raw, y=ly_raw,
        **lof,
    )


def _lof_curvature(lx, ly) -> dict:
    F, dof, p = _curvature_f(lx, ly)
    return {"lof_stat": F, "lof_dof": dof, "lof_pvalue": p, "lof_method": "curvature-F" if np.isfinite(F) else "none",
            "few_points": lx.size < MIN_SLOPE_POINTS}


def finite_interval_mask(y: Any, lower: Any, upper: Any) -> np.ndarray:
    """The points a log-log slope can use: finite estimate and a finite interval with a positive lower end."""
    y, lo, hi = (np.asarray(v, float) for v in (y, lower, upper))
    return np.isfinite(y) & np.isfinite(lo) & np.isfinite(hi) & (lo > 0)


def fit_loglog_slope_finite(x: Any, y: Any, lower: Any, upper: Any, *, min_points: int = 3,
                            **kwargs: Any) -> tuple[SlopeFit | None, np.ndarray]:
    """:func:`fit_loglog_slope` (with intervals) over the points of :func:`finite_interval_mask`, each interval
    widened to contain its estimate (a percentile interval need not). Returns ``(fit, used)``: ``fit`` is None
    when fewer than ``min_points`` points are usable; ``used`` is the boolean mask of the points fitted."""
    x, y, lo, hi = (np.asarray(v, float) for v in (x, y, lower, upper))
    used = finite_interval_mask(y, lo, hi)
    if used.sum() < min_points:
        return None, used
    return fit_loglog_slope(x[used], y[used], y_lower=np.minimum(lo[used], y[used]),
                            y_upper=np.maximum(hi[used], y[used]), **kwargs), used


# ---------------------------------------------------------------------------------------------------------
# (n, N) grids: the sample complexity of a two-parameter algorithm (SFT-sharpening: m = n·N)
# ---------------------------------------------------------------------------------------------------------


def geometric_lattice(lo: float, hi: float, per_octave: int) -> list[int]:
    """Distinct integers round(2^{k/per_octave}) in [lo, hi]: an absolute geometric lattice (the same for every
    setting, so the grid's discreteness cannot line up with a predicted scaling)."""
    k0 = math.floor(per_octave * math.log2(max(lo, 1.0)))
    k1 = math.ceil(per_octave * math.log2(max(hi, 1.0)))
    vals = sorted({int(round(2.0 ** (k / per_octave))) for k in range(k0, k1 + 1)})
    return [v for v in vals if v >= 1]


def grid_frontier(n_grid: Any, N_grid: Any, rates: Any, target: float) -> tuple[np.ndarray, np.ndarray]:
    """rates ``[..., G, H]`` -> (m̂ ``[...]``, n at the minimum ``[...]``): per n, the smallest N reaching the
    target (rate interpolated linearly in log N between the bracketing grid points, the functional of
    :func:`budget_at_rate`), then the minimum of n·N̂(n) over n."""
    n = np.asarray(n_grid, float)
    rates = np.asarray(rates, float)
    N_hat = _threshold_budget(np.asarray(N_grid, float), rates.reshape(-1, rates.shape[-1]), target, "log", "first")
    m = n * N_hat.reshape(rates.shape[:-1])
    g = np.argmin(m, axis=-1)
    return np.min(m, axis=-1), n[g]


@dataclass(frozen=True)
class GridComplexity:
    """m̂(ρ) on an (n, N) grid with its percentile bootstrap interval; ``n_at`` the n of the minimum."""

    estimate: float
    lower: float
    upper: float
    n_at: float
    reached_fraction: float
    below_grid: bool


def grid_sample_complexity(n_grid: Any, N_grid: Any, success: Any, rho: float, *, n_boot: int = 1000,
                           seed: int = 0, level: float = 0.95) -> GridComplexity:
    """m̂(ρ) = min over n of n·N̂(n), N̂(n) the smallest N with success rate ≥ 1 − ρ at (n, N) (log-interpolated).

    ``success`` is ``[G, H, K]`` (grid points × trials). Paired percentile bootstrap over trial columns (every
    grid point of a trial comes from one draw). ``below_grid``: the best n already succeeds at the smallest N.
    """
    s = np.asarray(success, bool)
    K = s.shape[-1]
    target = 1.0 - rho
    rates = s.mean(-1)
    est, n_at = grid_frontier(n_grid, N_grid, rates, target)
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for b0 in range(0, n_boot, 100):  # chunks keep the [G, H, chunk, K] gather small
        idx = rng.integers(0, K, size=(min(100, n_boot - b0), K))
        br = np.moveaxis(s[:, :, idx].mean(-1), -1, 0)  # [B, G, H]
        boot[b0:b0 + idx.shape[0]] = grid_frontier(n_grid, N_grid, br, target)[0]
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha], method="inverted_cdf")
    g = int(np.argmin(np.abs(np.asarray(n_grid, float) - n_at)))
    return GridComplexity(float(est), float(lo), float(hi), float(n_at), float(np.isfinite(boot).mean()),
                          bool(np.isfinite(est) and rates[g, 0] >= target))


def first_stable_index(success: Any) -> tuple[Any, Any]:
    """``success [G, H]`` (a run's outcome on an (n, N) grid, monotone in N expected) -> (per row the index of the
    first h from which every h' ≥ h succeeds (H if none) ``[G]``, the number of grid points that succeed before a
    later failure: isolated successes, counted as failures). JAX: runs inside the trial programs."""
    import jax.numpy as jnp

    H = success.shape[-1]
    fail = ~success
    any_fail = jnp.any(fail, axis=-1)
    last_fail = H - 1 - jnp.argmax(fail[:, ::-1], axis=-1)
    first = jnp.where(any_fail, last_fail + 1, 0)
    h = jnp.arange(H)
    violations = jnp.sum(success & (h[None, :] < jnp.where(any_fail, last_fail, -1)[:, None]))
    return first.astype(jnp.int32), violations.astype(jnp.int32)


def first_success(success: Any, grid: Any) -> np.ndarray:
    """``success [G, H, K]`` (outcomes on an (n, N) grid per trial, monotone in N) -> ``[G, K]``: per n and trial
    the smallest ``grid`` N (axis 1) that succeeds, ``inf`` if none; the inverse of :func:`success_from_first`."""
    s = np.asarray(success, bool)
    return np.where(s.any(1), np.asarray(grid, float)[np.argmax(s, axis=1)], math.inf)


def success_from_first(first: Any, grid: Any) -> np.ndarray:
    """``first [G, K]`` (the smallest successful N per n and trial, ``inf`` if none) -> ``success [G, H, K]``:
    success at every grid N ≥ first (monotone in N by construction)."""
    return np.asarray(grid, float)[None, :, None] >= np.asarray(first, float)[:, None, :]


def reference_coverage(lower: Any, upper: Any, reference: Any, *, level: float = 0.95) -> dict:
    """How many intervals ``[lower, upper]`` (nominal ``level``) contain an exact ``reference`` (non-finite
    references skipped): ``covered``, ``total``, ``p_tail`` = P[Binomial(total, 1 − level) ≥ misses] (small: the
    misses are improbable for such intervals) and the Clopper–Pearson interval ``cp`` on the coverage."""
    lo, hi, ref = (np.asarray(v, float) for v in (lower, upper, reference))
    use = np.isfinite(ref)
    total = int(use.sum())
    covered = int(np.sum((lo[use] <= ref[use]) & (ref[use] <= hi[use])))
    miss = total - covered
    p_tail = float(scipy.stats.binom.sf(miss - 1, total, 1.0 - level)) if total else math.nan
    cp = clopper_pearson(covered, max(total, 1))
    return {"covered": covered, "total": total, "p_tail": p_tail, "cp": (float(cp[0]), float(cp[1]))}


def binned_counts(x: Any, success: Any, edges: Any) -> tuple[np.ndarray, np.ndarray]:
    """Trials and successes per bin of ``x`` (bins (a, b] between consecutive ``edges``; values at or below the
    first edge go to the first bin): ``(n [B], k [B])`` for a success-rate curve against a covariate."""
    edges = np.asarray(edges, float)
    which = np.clip(np.digitize(np.asarray(x, float), edges, right=True) - 1, 0, len(edges) - 2)
    n = np.bincount(which, minlength=len(edges) - 1)
    k = np.bincount(which, weights=np.asarray(success, float), minlength=len(edges) - 1)
    return n, k


def fixed_vs_adaptive_budgets(n_grid: Any, N_grid: Any, fixed_success: Any, adaptive_success: Any,
                              adaptive_queries: Any, rho: float, *, n_boot: int = 400, seed: int = 0) -> dict:
    """m̂(ρ) of a fixed (n, N)-grid algorithm and Ê[m](ρ) of an adaptive one measured on the SAME trials, with
    their ratio and paired 95% percentile-bootstrap intervals (each replicate resamples whole trials, so both
    algorithms' outcomes of a trial stay together).

    ``fixed_success [G, H, K]`` on the grid (:func:`grid_frontier`); ``adaptive_success [G', K]`` and the realised
    ``adaptive_queries [G', K]`` on the adaptive run's n grid: Ê[m] is the first mean-query budget (made
    non-decreasing) whose success rate is ≥ 1 − ρ, log-interpolated (:func:`first_budget_at_rate`). Returns
    ``{"fixed": (estimate, lower, upper), "adaptive": (…), "ratio": (…)}``.
    """
    sf, sa, q = np.asarray(fixed_success, bool), np.asarray(adaptive_success, bool), np.asarray(adaptive_queries, float)
    target = 1.0 - float(rho)

    def estimates(rate_f, rate_a, mean_q):
        return (grid_frontier(n_grid, N_grid, rate_f, target)[0],
                first_budget_at_rate(np.maximum.accumulate(mean_q, axis=-1), rate_a, rho))

    m_f, m_a = (float(v[0]) for v in estimates(sf.mean(-1)[None], sa.mean(-1)[None], q.mean(-1)[None]))
    rng = np.random.default_rng(seed)
    K = sa.shape[-1]
    w = np.stack([np.bincount(i, minlength=K) for i in rng.integers(0, K, size=(n_boot, K))]).T / K  # [K, B]
    G, H = sf.shape[:2]
    boot = np.stack(estimates((sf.reshape(G * H, K).astype(float) @ w).T.reshape(n_boot, G, H),
                              (sa.astype(float) @ w).T, (q @ w).T), axis=1)
    with np.errstate(invalid="ignore"):
        ratio_b = boot[:, 0] / boot[:, 1]

    def band(a):
        return tuple(float(v) for v in np.quantile(a, [0.025, 0.975], method="inverted_cdf"))

    return {"fixed": (m_f, *band(boot[:, 0])), "adaptive": (m_a, *band(boot[:, 1])),
            "ratio": (m_f / m_a if m_a > 0 else math.nan, *band(ratio_b))}


def min_budget_clopper_pearson(budgets: Any, successes: Any, trials: Any, rho: float, *, level: float = 0.95
                               ) -> tuple[float, float, float]:
    """m̂(ρ) on a grid of designs and its interval from the Clopper–Pearson crossing of 1 − ρ.

    Design i costs ``budgets[i]`` queries and succeeded in ``successes[i]`` of ``trials[i]`` trials. At each budget
    the best design counts (most successes, then most trials). Returns (m̂, lower, upper): the smallest budget whose
    success rate reaches 1 − ρ, and the smallest whose Clopper–Pearson ``level`` interval's upper / lower end
    reaches it (``inf`` where none does; all ``inf`` for an empty grid).
    """
    best: dict = {}
    for q, k, T in zip(np.asarray(budgets).tolist(), np.asarray(successes).tolist(), np.asarray(trials).tolist()):
        best[q] = max(best.get(q, (-1, 0)), (int(k), int(T)))
    if not best:
        return math.inf, math.inf, math.inf
    qs = sorted(best)
    k, T = (np.array(a) for a in zip(*(best[q] for q in qs)))
    lo, hi = clopper_pearson(k, T, level=level)
    first = lambda ok: next((q for q, good in zip(qs, ok) if good), math.inf)  # noqa: E731
    return first(k / T >= 1 - rho), first(np.asarray(hi) >= 1 - rho), first(np.asarray(lo) >= 1 - rho)
