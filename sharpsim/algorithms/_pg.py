"""Policy-gradient sharpening with self-rewards: REINFORCE, RLOO and GRPO (issue 16, beyond the paper).

The paper sharpens by SFT on best-of-N picks (§6) or by the offline regression of Eq. (8); since then RL with
*self*-rewards has been tried widely: majority-vote pseudo-labels (TTRL), self-certainty (Intuitor/RLIF),
negative entropy (entropy-minimisation RL). This module runs those policy gradients over the toolkit's
gradient classes (:class:`~sharpsim.TabularClass` — softmax logits — and :class:`~sharpsim.ParametricClass`
wrapping an autoregressive policy), with the objective

    J(π) = E_{x~μ, y~π(·|x)}[ r(y|x) ] − β·KL(π ‖ π_base)                       (Eq. 3 with a general r)

whose maximiser for r = log π_base is π*_β ∝ π_base^{1+1/β} (theory.md §9; :func:`sharpsim.power_policy`).

Each step draws ``num_prompts`` prompts x ~ μ and a group of ``group_size`` responses y ~ π_θ(·|x) from the
*current* policy, evaluates log π_base on them (one evaluate query each: the XPO-style access of footnote 7),
scores them with the self-reward, turns the group's rewards into advantages and takes one optax step (the
toolkit's one fit loop, :func:`sharpsim._fit.projected_fit`, with ``steps=1``). Losses, named as in TRL where
TRL has the same loss (``GRPOConfig.loss_type`` / ``scale_rewards``, ``RLOOTrainer``):

==============  =============================================  =============================================
``loss``        advantage A_i of response i in its group        aggregation of the per-token loss −A_i·log π_t
==============  =============================================  =============================================
``reinforce``   r_i (no baseline; Williams 1992)                sum over tokens, mean over sequences
``rloo``        r_i − mean_{j≠i} r_j (TRL ``RLOOTrainer``)       sum over tokens, mean over sequences
``grpo``        (r_i − mean r)/(std r + ε) (TRL ``"grpo"``)      mean over a sequence's tokens, then sequences
``bnpo``        as ``grpo`` (TRL ``"bnpo"``)                     sum over all tokens / number of tokens
``dr_grpo``     r_i − mean r (TRL ``"dr_grpo"``, no std scale)   sum over all tokens / (sequences · H)
==============  =============================================  =============================================

std is the unbiased (Bessel) group standard deviation and ε = ``std_eps`` (TRL: 1e-4). The sampling policy is
the current one (one update per batch), so the importance ratio is 1 and PPO's clipping is inactive: the
gradient is −A·∇log π. The KL term (``kl``): ``"reward"`` subtracts β(log π − log π_base)(y) from the reward
before the advantages (KL in the reward, as in PPO-RLHF and TRL's RLOO), which makes REINFORCE/RLOO an
unbiased estimate of ∇J; ``"k3"`` adds β·(π_base/π − log(π_base/π) − 1) per token to the loss (TRL's GRPO with
``beta > 0``, Schulman's k3 estimator) — whose gradient under on-policy sampling is that of KL(π_base ‖ π), the
*reverse* KL, so its fixed point is not π_base^{1+1/β} (docs/algorithms.md). β and the learning rate are
traced arguments (vmap over them without recompiling).

The k3 fixed point (tabular, REINFORCE/RLOO, reward r). With ρ = π_base/π the per-token term's gradient is
(1 − ρ(y))·∇log π(y), so E_{y~π}[·] = −Σ_y π_base(y)∇log π(y) = ∇ KL(π_base ‖ π), while E[−A ∇log π] = −∇E_π[r].
The expected loss gradient is that of −F(π) with F(π) = Σ_y π(y) r(y) − β·KL(π_base ‖ π), concave on the simplex;
on the logits, ∂F/∂θ_y = π(y)(r(y) − E_π r) − β(π(y) − π_base(y)). Setting it to zero (the stationarity condition of
the Lagrangian r(y) + β π_base(y)/π(y) = λ) gives, per prompt,

    π_k3(y|x) = β·π_base(y|x) / (λ_x − r(x, y)),   λ_x > max_y r(x, y) the unique root of Σ_y β π_base(y|x)/(λ_x − r(x, y)) = 1

(λ_x = β + E_{π_k3} r). For r = log π_base this is π_base(y)/(λ − log π_base(y)) up to normalisation: a tail that
falls only logarithmically faster than π_base's, not π_base^{1+1/β}; both tend to the argmax as β → 0.
tests/test_pg.py runs RLOO with ``kl="k3"`` to it (and away from π_base^{1+1/β}, 0.1 apart in TV there). Under
``grpo``/``bnpo`` the std scaling of the advantages changes the balance against the k3 term, so this closed form is
for the unscaled advantages only.

Exact dynamics (tabular): :func:`pg_expected_update` is the expected REINFORCE/RLOO step on the logits with KL
in the reward, Σ_x μ(x)·π(y|x)(r̃(y) − E_π r̃) with r̃ = r − β log(π/π_base) — the mean of the sampled update
for every group size (the leave-one-out baseline does not depend on y_i). Its fixed point for r = log π_base
is π_base^{1+1/β}; with β = 0 it climbs to the argmax of r.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sharpsim import rewards as _rewards
from sharpsim._fit import projected_fit
from sharpsim.classes import check_class_matches, is_gradient_class
from sharpsim.policies import TabularPolicy, sequence_lengths

__all__ = ["PG_LOSSES", "KL_MODES", "PGConfig", "PGResult", "group_advantages", "pg_reward", "pg_sharpening",
           "pg_expected_update", "pg_expected_trajectory"]

PG_LOSSES = ("reinforce", "rloo", "grpo", "bnpo", "dr_grpo")
KL_MODES = ("none", "reward", "k3")


@dataclasses.dataclass(frozen=True)
class PGConfig:
    """Static configuration of :func:`pg_sharpening` (β and the learning rate are traced arguments).

    ``steps`` optimiser steps, each on ``num_prompts`` prompts × ``group_size`` responses from the current
    policy; ``loss`` ∈ :data:`PG_LOSSES`, ``kl`` ∈ :data:`KL_MODES`; ``optimizer`` "sgd" or "adam";
    ``record_params``: also return the parameters after every step (small classes: exact-trajectory tests).
    """

    steps: int = 200
    num_prompts: int = 8
    group_size: int = 8
    loss: str = "grpo"
    kl: str = "reward"
    optimizer: str = "adam"
    std_eps: float = 1e-4
    record_params: bool = False

    def __post_init__(self):
        for name in ("steps", "num_prompts", "group_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"PGConfig.{name} must be a positive integer, got {v!r}.")
        if self.loss not in PG_LOSSES:
            raise ValueError(f"PGConfig.loss must be one of {PG_LOSSES}, got {self.loss!r}.")
        if self.kl not in KL_MODES:
            raise ValueError(f"PGConfig.kl must be one of {KL_MODES}, got {self.kl!r}.")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"PGConfig.optimizer must be 'sgd' or 'adam', got {self.optimizer!r}.")
        if self.loss in ("rloo", "grpo", "bnpo", "dr_grpo") and self.group_size < 2:
            raise ValueError(f"PGConfig.group_size must be >= 2 for loss {self.loss!r} (a group baseline).")
        if not self.std_eps > 0:
            raise ValueError(f"PGConfig.std_eps must be > 0, got {self.std_eps!r}.")

    @property
    def num_queries(self) -> int:
        """Evaluate queries log π_base(y|x) on the learner's own draws: steps · num_prompts · group_size."""
        return self.steps * self.num_prompts * self.group_size


