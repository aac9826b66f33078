"""Adaptive SFT-sharpening (Appendix D, theory.md §7): the stopping rule of Eq. (10), then MLE over Π.

    N_{μ_stop}(x_i) = inf{ k : 1 / max_{j≤k} π_base(y_{i,j}|x_i) ≤ k / μ_stop },   μ_stop = ln(2/δ),
    y_i^AdaBoN = the most likely response among the first N_{μ_stop}(x_i) draws,
    π̂ = argmax_{π∈Π} Σ_i log π(y_i^AdaBoN | x_i),     m = Σ_i N_{μ_stop}(x_i)   (random).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from sharpsim._validation import check_open_unit, check_positive, check_positive_int
from sharpsim.algorithms._common import (
    FitConfig,
    SharpeningResult,
    as_int,
    check_oracle_budget,
    is_eager,
    jit_static,
    raise_if_nonfinite,
)
from sharpsim.algorithms._sft import fit_mle
from sharpsim.classes import check_class_matches
from sharpsim.oracle import max_likelihood_stopping_rule

__all__ = ["AdaptiveSFTConfig", "adaptive_sft_sharpening"]


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
    check_class_matches(cls, oracle.pi_base, "adaptive_sft_sharpening")
    check_oracle_budget(oracle, config.n, f"adaptive_sft_sharpening(n={config.n})")  # at least one draw per prompt
    run = jit_static(_adaptive_core) if is_eager(key) else _adaptive_core
    return raise_if_nonfinite(run(key, oracle, cls, config), "adaptive_sft_sharpening")


def _adaptive_core(key, oracle, cls, config: AdaptiveSFTConfig) -> SharpeningResult:
    stop = max_likelihood_stopping_rule(config.stopping_parameter)
    batch = oracle.sample_adaptive(key, config.n, stop, chunk=config.chunk, max_per_prompt=config.max_per_prompt)
    policy, params, info = fit_mle(cls, batch.prompts, batch.best_response, config.fit)
    diagnostics = dict(
        info,
        num_drawn=batch.num_drawn,
        truncated=batch.truncated,
        selected_log_prob=jnp.mean(batch.best_log_prob),
        mu_stop=jnp.asarray(config.stopping_parameter, jnp.result_type(float)),
    )
    return SharpeningResult(policy=policy, params=params, num_queries=as_int(batch.num_queries), diagnostics=diagnostics)
