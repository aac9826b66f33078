"""Closed forms: the best-of-N law π^BoN_N and the KL-regularised optimum π*_β ∝ π_base^{1+1/β}.

theory.md §6 (best-of-N law), §8 (Proposition C.1), §9 (Eq. 3 and its optimiser).
"""

from __future__ import annotations

import concurrent.futures
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from sharpsim._validation import check_gamma, check_positive, check_positive_int, is_concrete
from sharpsim.metrics import PolicyLike, argmax_set, as_policy, mass_on, sharpness_error
from sharpsim.policies import TabularPolicy
from sharpsim.power import power_policy

__all__ = ["bon_policy", "bon_log_probs", "bon_log_probs_grid", "bon_expectations_grid", "kl_regularized_optimum",
           "bon_success_probability", "sharpened_beta_threshold"]


# ------------------------------------------------------------------------------------------ the ascending order
# XLA:CPU sorts with a compiled comparator called once per comparison: ~10-30x slower than NumPy on a
# [1024, 4096] table, and the sort was most of the law's cost. On CPU the order therefore comes from NumPy
# through a host callback, as ONE sort of packed keys (probability bits << 32 | index: the float32 bits of a
# non-negative number order like the number, and the index breaks ties as a stable argsort does), split over the
# cores by rows; the callback also returns the integer bookkeeping that XLA:CPU does slowly (the inverse
# permutation and the tie groups' bounds, by running max/min). Other platforms (GPU, TPU) compute the same four
# arrays with XLA. Both give the stable ascending order and the same groups, so the law is identical either way.
_SORT_POOL = None
_PARALLEL_MIN = 1 << 18  # elements below which one thread does everything


def _host_order_rows(p: np.ndarray):
    """(order, rank, first, last) of each row of a 2-D array, int32: stable ascending argsort, its inverse,
    and per sorted position the bounds [first, last) of its tie group."""
    R, Y = p.shape
    if p.dtype == np.float32:
        key = p.view(np.uint32).astype(np.uint64)
        key <<= np.uint64(32)
        key |= np.arange(Y, dtype=np.uint64)
        key.sort(axis=-1)
        halves = key.view(np.uint32).reshape(R, Y, 2)
        low, high = (0, 1) if np.little_endian else (1, 0)
        order = np.ascontiguousarray(halves[..., low]).view(np.int32)
        vals = halves[..., high]  # the sorted probabilities' bits: equal bits <=> equal non-negative floats
    else:
        order = np.argsort(p, axis=-1, kind="stable").astype(np.int32)
        vals = np.take_along_axis(p, order, axis=-1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(Y, dtype=np.int32), order.shape), axis=-1)
    idx = np.arange(Y, dtype=np.int32)
    new = vals[:, 1:] != vals[:, :-1]  # a new tie group starts at position i + 1
    if new.all():  # no ties (the common case for continuous tables): every group is one response
        first = np.broadcast_to(idx, (R, Y))
        return order, rank, np.ascontiguousarray(first), np.ascontiguousarray(first + 1)
    # running max/min over the flattened rows (one fast 1-D pass; every row starts and ends a group)
    gidx = np.arange(R * Y, dtype=np.int64).reshape(R, Y)
    true = np.ones((R, 1), bool)
    first = np.maximum.accumulate(np.where(np.concatenate([true, new], 1), gidx, 0).ravel()).reshape(R, Y)
    last = np.where(np.concatenate([new, true], 1), gidx + 1, R * Y).ravel()[::-1]
    last = np.minimum.accumulate(last)[::-1].reshape(R, Y)
    offset = (np.arange(R, dtype=np.int64) * Y)[:, None]
    first, last = first - offset, last - offset
    return order, rank, first.astype(np.int32), last.astype(np.int32)


def _host_order(p):
    """:func:`_host_order_rows` over any leading shape, rows split over the CPU cores when large."""
    global _SORT_POOL
    p = np.asarray(p)
    rows = p.reshape(-1, p.shape[-1])
    workers = min(os.cpu_count() or 1, rows.shape[0], 8)
    if workers <= 1 or rows.size < _PARALLEL_MIN:
        parts = [_host_order_rows(rows)]
    else:
        if _SORT_POOL is None:
            _SORT_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=min(os.cpu_count() or 1, 8),
                                                               thread_name_prefix="sharpsim-sort")
        parts = list(_SORT_POOL.map(_host_order_rows, np.array_split(rows, workers)))
    return tuple(np.concatenate([q[i] for q in parts]).reshape(p.shape) for i in range(4))


