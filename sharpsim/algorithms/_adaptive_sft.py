"""Adaptive SFT-sharpening (Appendix D, theory.md §7): the stopping rule of Eq. (10), then MLE over Π.

    N_{μ_stop}(x_i) = inf{ k : 1 / max_{j≤k} π_base(y_{i,j}|x_i) ≤ k / μ_stop },   μ_stop = ln(2/δ),
    y_i^AdaBoN = the most likely response among the first N_{μ_stop}(x_i) draws,
    π̂ = argmax_{π∈Π} Σ_i log π(y_i^AdaBoN | x_i),     m = Σ_i N_{μ_stop}(x_i)   (random).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from sharpsim import metrics
from sharpsim._validation import check_key, check_open_unit, check_positive, check_positive_int
from sharpsim.algorithms._common import (
    FitConfig,
    SharpeningResult,
    as_int,
    raise_if_nonfinite,
    run_core,
)
from sharpsim.algorithms._sft import check_evaluation, exact_mle_evaluated
from sharpsim.classes import check_class_matches, count_table
from sharpsim.oracle import max_likelihood_stopping_rule

__all__ = ["AdaptiveSFTConfig", "adaptive_sft_sharpening", "AdaptiveSFTSweep", "adaptive_sft_sharpening_sweep"]


@dataclasses.dataclass(frozen=True)
class AdaptiveSFTConfig:
    """n prompts; stop each prompt by Eq. (10) with μ_stop = ln(2/δ) (Theorem D.1), or an explicit ``mu_stop``.

    ``max_per_prompt`` caps the draws at one prompt (a prompt that hits it is reported in
    ``diagnostics["truncated"]``); ``chunk`` is the oracle's draw granularity (the count stays exact).
    """

    n: int
    delta: Optional[float] = None
    mu_stop: Optional[float] = None
    chunk: int = 32
    max_per_prompt: int = 1 << 20
    fit: FitConfig = FitConfig()

    def __post_init__(self):
        check_positive_int(self.n, "n")
        check_positive_int(self.chunk, "chunk")
        check_positive_int(self.max_per_prompt, "max_per_prompt")
        if (self.delta is None) == (self.mu_stop is None):
            raise ValueError("give exactly one of delta (μ_stop = ln(2/δ), Theorem D.1) or mu_stop.")
        if self.delta is not None:
            check_open_unit(self.delta, "delta")
        else:
            check_positive(self.mu_stop, "mu_stop")

    @property
    def stopping_parameter(self) -> float:
        """μ_stop: ln(2/δ) when δ is given (Theorem D.1)."""
        return math.log(2.0 / self.delta) if self.delta is not None else float(self.mu_stop)


def adaptive_sft_sharpening(key: PRNGKeyArray, oracle, cls, config: AdaptiveSFTConfig) -> SharpeningResult:
    """Adaptive SFT-sharpening (Theorem D.1): Eq. (10)'s stopping rule per prompt, then MLE over ``cls``.

    ``num_queries`` is the realised Σ_i N(x_i) (a random int per trial). Diagnostics: ``num_drawn [n]``
    (per-prompt draws), ``truncated [n]`` (cap hit before the rule fired), ``mu_stop``.
    """
    check_key(key)
    check_class_matches(cls, oracle.pi_base, "adaptive_sft_sharpening")
    oracle.check_budget(config.n, f"adaptive_sft_sharpening(n={config.n})")  # at least one draw per prompt
    return raise_if_nonfinite(run_core(_adaptive_core, key, oracle, cls, config), "adaptive_sft_sharpening")


def _adaptive_core(key, oracle, cls, config: AdaptiveSFTConfig) -> SharpeningResult:
    stop = max_likelihood_stopping_rule(config.stopping_parameter)
    batch = oracle.sample_adaptive(key, config.n, stop, chunk=config.chunk, max_per_prompt=config.max_per_prompt)
    policy, params, info = cls.fit_mle(batch.prompts, batch.best_response, config.fit)
    diagnostics = dict(
        info,
        num_drawn=batch.num_drawn,
        truncated=batch.truncated,
        selected_log_prob=jnp.mean(batch.best_log_prob),
        mu_stop=jnp.asarray(config.stopping_parameter, jnp.result_type(float)),
    )
    return SharpeningResult(policy=policy, params=params, num_queries=as_int(batch.num_queries), diagnostics=diagnostics)


# ------------------------------------------------------------------------------------ sweep
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class AdaptiveSFTSweep:
    """Adaptive SFT-sharpening for every n of a grid, from one adaptive draw of ``n_max`` prompts.

    ``sharpness_error[g]`` = P_{x~μ}[π̂_g(y*_γ(x)|x) ≤ 1 − δ] (exact) for the MLE on the first ``n_grid[g]``
    prompts; ``num_queries[g]`` = Σ_{i < n_g} N_{μ_stop}(x_i), exactly what that run drew (prefix sums of
    ``num_drawn``); ``target_mass[g]`` the μ-weighted mean of π̂_g(y*_γ(x)|x); ``params[g]`` the fitted member
    (finite class) or zeros; ``num_drawn``/``truncated`` per prompt ``[n_max]``; ``total_drawn`` = their sum.
    """

    sharpness_error: Float[Array, " G"]
    num_queries: Int[Array, " G"]
    target_mass: Float[Array, " G"]
    params: Any
    num_drawn: Int[Array, " n"]
    truncated: Bool[Array, " n"]
    total_drawn: Int[Array, ""]


def adaptive_sft_sharpening_sweep(
    key: PRNGKeyArray,
    oracle,
    cls,
    n_grid: Sequence[int],
    *,
    evaluate: metrics.SharpnessEvaluation,
    mu_stop: Optional[float] = None,
    chunk: int = 32,
    max_per_prompt: int = 1 << 20,
) -> AdaptiveSFTSweep:
    """Adaptive SFT-sharpening (Theorem D.1) at every n of a grid from ONE adaptive draw, with exact sharpness.

    Runs Eq. (10)'s stopping rule on ``n_max = max(n_grid)`` prompts once (``oracle.sample_adaptive``); grid
    point g is exactly the adaptive run on the first ``n_grid[g]`` prompts (the rule acts per prompt, so a
    prefix of prompts is a run of its own): MLE on the masked counts of the kept responses, and
    ``num_queries[g]`` the cumulative draws of those prompts. Scoring is the caller's ``evaluate`` (a
    :class:`~sharpsim.metrics.SharpnessEvaluation`: π̂ ≤ 1 − δ counts as an error); the stopping parameter is
    ``mu_stop``, by default ln(2/δ) with the evaluation's δ as in Theorem D.1. ``cls``: a finite or tabular class
    (exact MLE). Designed for ``jit(vmap(...))`` over trial keys.

    >>> import jax, jax.numpy as jnp
    >>> from sharpsim import SampleEvaluateOracle, TabularPolicy
    >>> from sharpsim.classes import TabularClass
    >>> from sharpsim.metrics import SharpnessEvaluation
    >>> base = TabularPolicy.from_probs(jnp.array([[0.5, 0.3, 0.2]]))
    >>> oracle = SampleEvaluateOracle(base, jnp.ones(1))
    >>> ev = SharpnessEvaluation.of(base, jnp.ones(1), delta=0.1)
    >>> sw = adaptive_sft_sharpening_sweep(jax.random.key(0), oracle, TabularClass(1, 3), (10, 100), evaluate=ev)
    >>> sw.num_queries.shape, bool(sw.num_queries[1] == sw.total_drawn)
    ((2,), True)
    """
    n_grid = tuple(check_positive_int(v, "n_grid entry") for v in n_grid)
    if not n_grid:
        raise ValueError("n_grid must be non-empty.")
    evaluate = check_evaluation(evaluate, "adaptive_sft_sharpening_sweep")
    if not getattr(cls, "exact_mle", False):
        raise ValueError(
            "adaptive_sft_sharpening_sweep needs an exact-MLE class (FiniteClass or TabularClass); got "
            f"{type(cls).__name__}. Use adaptive_sft_sharpening per n for gradient-fitted classes."
        )
    check_class_matches(cls, oracle.pi_base, "adaptive_sft_sharpening_sweep")
    n_max = max(n_grid)
    oracle.check_budget(n_max, f"adaptive_sft_sharpening_sweep(n_max={n_max})")
    if mu_stop is None:  # Theorem D.1: μ_stop = ln(2/δ), δ the evaluation's threshold (concrete)
        if isinstance(evaluate.delta, jax.core.Tracer):
            raise ValueError("adaptive_sft_sharpening_sweep: give mu_stop when the evaluation's delta is traced.")
        check_open_unit(evaluate.delta, "evaluate.delta")
        mu_stop = math.log(2.0 / float(evaluate.delta))
    mu = float(mu_stop)
    check_positive(mu, "mu_stop")
    batch = oracle.sample_adaptive(key, n_max, max_likelihood_stopping_rule(mu), chunk=chunk,
                                   max_per_prompt=max_per_prompt)
    X, Y = cls.num_prompts, cls.num_responses
    ar = jnp.arange(n_max)
    cum = jnp.cumsum(batch.num_drawn)

    def fit_prefix(n_g):  # the adaptive run on the first n_g prompts
        w = (ar < n_g).astype(jnp.result_type(float))
        counts = count_table(X, Y, batch.prompts, batch.best_response, w)
        return exact_mle_evaluated(cls, counts, evaluate)

    n_arr = jnp.asarray(n_grid, jnp.int32)
    err, mass, params = jax.vmap(fit_prefix)(n_arr)
    return AdaptiveSFTSweep(
        sharpness_error=err, num_queries=cum[n_arr - 1].astype(jnp.int32), target_mass=mass, params=params,
        num_drawn=batch.num_drawn, truncated=batch.truncated, total_drawn=as_int(cum[-1]),
    )
