r"""Adaptive SFT-Sharpening (App. D): Theorem D.1 and the stopping rule of Eq. (10).

With μ_stop = ln(2δ^{-1}) and Assumption D.1, with probability ≥ 1 − ρ,

    P_x[π̂(y*(x)|x) ≤ 1 − δ] ≲ log(|Π|ρ^{-1}) / (δ n),      E[m] ≤ n (1 + μ_stop) C̄_cov  (proof of D.1),

so n ≍ log(|Π|ρ^{-1})/(δε) prompts give

    E[m] = O( C̄_cov log(|Π|ρ^{-1}) log(δ^{-1}) / (δ ε) )          -- 1/ε instead of 1/ε².
"""

from __future__ import annotations

import sympy

from bounds._core import Bound, Condition
from bounds._recipes import at_least, ceil_int, evaluate, open_unit, positive
from bounds._symbols import C_cov_bar, c, delta, epsilon, log_class_size, mu_stop, n, rho

__all__ = [
    "THM_D_1", "THM_D_1_ERROR", "THM_D_1_QUERIES", "ADAPTIVE_STOP", "ADAPTIVE_NUM_PROMPTS", "adaptive_stop_parameter",
    "adaptive_sft_parameters",
]

_LOG_CLASS_OVER_RHO = log_class_size + sympy.log(1 / rho)

#: μ_stop of Theorem D.1: ln(2δ^{-1})
ADAPTIVE_STOP = sympy.log(2 / delta)
#: n of Theorem D.1: c log(|Π|ρ^{-1}) / (δ ε)
ADAPTIVE_NUM_PROMPTS = c * _LOG_CLASS_OVER_RHO / (delta * epsilon)

_CONDITIONS = (
    Condition("δ ∈ (0, 1)", delta < 1),
    Condition("ρ ∈ (0, 1)", rho < 1),
    Condition("μ_stop = ln(2δ^{-1}) in the stopping rule of Eq. (10)"),
    Condition("Assumption D.1 (realizability): π^AdaBoN_{μ_stop} ∈ Π"),
)

THM_D_1 = Bound(
    name="thm_D_1",
    reference="Theorem D.1",
    kind="upper",
    quantity="E[m] queries sufficient for P_x[π̂(y*(x)|x) ≤ 1 − δ] ≤ ε w.p. ≥ 1 − ρ (adaptive)",
    expr=c * C_cov_bar * _LOG_CLASS_OVER_RHO * sympy.log(1 / delta) / (delta * epsilon),
    symbols={"C_cov_bar": C_cov_bar, "log_class_size": log_class_size, "rho": rho, "delta": delta, "epsilon": epsilon},
    explicit_constant=False,
    constant=c,
    conditions=(Condition("ε ∈ (0, 1)", epsilon < 1),) + _CONDITIONS,
    notes="The statement prints C_cov; the proof and the final bound use C̄_cov = E_x[1/max_y π_base(y|x)] ≥ C_cov.",
)

THM_D_1_ERROR = Bound(
    name="thm_D_1_error",
    reference="Theorem D.1 (error bound)",
    kind="upper",
    quantity="P_x[π̂(y*(x)|x) ≤ 1 − δ] w.p. ≥ 1 − ρ, n prompts (adaptive)",
    expr=c * _LOG_CLASS_OVER_RHO / (delta * n),
    symbols={"log_class_size": log_class_size, "rho": rho, "delta": delta, "n": n},
    explicit_constant=False,
    constant=c,
    conditions=_CONDITIONS,
)

THM_D_1_QUERIES = Bound(
    name="thm_D_1_queries",
    reference="Theorem D.1 (proof), via Lemma I.1",
    kind="upper",
    quantity="E[m] = n·E_x[E N_{μ_stop}(x)] queries of adaptive SFT-Sharpening with n prompts",
    expr=n * (1 + mu_stop) * C_cov_bar,
    symbols={"n": n, "mu_stop": mu_stop, "C_cov_bar": C_cov_bar},
    explicit_constant=True,
    conditions=(Condition("μ_stop > 0; any π_base (Lemma I.1 with |y*| ≥ 1)"),),
    notes="E[N_μ] ≤ (μ + 1/|y*|)/P* ≤ (1 + μ)/max_y π_base(y|x), averaged over x ~ μ.",
)


def adaptive_stop_parameter(delta):
    """μ_stop = ln(2δ^{-1}) (Theorem D.1), which makes π^AdaBoN(y*(x)|x) ≥ 1 − δ/2 for every x (Lemma I.1)."""
    return evaluate(ADAPTIVE_STOP, delta=open_unit(delta, "delta"))[()]


def adaptive_sft_parameters(epsilon, delta, rho, log_class_size, *, c: float = 1.0):
    """Theorem D.1's recipe ``(n, mu_stop)``: n = ⌈c log(|Π|/ρ)/(δε)⌉ prompts and μ_stop = ln(2/δ)."""
    eps, dlt, r = open_unit(epsilon, "epsilon"), open_unit(delta, "delta"), open_unit(rho, "rho")
    logpi = at_least(log_class_size, 0.0, "log_class_size")
    cc = positive(c, "c")
    n_val = evaluate(ADAPTIVE_NUM_PROMPTS, c=cc, log_class_size=logpi, rho=r, delta=dlt, epsilon=eps)
    return ceil_int(n_val), adaptive_stop_parameter(dlt)
