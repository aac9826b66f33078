"""RLHF (Eq. 8 / DPO) and XPO (Algorithm 1): exact minimisation, recovery of π_base^{1+1/β}, Example J.1."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sharpsim import SampleEvaluateOracle, exact, instances, metrics
from sharpsim.algorithms import (
    FitConfig,
    RLHFConfig,
    rlhf_sharpening_sweep,
    xpo_sharpening_sweep,
    XPOConfig,
    rlhf_sharpening,
    run_trials,
    sft_sharpening_sweep,
    xpo_sharpening,
)
from sharpsim.algorithms._rlhf import pair_losses_finite
from sharpsim.classes import FiniteClass, LogLinearClass, TabularClass
from sharpsim.policies import TabularPolicy
from _features import unit_features  # tests/ is on sys.path (pytest prepend import mode)


def _tv(p, q, mu):
    return float(jnp.sum(mu * 0.5 * jnp.sum(jnp.abs(p.probs - q.probs), axis=-1)))


def test_eq8_tabular_closed_form_recovers_pi_star():
    """Zero empirical loss at the fitted π̂; E[TV(π̂, π*_β)] shrinks from n = 10 to n = 1000 (means over 16 trials)."""
    inst = instances.planted_mode(jax.random.key(0), 3, 6, 3.0, 0.5)
    oracle = SampleEvaluateOracle(inst.pi_base, inst.mu)
    beta = 0.5
    star = exact.kl_regularized_optimum(inst.pi_base, beta)
    errs = []
    for n in (10, 1000):
        res = run_trials(rlhf_sharpening, jax.random.key(1), 16, oracle, TabularClass(3, 6), RLHFConfig(n=n, beta=beta))
        assert np.all(np.asarray(res.num_queries) == 2 * n)
        # On the responses it saw at each prompt, π̂ must be π*_β renormalised to that set (computed here from
        # π_base, not from the code's loss): catches a wrong exponent (e.g. 1/β instead of 1 + 1/β), a
        # minimiser that leaks mass to unseen responses, or one that zeroes a seen response.
        keys = jax.random.split(jax.random.key(1), 16)
        for t in (0, 7):
            batch = oracle.sample_and_evaluate(keys[t], n, 2)
            seen = np.zeros((3, 6), bool)
            seen[np.repeat(np.asarray(batch.prompts), 2), np.asarray(batch.responses).reshape(-1)] = True
            ref = np.where(seen, np.asarray(star.probs), 0.0)
            ref = np.where(seen.any(1, keepdims=True), ref / np.maximum(ref.sum(1, keepdims=True), 1e-30), 1 / 6)
            np.testing.assert_allclose(np.exp(np.asarray(res.policy.log_probs[t])), ref, atol=1e-5)
        tv = jax.vmap(lambda lp: 0.5 * jnp.sum(inst.mu * jnp.sum(jnp.abs(jnp.exp(lp) - star.probs), -1)))(res.policy.log_probs)
        errs.append(float(jnp.mean(tv)))
    assert errs[1] < 0.01 < errs[0], errs


def test_eq8_gradient_paths_reach_zero_loss():
    inst = instances.planted_mode(jax.random.key(2), 2, 5, 2.5, 0.5)
    oracle = SampleEvaluateOracle(inst.pi_base, inst.mu)
    beta = 0.5
    star = exact.kl_regularized_optimum(inst.pi_base, beta)
    cfg = RLHFConfig(n=2000, beta=beta, tabular_method="gradient", fit=FitConfig(steps=400, learning_rate=0.1))
    res = rlhf_sharpening(jax.random.key(3), oracle, TabularClass(2, 5), cfg)
    assert float(res.diagnostics["train_loss"]) < 1e-4
    assert _tv(res.policy, star, inst.mu) < 0.02
    # log-linear (Definition J.3), realizable: π_base = π_{θ*} and π*_β = π_{(1+1/β)θ*} inside the ball
    f = unit_features(0, 12, 3)
    theta_star = jnp.array([1.0, -0.5, 0.8])
    cls = LogLinearClass.create(f, norm_bound=10.0)
    base = cls.member(theta_star)
    oracle = SampleEvaluateOracle(base, jnp.ones((1,)))
    res = rlhf_sharpening(jax.random.key(4), oracle, cls, dataclass_replace(cfg, n=1000))
    np.testing.assert_allclose(res.params, (1 + 1 / beta) * theta_star, atol=0.05)


def dataclass_replace(cfg, **kw):
    import dataclasses

    return dataclasses.replace(cfg, **kw)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_finite_class_exact_minimisation_equals_brute_force(loss):
    rng = np.random.default_rng(1)
    X, K, Y, n, beta = 3, 4, 5, 30, 0.3
    p = rng.dirichlet(np.ones(Y), size=(X, K))
    cls = FiniteClass.product_class(jnp.log(jnp.asarray(p, jnp.float32)))
    x = rng.integers(0, X, n)
    y, yp = rng.integers(0, Y, n), rng.integers(0, Y, n)
    r, rp = np.log(rng.uniform(0.05, 1, n)), np.log(rng.uniform(0.05, 1, n))
    S = pair_losses_finite(cls, jnp.asarray(x), jnp.asarray(y), jnp.asarray(yp), jnp.asarray(r, jnp.float32),
                           jnp.asarray(rp, jnp.float32), beta, loss)
    idx = np.asarray(cls.select(S, maximize=False))
    lp = np.log(p)
    for xx in range(X):  # brute force: loop over candidates and data
        vals = []
        for k in range(K):
            tot = 0.0
            for i in np.flatnonzero(x == xx):
                h = beta * (lp[xx, k, y[i]] - r[i]) - beta * (lp[xx, k, yp[i]] - rp[i])
                tot += (h - (r[i] - rp[i])) ** 2 if loss == "squared" else math.log1p(math.exp(-np.sign(r[i] - rp[i] + 1e-300) * h))
            vals.append(tot)
        assert vals[idx[xx]] == pytest.approx(min(vals), rel=1e-4)


def _j1_class(inst, beta, N_list):
    """{π*_β = π_{(1+1/β)θ*}} ∪ distractors: π_base, π^BoN_N (for each SFT split), and sharp policies on wrong y."""
    star = exact.kl_regularized_optimum(inst.pi_base, beta)
    bon = jax.jit(exact.bon_policy, static_argnums=1)
    feats = inst.features
    wrong = [jax.nn.log_softmax((1 + 1 / beta) * (feats @ feats[j]))[None] for j in (1, 2, 3)]
    cands = [star.log_probs, inst.pi_base.log_probs] + [bon(inst.pi_base, N).log_probs for N in N_list] + wrong
    return FiniteClass.stack(jnp.stack(cands)), star


@pytest.mark.parametrize(
    "d,num_responses,sft_wins", [pytest.param(2, 16, True, marks=pytest.mark.slow), (8, 2048, False)]
)
def test_example_J1_xpo_beats_sft_at_equal_budget(d, num_responses, sft_wins):
    """Example J.1 in miniature, δ = 0.1, ε = 0.5 (one prompt: the error is 0 or 1), ρ = 0.1, 32 trials.

    β = γ_margin/(2 log(2|Y|/δ)) (Theorem J.3), α = 0.1·β (Theorem J.1's α is β/(R_max + V_max) times a
    factor ≤ 1; with α = 0.1 the optimism term, of size α/β per sample, swamps the squared loss and XPO
    drifts to wrong sharp candidates). XPO: T = 100, Ĵ_β on 50 held-out queries at 6
    iterates → budget m = 2·100 + 6·50 = 500. SFT at the same m, splits (n, N) = (10, 50) and (1, 500),
    over the realizable class {π*_β, π_base, π^BoN_50, π^BoN_500, 3 wrong sharp policies}.
    d = 8, |Y| = 2048: C_cov ≈ 800 and π^BoN_500(y*) ≈ 0.46, so SFT cannot sharpen (δ = 0.1) at this budget,
    while XPO does in ≥ 1 − ρ of trials. d = 2, |Y| = 16 (C_cov ≈ 7): SFT sharpens at the same budget too.
    """
    delta, rho = 0.1, 0.1
    inst = instances.example_j1(jax.random.key(0), d, num_responses)
    gm = float(metrics.margin(inst.pi_base, inst.mu))
    beta = gm / (2 * math.log(2 * num_responses / delta))
    cls, star = _j1_class(inst, beta, (50, 500))
    assert float(star.probs[0].max()) >= 1 - delta / 2  # π*_β is sharp (Theorem J.2's step 3)
    oracle = SampleEvaluateOracle(inst.pi_base, inst.mu)
    cfg = XPOConfig(T=100, beta=beta, alpha=0.1 * beta, eval_samples=50, eval_stride=20)
    budget = cfg.num_queries
    assert budget == 500
    res = run_trials(xpo_sharpening, jax.random.key(1), 32, oracle, cls, cfg)
    err = jax.vmap(lambda lp: metrics.sharpness_error(jnp.exp(lp), inst.pi_base, inst.mu, delta))(res.policy.log_probs)
    xpo_ok = float(jnp.mean(err <= 0.5))
    assert xpo_ok >= 1 - rho
    assert np.all(np.asarray(res.num_queries) == budget)
    sft_ok = []
    for n, N in ((10, 50), (1, 500)):
        assert n * N == budget
        ev = metrics.SharpnessEvaluation.of(inst.pi_base, inst.mu, delta)
        fn = lambda k: sft_sharpening_sweep(k, oracle, cls, (n,), (N,), evaluate=ev)  # noqa: E731
        sw = jax.jit(jax.vmap(fn))(jax.random.split(jax.random.key(2), 32))
        sft_ok.append(float(jnp.mean(sw.sharpness_error[:, 0, 0] <= 0.5)))
    if sft_wins:
        assert max(sft_ok) >= 1 - rho, sft_ok
    else:
        assert max(sft_ok) < 1 - rho, sft_ok


@pytest.mark.slow
def test_xpo_log_linear_gradient_path():
    """XPO over the log-linear ball (projected adam, warm-started) improves on π_base towards π*_β."""
    f = unit_features(3, 10, 3)
    cls = LogLinearClass.create(f, norm_bound=8.0)
    base = cls.member(jnp.array([1.5, 0.0, 0.5]))
    oracle = SampleEvaluateOracle(base, jnp.ones((1,)))
    beta = 0.5
    star = exact.kl_regularized_optimum(base, beta)
    cfg = XPOConfig(T=40, beta=beta, alpha=0.05, eval_samples=32, eval_stride=10, steps_per_round=20,
                    fit=FitConfig(learning_rate=0.1))
    res = xpo_sharpening(jax.random.key(0), oracle, cls, cfg)
    assert int(res.num_queries) == 2 * 40 + 5 * 32
    assert np.all(np.asarray(res.diagnostics["nonfinite_step"]) == -1)
    assert _tv(res.policy, star, oracle.mu) < 0.5 * _tv(base, star, oracle.mu)
    assert float(jnp.linalg.norm(res.params)) <= 8.0 + 1e-4


# ------------------------------------------------------------------------------------ validation, sweeps, sign
@pytest.mark.parametrize("field,value", [("alpha", math.inf), ("alpha", math.nan), ("alpha", -0.1), ("beta", math.inf),
                                         ("beta", math.nan), ("beta", 0.0), ("beta", -1.0), ("reward_noise", math.inf),
                                         ("reward_noise", -0.5), ("tie_break", "last")])
def test_configs_refuse_non_finite_and_negative(field, value):
    """α = inf used to give an arbitrary tie-break (inf·log π = ±inf everywhere); each bad field names itself."""
    kw = dict(T=2, beta=0.5, alpha=0.1)
    kw[field] = value
    with pytest.raises(ValueError, match=field):
        XPOConfig(**kw)
    if field != "alpha":
        kw = dict(n=4, beta=0.5)
        kw[field] = value
        with pytest.raises(ValueError, match=field):
            RLHFConfig(**kw)


def _tiny_finite():
    inst = instances.planted_mode(jax.random.key(5), 2, 5, 2.0, 0.5)
    beta = 0.5
    star = exact.kl_regularized_optimum(inst.pi_base, beta)
    flat = jnp.log(jnp.full((2, 5), 0.2))
    other = exact.kl_regularized_optimum(TabularPolicy(log_probs=inst.pi_base.log_probs[:, ::-1]), beta)
    cls = FiniteClass.stack(jnp.stack([flat, inst.pi_base.log_probs, other.log_probs, star.log_probs]))
    return inst, cls, beta


def test_xpo_sweep_equals_per_point_runs():
    """Every (T, β, α, σ) entry of one sweep = xpo_sharpening at that point with the same key (prefix-consistent
    keys, traced hyper-parameters): catches a sweep that reuses the wrong prefix, mixes up points, or keys by T."""
    import dataclasses
    inst, cls, beta = _tiny_finite()
    oracle = SampleEvaluateOracle(inst.pi_base, inst.mu)
    cfg = XPOConfig(T=6, beta=beta, alpha=0.0, eval_samples=3, eval_stride=2, tie_break="random")
    pts = dict(betas=jnp.array([0.5, 0.3, 0.5]), alphas=jnp.array([0.0, 0.2, 0.05]), reward_noises=jnp.array([0.0, 0.0, 0.3]))
    Ts = (1, 3, 6)
    for seed in (1, 2):
        sw = xpo_sharpening_sweep(jax.random.key(seed), oracle, cls, cfg, T_grid=Ts, **pts,
                                  evaluate=metrics.SharpnessEvaluation.of(inst.pi_base, inst.mu, 0.2))
        for g, T in enumerate(Ts):
            for p in range(3):
                c = dataclasses.replace(cfg, T=T, beta=float(pts["betas"][p]), alpha=float(pts["alphas"][p]),
                                        reward_noise=float(pts["reward_noises"][p]))
                res = xpo_sharpening(jax.random.key(seed), oracle, cls, c)
                assert int(sw.selected_round[g, p]) == int(res.diagnostics["selected_round"])
                np.testing.assert_array_equal(np.asarray(sw.params[g, p]), np.asarray(res.params))
                err = float(metrics.sharpness_error(res.policy, inst.pi_base, inst.mu, 0.2))
                assert float(sw.sharpness_error[g, p]) == err
                assert int(sw.num_queries[g]) == c.num_queries


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_rlhf_sweep_equals_per_point_runs(loss):
    """rlhf_sharpening_sweep at n = n_max and each traced (β, σ) = rlhf_sharpening with the same key."""
    import dataclasses
    inst, cls, beta = _tiny_finite()
    oracle = SampleEvaluateOracle(inst.pi_base, inst.mu)
    cfg = RLHFConfig(n=12, beta=beta, loss=loss, tie_break="random")
    betas, sig = jnp.array([0.5, 0.2, 0.5]), jnp.array([0.0, 0.0, 0.4])
    for seed in range(4):
        sw = rlhf_sharpening_sweep(jax.random.key(seed), oracle, cls, cfg, n_grid=(3, 12), betas=betas,
                                   reward_noises=sig,
                                   evaluate=metrics.SharpnessEvaluation.of(inst.pi_base, inst.mu, 0.2))
        for p in range(3):
            res = rlhf_sharpening(jax.random.key(seed), oracle, cls,
                                  dataclasses.replace(cfg, beta=float(betas[p]), reward_noise=float(sig[p])))
            np.testing.assert_array_equal(np.asarray(sw.params[-1, p]), np.asarray(res.params))
            assert float(sw.worst_error[-1, p]) >= float(sw.sharpness_error[-1, p])
        assert list(np.asarray(sw.num_queries)) == [6, 24]


def test_rlhf_sweep_traced_loss_equals_the_static_losses():
    """``losses`` (Eq. 8 and DPO as a traced selector, one program) gives, point by point, exactly the sweep with
    the static ``config.loss``: catches swapped arms or a selector that mixes the two losses."""
    import dataclasses
    inst, cls, beta = _tiny_finite()
    oracle = SampleEvaluateOracle(inst.pi_base, inst.mu)
    cfg = RLHFConfig(n=12, beta=beta, tie_break="random")
    ev = metrics.SharpnessEvaluation.of(inst.pi_base, inst.mu, 0.2)
    betas, sig = jnp.array([0.5, 0.5, 0.2]), jnp.array([0.0, 0.3, 0.3])
    for seed in range(3):
        key = jax.random.key(seed)
        both = rlhf_sharpening_sweep(key, oracle, cls, cfg, n_grid=(1, 3, 12), betas=betas, reward_noises=sig,
                                     losses=("squared", "logistic", "logistic"), evaluate=ev)
        for p, loss in enumerate(("squared", "logistic", "logistic")):
            one = rlhf_sharpening_sweep(key, oracle, cls, dataclasses.replace(cfg, loss=loss), n_grid=(1, 3, 12),
                                        betas=betas[p:p + 1], reward_noises=sig[p:p + 1], evaluate=ev)
            for f in ("sharpness_error", "worst_error", "num_minimizers", "params"):
                np.testing.assert_array_equal(np.asarray(getattr(both, f))[:, p], np.asarray(getattr(one, f))[:, 0])
    with pytest.raises(ValueError, match="losses"):
        rlhf_sharpening_sweep(key, oracle, cls, cfg, losses=("hinge",), evaluate=ev)


def test_optimism_sign_is_pinned():
    """On the exploration instance (sharpsim_experiments/_exploration.py: the argmax-deciding features sit on responses
    π_base draws with probability ≈ 1/M each), XPO with Theorem J.2's α sharpens in most trials, and the same
    run with the optimism term's sign flipped (private hook) does not: it then prefers members that keep their
    mass on the commons π_base draws, never explores, and is left with what ỹ ~ π_base reveals (≈ T/C_cov).
    32 trials; measured 0.88 / 0.0 (seed 0); thresholds 0.65 / 0.3 sit ≥ 3 binomial standard deviations away.
    Catches: a flipped sign of α·Σ log π(ỹ) (the bug that left every earlier test green)."""
    import bounds
    from sharpsim_experiments._exploration import exploration_instance

    M, k, gamma, delta, T = 256, 3, 0.5, 0.1, 32
    beta = float(bounds.xpo_beta(gamma, delta, M + k))
    pi_base, mu, cls, _, _ = exploration_instance(M, k, gamma, beta, 10.0, 2.0)
    oracle = SampleEvaluateOracle(pi_base, mu)
    alpha = float(bounds.xpo_alpha(beta, 2.0 + math.log(M + k), cls.log_class_size, T, k * math.log(T + 1), 0.1))
    cfg = XPOConfig(T=T, beta=beta, alpha=alpha, eval_samples=4, eval_stride=4, tie_break="random")
    keys = jax.random.split(jax.random.key(0), 32)
    ev = metrics.SharpnessEvaluation.of(pi_base, mu, delta)
    f = jax.jit(jax.vmap(lambda kk, o, c, s: xpo_sharpening_sweep(kk, o, c, cfg, evaluate=ev, _optimism_sign=s)
                         .sharpness_error[0, 0], in_axes=(0, None, None, None)))
    ok = float(np.mean(np.asarray(f(keys, oracle, cls, 1.0)) <= 0.5))
    flipped = float(np.mean(np.asarray(f(keys, oracle, cls, -1.0)) <= 0.5))
    assert ok >= 0.65 and flipped <= 0.3, (ok, flipped)


def test_xpo_budget_is_the_oracles_one_check_over_all_calls():
    """XPO spends 2T + C·E queries over many one- or E-query calls, each within a per-call budget; the oracle's
    own check (``check_budget``) must refuse the total up front, and ``num_queries`` is the sum of the counts the
    oracle returned. Catches a budget that only the per-call checks see (a run silently over budget) and a
    reported count that is not the oracle's (e.g. off by the held-out evaluations)."""
    from sharpsim.oracle import BudgetExceededError

    inst = instances.planted_mode(jax.random.key(0), 2, 4, 2.0, 0.4)
    cfg = XPOConfig(T=4, beta=0.5, alpha=0.1, eval_samples=3)  # 8 + 5·3 = 23 queries, no call above 3
    tight = SampleEvaluateOracle(inst.pi_base, inst.mu, budget=cfg.num_queries - 1)
    with pytest.raises(BudgetExceededError, match=f"needs {cfg.num_queries}"):
        xpo_sharpening(jax.random.key(1), tight, TabularClass(2, 4), cfg)
    with pytest.raises(BudgetExceededError, match=f"needs {cfg.num_queries}"):
        xpo_sharpening_sweep(jax.random.key(1), tight, TabularClass(2, 4), cfg,
                             evaluate=metrics.SharpnessEvaluation.of(inst.pi_base, inst.mu, 0.2))
    enough = SampleEvaluateOracle(inst.pi_base, inst.mu, budget=cfg.num_queries)
    res = xpo_sharpening(jax.random.key(1), enough, TabularClass(2, 4), cfg)
    assert int(res.num_queries) == 2 * 4 + 5 * 3
