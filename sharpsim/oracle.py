"""The sample-and-evaluate oracle: the only door to π_base (Definitions 3.2 and D.1).

One *query* is one response y ~ π_base(·|x) drawn together with its likelihood π_base(y|x). The oracle
counts queries exactly: a fixed-N call costs m = n·N (a static Python int, known before anything runs);
an adaptive call (Definition D.1) lets a stopping rule decide per prompt, and reports the realised count.

The oracle is a frozen pytree over ``(pi_base, mu)``; it works with any policy that exposes
``sample_and_log_prob(key, x, num) -> (responses [num, ...], log_probs [num])`` (tabular or
autoregressive), so it can be passed through ``jit`` and ``vmap``-ed over trials.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from sharpsim._validation import (
    check_distribution,
    check_index,
    check_key,
    check_positive,
    check_positive_int,
    is_concrete,
)
from sharpsim.policies import InverseCDFTable, TabularPolicy, inverse_cdf_sample
from sharpsim.protocols import Policy

__all__ = [
    "BudgetExceededError",
    "SampleEvaluateOracle",
    "OracleBatch",
    "AdaptiveBatch",
    "StoppingRule",
    "max_likelihood_stopping_rule",
    "MaxLikelihoodStop",
]

#: ``stop(k, best_log_prob) -> bool``: after k draws whose best log-likelihood is ``best_log_prob``.
StoppingRule = Callable[[Int[Array, ""], Float[Array, ""]], Bool[Array, ""]]


class BudgetExceededError(ValueError):
    """A call would consume more sample-and-evaluate queries than the oracle's budget allows."""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class OracleBatch:
    """n prompts with N evaluated responses each; ``num_queries = n·N`` (static)."""

    prompts: Int[Array, " n"]
    responses: Any  # Int[Array, "n N"] (tabular) or Int[Array, "n N H"] (autoregressive)
    log_probs: Float[Array, "n N"]
    num_queries: int = dataclasses.field(metadata=dict(static=True))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class AdaptiveBatch:
    """Adaptive sample-and-evaluate (Definition D.1): per prompt, the most likely response seen.

    ``num_drawn[i]`` responses were drawn for prompt i (the realised per-prompt cost); ``truncated[i]``
    says the per-prompt cap stopped the draws before the stopping rule did (or the budget ran out).
    """

    prompts: Int[Array, " n"]
    best_response: Any  # Int[Array, " n"] or Int[Array, "n H"]
    best_log_prob: Float[Array, " n"]
    num_drawn: Int[Array, " n"]
    truncated: Bool[Array, " n"]

    @property
    def num_queries(self) -> Int[Array, ""]:
        """Total queries m = Σ_i N(x_i), a random variable."""
        return jnp.sum(self.num_drawn)


@dataclasses.dataclass(frozen=True)
class MaxLikelihoodStop:
    """Eq. (10): stop after k draws once 1 / max_{j≤k} π_base(y_j|x) ≤ k / μ_stop.

    A frozen (hashable) value rather than a closure, so jitted callers compile once per μ_stop.
    Written in logs as log k ≥ log μ_stop − max_j log π_base(y_j|x).
    """

    mu_stop: float

    def __call__(self, k, best_log_prob):
        return jnp.log(k.astype(best_log_prob.dtype)) >= float(np.log(self.mu_stop)) - best_log_prob


def max_likelihood_stopping_rule(mu_stop: float) -> StoppingRule:
    """The stopping rule of Eq. (10); Theorem D.1 takes μ_stop = ln(2/δ)."""
    check_positive(mu_stop, "mu_stop")
    return MaxLikelihoodStop(float(mu_stop))


