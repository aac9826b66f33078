"""Fitting primitives shared by the policy classes and the algorithms (one home each).

* :func:`gradient_fit` — THE projected optax loop (every gradient-fitted class and algorithm uses it).
* :func:`select_with_ties` / :func:`tie_priority` — exact argmin of an additive objective over a finite
  class with explicit tie-breaking (the Eq. 8 / DPO / XPO minimisers of :class:`~sharpsim.classes.FiniteClass`).
* :func:`pair_residual` — the Eq. (8) residual.

This module sits below :mod:`sharpsim.classes` (which implements the fits as methods of each class) and
:mod:`sharpsim.algorithms` (which re-exports these names from ``_common``).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from sharpsim._fit import projected_fit
from sharpsim._validation import check_positive, check_positive_int

__all__ = [
    "NonFiniteLossError",
    "FitConfig",
    "gradient_fit",
    "pair_residual",
    "TIE_RTOL",
    "TIE_BREAKS",
    "check_tie_break",
    "tie_priority",
    "select_with_ties",
]


class NonFiniteLossError(FloatingPointError, ValueError):
    """A gradient fit met a NaN/inf loss; the message names the fitting step and the offending values."""


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Gradient fitting for parametric classes: ``steps`` optax steps (adam by default), projected.

    ``learning_rate`` and ``steps`` are static (part of the compiled shape). The fitted value approximates
    the exact argmin; the final loss and the first non-finite step are reported in the diagnostics.
    """

    steps: int = 300
    learning_rate: float = 0.05
    optimizer: str = "adam"

    def __post_init__(self):
        check_positive_int(self.steps, "steps")
        check_positive(self.learning_rate, "learning_rate")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}.")

    def make(self) -> optax.GradientTransformation:
        return optax.adam(self.learning_rate) if self.optimizer == "adam" else optax.sgd(self.learning_rate)


def gradient_fit(loss_fn: Callable, params0, project: Callable, fit: FitConfig, *, opt_state=None):
    """Projected gradient descent: ``fit.steps`` steps of ``fit``'s optax optimizer on ``loss_fn``, projecting after
    each (the one loop: :func:`sharpsim._fit.projected_fit`).

    Stops updating at the first non-finite loss or gradient (the parameters stay at the last finite
    iterate). Returns ``(params, opt_state, info)`` with ``info = {"final_loss", "nonfinite_step"
    (−1 if none), "nonfinite_loss", "nonfinite_grad_norm"}``.
    """
    return projected_fit(loss_fn, params0, project, fit.make(), fit.steps, opt_state=opt_state)


def pair_residual(beta, lp_y, lp_yp, r_y, r_yp):
    """The Eq. (8) residual β log(π(y)/π_base(y)) − β log(π(y')/π_base(y')) − (r(y) − r(y')), r = log π_base."""
    return beta * (lp_y - r_y) - beta * (lp_yp - r_yp) - (r_y - r_yp)


#: Relative tolerance under which two exact finite-class objectives count as tied: float32 rounding of
#: the per-pair residuals (~1e-6 each) must not decide between candidates the data cannot tell apart.
TIE_RTOL = 1e-5
TIE_BREAKS = ("first", "random")


def check_tie_break(value: str) -> str:
    if value not in TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {value!r}.")
    return value


def tie_priority(key, cls, tie_break: str):
    """Priority ``[X, K]`` among tied candidates: −index ("first": lowest index wins) or i.i.d. uniform
    ("random": a uniformly random order of the class, drawn once per run from ``key``)."""
    shape = (cls.num_prompts, cls.num_candidates)
    if tie_break == "random":
        return jax.random.uniform(key, shape)
    return -jnp.broadcast_to(jnp.arange(shape[1], dtype=jnp.result_type(float)), shape)


def select_with_ties(cls, scores, priority, *, rtol: float = TIE_RTOL):
    """Exact argmin of a finite class's additive objective with explicit tie-breaking.

    Candidates whose objective is within ``rtol·(1 + |min|)`` of the minimum are tied (the minimiser set);
    among them the one with the largest ``priority`` wins. Product class: per prompt; stack: the objective is
    summed over prompts first. Returns ``(index [X], tied [X, K])`` — ``tied`` is the minimiser set, so a
    caller can also score the worst-case tie-break.
    """
    s = jnp.where(jnp.isnan(scores), jnp.inf, scores)
    s = jnp.where(cls.valid, s, jnp.inf)
    if not cls.product:
        s = jnp.sum(s, axis=0, keepdims=True)  # [1, K]
        priority = priority[:1]
    best = jnp.min(s, axis=1, keepdims=True)
    tied = (s <= best + rtol * (1.0 + jnp.abs(best))) & jnp.isfinite(s)
    tied = tied | (~jnp.any(tied, axis=1, keepdims=True) & (s == best))
    k = jnp.argmax(jnp.where(tied, priority, -jnp.inf), axis=1).astype(jnp.int32)
    if not cls.product:
        return jnp.full((cls.num_prompts,), k[0], jnp.int32), jnp.broadcast_to(tied, (cls.num_prompts, tied.shape[1]))
    return k, tied


