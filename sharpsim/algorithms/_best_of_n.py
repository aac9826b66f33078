"""Inference-time best-of-N under any self-reward (theory.md §6 step 2, §8)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from sharpsim import rewards as _rewards
from sharpsim._validation import check_key, check_positive_int

__all__ = ["BestOfN", "best_of_n", "select_best", "running_best", "best_of_first_n", "BestOfNSweep", "best_of_n_sweep"]


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


def select_best(x, responses, log_probs, reward=_rewards.logprob_reward):
    """argmax_j r_self(y_j|x) over one prompt's N evaluated responses; returns (index, score).

    The first maximiser is kept; under r_self = log π_base, tied responses have equal probability, so the
    first tied draw is uniform over the tie group (the "~ argmax" of theory.md §6).
    """
    scores = reward(x, responses, log_probs)
    j = jnp.argmax(scores)
    return j, scores[j]


def best_of_n(key: PRNGKeyArray, pi: Any, x: Int[Array, ""], N: int, reward=_rewards.logprob_reward) -> BestOfN:
    """Draw y_1..y_N ~ π(·|x) and return the one with the highest self-reward (N queries).

    With r_self = log π (the default) it returns an element of y*_γ(x) with probability
    1 − (1 − π(y*_γ(x)|x))^N (Proposition C.1). ``vmap`` over prompts and keys for many.
    """
    N = check_positive_int(N, "N")
    check_key(key)
    ys, lps = pi.sample_and_log_prob(key, x, N)
    j, score = select_best(x, ys, lps, reward)
    return BestOfN(jax.tree_util.tree_map(lambda a: a[j], ys), score, lps[j], j, N)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BestOfNSweep:
    """Best-of-N for every N of a grid from one draw: ``index[name]`` ``[n, G]`` (which of the first N_g draws
    each self-reward picks), the draws ``responses`` ``[n, N_max, ...]`` and ``log_probs`` ``[n, N_max]``, and
    ``num_queries`` ``[G]`` (n·N_g: what grid point g alone would have cost)."""

    index: dict
    responses: Any
    log_probs: Float[Array, "n N"]
    num_queries: Int[Array, " G"]

    def picked(self, values: Any, name: str) -> Any:
        """``values[i, index[name][i, g]]`` for per-draw ``values`` ``[n, N_max]``: ``[n, G]``."""
        return jnp.take_along_axis(values, self.index[name], axis=1)


def best_of_n_sweep(key: PRNGKeyArray, oracle: Any, prompts: Int[Array, " n"], N_grid, rewards: dict) -> BestOfNSweep:
    """Inference-time best-of-N (§6 step 2) at every N of ``N_grid`` under several self-rewards, from ONE draw.

    ``oracle.respond`` draws N_max = max(N_grid) responses per prompt (n·N_max queries); grid point g is
    exactly best-of-N_g on the first N_g of them (a coupling of the runs), under each reward of ``rewards``
    (``{name: reward}``, e.g. from :func:`sharpsim.rewards.make`), group rewards (majority) included through
    :func:`sharpsim.rewards.prefix_scores`. Ties go to the first maximiser, as in :func:`select_best`.
    ``vmap`` over trial keys outside.
    """
    grid = tuple(np.asarray(N_grid).ravel().tolist())
    N_max = check_positive_int(max(grid, default=0), "max(N_grid)")  # each N_g is checked by prefix_scores
    batch = oracle.respond(key, prompts, N_max)

    def pick(reward):
        scores = jax.vmap(lambda x, ys, lps: _rewards.prefix_scores(reward, x, ys, lps, grid))(
            jnp.asarray(prompts), batch.responses, batch.log_probs)  # [n, G, N_max]
        return jnp.argmax(scores, axis=-1).astype(jnp.int32)

    queries = jnp.asarray(grid, jnp.int32) * jnp.int32(np.shape(prompts)[0])
    return BestOfNSweep({name: pick(r) for name, r in rewards.items()}, batch.responses, batch.log_probs, queries)
