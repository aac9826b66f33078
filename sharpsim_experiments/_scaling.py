"""Shared pieces of the SFT scaling sweeps of issue 11 (``sft_delta``, ``sft_class_size``, ``sft_gamma``) and of
the other slope experiments (``sft_minimax``, ``adaptive_vs_fixed``).

Each of those experiments runs :func:`sharpsim.algorithms.sft_sharpening_sweep` over an absolute (n, N)
lattice from ONE draw per trial (one compile per experiment: every setting parameter is a traced argument),
records per trial and n the smallest grid N from which the run is sharpened (``sharpened_from_N``), and
reads m̂(ρ) = the smallest n·N with success rate ≥ 1 − ρ off the grid with a paired bootstrap over trials
(:func:`sharpsim.complexity.grid_sample_complexity`). This module holds the row format, the m̂ table, the slope
check and the figure they share:

* :func:`stable_rows` / :func:`success_table` — tidy rows ↔ ``success [G, H, K]``;
* :func:`measure` — m̂ with its 95% bootstrap interval per setting (grouped by the given keys);
* :func:`slope_check` — a weighted log-log fit from ≥ 5 points with a lack-of-fit statistic (χ² of the
  residuals against the bootstrap intervals, its p-value), judged against an exponent *band*: the log-free
  exponent and the along-sweep slopes of the bounds (their own log factors), so the tolerance is one-sided in
  the direction those logs push;
* :func:`epsilon_slope_checks` — the slope of a measured budget vs 1/ε over the asymptotic range, judged against
  the predicted exponent with the bounds' log-factor band AND against the exact finite-size reference's own slope
  (:func:`slope_checks_with_exact_reference`), the full-range fit reported with its lack of fit;
* :func:`along_sweep_slope`, :func:`bound_values`, :func:`symbol_values`, :func:`bound_curves`, :func:`fitted_constants` — the bounds
  evaluated along a sweep (slopes with their log factors, figure curves, constants via ``Bound.fit_constant``);
* :func:`figure` — the empirical m̂ with band, the bounds dashed (constant fitted), log-log, slope in legend.

The compiled sweep programs that sft_delta and sft_gamma share live in :mod:`sharpsim_experiments._sft_programs`.

Generic statistics live in :mod:`sharpsim.complexity` (fits over the usable points, z statistics, coverage) and
generic check forms in :mod:`sharpsim.runner` (``check_slope``, ``check_sign``, ``check_max_abs_z``).
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from sharpsim.complexity import (SlopeFit, fit_loglog_slope, fit_loglog_slope_finite, grid_sample_complexity,
                                 reference_coverage, success_from_first)
from sharpsim.runner import Check, check_slope, pivot, revise_check

MIN_POINTS = 5  # slope fits use at least this many sweep points


def stable_rows(first, viol, n_grid, N_grid, **extra) -> list:
    """Rows from ``first [K, G]`` (index of the first grid N from which every larger N is sharpened; G = len
    n_grid, H = len N_grid means never) and ``viol [K]`` (isolated successes followed by a failure, counted as
    failures). ``queries`` = n·N_max, the largest run the row examined."""
    first, viol = np.asarray(first), np.asarray(viol)
    N_arr = np.asarray(N_grid, float)
    N_max = int(N_grid[-1])
    rows = []
    for t in range(first.shape[0]):
        for g, n in enumerate(n_grid):
            f = int(first[t, g])
            rows.append({"trial": t, "queries": int(n) * N_max, "metric": "sharpened_from_N",
                         "value": float(N_arr[f]) if f < len(N_grid) else math.inf, "n": int(n), "N": N_max, **extra})
        rows.append({"trial": t, "queries": int(n_grid[-1]) * N_max, "metric": "non_monotone",
                     "value": float(viol[t]), "n": int(n_grid[-1]), "N": N_max, **extra})
    return rows


def success_table(rows: list, n_grid, N_grid) -> np.ndarray:
    """``success [G, H, K]`` from the ``sharpened_from_N`` rows of one setting (and one arm)."""
    first = pivot([r for r in rows if r["metric"] == "sharpened_from_N"], "n", "trial", index_values=n_grid,
                  fill=np.inf)  # [G, K]: the first N that sharpens, per n and trial
    return success_from_first(first, N_grid)


def measure(rows: list, n_grid, N_grid, rho: float, group=("setting",), fields=()) -> list:
    """m̂(ρ) per group of rows: dicts with the group's ``fields`` and m_hat, lower, upper, N_at, n_at, …"""
    keys = sorted({tuple(r[k] for k in group) for r in rows}, key=lambda t: tuple(map(str, t)))
    out = []
    for key in keys:
        rs = [r for r in rows if tuple(r[k] for k in group) == key]
        gc = grid_sample_complexity(n_grid, N_grid, success_table(rs, n_grid, N_grid), rho,
                                    seed=zlib.crc32(repr(key).encode()))  # stable across processes
        base = {k: rs[0][k] for k in fields if k in rs[0]}
        out.append({**base, **dict(zip(group, key)), "m_hat": gc.estimate, "lower": gc.lower, "upper": gc.upper,
                    "n_at": gc.n_at, "N_at": gc.estimate / gc.n_at if math.isfinite(gc.estimate) else math.inf,
                    "reached_fraction": gc.reached_fraction, "below_grid": gc.below_grid,
                    "non_monotone": float(sum(r["value"] for r in rs if r["metric"] == "non_monotone"))})
    return out


