"""Shared pieces of the sharpening algorithms: the result pytree, gradient fitting, trial batching, checks."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Int, PRNGKeyArray

from sharpsim._validation import check_key, check_positive, check_positive_int, is_concrete
from sharpsim.oracle import BudgetExceededError

__all__ = [
    "SharpeningResult",
    "FitConfig",
    "NonFiniteLossError",
    "gradient_fit",
    "run_trials",
    "raise_if_nonfinite",
]


class NonFiniteLossError(FloatingPointError, ValueError):
    """A gradient fit met a NaN/inf loss; the message names the fitting step and the offending values."""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SharpeningResult:
    """What every sharpening algorithm returns.

    Attributes:
      policy: the fitted policy π̂ (a :class:`~sharpsim.TabularPolicy` for finite, tabular and log-linear
        classes; ``cls.member(params)`` for a :class:`~sharpsim.classes.ParametricClass`).
      params: the fitted member of the class (candidate indices ``[X]`` for a finite class, logits or θ
        for gradient classes).
      num_queries: the exact number of sample-and-evaluate queries consumed (int32 array; random for the
        adaptive algorithm, one value per trial under ``vmap``).
      diagnostics: a dict of arrays (per-algorithm; documented in each function and in docs/algorithms.md).
    """

    policy: Any
    params: Any
    num_queries: Int[Array, ""]
    diagnostics: dict


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
    """Projected gradient descent: ``fit.steps`` optax steps of ``loss_fn``, projecting after each.

    Stops updating at the first non-finite loss or gradient (the parameters stay at the last finite
    iterate). Returns ``(params, opt_state, info)`` with ``info = {"final_loss", "nonfinite_step"
    (−1 if none), "nonfinite_loss", "nonfinite_grad_norm"}``.
    """
    opt = fit.make()
    state0 = opt.init(params0) if opt_state is None else opt_state
    dtype = jnp.result_type(float)

    def step(carry, i):
        params, state, bad_step, bad_loss, bad_gnorm = carry
        loss, grads = jax.value_and_grad(loss_fn)(params)
        gnorm = optax.global_norm(grads)
        ok = jnp.isfinite(loss) & jnp.isfinite(gnorm) & (bad_step < 0)
        updates, new_state = opt.update(grads, state, params)
        new_params = project(optax.apply_updates(params, updates))
        params = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new_params, params)
        state = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new_state, state)
        first_bad = (bad_step < 0) & ~ok
        bad_step = jnp.where(first_bad, i, bad_step)
        bad_loss = jnp.where(first_bad, loss.astype(dtype), bad_loss)
        bad_gnorm = jnp.where(first_bad, gnorm.astype(dtype), bad_gnorm)
        return (params, state, bad_step, bad_loss, bad_gnorm), None

    init = (params0, state0, jnp.asarray(-1, jnp.int32), jnp.asarray(0.0, dtype), jnp.asarray(0.0, dtype))
    (params, state, bad_step, bad_loss, bad_gnorm), _ = jax.lax.scan(
        step, init, jnp.arange(fit.steps, dtype=jnp.int32)
    )
    info = {
        "final_loss": loss_fn(params).astype(dtype),
        "nonfinite_step": bad_step,
        "nonfinite_loss": bad_loss,
        "nonfinite_grad_norm": bad_gnorm,
    }
    return params, state, info


def raise_if_nonfinite(result: SharpeningResult, what: str) -> SharpeningResult:
    """Raise :class:`NonFiniteLossError` when a (concrete) result's fit met a non-finite loss.

    Called by every algorithm on its eager result; under ``jit``/``vmap`` it is a no-op and the check is on
    ``result.diagnostics["nonfinite_step"]`` (−1 when every step was finite; per round for XPO).
    """
    d = result.diagnostics
    if "nonfinite_step" not in d or not is_concrete(d["nonfinite_step"]):
        return result
    steps = np.asarray(d["nonfinite_step"])
    if np.all(steps < 0):
        return result
    where = np.argwhere(steps >= 0)[0]
    loc = f" in round {int(where[0]) + 1}" if steps.ndim >= 1 and steps.size > 1 else ""
    loss = np.asarray(d["nonfinite_loss"])[tuple(where)] if np.ndim(d["nonfinite_loss"]) else d["nonfinite_loss"]
    gnorm = np.asarray(d["nonfinite_grad_norm"])[tuple(where)] if np.ndim(d["nonfinite_grad_norm"]) else d["nonfinite_grad_norm"]
    raise NonFiniteLossError(
        f"{what}: non-finite loss during gradient fitting{loc} at optimisation step {int(steps[tuple(where)])}: "
        f"loss = {float(loss)!r}, gradient norm = {float(gnorm)!r}. Lower the learning rate, raise beta, or check "
        "that the class gives every observed response positive probability."
    )


def check_oracle_budget(oracle, needed: int, what: str) -> None:
    """Refuse, before drawing anything, a run needing more queries than the oracle's budget."""
    budget = getattr(oracle, "budget", None)
    if budget is not None and needed > budget:
        raise BudgetExceededError(
            f"{what} needs {needed} sample-and-evaluate queries but the oracle's budget is {budget}; "
            "lower n, N or T, or raise the budget."
        )


