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


# --- self-rewards of RL with self-rewards (issue 16): TTRL, Intuitor/RLIF, entropy minimisation -------------
import jax  # noqa: E402  (kept with the issue-16 block so a merge touches only the end of the file)

__all__ += ["majority_vote", "self_certainty", "negative_entropy"]

# ``majority_vote`` has the signature of the rewards above (it reads the group); ``self_certainty`` and
# ``negative_entropy`` are scored by the *current* policy π (not π_base), so they take the policy as well:
# ``reward(policy, x, responses) -> [N]``. :func:`sharpsim.algorithms.pg_reward` adapts both kinds.


def majority_vote(answer_of: Any) -> Callable:
    """TTRL's pseudo-label reward: r(y) = 1[ans(y) = the group's most frequent answer] (Zuo et al. 2025,
    "TTRL: Test-Time Reinforcement Learning", arXiv:2504.16084).

    Binary, unlike :func:`majority` (the vote count). Ties between equally frequent answers go to the answer
    of the earliest response in the group that holds one of them. ``answer_of``: a ``[Y]`` table (tabular
    responses) or a callable mapping the responses array to ``[N]`` answer ids.
    """
    table = None if callable(answer_of) else jnp.asarray(answer_of)

    def reward(x, responses, log_probs):
        del x
        answers = answer_of(responses) if table is None else table[responses]
        counts = jnp.sum(answers[:, None] == answers[None, :], axis=-1)
        label = answers[jnp.argmax(counts)]  # first response with the largest count
        return (answers == label).astype(log_probs.dtype)

    return reward


def self_certainty(policy: Any, x: Int[Array, ""], responses: Any) -> Float[Array, " N"]:
    """Intuitor's self-certainty (Zhao et al. 2025, "Learning to Reason without External Rewards",
    arXiv:2505.19590): the mean over the response's positions h ≤ |y| of KL(U ‖ π_h(·|y_{<h}, x)),

        KL(U ‖ p) = −log V − (1/V) Σ_v log p(v),

    with U uniform over the V tokens and π the policy being trained. Positions count up to and including the
    first EOS. A :class:`~sharpsim.TabularPolicy` is a one-step policy (V = Y): its next-token law does not
    depend on the response, so the reward is the same for every response of a group — the case where
    group-normalised advantages cancel (docs/algorithms.md, "the group-normalisation trap").
    """
    if hasattr(policy, "token_log_probs"):  # autoregressive: teacher-forced next-token laws
        V = policy.vocab_size

        def one(y):
            lp = jax.nn.log_softmax(policy._teacher_forced_logits(x, y), axis=-1)  # [H, V]
            kl = -jnp.log(V) - jnp.mean(lp, axis=-1)
            mask = jnp.arange(policy.horizon) < sequence_lengths(y, policy.eos_id)
            return jnp.sum(jnp.where(mask, kl, 0.0)) / jnp.sum(mask)

        return jax.vmap(one)(responses)
    row = policy.log_probs[x]
    kl = -jnp.log(row.shape[-1]) - jnp.mean(row)
    return jnp.full(jnp.shape(responses), kl, row.dtype)


def negative_entropy(policy: Any, x: Int[Array, ""], responses: Any) -> Float[Array, " N"]:
    """Entropy-minimisation reward r(y) = log π(y|x) under the policy being trained: a one-sample estimate of
    −H(π(·|x)) (trajectory-level EM-RL of Agarwal et al. 2025, "The Unreasonable Effectiveness of Entropy
    Minimization in LLM Reasoning", arXiv:2505.15134). E_{y~π}[log π(y|x) ∇log π(y|x)] = −∇H(π(·|x)), so
    REINFORCE with this reward is exact gradient descent on the entropy in expectation.
    """
    return policy.log_prob(x, responses)
