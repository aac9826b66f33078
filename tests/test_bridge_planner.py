"""The N planner (NumPy only) and the exact subsampled best-of-N helpers."""

import itertools
import math

import numpy as np
import pytest

from sharpsim.bridge import (
    estimate_mode_mass,
    expected_bon_by_n,
    pass_at_n,
    plan_from_samples,
    plan_from_table,
    plan_n,
    recommend_n_bon,
    recommend_n_sft,
)

pytestmark = [pytest.mark.hf]


def test_prop_c1_formula():
    assert recommend_n_bon(0.5, 0.1).item() == math.ceil(math.log(10) / 0.5)
    assert recommend_n_bon([1.0, 0.0], 0.5).tolist() == [1.0, float("inf")]
    assert recommend_n_sft(4.0, 0.1, 0.2) == math.ceil(4 * math.log(10) / 0.1)
    with pytest.raises(ValueError):
        recommend_n_bon(0.5, 1.5)


def test_recommended_n_achieves_the_guarantee():
    """With N from Prop. C.1 the probability of missing the mode, (1 − p)^N, is at most ρ (and N is minimal)."""
    for p in [0.01, 0.07, 0.3, 0.9]:
        for rho in [0.01, 0.1, 0.5]:
            n = int(recommend_n_bon(p, rho))
            assert math.exp(-n * p) <= rho + 1e-12
            assert math.exp(-(n - 1) * p) > rho


def test_plan_from_table_exact():
    P = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    plan = plan_from_table(P, rho=0.1, epsilon=0.1, delta=0.1)
    assert plan.c_cov == pytest.approx(0.5 * (2 + 1.25))
    assert plan.n_bon_max == math.ceil(math.log(10) / 0.5)
    assert plan.n_sft == math.ceil(plan.c_cov * math.log(20) / 0.1)


def test_clopper_pearson_lower_bound_covers():
    """Coverage of the one-sided 95% bound over 2000 simulated pilots; fails with prob ~1e-6 if it is valid."""
    rng = np.random.default_rng(0)
    p = 0.3
    samples = rng.random((2000, 20)) < p
    est = estimate_mode_mass([["m" if s else None for s in row] for row in samples], confidence=0.95)
    cover = np.mean(est.p_lower <= p)
    assert cover >= 0.93
    assert np.all(est.p_lower <= est.p_hat)


def test_likelihood_estimate_is_exact_and_from_samples():
    est = estimate_mode_mass([["x", "y"], ["z", "z"]], logps=np.log([[0.2, 0.5], [0.1, 0.1]]))
    assert est.mode == ["y", "z"] and est.p_lower.tolist() == pytest.approx([0.5, 0.1])
    plan = plan_from_samples(np.array([[0, 0, 1, 0], [2, 2, 2, 2]]), rho=0.1)
    assert plan.estimate.mode == [0, 2] and plan.estimate.p_hat.tolist() == [0.75, 1.0]
    assert plan_n([["a"] * 5], rho=0.5).n_bon >= 1


def test_expected_bon_by_n_matches_enumeration():
    rng = np.random.default_rng(1)
    r = rng.integers(0, 4, size=7).astype(float)  # ties on purpose
    v = rng.random(7)
    for n in range(1, 8):
        tot = []
        for sub in itertools.combinations(range(7), n):
            best = max(r[list(sub)])
            tot.append(np.mean([v[i] for i in sub if r[i] == best]))
        assert expected_bon_by_n(r, v, [n])[0] == pytest.approx(np.mean(tot))


def test_pass_at_n():
    # pass_at_n is the deprecated name of the estimator pass_at_n_estimate (metrics.pass_at_n is the exact one)
    from sharpsim.bridge import pass_at_n_estimate

    assert pass_at_n is pass_at_n_estimate
    assert pass_at_n(0, 10, 3) == 0.0 and pass_at_n(10, 10, 1) == 1.0
    assert pass_at_n(2, 4, 2) == pytest.approx(1 - 1 / 6)
