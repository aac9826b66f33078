r"""Exploratory RLHF-Sharpening with reward-based XPO (Algorithm 1): Theorem J.2 and its informal Theorem 4.3.

Theorem J.2. With r = log π_base, R_max ≥ 1 + max log(1/π_base), margin γ_margin, β^{-1} ≥ 2 γ_margin^{-1}
log(2|Y|/δ), T ≥ C R_max² SEC log(2N(Π,ε_disc)T/ρ)/(ε²δ²β²), ε_disc ≤ c εδ/sqrt(SEC·T), π*_β ∈ Π, and
α = (β/R_max) sqrt(log(2N(Π,ε_disc)T/ρ)/(SEC·T)), with probability ≥ 1 − ρ, P_x[π̂(y*(x)|x) < 1 − δ] ≤ ε and

    m = Õ( R_max² SEC log(N(Π,ε_disc)/ρ) log²(|Y|δ^{-1}) / (γ_margin² ε² δ²) ).

Theorem 4.3 (informal): with β = γ_margin/(2 log(2|Y|/δ)),  m = Õ( SEC log(|Π|ρ^{-1}) / (γ_margin² δ² ε²) ).
No dependence on C_cov.
"""

from __future__ import annotations

import numpy as np
import sympy

from bounds._core import Bound, Condition
from bounds._recipes import at_least, ceil_int, evaluate, open_unit, positive
from bounds._symbols import (
    R_max, SEC, T, Y_size, beta, c, delta, epsilon, gamma_margin, log_class_over_rho, log_class_size, log_cover_size,
    rho,
)

__all__ = [
    "THM_J_2", "THM_4_3", "XPO_BETA", "XPO_ALPHA", "XPO_ALPHA_THEOREM", "xpo_beta", "xpo_alpha", "xpo_iterations", "xpo_eps_disc",
]

#: β = γ_margin / (2 log(2|Y|/δ)) (Theorem 4.3; the largest β allowed by Theorem J.2)
XPO_BETA = gamma_margin / (2 * sympy.log(2 * Y_size / delta))
#: V_max of Theorem J.2's proof (step 1 applies Theorem J.1 with V_max := β R_max)
V_max = sympy.Symbol("V_max", positive=True)
#: α_thm = (β / (R_max + V_max)) sqrt(log(2 N(Π,ε_disc) T / ρ) / (SEC T)) (Theorems J.1/J.2; J.2 prints β/R_max
#: and /δ: V_max ≤ R_max, and /δ is read as /ρ)
XPO_ALPHA_THEOREM = beta / (R_max + V_max) * sympy.sqrt((sympy.log(2 * T / rho) + log_cover_size) / (SEC * T))
#: The α that multiplies Σ log π(ỹ|x) against a UNIT-weight squared loss (sharpsim's XPO objective). The proof's
#: objective β Σ log π(ỹ) + β/(α_thm (V_max+R_max)²) Σ (…)², multiplied by α_thm (V_max+R_max)²/β, is
#: α_thm (V_max+R_max)² Σ log π(ỹ) + Σ (…)²; so α = α_thm (V_max+R_max)² = β (R_max+V_max) sqrt(…).
XPO_ALPHA = sympy.simplify(XPO_ALPHA_THEOREM * (R_max + V_max) ** 2)

_COMMON = (
    Condition("ε, δ, ρ, γ_margin ∈ (0, 1)", sympy.And(epsilon < 1, delta < 1, rho < 1, gamma_margin < 1)),
    Condition("Assumption 4.2 (margin) with γ_margin"),
    Condition("Assumption 4.5: R_max ≥ 1 + max_{x,y} log(1/π_base(y|x))", R_max >= 1),
    Condition("β^{-1} ≥ 2 γ_margin^{-1} log(2|Y|/δ)", 1 / beta >= 2 * sympy.log(2 * Y_size / delta) / gamma_margin),
    Condition("realizability: π*_β ∝ π_base^{1+1/β} belongs to Π"),
)

THM_J_2 = Bound(
    name="thm_J_2",
    reference="Theorem J.2 (formal Theorem 4.3)",
    kind="upper",
    quantity="m queries (2 per iteration) sufficient for P_x[π̂(y*(x)|x) < 1 − δ] ≤ ε w.p. ≥ 1 − ρ (XPO)",
    expr=c * R_max**2 * SEC * (log_cover_size + sympy.log(1 / rho)) * sympy.log(Y_size / delta) ** 2
    / (gamma_margin**2 * epsilon**2 * delta**2),
    symbols={
        "R_max": R_max, "SEC": SEC, "log_cover_size": log_cover_size, "rho": rho, "Y_size": Y_size,
        "delta": delta, "gamma_margin": gamma_margin, "epsilon": epsilon,
    },
    explicit_constant=False,
    constant=c,
    conditions=_COMMON + (
        Condition("T ≥ C_J.2 R_max² SEC log(2N(Π,ε_disc)T/ρ) / (ε²δ²β²)  (see xpo_iterations)"),
        Condition("ε_disc ≤ c_J.2 εδ / sqrt(SEC·T)  (see xpo_eps_disc)"),
        Condition("SEC = SEC(Π, r, T, β, R_max²; π_base), Definition J.1"),
    ),
    notes=(
        "log(N(Π,ε_disc)/ρ) is written log N + log(1/ρ); α's formula is printed with log(…/δ) against log(…/ρ) in "
        "Theorem J.1, read as ρ."
    ),
)

