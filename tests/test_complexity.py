"""Tests for sharpsim.complexity: proportion intervals, success curves, m̂(ρ) and log-log slope fits.

Fixed seeds throughout; where a test is statistical, the comment gives its false-failure rate under a fresh seed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from sharpsim.complexity import (
    empirical_sample_complexity,
    fit_loglog_slope,
    proportion_interval,
    success_curve,
)

# ---------------------------------------------------------------------------------------------------------
# intervals: textbook formulas written out here (independent of the scipy call inside the module)
# ---------------------------------------------------------------------------------------------------------


def wilson_formula(k, n, level):
    z = scipy.stats.norm.ppf(0.5 + level / 2)
    phat = k / n
    centre = (phat + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(phat * (1 - phat) / n + z**2 / (4 * n**2))
    return centre - half, centre + half


def clopper_pearson_formula(k, n, level):
    a = 1 - level
    lo = 0.0 if k == 0 else scipy.stats.beta.ppf(a / 2, k, n - k + 1)
    hi = 1.0 if k == n else scipy.stats.beta.ppf(1 - a / 2, k + 1, n - k)
    return lo, hi


@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
@pytest.mark.parametrize("n", [1, 7, 40, 250])
def test_intervals_match_formulas(n, level):
    k = np.arange(n + 1)
    lo_w, hi_w = proportion_interval(k, n, method="wilson", level=level)
    lo_c, hi_c = proportion_interval(k, n, method="clopper-pearson", level=level)
    for i in k:
        assert (lo_w[i], hi_w[i]) == pytest.approx(wilson_formula(i, n, level), abs=1e-10)
        assert (lo_c[i], hi_c[i]) == pytest.approx(clopper_pearson_formula(i, n, level), abs=1e-8)
        if i % 7:
            continue  # binomtest is slow; a subset of k suffices
        res = scipy.stats.binomtest(int(i), n)
        w, cp = res.proportion_ci(level, method="wilson"), res.proportion_ci(level, method="exact")
        assert (lo_w[i], hi_w[i]) == pytest.approx((w.low, w.high), abs=1e-10)
        assert (lo_c[i], hi_c[i]) == pytest.approx((cp.low, cp.high), abs=1e-8)


def test_success_curve_matches_binomtest():
    rng = np.random.default_rng(0)
    budgets = np.array([10, 30, 100, 300])
    s = rng.random((4, 57)) < np.array([0.1, 0.4, 0.8, 0.97])[:, None]
    for method, sp in (("wilson", "wilson"), ("clopper-pearson", "exact")):
        curve = success_curve(budgets, s, method=method, level=0.9)
        assert np.array_equal(curve.successes, s.sum(1)) and np.allclose(curve.rate, s.mean(1))
        for b in range(4):
            ci = scipy.stats.binomtest(int(s[b].sum()), 57).proportion_ci(confidence_level=0.9, method=sp)
            assert (curve.lower[b], curve.upper[b]) == pytest.approx((ci.low, ci.high))


def exact_coverage(n, p, method, level):
    """Σ_k Binom(k; n, p) 1[p ∈ CI(k)]: the interval's exact coverage at p."""
    k = np.arange(n + 1)
    lo, hi = proportion_interval(k, n, method=method, level=level)
    return float(scipy.stats.binom.pmf(k, n, p)[(lo <= p) & (p <= hi)].sum())


@pytest.mark.parametrize("n", [20, 60, 150])
@pytest.mark.parametrize("p", [0.05, 0.2, 0.5, 0.8, 0.93])
def test_coverage_near_nominal(n, p):
    """Clopper–Pearson is exact (coverage ≥ level for every p); Wilson oscillates around the level.

    Wilson's exact coverage at 95% stays within [0.92, 0.985] once n·min(p, 1−p) ≥ 1 (Brown, Cai & DasGupta
    2001, Fig. 5) — that band is the tolerance. A Monte-Carlo run of R = 4000 binomial draws agrees with the
    exact coverage within 4 standard errors (false-failure ≈ 6e-5).
    """
    assert exact_coverage(n, p, "clopper-pearson", 0.95) >= 0.95 - 1e-12
    cov = exact_coverage(n, p, "wilson", 0.95)
    assert 0.92 <= cov <= 0.985
    rng = np.random.default_rng(int(1000 * p) + n)
    R = 4000
    k = rng.binomial(n, p, size=R)
    for method in ("wilson", "clopper-pearson"):
        table_lo, table_hi = proportion_interval(np.arange(n + 1), n, method=method)
        mc = np.mean((table_lo[k] <= p) & (p <= table_hi[k]))
        exact = exact_coverage(n, p, method, 0.95)
        assert abs(mc - exact) <= 4 * math.sqrt(exact * (1 - exact) / R) + 1e-12