def check_budget_field(budget: Optional[int], needed: int, what: str) -> None:
    """A config's own ``budget`` must cover the queries its n·N (or 2T + evaluation) implies."""
    if budget is None:
        return
    check_positive_int(budget, "budget")
    if needed > budget:
        raise ValueError(f"{what}: the configuration needs {needed} queries, more than its budget {budget}.")


def run_trials(algorithm: Callable, key: PRNGKeyArray, num_trials: int, *args, batch_size: Optional[int] = None):
    """Run ``algorithm(key, *args)`` for ``num_trials`` independent keys: one compile, trials as the batch axis.

    ``jit(vmap(...))`` over split keys; with ``batch_size`` the trials go through ``lax.map`` in vmapped
    batches of that size (bounded memory, still one compile). The array leaves of ``args`` (instances,
    oracles, classes) are passed to the compiled function as arguments, shared by all trials; everything
    else (configs, callables) is static. Arrays are not closed over: XLA would fold them in as constants,
    which takes minutes for large tables.
    """
    num_trials = check_positive_int(num_trials, "num_trials")
    check_key(key)
    keys = jax.random.split(key, num_trials)
    leaves, treedef = jax.tree_util.tree_flatten(args)
    dynamic = [isinstance(leaf, (jax.Array, np.ndarray)) for leaf in leaves]
    arrays = [leaf for leaf, d in zip(leaves, dynamic) if d]
    static = [leaf for leaf, d in zip(leaves, dynamic) if not d]

    def one(k, arrays):
        it_a, it_s = iter(arrays), iter(static)
        rebuilt = treedef.unflatten([next(it_a) if d else next(it_s) for d in dynamic])
        return algorithm(k, *rebuilt)

    if batch_size is None or batch_size >= num_trials:
        return jax.jit(jax.vmap(one, in_axes=(0, None)))(keys, arrays)
    return jax.jit(lambda ks, arrs: jax.lax.map(lambda k: one(k, arrs), ks, batch_size=batch_size))(keys, arrays)


def as_int(x) -> Int[Array, ""]:
    return jnp.asarray(x, jnp.int32)


def pair_residual(beta, lp_y, lp_yp, r_y, r_yp):
    """The Eq. (8) residual β log(π(y)/π_base(y)) − β log(π(y')/π_base(y')) − (r(y) − r(y')), r = log π_base."""
    return beta * (lp_y - r_y) - beta * (lp_yp - r_yp) - (r_y - r_yp)


def logistic_pair_loss(beta, lp_y, lp_yp, r_y, r_yp):
    """DPO's logistic loss −log σ(β(log π/π_base(y_w) − log π/π_base(y_l))), y_w the higher-reward response."""
    h = beta * (lp_y - r_y) - beta * (lp_yp - r_yp)
    sign = jnp.where(r_y >= r_yp, 1.0, -1.0).astype(h.dtype)
    return jax.nn.softplus(-sign * h)


def is_eager(x) -> bool:
    """True outside any ``jit``/``vmap`` trace (then an algorithm compiles its own core and checks its result)."""
    return not isinstance(x, jax.core.Tracer)


_JIT_CACHE: dict = {}


def jit_static(fn):
    """``jit(fn)`` with the 4th argument (a frozen, hashable config dataclass) static; cached per function."""
    if fn not in _JIT_CACHE:
        _JIT_CACHE[fn] = jax.jit(fn, static_argnums=(3,))
    return _JIT_CACHE[fn]


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


def check_finite_nonneg(value, name: str, what: str, *, positive: bool = False) -> float:
    """A finite real (> 0 with ``positive``, else ≥ 0); the ValueError names the field.

    Strings and booleans are refused even when ``float`` would read them (``"0.5"``, ``True``).
    """
    if isinstance(value, (str, bytes, bool)):
        raise ValueError(f"{name} ({what}) must be a real number, got {value!r} of type {type(value).__name__}.")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} ({what}) must be a real number, got {value!r}.") from None
    if not math.isfinite(v) or (v <= 0 if positive else v < 0):
        raise ValueError(f"{name} ({what}) must be finite and {'> 0' if positive else '>= 0'}, got {value!r}.")
    return v
