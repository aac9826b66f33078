"""Exploratory RLHF-sharpening: reward-based XPO, Algorithm 1 (theory.md §10, App. J.2).

    π^(1) = π_base, D^(0) = ∅.  For t = 1..T:
      x^(t) ~ μ,  y^(t) ~ π^(t)(·|x^(t)),  ỹ^(t) ~ π_base(·|x^(t)),  D^(t) = D^(t−1) ∪ {(x^(t), y^(t), ỹ^(t))}
      π^(t+1) = argmin_{π∈Π}  α Σ_{D^(t)} log π(ỹ|x)
                            + Σ_{D^(t)} ( β log π(y|x)/π_base(y|x) − β log π(ỹ|x)/π_base(ỹ|x) − (r(x,y) − r(x,ỹ)) )²
    return π̂ = argmax_{t ∈ [T+1]} Ĵ_β(π^(t))   (Ĵ_β estimated on held-out queries)

Sign: the printed box has "−" before the squared sum; theory.md §10 reads it as "+" (a minimisation, as in
the proof's objective and the original XPO). Implemented with "+". r(x, y) = log π_base(y|x).

Query accounting (all exact and static): round 1 draws y^(1) and ỹ^(1) from π_base = π^(1) (2
sample-and-evaluate queries); every later round draws y^(t) from the learner's own iterate (free) and
evaluates r(x, y^(t)) (1 evaluate query) plus ỹ^(t) (1 sample-and-evaluate query): 2T in all. Ĵ_β(π^(t))
= mean of r(x,y) − β(log π^(t)(y|x) − r(x,y)) over ``eval_samples`` held-out draws y ~ π^(t) (x ~ μ), each
evaluated (1 query; for π^(1) = π_base a sample-and-evaluate query). Candidates are rounds 1, 1 + s,
1 + 2s, … and T + 1 (s = ``eval_stride``): ``num_candidates · eval_samples`` more queries.

Finite classes: exact argmin from running per-candidate sums ``[X, K]`` updated inside ``lax.scan``.
Gradient classes (log-linear, tabular softmax, parametric/autoregressive): ``steps_per_round``
projected optax steps per round on the growing dataset, warm-started — an approximation to the argmin.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
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
    pair_residual,
    raise_if_nonfinite,
)
from sharpsim.classes import FiniteClass, check_class_matches
from sharpsim.policies import TabularPolicy, inverse_cdf_sample

__all__ = ["XPOConfig", "xpo_sharpening", "xpo_alpha"]


def _as_float(v, name):
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {v!r}.") from None


@dataclasses.dataclass(frozen=True)
class XPOConfig:
    """Algorithm 1 with T ≥ 1 rounds, KL coefficient β > 0 and optimism coefficient α ≥ 0.

    ``eval_samples`` held-out queries per candidate iterate, candidates every ``eval_stride`` rounds (and
    the last); ``steps_per_round``/``fit`` for gradient classes. ``budget`` (optional) must cover
    :attr:`num_queries`.
    """

    T: int
    beta: float
    alpha: float
    eval_samples: int = 64
    eval_stride: int = 1
    steps_per_round: int = 10
    fit: FitConfig = FitConfig(steps=10, learning_rate=0.05)
    budget: Optional[int] = None

    def __post_init__(self):
        if isinstance(self.T, bool) or not isinstance(self.T, (int, np.integer)) or self.T < 1:
            raise ValueError(f"T (the number of XPO rounds) must be an integer >= 1, got {self.T!r}.")
        beta = _as_float(self.beta, "beta")
        if not beta > 0:
            raise ValueError(f"beta (the KL coefficient) must be > 0, got {self.beta!r}.")
        alpha = _as_float(self.alpha, "alpha")
        if not alpha >= 0 or math.isnan(alpha):
            raise ValueError(f"alpha (the optimism coefficient) must be >= 0, got {self.alpha!r}.")
        check_positive_int(self.eval_samples, "eval_samples")
        check_positive_int(self.eval_stride, "eval_stride")
        check_positive_int(self.steps_per_round, "steps_per_round")
        check_budget_field(self.budget, self.num_queries, f"XPOConfig(T={self.T}, eval_samples={self.eval_samples})")

    @property
    def candidate_rounds(self) -> tuple[int, ...]:
        """0-based iterate ids (0 = π^(1) = π_base, t = π^(t+1)) whose Ĵ_β is estimated."""
        ids = list(range(0, self.T + 1, self.eval_stride))
        if ids[-1] != self.T:
            ids.append(self.T)
        return tuple(ids)

    @property
    def num_queries(self) -> int:
        """2T for the rounds + eval_samples per candidate iterate."""
        return 2 * int(self.T) + len(self.candidate_rounds) * self.eval_samples


def xpo_alpha(beta: float, R_max: float, V_max: float, log_cover: float, T: int, rho: float, sec: float) -> float:
    """Theorem J.1's α = (β/(R_max + V_max))·sqrt(log(2 N(Π, ε_disc) T / ρ) / (SEC(Π)·T)) (log N given)."""
    return beta / (R_max + V_max) * math.sqrt((math.log(2 * T / rho) + log_cover) / (sec * T))


