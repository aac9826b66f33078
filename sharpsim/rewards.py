"""Self-rewards r_self(y|x; π_base) computed from one prompt's group of sampled responses (theory.md §1).

A self-reward is any callable ``reward(x, responses, log_probs) -> scores`` for ONE prompt: ``responses``
are the N sampled responses (``[N]`` ints for tabular policies, ``[N, H]`` tokens for autoregressive
ones) and ``log_probs`` their base log-likelihoods ``[N]`` as returned by the oracle. Group-level rewards
(majority vote) see the whole group; per-response rewards ignore it. ``vmap`` over prompts outside.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from sharpsim.policies import sequence_lengths

__all__ = ["SelfReward", "log_prob", "length_normalized", "majority", "sequence_lengths"]

SelfReward = Callable[[Int[Array, ""], Any, Float[Array, " N"]], Float[Array, " N"]]


def log_prob(x: Int[Array, ""], responses: Any, log_probs: Float[Array, " N"]) -> Float[Array, " N"]:
    """r_self(y|x) = log π_base(y|x): the maximum-likelihood sharpening self-reward (Eq. 2)."""
    del x, responses
    return log_probs


def length_normalized(eos_id: Optional[int] = None, lengths: Optional[Int[Array, " Y"]] = None) -> Callable:
    """r_self(y|x) = log π_base(y|x) / |y| (App. A.2).

    For token responses ``[N, H]`` the length counts tokens up to and including the first ``eos_id``.
    For tabular responses (integer ids) give ``lengths``, a ``[Y]`` table of response lengths.
    """
    if lengths is not None:
        table = jnp.asarray(lengths)
        if np.any(np.asarray(table) < 1):
            raise ValueError("lengths must be >= 1 for every response (a response has at least one token).")

    def reward(x, responses, log_probs):
        del x
        if responses.ndim == log_probs.ndim:  # one id per response: tabular
            if lengths is None:
                raise ValueError(
                    "length_normalized on tabular responses needs `lengths`, a [Y] table of response lengths."
                )
            n_tokens = table[responses]
        else:
            n_tokens = sequence_lengths(responses, eos_id)
        return log_probs / n_tokens.astype(log_probs.dtype)

    return reward


def majority(answer_of: Any) -> Callable:
    """Self-consistency: r_self(y|x) = #{j : ans(y_j) = ans(y)} among the group's N samples (App. A.2).

    The sample estimate (times N) of Σ_{y′: ans(y′)=ans(y)} π_base(y′|x). ``answer_of`` is a ``[Y]`` integer
    table (tabular responses) or a callable mapping the responses array to ``[N]`` answer ids.
    """
    table = None if callable(answer_of) else jnp.asarray(answer_of)

    def reward(x, responses, log_probs):
        del x
        answers = answer_of(responses) if table is None else table[responses]
        same = answers[:, None] == answers[None, :]
        return jnp.sum(same, axis=-1).astype(log_probs.dtype)

    return reward