THM_4_3 = Bound(
    name="thm_4_3",
    reference="Theorem 4.3 (informal version of J.2)",
    kind="upper",
    quantity="m queries sufficient for an (ε, δ)-sharpened π̂ ∈ Π w.p. ≥ 1 − ρ (XPO)",
    expr=c * SEC * log_class_over_rho / (gamma_margin**2 * delta**2 * epsilon**2),
    symbols={"SEC": SEC, "log_class_size": log_class_size, "rho": rho, "gamma_margin": gamma_margin,
             "delta": delta, "epsilon": epsilon},
    explicit_constant=False,
    constant=c,
    conditions=(
        Condition("ε, δ, ρ ∈ (0, 1)", sympy.And(epsilon < 1, delta < 1, rho < 1)),
        Condition("Assumptions 4.2 and 4.5; Assumption 4.3 at β = γ_margin / (2 log(2|Y|/δ))",
                  sympy.Eq(beta, XPO_BETA)),
    ),
    notes="The informal display omits Theorem J.2's R_max² and log²(|Y|/δ) factors.",
)


def xpo_beta(gamma_margin, delta, Y_size):
    """β = γ_margin / (2 log(2|Y|/δ)) (Theorems 4.3, J.2, J.3)."""
    return evaluate(
        XPO_BETA, gamma_margin=positive(gamma_margin, "gamma_margin"), delta=open_unit(delta, "delta"),
        Y_size=at_least(Y_size, 1.0, "Y_size"),
    )[()]


def xpo_alpha(beta, R_max, log_cover_size, T, SEC, rho, *, V_max=None):
    """THE optimism coefficient of this toolkit (Theorems J.1/J.2 with the proof's normalisation).

    Returns α = α_thm·(R_max + V_max)² = β (R_max + V_max) sqrt(log(2N(Π,ε_disc)T/ρ)/(SEC·T)), the coefficient
    of Σ log π(ỹ|x) when the squared loss has weight 1 (what :class:`sharpsim.algorithms.XPOConfig` expects);
    α_thm = (β/(R_max+V_max)) sqrt(…) is the theorem's, whose squared loss carries 1/(α_thm (V_max+R_max)²).
    ``V_max`` defaults to β·R_max (Theorem J.2's proof, step 1). The printed "/δ" is read as "/ρ".
    """
    b, r = positive(beta, "beta"), positive(R_max, "R_max")
    v = b * r if V_max is None else at_least(V_max, 0.0, "V_max")
    return evaluate(
        XPO_ALPHA, beta=b, R_max=r, V_max=v,
        log_cover_size=at_least(log_cover_size, 0.0, "log_cover_size"), T=at_least(T, 1.0, "T"),
        SEC=positive(SEC, "SEC"), rho=open_unit(rho, "rho"),
    )[()]


def xpo_iterations(epsilon, delta, rho, beta, R_max, SEC, log_cover_size, *, C: float = 1.0, max_iter: int = 200):
    """Smallest T (up to the fixed point) with T ≥ C R_max² SEC log(2N(Π,ε_disc)T/ρ)/(ε²δ²β²) (Theorem J.2).

    The condition is implicit in T (T appears in the log); it is solved by the monotone fixed-point iteration
    T ← C R_max² SEC (log N + log(2T/ρ))/(ε²δ²β²), started at T = 1. ``C`` is the unspecified C_J.2.
    """
    eps, dlt, r = open_unit(epsilon, "epsilon"), open_unit(delta, "delta"), open_unit(rho, "rho")
    scale = positive(C, "C") * positive(R_max, "R_max") ** 2 * positive(SEC, "SEC") / (
        eps**2 * dlt**2 * positive(beta, "beta") ** 2
    )
    logN = at_least(log_cover_size, 0.0, "log_cover_size")
    t = np.ones(np.broadcast(scale, logN, r).shape)
    for _ in range(max_iter):
        new = np.maximum(scale * (logN + np.log(2 * t / r)), 1.0)
        if np.allclose(new, t, rtol=1e-12):
            break
        t = new
    return ceil_int(t)


def xpo_eps_disc(epsilon, delta, SEC, T, *, c: float = 1.0):
    """Discretisation scale ε_disc = c εδ / sqrt(SEC·T) (largest allowed by Theorem J.2, c = c_J.2)."""
    return (
        positive(c, "c") * open_unit(epsilon, "epsilon") * open_unit(delta, "delta")
        / np.sqrt(positive(SEC, "SEC") * at_least(T, 1.0, "T"))
    )[()]