def usable(pts: list) -> list:
    """Points with a finite m̂ and a finite, positive interval (the ones a slope can be fitted to)."""
    return [p for p in pts if all(math.isfinite(p[k]) for k in ("m_hat", "lower", "upper")) and p["lower"] > 0]


def lack_of_fit(fit: SlopeFit, lower=None, upper=None) -> tuple[float, int, float]:
    """The fit's own lack-of-fit χ² (``sharpsim.complexity``'s weighted-residual statistic, the one home of
    that formula), its degrees of freedom and p-value; NaN for exact points (zero-width intervals), where a
    χ² against no noise means nothing. ``lower``/``upper`` are accepted for symmetry and not used.

    A small p-value means the points scatter around the line more than their own intervals allow: the
    straight line (a single exponent) does not describe the range, e.g. a pre-asymptotic bend.
    """
    dof = max(int(np.size(fit.x)) - 2, 1)
    if fit.lof_method != "chi2" or not math.isfinite(fit.lof_stat):
        return math.nan, dof, math.nan
    return float(fit.lof_stat), int(fit.lof_dof), float(fit.lof_pvalue)


def fit_points(pts: list, x):
    """Weighted log-log fit of m̂ against ``x`` (aligned with ``pts``) with the bootstrap intervals as weights."""
    return fit_loglog_slope(x, [p["m_hat"] for p in pts], y_lower=[p["lower"] for p in pts],
                            y_upper=[p["upper"] for p in pts])


def bound_values(pts: list, rho: float, delta: float) -> dict:
    """The symbol values of the paper's bounds along a sweep: the per-point fields C_cov, C_cov_bar,
    log_class_size, epsilon that the points carry (exact values of each instance), with ρ and δ."""
    fields = [k for k in ("C_cov", "C_cov_bar", "log_class_size", "epsilon") if pts and k in pts[0]]
    return {**{k: np.array([p[k] for p in pts]) for k in fields}, "rho": rho, "delta": delta}


def symbol_values(bound, values: dict) -> dict:
    """The entries of ``values`` that are symbols of ``bound`` (a sweep carries more fields than a bound uses)."""
    return {k: v for k, v in values.items() if k in bound.symbols}


def bound_shape(name: str, values: dict) -> np.ndarray:
    """The shape of bound ``name`` (``bounds.get``) at the given symbol values (those it does not use ignored)."""
    import bounds

    return np.asarray(bounds.get(name).numeric(**symbol_values(bounds.get(name), values)), float)


def bound_curves(names, values: dict, constants: dict | None = None) -> list:
    """Figure curves (:class:`sharpsim.plotting.BoundCurve`) of the named bounds at the sweep's symbol values
    (each bound takes the symbols it uses); ``constants`` (name → c) fixes a constant, else it is fitted."""
    import bounds
    from sharpsim.plotting import BoundCurve

    curves = []
    for name in names:
        b = bounds.get(name)
        curves.append(BoundCurve(b, symbol_values(b, values), constant=(constants or {}).get(name)))
    return curves


def along_sweep_slope(bound, values: dict, x) -> float:
    """Log-log slope of a bound's shape along the actual sweep points (its log factors included)."""
    x = np.asarray(x, float)
    shape = np.asarray(bound.numeric(**symbol_values(bound, values)), float)
    return float(fit_loglog_slope(x, np.broadcast_to(shape, x.shape)).slope)


