r"""Inference-time best-of-N: Proposition C.1 (App. C), explicit constants.

Fix x, ρ ∈ (0,1), γ ∈ [0,1), and let p = π_base(y*_γ(x)|x) (the ``mass`` symbol). BoN with r_self = log π_base
returns ŷ ∈ y*_γ(x) exactly when at least one of the N samples lands in y*_γ(x), so

    P[ŷ ∉ y*_γ(x)] = (1 − p)^N ≤ e^{−N p},      and  N ≥ log(ρ^{-1}) / p  ⇒  P[ŷ ∉ y*_γ(x)] ≤ ρ.
"""

from __future__ import annotations

import numpy as np
import sympy

from bounds._core import Bound, Condition
from bounds._recipes import ceil_int, evaluate, open_unit
from bounds._symbols import RHO_IN_UNIT, N, mass, rho

__all__ = ["PROP_C_1", "PROP_C_1_BUDGET", "BON_EXACT_FAILURE", "bon_budget"]

#: the exact failure probability (1 − p)^N that the proposition bounds
BON_EXACT_FAILURE = (1 - mass) ** N

PROP_C_1 = Bound(
    name="prop_C_1",
    reference="Proposition C.1 (App. C)",
    kind="upper",
    quantity="P[BoN ∉ y*_γ(x)] with N samples, mass = π_base(y*_γ(x)|x)",
    expr=sympy.exp(-N * mass),
    symbols={"N": N, "mass": mass},
    explicit_constant=True,
    conditions=(Condition("mass = π_base(y*_γ(x)|x) ∈ (0, 1]", mass <= 1), Condition("N ∈ ℕ")),
    notes="(1 − p)^N ≤ e^{−Np} from log(1/(1 − p)) ≥ p.",
)

PROP_C_1_BUDGET = Bound(
    name="prop_C_1_budget",
    reference="Proposition C.1 (App. C), sample size",
    kind="upper",
    quantity="N sufficient for P[BoN ∈ y*_γ(x)] ≥ 1 − ρ",
    expr=sympy.log(1 / rho) / mass,
    symbols={"rho": rho, "mass": mass},
    explicit_constant=True,
    conditions=(RHO_IN_UNIT, Condition("mass = π_base(y*_γ(x)|x) ∈ (0, 1]", mass <= 1)),
)


def bon_budget(rho, mass):
    """Smallest integer N with N ≥ log(ρ^{-1})/mass (Proposition C.1)."""
    p = np.asarray(mass, dtype=float)
    if np.any(~np.isfinite(p)) or np.any((p <= 0) | (p > 1)):
        raise ValueError(f"mass must lie in (0, 1], got {mass!r}.")
    return ceil_int(evaluate(PROP_C_1_BUDGET.expr, rho=open_unit(rho, "rho"), mass=p))