def test_interval_errors():
    with pytest.raises(ValueError, match="method"):
        proportion_interval(3, 10, method="agresti")
    with pytest.raises(ValueError, match="k <= n"):
        proportion_interval(11, 10)
    with pytest.raises(ValueError, match="level"):
        proportion_interval(3, 10, level=1.5)


# ---------------------------------------------------------------------------------------------------------
# m̂(ρ)
# ---------------------------------------------------------------------------------------------------------


def logistic_successes(rng, budgets, m0, slope, K):
    """Success probability σ(slope·(log m − log m0)) at each budget, K Bernoulli trials each."""
    p = 1 / (1 + np.exp(-slope * (np.log(budgets) - np.log(m0))))
    return rng.random((budgets.size, K)) < p[:, None], p


def test_threshold_recovered_from_logistic_curve():
    """True m(ρ) solves σ(s (log m − log m0)) = 1 − ρ: m = m0 · ((1−ρ)/ρ)^{1/s}.

    Over 40 seeds, the bootstrap percentile interval should cover it about 95% of the time; with a fine grid
    (interpolation error ≪ sampling error) we require ≥ the 1e-4 quantile of Binomial(40, 0.85) — a margin for
    the percentile bootstrap's approximate coverage — and every point estimate within 15% of the truth.
    """
    budgets = np.geomspace(10, 1e5, 60)
    m0, s, rho = 300.0, 2.5, 0.1
    truth = m0 * ((1 - rho) / rho) ** (1 / s)
    covered = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        succ, _ = logistic_successes(rng, budgets, m0, s, K=400)
        est = empirical_sample_complexity(budgets, succ, rho, n_boot=400, seed=seed, rule="stable")
        assert est.reached and not est.below_grid
        assert abs(est.estimate / truth - 1) < 0.15
        covered += est.lower <= truth <= est.upper
    assert covered >= scipy.stats.binom.ppf(1e-4, 40, 0.85)


def test_grid_and_rules():
    budgets = np.array([1.0, 10.0, 100.0, 1000.0])
    s = np.zeros((4, 10), dtype=bool)
    s[0, :10] = True  # a noisy early success, then failure, then success
    s[1, :2] = True
    s[2, :9] = True
    s[3, :] = True
    first = empirical_sample_complexity(budgets, s, 0.2, interpolate="none", n_boot=10)
    assert first.estimate == 1.0 and first.below_grid
    stable = empirical_sample_complexity(budgets, s, 0.2, interpolate="none", rule="stable", n_boot=10)
    assert stable.estimate == 100.0
    # log interpolation between (10, 0.2) and (100, 0.9) at target 0.8: log m = log 10 + (0.6/0.7) log 10
    interp = empirical_sample_complexity(budgets, s, 0.2, rule="stable", n_boot=10)
    assert interp.estimate == pytest.approx(10 ** (1 + 0.6 / 0.7))


def test_never_reached_is_inf():
    budgets = np.array([1.0, 2.0, 4.0])
    s = np.zeros((3, 20), dtype=bool)
    out = empirical_sample_complexity(budgets, s, 0.1, n_boot=50)
    assert out.estimate == math.inf and not out.reached and out.upper == math.inf and out.reached_fraction == 0.0


def test_bootstrap_is_deterministic_given_seed():
    rng = np.random.default_rng(5)
    budgets = np.geomspace(10, 1e4, 12)
    succ, _ = logistic_successes(rng, budgets, 200.0, 2.0, K=100)
    for paired in (False, True):
        a = empirical_sample_complexity(budgets, succ, 0.2, seed=3, paired=paired)
        b = empirical_sample_complexity(budgets, succ, 0.2, seed=3, paired=paired)
        c = empirical_sample_complexity(budgets, succ, 0.2, seed=4, paired=paired)
        assert a == b
        assert (a.lower, a.upper) != (c.lower, c.upper)


