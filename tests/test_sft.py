"""SFT-sharpening: realizable convergence to π^BoN_N, the one-draw sweep, and Theorem 4.1 in miniature."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sharpsim import SampleEvaluateOracle, exact, instances, metrics
from sharpsim.algorithms import SFTConfig, sft_parameters, sft_sharpening, sft_sharpening_sweep
from sharpsim.classes import FiniteClass, TabularClass


def test_sft_on_a_realizable_finite_class_returns_the_bon_policy():
    """π^BoN_N among distractors (π_base, π^BoN for other N): with n = 400 the MLE is π^BoN_N in every trial.

    The closest distractor (π^BoN_{N+2}) differs from π^BoN_N by a KL of ~0.03 nats per sample, so at
    n = 400 a wrong choice needs a log-likelihood-ratio deviation of ~12 nats: probability < 1e-5 per trial.
    """
    inst = instances.planted_mode(jax.random.key(0), 2, 5, 2.5, 0.3)
    N = 4
    bon = jax.jit(exact.bon_policy, static_argnums=1)
    cands = [inst.pi_base, bon(inst.pi_base, 2), bon(inst.pi_base, N), bon(inst.pi_base, N + 2), bon(inst.pi_base, 12)]
    cls = FiniteClass.stack(cands)
    oracle = SampleEvaluateOracle(inst.pi_base, inst.mu)
    ev = metrics.SharpnessEvaluation.of(inst.pi_base, inst.mu, 0.5)
    fn = lambda k: sft_sharpening_sweep(k, oracle, cls, (4, 400), (N,), evaluate=ev)  # noqa: E731
    sw = jax.jit(jax.vmap(fn))(jax.random.split(jax.random.key(1), 32))
    assert np.all(np.asarray(sw.params[:, 1, 0]) == 2)
    assert np.all(np.asarray(sw.num_queries[:, 1, 0]) == 400 * N)
    # and at n = 4 the MLE is often wrong: the test above can fail
    assert np.mean(np.asarray(sw.params[:, 0, 0, 0]) == 2) < 0.9


def _numpy_sweep_point(batch, cls_lp, n, N, X, Y):
    """Reference: SFT on the first n prompts with best of the first N responses, brute-force product MLE."""
    lps = np.asarray(batch.log_probs)[:n, :N]
    picks = np.asarray(batch.responses)[np.arange(n), np.argmax(lps, axis=1)]
    counts = np.zeros((X, Y))
    np.add.at(counts, (np.asarray(batch.prompts)[:n], picks), 1.0)
    lp = np.asarray(cls_lp, np.float64)
    ll = np.where(np.isfinite(lp), lp, 0.0) @ counts[:, :, None]  # [X, K, 1]
    bad = (~np.isfinite(lp)).astype(float) @ counts[:, :, None]
    ll = np.where(bad > 0, -np.inf, ll)[..., 0]
    return np.argmax(ll, axis=1)


def test_sweep_matches_independent_runs_on_the_same_draw():
    inst = instances.hard_instance(jax.random.key(2), d=3, M=5, Delta=0.6)
    oracle = SampleEvaluateOracle(inst.pi_base, inst.mu)
    base = FiniteClass.from_instance(inst)
    n_grid, N_grid = (5, 20, 60), (1, 3, 8)
    key = jax.random.key(5)
    ev = metrics.SharpnessEvaluation.of(inst.pi_base, inst.mu, 0.3)
    sweep = jax.jit(lambda k: sft_sharpening_sweep(k, oracle, base.bon_closure, n_grid, N_grid, evaluate=ev))(key)
    batch = jax.jit(lambda k: oracle.sample_and_evaluate(k, 60, 8))(key)
    for g, n in enumerate(n_grid):
        for h, N in enumerate(N_grid):
            cls = base.bon_closure(N)
            idx = _numpy_sweep_point(batch, cls.log_probs, n, N, 4, 6)
            np.testing.assert_array_equal(np.asarray(sweep.params[g, h]), idx)
            err = metrics.sharpness_error(cls.member(jnp.asarray(idx)), inst.pi_base, inst.mu, 0.3)
            assert float(sweep.sharpness_error[g, h]) == pytest.approx(float(err))
            assert int(sweep.num_queries[g, h]) == n * N
    assert int(sweep.total_drawn) == 60 * 8
    # the (n_max, N_max) point is exactly sft_sharpening with the same key
    res = sft_sharpening(key, oracle, base.bon_closure(8), SFTConfig(n=60, N=8))
    np.testing.assert_array_equal(res.params, sweep.params[-1, -1])


def test_sweep_tabular_class_and_trials():
    inst = instances.planted_mode(jax.random.key(4), 3, 6, 3.0, 0.5)
    oracle = SampleEvaluateOracle(inst.pi_base, inst.mu)
    ev = metrics.SharpnessEvaluation.of(inst.pi_base, inst.mu, 0.2)
    fn = lambda k: sft_sharpening_sweep(k, oracle, TabularClass(3, 6), (10, 400), (1, 30), evaluate=ev)  # noqa: E731
    sw = jax.jit(jax.vmap(fn))(jax.random.split(jax.random.key(0), 16))
    assert sw.sharpness_error.shape == (16, 2, 2)
    err = np.asarray(sw.sharpness_error).mean(0)
    assert err[1, 1] < 0.05 and err[0, 0] > 0.5  # N = 1 copies π_base (not sharp); n = 400, N = 30 sharpens


@pytest.mark.parametrize("which,c_low", [("hard", 0.05), pytest.param("planted", 0.01, marks=pytest.mark.slow)])
def test_theorem_4_1_in_miniature(which, c_low):
    """With c = 1 (THEOREM_4_1_C) in n = c log(|Π|/ρ)/(δε), N = c C_cov log(2/δ)/ε, ≥ 1 − ρ of trials are
    (ε, δ)-sharpened; with c = c_low (0.05 hard, 0.01 planted) far fewer are (so the check can fail). Realizable class: the BoN closure.

    Hard instance: d = 4, M = 8, Δ = 0.5 (C_cov = 2.5, log|Π| = 4 log 8). Random: planted mode, X = 6, Y = 8,
    C_cov = 3, margin 0.3, candidates per prompt = π_base(·|x) and 3 permutations of it (log|Π| = 6 log 4).
    ε = 0.1, δ = 0.2, ρ = 0.1, 64 trials; observed success at c = 1 is 64/64 here, whose chance under a true
    success rate of 1 − ρ/2 = 0.95 would already be ≈ 4%, so the 1 − ρ threshold has ample room.
    """
    eps, delta, rho = 0.1, 0.2, 0.1
    if which == "hard":
        inst = instances.hard_instance(jax.random.key(7), d=4, M=8, Delta=0.5)
        base = FiniteClass.from_instance(inst)
    else:
        inst = instances.planted_mode(jax.random.key(8), 6, 8, 3.0, 0.3)
        rng = np.random.default_rng(0)
        rows = np.asarray(inst.pi_base.log_probs)
        cands = [rows] + [rows[:, rng.permutation(8)] for _ in range(3)]
        base = FiniteClass.product_class(jnp.asarray(np.stack(cands, axis=1)))
    C_cov = float(metrics.coverage(inst.pi_base, inst.mu))
    n1, N1 = sft_parameters(eps, delta, rho, C_cov, base.log_class_size, c=1.0)
    n0, N0 = sft_parameters(eps, delta, rho, C_cov, base.log_class_size, c=c_low)
    oracle = SampleEvaluateOracle(inst.pi_base, inst.mu)
    ev = metrics.SharpnessEvaluation.of(inst.pi_base, inst.mu, delta)
    fn = lambda k: sft_sharpening_sweep(k, oracle, base.bon_closure, (n0, n1), (N0, N1), evaluate=ev)  # noqa: E731
    sw = jax.jit(jax.vmap(fn))(jax.random.split(jax.random.key(9), 64))
    ok = np.asarray(sw.sharpness_error) <= eps
    assert ok[:, 1, 1].mean() >= 1 - rho, (n1, N1, ok[:, 1, 1].mean())
    assert ok[:, 0, 0].mean() < 1 - rho, (n0, N0, ok[:, 0, 0].mean())


def test_sft_parameters_and_budget_errors():
    n, N = sft_parameters(0.1, 0.2, 0.1, 2.5, 4 * math.log(8), c=1.0)
    assert n == math.ceil((4 * math.log(8) + math.log(10)) / 0.02) and N == math.ceil(2.5 * math.log(10) / 0.1)
    with pytest.raises(ValueError, match="multiple of N"):
        SFTConfig.from_budget(1000, 30)
    with pytest.raises(ValueError, match="more than its budget"):
        SFTConfig(n=10, N=10, budget=50)
    assert SFTConfig.from_budget(1000, 50).n == 20
