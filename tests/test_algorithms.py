"""Adaptive SFT (Lemma I.1 as properties), exact query accounting for every algorithm, and error messages."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sharpsim import SampleEvaluateOracle, TabularPolicy, exact, instances
from sharpsim.algorithms import (
    AdaptiveSFTConfig,
    FitConfig,
    NonFiniteLossError,
    RLHFConfig,
    SFTConfig,
    XPOConfig,
    adaptive_sft_sharpening,
    rlhf_sharpening,
    sft_sharpening,
    sft_sharpening_sweep,
    xpo_sharpening,
)
from sharpsim.classes import FiniteClass, ParametricClass, TabularClass
from sharpsim.metrics import SharpnessEvaluation
from sharpsim.oracle import BudgetExceededError

from _counting import COUNTER, CountingPolicy  # tests/ is on sys.path (pytest prepend import mode)

NUM = 4000  # independent stopping-rule runs per hypothesis example


@jax.jit
def _adaptive_runs(key, log_probs, log_mu):
    """NUM independent runs of Eq. (10)'s rule on one distribution (traced μ_stop: one compile)."""
    oracle = SampleEvaluateOracle(TabularPolicy(log_probs=log_probs[None]), jnp.ones((1,), log_probs.dtype))
    stop = lambda k, lp: jnp.log(k.astype(lp.dtype)) >= log_mu - lp  # noqa: E731
    return oracle.sample_adaptive(key, NUM, stop, chunk=8)


@settings(max_examples=12)
@given(
    ties=st.integers(1, 3),
    top=st.floats(0.1, 0.6),
    mu_stop=st.floats(0.5, 3.0),
    seed=st.integers(0, 2**16),
)
def test_lemma_I1_properties(ties, top, mu_stop, seed):
    """E[N_μ] ≤ (μ + 1/|y*|)/P* and P[ŷ ∉ y*] ≤ e^{−|y*|μ} (Lemma I.1), on random P over 8 responses.

    Tolerances from NUM = 4000 runs: the mean may exceed the bound by 5 standard errors (Gaussian tail
    ≈ 3e-7; N_μ ≤ ⌈μ/P*⌉ + Geometric so the CLT applies), and failures may reach the 1 − 1e-6 quantile of
    Binomial(NUM, bound). Over 12 examples the false-failure rate is below 2e-5.
    """
    Y = 8
    rng = np.random.default_rng(seed)
    p_star = min(top, 1.0 / ties)
    rest = 1.0 - ties * p_star
    others = rng.dirichlet(np.ones(Y - ties)) * rest
    others = np.minimum(others, 0.95 * p_star)  # strictly below P*
    p = np.concatenate([np.full(ties, p_star), others])
    p /= p.sum()
    p_star = p[:ties].max()
    is_star = p >= p_star * (1 - 1e-6)
    k_star = int(is_star.sum())
    P_set = p[is_star].sum()
    out = _adaptive_runs(jax.random.key(seed), jnp.log(jnp.asarray(p, jnp.float32)), jnp.float32(math.log(mu_stop)))
    drawn = np.asarray(out.num_drawn, np.float64)
    assert not np.any(np.asarray(out.truncated))
    bound_N = (mu_stop + 1.0 / k_star) / p_star
    assert drawn.mean() <= bound_N + 5 * drawn.std() / math.sqrt(NUM) + 1e-9
    miss = ~is_star[np.asarray(out.best_response)]
    bound_miss = math.exp(-k_star * mu_stop)
    assert miss.sum() <= stats.binom.ppf(1 - 1e-6, NUM, min(bound_miss, 1.0))
    del P_set


def test_adaptive_sft_counts_and_sharpens():
    # point mass: P* = 1, μ_stop = ln(2/δ) = ln 20 ≈ 3.0 → stop at exactly k = 3 draws per prompt
    pol = TabularPolicy.from_probs(jnp.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    oracle = SampleEvaluateOracle(pol, jnp.array([0.5, 0.5]))
    res = adaptive_sft_sharpening(jax.random.key(0), oracle, TabularClass(2, 3), AdaptiveSFTConfig(n=50, delta=0.1))
    assert int(res.num_queries) == 150 and np.all(np.asarray(res.diagnostics["num_drawn"]) == 3)
    assert float(res.diagnostics["mu_stop"]) == pytest.approx(math.log(20.0))
    # ... and sharpens: on a spread-out π_base (modes 0.5 and 0.6, far from 1 − δ = 0.9) Eq. (10) picks the mode
    # w.p. ≥ 1 − 0.5^6 per prompt, so the tabular MLE puts ≥ 0.9 on it at both prompts. Catches an adaptive
    # run that counts draws correctly but fits the wrong responses (e.g. the last draw instead of the best).
    from sharpsim import metrics

    base = TabularPolicy.from_probs(jnp.array([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]]))
    oracle = SampleEvaluateOracle(base, jnp.array([0.5, 0.5]))
    res = adaptive_sft_sharpening(jax.random.key(1), oracle, TabularClass(2, 3), AdaptiveSFTConfig(n=400, delta=0.1))
    assert not bool(metrics.is_sharpened(base, base, oracle.mu, 0.01, 0.1))  # the base policy is not sharpened
    assert bool(metrics.is_sharpened(res.policy, base, oracle.mu, 0.01, 0.1))
    # the mode mass is the empirical pick frequency (≈ 0.98+ here), far above 0.9: P[fail] < 1e-9 (Chernoff)
    assert float(metrics.sharpness_error(res.policy, base, oracle.mu, 0.1)) == 0.0


