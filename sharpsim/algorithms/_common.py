"""Shared pieces of the sharpening algorithms: the result pytree, gradient fitting, trial batching, checks."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int, PRNGKeyArray

from sharpsim._validation import check_key, check_positive_int, is_concrete
from sharpsim.protocols import Policy
from sharpsim.fitting import (  # noqa: F401  (re-exported: the fitting primitives' home is sharpsim.fitting)
    TIE_BREAKS,
    TIE_RTOL,
    FitConfig,
    NonFiniteLossError,
    check_tie_break,
    gradient_fit,
    pair_residual,
    select_with_ties,
    tie_priority,
)

__all__ = [
    "SharpeningResult",
    "FitConfig",
    "NonFiniteLossError",
    "gradient_fit",
    "run_trials",
    "map_trials",
    "raise_if_nonfinite",
]


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

    policy: Policy
    params: Any
    num_queries: Int[Array, ""]
    diagnostics: dict


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


def check_budget_field(budget: Optional[int], needed: int, what: str) -> None:
    """A config's own ``budget`` must cover the queries its n·N (or 2T + evaluation) implies."""
    if budget is None:
        return
    check_positive_int(budget, "budget")
    if needed > budget:
        raise ValueError(f"{what}: the configuration needs {needed} queries, more than its budget {budget}.")


def run_trials(algorithm: Callable, key: PRNGKeyArray, num_trials: int, *args, batch_size: Optional[int] = None):
    """Run ``algorithm(key, *args)`` for ``num_trials`` independent keys: one compile, trials as the batch axis.

    Splits ``key`` into ``num_trials`` keys and hands them to :func:`map_trials` (``jit(vmap(...))``; with
    ``batch_size`` the trials go through ``lax.map`` in vmapped batches of that size: bounded memory, still one
    compile).
    """
    num_trials = check_positive_int(num_trials, "num_trials")
    check_key(key)
    return map_trials(algorithm, jax.random.split(key, num_trials), *args, batch_size=batch_size)


_TRIALS_CACHE: dict = {}


def map_trials(trial: Callable, keys: PRNGKeyArray, *args, batch_size: Optional[int] = None):
    """``trial(key, *args)`` for every key of ``keys [K]`` (the runner's per-setting trial keys): the trial loop.

    The array leaves of ``args`` (instances, oracles, classes, traced hyper-parameters) are passed to the
    compiled function as arguments, shared by all trials; every other leaf (grids as tuples of ints, configs,
    callables) is static. Arrays are not closed over: XLA would fold them in as constants, which takes minutes
    for large tables. The compiled program is cached per (``trial``, static leaves, ``batch_size``), so a
    module-level ``trial`` called setting after setting with new arrays of the same shapes compiles once. With
    ``batch_size`` (< K) the trials go through ``lax.map`` in vmapped batches of that size (bounded memory).
    """
    keys = jnp.asarray(keys) if not isinstance(keys, jax.Array) else keys
    if keys.ndim != 1:
        raise ValueError(f"keys must be a 1-D array of PRNG keys (one per trial), got shape {keys.shape}.")
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
        if batch_size >= keys.shape[0]:
            batch_size = None
    leaves, treedef = jax.tree_util.tree_flatten(args)
    dynamic = tuple(isinstance(leaf, (jax.Array, np.ndarray)) for leaf in leaves)
    arrays = [leaf for leaf, d in zip(leaves, dynamic) if d]
    static = tuple(leaf for leaf, d in zip(leaves, dynamic) if not d)
    try:
        cache_key = (trial, treedef, dynamic, static, batch_size)
        program = _TRIALS_CACHE.get(cache_key)
    except TypeError:  # an unhashable static leaf: compile without caching
        cache_key, program = None, None
    if program is None:
        program = _trials_program(trial, treedef, dynamic, static, batch_size)
        if cache_key is not None:
            _TRIALS_CACHE[cache_key] = program
    return program(keys, arrays)


def _trials_program(trial, treedef, dynamic, static, batch_size):
    def trial_on_arrays(key, arrays):
        it_a, it_s = iter(arrays), iter(static)
        rebuilt = treedef.unflatten([next(it_a) if d else next(it_s) for d in dynamic])
        return trial(key, *rebuilt)

    if batch_size is None:
        return jax.jit(jax.vmap(trial_on_arrays, in_axes=(0, None)))
    return jax.jit(lambda ks, arrs: jax.lax.map(lambda k: trial_on_arrays(k, arrs), ks, batch_size=batch_size))


def as_int(x) -> Int[Array, ""]:
    return jnp.asarray(x, jnp.int32)


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


def run_core(core: Callable, key, oracle, cls, config, *traced):
    """The one home of "compile eagerly, inline under a trace": ``core(key, oracle, cls, config, *traced)``.

    Outside any ``jit``/``vmap`` trace the core runs compiled with ``config`` static (cached per core function,
    :func:`jit_static`); inside a caller's trace it is inlined. ``traced`` holds the hyper-parameters that
    stay traced (β, α, σ as arrays), so the sweeps can ``vmap`` over them without recompiling.
    """
    if is_eager(key):
        return jit_static(core)(key, oracle, cls, config, *traced)
    return core(key, oracle, cls, config, *traced)


def hyper_grid(*points) -> tuple:
    """The traced hyper-parameter points of a sweep (the one home of their broadcast and checks).

    ``points``: ``(name, override, config_value)`` triples; an override is a 1-D array (or None: the config's
    value). All are broadcast to one length P and returned as float arrays ``[P]`` (traced: a new grid does not
    recompile). Concrete values must be finite and ≥ 0 (> 0 for ``betas``); the ValueError names the argument.
    """
    dt = jnp.result_type(float)
    arrs = [jnp.atleast_1d(jnp.asarray(d if v is None else v, dt)) for _, v, d in points]
    P = max(a.shape[0] for a in arrs)
    out = tuple(jnp.broadcast_to(v, (P,)) for v in arrs)
    for v, (name, _, _) in zip(out, points):
        if not isinstance(v, jax.core.Tracer):
            vv = np.asarray(v)
            if not np.all(np.isfinite(vv)) or np.any(vv < 0) or (name == "betas" and np.any(vv <= 0)):
                raise ValueError(f"{name} must be finite and {'> 0' if name == 'betas' else '>= 0'}, got {vv.tolist()}.")
    return out


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
