"""Self-rewards r_self(y|x; π_base) computed from one prompt's group of sampled responses (theory.md §1).

A self-reward is any callable ``reward(x, responses, log_probs) -> scores`` for ONE prompt: ``responses``
are the N sampled responses (``[N]`` ints for tabular policies, ``[N, H]`` tokens for autoregressive
ones) and ``log_probs`` their base log-likelihoods ``[N]`` as returned by the oracle. Group-level rewards
(majority vote) see the whole group; per-response rewards ignore it. ``vmap`` over prompts outside.

**This module is the one home of the self-rewards.** :data:`REGISTRY` maps the names used everywhere
(``"logprob"``, ``"lennorm"``, ``"majority"``; the Hugging Face bridge uses the same names) to factories;
:func:`make` builds one from the context it needs (``eos_id``/``lengths``, ``answer_of``). Adding a
self-reward = one function here and one registry entry.

**Prefix consistency (sweeps over N).** A sweep draws N_max responses once and takes best-of-N over the
first N for every N of a grid (a coupling of the runs; design.md §4). :func:`prefix_scores` returns the
``[G, N_max]`` scores where row g is the reward applied to the first N_g responses alone (``-inf`` past
N_g, so an argmax over the row is the best of the first N_g). Per-response rewards are prefix-consistent
trivially; majority computes every prefix from one ``[G, N] @ [N, N]`` count; any other callable is
applied to each prefix in turn (correct for every reward, one trace per grid point).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from sharpsim._validation import check_positive_int, is_concrete
from sharpsim.policies import sequence_lengths

__all__ = ["SelfReward", "REGISTRY", "NAMES", "make", "logprob_reward", "length_normalized", "majority",
           "prefix_scores", "prefix_mask", "sequence_lengths"]

SelfReward = Callable[[Int[Array, ""], Any, Float[Array, " N"]], Float[Array, " N"]]


def _per_response(reward: Callable) -> Callable:
    """Mark ``reward`` as scoring each response on its own (its prefix scores are its scores, masked)."""
    reward.per_response = True
    return reward


@_per_response
def logprob_reward(x: Int[Array, ""], responses: Any, log_probs: Float[Array, " N"]) -> Float[Array, " N"]:
    """r_self(y|x) = log π_base(y|x): the maximum-likelihood sharpening self-reward (Eq. 2; registry name
    ``"logprob"``). Named apart from the policies' ``log_prob(x, y)`` method, which computes log π(y|x); this
    returns the oracle's log-probabilities as scores. ``rewards.log_prob`` is its deprecated old name."""
    del x, responses
    return log_probs


def length_normalized(eos_id: Optional[int] = None, lengths: Optional[Int[Array, " Y"]] = None) -> Callable:
    """r_self(y|x) = log π_base(y|x) / |y| (App. A.2).

    For token responses ``[N, H]`` the length counts tokens up to and including the first ``eos_id``.
    For tabular responses (integer ids) give ``lengths``, a ``[Y]`` table of response lengths.
    """
    if lengths is not None:
        table = jnp.asarray(lengths)
        if is_concrete(table) and np.any(np.asarray(table) < 1):
            raise ValueError("lengths must be >= 1 for every response (a response has at least one token).")

    @_per_response
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


def _majority_fraction(answers: Int[Array, " N"], live: Any, dtype) -> Float[Array, "G N"]:
    """Row g: for each response i among the live ones, #{live j : ans_j = ans_i} / #live; 0 without an
    answer (id < 0); ``-inf`` where not live. ``live`` is a ``[G, N]`` boolean mask of prefixes."""
    has = answers >= 0
    same = ((answers[:, None] == answers[None, :]) & has[:, None]).astype(dtype)  # [N, N]; row i: y_i's answer
    live_f = live.astype(dtype)
    counts = live_f @ same.T  # counts[g, i] = #{j live in row g : ans_j = ans_i}
    size = jnp.sum(live_f, axis=-1, keepdims=True)
    return jnp.where(live, counts / size, -jnp.inf)


def majority(answer_of: Any) -> Callable:
    """Self-consistency: r_self(y|x) = #{j ≤ N : ans(y_j) = ans(y)} / N, a FRACTION of the group (App. A.2).

    The sample estimate of the answer's mass Σ_{y′: ans(y′)=ans(y)} π_base(y′|x) (the bridge's
    ``"majority"`` has the same scale). ``answer_of`` is a ``[Y]`` integer table (tabular responses) or a
    callable mapping the responses array to ``[N]`` answer ids; a negative id means "no answer": such a
    response scores 0 and is not counted for others (it still counts in N).

    Its prefix scores (:func:`prefix_scores`) come from one count matrix: row g is exactly this reward on
    the first N_g responses.
    """
    table = None if callable(answer_of) else jnp.asarray(answer_of)

    def answers(responses):
        return answer_of(responses) if table is None else table[responses]

    def reward(x, responses, log_probs):
        del x
        live = jnp.ones((1, log_probs.shape[-1]), bool)
        return _majority_fraction(answers(responses), live, log_probs.dtype)[0]

    def prefixes(x, responses, log_probs, Ns):
        del x
        return _majority_fraction(answers(responses), prefix_mask(Ns, log_probs.shape[-1]), log_probs.dtype)

    reward.prefix_scores = prefixes
    return reward