def test_sample_complexity_errors():
    b = np.array([1.0, 2.0])
    s = np.ones((2, 5), dtype=bool)
    with pytest.raises(ValueError, match="rho"):
        empirical_sample_complexity(b, s, 1.0)
    with pytest.raises(ValueError, match="rho"):
        empirical_sample_complexity(b, s, 0.0)
    with pytest.raises(ValueError, match=r"shape \[B, K\]"):
        empirical_sample_complexity(b, np.ones((3, 5), dtype=bool), 0.1)
    with pytest.raises(ValueError, match="> 0"):
        empirical_sample_complexity(np.array([0.0, 2.0]), s, 0.1)
    with pytest.raises(ValueError, match="increasing"):
        empirical_sample_complexity(np.array([2.0, 1.0]), s, 0.1)
    with pytest.raises(ValueError, match="boolean"):
        success_curve(b, np.full((2, 5), 0.5))


# ---------------------------------------------------------------------------------------------------------
# log-log slopes
# ---------------------------------------------------------------------------------------------------------


def test_ols_slope_interval_has_nominal_coverage():
    """y = A x^b e^{σZ}: the OLS t-interval is exact, so the number of covering seeds is Binomial(300, 0.95);
    we require ≥ its 1e-4 quantile (false-failure 1e-4) and the estimate within 5 s.e. each time."""
    x = np.geomspace(1, 1000, 8)
    b_true, covered, reps = -1.7, 0, 300
    lx = np.log(x)
    se = 0.3 / math.sqrt(((lx - lx.mean()) ** 2).sum())
    for seed in range(reps):
        rng = np.random.default_rng(seed)
        y = 5.0 * x**b_true * np.exp(0.3 * rng.standard_normal(x.size))
        fit = fit_loglog_slope(x, y)
        covered += fit.contains(b_true)
        assert abs(fit.slope - b_true) < 5 * se
    assert covered >= scipy.stats.binom.ppf(1e-4, reps, 0.95)


def test_parametric_slope_interval_with_point_intervals():
    """Points with known log-normal error σ_i given as 95% intervals: the parametric bootstrap interval should
    cover the planted slope at about 95%; ≥ the 1e-4 quantile of Binomial(150, 0.9) is required."""
    x = np.array([2.0, 4.0, 8.0, 16.0, 32.0, 64.0])
    sig = np.array([0.05, 0.1, 0.2, 0.1, 0.3, 0.15])
    z = scipy.stats.norm.ppf(0.975)
    covered, reps = 0, 150
    for seed in range(reps):
        rng = np.random.default_rng(1000 + seed)
        y = 2.0 * x**1.0 * np.exp(sig * rng.standard_normal(x.size))
        fit = fit_loglog_slope(x, y, y_lower=y * np.exp(-z * sig), y_upper=y * np.exp(z * sig), n_boot=500, seed=seed)
        covered += fit.contains(1.0)
    assert covered >= scipy.stats.binom.ppf(1e-4, reps, 0.9)


def test_bootstrap_slope_and_predict():
    rng = np.random.default_rng(9)
    x = np.geomspace(1, 100, 10)
    y = 3.0 * x**0.5 * np.exp(0.05 * rng.standard_normal(10))
    fit = fit_loglog_slope(x, y, method="bootstrap", n_boot=1000, seed=1)
    assert fit.lower <= 0.5 <= fit.upper
    assert fit.predict(x) == pytest.approx(np.exp(fit.intercept) * x**fit.slope)
    assert fit == fit_loglog_slope(x, y, method="bootstrap", n_boot=1000, seed=1)
    # exact power law: OLS recovers it exactly
    exact = fit_loglog_slope(x, 7.0 * x**-2.0)
    assert exact.slope == pytest.approx(-2.0) and exact.predict(3.0) == pytest.approx(7.0 * 3.0**-2.0)


