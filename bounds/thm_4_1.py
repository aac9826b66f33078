r"""Sample complexity of SFT-Sharpening (BoN + MLE): Theorem 4.1 (Eq. 7) and Theorem 4.1′ (App. I).

Theorem 4.1. With n = c log(|Π|ρ^{-1})/(δε) prompts and N = c C_cov log(2δ^{-1})/ε responses per prompt,
with probability ≥ 1 − ρ, P_x[π̂(y*(x)|x) ≤ 1 − δ] ≤ ε, using

    m = O( C_cov log(|Π|ρ^{-1}) log(δ^{-1}) / (δ ε²) )                                     (Eq. 7)

Theorem 4.1′. With N = N* log(2δ^{-1}), for any n, with probability ≥ 1 − ρ, simultaneously for all γ,

    P_x[π̂(y*_γ(x)|x) ≤ 1 − 2δ] ≲ (1/δ) log(|Π|ρ^{-1})/n + C_cov,γ / N* .
"""

from __future__ import annotations

import sympy

from bounds._core import Bound, Condition
from bounds._recipes import at_least, ceil_int, evaluate, open_unit, positive
from bounds._symbols import (DELTA_IN_UNIT, EPSILON_IN_UNIT, RHO_IN_UNIT, C_cov, C_cov_gamma, N_star, c, delta, epsilon,
                             log_class_over_rho, log_class_size, n, rho)

__all__ = ["THM_4_1", "THM_4_1_PRIME", "SFT_NUM_PROMPTS", "SFT_NUM_RESPONSES", "sft_parameters",
           "sft_responses_per_prompt", "THEOREM_4_1_C"]

#: n of Theorem 4.1: c log(|Π|ρ^{-1}) / (δ ε)
SFT_NUM_PROMPTS = c * log_class_over_rho / (delta * epsilon)
#: N of Theorem 4.1: c C_cov log(2δ^{-1}) / ε
SFT_NUM_RESPONSES = c * C_cov * sympy.log(2 / delta) / epsilon

_CONDITIONS = (
    EPSILON_IN_UNIT,
    DELTA_IN_UNIT,
    RHO_IN_UNIT,
    Condition("Assumption 4.1 (realizability): π^BoN_N ∈ Π for the N used"),
    Condition("Π is finite (log|Π| < ∞)"),
)

THM_4_1 = Bound(
    name="thm_4_1",
    reference="Theorem 4.1, Eq. (7)",
    kind="upper",
    quantity="m = n·N queries sufficient for P_x[π̂(y*(x)|x) ≤ 1 − δ] ≤ ε w.p. ≥ 1 − ρ",
    expr=c * C_cov * log_class_over_rho * sympy.log(1 / delta) / (delta * epsilon**2),
    symbols={"C_cov": C_cov, "log_class_size": log_class_size, "rho": rho, "delta": delta, "epsilon": epsilon},
    explicit_constant=False,
    constant=c,
    conditions=_CONDITIONS,
    notes=(
        "Eq. (7) prints log(δ^{-1}); the recipe n·N = c² C_cov log(|Π|/ρ) log(2δ^{-1})/(δε²) is the same order "
        "for δ ≤ 1/2. Minimax-optimal in C_cov, log|Π| and ε for constant δ (matches Theorem 3.1)."
    ),
)

THM_4_1_PRIME = Bound(
    name="thm_4_1_prime",
    reference="Theorem 4.1′ (App. I)",
    kind="upper",
    quantity="P_x[π̂(y*_γ(x)|x) ≤ 1 − 2δ] w.p. ≥ 1 − ρ, with N = N* log(2δ^{-1}) responses per prompt",
    expr=c * (log_class_over_rho / (delta * n) + C_cov_gamma / N_star),
    symbols={
        "log_class_size": log_class_size, "rho": rho, "delta": delta, "n": n, "N_star": N_star,
        "C_cov_gamma": C_cov_gamma,
    },
    explicit_constant=False,
    constant=c,
    conditions=(
        DELTA_IN_UNIT,
        RHO_IN_UNIT,
        Condition("N = N* log(2δ^{-1}) responses per prompt, N* ∈ ℕ"),
        Condition("Assumption 4.1 (realizability) for that N; holds simultaneously for all γ ∈ (0, 1)"),
    ),
    notes=(
        "As printed the display uses the threshold 1 − 2δ while the 'in particular' statement (n = C log|Π|/(δε),"
        " N* = C C_cov,γ/ε) concludes P[π̂(y*_γ) ≤ 1 − δ] ≤ ε; we keep 1 − 2δ for the display."
    ),
)


#: The absolute constant c of Theorem 4.1's recipe fixed by this toolkit: the smallest round constant for which
#: the miniature Theorem 4.1 tests (hard instance and random planted-mode instances with realizable BoN classes)
#: show ≥ 1 − ρ of trials sharpened; at c = 0.05 (hard) / 0.01 (planted) they fail (tests/test_sft.py).
THEOREM_4_1_C = 1.0


def sft_parameters(epsilon, delta, rho, C_cov, log_class_size, *, c: float = THEOREM_4_1_C):
    """Theorem 4.1's recipe ``(n, N)``: n = ⌈c log(|Π|/ρ)/(δε)⌉, N = ⌈c C_cov log(2/δ)/ε⌉.

    ``c`` is the theorem's unspecified absolute constant (default :data:`THEOREM_4_1_C`). The one home of the
    recipe: ``sharpsim.algorithms.sft_parameters`` and the bridge planner's ``recommend_n_sft`` call it.
    Inputs broadcast; scalars give Python ints.
    """
    n_val = sft_num_prompts(epsilon, delta, rho, log_class_size, c=c)
    return n_val, sft_responses_per_prompt(epsilon, delta, C_cov, c=c)


def sft_num_prompts(epsilon, delta, rho, log_class_size, *, c: float = THEOREM_4_1_C):
    """Theorem 4.1's n = ⌈c log(|Π|/ρ)/(δε)⌉ alone (also Theorem D.1's n, :func:`bounds.adaptive_sft_parameters`)."""
    eps, dlt, r = open_unit(epsilon, "epsilon"), open_unit(delta, "delta"), open_unit(rho, "rho")
    logpi = at_least(log_class_size, 0.0, "log_class_size")
    n_val = evaluate(SFT_NUM_PROMPTS, c=positive(c, "c"), log_class_size=logpi, rho=r, delta=dlt, epsilon=eps)
    return ceil_int(n_val)


def sft_responses_per_prompt(epsilon, delta, C_cov, *, c: float = THEOREM_4_1_C):
    """Theorem 4.1's N = ⌈c C_cov log(2/δ)/ε⌉ alone (no class size or ρ needed)."""
    eps, dlt = open_unit(epsilon, "epsilon"), open_unit(delta, "delta")
    cov = at_least(C_cov, 1.0, "C_cov")
    return ceil_int(evaluate(SFT_NUM_RESPONSES, c=positive(c, "c"), C_cov=cov, delta=dlt, epsilon=eps))
