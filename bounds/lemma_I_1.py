r"""The adaptive stopping rule: Lemma I.1 (App. I), explicit constants.

Let P be a distribution on a discrete Y, y* = argmax P (a set, ties allowed), P* = max_y P(y) and
y_1, y_2, … ~ P i.i.d. For the stopping rule of Eq. (10),

    N_μ := inf{ k : 1 / max_{j≤k} P(y_j) ≤ k / μ },

* E[N_μ] ≤ (μ + 1/|y*|) / P*;
* for any stopping time τ ≥ N_μ, P[ŷ_τ ∉ y*] ≤ e^{−|y*| μ}, with ŷ_τ the most likely response seen up to τ.

The symbol ``mu_stop`` is the paper's μ (renamed: μ is also the prompt distribution); ``n_argmax`` is |y*|.
"""

from __future__ import annotations

import sympy

from bounds._core import Bound, Condition
from bounds._symbols import P_star, mu_stop, n_argmax

__all__ = ["LEMMA_I_1_STOP", "LEMMA_I_1_ERROR"]

_CONDITIONS = (
    Condition("P* = max_y P(y) ∈ (0, 1]", P_star <= 1),
    Condition("|y*| ≥ 1 is the number of maximisers of P", n_argmax >= 1),
    Condition("μ_stop > 0"),
)

LEMMA_I_1_STOP = Bound(
    name="lemma_I_1_stop",
    reference="Lemma I.1 (App. I), expected stopping time",
    kind="upper",
    quantity="E[N_μ] (samples drawn by the stopping rule of Eq. (10))",
    expr=(mu_stop + 1 / n_argmax) / P_star,
    symbols={"mu_stop": mu_stop, "n_argmax": n_argmax, "P_star": P_star},
    explicit_constant=True,
    conditions=_CONDITIONS,
)

LEMMA_I_1_ERROR = Bound(
    name="lemma_I_1_error",
    reference="Lemma I.1 (App. I), error probability",
    kind="upper",
    quantity="P[ŷ_τ ∉ y*] for any stopping time τ ≥ N_μ",
    expr=sympy.exp(-n_argmax * mu_stop),
    symbols={"mu_stop": mu_stop, "n_argmax": n_argmax},
    explicit_constant=True,
    conditions=_CONDITIONS[1:],
    notes="With μ_stop = ln(2/δ): π^AdaBoN(y*(x)|x) ≥ 1 − δ/2 for every x.",
)