class PGResult(NamedTuple):
    """``policy``/``params`` after the last step; ``num_queries``; ``history``: per-step ``mean_reward``,
    ``loss`` and (``record_params``) ``params`` after each step; ``nonfinite_step`` (−1 if none)."""

    policy: Any
    params: Any
    num_queries: int
    history: dict
    nonfinite_step: Any


# ----------------------------------------------------------------------------------------------- pieces
def group_advantages(r, loss: str, std_eps: float = 1e-4, *, _center: bool = True):
    """Advantages of one group of rewards ``r [G]`` for ``loss`` (table in the module docstring).

    A reward that is the same for the whole group gives A = 0 for every baseline loss (rloo, grpo, bnpo,
    dr_grpo): the group-normalisation trap. ``_center=False`` drops the baseline (a deliberately broken
    variant for the tests).
    """
    G = r.shape[-1]
    mean = jnp.mean(r, axis=-1, keepdims=True) * jnp.asarray(_center, r.dtype)  # _center may be traced
    if loss == "reinforce":
        return r
    if loss == "rloo":
        return (r - mean) * (G / (G - 1))  # r_i − mean of the other G − 1
    centred = r - mean
    if loss == "dr_grpo":
        return centred
    std = jnp.sqrt(jnp.sum((r - jnp.mean(r, axis=-1, keepdims=True)) ** 2, axis=-1, keepdims=True) / (G - 1))
    return centred / (std + std_eps)