def _xla_order(p):
    """:func:`_host_order_rows` in XLA (fast sorts and scans on GPU/TPU)."""
    Y = p.shape[-1]
    order = jnp.argsort(p, axis=-1, stable=True).astype(jnp.int32)
    idx = jnp.broadcast_to(jnp.arange(Y, dtype=jnp.int32), p.shape)
    rank = jnp.zeros_like(order)
    rank = jax.vmap(lambda r, o, i: r.at[o].set(i))(rank.reshape(-1, Y), order.reshape(-1, Y),
                                                    idx.reshape(-1, Y)).reshape(p.shape)
    vals = jnp.take_along_axis(p, order, axis=-1)
    new = vals[..., 1:] != vals[..., :-1]
    true = jnp.ones(p.shape[:-1] + (1,), bool)
    first = jax.lax.cummax(jnp.where(jnp.concatenate([true, new], -1), idx, 0), axis=p.ndim - 1)
    last = jax.lax.cummin(jnp.where(jnp.concatenate([new, true], -1), idx + 1, Y), axis=p.ndim - 1, reverse=True)
    return order, rank, first, last


def _ascending_order(p: Float[Array, "... Y"]):
    """(order, rank, first, last) along the last axis (see :func:`_host_order_rows`): NumPy's packed-key sort
    through a host callback on CPU, XLA elsewhere."""
    q = jax.lax.stop_gradient(p)

    def on_cpu(q):
        shape = jax.ShapeDtypeStruct(q.shape, jnp.int32)
        return jax.pure_callback(_host_order, (shape,) * 4, q, vmap_method="broadcast_all")

    return jax.lax.platform_dependent(q, cpu=on_cpu, default=_xla_order)


def _bon_log_probs_rows(log_probs: Float[Array, "... Y"], Ns: Int[Array, " G"]) -> Float[Array, "... G Y"]:
    """:func:`bon_log_probs_grid` for every row of ``log_probs`` at once (the last axis is the responses)."""
    lp = log_probs - jax.nn.logsumexp(log_probs, axis=-1, keepdims=True)
    p = jnp.exp(lp)
    order, rank, first, last = _ascending_order(p)
    p_asc = jnp.take_along_axis(p, order, axis=-1)
    zero = jnp.zeros(p.shape[:-1] + (1,), p.dtype)
    below = jnp.concatenate([zero, jnp.cumsum(p_asc, axis=-1)], -1)  # below[i] = mass of the i smallest
    above = jnp.concatenate([jnp.flip(jnp.cumsum(jnp.flip(p_asc, -1), axis=-1), -1), zero], -1)  # all but them

    def log_cdf(i):
        # log of the mass of the i smallest responses; each side of the sum is accurate where it is small.
        b, a = jnp.take_along_axis(below, i, axis=-1), jnp.take_along_axis(above, i, axis=-1)
        return jnp.where(b < 0.5, jnp.log(b), jnp.log1p(-jnp.clip(a, 0.0, 1.0)))

    log_U, log_L = log_cdf(last)[..., None, :], log_cdf(first)[..., None, :]  # at-or-below / strictly below
    n = jnp.asarray(Ns, p.dtype)[:, None]
    log_group = n * log_U + jnp.log(-jnp.expm1(n * (log_L - log_U)))
    log_each = log_group - jnp.log((last - first).astype(p.dtype))[..., None, :]
    log_each = jnp.where(p_asc[..., None, :] > 0, log_each, -jnp.inf)  # [..., G, Y] in ascending order
    return jnp.take_along_axis(log_each, jnp.broadcast_to(rank[..., None, :], log_each.shape), axis=-1)


def bon_log_probs_grid(log_probs: Float[Array, " Y"], Ns: Int[Array, " G"]) -> Float[Array, "G Y"]:
    """log π^BoN_N(·|x) for one prompt and every N in ``Ns`` at once, from one sort (theory.md §6).

    With L(y) the mass strictly below π(y) and G the tie group of y (|G| responses at the same
    probability q), the group's total mass is (L + |G| q)^N − L^N, split uniformly within G. Evaluated as
    U^N · (−expm1(N (log L − log U))) with U the mass at or below the group, so
    the result stays accurate when U is close to 1 and when probabilities are tiny (the cumulative mass is
    summed from whichever end is small).

    Cost: one stable ascending sort (on CPU NumPy's sort of packed keys through a host callback, since XLA:CPU's
    sort is slow; see :func:`_ascending_order`), then O(Y) cumulative sums and gathers.
    """
    return _bon_log_probs_rows(log_probs, Ns)



