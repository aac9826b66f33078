"""Decoding: Viterbi == best-first == brute force; beam search; budgets; exact and Monte-Carlo argmax mass / C_cov."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sharpsim import decoding as D
from sharpsim.ar_instances import random_markov_policy
from sharpsim.policies import LinearSoftmaxPolicy, TransformerPolicy, index_to_sequences

X, V, H = 2, 3, 4


def _markov(seed, eos_id=None, scale=2.0):
    return random_markov_policy(jax.random.key(seed), num_prompts=X, vocab_size=V, horizon=H, scale=scale,
                                eos_id=eos_id)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("eos_id", [None, 1])
def test_viterbi_best_first_brute_force_agree(seed, eos_id):
    pol = _markov(seed, eos_id)
    tab = np.asarray(pol.to_tabular().log_probs, np.float64)
    for x in range(X):
        results = [D.exact_argmax(pol, x, method=m) for m in ("viterbi", "best_first", "brute_force")]
        # best-first enumerating the small tree (V^H = 81) in one call instead of searching
        results.append(D.exact_argmax(pol, x, method="best_first", enumerate_limit=D.ONE_CALL_ENUMERATE_LIMIT))
        assert [r.method for r in results[1:]] == ["best_first", "brute_force", "brute_force"]
        np.testing.assert_array_equal(results[3].sequence, results[2].sequence)  # the same first maximiser
        assert results[3].log_prob == results[2].log_prob
        for r in results:
            assert r.optimal and r.upper_bound == r.log_prob
            np.testing.assert_allclose(r.log_prob, tab[x].max(), rtol=1e-5, atol=1e-5)
            # The returned sequence attains the maximum (continuous random logits: no exact ties).
            idx = int(np.dot(r.sequence, V ** np.arange(H - 1, -1, -1)))
            np.testing.assert_allclose(tab[x, idx], tab[x].max(), rtol=1e-5, atol=1e-5)
        assert D.exact_argmax(pol, x).method == "viterbi"


@pytest.mark.parametrize("kind", ["linear", "transformer"])
def test_best_first_equals_brute_force_for_general_policies(kind):
    key = jax.random.key(7)
    if kind == "linear":
        feats = lambda x, y, h: jnp.concatenate([jax.nn.one_hot(y[h], V), jax.nn.one_hot(y[h] * (h > 0) + y[jnp.maximum(h - 1, 0)], 2 * V)])  # noqa: E731,E501
        pol = LinearSoftmaxPolicy.create(2 * jax.random.normal(key, (H, 3 * V)), feats, num_prompts=X, vocab_size=V)
    else:
        pol = TransformerPolicy.init(key, num_prompts=X, vocab_size=V, horizon=H, d_model=8, eos_id=2)
        pol = pol.with_params(jax.tree_util.tree_map(lambda a: a * 40.0 if a.ndim == 2 else a, pol.params))
    for x in range(X):
        bru = D.exact_argmax(pol, x, method="brute_force")
        auto = D.exact_argmax(pol, x)  # V^H = 81: brute force in one call, the same answer
        assert auto.method == "brute_force" and auto.log_prob == bru.log_prob and auto.nodes_expanded == V**H
        np.testing.assert_array_equal(auto.sequence, bru.sequence)
        for limit in (0, D.ONE_CALL_ENUMERATE_LIMIT):  # the search, and the one-call enumeration of small trees
            bf = D.exact_argmax(pol, x, method="best_first", batch_size=4, enumerate_limit=limit)
            assert bf.method == ("best_first" if limit == 0 else "brute_force")
            assert bf.optimal and bru.optimal
            np.testing.assert_allclose(bf.log_prob, bru.log_prob, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(float(pol.log_prob(x, jnp.asarray(bf.sequence))), bf.log_prob, atol=1e-5)


def test_best_first_budget_returns_flagged_best_effort():
    pol = _markov(3, scale=0.3)  # flat: the search needs many expansions
    exact = D.exact_argmax(pol, 0, method="brute_force")
    r = D.exact_argmax(pol, 0, method="best_first", max_nodes=3, batch_size=2)
    assert not r.optimal and r.nodes_expanded <= 3  # a budget below the tree's 40 prefixes: no enumeration
    assert r.sequence.shape == (H,)
    np.testing.assert_allclose(float(pol.log_prob(0, jnp.asarray(r.sequence))), r.log_prob, atol=1e-5)
    assert r.log_prob <= exact.log_prob + 1e-5 <= r.upper_bound + 2e-5


def test_greedy_and_beam_search():
    pol = _markov(5, eos_id=1)
    tab = np.asarray(pol.to_tabular().log_probs)
    for x in range(X):
        g, glp = D.greedy(pol, x)
        # Greedy by hand through the uncached next-token path.
        y = []
        for h in range(H):
            y.append(int(jnp.argmax(pol.next_log_probs(x, jnp.asarray(y, jnp.int32)))))
        np.testing.assert_array_equal(g, y)
        np.testing.assert_allclose(glp, pol.log_prob(x, g), atol=1e-5)
        b1, s1 = D.beam_search(pol, x, 1)
        np.testing.assert_array_equal(b1[0], g)
        # Width V^H keeps every sequence: the beams are the whole table, sorted.
        beams, scores = D.beam_search(pol, x, V**H)
        np.testing.assert_allclose(np.sort(np.asarray(scores))[::-1], np.sort(tab[x])[::-1], atol=1e-5)
        sc = np.asarray(scores)
        assert np.all(sc[:-1] >= sc[1:])  # sorted, best first (-inf for the zero-mass sequences)
        np.testing.assert_allclose(scores, pol.log_prob(x, beams), atol=1e-5)


def test_greedy_transformer_kv_cache_matches_uncached():
    pol = TransformerPolicy.init(jax.random.key(2), num_prompts=X, vocab_size=V, horizon=H, d_model=8)
    pol = pol.with_params(jax.tree_util.tree_map(lambda a: a * 40.0 if a.ndim == 2 else a, pol.params))
    g, glp = D.greedy(pol, 1)
    y = []
    for h in range(H):
        y.append(int(jnp.argmax(pol.next_log_probs(1, jnp.asarray(y, jnp.int32)))))
    np.testing.assert_array_equal(g, y)
    np.testing.assert_allclose(glp, pol.log_prob(1, g), atol=1e-5)
    gj, _ = jax.jit(D.greedy)(pol, 1)
    np.testing.assert_array_equal(g, gj)


@pytest.mark.parametrize("gamma", [0.0, 0.3, 0.8])
def test_argmax_mass_enumerate_equals_search_equals_table(gamma):
    pol = _markov(6, eos_id=1)
    tab = np.exp(np.asarray(pol.to_tabular().log_probs, np.float64))
    for x in range(X):
        p = tab[x]
        expected = p[p >= (1 - gamma) * p.max() * (1 - 1e-5)].sum()
        e = D.argmax_mass(pol, x, gamma, method="enumerate")
        s = D.argmax_mass(pol, x, gamma, method="search")
        assert e.exact and s.exact
        np.testing.assert_allclose([e.value, s.value], expected, rtol=1e-5)


def test_argmax_mass_ties_and_search_budget_bounds():
    # Uniform policy: every sequence ties, the argmax set is all of V^H.
    pol = random_markov_policy(jax.random.key(0), num_prompts=1, vocab_size=V, horizon=H, scale=0.0)
    np.testing.assert_allclose(D.argmax_mass(pol, 0, method="enumerate").value, 1.0, rtol=1e-5)
    np.testing.assert_allclose(D.argmax_mass(pol, 0, method="search").value, 1.0, rtol=1e-5)
    # A budget too small to enumerate the γ-set of a flat policy: hard bounds around the truth, not exact.
    flat = random_markov_policy(jax.random.key(0), num_prompts=1, vocab_size=V, horizon=H, scale=0.3)
    truth = D.argmax_mass(flat, 0, 0.5, method="enumerate").value
    b = D.argmax_mass(flat, 0, 0.5, method="search", max_nodes=30)
    assert not b.exact and b.value == b.lower and 0 < b.lower <= truth <= b.upper + 1e-6 and b.upper < 1


def test_argmax_mass_monte_carlo_interval_covers_exact():
    """99.9% Clopper–Pearson intervals from 4096 draws cover the exact mass (false-failure rate ≤ 1e-3 each)."""
    pol = _markov(8, eos_id=1, scale=1.0)
    for x in range(X):
        exact = D.argmax_mass(pol, x, 0.5, method="enumerate").value
        mc = D.argmax_mass(pol, x, 0.5, method="monte_carlo", key=jax.random.key(x), num_samples=4096,
                           confidence=0.999)
        assert not mc.exact and mc.argmax_proven
        assert mc.lower <= exact <= mc.upper
        assert mc.upper - mc.lower < 0.06  # ≈ 2·3.3·sqrt(p(1−p)/4096) ≤ 0.052
    with pytest.raises(ValueError, match="key"):
        D.argmax_mass(pol, 0, method="monte_carlo")


def test_coverage_coefficient_exact_and_monte_carlo():
    pol = _markov(9, scale=1.5)
    tab = np.exp(np.asarray(pol.to_tabular().log_probs, np.float64))
    mu = np.array([0.25, 0.75])
    expected = float(np.sum(mu / tab.max(axis=1)))  # unique argmax: C_cov = E_μ[1/max_y π(y|x)]
    c = D.coverage_coefficient(pol, mu)
    assert c.exact
    np.testing.assert_allclose([c.value, c.lower, c.upper], expected, rtol=1e-5)
    # Simultaneous 99.9% interval from Monte-Carlo masses covers the truth (false-failure rate ≤ 1e-3).
    m = D.coverage_coefficient(pol, mu, key=jax.random.key(1), method="monte_carlo", num_samples=4096,
                               confidence=0.999)
    assert not m.exact and m.lower <= expected <= m.upper


def test_clopper_pearson_edges():
    assert D.clopper_pearson(0, 10)[0] == 0.0 and D.clopper_pearson(10, 10)[1] == 1.0
    lo, hi = D.clopper_pearson(50, 100, 0.95)
    assert lo < 0.5 < hi and hi - lo < 0.21


def test_decoding_errors():
    pol = _markov(0)
    with pytest.raises(ValueError, match="method"):
        D.exact_argmax(pol, 0, method="magic")
    with pytest.raises(ValueError, match="enumerate_limit"):
        D.exact_argmax(pol, 0, method="best_first", enumerate_limit=-1)
    with pytest.raises(ValueError, match="MarkovPolicy"):
        D.viterbi(TransformerPolicy.init(jax.random.key(0), num_prompts=1, vocab_size=2, horizon=2, d_model=4), 0)
    with pytest.raises(ValueError, match="AutoregressivePolicy"):
        D.greedy(pol.to_tabular(), 0)
    with pytest.raises(ValueError, match="width"):
        D.beam_search(pol, 0, 0)
    with pytest.raises(ValueError, match="temperature"):
        D.temperature_sample(pol, 0, 4, key=jax.random.key(0), temperature=0.0)
    with pytest.raises(ValueError, match="gamma"):
        D.argmax_mass(pol, 0, 1.0)
    with pytest.raises(ValueError, match="prompt"):
        D.exact_argmax(pol, X)
    seqs = index_to_sequences(jnp.arange(3), V, H)
    assert seqs.shape == (3, H)


def test_autoregressive_metrics_moved_with_their_old_names_kept():
    # Catches: the split of decoding.py breaking old imports, or the old name pointing at another function
    # than the new one (ar_metrics.ar_coverage is the autoregressive C_cov; metrics.coverage the tabular one).
    from sharpsim import ar_metrics
    from sharpsim.decoding import CoverageEstimate, MassEstimate, argmax_mass, coverage_coefficient

    assert argmax_mass is ar_metrics.argmax_mass and MassEstimate is ar_metrics.MassEstimate
    assert coverage_coefficient is ar_metrics.ar_coverage and CoverageEstimate is ar_metrics.CoverageEstimate
    with pytest.raises(AttributeError):
        D.no_such_name  # noqa: B018
