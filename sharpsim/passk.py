"""Pass@k after sharpening (issue 16, item 4): exact curves, the unbiased estimator, and task families.

Yue et al. 2025 ("Does Reinforcement Learning Really Incentivize Reasoning Capacity in LLMs Beyond the Base
Model?", arXiv:2504.13837) report pass@1 rising after RL while pass@k at large k falls below the base model.
On a tabular task with a correctness set the mechanism is exact: pass@k(x) = 1 − (1 − π(correct(x)|x))^k, and
sharpening moves mass toward the base's likely responses — up on prompts whose likely responses are correct,
down on prompts whose only correct responses are unlikely (pass@k → 1 under π_base as k grows, → 0 after).

* :func:`pass_at_k_curve` — exact E_{x~μ}[1 − (1 − π(correct(x)|x))^k] for a whole grid of k
  (:func:`sharpsim.metrics.pass_at_n` at each k, in one call);
* :func:`pass_at_k_unbiased` — the unbiased estimator of Chen et al. 2021 (HumanEval),
  1 − C(n − c, k)/C(n, k) from c correct of n samples, vectorised (k ≤ n);
* :func:`passk_task_family` — random tabular tasks with answers and a correctness set: ``"shrink"`` (half the
  prompts have their correct answer among the *unlikely* responses, with small total mass) and its
  ``"control"`` (every prompt's correct answer owns its most likely responses).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from sharpsim.metrics import as_policy, mass_on
from sharpsim.policies import TabularPolicy

__all__ = ["pass_at_k_curve", "pass_at_k_from_mass", "pass_at_k_unbiased", "pass_at_k_plugin", "PassKTask",
           "passk_task_family"]


def pass_at_k_from_mass(p_correct: Float[Array, "..."], ks) -> Float[Array, "... K"]:
    """1 − (1 − p)^k for every k of ``ks`` (as −expm1(k·log1p(−p)): exact for tiny p)."""
    p = jnp.clip(jnp.asarray(p_correct), 0.0, 1.0)[..., None]
    k = jnp.asarray(ks, p.dtype)
    return -jnp.expm1(k * jnp.log1p(-p))


def pass_at_k_curve(pi, correct: Bool[Array, "X Y"], mu, ks) -> Float[Array, " K"]:
    """Exact pass@k = E_{x~μ}[1 − (1 − π(correct(x)|x))^k] for every k in ``ks`` (``[K]``).

    Equals :func:`sharpsim.metrics.pass_at_n` at each k (tests/test_passk.py).
    """
    pi = as_policy(pi)
    per_prompt = pass_at_k_from_mass(mass_on(pi, jnp.asarray(correct, bool)), ks)  # [X, K]
    return jnp.sum(jnp.asarray(mu, per_prompt.dtype)[:, None] * per_prompt, axis=0)


def pass_at_k_unbiased(num_correct: Int[Array, "..."], n: int, ks) -> Float[Array, "... K"]:
    """Chen et al. (2021)'s unbiased pass@k from c correct among n samples: 1 − C(n−c, k)/C(n, k), each k ≤ n.

    Computed as 1 − Π_{i=n−c+1}^{n} (1 − k/i) (no binomial coefficients; exactly 1 when n − c < k), with
    a ``[K, n + 1]`` table of suffix sums of log1p(−k/i) built once and gathered at n − c.
    """
    ks_np = np.asarray(ks)
    if np.any(ks_np < 1) or np.any(ks_np > n):
        raise ValueError(f"every k must lie in [1, n] = [1, {n}] (the unbiased estimator needs k <= n), got {ks_np.tolist()}.")
    dtype = jnp.result_type(float)
    i = jnp.arange(1, n + 1, dtype=dtype)
    k = jnp.asarray(ks_np, dtype)[:, None]
    terms = jnp.where(i[None, :] > k, jnp.log1p(-k / i[None, :]), 0.0)  # only i > k are ever used
    suffix = jnp.concatenate([jnp.cumsum(terms[:, ::-1], axis=1)[:, ::-1], jnp.zeros((k.shape[0], 1), dtype)], axis=1)
    m = n - jnp.asarray(num_correct, jnp.int32)  # n − c: the product runs over i = m + 1 … n
    log_ratio = jnp.moveaxis(suffix[:, m], 0, -1)  # [..., K]
    return jnp.where(m[..., None] < k[:, 0], 1.0, -jnp.expm1(log_ratio))


def pass_at_k_plugin(num_correct: Int[Array, "..."], n: int, ks) -> Float[Array, "... K"]:
    """The *biased* plug-in 1 − (1 − c/n)^k (underestimates pass@k; kept to show what the unbiased one fixes)."""
    return pass_at_k_from_mass(jnp.asarray(num_correct) / n, ks)


class PassKTask(NamedTuple):
    """A tabular task: ``pi_base``, ``correct [X, Y]``, ``answer_of [Y]`` (answer id of each response),
    ``correct_answer [X]`` and ``hard [X]`` (prompts whose correct answer owns only unlikely responses)."""

    pi_base: TabularPolicy
    correct: Bool[Array, "X Y"]
    answer_of: Int[Array, " Y"]
    correct_answer: Int[Array, " X"]
    hard: Bool[Array, " X"]


def passk_task_family(key, *, num_prompts: int, num_responses: int, num_answers: int, control,
                      hard_fraction: float = 0.5, hard_mass: float = 0.04) -> PassKTask:
    """A random task of the ``"shrink"`` (``control=False``) or ``"control"`` (``control=True``) family.

    Response y has answer ``y mod num_answers`` (each answer owns Y/A responses); each prompt draws a correct
    answer uniformly and base probabilities Dirichlet(1). *Easy* prompts give the Y/A largest probabilities to
    the correct answer's responses (so the argmax, the majority answer and the most likely responses are all
    correct). *Hard* prompts (the first ``hard_fraction`` of the prompts, shrink family only) give the correct
    answer the Y/A smallest probabilities, rescaled to total ``hard_mass``: correct-but-unlikely. ``control``
    may be traced (one compile serves both families).
    """
    X, Y, A = int(num_prompts), int(num_responses), int(num_answers)
    if Y % A:
        raise ValueError(f"num_responses ({Y}) must be a multiple of num_answers ({A}).")
    if not 0.0 < hard_mass < 1.0:
        raise ValueError(f"hard_mass must lie in (0, 1), got {hard_mass}.")
    dtype = jnp.result_type(float)
    k_ans, k_q, k_tie = jax.random.split(key, 3)
    answer_of = jnp.arange(Y, dtype=jnp.int32) % A
    correct_answer = jax.random.randint(k_ans, (X,), 0, A)
    correct = answer_of[None, :] == correct_answer[:, None]  # [X, Y]
    q = -jnp.log(jax.random.uniform(k_q, (X, Y), dtype, minval=1e-12, maxval=1.0))  # Dirichlet(1) up to scale
    q = q / jnp.sum(q, axis=1, keepdims=True)
    hard = (jnp.arange(X) < int(round(hard_fraction * X))) & ~jnp.asarray(control, bool)
    values = -jnp.sort(-q, axis=1)  # descending
    # slot order: the responses that get the largest values first (correct first on easy prompts, last on hard)
    first = jnp.where(hard[:, None], ~correct, correct)
    noise = jax.random.uniform(k_tie, (X, Y))
    slot = jnp.argsort(jnp.where(first, 0.0, 2.0) + noise, axis=1)  # slot[x, i]: response given values[x, i]
    probs = jnp.zeros_like(q).at[jnp.arange(X)[:, None], slot].set(values)
    c_mass = jnp.sum(jnp.where(correct, probs, 0.0), axis=1, keepdims=True)
    scaled = jnp.where(correct, probs * hard_mass / c_mass, probs * (1.0 - hard_mass) / (1.0 - c_mass))
    probs = jnp.where(hard[:, None], scaled, probs)
    return PassKTask(TabularPolicy(log_probs=jnp.log(probs)), correct, answer_of, correct_answer, hard)