def bon_expectations_grid(log_probs: Float[Array, "X Y"], Ns, *values: Float[Array, "X Y"]) -> tuple:
    """E_{y ~ π^BoN_N(·|x)}[v(x, y)] per prompt x and every N in ``Ns`` (``[X, G]``), for each table v of ``values``.

    Exact: the law of :func:`bon_log_probs_grid` (r_self = log π, ties split uniformly), computed once for all
    the tables; v is read only where π(y|x) > 0 (so v = log π itself is allowed: its −∞ entries count as 0).
    E.g. ``values = (correct,)`` gives the accuracy of best-of-N per prompt, ``(log_probs,)`` the expected
    log-likelihood of its pick.
    """
    bon = jnp.exp(jax.vmap(lambda row: bon_log_probs_grid(row, jnp.asarray(Ns)))(log_probs))  # [X, G, Y]
    live = jnp.isfinite(log_probs)
    return tuple(jnp.sum(bon * jnp.where(live, v, 0)[:, None, :], axis=-1) for v in values)

def bon_log_probs(log_probs: Float[Array, " Y"], N: int) -> Float[Array, " Y"]:
    """log π^BoN_N(·|x) for one prompt: the law of the best of N draws under r_self = log π (theory.md §6).

    :func:`bon_log_probs_grid` at the single N.
    """
    N = check_positive_int(N, "N")
    return bon_log_probs_grid(log_probs, jnp.asarray([N]))[0]


def bon_policy(pi: PolicyLike, N: int) -> TabularPolicy:
    """The exact best-of-N policy π^BoN_N under the log-probability self-reward, ties split uniformly.

    π^BoN_N(·|x) is the law of argmax{log π(y_i|x) : y_1, …, y_N ~ π(·|x)} (theory.md §6, Eq. 7's target).
    """
    pi = as_policy(pi)
    N = check_positive_int(N, "N")
    return TabularPolicy(log_probs=_bon_log_probs_rows(pi.log_probs, jnp.asarray([N]))[..., 0, :])


def bon_success_probability(pi: PolicyLike, N: int, gamma: float = 0.0) -> Float[Array, " X"]:
    """P[best-of-N ∈ y*_γ(x)] = 1 − (1 − π(y*_γ(x)|x))^N per prompt (Proposition C.1's identity).

    BoN with r_self = log π returns an element of y*_γ exactly when one of the N draws lands there.
    """
    N = check_positive_int(N, "N")
    check_gamma(gamma)
    pi = as_policy(pi)
    p = jnp.clip(mass_on(pi, argmax_set(pi, gamma)), 0.0, 1.0)
    return -jnp.expm1(N * jnp.log1p(-p))


def kl_regularized_optimum(pi: PolicyLike, beta: float) -> TabularPolicy:
    """π*_β(y|x) ∝ π(y|x)^{1+1/β}: the maximiser of E_π'[log π] − β·KL(π' ‖ π) (Eq. 3 with Eq. 2).

    Also the exact minimiser of the Eq. (8) squared loss over the tabular class (Assumption 4.3).
    A call of :func:`sharpsim.power_policy` at α = 1 + 1/β on the tabular form of ``pi`` (the formula's one
    home), which works in log space from the row's maximum, so a tiny β whose 1/β overflows the dtype gives
    the limit (uniform on the argmax set) instead of NaN.
    """
    check_positive(beta, "beta")
    pi = as_policy(pi)
    if is_concrete(beta):  # 1 + 1/β in float64, capped at the dtype's max (β ~ 1e-300: 1/β overflows float32)
        alpha = 1.0 + 1.0 / float(np.asarray(beta, np.float64))
        alpha = min(alpha, float(jnp.finfo(pi.log_probs.dtype).max))
    else:
        alpha = 1.0 + 1.0 / beta
    return power_policy(pi, alpha)


def sharpened_beta_threshold(pi: PolicyLike, mu, epsilon: float, delta: float, *, lo: float = 1e-6, hi: float = 1e3,
                             iters: int = 50, slack: float = 1e-6) -> float:
    """β_thr = sup{β : π*_β is (ε, δ)-sharpened} (Theorem 4.2's β ≲ γ_margin δ ε is sufficient, not necessary).

    Bisection on log β over [lo, hi]: π*_β(y*) decreases in β, so the sharpness error of π*_β
    (:func:`sharpsim.metrics.sharpness_error`) is monotone. ``slack`` absorbs float32 sums of μ-masses.
    """
    check_positive(lo, "lo")
    for _ in range(int(iters)):
        mid = math.sqrt(lo * hi)
        err = float(sharpness_error(kl_regularized_optimum(pi, mid), pi, mu, delta))
        lo, hi = (mid, hi) if err <= epsilon + slack else (lo, mid)
    return lo
