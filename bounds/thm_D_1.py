r"""Adaptive SFT-Sharpening (App. D): Theorem D.1 and the stopping rule of Eq. (10).

With μ_stop = ln(2δ^{-1}) and Assumption D.1, with probability ≥ 1 − ρ,

    P_x[π̂(y*(x)|x) ≤ 1 − δ] ≲ log(|Π|ρ^{-1}) / (δ n),      E[m] ≤ n (1 + μ_stop) C̄_cov  (proof of D.1),

so n ≍ log(|Π|ρ^{-1})/(δε) prompts give

    E[m] = O( C̄_cov log(|Π|ρ^{-1}) log(δ^{-1}) / (δ ε) )          -- 1/ε instead of 1/ε².
"""

from __future__ import annotations

import sympy

from bounds._core import Bound, Condition
from bounds._recipes import evaluate, open_unit
from bounds._symbols import (DELTA_IN_UNIT, EPSILON_IN_UNIT, RHO_IN_UNIT, C_cov_bar, c, delta, epsilon, log_class_over_rho,
                             log_class_size, mu_stop, n, rho)
from bounds.thm_4_1 import SFT_NUM_PROMPTS, sft_num_prompts

__all__ = [
    "THM_D_1", "THM_D_1_ERROR", "THM_D_1_QUERIES", "ADAPTIVE_STOP", "ADAPTIVE_NUM_PROMPTS", "adaptive_stop_parameter",
    "adaptive_sft_parameters",
]

#: μ_stop of Theorem D.1: ln(2δ^{-1})
ADAPTIVE_STOP = sympy.log(2 / delta)
#: n of Theorem D.1: c log(|Π|ρ^{-1}) / (δ ε), the same n as Theorem 4.1's
ADAPTIVE_NUM_PROMPTS = SFT_NUM_PROMPTS

_CONDITIONS = (
    DELTA_IN_UNIT,
    RHO_IN_UNIT,
    Condition("μ_stop = ln(2δ^{-1}) in the stopping rule of Eq. (10)"),
    Condition("Assumption D.1 (realizability): π^AdaBoN_{μ_stop} ∈ Π"),
)

THM_D_1 = Bound(
    name="thm_D_1",
    reference="Theorem D.1",
    kind="upper",
    quantity="E[m] queries sufficient for P_x[π̂(y*(x)|x) ≤ 1 − δ] ≤ ε w.p. ≥ 1 − ρ (adaptive)",
    expr=c * C_cov_bar * log_class_over_rho * sympy.log(1 / delta) / (delta * epsilon),
    symbols={"C_cov_bar": C_cov_bar, "log_class_size": log_class_size, "rho": rho, "delta": delta, "epsilon": epsilon},
    explicit_constant=False,
    constant=c,
    conditions=(EPSILON_IN_UNIT,) + _CONDITIONS,
    notes="The statement prints C_cov; the proof and the final bound use C̄_cov = E_x[1/max_y π_base(y|x)] ≥ C_cov.",
)

THM_D_1_ERROR = Bound(
    name="thm_D_1_error",
    reference="Theorem D.1 (error bound)",
    kind="upper",
    quantity="P_x[π̂(y*(x)|x) ≤ 1 − δ] w.p. ≥ 1 − ρ, n prompts (adaptive)",
    expr=c * log_class_over_rho / (delta * n),
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
    """Theorem D.1's recipe ``(n, mu_stop)``: n = ⌈c log(|Π|/ρ)/(δε)⌉ prompts (Theorem 4.1's n) and μ_stop = ln(2/δ)."""
    return sft_num_prompts(epsilon, delta, rho, log_class_size, c=c), adaptive_stop_parameter(delta)
