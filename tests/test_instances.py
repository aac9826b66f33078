"""Instances report the constants they were built to have (computed independently here)."""

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sharpsim
from sharpsim import instances


@given(
    st.floats(2.2, 6.0), st.floats(0.05, 2.0), st.integers(1, 4), st.integers(0, 2**31 - 1)
)
def test_planted_mode_sets_coverage_and_margin_exactly(C, gamma, X, seed):
    # C ∈ [2.2, 6], γ ≤ 2 and Y = 40 keep the targets feasible (the feasible range is in the error message).
    Y = 40
    inst = instances.planted_mode(jax.random.key(seed), X, Y, coverage=C, margin=gamma)
    P = np.asarray(inst.pi_base.probs, dtype=np.float64)
    np.testing.assert_allclose(P.sum(1), 1, atol=1e-5)
    assert np.allclose(P.max(1), 1 / C, rtol=1e-5)
    runner = np.sort(P, axis=1)[:, -2]
    assert np.allclose(P.max(1) / runner - 1, gamma, rtol=1e-4)
    c = inst.constants()
    assert np.isclose(c["C_cov"], C, rtol=1e-4) and np.isclose(c["margin"], gamma, rtol=1e-3)


def test_planted_mode_rejects_infeasible_targets():
    with pytest.raises(ValueError, match="no policy over 5 responses has coverage 50"):
        instances.planted_mode(jax.random.key(0), 2, 5, coverage=50.0, margin=0.1)
    with pytest.raises(ValueError, match="coverage must be >= 1"):
        instances.planted_mode(jax.random.key(0), 2, 5, coverage=0.5, margin=0.1)


@pytest.mark.parametrize("d, M, Delta, p", [(3, 5, 0.2, 1), (6, 16, 0.05, 2), (2, 40, 0.5, 3)])
def test_hard_instance_reproduces_its_stated_constants(d, M, Delta, p):
    inst = instances.hard_instance(jax.random.key(d), d=d, M=M, Delta=Delta, p=p)
    P = np.asarray(inst.pi_base.probs, dtype=np.float64)
    assert P.shape == (d + 1, M + 1)
    # P_i(y_i) = 2/M and P_i(y_j) = (M−2)/(M(M−1)) at γ = 1/2 (theory.md §5)
    for i in range(1, d + 1):
        j = int(inst.true_index[i]) + 1
        assert np.isclose(P[i, j], 2 / M, rtol=1e-5)
        others = np.delete(P[i, 1:], j - 1)
        assert np.allclose(others, (M - 2) / (M * (M - 1)), rtol=1e-5) and P[i, 0] == 0
    assert P[0, 0] == 1.0
    # y*_γ is the planted singleton (Lemma H.1)
    mask = np.asarray(sharpsim.argmax_set(inst.pi_base, 0.5))
    assert mask.sum(1).tolist() == [1] * (d + 1)
    assert mask[0, 0] and all(mask[i, int(inst.true_index[i]) + 1] for i in range(1, d + 1))
    formula = ((1 - Delta) + (M * 0.5) ** p * Delta) ** (1 / p)
    assert np.isclose(float(sharpsim.coverage(inst.pi_base, inst.mu, gamma=0.5, p=p)), formula, rtol=1e-4)
    assert instances.hard_instance_coverage(M, Delta, 0.5, p) == formula  # the library's one home of the formula
    assert np.isclose(inst.log_class_size, d * np.log(M))
    # every class member is a valid conditional, and π_base is the member at true_index
    cls = np.exp(np.asarray(inst.class_log_probs, dtype=np.float64))
    np.testing.assert_allclose(cls.sum(-1), 1, atol=1e-5)
    np.testing.assert_allclose(cls[np.arange(d + 1), np.asarray(inst.true_index)], P, atol=1e-6)


def test_hard_instance_for_uses_the_theorem_parameters():
    inst = instances.hard_instance_for(jax.random.key(0), epsilon=0.01, C=2.0, d=4)
    c = inst.constants()
    assert c["Delta"] == pytest.approx(0.16) and c["M"] == int(np.ceil(1 + 2.0 / 0.01))
    with pytest.raises(ValueError, match="must lie in \\(0, 1\\)"):
        instances.hard_instance_for(jax.random.key(0), epsilon=0.1, C=2.0, d=4)


def test_example_j1_packing_coverage_and_margin():
    inst = instances.example_j1(jax.random.key(0), d=10, num_responses=300)
    Yv = np.asarray(inst.features, dtype=np.float64)
    assert np.allclose(np.linalg.norm(Yv, axis=1), 1, atol=1e-5)
    dist = np.linalg.norm(Yv[:, None] - Yv[None], axis=-1)[np.triu_indices(300, 1)]
    assert dist.min() >= 0.25 - 1e-5
    c = inst.constants()
    # π_base(y*) ≤ e² π_base(y) ⇒ C_cov ≥ |Y|/e², and ⟨y, y*⟩ ≤ 1 − 1/32 ⇒ margin ≥ e^{1/32} − 1
    assert c["C_cov"] >= 300 / np.e**2
    assert c["margin"] >= np.expm1(1 / 32) * (1 - 1e-4)
    with pytest.raises(ValueError, match="could only pack"):
        instances.example_j1(jax.random.key(0), d=2, num_responses=200, max_tries=5000)