def _index(tree, i):
    return jax.tree_util.tree_map(lambda a: a[i], tree)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SampleEvaluateOracle:
    """Sample-and-evaluate access to ``pi_base`` under the prompt distribution ``mu`` (Definition 3.2).

    Args:
      pi_base: the base policy (anything with ``sample_and_log_prob(key, x, num)``).
      mu: prompt distribution, ``[X]``.
      budget: optional cap on queries per call; a call that would exceed it raises
        :class:`BudgetExceededError` (a ``ValueError``) before drawing anything.
      sampler: what the draws come from; leave it ``None``. For a tabular ``pi_base`` given as a concrete
        array, the oracle builds its :class:`~sharpsim.policies.InverseCDFTable` once here (CDF and guide
        table), so each call costs only short searches; draws are identical to
        ``pi_base.sample_and_log_prob``. The table holds 2–3× the policy's memory: pass
        ``sampler=pi_base`` to draw from the policy itself instead. An oracle built inside ``jit``/``vmap``
        (e.g. one per trial) and non-tabular policies sample from ``pi_base`` directly.

    >>> import jax, jax.numpy as jnp
    >>> from sharpsim import TabularPolicy
    >>> oracle = SampleEvaluateOracle(TabularPolicy.from_probs(jnp.array([[0.7, 0.3]])), jnp.array([1.0]))
    >>> batch = oracle.sample_and_evaluate(jax.random.key(0), n=3, N=4)
    >>> batch.responses.shape, batch.num_queries
    ((3, 4), 12)
    """

    pi_base: Policy
    mu: Float[Array, " X"]
    budget: Optional[int] = dataclasses.field(default=None, metadata=dict(static=True))
    sampler: Any = None

    def __post_init__(self):
        pi = self.pi_base
        if isinstance(pi, (np.ndarray, list, tuple)) or (isinstance(pi, jax.Array) and is_concrete(pi)):
            raise ValueError(
                f"pi_base must be a policy (anything with sample_and_log_prob), got an array of shape {np.shape(pi)}; "
                "wrap a probability table as TabularPolicy.from_probs(P)."
            )
        if isinstance(pi, (str, bytes)):
            raise ValueError(f"pi_base must be a policy with sample_and_log_prob(key, x, num), got {pi!r}.")
        self._prepare_sampler()
        # JAX rebuilds pytrees with placeholder leaves (tracers, ShapeDtypeStructs, sentinels) during
        # jit/lower/eval_shape: validate only real arrays given by a user.
        if not isinstance(self.mu, (np.ndarray, jax.Array, list, tuple)):
            return
        num_prompts = getattr(self.pi_base, "num_prompts", None)
        if is_concrete(self.mu):
            if not isinstance(num_prompts, int):
                num_prompts = None
            check_distribution(self.mu, num_prompts, "mu")
        if self.budget is not None:
            check_positive_int(self.budget, "budget")

    def _prepare_sampler(self) -> None:
        pi = self.pi_base
        if not isinstance(pi, TabularPolicy) or not isinstance(pi.log_probs, (np.ndarray, jax.Array)):
            return  # not tabular, or a placeholder leaf while JAX rebuilds the pytree
        s = self.sampler
        if not is_concrete(pi.log_probs) or (s is not None and not isinstance(s, InverseCDFTable)):
            # Under a trace: JAX rebuilding the pytree (the table travels with it), or an oracle built
            # per trial, where a table would cost more than the few draws made from it.
            return
        if s is None or s.log_probs is not pi.log_probs:  # new, or a stale table (dataclasses.replace)
            object.__setattr__(self, "sampler", pi.inverse_cdf_table())

    def _check_prompts(self, prompts, name: str) -> None:
        num_prompts = getattr(self.pi_base, "num_prompts", None)
        if isinstance(num_prompts, int):
            check_index(prompts, num_prompts, name, "prompt id")

    @property
    def _source(self):
        """What draws come from: the prepared table of a tabular π_base, else π_base itself."""
        return self.pi_base if self.sampler is None else self.sampler

    # -------------------------------------------------------------------------------- accounting
    def check_budget(self, queries: int, what: str) -> None:
        """Refuse, before drawing anything, ``queries`` sample-and-evaluate queries beyond the budget.

        The one home of the budget check: every query method calls it, and an algorithm that spends its
        queries over several calls (XPO, the adaptive rule) calls it once with its total before drawing.
        """
        if self.budget is not None and queries > self.budget:
            raise BudgetExceededError(
                f"{what} needs {queries} sample-and-evaluate queries but the oracle's budget is {self.budget}; "
                "lower n or N, or raise `budget`."
            )

    # -------------------------------------------------------------------------------- queries
    def sample_prompts(self, key: PRNGKeyArray, n: int) -> Int[Array, " n"]:
        """Draw n prompts x ~ μ (free: prompts are not sample-and-evaluate queries)."""
        n = check_positive_int(n, "n")
        check_key(key)
        return _sample_prompts(self.mu, key, n)

    def respond(self, key: PRNGKeyArray, prompts: Int[Array, " n"], N: int) -> OracleBatch:
        """Draw N responses y ~ π_base(·|x) with their log-likelihoods for each given prompt (m = n·N).

        Concrete ``prompts`` must be a 1-D array of ids in ``[0, X)`` (``ValueError`` otherwise). Traced
        prompts (inside ``jit``/``vmap``) cannot be checked and an out-of-range id is clamped by XLA; wrap the
        traced function in :func:`sharpsim.checked` to make that an error.
        """
        N = check_positive_int(N, "N")
        check_key(key)
        if np.ndim(prompts) != 1:
            raise ValueError(f"prompts must be a 1-D array of prompt ids, got shape {np.shape(prompts)}.")
        self._check_prompts(prompts, "prompts")
        n = int(np.shape(prompts)[0])
        self.check_budget(n * N, f"respond(n={n}, N={N})")
        ys, lps = _respond(self._source, key, jnp.asarray(prompts), N)
        return OracleBatch(prompts=prompts, responses=ys, log_probs=lps, num_queries=n * N)

    def sample_and_evaluate(self, key: PRNGKeyArray, n: int, N: int) -> OracleBatch:
        """Draw n prompts x ~ μ and N evaluated responses for each: m = n·N queries (Definition 3.2)."""
        n = check_positive_int(n, "n")
        N = check_positive_int(N, "N")
        check_key(key)
        self.check_budget(n * N, f"sample_and_evaluate(n={n}, N={N})")
        prompts, ys, lps = _sample_and_evaluate(self, key, n, N)
        return OracleBatch(prompts=prompts, responses=ys, log_probs=lps, num_queries=n * N)

    def evaluate(self, prompts: Int[Array, "..."], responses: Any) -> tuple[Float[Array, "..."], int]:
        """log π_base(y|x) for arbitrary pairs (XPO's more general access, footnote 7), and its query count.

        Each evaluated pair costs one query. Concrete prompt and response ids are checked by ``pi_base.log_prob``
        (a ``ValueError`` names the one out of range).
        """
        self._check_prompts(prompts, "prompts")
        count = int(np.prod(np.shape(prompts))) if np.ndim(prompts) else 1
        self.check_budget(count, f"evaluate({count} pairs)")
        return self.pi_base.log_prob(prompts, responses), count

    def sample_adaptive(
        self,
        key: PRNGKeyArray,
        n: int,
        stop: StoppingRule,
        *,
        chunk: int = 32,
        max_per_prompt: int = 1 << 20,
    ) -> AdaptiveBatch:
        """Adaptive sample-and-evaluate (Definition D.1) keeping the most likely response per prompt.

        For each of n prompts x ~ μ, draws y_1, y_2, … ~ π_base(·|x) until ``stop(k, max_j log π_base(y_j|x))``
        holds (e.g. :func:`max_likelihood_stopping_rule`, Eq. 10) or ``max_per_prompt`` draws were made.
        Draws come in chunks of ``chunk`` inside a ``lax.while_loop``, but the count stops at the exact
        draw where the rule fires; the realised counts are in ``num_drawn``. Ties in likelihood keep the
        first draw, which is uniform over the tie group by exchangeability.

        With a ``budget``, prompts are processed in order and drawing stops when the budget is spent;
        eagerly that raises :class:`BudgetExceededError`, under ``jit`` it sets ``truncated``.
        """
        n = check_positive_int(n, "n")
        check_key(key)
        if not callable(stop):
            raise ValueError(f"stop must be a stopping rule stop(k, best_log_prob) -> bool, got {stop!r}.")
        chunk = check_positive_int(chunk, "chunk")
        max_per_prompt = check_positive_int(max_per_prompt, "max_per_prompt")
        prompts, best, best_lp, count, truncated = _sample_adaptive(self, key, n, stop, chunk, max_per_prompt)
        if self.budget is not None:
            if is_concrete(count) and bool(jnp.any(truncated & (jnp.cumsum(count) >= self.budget))):
                raise BudgetExceededError(
                    f"sample_adaptive(n={n}) spent the whole budget of {self.budget} queries before the stopping "
                    f"rule fired on every prompt ({int(jnp.sum(count > 0))} prompts reached); raise `budget` or lower n."
                )
        return AdaptiveBatch(prompts, best, best_lp, count, truncated)

    def _adaptive_one(self, key, x, stop, chunk, cap):
        # Shapes and dtypes of one draw, without drawing (every real draw is counted).
        shape_y, shape_lp = jax.eval_shape(lambda k, xx: self._source.sample_and_log_prob(k, xx, 1), key, x)
        init = (
            key,
            jnp.asarray(0, jnp.int32),
            jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape[1:], s.dtype), shape_y),
            jnp.asarray(-jnp.inf, shape_lp.dtype),
            jnp.asarray(cap) <= 0,  # nothing left to spend: draw nothing
        )

        def cond(s):
            return ~s[4]

        def body(s):
            k, count, best, best_lp, _ = s
            k, sub = jax.random.split(k)
            ys, lps = self._source.sample_and_log_prob(sub, x, chunk)
            running = jnp.maximum(best_lp, jax.lax.cummax(lps))
            ks = count + 1 + jnp.arange(chunk, dtype=jnp.int32)
            fire = jax.vmap(stop)(ks, running) | (ks >= cap)
            any_fire = jnp.any(fire)
            j_stop = jnp.where(any_fire, jnp.argmax(fire), chunk - 1)  # last draw taken in this chunk
            taken = jnp.arange(chunk) <= j_stop
            masked = jnp.where(taken, lps, -jnp.inf)
            j_best = jnp.argmax(masked)
            improve = masked[j_best] > best_lp
            best = jax.tree_util.tree_map(lambda a, b: jnp.where(improve, a, b), _index(ys, j_best), best)
            best_lp = jnp.where(improve, masked[j_best], best_lp)
            return k, count + j_stop + 1, best, best_lp, any_fire

        _, count, best, best_lp, _ = jax.lax.while_loop(cond, body, init)
        truncated = ~stop(count, best_lp)
        return best, best_lp, count, truncated