def _counting_oracle(inst):
    return SampleEvaluateOracle(CountingPolicy(inst.pi_base), inst.mu)


def test_exact_query_accounting_for_every_algorithm():
    """num_queries equals the draws + evaluations the base policy actually served (host-side counters)."""
    inst = instances.planted_mode(jax.random.key(0), 3, 5, 2.5, 0.4)
    oracle = _counting_oracle(inst)
    star = exact.kl_regularized_optimum(inst.pi_base, 0.5)
    finite = FiniteClass.stack([inst.pi_base, star, exact.bon_policy(inst.pi_base, 3)])
    key = jax.random.key(1)
    cases = [
        (sft_sharpening, finite, SFTConfig(n=7, N=5)),
        (rlhf_sharpening, finite, RLHFConfig(n=9, beta=0.5)),
        (xpo_sharpening, finite, XPOConfig(T=4, beta=0.5, alpha=0.1, eval_samples=3, eval_stride=2)),
        (xpo_sharpening, TabularClass(3, 5), XPOConfig(T=3, beta=0.5, alpha=0.1, eval_samples=2, steps_per_round=2)),
    ]
    for algo, cls, cfg in cases:
        COUNTER.reset()
        res = algo(key, oracle, cls, cfg)
        jax.block_until_ready(res)
        jax.effects_barrier()
        assert int(res.num_queries) == cfg.num_queries == COUNTER.draws + COUNTER.evals, (algo.__name__, COUNTER.draws, COUNTER.evals)
    # XPO: 2 per round (round 1: two base draws; later: one evaluation of the learner's y + one base draw)
    assert XPOConfig(T=6, beta=0.5, alpha=0.1, eval_samples=3, eval_stride=2).num_queries == 12 + 4 * 3
    # sweep: one draw of n_max × N_max
    COUNTER.reset()
    sw = sft_sharpening_sweep(key, oracle, finite, (2, 6), (1, 4),
                              evaluate=SharpnessEvaluation.of(inst.pi_base, inst.mu, 0.5))
    jax.effects_barrier()
    assert int(sw.total_drawn) == 24 == COUNTER.draws and COUNTER.evals == 0
    # adaptive with chunk = 1: the base policy serves exactly the counted draws (shapes come from eval_shape)
    COUNTER.reset()
    res = adaptive_sft_sharpening(key, oracle, finite, AdaptiveSFTConfig(n=10, delta=0.2, chunk=1))
    jax.effects_barrier()
    assert int(res.num_queries) == int(np.sum(res.diagnostics["num_drawn"])) == COUNTER.draws


def test_configuration_errors():
    with pytest.raises(ValueError, match="beta"):
        RLHFConfig(n=5, beta=0.0)
    with pytest.raises(ValueError, match="beta"):
        XPOConfig(T=5, beta=-1.0, alpha=0.1)
    with pytest.raises(ValueError, match="alpha"):
        XPOConfig(T=5, beta=0.1, alpha=-0.5)
    with pytest.raises(ValueError, match="T "):
        XPOConfig(T=0, beta=0.1, alpha=0.1)
    with pytest.raises(ValueError, match="more than its budget"):
        XPOConfig(T=10, beta=0.1, alpha=0.1, eval_samples=10, budget=25)
    with pytest.raises(ValueError, match="exactly one of delta"):
        AdaptiveSFTConfig(n=3)
    inst = instances.planted_mode(jax.random.key(0), 2, 4, 2.0, 0.4)
    small = SampleEvaluateOracle(inst.pi_base, inst.mu, budget=20)
    with pytest.raises(BudgetExceededError, match="needs 30"):
        sft_sharpening(jax.random.key(0), small, TabularClass(2, 4), SFTConfig(n=10, N=3))


def test_nonfinite_loss_names_the_step():
    """A fit whose loss diverges raises, naming the optimisation step and the loss / gradient values."""
    inst = instances.planted_mode(jax.random.key(0), 2, 4, 2.0, 0.4)
    oracle = SampleEvaluateOracle(inst.pi_base, inst.mu)
    # NLL = −p³ with plain SGD: p ← p + 3p² explodes to inf within a few steps
    cls = ParametricClass(params=jnp.ones((1,)), log_prob_fn=lambda p, x, y: p[0] ** 3 + 0.0 * y,
                          make_policy=lambda p: inst.pi_base)
    cfg = SFTConfig(n=4, N=2, fit=FitConfig(steps=20, learning_rate=1.0, optimizer="sgd"))
    with pytest.raises(NonFiniteLossError, match=r"optimisation step \d+: loss = -?inf"):
        sft_sharpening(jax.random.key(0), oracle, cls, cfg)


