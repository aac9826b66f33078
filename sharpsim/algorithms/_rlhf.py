"""RLHF-sharpening, offline DPO/REBEL style (theory.md §9): Eq. (8) and the logistic DPO loss.

Data: n triples (x, y, y') with x ~ μ and y, y' ~ π_base(·|x) i.i.d. — N = 2 per prompt, m = 2n queries;
the self-reward r = log π_base comes with each draw. Eq. (8):

    π̂ ∈ argmin_{π∈Π} Σ ( β log π(y|x)/π_base(y|x) − β log π(y'|x)/π_base(y'|x) − (r(x,y) − r(x,y')) )².

Its population minimiser over all policies is π*_β ∝ π_base^{1+1/β} (zero loss). Option
``loss="logistic"``: Σ −log σ(β(log π/π_base(y_w) − log π/π_base(y_l))), y_w the higher-reward response.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from sharpsim._validation import check_positive_int
from sharpsim.algorithms._common import (
    FitConfig,
    SharpeningResult,
    as_int,
    check_budget_field,
    check_oracle_budget,
    gradient_fit,
    is_eager,
    jit_static,
    logistic_pair_loss,
    pair_residual,
    raise_if_nonfinite,
)
from sharpsim.classes import FiniteClass, TabularClass, check_class_matches

__all__ = ["RLHFConfig", "rlhf_sharpening", "pair_losses_finite", "tabular_eq8_minimizer"]


@dataclasses.dataclass(frozen=True)
class RLHFConfig:
    """RLHF-sharpening on n preference pairs (m = 2n) with KL coefficient β > 0.

    ``loss``: ``"squared"`` (Eq. 8, default) or ``"logistic"`` (DPO). ``tabular_method``: ``"closed_form"``
    (exact Eq. 8 minimiser, see :func:`tabular_eq8_minimizer`) or ``"gradient"`` (optax on logits).
    """

    n: int
    beta: float
    loss: str = "squared"
    tabular_method: str = "closed_form"
    fit: FitConfig = FitConfig()
    budget: int | None = None

    def __post_init__(self):
        check_positive_int(self.n, "n")
        try:
            beta = float(self.beta)
        except (TypeError, ValueError):
            raise ValueError(f"beta must be a number, got {self.beta!r}.") from None
        if not beta > 0:
            raise ValueError(f"beta (the KL coefficient of Eq. 3/8) must be > 0, got {self.beta!r}.")
        if self.loss not in ("squared", "logistic"):
            raise ValueError(f"loss must be 'squared' (Eq. 8) or 'logistic' (DPO), got {self.loss!r}.")
        if self.tabular_method not in ("closed_form", "gradient"):
            raise ValueError(f"tabular_method must be 'closed_form' or 'gradient', got {self.tabular_method!r}.")
        if self.loss == "logistic" and self.tabular_method == "closed_form":
            object.__setattr__(self, "tabular_method", "gradient")  # the logistic loss has no closed form
        check_budget_field(self.budget, 2 * self.n, f"RLHFConfig(n={self.n})")

    @property
    def num_queries(self) -> int:
        return 2 * self.n


def pair_losses_finite(cls: FiniteClass, prompts, y, yp, r_y, r_yp, beta, loss="squared"):
    """Per-(prompt, candidate) sums of the pair loss: sufficient statistics ``[X, K]`` for exact minimisation.

    A candidate that gives an observed response zero probability has an infinite (or NaN) residual and
    gets +inf, so it is never selected.
    """
    lp_y = cls.candidate_log_probs(prompts, y)  # [n, K]
    lp_yp = cls.candidate_log_probs(prompts, yp)
    if loss == "squared":
        res = pair_residual(beta, lp_y, lp_yp, r_y[:, None], r_yp[:, None])
        per = jnp.where(jnp.isfinite(res), res**2, jnp.inf)
    else:
        per = logistic_pair_loss(beta, lp_y, lp_yp, r_y[:, None], r_yp[:, None])
        per = jnp.where(jnp.isfinite(lp_y) & jnp.isfinite(lp_yp), per, jnp.inf)
    return jnp.zeros((cls.num_prompts, cls.num_candidates), per.dtype).at[prompts].add(per)


def tabular_eq8_minimizer(num_prompts, num_responses, prompts, y, yp, r_y, r_yp, beta):
    """An exact minimiser of Eq. (8) over the tabular class, in closed form (zero empirical loss).

    The residual vanishes iff log π(y|x) − log π(y'|x) = (1 + 1/β)(r(y) − r(y')) on every observed pair, so
    logits (1 + 1/β)·r(x, y) on every *observed* response zero every residual. Responses never observed
    at x are not identified by the loss; the documented rule gives them probability 0 (the data-supported
    minimiser), and prompts never seen get the uniform distribution. As n grows every response with
    positive mass is observed and the minimiser tends to π*_β ∝ π_base^{1+1/β}.
    """
    dtype = jnp.result_type(float)
    logits = jnp.full((num_prompts, num_responses), -jnp.inf, dtype)
    scale = 1.0 + 1.0 / beta
    logits = logits.at[prompts, y].set(scale * r_y).at[prompts, yp].set(scale * r_yp)
    seen = jnp.any(jnp.isfinite(logits), axis=1, keepdims=True)
    logits = jnp.where(seen, logits, 0.0)
    return jax.nn.log_softmax(logits, axis=-1)


def rlhf_sharpening(key: PRNGKeyArray, oracle, cls, config: RLHFConfig) -> SharpeningResult:
    """RLHF-sharpening (Theorem 4.2's estimator): Eq. (8) (or logistic DPO) on n pairs from π_base.

    Exact minimisation over finite classes (per-candidate sums) and, for Eq. (8), over the tabular class
    (closed form); projected optax steps otherwise. Diagnostics: ``train_loss`` (mean pair loss at π̂),
    ``nonfinite_step`` and friends for gradient fits.
    """
    check_class_matches(cls, oracle.pi_base, "rlhf_sharpening")
    check_oracle_budget(oracle, config.num_queries, f"rlhf_sharpening(n={config.n})")
    run = jit_static(_rlhf_core) if is_eager(key) else _rlhf_core
    return raise_if_nonfinite(run(key, oracle, cls, config), "rlhf_sharpening")


def _rlhf_core(key, oracle, cls, config: RLHFConfig) -> SharpeningResult:
    batch = oracle.sample_and_evaluate(key, config.n, 2)
    x = batch.prompts
    y, yp = jax.tree_util.tree_map(lambda a: a[:, 0], batch.responses), jax.tree_util.tree_map(lambda a: a[:, 1], batch.responses)
    r_y, r_yp = batch.log_probs[:, 0], batch.log_probs[:, 1]
    beta = config.beta
    info = {"nonfinite_step": as_int(-1)}

    def mean_loss(lp_fn):
        lp_y, lp_yp = lp_fn(x, y), lp_fn(x, yp)
        if config.loss == "squared":
            return jnp.mean(pair_residual(beta, lp_y, lp_yp, r_y, r_yp) ** 2)
        return jnp.mean(logistic_pair_loss(beta, lp_y, lp_yp, r_y, r_yp))

    if isinstance(cls, FiniteClass):
        scores = pair_losses_finite(cls, x, y, yp, r_y, r_yp, beta, config.loss)
        params = cls.select(scores, maximize=False)
        policy = cls.member(params)
    elif isinstance(cls, TabularClass) and config.tabular_method == "closed_form":
        policy_lp = tabular_eq8_minimizer(cls.num_prompts, cls.num_responses, x, y, yp, r_y, r_yp, beta)
        params = policy_lp
        policy = cls.member(jnp.where(jnp.isfinite(policy_lp), policy_lp, -jnp.inf))
    else:
        def loss_fn(params):
            return mean_loss(lambda xx, yy: cls.log_prob(params, xx, yy))

        params, _, info = gradient_fit(loss_fn, cls.project(cls.init_params()), cls.project, config.fit)
        policy = cls.member(params)
    lp_table = getattr(policy, "log_probs", None)
    if lp_table is not None:
        train = mean_loss(lambda xx, yy: lp_table[xx, yy])
    else:
        train = mean_loss(policy.log_prob)
    diagnostics = dict(info, train_loss=train)
    return SharpeningResult(policy=policy, params=params, num_queries=as_int(batch.num_queries), diagnostics=diagnostics)
