r"""RLHF-Sharpening with the DPO/REBEL-style loss of Eq. (8): Theorem 4.2 and Theorem 4.2′.

Theorem 4.2. Let β ≲ γ_margin δ ε. Under Assumptions 4.2 (margin γ_margin), 4.3 (π*_β ∈ Π) and 4.4 (C_conc,
C_loss), for suitable n, with probability ≥ 1 − ρ, P_x[π̂(y*(x)|x) ≤ 1 − δ] ≤ ε with

    m = Õ( C_conc log³(C_loss |Π| ρ^{-1}) / (γ_margin² δ² ε²) ),      N = 2 responses per prompt, m = 2n.

Theorem 4.2′ (general γ). With probability ≥ 1 − ρ,

    P_x[π̂(y*_γ(x)|x) ≤ 1 − δ] ≲ (1/(γ_margin δ)) ( sqrt(C_conc log³(C_loss|Π|ρ^{-1}) / n) + β log C_conc + γ ),

up to the Õ factors (log n, log C_conc, log log |Π|, C_loss, ρ^{-1}), which are dropped here.
"""

from __future__ import annotations

import sympy

from bounds._core import Bound, Condition
from bounds._recipes import evaluate, open_unit, positive
from bounds._symbols import (
    C_conc, C_loss, beta, c, c_beta, delta, epsilon, gamma, gamma_margin, log_class_size, n, rho,
)

__all__ = ["THM_4_2", "THM_4_2_PRIME", "DPO_BETA", "dpo_beta"]

_LOG3 = (sympy.log(C_loss / rho) + log_class_size) ** 3  # log³(C_loss |Π| ρ^{-1})

#: the KL coefficient β = c_β γ_margin δ ε of Theorem 4.2's condition β ≲ γ_margin δ ε
DPO_BETA = c_beta * gamma_margin * delta * epsilon

_ASSUMPTIONS = (
    Condition("Assumption 4.2 (margin): max_y π_base(y|x) ≥ (1 + γ_margin) π_base(y'|x) for y' ∉ y*(x)"),
    Condition("Assumption 4.3 (realizability): π*_β ∝ π_base^{1+1/β} belongs to Π"),
    Condition("Assumption 4.4: 𝒞_π ≤ C_conc (C_conc ≥ C_cov) and 𝒞_{π_base/π;β} ≤ C_loss (C_loss ≥ |Y|) for π ∈ Π",
              sympy.And(C_conc >= 1, C_loss >= 1)),
)

THM_4_2 = Bound(
    name="thm_4_2",
    reference="Theorem 4.2",
    kind="upper",
    quantity="m = 2n queries sufficient for P_x[π̂(y*(x)|x) ≤ 1 − δ] ≤ ε w.p. ≥ 1 − ρ (DPO, Eq. (8))",
    expr=c * C_conc * _LOG3 / (gamma_margin**2 * delta**2 * epsilon**2),
    symbols={
        "C_conc": C_conc, "C_loss": C_loss, "log_class_size": log_class_size, "rho": rho,
        "gamma_margin": gamma_margin, "delta": delta, "epsilon": epsilon,
    },
    explicit_constant=False,
    constant=c,
    conditions=(
        Condition("ε, δ, ρ ∈ (0, 1)", sympy.And(epsilon < 1, delta < 1, rho < 1)),
        Condition("β ≲ γ_margin δ ε: β ≤ c_β γ_margin δ ε for an absolute constant c_β (KL coefficient small enough "
                  "that π*_β is sharp enough)", beta <= DPO_BETA),
    ) + _ASSUMPTIONS,
    notes="Õ: polylogarithmic factors are dropped; the expression keeps the printed log³.",
)

THM_4_2_PRIME = Bound(
    name="thm_4_2_prime",
    reference="Theorem 4.2′ (App. J)",
    kind="upper",
    quantity="P_x[π̂(y*_γ(x)|x) ≤ 1 − δ] w.p. ≥ 1 − ρ, n preference triples (DPO)",
    expr=c / (gamma_margin * delta) * (sympy.sqrt(C_conc * _LOG3 / n) + beta * sympy.log(C_conc) + gamma),
    symbols={
        "C_conc": C_conc, "C_loss": C_loss, "log_class_size": log_class_size, "rho": rho, "n": n,
        "beta": beta, "gamma": gamma, "gamma_margin": gamma_margin, "delta": delta,
    },
    explicit_constant=False,
    constant=c,
    conditions=(Condition("δ, ρ ∈ (0, 1)", sympy.And(delta < 1, rho < 1)), Condition("β ≤ 1", beta <= 1),
                Condition("γ ∈ [0, 1): approximate-maximiser slack; Assumptions J.1/J.2 w.r.t. γ")) + _ASSUMPTIONS,
    notes="Õ hides factors logarithmic in n and C_conc and doubly logarithmic in |Π|, C_loss, 1/ρ (dropped here).",
)


def dpo_beta(epsilon, delta, gamma_margin, *, c_beta: float = 1.0):
    """Theorem 4.2's KL coefficient β = c_β γ_margin δ ε (the theorem only asks β ≲ γ_margin δ ε)."""
    return evaluate(
        DPO_BETA, c_beta=positive(c_beta, "c_beta"), gamma_margin=positive(gamma_margin, "gamma_margin"),
        delta=open_unit(delta, "delta"), epsilon=open_unit(epsilon, "epsilon"),
    )[()]