def fitted_constants(names, measured, values: dict) -> dict:
    """The constant of each named bound fitted to ``measured`` along the sweep (``Bound.fit_constant``: the
    geometric mean of measured / shape), each bound taking the symbols of ``values`` it uses."""
    import bounds

    return {b: bounds.get(b).fit_constant(measured, **symbol_values(bounds.get(b), values)) for b in names}


def slope_check(label: str, predicted: float, pts: list, x, band: dict, note: str = "") -> tuple[dict, object]:
    """Fit m̂ vs x (≥ :data:`MIN_POINTS` usable points) and judge it against ``predicted``.

    ``band`` maps names to along-sweep slopes (the bounds with their logs, exact finite-size references);
    the accepted region is [min(predicted, band), max(predicted, band)], i.e. the tolerance reaches exactly as
    far as the references' own log factors push, on their side only. Verdict: consistent when the 95% interval
    meets that region, inconsistent otherwise, inconclusive with fewer than 5 usable points. Returns
    ``(check dict, fit or None)``; the note reports the lack-of-fit χ².
    """
    ok = [(p, xi) for p, xi in zip(pts, x) if p in usable(pts)]
    if len(ok) < MIN_POINTS:
        return Check(label, predicted, math.nan, math.nan, math.nan, "inconclusive",
                     f"only {len(ok)} of {len(pts)} settings reached 1 − ρ with a finite interval "
                     f"(need {MIN_POINTS}); widen the grid. {note}").as_dict(), None
    ps, xs = [p for p, _ in ok], [xi for _, xi in ok]
    fit = fit_points(ps, xs)
    chi2, dof, pval = lack_of_fit(fit, [p["lower"] for p in ps], [p["upper"] for p in ps])
    lo_band = min([predicted, *band.values()])
    hi_band = max([predicted, *band.values()])
    verdict = "consistent" if fit.lower <= hi_band + 1e-9 and fit.upper >= lo_band - 1e-9 else "inconsistent"
    text = (f"{len(ps)} points; accepted exponent band [{lo_band:.3f}, {hi_band:.3f}] = log-free {predicted:g} and "
            + ", ".join(f"{k} {v:.3f}" for k, v in band.items())
            + " (one-sided: only as far as those log factors push); "
            + (f"lack of fit χ² = {chi2:.2f} on {dof} dof (p = {pval:.3g}). " if math.isfinite(chi2) else
               "exact points (zero-width intervals): no lack-of-fit χ². ") + note)
    return Check(label, predicted, fit.slope, fit.lower, fit.upper, verdict, text).as_dict(), fit


def slope_checks_with_exact_reference(label: str, predicted: float, fit, band: dict, exact_slope: float,
                                      exact_label: str, scope: str, note: str = "") -> list:
    """The asymptotic slope check (``check_slope`` with the one-sided log-factor ``band``) and, when the exact
    finite-size reference slope over the same points is finite, the measured slope against it.

    When the asymptotic check is inconsistent, the exact one consistent and the exact slope itself lies outside
    the accepted band, the measurement follows the exact law of the algorithm, whose local slope has not reached
    the asymptotic exponent at these sizes (``scope``, e.g. "ε ≥ 0.005"): a ``finding`` about the finite sizes,
    not a defect."""
    asym = check_slope(label, predicted, fit, log_factor_slopes=band, note=note)
    if not math.isfinite(exact_slope):
        return [asym]
    exact = check_slope(exact_label, exact_slope, fit,
                        note="predicted = the log-log slope of the exact reference m(ρ) (the estimator's functional on "
                             "the exact laws, same grids): exact, no interval")
    band_lo, band_hi = min([predicted] + list(band.values())), max([predicted] + list(band.values()))
    if asym["verdict"] == "inconsistent" and exact["verdict"] == "consistent" and not band_lo <= exact_slope <= band_hi:
        asym = revise_check(
            asym, verdict=(f"finding: at {scope} the exact finite-size law's slope is {exact_slope:.3f}, not yet the "
                           f"asymptotic {predicted:g}"),
            note=asym["note"] + ("; the measured slope agrees with the exact law of the algorithm (next check), whose "
                                 "local slope lies outside the asymptotic band: the exponent is approached from the "
                                 "side of the finite-size law, not contradicted"))
    return [asym, exact]