def xpo_sharpening(key: PRNGKeyArray, oracle, cls, config: XPOConfig) -> SharpeningResult:
    """XPO (Algorithm 1) over ``cls``; returns the iterate with the largest held-out Ĵ_β.

    Diagnostics: ``selected_round`` (1-based t of π^(t)), ``J_hat [C]`` and ``candidate_rounds [C]``,
    ``train_objective`` (the round-T objective of π^(T+1)), and for gradient classes ``nonfinite_step [T]``.
    ``params``: candidate indices ``[X]`` (−1 everywhere when π̂ = π^(1) = π_base) or the fitted parameters.
    """
    check_class_matches(cls, oracle.pi_base, "xpo_sharpening")
    check_oracle_budget(oracle, config.num_queries, f"xpo_sharpening(T={config.T})")
    run = jit_static(_xpo_core) if is_eager(key) else _xpo_core
    return raise_if_nonfinite(run(key, oracle, cls, config), "xpo_sharpening")


# --------------------------------------------------------------------------------------------- helpers
def _first(tree):
    return jax.tree_util.tree_map(lambda a: a[0], tree)


def _draw_from(policy, key, mu, num):
    """num held-out (x, y, log π(y|x)) with x ~ μ and y ~ π(·|x) (the learner's own draws: free)."""
    if isinstance(policy, TabularPolicy):
        X, Y = policy.log_probs.shape
        joint = (jnp.log(mu)[:, None] + policy.log_probs).reshape(-1)
        flat = inverse_cdf_sample(key, joint, num)
        xs, ys = flat // Y, flat % Y
        return xs, ys, policy.log_probs[xs, ys]
    kx, ky = jax.random.split(key)
    xs = inverse_cdf_sample(kx, jnp.log(mu), num)
    ys, lps = jax.vmap(lambda k, x: policy.sample_and_log_prob(k, x, 1))(jax.random.split(ky, num), xs)
    return xs, _first(jax.tree_util.tree_map(lambda a: jnp.swapaxes(a, 0, 1), ys)), lps[:, 0]


def _j_hat(r, lp, beta):
    """Ĵ_β = mean of r(x,y) − β (log π(y|x) − log π_base(y|x)) over y ~ π; r = log π_base."""
    return jnp.mean(r - beta * (lp - r))