def test_sweeps_score_with_the_callers_evaluation():
    """The sweeps score their fits with the caller's ``evaluate`` (metrics.SharpnessEvaluation), not with anything
    of their own: with an evaluation against a *different* reference policy, every entry equals
    metrics.sharpness_error of the returned member against that reference (computed here, independently), and an
    evaluation against π_base gives other errors. Catches a sweep that ignores ``evaluate`` (scores against the
    oracle's π_base regardless), mixes the two, or runs without an evaluation (the removed ``delta=`` path)."""
    from sharpsim import metrics
    from sharpsim.algorithms import rlhf_sharpening_sweep

    inst = instances.planted_mode(jax.random.key(0), 3, 5, 2.5, 0.4)
    oracle = SampleEvaluateOracle(inst.pi_base, inst.mu)
    star = exact.kl_regularized_optimum(inst.pi_base, 0.5)
    other = TabularPolicy.from_probs(jnp.asarray(np.random.default_rng(3).dirichlet(np.ones(5), size=3)))
    finite = FiniteClass.stack([inst.pi_base, star, exact.bon_policy(inst.pi_base, 3), other])
    key, delta = jax.random.key(2), 0.3
    ev_other = metrics.SharpnessEvaluation.of(other, inst.mu, delta)
    ev_base = metrics.SharpnessEvaluation.of(inst.pi_base, inst.mu, delta)

    sw = sft_sharpening_sweep(key, oracle, finite, (2, 9), (1, 6), evaluate=ev_other)
    for g in range(2):
        for h in range(2):
            want = metrics.sharpness_error(finite.member(sw.params[g, h]), other, inst.mu, delta)
            assert float(sw.sharpness_error[g, h]) == pytest.approx(float(want), abs=1e-6)
    b = sft_sharpening_sweep(key, oracle, finite, (2, 9), (1, 6), evaluate=ev_base)
    for g in range(2):
        for h in range(2):
            want = metrics.sharpness_error(finite.member(b.params[g, h]), inst.pi_base, inst.mu, delta)
            assert float(b.sharpness_error[g, h]) == pytest.approx(float(want), abs=1e-6)

    cfg = RLHFConfig(n=12, beta=0.5)
    rw = rlhf_sharpening_sweep(key, oracle, finite, cfg, n_grid=(4, 12), evaluate=ev_other)
    for g in range(2):
        want = metrics.sharpness_error(finite.member(rw.params[g, 0]), other, inst.mu, delta)
        assert float(rw.sharpness_error[g, 0]) == pytest.approx(float(want), abs=1e-6)
    with pytest.raises(TypeError, match="evaluate"):  # no evaluation: the sweeps do not score themselves
        sft_sharpening_sweep(key, oracle, finite, (2,), (1,))
    with pytest.raises(ValueError, match="evaluate must be a metrics.SharpnessEvaluation"):
        sft_sharpening_sweep(key, oracle, finite, (2,), (1,), evaluate=0.3)
    from sharpsim.algorithms import XPOConfig, xpo_sharpening_sweep
    xcfg = XPOConfig(T=2, beta=0.5, alpha=0.1, eval_samples=2)
    for name, sweep in (("rlhf_sharpening_sweep", lambda **kw: rlhf_sharpening_sweep(key, oracle, finite, cfg, **kw)),
                        ("xpo_sharpening_sweep", lambda **kw: xpo_sharpening_sweep(key, oracle, finite, xcfg, **kw))):
        with pytest.raises(TypeError, match="evaluate"):  # no evaluation: the sweeps do not score themselves
            sweep()
        with pytest.raises(TypeError, match="delta"):  # the removed delta=/gamma= path
            sweep(delta=delta, evaluate=ev_base)
        with pytest.raises(ValueError, match=f"{name}: evaluate must be a metrics.SharpnessEvaluation"):
            sweep(evaluate=delta)


def test_map_trials_is_vmap_over_keys_with_one_compile():
    """map_trials(trial, keys, *args) equals a plain loop over the keys, batches equal the vmapped path, and a
    second call with new arrays of the same shapes reuses the compiled program. Catches closing over arrays (a
    recompile per setting) or a batch path that reorders trials."""
    from sharpsim.algorithms import _common, map_trials

    def trial(key, table, scale, n: int):
        return scale * jnp.sum(jax.random.normal(key, (n,)) * table[:n])

    keys = jax.random.split(jax.random.key(0), 10)
    table = jnp.arange(5.0)
    got = map_trials(trial, keys, table, jnp.float32(2.0), 3)
    want = jnp.stack([trial(k, table, jnp.float32(2.0), 3) for k in keys])
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
    size = len(_common._TRIALS_CACHE)
    map_trials(trial, keys, table + 1.0, jnp.float32(3.0), 3)
    assert len(_common._TRIALS_CACHE) == size
    batched = map_trials(trial, keys, table, jnp.float32(2.0), 3, batch_size=4)
    np.testing.assert_allclose(np.asarray(batched), np.asarray(got), rtol=1e-6)
    with pytest.raises(ValueError, match="keys"):
        map_trials(trial, keys.reshape(2, 5), table, jnp.float32(2.0), 3)
