r"""XPO on the log-linear (linear softmax) class of Definition J.3: Theorem J.3.

Π_{φ,B} = {π_θ ∝ π_zero exp(⟨φ(x,y), θ⟩) : ‖θ‖₂ ≤ B}, ‖φ‖₂ ≤ 1. If π_base = π_{θ*} with
‖θ*‖₂ ≤ γ_margin B / (3 log(2|Y|/δ)) and the margin holds, Algorithm 1 with r = log π_base,
β = γ_margin/(2 log(2|Y|/δ)) and α(T) ∝ (β/(B + log|Y|)) sqrt((d log(BdT/(εδ)) + log(T/ρ))/(dT log T)) returns an
(ε, δ)-sharpened model w.p. ≥ 1 − ρ with m = poly(ε^{-1}, δ^{-1}, γ_margin^{-1}, d, B, log(|Y|/ρ)).

The paper states only "poly". The expression below is [DERIVED]: Theorem J.2's m with
SEC ≲ d log(T+1) (Lemma J.5), log N(Π, ε_disc) ≤ d log(6B/ε_disc) (Lemma J.4),
R_max² = 4β²B² + (2B + log|Y|)² and β = γ_margin/(2 log(2|Y|/δ)), dropping the log T and log(B/ε_disc) factors:

    m ≈ c · R_max² · d (d + log ρ^{-1}) · log²(|Y|/δ) / (γ_margin² δ² ε²).
"""

from __future__ import annotations

import numpy as np
import sympy

from bounds._core import Bound, Condition
from bounds._recipes import at_least, evaluate, open_unit, positive
from bounds._symbols import B, Y_size, beta, c, d, delta, epsilon, gamma_margin, rho
from bounds.thm_J_2 import XPO_BETA

__all__ = ["THM_J_3", "LOGLINEAR_R_MAX", "loglinear_R_max", "loglinear_norm_limit", "loglinear_log_cover_size",
           "loglinear_alpha"]

#: R_max of the log-linear class: sqrt(4β²B² + (2B + log|Y|)²), since |log π_base| ≤ 2B + log|Y|
LOGLINEAR_R_MAX = sympy.sqrt(4 * beta**2 * B**2 + (2 * B + sympy.log(Y_size)) ** 2)

THM_J_3 = Bound(
    name="thm_J_3",
    reference="Theorem J.3 (App. J.2.4; m = poly(…), expression derived from Theorem J.2 + Lemmas J.4, J.5)",
    kind="upper",
    quantity="m queries sufficient for an (ε, δ)-sharpened π̂ w.p. ≥ 1 − ρ (XPO, log-linear class)",
    expr=c * LOGLINEAR_R_MAX.subs(beta, XPO_BETA) ** 2 * d * (d + sympy.log(1 / rho)) * sympy.log(Y_size / delta) ** 2
    / (gamma_margin**2 * delta**2 * epsilon**2),
    symbols={"B": B, "Y_size": Y_size, "d": d, "rho": rho, "delta": delta, "epsilon": epsilon,
             "gamma_margin": gamma_margin},
    explicit_constant=False,
    constant=c,
    conditions=(
        Condition("ε, δ, ρ, γ_margin ∈ (0, 1)", sympy.And(epsilon < 1, delta < 1, rho < 1, gamma_margin < 1)),
        Condition("B ≥ 1, ‖φ(x,y)‖₂ ≤ 1", B >= 1),
        Condition("π_base = π_{θ*} with ‖θ*‖₂ ≤ γ_margin B / (3 log(2|Y|/δ))  (see loglinear_norm_limit)"),
        Condition("Assumption 4.2 (margin) with γ_margin"),
        Condition("β = γ_margin / (2 log(2|Y|/δ))", sympy.Eq(beta, XPO_BETA)),
    ),
    notes="[DERIVED] polynomial: the paper states m = poly(ε^{-1}, δ^{-1}, γ_margin^{-1}, d, B, log(|Y|/ρ)).",
)


def loglinear_R_max(beta, B, Y_size):
    """R_max = sqrt(4β²B² + (2B + log|Y|)²) for the log-linear class (App. J.2.4)."""
    return evaluate(LOGLINEAR_R_MAX, beta=positive(beta, "beta"), B=positive(B, "B"),
                    Y_size=at_least(Y_size, 1.0, "Y_size"))[()]


def loglinear_norm_limit(gamma_margin, delta, Y_size, B):
    """Largest ‖θ*‖₂ allowed by Theorem J.3: γ_margin B / (3 log(2|Y|/δ)) (keeps π*_β = π_{(1+1/β)θ*} in Π)."""
    return (positive(gamma_margin, "gamma_margin") * positive(B, "B")
            / (3 * np.log(2 * at_least(Y_size, 1.0, "Y_size") / open_unit(delta, "delta"))))[()]


def loglinear_log_cover_size(d, B, eps_disc):
    """log of the ε_disc-net size (6B/ε_disc)^d of Lemma J.4."""
    return (at_least(d, 1.0, "d") * np.log(6 * positive(B, "B") / positive(eps_disc, "eps_disc")))[()]


def loglinear_alpha(beta, B, Y_size, d, T, epsilon, delta, rho, *, c: float = 1.0):
    """Theorem J.3's α(T) in the toolkit's normalisation (unit-weight squared loss, as :func:`bounds.xpo_alpha`).

    The theorem's α_thm(T) = c (β/R) sqrt((d log(BdT/(εδ)) + log(T/ρ)) / (d T log T)) with R = B + log|Y| (∝, c
    unknown); like Theorem J.2's recipe it is rescaled by (R + V_max)², V_max = βR:
    α = c β R (1 + β)² sqrt(…). Needs T ≥ 2 (log T in the denominator). Use it for log-linear runs only.
    """
    Tv = at_least(T, 2.0, "T")
    dv, Bv = at_least(d, 1.0, "d"), positive(B, "B")
    eps, dlt, r = open_unit(epsilon, "epsilon"), open_unit(delta, "delta"), open_unit(rho, "rho")
    b = positive(beta, "beta")
    R = Bv + np.log(at_least(Y_size, 1.0, "Y_size"))
    num = dv * np.log(Bv * dv * Tv / (eps * dlt)) + np.log(Tv / r)
    return (positive(c, "c") * b * R * (1.0 + b) ** 2 * np.sqrt(num / (dv * Tv * np.log(Tv))))[()]