def _xpo_core(key, oracle, cls, config: XPOConfig) -> SharpeningResult:
    beta, alpha, T = float(config.beta), float(config.alpha), int(config.T)
    k_first, k_rounds, k_eval = jax.random.split(key, 3)
    first = oracle.sample_and_evaluate(k_first, 1, 2)  # round 1: y, ỹ ~ π^(1) = π_base (2 queries)
    x1 = first.prompts[0]
    y1 = jax.tree_util.tree_map(lambda a: a[0, 0], first.responses)
    yt1 = jax.tree_util.tree_map(lambda a: a[0, 1], first.responses)
    r1, rt1 = first.log_probs[0, 0], first.log_probs[0, 1]
    round_keys = jax.random.split(k_rounds, max(T - 1, 1))[: T - 1]

    def base_and_reward(k, x, y):
        """ỹ ~ π_base(·|x) (1 sample-and-evaluate query) and r(x, y) for the learner's y (1 evaluate query)."""
        r_y, _ = oracle.evaluate(x, y)
        tb = oracle.respond(k, x[None], 1)
        return _first(jax.tree_util.tree_map(lambda a: a[0], tb.responses)), r_y, tb.log_probs[0, 0]

    if isinstance(cls, FiniteClass):
        iterates, objective, extra = _rounds_finite(cls, oracle, round_keys, (x1, y1, yt1, r1, rt1), beta, alpha,
                                                    base_and_reward)
        members = lambda idx: cls.member(idx)  # noqa: E731
    else:
        iterates, objective, extra = _rounds_gradient(cls, oracle, round_keys, (x1, y1, yt1, r1, rt1), beta, alpha,
                                                      T, config, base_and_reward)
        members = cls.member

    # ---- held-out selection: Ĵ_β for π^(1) = π_base and the candidate iterates
    cands = config.candidate_rounds
    E = config.eval_samples
    k_base, k_rest = jax.random.split(k_eval)
    base_batch = oracle.sample_and_evaluate(k_base, E, 1)
    j_base = _j_hat(base_batch.log_probs[:, 0], base_batch.log_probs[:, 0], beta)
    later = jnp.asarray([c - 1 for c in cands if c > 0], jnp.int32)
    if later.shape[0] > 0:
        cand_params = jax.tree_util.tree_map(lambda a: a[later], iterates)

        def eval_one(args):
            k, p = args
            pol = members(p)
            xs, ys, lps = _draw_from(pol, k, oracle.mu, E)
            r, _ = oracle.evaluate(xs, ys)
            return _j_hat(r, lps, beta)

        j_later = jax.lax.map(eval_one, (jax.random.split(k_rest, later.shape[0]), cand_params))
        j_all = jnp.concatenate([j_base[None], j_later])
    else:
        j_all = j_base[None]
    best = jnp.argmax(j_all)
    cand_arr = jnp.asarray(cands, jnp.int32)
    selected_iter = cand_arr[best]  # 0 = π_base
    last = jax.tree_util.tree_map(lambda a: a[jnp.maximum(selected_iter - 1, 0)], iterates)
    fitted = members(last)
    if isinstance(fitted, TabularPolicy):
        policy = TabularPolicy(log_probs=jnp.where(selected_iter == 0, oracle.pi_base.log_probs, fitted.log_probs))
    else:
        policy = fitted  # gradient classes: π^(1) is only ever selected as the class's own member
    if isinstance(cls, FiniteClass):
        params = jnp.where(selected_iter == 0, -1, last)
    else:
        params = last
    diagnostics = dict(
        extra,
        selected_round=selected_iter + 1,
        J_hat=j_all,
        candidate_rounds=cand_arr + 1,
        train_objective=objective,
    )
    return SharpeningResult(policy=policy, params=params, num_queries=as_int(config.num_queries), diagnostics=diagnostics)


def _finite_contrib(cls, x, y, yt, r_y, r_yt, beta, alpha):
    """One triple's contribution to every candidate's objective at prompt x: α log π_k(ỹ|x) + residual²."""
    lp_y = cls.log_probs[x, :, y]
    lp_yt = cls.log_probs[x, :, yt]
    res = pair_residual(beta, lp_y, lp_yt, r_y, r_yt)
    return jnp.where(jnp.isfinite(res), alpha * lp_yt + res**2, jnp.inf)


def _rounds_finite(cls, oracle, round_keys, first, beta, alpha, base_and_reward):
    x1, y1, yt1, r1, rt1 = first
    S = jnp.zeros((cls.num_prompts, cls.num_candidates), cls.log_probs.dtype)
    S = S.at[x1].add(_finite_contrib(cls, x1, y1, yt1, r1, rt1, beta, alpha))
    index = cls.select(S, maximize=False)  # π^(2)

    def round_(carry, k):
        S, index = carry
        kx, ky, kb = jax.random.split(k, 3)
        x = oracle.sample_prompts(kx, 1)[0]
        y = inverse_cdf_sample(ky, cls.log_probs[x, index[x]], 1)[0]  # y ~ π^(t)(·|x): the learner's own draw
        yt, r_y, r_yt = base_and_reward(kb, x, y)
        S = S.at[x].add(_finite_contrib(cls, x, y, yt, r_y, r_yt, beta, alpha))
        index = cls.select(S, maximize=False)
        return (S, index), index

    (S, index_last), hist = jax.lax.scan(round_, (S, index), round_keys)
    iterates = jnp.concatenate([index[None], hist], axis=0)  # [T, X]: π^(2), …, π^(T+1)
    sel = jnp.where(jnp.isfinite(S), S, jnp.inf)
    objective = jnp.min(jnp.sum(jnp.where(cls.valid, sel, jnp.inf), axis=0)) if not cls.product else \
        jnp.sum(jnp.min(jnp.where(cls.valid, sel, jnp.inf), axis=1))
    return iterates, objective, {"nonfinite_step": as_int(-1)}


