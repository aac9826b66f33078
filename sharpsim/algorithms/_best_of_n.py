"""Inference-time best-of-N under any self-reward (theory.md §6 step 2, §8)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from sharpsim import rewards as _rewards
from sharpsim._validation import check_key, check_positive_int

__all__ = ["BestOfN", "best_of_n", "select_best", "running_best", "best_of_first_n"]


def running_best(scores: Float[Array, "... N"]) -> tuple:
    """(value, index) of the best of the first k+1 scores for every prefix k along the last axis: the one home of
    "best of the first N draws" (prefix-coupled best-of-N sweeps). Ties keep the earlier draw, as
    :func:`select_best`'s argmax does. An associative scan: O(N) work, log depth."""
    scores = jnp.asarray(scores)
    idx = jnp.broadcast_to(jnp.arange(scores.shape[-1], dtype=jnp.int32), scores.shape)

    def combine(a, b):
        va, ia = a
        vb, ib = b
        take_b = vb > va  # strict: ties keep the earlier draw
        return jnp.where(take_b, vb, va), jnp.where(take_b, ib, ia)

    return jax.lax.associative_scan(combine, (scores, idx), axis=scores.ndim - 1)


def best_of_first_n(scores: Float[Array, " N_max"], Ns) -> Int[Array, " G"]:
    """Index of the best response among the first N of ``scores`` for every N in ``Ns`` (ties: the first)."""
    Ns = jnp.asarray(Ns)
    return running_best(scores)[1][Ns - 1]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BestOfN:
    """The selected response, its self-reward score and base log-likelihood, and its index among the N draws."""

    response: Any
    score: Float[Array, ""]
    log_prob: Float[Array, ""]
    index: Int[Array, ""]
    num_queries: int = dataclasses.field(metadata=dict(static=True))


def select_best(x, responses, log_probs, reward=_rewards.log_prob):
    """argmax_j r_self(y_j|x) over one prompt's N evaluated responses; returns (index, score).

    The first maximiser is kept; under r_self = log π_base, tied responses have equal probability, so the
    first tied draw is uniform over the tie group (the "~ argmax" of theory.md §6).
    """
    scores = reward(x, responses, log_probs)
    j = jnp.argmax(scores)
    return j, scores[j]


def best_of_n(key: PRNGKeyArray, pi: Any, x: Int[Array, ""], N: int, reward=_rewards.log_prob) -> BestOfN:
    """Draw y_1..y_N ~ π(·|x) and return the one with the highest self-reward (N queries).

    With r_self = log π (the default) it returns an element of y*_γ(x) with probability
    1 − (1 − π(y*_γ(x)|x))^N (Proposition C.1). ``vmap`` over prompts and keys for many.
    """
    N = check_positive_int(N, "N")
    check_key(key)
    ys, lps = pi.sample_and_log_prob(key, x, N)
    j, score = select_best(x, ys, lps, reward)
    return BestOfN(jax.tree_util.tree_map(lambda a: a[j], ys), score, lps[j], j, N)
