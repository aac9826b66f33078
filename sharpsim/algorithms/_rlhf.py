"""RLHF-sharpening, offline DPO/REBEL style (theory.md §9): Eq. (8) and the logistic DPO loss.

Data: n triples (x, y, y') with x ~ μ and y, y' ~ π_base(·|x) i.i.d. — N = 2 per prompt, m = 2n queries;
the self-reward r = log π_base comes with each draw. Eq. (8):

    π̂ ∈ argmin_{π∈Π} Σ ( β log π(y|x)/π_base(y|x) − β log π(y'|x)/π_base(y'|x) − (r(x,y) − r(x,y')) )².

Its population minimiser over all policies is π*_β ∝ π_base^{1+1/β} (zero loss). Option
``loss="logistic"``: Σ −log σ(β(log π/π_base(y_w) − log π/π_base(y_l))), y_w the higher-reward response.

``reward_noise`` σ: the regression target becomes r̃(y) − r̃(y'), r̃ = r + σ·ξ, ξ ~ N(0, 1) fresh per query
(noise drawn from ``fold_in(key, 1)``; never inside β log π/π_base). For the logistic loss the noisy rewards
decide which response is y_w.

:func:`rlhf_sharpening_sweep` (finite classes, exact): one draw of n_max pairs, every prefix n of a grid read
off cumulative per-candidate losses, and a ``vmap`` over traced (β, σ) points — entry (g, p) equals
``rlhf_sharpening`` with n = n_grid[g] on the first n pairs of the same draw.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from typing import Optional, Sequence

from jaxtyping import Array, Float, Int

from sharpsim import metrics
from sharpsim._validation import check_positive_int
from sharpsim.algorithms._common import (
    FitConfig,
    SharpeningResult,
    as_int,
    check_budget_field,
    check_finite_nonneg,
    check_tie_break,
    hyper_grid,
    select_with_ties,
    tie_priority,
    pair_residual,
    raise_if_nonfinite,
    run_core,
)
from sharpsim.algorithms._sft import check_evaluation
from sharpsim.classes import FiniteClass, check_class_matches, tabular_eq8_minimizer
from sharpsim.protocols import PolicyClass

__all__ = ["RLHFConfig", "rlhf_sharpening", "pair_losses_finite", "tabular_eq8_minimizer", "RLHFSweep",
           "rlhf_sharpening_sweep"]


@dataclasses.dataclass(frozen=True)
class RLHFConfig:
    """RLHF-sharpening on n preference pairs (m = 2n) with KL coefficient β > 0.

    ``loss``: ``"squared"`` (Eq. 8, default) or ``"logistic"`` (DPO). ``tabular_method``: ``"closed_form"``
    (exact Eq. 8 minimiser, see :func:`tabular_eq8_minimizer`) or ``"gradient"`` (optax on logits).
    ``reward_noise`` σ ≥ 0 (noisy regression targets); ``tie_break`` ("first" or "random") for finite classes.
    """

    n: int
    beta: float
    loss: str = "squared"
    tabular_method: str = "closed_form"
    fit: FitConfig = FitConfig()
    budget: int | None = None
    reward_noise: float = 0.0
    tie_break: str = "first"

    def __post_init__(self):
        check_positive_int(self.n, "n")
        check_finite_nonneg(self.beta, "beta", "the KL coefficient of Eq. 3/8", positive=True)
        check_finite_nonneg(self.reward_noise, "reward_noise", "the reward-noise standard deviation σ")
        check_tie_break(self.tie_break)
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


def pair_loss_fn(beta, loss, r_y, r_yp, n_y=0.0, n_yp=0.0, target_scale=1.0):
    """The per-pair loss of Eq. (8) (``"squared"``) or DPO (``"logistic"``) as a function of
    (log π(y|x), log π(y'|x)), elementwise over the n pairs whose rewards (r_y, r_yp) and reward noise
    (n_y, n_yp) it closes over: what every class's ``fit_pairs`` minimises (its one home).

    ``loss``: ``"squared"``, ``"logistic"``, or a traced 0/1 selector (1 = logistic: one program for both).
    ``target_scale`` (private test hook, 1 = Eq. 8): multiplies the reward difference in the regression target
    only; 0 drops it (a deliberately broken Eq. 8 that tests use to show their checks can fail)."""

    def squared(lp_y, lp_yp):
        res = pair_residual(beta, lp_y, lp_yp, r_y, r_yp) - (n_y - n_yp)
        if target_scale != 1.0:
            res = res + (1.0 - target_scale) * (r_y - r_yp)
        return res**2

    def pair_loss(lp_y, lp_yp):
        if isinstance(loss, str):
            return squared(lp_y, lp_yp) if loss == "squared" else _logistic_noisy(beta, lp_y, lp_yp, r_y, r_yp, n_y, n_yp)
        # a traced selector (1 = logistic, 0 = squared): both losses in one program, each value the chosen one's
        return jnp.where(loss > 0.5, _logistic_noisy(beta, lp_y, lp_yp, r_y, r_yp, n_y, n_yp), squared(lp_y, lp_yp))

    return pair_loss


def _logistic_noisy(beta, lp_y, lp_yp, r_y, r_yp, n_y, n_yp):
    """DPO's logistic loss with y_w decided by the (noisy) rewards r̃ = r + noise; β log π/π_base uses exact r."""
    h = beta * (lp_y - r_y) - beta * (lp_yp - r_yp)
    sign = jnp.where(r_y + n_y >= r_yp + n_yp, 1.0, -1.0).astype(h.dtype)
    return jax.nn.softplus(-sign * h)


def pair_losses_finite(cls: FiniteClass, prompts, y, yp, r_y, r_yp, beta, loss="squared", noise=(0.0, 0.0)):
    """Per-(prompt, candidate) sums of the pair loss: sufficient statistics ``[X, K]`` for exact minimisation.

    A candidate that gives an observed response zero probability has an infinite (or NaN) residual and
    gets +inf, so it is never selected. ``noise``: the per-pair reward noise (ξ_y, ξ_y') of the target.
    """
    per = cls.pair_scores(pair_loss_fn(beta, loss, r_y, r_yp, *noise), prompts, y, yp)
    return jnp.zeros((cls.num_prompts, cls.num_candidates), per.dtype).at[prompts].add(per)


def rlhf_sharpening(key: PRNGKeyArray, oracle, cls: PolicyClass, config: RLHFConfig) -> SharpeningResult:
    """RLHF-sharpening (Theorem 4.2's estimator): Eq. (8) (or logistic DPO) on n pairs from π_base.

    The minimiser is ``cls.fit_pairs``: exact over finite classes (per-candidate sums) and, for Eq. (8), over
    the tabular class (closed form, :func:`~sharpsim.classes.tabular_eq8_minimizer`); projected optax steps
    otherwise. Diagnostics: ``train_loss`` (mean pair loss at π̂), ``nonfinite_step`` and friends for
    gradient fits.
    """
    check_class_matches(cls, oracle.pi_base, "rlhf_sharpening")
    oracle.check_budget(config.num_queries, f"rlhf_sharpening(n={config.n})")
    if getattr(cls, "closed_form_eq8", False) and config.tabular_method == "closed_form" and config.reward_noise > 0:
        raise ValueError("reward_noise > 0 has no closed-form Eq. 8 minimiser over the tabular class; use "
                         "tabular_method='gradient' or a finite class.")
    dt = jnp.result_type(float)
    hp = dict(beta=jnp.asarray(config.beta, dt), sigma=jnp.asarray(config.reward_noise, dt))
    return raise_if_nonfinite(run_core(_rlhf_core, key, oracle, cls, config, hp), "rlhf_sharpening")


def _pairs(key, oracle, n, sigma):
    """n pairs from π_base (2n queries) and their reward noise σ·ξ (fresh per query, from fold_in(key, 1))."""
    batch = oracle.sample_and_evaluate(key, n, 2)
    z = sigma * jax.random.normal(jax.random.fold_in(key, 1), (n, 2), batch.log_probs.dtype)
    return batch, z


def _rlhf_core(key, oracle, cls, config: RLHFConfig, hp) -> SharpeningResult:
    batch, z = _pairs(key, oracle, config.n, hp["sigma"])
    x = batch.prompts
    y, yp = jax.tree_util.tree_map(lambda a: a[:, 0], batch.responses), jax.tree_util.tree_map(lambda a: a[:, 1], batch.responses)
    r_y, r_yp = batch.log_probs[:, 0], batch.log_probs[:, 1]
    beta = hp["beta"]
    pair_loss = pair_loss_fn(beta, config.loss, r_y, r_yp, z[:, 0], z[:, 1])
    eq8 = (beta, r_y, r_yp) if config.loss == "squared" and config.tabular_method == "closed_form" else None
    policy, params, info = cls.fit_pairs(pair_loss, x, y, yp, tie_key=jax.random.fold_in(key, 2),
                                         tie_break=config.tie_break, fit=config.fit, eq8=eq8)
    lp_table = getattr(policy, "log_probs", None)
    lp_fn = (lambda xx, yy: lp_table[xx, yy]) if lp_table is not None else policy.log_prob
    train = jnp.mean(pair_loss(lp_fn(x, y), lp_fn(x, yp)))
    diagnostics = dict(info, train_loss=train)
    return SharpeningResult(policy=policy, params=params, num_queries=as_int(batch.num_queries), diagnostics=diagnostics)


# --------------------------------------------------------------------------------------------- sweep
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RLHFSweep:
    """Eq. (8) / DPO over a finite class at every prefix n of a grid and every traced (β_p, σ_p) point.

    ``sharpness_error[g, p]`` (exact, :func:`metrics.sharpness_error`) of the minimiser chosen by the
    configured tie-break, ``worst_error[g, p]`` the largest sharpness error over the whole minimiser set (the
    worst-case tie-break), ``num_minimizers[g, p]`` its size, ``params[g, p]`` the chosen member,
    ``num_queries[g]`` = 2·n_grid[g].
    """

    sharpness_error: Float[Array, "G P"]
    worst_error: Float[Array, "G P"]
    num_minimizers: Int[Array, "G P"]
    num_queries: Int[Array, " G"]
    params: Int[Array, "G P X"]


def rlhf_sharpening_sweep(key: PRNGKeyArray, oracle, cls: FiniteClass, config: RLHFConfig, *,
                          evaluate: metrics.SharpnessEvaluation, n_grid: Optional[Sequence[int]] = None,
                          betas=None, reward_noises=None, losses: Optional[Sequence[str]] = None,
                          _target_scale: float = 1.0) -> RLHFSweep:
    """RLHF-sharpening over a finite class for a grid of n (prefixes of one draw) and traced (β, σ) points.

    One draw of max(n_grid) pairs (with their noise ξ); the per-pair, per-candidate losses are cumulated
    along the pairs, so prefix n costs one gather. ``betas``/``reward_noises``: 1-D arrays (broadcast), or
    None for ``config``'s values. Entry (g, p) equals ``rlhf_sharpening(key, …, replace(config, n=n_max,
    beta=β_p, reward_noise=σ_p))`` restricted to the first n_grid[g] pairs of the same draw (exactly so at
    n = n_max). ``losses``: per-point loss names ("squared", "logistic"; broadcast with ``betas``), or None for
    ``config.loss``; given, the loss is a traced selector, so Eq. 8 and DPO share one compiled program and entry
    (g, p) equals the sweep with ``config.loss = losses[p]``. Scoring is the caller's ``evaluate`` (required: a :class:`~sharpsim.metrics.SharpnessEvaluation`,
    e.g. ``SharpnessEvaluation.of(pi_base, mu, delta, gamma)``; the sweep never builds one from the oracle).
    ``_target_scale``: private test hook (see :func:`pair_loss_fn`); leave at 1.
    """
    if not callable(getattr(cls, "pair_scores", None)):
        raise ValueError(f"rlhf_sharpening_sweep needs a FiniteClass (exact minimisation), got {type(cls).__name__}.")
    check_class_matches(cls, oracle.pi_base, "rlhf_sharpening_sweep")
    evaluate = check_evaluation(evaluate, "rlhf_sharpening_sweep")
    n_grid = tuple(check_positive_int(v, "n_grid entry") for v in (n_grid or (config.n,)))
    n_max = max(n_grid)
    dt = jnp.result_type(float)
    if losses is not None:
        if isinstance(losses, str) or any(v not in ("squared", "logistic") for v in losses):
            raise ValueError(f"losses must be a sequence of 'squared' / 'logistic', got {losses!r}.")
        sel = [1.0 if v == "logistic" else 0.0 for v in losses]
    b, s, lsel = hyper_grid(("betas", betas, config.beta), ("reward_noises", reward_noises, config.reward_noise),
                            ("losses", None if losses is None else sel, 1.0 if config.loss == "logistic" else 0.0))
    batch = oracle.sample_and_evaluate(key, n_max, 2)
    xi = jax.random.normal(jax.random.fold_in(key, 1), (n_max, 2), batch.log_probs.dtype)
    x = batch.prompts
    y, yp = batch.responses[:, 0], batch.responses[:, 1]
    r_y, r_yp = batch.log_probs[:, 0], batch.log_probs[:, 1]
    priority = tie_priority(jax.random.fold_in(key, 2), cls, config.tie_break)
    X = cls.num_prompts
    # exact sharpness error of every candidate (the caller's evaluation): [X, K] per-prompt failure indicator
    cand_bad = evaluate.candidate_failures(cls.log_probs)
    mu = evaluate.mu
    onehot = jax.nn.one_hot(x, X, dtype=dt)  # [n, X]

    def at_hyper_point(beta, sigma, logistic):
        loss = config.loss if losses is None else logistic
        pair_loss = pair_loss_fn(beta, loss, r_y, r_yp, sigma * xi[:, 0], sigma * xi[:, 1], _target_scale)
        per = cls.pair_scores(pair_loss, x, y, yp)
        per = jnp.where(jnp.isfinite(per), per, 1e30)  # +inf would poison the cumulative sums
        cum = jnp.cumsum(onehot[:, :, None] * per[:, None, :], axis=0)  # [n, X, K]

        def at_prefix(n):  # the fit on the first n pairs
            scores = cum[n - 1]
            scores = jnp.where(scores >= 1e29, jnp.inf, scores)
            idx, tied = select_with_ties(cls, scores, priority)
            pol = cls.member(idx)
            err = evaluate.error(pol)
            if cls.product:
                worst_bad = jnp.max(jnp.where(tied, cand_bad, 0.0), axis=1)
                worst = jnp.sum(mu * worst_bad)
            else:
                per_k = jnp.sum(mu[:, None] * cand_bad, axis=0)  # [K]
                worst = jnp.max(jnp.where(tied[0], per_k, 0.0))
            return err, worst, jnp.sum(tied[0] if not cls.product else tied, dtype=jnp.int32), idx

        return jax.vmap(at_prefix)(jnp.asarray(n_grid, jnp.int32))

    err, worst, nmin, params = jax.vmap(at_hyper_point)(b, s, lsel)  # [P, G, ...]
    swap = lambda v: jnp.swapaxes(v, 0, 1)  # noqa: E731
    nq = jnp.asarray([2 * n for n in n_grid], jnp.int32)
    return RLHFSweep(sharpness_error=swap(err), worst_error=swap(worst), num_minimizers=swap(nmin),
                     num_queries=nq, params=swap(params))