def _rounds_gradient(cls, oracle, round_keys, first, beta, alpha, T, config, base_and_reward):
    x1, y1, yt1, r1, rt1 = first
    dtype = jnp.result_type(float)
    buf = dict(
        x=jnp.zeros((T,), jnp.int32).at[0].set(x1),
        y=jax.tree_util.tree_map(lambda a: jnp.zeros((T,) + a.shape, a.dtype).at[0].set(a), y1),
        yt=jax.tree_util.tree_map(lambda a: jnp.zeros((T,) + a.shape, a.dtype).at[0].set(a), yt1),
        r=jnp.zeros((T,), dtype).at[0].set(r1),
        rt=jnp.zeros((T,), dtype).at[0].set(rt1),
    )
    fit = dataclasses.replace(config.fit, steps=config.steps_per_round)

    def objective_fn(buf, t):
        mask = (jnp.arange(T) < t).astype(dtype)

        def loss(params):
            lp_y = cls.log_prob(params, buf["x"], buf["y"])
            lp_yt = cls.log_prob(params, buf["x"], buf["yt"])
            res = pair_residual(beta, lp_y, lp_yt, buf["r"], buf["rt"])
            return (alpha * jnp.sum(mask * lp_yt) + jnp.sum(mask * res**2)) / T

        return loss

    params0 = cls.project(cls.init_params())
    opt_state0 = fit.make().init(params0)
    params, opt_state, info = gradient_fit(objective_fn(buf, 1), params0, cls.project, fit, opt_state=opt_state0)

    def round_(carry, inp):
        params, opt_state, buf = carry
        k, t = inp  # t = 1-based round index (2..T)
        kx, ky, kb = jax.random.split(k, 3)
        x = oracle.sample_prompts(kx, 1)[0]
        ys, _ = cls.member(params).sample_and_log_prob(ky, x, 1)  # y ~ π^(t): the learner's own draw
        y = _first(ys)
        yt, r_y, r_yt = base_and_reward(kb, x, y)
        i = t - 1
        buf = dict(
            x=buf["x"].at[i].set(x),
            y=jax.tree_util.tree_map(lambda b, a: b.at[i].set(a), buf["y"], y),
            yt=jax.tree_util.tree_map(lambda b, a: b.at[i].set(a), buf["yt"], yt),
            r=buf["r"].at[i].set(r_y),
            rt=buf["rt"].at[i].set(r_yt),
        )
        params, opt_state, info = gradient_fit(objective_fn(buf, t), params, cls.project, fit, opt_state=opt_state)
        return (params, opt_state, buf), (params, info)

    ts = jnp.arange(2, T + 1, dtype=jnp.int32)
    (params_last, _, buf), (hist, infos) = jax.lax.scan(round_, (params, opt_state, buf), (round_keys, ts))
    iterates = jax.tree_util.tree_map(lambda a, h: jnp.concatenate([a[None], h], axis=0), params, hist)
    bad = jnp.concatenate([info["nonfinite_step"][None], infos["nonfinite_step"]])
    bad_loss = jnp.concatenate([info["nonfinite_loss"][None], infos["nonfinite_loss"]])
    bad_g = jnp.concatenate([info["nonfinite_grad_norm"][None], infos["nonfinite_grad_norm"]])
    objective = objective_fn(buf, T)(params_last)
    return iterates, objective, {"nonfinite_step": bad, "nonfinite_loss": bad_loss, "nonfinite_grad_norm": bad_g}
