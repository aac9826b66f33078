r"""MLE for conditional density estimation: Lemma F.1 (App. F.2), explicit constant.

If π* ∈ Π (finite) and (x_i, y_i), i ≤ n, are i.i.d. with x ~ μ, y ~ π*(·|x), then with probability ≥ 1 − ρ the
maximum-likelihood estimate π̂ = argmax_{π∈Π} Σ_i log π(y_i|x_i) satisfies

    E_{x~μ}[ D_H²(π̂(·|x), π*(·|x)) ] ≤ 2 log(|Π| ρ^{-1}) / n,

with D_H²(P, Q) = Σ_y (√P(y) − √Q(y))² (no factor 1/2, so D_H² ∈ [0, 2]).
"""

from __future__ import annotations

from bounds._core import Bound, Condition
from bounds._symbols import RHO_IN_UNIT, log_class_over_rho, log_class_size, n, rho

__all__ = ["LEMMA_F_1"]

LEMMA_F_1 = Bound(
    name="lemma_F_1",
    reference="Lemma F.1 (App. F.2)",
    kind="upper",
    quantity="E_{x~μ}[D_H²(π̂(·|x), π*(·|x))] of the MLE, w.p. ≥ 1 − ρ (D_H² without the factor 1/2)",
    expr=2 * log_class_over_rho / n,
    symbols={"log_class_size": log_class_size, "rho": rho, "n": n},
    explicit_constant=True,
    conditions=(
        RHO_IN_UNIT,
        Condition("realizability: π* ∈ Π, Π finite"),
        Condition("n i.i.d. pairs x ~ μ, y ~ π*(·|x)"),
    ),
    notes="Hellinger distance without the factor 1/2 (theory.md §3).",
)