def test_slope_errors():
    x = np.array([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="same length"):
        fit_loglog_slope(x, np.ones(4))
    with pytest.raises(ValueError, match="> 0"):
        fit_loglog_slope(x, np.array([1.0, -1.0, 2.0]))
    with pytest.raises(ValueError, match="> 0"):
        fit_loglog_slope(np.array([0.0, 1.0, 2.0]), np.ones(3))
    with pytest.raises(ValueError, match="both"):
        fit_loglog_slope(x, np.ones(3), y_lower=np.ones(3))
    with pytest.raises(ValueError, match="at least 3"):
        fit_loglog_slope(x[:2], np.ones(2))
    with pytest.raises(ValueError, match="y_lower <= y"):
        fit_loglog_slope(x, np.ones(3), y_lower=np.full(3, 2.0), y_upper=np.full(3, 3.0))


def test_slope_fit_round_trips_through_a_summary_dict():
    import dataclasses
    import json

    from sharpsim.complexity import SlopeFit

    x = np.array([1.0, 2.0, 4.0, 8.0])
    fit = fit_loglog_slope(x, 3.0 * x**1.5)
    saved = json.loads(json.dumps({k: v for k, v in dataclasses.asdict(fit).items() if k not in ("x", "y")}))
    back = SlopeFit.from_dict(saved)
    np.testing.assert_allclose(back.predict(x), fit.predict(x))
    assert (back.lower, back.upper) == (fit.lower, fit.upper)


# ------------------------------------------------------------------------------------------ issue 11 statistics
def test_lack_of_fit_flags_curvature_and_passes_a_power_law():
    # catches: a slope fit that reports a tight interval for points that are not on a line (pre-asymptotic range)
    from sharpsim.complexity import fit_loglog_slope

    x = np.geomspace(10, 1000, 7)
    straight = 3.0 * x**1.5
    curved = x * np.exp(0.15 * np.log(x) ** 2)
    ok = fit_loglog_slope(x, straight, y_lower=straight * 0.95, y_upper=straight * 1.05)
    bad = fit_loglog_slope(x, curved, y_lower=curved * 0.95, y_upper=curved * 1.05)
    assert ok.lof_method == "chi2" and ok.lof_pvalue > 0.5 and not ok.few_points
    assert bad.lof_pvalue < 1e-6
    ols_bad = fit_loglog_slope(x, curved * np.exp(0.01 * np.sin(np.arange(7))))
    assert ols_bad.lof_method == "curvature-F" and ols_bad.lof_pvalue < 1e-3


def test_check_slope_needs_five_points_and_uses_a_one_sided_band():
    # catches: verdicts from 3–4 points, and a symmetric log-factor tolerance that excuses a slope on the side
    # the bound's log factors do not push to
    from sharpsim.complexity import SlopeFit
    from sharpsim.runner import check_slope

    def fit(lo, hi, k=6):
        return SlopeFit(slope=(lo + hi) / 2, intercept=0.0, lower=lo, upper=hi, intercept_lower=0.0,
                        intercept_upper=0.0, level=0.95, method="parametric", x=np.arange(1.0, k + 1),
                        y=np.ones(k), few_points=k < 5)

    assert check_slope("q", 2.0, fit(1.90, 1.95), log_factor_slopes={"b": 2.1})["verdict"] == "inconsistent"
    assert check_slope("q", 2.0, fit(1.90, 1.95), log_factor_slopes={"b": 1.92})["verdict"] == "consistent"
    assert check_slope("q", 2.0, fit(2.05, 2.08), log_factor_slopes={"b": 2.1})["verdict"] == "consistent"
    assert check_slope("q", 2.0, fit(1.9, 2.1, k=4))["verdict"] == "inconclusive"
    assert check_slope("q", 2.0, fit(1.9, 2.1))["verdict"] == "consistent"  # backward compatible call


def test_clopper_pearson_is_the_one_exact_interval():
    # catches: the one-sided planner bound or the decoding interval drifting from the Beta-quantile definition
    import scipy.stats

    from sharpsim import decoding
    from sharpsim.complexity import clopper_pearson

    for k, n in ((0, 10), (3, 10), (10, 10), (17, 40)):
        ci = scipy.stats.binomtest(k, n).proportion_ci(method="exact")
        lo, hi = clopper_pearson(k, n)
        assert float(lo) == pytest.approx(ci.low, abs=1e-10) and float(hi) == pytest.approx(ci.high, abs=1e-10)
        assert decoding.clopper_pearson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-10)
        one = float(clopper_pearson(k, n, level=0.95, side="lower")[0])
        assert one == pytest.approx(0.0 if k == 0 else scipy.stats.beta.ppf(0.05, k, n - k + 1), abs=1e-12)