def _aggregate(per_token, mask, loss: str):
    """Reduce a ``[S, H]`` per-token loss with token ``mask`` as TRL's ``loss_type`` does (module docstring)."""
    per_token = jnp.where(mask, per_token, 0.0)
    S, H = per_token.shape
    if loss in ("reinforce", "rloo"):
        return jnp.sum(per_token) / S
    if loss == "grpo":
        return jnp.mean(jnp.sum(per_token, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1))
    if loss == "bnpo":
        return jnp.sum(per_token) / jnp.maximum(jnp.sum(mask), 1)
    return jnp.sum(per_token) / (S * H)  # dr_grpo


def pg_reward(name: str, *, answer_of=None, lengths=None, eos_id=None) -> Callable:
    """A self-reward for :func:`pg_sharpening`: ``reward(x, responses, base_log_probs, policy) -> [G]``.

    ``name``: ``"logprob"`` (log π_base, Eq. 2), ``"lennorm"`` (log π_base / |y|; ``lengths`` for tabular
    responses, ``eos_id`` for tokens), ``"majority_vote"`` (TTRL's binary pseudo-label; ``answer_of``),
    ``"self_certainty"`` (Intuitor: mean KL(U ‖ π_h) under the current policy), ``"neg_entropy"`` (log π(y|x)
    under the current policy). Any callable with that signature also works as a reward.
    """
    if name == "logprob":
        return lambda x, ys, blp, pol: _rewards.logprob_reward(x, ys, blp)
    if name == "lennorm":
        r = _rewards.length_normalized(eos_id=eos_id, lengths=lengths)
        return lambda x, ys, blp, pol: r(x, ys, blp)
    if name == "majority_vote":
        if answer_of is None:
            raise ValueError("pg_reward('majority_vote') needs answer_of (a [Y] table or a callable).")
        r = _rewards.majority_vote(answer_of)
        return lambda x, ys, blp, pol: r(x, ys, blp)
    if name == "self_certainty":
        return lambda x, ys, blp, pol: _rewards.self_certainty(pol, x, ys).astype(blp.dtype)
    if name == "neg_entropy":
        return lambda x, ys, blp, pol: _rewards.negative_entropy(pol, x, ys).astype(blp.dtype)
    raise ValueError(f"unknown self-reward {name!r}; choose logprob, lennorm, majority_vote, self_certainty, "
                     "neg_entropy, or pass a callable reward(x, responses, base_log_probs, policy).")


def _token_log_probs(policy, x, ys):
    """Per-token log π ``[G, H]`` and the token mask (tabular: one token per response)."""
    if isinstance(policy, TabularPolicy):
        lp = policy.log_probs[x, ys][:, None]
        return lp, jnp.ones_like(lp, bool)
    lp = jax.vmap(lambda y: policy.token_log_probs(x, y))(ys)
    mask = jnp.arange(policy.horizon)[None, :] < sequence_lengths(ys, policy.eos_id)[:, None]
    return lp, mask


def _base_token_log_probs(pi_base, x, ys):
    if isinstance(pi_base, TabularPolicy):
        return pi_base.log_probs[x, ys][:, None]
    return jax.vmap(lambda y: pi_base.token_log_probs(x, y))(ys)


