"""Experiment spec: what an experiment declares (:class:`Experiment`) and the one form of a check (:class:`Check`).

A check is made only through :class:`Check` (directly, or by :func:`check_slope` for a log-log slope and
:func:`check_sign` for the sign of an effect, :func:`check_max_abs_z` for many z statistics at once) and
stored in a summary as ``Check(...).as_dict()``; :func:`revise_check` changes a stored check's fields (e.g. a
verdict refined into a finding) through :class:`Check` again, so every stored check passed its validation.
:func:`sharpsim.runner.finalize` re-validates every check of a summary (:func:`as_check_dict`), so a raw dict
with a misspelt field or an unknown verdict cannot reach the report.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any, Callable, Optional

import numpy as np

__all__ = ["Experiment", "VERDICTS", "verdict_kind", "is_verdict", "Check", "check_slope", "check_sign",
           "check_max_abs_z", "revise_check", "as_check_dict"]


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One paper claim as a runnable experiment (see the module docstring for the four functions)."""

    name: str
    title: str
    claim: str
    paper_refs: tuple
    instance: str
    sweep: str
    algorithms: tuple
    bounds: tuple
    predicted: str
    how_to_read: str
    settings: Optional[Callable[[str], list]]
    run_setting: Optional[Callable[[Any, dict, str], list]]
    analyze: Callable[[list, str], dict]
    plot: Callable[[list, dict, pathlib.Path], list]
    trials: dict = dataclasses.field(default_factory=lambda: {"quick": 64, "full": 1000})
    run_external: Optional[Callable[[pathlib.Path, str, int], dict]] = None
    requires: tuple = ()
    in_quick: bool = True


#: The verdict vocabulary, strongest first. ``finding`` is a result about the paper, not a defect: a bound
#: that is loose on an instance, a factor the paper leaves open that the data settle. Its verdict string
#: begins with the lowercase word ``finding`` (``"finding: the 1/δ factor is not needed here"``) and the
#: check's note gives the evidence. ``inconsistent`` means the measurement contradicts what the paper
#: claims (or the experiment is broken); ``inconclusive`` means the data cannot decide.
VERDICTS = ("consistent", "finding", "inconclusive", "inconsistent")