# ------------------------------------------------------------------------------------------ (n, N) grids (issue 13)
def test_geometric_lattice_and_grid_frontier_on_known_tables():
    from sharpsim.complexity import geometric_lattice, grid_frontier

    # catches: a lattice that is not absolute (depends on lo) or drops/duplicates points
    assert geometric_lattice(3, 20, 2) == [3, 4, 6, 8, 11, 16, 23]
    assert geometric_lattice(1, 4, 1) == [1, 2, 4]
    # success iff N >= 8/n; the 0 -> 1 jump is crossed at 0.9 of the log step: N̂(2) = 2·2^0.9, N̂(4) = 2^0.9, N̂(8) = 1
    n_grid, N_grid = (2, 4, 8), (1, 2, 4, 8)
    rates = np.array([[float(N >= 8 / n) for N in N_grid] for n in n_grid])
    m, n_at = grid_frontier(n_grid, N_grid, rates, 0.9)
    assert m == pytest.approx(4 * 2**0.9) and n_at in (2.0, 4.0)  # n·N̂ = 4·2^0.9 at n = 2 and at n = 4
    batch, _ = grid_frontier(n_grid, N_grid, np.stack([rates, np.zeros_like(rates)]), 0.9)
    assert batch[0] == pytest.approx(m) and batch[1] == np.inf  # never reached -> inf


def test_first_budget_at_rate_is_budget_at_rate_row_by_row():
    from sharpsim.complexity import budget_at_rate, first_budget_at_rate

    # catches: per-row budgets indexed with the wrong row (the adaptive estimator's realised mean queries)
    rng = np.random.default_rng(0)
    m = np.cumsum(rng.uniform(1, 5, size=(6, 7)), axis=1)
    rates = np.sort(rng.uniform(0, 1, size=(6, 7)), axis=1)
    got = first_budget_at_rate(m, rates, 0.3)
    want = [budget_at_rate(m[r], rates[r], 0.3) for r in range(6)]
    np.testing.assert_allclose(got, want)


def test_first_stable_index_counts_isolated_successes():
    import jax.numpy as jnp

    from sharpsim.complexity import first_stable_index

    # catches: taking the first success instead of the first index from which every larger N succeeds
    s = jnp.array([[False, True, False, True, True], [True, True, True, True, True], [False] * 5])
    first, violations = first_stable_index(s)
    assert first.tolist() == [3, 0, 5] and int(violations) == 1


def test_reference_coverage_and_binned_counts():
    from sharpsim.complexity import binned_counts, reference_coverage

    # catches: counting a non-finite reference, or a wrong binomial tail
    cov = reference_coverage([0, 0, 0, 5], [1, 1, 1, 6], [0.5, 2.0, np.inf, 5.5])
    assert (cov["covered"], cov["total"]) == (2, 3)
    assert cov["p_tail"] == pytest.approx(scipy.stats.binom.sf(0, 3, 0.05))
    n, k = binned_counts([0.0, 0.5, 0.51, 1.0], [1, 0, 1, 1], [0.0, 0.5, 1.0])  # bins (a, b]: 1/2 falls left
    assert n.tolist() == [2, 2] and k.tolist() == [1.0, 2.0]


# ---------------------------------------------------------------------------------------------------------
# issue 13: the pieces the experiments used to carry (bon_lift, adaptive_vs_fixed)
# ---------------------------------------------------------------------------------------------------------


def test_first_success_and_success_from_first_are_inverse_on_monotone_tables():
    # Catches: an off-by-one in the grid index, a failure coded as 0 instead of inf, axes swapped.
    from sharpsim.complexity import first_success, success_from_first

    N = [2, 4, 8]
    first = np.array([[4.0, np.inf], [2.0, 8.0]])  # [G=2, K=2]
    table = success_from_first(first, N)  # [G, H, K]
    assert table.shape == (2, 3, 2)
    np.testing.assert_array_equal(table[:, :, 0], [[False, True, True], [True, True, True]])
    np.testing.assert_array_equal(table[:, :, 1], [[False, False, False], [False, False, True]])
    np.testing.assert_array_equal(first_success(table, N), first)


