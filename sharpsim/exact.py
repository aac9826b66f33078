"""Closed forms: the best-of-N law π^BoN_N and the KL-regularised optimum π*_β ∝ π_base^{1+1/β}.

theory.md §6 (best-of-N law), §8 (Proposition C.1), §9 (Eq. 3 and its optimiser).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from sharpsim._validation import check_gamma, check_positive, check_positive_int, is_concrete
from sharpsim.metrics import PolicyLike, argmax_set, as_policy, mass_on, sharpness_error
from sharpsim.policies import TabularPolicy
from sharpsim.power import power_policy

__all__ = ["bon_policy", "bon_log_probs", "bon_log_probs_grid", "kl_regularized_optimum", "bon_success_probability",
           "sharpened_beta_threshold"]


def bon_log_probs_grid(log_probs: Float[Array, " Y"], Ns: Int[Array, " G"]) -> Float[Array, "G Y"]:
    """log π^BoN_N(·|x) for one prompt and every N in ``Ns`` at once, from one sort (theory.md §6).

    With L(y) the mass strictly below π(y) and G the tie group of y (|G| responses at the same
    probability q), the group's total mass is (L + |G| q)^N − L^N, split uniformly within G. Evaluated as
    U^N · (−expm1(N (log L − log U))) with U the mass at or below the group, so
    the result stays accurate when U is close to 1 and when probabilities are tiny (the cumulative mass is
    summed from whichever end is small).
    """
    lp = log_probs - jax.nn.logsumexp(log_probs)
    p = jnp.exp(lp)
    order = jnp.argsort(p)  # ascending
    p_asc = p[order]
    zero = jnp.zeros((1,), p.dtype)
    below = jnp.concatenate([zero, jnp.cumsum(p_asc)])  # below[i] = mass of the i smallest
    above = jnp.concatenate([jnp.cumsum(p_asc[::-1])[::-1], zero])  # above[i] = mass of all but them
    first = jnp.searchsorted(p_asc, p_asc, side="left")  # tie group of element i is [first, last)
    last = jnp.searchsorted(p_asc, p_asc, side="right")

    def log_cdf(i):
        # log of the mass of the i smallest responses; each side of the sum is accurate where it is small.
        return jnp.where(below[i] < 0.5, jnp.log(below[i]), jnp.log1p(-jnp.clip(above[i], 0.0, 1.0)))

    log_U, log_L = log_cdf(last), log_cdf(first)  # mass at-or-below / strictly below the tie group
    n = jnp.asarray(Ns, p.dtype)[:, None]
    log_group = n * log_U + jnp.log(-jnp.expm1(n * (log_L - log_U)))
    log_each = log_group - jnp.log((last - first).astype(p.dtype))
    log_each = jnp.where(p_asc > 0, log_each, -jnp.inf)
    return jnp.zeros((n.shape[0], p.shape[0]), p.dtype).at[:, order].set(log_each)


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
    return TabularPolicy(log_probs=jax.vmap(lambda row: bon_log_probs(row, N))(pi.log_probs))


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
