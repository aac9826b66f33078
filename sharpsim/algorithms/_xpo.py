"""Exploratory RLHF-sharpening: reward-based XPO, Algorithm 1 (theory.md §10, App. J.2).

    π^(1) = π_base, D^(0) = ∅.  For t = 1..T:
      x^(t) ~ μ,  y^(t) ~ π^(t)(·|x^(t)),  ỹ^(t) ~ π_base(·|x^(t)),  D^(t) = D^(t−1) ∪ {(x^(t), y^(t), ỹ^(t))}
      π^(t+1) = argmin_{π∈Π}  α Σ_{D^(t)} log π(ỹ|x)
                            + Σ_{D^(t)} ( β log π(y|x)/π_base(y|x) − β log π(ỹ|x)/π_base(ỹ|x) − (r̃(x,y) − r̃(x,ỹ)) )²
    return π̂ = argmax_{t ∈ [T+1]} Ĵ_β(π^(t))   (Ĵ_β estimated on held-out queries)

Sign: the printed box has "−" before the squared sum; theory.md §10 reads it as "+" (a minimisation, as in
the proof's objective and the original XPO). Implemented with "+"; the optimism term *lowers* the objective
of policies that put little mass on what π_base draws, which is what makes π^(t+1) explore.
``tests/test_rlhf_xpo.py::test_optimism_sign_is_pinned`` flips it through the private ``_optimism_sign``.

**α convention (one, documented).** The proof's empirical objective (App. J.2.2) is
β Σ log π(ỹ|x) + β/(α_thm (V_max+R_max)²) Σ (…)². Multiplying by α_thm (V_max+R_max)²/β gives the objective
above with α = α_thm·(V_max+R_max)²: this module keeps the objective's form (squared loss with weight 1) and
:func:`bounds.xpo_alpha` returns α already in this normalisation. Never rescale twice.

r(x, y) = log π_base(y|x); r̃ = r + σ·ξ with ξ ~ N(0, 1) drawn fresh per query (``reward_noise`` σ, default
0: exact rewards). The noise enters the regression target only, never β log π/π_base, nor Ĵ_β.

Query accounting (footnote 7: every evaluation of log π_base at a sampled or chosen (x, y) is one query):
each round evaluates r(x, y^(t)) (1 query; in round 1 y^(1) is drawn from π_base = π^(1) itself) and draws
ỹ^(t) from π_base (1 query): 2T. Ĵ_β(π^(t)) = mean of r(x,y) − β(log π^(t)(y|x) − r(x,y)) over
``eval_samples`` held-out draws y ~ π^(t) (x ~ μ), each evaluated (1 query). Candidates are rounds 1, 1 + s,
1 + 2s, … and T + 1 (s = ``eval_stride``): ``num_candidates · eval_samples`` more queries.

Keys are prefix-consistent: round t uses ``fold_in(k_rounds, t)`` and iterate c's held-out draws
``fold_in(k_eval, c)``, so :func:`xpo_sharpening_sweep` (one trajectory of T_max rounds, every T of a grid
read off it, and a ``vmap`` over traced (β, α, σ)) returns exactly what per-point calls of
:func:`xpo_sharpening` return with the same key.

Finite classes: exact argmin from running per-candidate sums ``[X, K]`` updated inside ``lax.scan``; ties
(within :data:`~sharpsim.algorithms._common.TIE_RTOL`) go to the lowest index (``tie_break="first"``) or to a
uniformly random order of the class drawn once per run (``"random"``). Gradient classes (log-linear, tabular
softmax, parametric): ``steps_per_round`` projected optax steps per round on the growing dataset
(objective divided by the round count t), warm-started — an approximation to the argmin.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

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
    pair_residual,
    raise_if_nonfinite,
    run_core,
)
from sharpsim.algorithms._sft import check_evaluation
from sharpsim.classes import _first, check_class_matches
from sharpsim.policies import TabularPolicy, inverse_cdf_sample
from sharpsim.protocols import PolicyClass

__all__ = ["XPOConfig", "xpo_sharpening", "XPOSweep", "xpo_sharpening_sweep"]


@dataclasses.dataclass(frozen=True)
class XPOConfig:
    """Algorithm 1 with T ≥ 1 rounds, KL coefficient β > 0 and optimism coefficient α ≥ 0 (finite).

    α multiplies Σ log π(ỹ|x) against a unit-weight squared loss (the module's normalisation; use
    :func:`bounds.xpo_alpha`). ``reward_noise`` σ ≥ 0: Gaussian noise added to each query's reward in the
    regression target. ``eval_samples`` held-out queries per candidate iterate, candidates every
    ``eval_stride`` rounds (and the last); ``steps_per_round``/``fit`` for gradient classes; ``tie_break``
    for finite classes. ``budget`` (optional) must cover :attr:`num_queries`.
    """

    T: int
    beta: float
    alpha: float
    eval_samples: int = 64
    eval_stride: int = 1
    steps_per_round: int = 10
    fit: FitConfig = FitConfig(steps=10, learning_rate=0.05)
    budget: Optional[int] = None
    reward_noise: float = 0.0
    tie_break: str = "first"

    def __post_init__(self):
        if isinstance(self.T, bool) or not isinstance(self.T, (int, np.integer)) or self.T < 1:
            raise ValueError(f"T (the number of XPO rounds) must be an integer >= 1, got {self.T!r}.")
        check_finite_nonneg(self.beta, "beta", "the KL coefficient", positive=True)
        check_finite_nonneg(self.alpha, "alpha", "the optimism coefficient")
        check_finite_nonneg(self.reward_noise, "reward_noise", "the reward-noise standard deviation σ")
        check_tie_break(self.tie_break)
        check_positive_int(self.eval_samples, "eval_samples")
        check_positive_int(self.eval_stride, "eval_stride")
        check_positive_int(self.steps_per_round, "steps_per_round")
        check_budget_field(self.budget, self.num_queries, f"XPOConfig(T={self.T}, eval_samples={self.eval_samples})")

    @property
    def candidate_rounds(self) -> tuple[int, ...]:
        """0-based iterate ids (0 = π^(1) = π_base, t = π^(t+1)) whose Ĵ_β is estimated."""
        return _candidates(int(self.T), int(self.eval_stride))

    @property
    def num_queries(self) -> int:
        """2T for the rounds + eval_samples per candidate iterate."""
        return 2 * int(self.T) + len(self.candidate_rounds) * self.eval_samples


def _candidates(T: int, stride: int) -> tuple[int, ...]:
    ids = list(range(0, T + 1, stride))
    if ids[-1] != T:
        ids.append(T)
    return tuple(ids)


def xpo_sharpening(key: PRNGKeyArray, oracle, cls: PolicyClass, config: XPOConfig, *,
                   _optimism_sign: float = 1.0) -> SharpeningResult:
    """XPO (Algorithm 1) over ``cls``; returns the iterate with the largest held-out Ĵ_β.

    Diagnostics: ``selected_round`` (1-based t of π^(t)), ``J_hat [C]`` and ``candidate_rounds [C]``,
    ``train_objective`` (the round-T objective of π^(T+1)), and for gradient classes ``nonfinite_step [T]``.
    ``params``: candidate indices ``[X]`` (−1 everywhere when π̂ = π^(1) = π_base) or the fitted parameters.
    ``_optimism_sign`` is a private hook for the test that pins the sign of the optimism term. ``num_queries`` is
    the sum of the counts the oracle returned for the calls made (equal to ``config.num_queries``).
    """
    check_class_matches(cls, oracle.pi_base, "xpo_sharpening")
    # XPO spends its queries over 2T + C·E small calls: reserve the total with the oracle's own check up front.
    oracle.check_budget(config.num_queries, f"xpo_sharpening(T={config.T})")
    hp = _hyper(config, sign=_optimism_sign)
    return raise_if_nonfinite(run_core(_xpo_core, key, oracle, cls, config, hp), "xpo_sharpening")


def _hyper(config: XPOConfig, beta=None, alpha=None, sigma=None, sign=1.0) -> dict:
    dt = jnp.result_type(float)
    pick = lambda v, d: jnp.asarray(d if v is None else v, dt)  # noqa: E731
    return dict(beta=pick(beta, config.beta), alpha=pick(alpha, config.alpha), sigma=pick(sigma, config.reward_noise),
                sign=jnp.asarray(sign, dt))


# --------------------------------------------------------------------------------------------- helpers
def _draw_from(policy, key, mu, num):
    """num held-out (x, y, log π(y|x)) with x ~ μ and y ~ π(·|x) (the learner's own draws)."""
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


def _noisy_residual(beta, lp_y, lp_yt, r_y, r_yt, n_y, n_yt):
    """Eq. (8)'s residual with the regression target r̃(y) − r̃(ỹ), r̃ = r + noise (noise outside β log π/π_base)."""
    return pair_residual(beta, lp_y, lp_yt, r_y, r_yt) - (n_y - n_yt)


@dataclasses.dataclass(frozen=True)
class _XPOObjective:
    """Algorithm 1's per-round objective α Σ log π(ỹ|x) + Σ (Eq. 8 residual with the noisy target)², in the two
    forms the classes minimise it in (``PolicyClass.xpo_rounds``): per triple for exact per-candidate sums, and
    over a masked buffer for gradient fits (divided by the round count t)."""

    hp: dict

    def per_triple(self, lp_y, lp_yt, r_y, r_yt, n_y, n_yt):
        """One triple's contribution to every candidate's objective: ±α log π_k(ỹ|x) + residual² (+inf where a
        candidate gives an observed response zero probability)."""
        hp = self.hp
        res = _noisy_residual(hp["beta"], lp_y, lp_yt, r_y, r_yt, n_y, n_yt)
        return jnp.where(jnp.isfinite(res), hp["sign"] * hp["alpha"] * lp_yt + res**2, jnp.inf)

    def batch_loss(self, lp_y, lp_yt, buf, mask, t):
        """The objective over the first t buffered triples, divided by t."""
        hp = self.hp
        res = _noisy_residual(hp["beta"], lp_y, lp_yt, buf["r"], buf["rt"], buf["n"], buf["nt"])
        return (hp["sign"] * hp["alpha"] * jnp.sum(mask * lp_yt) + jnp.sum(mask * res**2)) / t


def _trajectory(key, oracle, cls, config: XPOConfig, T: int, hp: dict):
    """Rounds 1..T of Algorithm 1: (iterates π^(2..T+1) stacked on a leading [T] axis, objective, extra,
    queries) — ``queries`` the sum of the oracle's own counts for the calls made (2T)."""
    k_first, k_rounds, _, k_tie = jax.random.split(key, 4)
    k_draw, k_noise = jax.random.split(k_first)
    first = oracle.sample_and_evaluate(k_draw, 1, 2)  # round 1: y, ỹ ~ π^(1) = π_base (2 queries)
    z1 = hp["sigma"] * jax.random.normal(k_noise, (2,), first.log_probs.dtype)
    x1 = first.prompts[0]
    y1 = jax.tree_util.tree_map(lambda a: a[0, 0], first.responses)
    yt1 = jax.tree_util.tree_map(lambda a: a[0, 1], first.responses)
    data1 = (x1, y1, yt1, first.log_probs[0, 0], first.log_probs[0, 1], z1[0], z1[1])
    ts = jnp.arange(2, T + 1, dtype=jnp.int32)
    round_keys = jax.vmap(lambda t: jax.random.fold_in(k_rounds, t))(ts)
    per_round = []  # the oracle's counts for one round's calls (the same every round: traced once in the scan)

    def next_triple(k, params):
        """Round t's (x, y ~ π^(t), ỹ ~ π_base, r(x,y), r(x,ỹ), noise): r(x, y) (1 query) and ỹ (1 query)."""
        kx, ky, kb = jax.random.split(k, 3)
        x = oracle.sample_prompts(kx, 1)[0]
        y = cls.draw(params, ky, x)  # y ~ π^(t)(·|x): the learner's own draw
        kb1, kz = jax.random.split(kb)
        r_y, c_eval = oracle.evaluate(x, y)
        tb = oracle.respond(kb1, x[None], 1)
        per_round[:] = [c_eval + tb.num_queries]
        z = hp["sigma"] * jax.random.normal(kz, (2,), tb.log_probs.dtype)
        yt = _first(jax.tree_util.tree_map(lambda a: a[0], tb.responses))
        return x, y, yt, r_y, tb.log_probs[0, 0], z[0], z[1]

    iterates, objective, extra = cls.xpo_rounds(
        _XPOObjective(hp), data1, next_triple, round_keys, ts, T=T, tie_key=k_tie, tie_break=config.tie_break,
        fit=config.fit, steps=config.steps_per_round)
    queries = first.num_queries + (T - 1) * (per_round[0] if per_round else 0)
    return iterates, objective, extra, queries


def _j_hats(key, oracle, cls, iterates, ids: Sequence[int], hp, E: int):
    """Ĵ_β of the iterates with 0-based ids (0 = π_base), each on E held-out queries from fold_in(k_eval, id).

    Returns ``(J [C], queries)`` with ``queries`` the sum of the oracle's counts (E per iterate)."""
    k_eval = jax.random.split(key, 4)[2]
    beta = hp["beta"]
    out = []
    queries = 0
    if 0 in ids:
        b = oracle.sample_and_evaluate(jax.random.fold_in(k_eval, 0), E, 1)
        out.append(_j_hat(b.log_probs[:, 0], b.log_probs[:, 0], beta))
        queries += b.num_queries
    later = [c for c in ids if c > 0]
    if later:
        idx = jnp.asarray([c - 1 for c in later], jnp.int32)
        params = jax.tree_util.tree_map(lambda a: a[idx], iterates)
        keys = jax.vmap(lambda c: jax.random.fold_in(k_eval, c))(jnp.asarray(later, jnp.int32))
        counts = []

        def j_hat_of_iterate(args):
            k, p = args
            xs, ys, lps = _draw_from(cls.member(p), k, oracle.mu, E)
            r, c = oracle.evaluate(xs, ys)
            counts[:] = [c]
            return _j_hat(r, lps, beta)

        out.append(jax.lax.map(j_hat_of_iterate, (keys, params)))
        queries += len(later) * counts[0]
    return jnp.concatenate([jnp.atleast_1d(o) for o in out]), queries


def _output(base, cls, iterates, selected_iter):
    """(policy, params) of iterate ``selected_iter``; iterate 0 is π^(1) = π_base (``base``), returned as its table
    when the class's members are tabular."""
    fitted, params = cls.select_iterate(iterates, selected_iter)
    if isinstance(fitted, TabularPolicy):
        policy = TabularPolicy(log_probs=jnp.where(selected_iter == 0, base.log_probs, fitted.log_probs))
    else:
        policy = fitted  # gradient classes: π^(1) is only ever selected as the class's own member
    return policy, params


def _xpo_core(key, oracle, cls, config: XPOConfig, hp) -> SharpeningResult:
    T = int(config.T)
    iterates, objective, extra, q_rounds = _trajectory(key, oracle, cls, config, T, hp)
    cands = config.candidate_rounds
    j_all, q_eval = _j_hats(key, oracle, cls, iterates, cands, hp, config.eval_samples)
    cand_arr = jnp.asarray(cands, jnp.int32)
    selected_iter = cand_arr[jnp.argmax(j_all)]  # 0 = π_base
    # Algorithm 1 returns π^(1) = π_base itself when it scores best: the learner's initial policy, not an evaluation.
    policy, params = _output(oracle.pi_base, cls, iterates, selected_iter)
    diagnostics = dict(extra, selected_round=selected_iter + 1, J_hat=j_all, candidate_rounds=cand_arr + 1,
                       train_objective=objective[-1])
    return SharpeningResult(policy=policy, params=params, num_queries=as_int(q_rounds + q_eval),
                            diagnostics=diagnostics)


# --------------------------------------------------------------------------------------------- sweep
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class XPOSweep:
    """XPO at every T of a grid and every hyper-parameter point p = (β_p, α_p, σ_p), from one trajectory each.

    ``sharpness_error[g, p]`` = P_{x~μ}[π̂_{g,p}(y*_γ(x)|x) ≤ 1 − δ] (exact, :func:`metrics.sharpness_error`)
    of the iterate Algorithm 1 returns after ``T_grid[g]`` rounds; ``num_queries[g]`` = what that run
    consumed (2T + held-out); ``selected_round[g, p]`` (1-based) and ``params[g, p]`` the selected iterate.
    """

    sharpness_error: Float[Array, "G P"]
    target_mass: Float[Array, "G P"]
    selected_round: Int[Array, "G P"]
    num_queries: Int[Array, " G"]
    params: Any


def xpo_sharpening_sweep(
    key: PRNGKeyArray,
    oracle,
    cls,
    config: XPOConfig,
    *,
    evaluate: metrics.SharpnessEvaluation,
    T_grid: Optional[Sequence[int]] = None,
    betas=None,
    alphas=None,
    reward_noises=None,
    _optimism_sign: float = 1.0,
) -> XPOSweep:
    """Algorithm 1 over a grid of T and of traced (β, α, σ) points: one compile per configuration shape.

    ``betas``, ``alphas``, ``reward_noises``: 1-D arrays of one length P (or None: ``config``'s value),
    broadcast together; they are traced, so changing them does not recompile. ``T_grid`` (default
    ``(config.T,)``): one trajectory of max(T_grid) rounds per point, each T read off its prefix (keys are
    prefix-consistent, so entry g equals ``xpo_sharpening(key, …, replace(config, T=T_grid[g], beta=…, …))``).
    Scoring is the caller's ``evaluate`` (required: a :class:`~sharpsim.metrics.SharpnessEvaluation`, e.g.
    ``SharpnessEvaluation.of(pi_base, mu, delta, gamma)``; its ``reference`` is π^(1) = π_base, returned when
    Algorithm 1 selects the first iterate and the class's members are tabular).
    """
    check_class_matches(cls, oracle.pi_base, "xpo_sharpening_sweep")
    evaluate = check_evaluation(evaluate, "xpo_sharpening_sweep")
    T_grid = tuple(check_positive_int(T, "T_grid entry") for T in (T_grid or (config.T,)))
    T_max = max(T_grid)
    cfg_max = dataclasses.replace(config, T=T_max, budget=None)
    oracle.check_budget(cfg_max.num_queries, f"xpo_sharpening_sweep(T_max={T_max})")
    dt = jnp.result_type(float)
    b, a, s = hyper_grid(("betas", betas, config.beta), ("alphas", alphas, config.alpha),
                         ("reward_noises", reward_noises, config.reward_noise))
    per_T = [_candidates(T, int(config.eval_stride)) for T in T_grid]
    union = tuple(sorted(set().union(*per_T)))
    candidate_of_T = np.array([[c in cands for c in union] for cands in per_T])  # [G, U] static
    union_arr = jnp.asarray(union, jnp.int32)

    def at_hyper_point(beta, alpha, sigma):
        hp = dict(beta=beta, alpha=alpha, sigma=sigma, sign=jnp.asarray(_optimism_sign, dt))
        iterates, _, _, _ = _trajectory(key, oracle, cls, cfg_max, T_max, hp)
        j_all, _ = _j_hats(key, oracle, cls, iterates, union, hp, config.eval_samples)

        def at_horizon(mask):  # the run with T = T_grid[g], mask = its candidates: first argmax over them,
            # as xpo_sharpening's argmax over its own list
            sel = union_arr[jnp.argmax(jnp.where(mask, j_all, -jnp.inf))]
            pol, prm = _output(evaluate.reference, cls, iterates, sel)
            err, mass = evaluate(pol)
            return err, mass, sel + 1, prm

        return jax.vmap(at_horizon)(jnp.asarray(candidate_of_T))

    err, mass, sel, params = jax.vmap(at_hyper_point)(b, a, s)  # [P, G]
    swap = lambda v: jnp.swapaxes(v, 0, 1)  # noqa: E731
    nq = jnp.asarray([dataclasses.replace(config, T=T, budget=None).num_queries for T in T_grid], jnp.int32)
    return XPOSweep(sharpness_error=swap(err), target_mass=swap(mass), selected_round=swap(sel), num_queries=nq,
                    params=jax.tree_util.tree_map(swap, params))
