"""The paper's autoregressive results as tests: Proposition 3.1 (greedy), E.1 (MAX-CUT), E.2 (non-closure)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from sharpsim import ar_instances as I
from sharpsim import decoding as D

X, V, H = 2, 3, 4  # fixed shapes: one compile for every hypothesis example


# -------------------------------------------------------------------------------------------- Prop. 3.1
@settings(max_examples=15)
@given(seed=st.integers(0, 2**31 - 1), mass=st.floats(0.51, 0.99), scale=st.sampled_from([0.3, 1.0, 4.0]))
def test_prop_3_1_greedy_returns_argmax_when_mass_above_half(seed, mass, scale):
    pol, y_star = I.planted_argmax_markov(jax.random.key(seed), num_prompts=X, vocab_size=V, horizon=H,
                                          target_mass=mass, logit_scale=scale)
    for x in range(X):
        # Hypothesis of the proposition, checked independently by Viterbi: unique argmax with mass > 1/2.
        y_vit, lp = D.viterbi(pol, x)
        np.testing.assert_array_equal(y_vit, y_star[x])
        np.testing.assert_allclose(float(jnp.exp(lp)), mass, rtol=1e-4)
        g, _ = D.greedy(pol, x)
        np.testing.assert_array_equal(g, y_star[x])


@settings(max_examples=15)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.5, 6.0))
def test_prop_3_1_on_unplanted_random_policies(seed, scale):
    """Any policy (not built to satisfy it) whose unique argmax has mass > 1/2 is decoded by greedy."""
    pol = I.random_markov_policy(jax.random.key(seed), num_prompts=X, vocab_size=V, horizon=H, scale=scale)
    P = np.exp(np.asarray(pol.to_tabular().log_probs, np.float64))
    for x in range(X):
        top = np.sort(P[x])[::-1]
        if top[0] > 0.5 + 1e-5:  # then the argmax is automatically unique
            g, _ = D.greedy(pol, x)
            assert int(np.dot(np.asarray(g), V ** np.arange(H - 1, -1, -1))) == int(np.argmax(P[x]))


@pytest.mark.parametrize("p", [0.26, 0.35, 0.45, 0.5])
@pytest.mark.parametrize("vh", [(3, 3), (2, 4)])
def test_prop_3_1_tightness_counterexample(p, vh):
    Vc, Hc = vh
    if p <= 1 / (Vc + 1):
        with pytest.raises(ValueError, match="target_mass"):
            I.greedy_counterexample(p, vocab_size=Vc, horizon=Hc)
        return
    pol, y_star = I.greedy_counterexample(p, vocab_size=Vc, horizon=Hc)
    P = np.exp(np.asarray(pol.to_tabular().log_probs[0], np.float64))
    i_star = int(np.dot(y_star, Vc ** np.arange(Hc - 1, -1, -1)))
    np.testing.assert_allclose(P[i_star], p, rtol=1e-5)
    assert P[i_star] > np.delete(P, i_star).max() + 1e-6  # unique argmax, mass p ≤ 1/2
    g, _ = D.greedy(pol, 0)
    assert not np.array_equal(np.asarray(g), y_star)  # greedy fails


def test_greedy_counterexample_rejects_bad_arguments():
    with pytest.raises(ValueError, match="horizon"):
        I.greedy_counterexample(0.4, vocab_size=2, horizon=1)
    with pytest.raises(ValueError, match="target_mass"):
        I.greedy_counterexample(0.6)


# -------------------------------------------------------------------------------------------- Prop. E.1
@pytest.mark.parametrize("n,seed", [(3, 0), (4, 1), (5, 2), (6, 3), (6, 4)])
def test_prop_e1_argmax_encodes_a_maximum_cut(n, seed):
    A = I.random_graph(seed, n, 0.6)
    E = int(A.sum()) // 2
    assert E % 2 == 1
    pol = I.maxcut_instance(A, coupling_scale=1.0 / E)
    assert pol.horizon == n + 2 and pol.feature_dim == (n + 2) + (n + 2) ** 2 + (n + 2) ** 3
    assert float(jnp.max(jnp.linalg.norm(pol.theta, axis=-1))) <= n + 2  # B(H) = H
    r = D.exact_argmax(pol, 0)
    assert r.optimal
    assert r.sequence[-2:].tolist() == [1, 1]  # y_{H−1} = y_H = +1
    best, _ = I.brute_force_maxcut(A)
    assert I.cut_value(A, I.sequence_to_assignment(r.sequence)) == best
    np.testing.assert_allclose(
        r.log_prob, I.maxcut_log_prob_formula(A, I.sequence_to_assignment(r.sequence), coupling_scale=1.0 / E),
        atol=1e-5)


def test_prop_e1_closed_form_over_all_sequences():
    """2^{H−2} π(y) = σ(2s)σ(2B) on the y_{H−1} = y_H = +1 branch and ≤ 1/2 elsewhere (paper's θ, c = 1)."""
    A = I.random_graph(5, 4, 0.5)
    pol = I.maxcut_instance(A)
    Hn = pol.horizon
    P = np.exp(np.asarray(pol.to_tabular().log_probs[0], np.float64)) * 2 ** (Hn - 2)
    seqs = np.asarray(pol.all_sequences())
    main = (seqs[:, -2] == 1) & (seqs[:, -1] == 1)
    expect = [np.exp(I.maxcut_log_prob_formula(A, 2 * s[:-2] - 1)) * 2 ** (Hn - 2) for s in seqs[main]]
    np.testing.assert_allclose(P[main], expect, rtol=1e-4)
    assert P[~main].max() <= 0.5 + 1e-6


def test_prop_e1_paper_theta_in_float64():
    """With the paper's θ (c = 1) the gaps are ≈ e^{−2s}: resolvable in float64 on sparse graphs."""
    with jax.enable_x64(True):
        for seed in range(2):
            A = I.random_graph(seed, 5, 0.3)
            pol = I.maxcut_instance(A)
            assert pol.theta.dtype == jnp.float64
            r = D.exact_argmax(pol, 0)
            assert I.cut_value(A, I.sequence_to_assignment(r.sequence)) == I.brute_force_maxcut(A)[0]


@pytest.mark.slow
@pytest.mark.parametrize("n,seed", [(8, 0), (10, 1), (10, 2)])
def test_prop_e1_larger_graphs(n, seed):
    A = I.random_graph(seed, n, 0.5)
    pol = I.maxcut_instance(A, coupling_scale=2.0 / A.sum())
    r = D.exact_argmax(pol, 0)
    assert I.cut_value(A, I.sequence_to_assignment(r.sequence)) == I.brute_force_maxcut(A)[0]


def test_maxcut_input_checks():
    with pytest.raises(ValueError, match="square"):
        I.maxcut_instance(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="symmetric"):
        I.maxcut_instance(np.array([[0, 1], [0, 0]]))


# -------------------------------------------------------------------------------------------- Prop. E.2
N = 20


def test_prop_e2_argmax_is_2_1_and_greedy_misses_it():
    pol = I.nonclosure_instance(N)
    P = np.exp(np.asarray(pol.to_tabular().log_probs[0], np.float64)).reshape(N, N)
    B = np.log(N)
    expected = 1 / (2 + (N - 2) * np.exp(-B)) / (1 + (N - 1) * np.exp(-B))
    np.testing.assert_allclose(P[1, 0], expected, rtol=1e-5)  # paper (2, 1) = ids (1, 0)
    assert P[1, 0] > np.delete(P.ravel(), N * 1 + 0).max() * 2  # the unique argmax, by a wide margin
    np.testing.assert_allclose(P[0].sum(), P[1].sum(), rtol=1e-6)  # π(1) = π(2): φ_1(1) = φ_1(2)
    assert P[1, 0] < 0.5
    r = D.exact_argmax(pol, 0)
    assert r.sequence.tolist() == [1, 0]
    g, _ = D.greedy(pol, 0)
    assert g.tolist() != [1, 0]  # greedy ties at the first token and takes paper token 1


@pytest.mark.parametrize("bound", [0.5, 2.0, 5.0, 20.0, 100.0])
def test_prop_e2_no_member_of_the_class_is_sharpened(bound):
    best, theta = I.nonclosure_best_in_class(N, bound)
    sup = I.nonclosure_class_sup(N, bound)
    assert sup <= 0.5
    assert float(jnp.max(jnp.linalg.norm(theta, axis=-1))) <= bound * (1 + 1e-5)
    # Never above 1/2 (float32 rounding of exp(log p) allowed), and the optimiser reaches the closed form.
    assert best <= sup * (1 + 1e-5) + 1e-6 and best <= 0.5 + 1e-6
    assert best >= sup - 1e-3


def test_prop_e2_low_temperature_sampling_gets_the_argmax_half_the_time():
    """T → 0 sampling of π_base picks (2, 1) with probability → 1/2: 2000 draws, two-sided binomial test at 1e-3."""
    pol = I.nonclosure_instance(N, norm_bound=3 * np.log(N))
    ys, _ = D.temperature_sample(pol, 0, 2000, key=jax.random.key(0), temperature=0.05)
    k = int(np.sum(np.all(np.asarray(ys) == [1, 0], axis=1)))
    assert binom.ppf(5e-4, 2000, 0.5) <= k <= binom.ppf(1 - 5e-4, 2000, 0.5)
