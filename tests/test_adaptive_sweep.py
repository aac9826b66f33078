"""adaptive_sft_sharpening_sweep: every grid point is exactly the adaptive run on a prefix of the prompts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sharpsim import SampleEvaluateOracle, instances, metrics
from sharpsim.algorithms import AdaptiveSFTConfig, adaptive_sft_sharpening, adaptive_sft_sharpening_sweep
from sharpsim.classes import FiniteClass, TabularClass
from sharpsim.oracle import max_likelihood_stopping_rule


@pytest.fixture(scope="module")
def hard():
    inst = instances.hard_instance(jax.random.key(3), d=3, M=6, Delta=0.6)
    return inst, SampleEvaluateOracle(inst.pi_base, inst.mu), FiniteClass.from_instance(inst)


def test_each_grid_point_is_the_prefix_run(hard):
    inst, oracle, cls = hard
    key, delta, n_grid = jax.random.key(7), 0.5, (1, 3, 10, 40)
    ev = metrics.SharpnessEvaluation.of(inst.pi_base, inst.mu, delta, 0.5)  # μ_stop = ln(2/δ) by default
    sw = jax.jit(lambda k: adaptive_sft_sharpening_sweep(k, oracle, cls, n_grid, evaluate=ev))(key)
    # the same draw, by hand: the oracle's adaptive batch, brute-force product MLE (NumPy) on each prefix
    stop = max_likelihood_stopping_rule(np.log(2 / delta))
    batch = jax.jit(lambda k: oracle.sample_adaptive(k, max(n_grid), stop))(key)
    prompts, picks, drawn = (np.asarray(a) for a in (batch.prompts, batch.best_response, batch.num_drawn))
    lp, valid = np.asarray(cls.log_probs, np.float64), np.asarray(cls.valid)
    mu, top = np.asarray(inst.mu), np.asarray(inst.pi_base.probs).argmax(axis=1)
    for g, n in enumerate(n_grid):
        counts = np.zeros(lp.shape[::2])
        np.add.at(counts, (prompts[:n], picks[:n]), 1.0)
        with np.errstate(invalid="ignore"):
            scores = np.where(counts[:, None, :] > 0, counts[:, None, :] * lp, 0.0).sum(-1)
        index = np.argmax(np.where(valid, scores, -np.inf), axis=1)
        mass = np.exp(lp[np.arange(len(mu)), index, top])  # y*_γ is the singleton top response here
        assert np.array_equal(np.asarray(sw.params[g]), index)
        assert float(sw.sharpness_error[g]) == pytest.approx(float(mu[mass <= 1 - delta].sum()), abs=1e-6)
        assert int(sw.num_queries[g]) == int(drawn[:n].sum())
    assert int(sw.total_drawn) == int(drawn.sum())
    # the last grid point is adaptive_sft_sharpening itself on the same key
    res = adaptive_sft_sharpening(key, oracle, cls, AdaptiveSFTConfig(n=max(n_grid), delta=delta))
    assert int(res.num_queries) == int(sw.num_queries[-1])
    assert np.array_equal(np.asarray(res.params), np.asarray(sw.params[-1]))


def test_vmapped_over_trials_with_a_tabular_class_and_explicit_mu_stop():
    pi = instances.planted_mode(jax.random.key(0), 2, 5, 2.5, 0.3)
    oracle = SampleEvaluateOracle(pi.pi_base, pi.mu)
    ev = metrics.SharpnessEvaluation.of(pi.pi_base, pi.mu, 0.2)
    fn = lambda k: adaptive_sft_sharpening_sweep(k, oracle, TabularClass(2, 5), (2, 8, 64), evaluate=ev, mu_stop=3.0)  # noqa: E731
    sw = jax.jit(jax.vmap(fn))(jax.random.split(jax.random.key(1), 16))
    q = np.asarray(sw.num_queries)
    assert q.shape == (16, 3) and np.all(np.diff(q, axis=1) > 0) and np.all(q[:, -1] == np.asarray(sw.total_drawn))
    # Eq. 10 with mu_stop = 3: at least ceil(3 / p*) draws per prompt, p* = 0.4
    assert np.all(np.asarray(sw.num_drawn) >= 8)
    # more prompts -> the tabular MLE concentrates on the mode (Lemma I.1: pick = mode w.p. >= 1 - e^{-3})
    assert float(np.mean(np.asarray(sw.sharpness_error[:, -1]))) < float(np.mean(np.asarray(sw.sharpness_error[:, 0])))


def test_errors(hard):
    inst, oracle, cls = hard
    ev = metrics.SharpnessEvaluation.of(inst.pi_base, inst.mu, 0.5)
    with pytest.raises(ValueError, match="non-empty"):
        adaptive_sft_sharpening_sweep(jax.random.key(0), oracle, cls, (), evaluate=ev)
    with pytest.raises(ValueError, match="evaluate must be a metrics.SharpnessEvaluation"):
        adaptive_sft_sharpening_sweep(jax.random.key(0), oracle, cls, (2,), evaluate=0.5)
    with pytest.raises(ValueError, match="mu_stop"):
        adaptive_sft_sharpening_sweep(jax.random.key(0), oracle, cls, (2,), evaluate=ev, mu_stop=-1.0)
    with pytest.raises(ValueError, match="exact-MLE class"):
        adaptive_sft_sharpening_sweep(jax.random.key(0), oracle, object(), (2,), evaluate=ev)