def epsilon_slope_checks(label: str, predicted: float, pts: list, cols, band_of, exact_label: str,
                         epsilon_max: float) -> tuple[list, dict | None]:
    """The slope of a measured budget against 1/ε, fitted over the asymptotic range ε ≤ ``epsilon_max``, judged
    against ``predicted`` with the one-sided band ``band_of(points used)`` (name → along-sweep slope) and against
    the exact finite-size reference's own slope over the same points (:func:`slope_checks_with_exact_reference`);
    the full-range fit (every ε) is reported in the note with its lack of fit.

    ``cols`` = (estimate, lower, upper, exact reference) keys of the points. Returns ``(checks, fit summary)``,
    the summary None (and the check inconclusive) with fewer than 3 usable points in the range."""
    def fit_over(sel):
        fit, used = fit_loglog_slope_finite([1.0 / p["epsilon"] for p in sel], *([p[k] for p in sel] for k in cols[:3]))
        return fit, [p for p, u in zip(sel, used) if u]

    (fit, sel), (full, full_sel) = fit_over([p for p in pts if p["epsilon"] <= epsilon_max * (1 + 1e-9)]), fit_over(pts)
    if fit is None:
        return [Check(label, predicted, math.nan, math.nan, math.nan, "inconclusive",
                      f"only {len(sel)} settings with a finite interval in the asymptotic range").as_dict()], None
    band, ex = band_of(sel), np.array([p[cols[3]] for p in sel])
    exact_slope = (fit_loglog_slope([1.0 / p["epsilon"] for p in sel], ex).slope
                   if np.all(np.isfinite(ex)) and np.all(ex > 0) else math.nan)
    note = ("one-sided log-factor band from the along-sweep slopes of "
            + ", ".join(f"{b} ({v:.3f})" for b, v in band.items())
            + f"; exact finite-size reference slope over the same points {exact_slope:.3f}")
    if full is not None:
        note += (f"; full range (ε ≤ {max(p['epsilon'] for p in pts):g}, {len(full_sel)} points): "
                 f"slope {full.slope:.3f} [{full.lower:.3f}, {full.upper:.3f}], lack of fit p = {full.lof_pvalue:.3g}")
    checks = slope_checks_with_exact_reference(label, predicted, fit, band, exact_slope, exact_label,
                                               f"ε ≥ {min(p['epsilon'] for p in sel):g}", note)
    return checks, {**fit.as_dict(), "epsilon_max": epsilon_max, "exact_reference_slope": exact_slope,
                    "log_factor_slopes": band, "full_range": None if full is None else full.as_dict()}


def reference_coverage_check(label: str, lower, upper, reference) -> dict:
    """How many per-setting 95% bootstrap intervals contain the exact finite-size reference
    (:func:`sharpsim.complexity.reference_coverage`); inconsistent when the misses are improbable for 95%
    intervals (binomial tail < 0.01): the measurement or the exact law is off."""
    cov = reference_coverage(lower, upper, reference)
    total, covered, p_tail = cov["total"], cov["covered"], cov["p_tail"]
    return Check(label, 0.95, covered / max(total, 1), *cov["cp"],
                 "inconclusive" if not total else ("consistent" if p_tail >= 0.01 else "inconsistent"),
                 f"{covered}/{total} bootstrap intervals contain the exact reference of sharpsim.finite_size "
                 f"(Clopper–Pearson interval on the coverage); P[Binomial({total}, 0.05) ≥ {total - covered}] = "
                 f"{p_tail:.3g} (inconsistent below 0.01: the simulator or the exact law is wrong)").as_dict()


def fit_dict(fit) -> dict | None:
    if fit is None:
        return None
    return {"slope": fit.slope, "lower": fit.lower, "upper": fit.upper, "intercept": fit.intercept,
            "x": np.asarray(fit.x).tolist(), "y": np.asarray(fit.y).tolist()}


def figure(path_stem, pts: list, x, *, xlabel: str, title: str, label: str, bounds=(), fit=None,
           predicted=None, extra_series=(), ylabel: str = "m̂(ρ) = n·N queries",
           cols=("m_hat", "lower", "upper")) -> list:
    """The standard scaling figure (empirical band, bounds dashed with fitted constants, log-log, slope) of the
    points' ``cols`` (estimate, lower, upper)."""
    from sharpsim.plotting import scaling_figure

    y, lo, hi = ([p[k] for p in pts] for k in cols)
    return scaling_figure(
        path_stem, x=np.asarray(x, float), y=y, y_lower=lo, y_upper=hi, xlabel=xlabel, ylabel=ylabel, title=title,
        label=label, bounds=bounds,
        fit=None if fit is None else SlopeFit.from_dict(fit), predicted_slope=predicted,
        normalise_by=0 if bounds else None, extra_series=extra_series)
