"""Theorem 4.2's finite confuser class (instances.margin_confuser_class) and its exact version-space law
(finite_size.confuser_touch_probabilities / version_space_failure_probabilities), checked against brute force
and Monte Carlo — never against values computed by the code under test."""

import math

import jax
import numpy as np
import pytest

from sharpsim import SampleEvaluateOracle, exact, finite_size, instances, metrics
from sharpsim.algorithms import RLHFConfig, rlhf_sharpening_sweep
from sharpsim.algorithms._common import pair_residual


def _inst(gamma=0.25):
    return instances.planted_mode(jax.random.key(0), 5, 6, 2.5, gamma)


def test_class_holds_pi_star_and_swaps_mode_and_runner_up_on_each_set():
    # catches: a class without π*_β (Assumption 4.3), confusers that change other responses, wrong sets
    inst, beta = _inst(), 0.01
    cls, sets = instances.margin_confuser_class(inst.pi_base, beta, 2)
    lp = np.asarray(cls.log_probs)  # [X, K, Y]
    star = np.asarray(exact.kl_regularized_optimum(inst.pi_base, beta).log_probs)
    np.testing.assert_allclose(lp[:, 0], star, rtol=1e-6)
    assert sets.shape == (math.comb(5, 2), 2) and lp.shape[1] == 1 + len(sets)
    order = np.argsort(-np.asarray(inst.pi_base.log_probs), axis=1)
    for k, S in enumerate(sets, start=1):
        diff = ~np.isclose(lp[:, k], star)
        expect = np.zeros_like(diff)
        expect[S, order[S, 0]] = expect[S, order[S, 1]] = True
        np.testing.assert_array_equal(diff, expect)
        # the confuser is unsharpened exactly on S (μ(S) = 2/5 > ε = 0.2)
        err = float(metrics.sharpness_error(cls.member(np.full(5, k)), inst.pi_base, inst.mu, 0.2))
        assert err == pytest.approx(0.4, abs=1e-6)


def test_touch_probability_equals_brute_force_over_pairs_of_the_class():
    # catches: a touch law that disagrees with where the confuser's Eq. (8) residual is nonzero
    inst, beta = _inst(), 0.05
    cls, sets = instances.margin_confuser_class(inst.pi_base, beta, 1)
    lp, r = np.asarray(cls.log_probs, np.float64), np.asarray(inst.pi_base.log_probs, np.float64)
    p = np.exp(r)
    q = finite_size.confuser_touch_probabilities(p)
    for k, (x,) in enumerate(sets, start=1):
        res = pair_residual(beta, lp[x, k][:, None], lp[x, k][None, :], r[x][:, None], r[x][None, :])
        brute = float(np.sum(np.outer(p[x], p[x]) * (np.abs(res) > 1e-6)))
        assert q[x] == pytest.approx(brute, abs=1e-6)  # float32 π_base


@pytest.mark.parametrize("rates,s,n", [((0.1,) * 6, 2, 12), ((0.05, 0.1, 0.15, 0.2), 1, 6), ((0.02, 0.2, 0.1), 2, 9)])
def test_version_space_law_matches_monte_carlo(rates, s, n):
    # catches: wrong inclusion–exclusion signs/coefficients or a wrong uniform tie-break average.
    # 40 000 draws, tolerance 5 binomial standard errors: false-failure rate < 1e-6 per comparison.
    rng = np.random.default_rng(0)
    r = np.asarray(rates)
    R = 40_000
    outcome = rng.choice(r.size + 1, size=(R, n), p=np.append(r, 1 - r.sum()))
    touched = np.stack([(outcome == x).any(axis=1) for x in range(r.size)], axis=1)
    u = (~touched).sum(axis=1)
    worst_mc = np.mean(u >= s)
    cu = np.array([math.comb(int(v), s) for v in u], float)
    unif_mc = np.mean(cu / (cu + 1))
    worst, unif = finite_size.version_space_failure_probabilities(n, r, s)
    for mc, ex in ((worst_mc, worst), (unif_mc, unif)):
        assert abs(mc - ex) <= 5 * math.sqrt(max(ex * (1 - ex), 1e-4) / R)
    assert unif <= worst + 1e-12


def test_version_space_law_validates_its_arguments():
    with pytest.raises(ValueError, match="rates"):
        finite_size.version_space_failure_probabilities(3, [0.7, 0.6], 1)
    with pytest.raises(ValueError, match="set_size"):
        instances.margin_confuser_class(_inst().pi_base, 0.1, 9)


def test_sweep_worst_case_failure_follows_the_law():
    # end to end through rlhf_sharpening_sweep (exact rewards): 400 trials, 5 standard errors
    inst, beta, s = _inst(1 / 16), 0.2 * 0.2 / 16, 2
    cls, _ = instances.margin_confuser_class(inst.pi_base, beta, s)
    oracle = SampleEvaluateOracle(inst.pi_base, inst.mu)
    cfg = RLHFConfig(n=8, beta=beta, tie_break="random")
    ev = metrics.SharpnessEvaluation.of(inst.pi_base, inst.mu, 0.2)
    f = jax.jit(jax.vmap(lambda k: rlhf_sharpening_sweep(k, oracle, cls, cfg, n_grid=(4, 8), evaluate=ev).worst_error[:, 0]))
    w = np.asarray(f(jax.random.split(jax.random.key(1), 400)))
    rates = finite_size.confuser_touch_probabilities(np.exp(np.asarray(inst.pi_base.log_probs))) / 5
    for g, n in enumerate((4, 8)):
        ex = finite_size.version_space_failure_probabilities(n, rates, s)[0]
        assert abs(np.mean(w[:, g] > 0.2 + 1e-6) - ex) <= 5 * math.sqrt(ex * (1 - ex) / 400) + 1e-3