def test_standard_error_mean_z_and_paired_lift_match_hand_formulas():
    # Catches: ddof = 0 instead of 1, the z against the wrong reference, an unpaired bootstrap (the lift's
    # replicates must divide by greedy's replicate of the SAME resample), and the band of the wrong quantity.
    from sharpsim.complexity import bootstrap_means, mean_z, paired_lift, standard_error

    rng = np.random.default_rng(0)
    A, g = rng.random((30, 4)), rng.random(30) + 0.5
    np.testing.assert_allclose(standard_error(A), A.std(axis=0, ddof=1) / math.sqrt(30))
    assert np.all(np.isnan(standard_error(A[:1])))
    np.testing.assert_allclose(mean_z(A, 0.5), (A.mean(0) - 0.5) / (A.std(axis=0, ddof=1) / math.sqrt(30)))
    assert mean_z(np.ones(5), 1.0) == 0.0  # zero spread: the floor keeps it finite
    p = paired_lift(A, g, n_boot=200, seed=3)
    np.testing.assert_allclose(p["lift"], A.mean(0) / g.mean() - 1.0)
    boot = bootstrap_means(A, n_boot=200, seed=3) / bootstrap_means(g, n_boot=200, seed=3)[:, None] - 1.0
    np.testing.assert_allclose(p["lift_boot"], boot)
    np.testing.assert_allclose(p["lift_lower"], np.percentile(boot, 2.5, axis=0))
    np.testing.assert_allclose(p["acc_upper"], np.percentile(bootstrap_means(A, n_boot=200, seed=3), 97.5, axis=0))


def test_saturation_point_and_estimate_with_interval():
    from sharpsim.complexity import estimate_with_interval, saturation_point

    grid = [1, 2, 5, 10, 50]
    curves = np.array([[0.1, 0.5, 0.85, 0.95, 1.0], [0.0, 0.0, 0.0, 0.0, -1.0], [0.9, 0.9, 0.9, 0.9, 1.0]])
    np.testing.assert_array_equal(saturation_point(curves, grid), [10.0, np.nan, 1.0])
    d = estimate_with_interval(0.3, np.array([0.0, 1.0, np.nan]), ignore_nan=True)
    assert list(d) == ["value", "lower", "upper"] and d["value"] == 0.3
    np.testing.assert_allclose([d["lower"], d["upper"]], [0.025, 0.975])


def test_fit_loglog_slope_finite_drops_unusable_points_and_widens_intervals():
    # Catches: a non-finite or zero-lower point reaching the fit (it would raise), an interval that misses its
    # estimate (the parametric fit rejects it), and a fit from too few points.
    from sharpsim.complexity import finite_interval_mask, fit_loglog_slope_finite

    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    y = 3.0 * x**2
    lo, hi = y * 0.9, y * 1.1
    lo[1], hi[2], y[3] = 0.0, np.inf, np.inf
    hi[4] = y[4] * 0.99  # a percentile interval that does not contain its estimate
    np.testing.assert_array_equal(finite_interval_mask(y, lo, hi), [True, False, False, False, True, True])
    fit, used = fit_loglog_slope_finite(x, y, lo, hi)
    np.testing.assert_array_equal(used, finite_interval_mask(y, lo, hi))
    assert fit is not None and abs(fit.slope - 2.0) < 1e-9 and fit.x.tolist() == [1.0, 16.0, 32.0]
    assert fit_loglog_slope_finite(x, y, lo, hi, min_points=4)[0] is None


def test_min_budget_clopper_pearson_by_hand():
    # Budgets 10, 20, 40 (two designs at 20: the better one counts); ρ = 0.1 -> rate 0.9 first reached at 20 (19/20).
    # Clopper–Pearson 95%: 19/20 has [0.751, 0.999] (upper ≥ 0.9, lower < 0.9); 40/40 has lower 0.912 ≥ 0.9.
    from sharpsim.complexity import min_budget_clopper_pearson

    m, lo, hi = min_budget_clopper_pearson([10, 20, 20, 40], [10, 12, 19, 40], [20, 20, 20, 40], 0.1)
    assert (m, lo, hi) == (20, 20, 40)
    assert min_budget_clopper_pearson([10], [1], [20], 0.1) == (math.inf, math.inf, math.inf)
    assert min_budget_clopper_pearson([], [], [], 0.1) == (math.inf, math.inf, math.inf)