def verdict_kind(verdict: str) -> str:
    """The vocabulary word a verdict string belongs to (``"finding: …"`` → ``"finding"``).

    Raises ``ValueError`` for a string outside :data:`VERDICTS`, so a typo cannot pass as a verdict.
    """
    word = str(verdict).split(":", 1)[0].strip()
    if word not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {VERDICTS} (a finding's verdict begins with 'finding')")
    return word


def is_verdict(verdict: str) -> bool:
    """True when ``verdict`` belongs to the vocabulary :data:`VERDICTS`."""
    try:
        verdict_kind(verdict)
    except ValueError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class Check:
    """A predicted-vs-measured comparison for the report.

    ``verdict``: one of :data:`VERDICTS` (consistent / ``finding: …`` / inconclusive / inconsistent).
    ``lower``/``upper``: the measurement's interval (equal to ``measured`` for an exact value; NaN or ±inf where
    there is none); an inverted interval (lower > upper) is refused.
    """

    quantity: str
    predicted: float
    measured: float
    lower: float
    upper: float
    verdict: str
    note: str = ""

    def __post_init__(self):
        verdict_kind(self.verdict)
        try:
            inverted = float(self.lower) > float(self.upper)  # False when either is NaN
        except (TypeError, ValueError):
            inverted = False
        if inverted:
            raise ValueError(f"check {self.quantity!r}: interval [{self.lower}, {self.upper}] is inverted (lower > "
                             "upper); report a one-number quantity with its own interval")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_slope(quantity: str, predicted: float, fit, *, tolerance: float = 0.0, note: str = "",
                log_factor_slopes=None, min_points: int = 5) -> dict:
    """Compare a predicted log-log slope with a fitted one (``fit``: :class:`sharpsim.complexity.SlopeFit`).

    Consistent when the predicted value lies in the fit's confidence interval widened by ``tolerance`` (a
    symmetric slack, kept for callers that need one). ``log_factor_slopes`` (optional): the along-sweep slopes
    of the bounds' own shapes, log factors included. They give a ONE-SIDED slack in the direction those log
    factors push along the sweep: the predicted exponent p becomes the band [min(p, s), max(p, s)] over the
    given slopes s, and the check is consistent when the interval meets the band — a fit steeper than p is
    excused only by log factors that steepen the bound, never one that is flatter. Inconclusive when the
    interval is not finite or the fit rests on fewer than ``min_points`` points (``fit.few_points`` or
    ``len(fit.x)``). The fit's lack-of-fit p-value, when it has one, is appended to the note.
    """
    lo, hi = float(fit.lower), float(fit.upper)
    p = float(predicted)
    band_lo, band_hi = p - tolerance, p + tolerance
    if log_factor_slopes is not None:
        ss = [float(v) for v in (log_factor_slopes.values() if isinstance(log_factor_slopes, dict)
                                 else log_factor_slopes)]
        band_lo = min([p] + ss) - tolerance
        band_hi = max([p] + ss) + tolerance
    n_pts = int(np.size(getattr(fit, "x", ()))) or None
    few = bool(getattr(fit, "few_points", False)) or (n_pts is not None and n_pts < min_points)
    extra = []
    lof_p = float(getattr(fit, "lof_pvalue", float("nan")))
    if math.isfinite(lof_p):
        extra.append(f"lack of fit ({getattr(fit, 'lof_method', '')}): p = {lof_p:.3g}")
    if log_factor_slopes is not None:
        extra.append(f"one-sided log-factor band [{band_lo:.3f}, {band_hi:.3f}]")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        verdict = "inconclusive"
    elif few:
        verdict = "inconclusive"
        extra.append(f"only {n_pts} points (< {min_points}): no verdict from a slope fit")
    elif hi >= band_lo and lo <= band_hi:
        verdict = "consistent"
    else:
        verdict = "inconsistent"
    full = "; ".join([x for x in [note] + extra if x])
    return Check(quantity, p, float(fit.slope), lo, hi, verdict, full).as_dict()



def check_sign(quantity: str, value: float, lower: float, upper: float, *, positive: bool, note: str = "") -> dict:
    """The predicted SIGN of an effect (predicted value 0 as the boundary) against its interval [lower, upper]:
    consistent when the interval lies on the predicted side of 0 (> 0 if ``positive``, else < 0), inconsistent
    when it lies on the other side, inconclusive when it contains 0."""
    right, wrong = (lower > 0, upper < 0) if positive else (upper < 0, lower > 0)
    verdict = "consistent" if right else "inconsistent" if wrong else "inconclusive"
    return Check(quantity, 0.0, value, lower, upper, verdict, note).as_dict()


def check_max_abs_z(quantity: str, zs, *, note: str = "", alpha: float = 0.01, comparisons: int | None = None) -> dict:
    """Many z statistics (each comparing a measurement with an exact value, e.g. one per setting) judged at once:
    the largest |z| against the two-sided Bonferroni critical value for level ``alpha`` overall over
    ``comparisons`` tests (default: one per z). A test statistic, not an estimate: lower = upper = the value."""
    import scipy.stats

    zs = np.abs(np.asarray(zs, float))
    k = len(zs) if comparisons is None else int(comparisons)
    z_crit = float(scipy.stats.norm.isf(alpha / 2 / max(k, 1)))
    zmax = float(np.max(zs))
    return Check(quantity, 0.0, zmax, zmax, zmax, "consistent" if zmax <= z_crit else "inconsistent",
                 f"a test statistic, not an estimate (no interval): {note}; consistent when max |z| ≤ {z_crit:.2f} "
                 f"(Bonferroni over {k} comparisons, {100 * alpha:g}% overall)").as_dict()


def as_check_dict(check) -> dict:
    """A check in its stored form ``Check(...).as_dict()``, from a :class:`Check` or a dict of its fields.

    Raises ``ValueError`` naming the check for a dict with missing or unknown fields or a verdict outside
    :data:`VERDICTS` (through :class:`Check`'s own validation).
    """
    if isinstance(check, Check):
        return check.as_dict()
    if not isinstance(check, dict):
        raise ValueError(f"a check must be a Check or its as_dict(), got {type(check).__name__}.")
    names = [f.name for f in dataclasses.fields(Check)]
    unknown = [k for k in check if k not in names]
    if unknown:
        raise ValueError(f"check {check.get('quantity', check)!r} has unknown field(s) {unknown}; "
                         f"a check has exactly the fields {names}.")
    try:
        return Check(**check).as_dict()
    except TypeError as err:
        raise ValueError(f"check {check.get('quantity', check)!r} is incomplete ({err}); "
                         f"a check has the fields {names}.") from None


def revise_check(check, **changes) -> dict:
    """``check`` (a :class:`Check` or its dict) with ``changes`` applied, validated again as a :class:`Check`.

    For a verdict refined after the fact (``revise_check(c, verdict="finding: …", note=c["note"] + "; …")``):
    a finding still has to be a word of :data:`VERDICTS`.
    """
    return as_check_dict({**as_check_dict(check), **changes})