# ------------------------------------------------------------------------------------------ prefix scores
def _check_grid(Ns, N: int) -> tuple:
    """The grid of prefix sizes as a tuple of ints in [1, N] (static: the shapes depend on it)."""
    if isinstance(Ns, jax.core.Tracer):
        raise ValueError("Ns (the grid of prefix sizes) must be concrete integers, not traced values.")
    grid = tuple(np.asarray(Ns).ravel().tolist())
    if not grid:
        raise ValueError("Ns (the grid of prefix sizes) is empty.")
    for n in grid:
        check_positive_int(n, "Ns")
        if n > N:
            raise ValueError(f"Ns contains {n}, more than the {N} responses drawn.")
    return grid


def prefix_mask(Ns: Sequence[int], N: int) -> Any:
    """``[G, N]`` boolean: ``live[g, j] = j < N_g`` (the first N_g responses)."""
    grid = _check_grid(Ns, N)
    return jnp.arange(N)[None, :] < jnp.asarray(grid)[:, None]


def prefix_scores(reward: Callable, x: Int[Array, ""], responses: Any, log_probs: Float[Array, " N"],
                  Ns: Sequence[int]) -> Float[Array, "G N"]:
    """Scores of each response among the first N_g responses, for every N_g of ``Ns``: ``[G, N]``.

    Row g, entries j < N_g, equal ``reward(x, responses[:N_g], log_probs[:N_g])``; entries j ≥ N_g are
    ``-inf`` (not in the group), so ``argmax(row)`` is best-of-N_g over the first N_g draws with ties to the
    first (as :func:`sharpsim.algorithms.select_best`). Per-response rewards (:func:`logprob_reward`,
    :func:`length_normalized`) and :func:`majority` compute all rows at once; any other callable is applied
    to each prefix (``Ns`` concrete).
    """
    N = log_probs.shape[-1]
    grid = _check_grid(Ns, N)
    if hasattr(reward, "prefix_scores"):
        return reward.prefix_scores(x, responses, log_probs, grid)
    if getattr(reward, "per_response", False):
        return jnp.where(prefix_mask(grid, N), reward(x, responses, log_probs)[None, :], -jnp.inf)
    rows = []
    for n in grid:  # a user's group reward: one call per prefix (what the definition says)
        head = reward(x, responses[:n], log_probs[:n])
        rows.append(jnp.concatenate([head, jnp.full((N - n,), -jnp.inf, head.dtype)]))
    return jnp.stack(rows)


# ------------------------------------------------------------------------------------------ registry
def _make_logprob(**context) -> Callable:
    return logprob_reward


def _make_lennorm(*, eos_id: Optional[int] = None, lengths: Any = None, **context) -> Callable:
    if eos_id is None and lengths is None:
        raise ValueError("self-reward 'lennorm' needs `eos_id` (token responses) or `lengths` (a [Y] table).")
    return length_normalized(eos_id=eos_id, lengths=lengths)


def _make_majority(*, answer_of: Any = None, **context) -> Callable:
    if answer_of is None:
        raise ValueError("self-reward 'majority' needs `answer_of` (a [Y] answer-id table or a callable).")
    return majority(answer_of)


#: name -> factory(**context) -> reward. Context keys: ``eos_id``, ``lengths`` (lennorm), ``answer_of``
#: (majority); each factory takes what it needs and ignores the rest.
REGISTRY: dict = {"logprob": _make_logprob, "lennorm": _make_lennorm, "majority": _make_majority}
NAMES = tuple(REGISTRY)


def make(name: str, **context) -> Callable:
    """The self-reward registered as ``name`` (one of :data:`NAMES`), built from ``context``.

    >>> import jax.numpy as jnp
    >>> vote = make("majority", answer_of=jnp.array([0, 1, 1]), eos_id=0)  # eos_id: not needed, ignored
    >>> vote(0, jnp.array([1, 2, 0, 1]), jnp.zeros(4)).tolist()
    [0.75, 0.75, 0.25, 0.75]
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown self-reward {name!r}; the registered ones are {NAMES}.")
    return REGISTRY[name](**context)
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


def __getattr__(name: str):
    """``rewards.log_prob`` (the old name of :func:`logprob_reward`, renamed so it is not confused with the
    policies' ``log_prob`` method) still resolves, with a ``DeprecationWarning``; it is the same object, so
    compiled programs keyed on the reward are shared."""
    if name == "log_prob":
        import warnings

        warnings.warn("sharpsim.rewards.log_prob is deprecated; use sharpsim.rewards.logprob_reward (registry name "
                      "'logprob')", DeprecationWarning, stacklevel=2)
        return logprob_reward
    raise AttributeError(f"module 'sharpsim.rewards' has no attribute {name!r}")
