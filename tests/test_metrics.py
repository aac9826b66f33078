"""Exact metrics against direct NumPy formulas, their robustness, and their input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sharpsim
from sharpsim import TabularPolicy

P = np.array(
    [
        [0.4, 0.3, 0.2, 0.1, 0.0],
        [0.25, 0.25, 0.25, 0.25, 0.0],
        [0.3, 0.3, 0.2, 0.1, 0.1],
    ]
)
MU = np.array([0.5, 0.3, 0.2])


def test_argmax_set_with_ties_and_gamma():
    pi = TabularPolicy.from_probs(P)
    np.testing.assert_array_equal(sharpsim.argmax_set(pi), P == P.max(1, keepdims=True))
    np.testing.assert_array_equal(sharpsim.argmax_set(pi, 0.5), P >= 0.5 * P.max(1, keepdims=True))


def test_coverage_family_matches_formulas():
    pi = TabularPolicy.from_probs(P)
    star_mass = np.array([0.4, 1.0, 0.6])  # mass on the whole argmax set
    assert np.isclose(float(sharpsim.coverage(pi, MU)), np.sum(MU / star_mass), rtol=1e-5)
    assert np.isclose(float(sharpsim.coverage(pi, MU, p=2)), np.sqrt(np.sum(MU / star_mass**2)), rtol=1e-5)
    gamma_mass = np.array([0.4 + 0.3, 1.0, 0.6 + 0.2])  # y with π ≥ (1−γ)max at γ = 1/3
    assert np.isclose(float(sharpsim.coverage(pi, MU, gamma=1 / 3 + 1e-6)), np.sum(MU / gamma_mass), rtol=1e-5)
    assert np.isclose(float(sharpsim.coverage_bar(pi, MU)), np.sum(MU / P.max(1)), rtol=1e-5)
    assert float(sharpsim.coverage_bar(pi, MU)) >= float(sharpsim.coverage(pi, MU))


def test_margin_is_the_largest_valid_gamma():
    pi = TabularPolicy.from_probs(P)
    # prompt 0: 0.4/0.3; prompt 1: all tied (no runner-up); prompt 2: 0.3/0.2
    expected = min(0.4 / 0.3, 0.3 / 0.2) - 1
    got = float(sharpsim.margin(pi, MU))
    assert np.isclose(got, expected, rtol=1e-5)
    # Assumption 4.2 holds at the returned margin and fails just above it.
    for g, ok in [(got * (1 - 1e-3), True), (got * (1 + 1e-3), False)]:
        holds = all(
            P[x].max() >= (1 + g) * P[x][y] for x in range(3) for y in range(5) if P[x][y] < P[x].max()
        )
        assert holds is ok
    # prompts outside supp(μ) do not count
    assert np.isclose(float(sharpsim.margin(pi, np.array([0.0, 0.0, 1.0]))), 0.5, rtol=1e-5)
    assert float(sharpsim.margin(pi, np.array([0.0, 1.0, 0.0]))) == np.inf


def test_concentrability_matches_formula_and_is_inf_off_support():
    rng = np.random.default_rng(0)
    Q = rng.dirichlet(np.ones(5), size=3)
    base, pi = TabularPolicy.from_probs(Q), TabularPolicy.from_probs(P)
    # π puts mass where π_base has none (Q > 0 everywhere here, so finite)
    expected = np.sum(MU[:, None] * np.where(P > 0, P**2 / Q, 0.0))
    assert np.isclose(float(sharpsim.concentrability(pi, base, MU)), expected, rtol=1e-5)
    expected_b = np.sum(MU[:, None] * np.where(P > 0, P * (P / Q) ** 0.7, 0.0))
    assert np.isclose(float(sharpsim.concentrability_beta(pi, base, MU, 0.7)), expected_b, rtol=1e-5)
    # π_base = P has zeros where Q has mass: infinite concentrability, never NaN
    assert float(sharpsim.concentrability(base, pi, MU)) == np.inf
    # ... but zero mass under π never yields NaN
    assert np.isfinite(float(sharpsim.concentrability(pi, pi, MU)))


def test_sharpness_error_and_is_sharpened():
    base = TabularPolicy.from_probs(P)
    hat = TabularPolicy.from_probs(
        np.array([[0.95, 0.05, 0, 0, 0], [0.1, 0.1, 0.1, 0.1, 0.6], [0.5, 0.45, 0.05, 0, 0]])
    )
    # masses on y*: 0.95, 0.4 (tied set {0,1,2,3}), 0.95 ({0,1})
    assert np.isclose(float(sharpsim.sharpness_error(hat, base, MU, delta=0.1)), 0.3)
    assert np.isclose(float(sharpsim.sharpness_error(hat, base, MU, delta=0.04)), 1.0)
    assert bool(sharpsim.is_sharpened(hat, base, MU, epsilon=0.31, delta=0.1))
    assert not bool(sharpsim.is_sharpened(hat, base, MU, epsilon=0.29, delta=0.1))


def test_pass_at_n():
    pi = TabularPolicy.from_probs(P)
    correct = np.zeros_like(P, bool)
    correct[:, 1] = True
    expected = np.sum(MU * (1 - (1 - P[:, 1]) ** 5))
    assert np.isclose(float(sharpsim.pass_at_n(pi, correct, MU, 5)), expected, rtol=1e-5)


def test_metrics_run_under_jit_and_vmap():
    pi = TabularPolicy.from_probs(P)
    f = jax.jit(lambda p: sharpsim.sharpness_error(p, pi, MU, 0.2))
    stacked = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), pi)
    assert np.allclose(jax.vmap(f)(stacked), float(sharpsim.sharpness_error(pi, pi, MU, 0.2)))
    assert np.isclose(float(jax.jit(sharpsim.coverage)(pi, MU)), float(sharpsim.coverage(pi, MU)))


@pytest.mark.parametrize("x64, tiny", [(False, 1e-30), (True, 1e-300)])
def test_tiny_and_zero_probabilities_never_give_nan(x64, tiny):
    with jax.enable_x64(x64):
        dt = np.float64 if x64 else np.float32
        T = np.array([[1 - 2 * tiny, tiny, tiny, 0.0], [tiny, 1 - tiny, 0.0, 0.0]], dtype=dt)
        pi = TabularPolicy.from_probs(T)
        mu = np.array([0.5, 0.5], dtype=dt)
        star = sharpsim.kl_regularized_optimum(pi, 0.3)
        values = {
            "coverage": sharpsim.coverage(pi, mu, p=3),
            "coverage_bar": sharpsim.coverage_bar(pi, mu),
            "margin": sharpsim.margin(pi, mu),
            "conc": sharpsim.concentrability(star, pi, mu),
            "conc_beta": sharpsim.concentrability_beta(pi, star, mu, 0.3),
            "sharp": sharpsim.sharpness_error(star, pi, mu, 0.1),
            "pass": sharpsim.pass_at_n(pi, T > 0.5, mu, 10),
            "bon": sharpsim.bon_policy(pi, 1000).probs,
        }
        for name, v in values.items():
            v = np.asarray(v)
            assert not np.any(np.isnan(v)), name
            assert np.all(np.isfinite(v)), name


def test_shape_and_range_errors_name_the_argument():
    base = TabularPolicy.from_probs(P)
    other = TabularPolicy.from_probs(np.full((3, 4), 0.25))
    with pytest.raises(ValueError, match="pi_hat has shape"):
        sharpsim.sharpness_error(other, base, MU, 0.1)
    with pytest.raises(ValueError, match="mu has 2 entries"):
        sharpsim.coverage(base, np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="mu: each row must sum to 1"):
        sharpsim.coverage(base, np.array([0.5, 0.3, 0.1]))
    with pytest.raises(ValueError, match="delta must lie in the open interval"):
        sharpsim.sharpness_error(base, base, MU, 1.0)
    with pytest.raises(ValueError, match="epsilon must lie in the open interval"):
        sharpsim.is_sharpened(base, base, MU, 0.0, 0.5)
    with pytest.raises(ValueError, match=r"gamma must lie in \[0, 1\)"):
        sharpsim.argmax_set(base, 1.0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        sharpsim.concentrability_beta(base, base, MU, -1.0)
    with pytest.raises(ValueError, match="N must be >= 1"):
        sharpsim.pass_at_n(base, P > 0.2, MU, 0)
    with pytest.raises(ValueError, match="correct has shape"):
        sharpsim.pass_at_n(base, np.ones((2, 2), bool), MU, 3)
    with pytest.raises(ValueError, match="pi: probs: each row must sum to 1"):
        sharpsim.coverage(np.array([[0.5, 0.6], [0.5, 0.5], [0.5, 0.5]]), MU)