# ----------------------------------------------------------------------------------------------- the loop
def pg_sharpening(key, oracle, cls, config: PGConfig, reward: Callable, *, beta=0.0, learning_rate=0.1,
                  params0=None, _center=True) -> PGResult:
    """Policy-gradient sharpening (module docstring): ``config.steps`` on-policy steps from ``params0``
    (default: the class's initial parameters, e.g. π_base's own for ``ParametricClass.from_policy(pi_base)``;
    for a :class:`~sharpsim.TabularClass` pass ``params0=pi_base.log_probs`` to start at π_base).

    ``reward(x, responses, base_log_probs, policy) -> [G]`` (see :func:`pg_reward`); ``beta`` ≥ 0 and
    ``learning_rate`` > 0 may be traced. Pure and jit/vmap-able over keys, β and the learning rate; queries:
    ``config.num_queries`` evaluate queries. Exact optimum (tabular, r = log π_base, ``kl="reward"``, β > 0):
    π_base^{1+1/β}; β = 0: the argmax of r; ``kl="k3"`` with ``reinforce``/``rloo``: π_k3 ∝ β π_base/(λ − r), the
reverse-KL optimum of the module docstring (tests/test_pg.py). ``_center=False`` drops the group baseline
    (a deliberately broken variant: the tests and the ``passk_shrinkage`` checks show it caught).
    """
    if not is_gradient_class(cls):
        raise ValueError(f"pg_sharpening needs a gradient class (TabularClass, LogLinearClass, ParametricClass), "
                         f"got {type(cls).__name__}.")
    check_class_matches(cls, oracle.pi_base, "pg_sharpening")
    oracle.check_budget(config.num_queries, f"pg_sharpening({config.steps} steps)")
    opt = {"sgd": optax.sgd, "adam": optax.adam}[config.optimizer]
    optimizer = optax.inject_hyperparams(opt)(learning_rate=learning_rate)
    params0 = cls.project(cls.init_params() if params0 is None else params0)
    dtype = jnp.result_type(float)
    beta = jnp.asarray(beta, dtype)

    def step(carry, k):
        params, state = carry
        kp, ky = jax.random.split(k)
        policy = cls.member(params)
        xs = oracle.sample_prompts(kp, config.num_prompts)
        ys = jax.vmap(lambda kk, x: policy.sample_and_log_prob(kk, x, config.group_size)[0])(
            jax.random.split(ky, config.num_prompts), xs)
        base_lp, _ = oracle.evaluate(jnp.broadcast_to(xs[:, None], ys.shape[:2]), ys)
        r = jax.vmap(lambda x, y, b: reward(x, y, b, policy))(xs, ys, base_lp).astype(dtype)
        own_lp = jax.vmap(lambda x, y: _token_log_probs(policy, x, y)[0].sum(-1))(xs, ys)
        if config.kl == "reward":
            r_tilde = r - beta * (own_lp - base_lp)
        else:
            r_tilde = r
        adv = jax.lax.stop_gradient(jax.vmap(lambda g: group_advantages(g, config.loss, config.std_eps, _center=_center))(r_tilde))
        ref_tok = (jax.vmap(lambda x, y: _base_token_log_probs(oracle.pi_base, x, y))(xs, ys)
                   if config.kl == "k3" else None)

        def loss_fn(p):
            lp, mask = jax.vmap(lambda x, y: _token_log_probs(cls.member(p), x, y))(xs, ys)  # [n, G, H]
            per_tok = -adv[..., None] * lp
            if config.kl == "k3":
                d = ref_tok - lp
                per_tok = per_tok + beta * (jnp.exp(d) - d - 1.0)
            H = lp.shape[-1]
            return _aggregate(per_tok.reshape(-1, H), mask.reshape(-1, H), config.loss)

        params, state, info = projected_fit(loss_fn, params, cls.project, optimizer, 1, opt_state=state)
        out = {"mean_reward": jnp.mean(r), "loss": info["final_loss"], "nonfinite": info["nonfinite_step"]}
        if config.record_params:
            out["params"] = params
        return (params, state), out

    (params, _), hist = jax.lax.scan(step, (params0, optimizer.init(params0)),
                                     jax.random.split(key, config.steps))
    bad = jnp.where(hist["nonfinite"] >= 0, jnp.arange(config.steps), config.steps)
    first_bad = jnp.min(bad)
    history = {k: v for k, v in hist.items() if k != "nonfinite"}
    return PGResult(cls.member(params), params, config.num_queries, history,
                    jnp.where(first_bad < config.steps, first_bad, -1))


# ----------------------------------------------------------------------------------------------- exact
def pg_expected_update(logits, base_log_probs, mu, reward_table, beta):
    """E[REINFORCE/RLOO gradient] on tabular logits with KL in the reward (ascent direction, ``[X, Y]``):

        g[x, y] = μ(x)·π(y|x)·(r̃(x, y) − Σ_y' π(y'|x) r̃(x, y')),   r̃ = r − β(log π − log π_base).

    The expected per-step gradient of :func:`pg_sharpening` with ``loss="reinforce"`` or ``"rloo"``,
    ``kl="reward"`` and prompts drawn from μ, for every group size (∇_θ J of Eq. 3's objective).
    ``reward_table`` is ``[X, Y]`` or a function of the current log π (e.g. ``lambda lp: lp`` for
    negative entropy).
    """
    lp = jax.nn.log_softmax(logits, axis=-1)
    p = jnp.exp(lp)
    r = reward_table(lp) if callable(reward_table) else reward_table
    r_tilde = r - beta * (lp - base_log_probs)
    r_tilde = jnp.where(p > 0, r_tilde, 0.0)
    return jnp.asarray(mu)[:, None] * p * (r_tilde - jnp.sum(p * r_tilde, axis=-1, keepdims=True))


def pg_expected_trajectory(logits0, base_log_probs, mu, reward_table, *, beta, learning_rate, steps: int):
    """``steps`` exact expected SGD steps θ ← θ + lr·:func:`pg_expected_update` (logits after each ``[T, X, Y]``).

    The deterministic mean-field path that sampled REINFORCE/RLOO runs with SGD follow as the group grows.
    """
    def step(theta, _):
        theta = theta + learning_rate * pg_expected_update(theta, base_log_probs, mu, reward_table, beta)
        return theta, theta

    return jax.lax.scan(step, jnp.asarray(logits0), None, length=int(steps))[1]