# ------------------------------------------------------------------------------------------------ jitted bodies
# The oracle is a pytree argument (never a closed-over constant: XLA would constant-fold large tables) and
# the sizes are static, so an eager call compiles once per shape instead of dispatching op by op.
@functools.partial(jax.jit, static_argnums=(2,))
def _sample_prompts(mu, key, n):
    return inverse_cdf_sample(key, jnp.log(jnp.asarray(mu)), n)


@functools.partial(jax.jit, static_argnums=(3,))
def _respond(pi_base, key, prompts, N):
    keys = jax.random.split(key, prompts.shape[0])
    return jax.vmap(lambda k, x: pi_base.sample_and_log_prob(k, x, N))(keys, prompts)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _sample_and_evaluate(oracle, key, n, N):
    key_x, key_y = jax.random.split(key)
    prompts = _sample_prompts(oracle.mu, key_x, n)
    ys, lps = _respond(oracle._source, key_y, prompts, N)
    return prompts, ys, lps


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _sample_adaptive(oracle, key, n, stop, chunk, max_per_prompt):
    key_x, key_y = jax.random.split(key)
    prompts = _sample_prompts(oracle.mu, key_x, n)
    keys = jax.random.split(key_y, n)
    if oracle.budget is None:
        best, best_lp, count, truncated = jax.vmap(
            lambda k, x: oracle._adaptive_one(k, x, stop, chunk, max_per_prompt)
        )(keys, prompts)
    else:

        def body(remaining, kx):
            k, x = kx
            res = oracle._adaptive_one(k, x, stop, chunk, jnp.minimum(remaining, max_per_prompt))
            return remaining - res[2], res

        _, (best, best_lp, count, truncated) = jax.lax.scan(body, jnp.asarray(oracle.budget, jnp.int32), (keys, prompts))
    return prompts, best, best_lp, count, truncated
