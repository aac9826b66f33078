r"""Lower bounds for sharpening: Theorem 3.1, Theorem 3.1′ (App. H) and Theorem D.2 (adaptive).

All are statements about a *class* Π built from the hard instance of App. H (theory.md §5): any
sample-and-evaluate algorithm that sharpens every π_base ∈ Π needs at least this many queries, up to an
absolute constant. ``C_cov`` stands for the class coverage bound C (sup_π C_cov(π) ≲ C, or C_cov,γ,p in 3.1′)
and ``log_class_size`` for log|Π| ≍ d(1 + log(C ε^{-1/p})).

* Theorem 3.1:   m ≳ C log|Π| / (ε² (1 + log(C/ε)))
* Theorem D.2:   E[m] ≳ C log|Π| / (ε (1 + log(C/ε)))                   (adaptive framework)
* Theorem 3.1′:  m ≳ C log|Π| / (ε^{1+1/p} (1 + log(C ε^{-1/p})))        (fixed N)
                 m ≳ C log|Π| / (ε^{1/p}   (1 + log(C ε^{-1/p})))        (adaptive)
  with γ = 1/2; p = 1 recovers Theorems 3.1 and D.2.
"""

from __future__ import annotations

import numpy as np
import sympy

from bounds._core import Bound, Condition
from bounds._symbols import EPSILON_IN_UNIT, C_cov, c, epsilon, log_class_size, p

__all__ = ["THM_3_1", "THM_D_2", "THM_3_1_PRIME", "THM_3_1_PRIME_ADAPTIVE", "hard_instance_parameters",
           "HARD_INSTANCE_C1"]

_COMMON = (
    EPSILON_IN_UNIT,
    Condition("C ≥ 1 (class coverage bound: sup_π C_cov(π) ≲ C)", C_cov >= 1),
    Condition("log|Π| ≍ d (1 + log(C ε^{-1/p})) for an integer d ≥ 1 (the class is the App. H hard class)"),
    Condition("y^π(x) is a singleton for every π ∈ Π and x"),
)


def _lower(name: str, reference: str, quantity: str, eps_power, log_term, conditions, notes: str, **extra) -> Bound:
    """The four lower bounds share one form, c C log|Π| / (ε^eps_power · log_term), with an absolute constant c;
    ``extra`` are further symbols of the exponent (p)."""
    return Bound(
        name=name,
        reference=reference,
        kind="lower",
        quantity=quantity,
        expr=c * C_cov * log_class_size / (epsilon**eps_power * log_term),
        symbols={"C_cov": C_cov, "log_class_size": log_class_size, "epsilon": epsilon, **extra},
        explicit_constant=False,
        constant=c,
        conditions=conditions,
        notes=notes,
    )


_LOG = 1 + sympy.log(C_cov / epsilon)
THM_3_1 = _lower("thm_3_1", "Theorem 3.1",
                 "m = n·N queries needed for E[P_x[π̂(y^{π_base}(x)|x) > 1/2]] ≥ 1 − ε", 2, _LOG, _COMMON,
                 "Covers every (ε, 1/2 − δ)-sharpening algorithm with δ > 0 in the sample-and-evaluate framework.")
THM_D_2 = _lower("thm_D_2", "Theorem D.2", "E[m] queries (adaptive sample-and-evaluate, Definition D.1)", 1, _LOG,
                 _COMMON, "ε instead of ε² compared with Theorem 3.1: adaptivity saves a factor 1/ε.")

_LOG_P = 1 + sympy.log(C_cov * epsilon ** (-1 / p))
_PRIME_CONDITIONS = (
    EPSILON_IN_UNIT,
    Condition("C ≥ 1 (bound on C_cov,γ,p with γ = 1/2)", C_cov >= 1),
    Condition("p ≥ 1 is an integer", p >= 1),
    Condition("γ = 1/2; y^π_γ(x) is a singleton for every π ∈ Π and x"),
)
THM_3_1_PRIME = _lower("thm_3_1_prime", "Theorem 3.1′ (App. H), sample-and-evaluate",
                       "m = n·N queries needed for E[P_x[π̂(y^{π_base}_γ(x)|x) > 1/2]] ≥ 1 − ε", 1 + 1 / p, _LOG_P,
                       _PRIME_CONDITIONS, "p = 1 recovers Theorem 3.1.", p=p)
THM_3_1_PRIME_ADAPTIVE = _lower("thm_3_1_prime_adaptive", "Theorem 3.1′ (App. H), adaptive",
                                "E[m] queries (adaptive sample-and-evaluate)", 1 / p, _LOG_P, _PRIME_CONDITIONS,
                                "p = 1 recovers Theorem D.2.", p=p)


#: The adaptive hard instance's absolute constant c₁ (Δ = c₁ ε, Theorem 3.1′ adaptive part; the paper leaves it
#: unspecified). The toolkit fixes c₁ = 16, the non-adaptive instance's value, so ONE instance serves both the
#: fixed-N and the adaptive experiments (adaptive_vs_fixed compares them on the same μ) and Δ/ε is the same in
#: every hard-instance experiment.
HARD_INSTANCE_C1 = 16.0


def hard_instance_parameters(epsilon, C, *, p: int = 1, adaptive: bool = False, c1: float = HARD_INSTANCE_C1):
    """Parameters of the App. H hard instance: ``(Delta, M)``; the one home of this choice
    (``sharpsim.instances.hard_instance_for`` calls it).

    Δ = 16 ε (non-adaptive) or c₁ ε (adaptive, c₁ unspecified in the paper; default :data:`HARD_INSTANCE_C1`), and
    M = ⌈1 + C ε^{-1/p}⌉ (the paper only gives M ≍ 1 + C ε^{-1/p}); Lemmas H.3/H.4 need M ≥ 8 / M ≥ 6.
    """
    eps = np.asarray(epsilon, dtype=float)
    if np.any((eps <= 0) | (eps >= 1)):
        raise ValueError("epsilon must lie in (0, 1).")
    if np.any(np.asarray(C, dtype=float) < 1):
        raise ValueError("C must be >= 1.")
    if int(p) != p or p < 1:
        raise ValueError(f"p must be an integer >= 1, got {p!r}.")
    delta_mass = (c1 if adaptive else 16.0) * eps
    M = np.ceil(1 + np.asarray(C, dtype=float) * eps ** (-1.0 / p)).astype(int)
    return delta_mass, M

