"""Closed forms against brute force and Monte Carlo: the best-of-N law, Proposition C.1, π^{1+1/β}, Lemma 4.1."""

import itertools

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import optimize

import sharpsim
from sharpsim import TabularPolicy, bon_policy, bon_success_probability, kl_regularized_optimum


def brute_force_bon(p, N):
    """Law of the best of N draws by enumerating all Y^N tuples; ties broken uniformly over tied draws."""
    Y = len(p)
    law = np.zeros(Y)
    for tup in itertools.product(range(Y), repeat=N):
        w = np.prod(p[list(tup)])
        if w == 0:
            continue
        vals = p[list(tup)]
        winners = [y for y, v in zip(tup, vals) if v == vals.max()]
        for y in winners:
            law[y] += w / len(winners)
    return law


@pytest.mark.parametrize(
    "p",
    [
        np.array([0.4, 0.25, 0.2, 0.1, 0.05]),  # no ties
        np.array([0.3, 0.3, 0.1, 0.1, 0.1, 0.1]),  # tied mode and tied tail
        np.array([0.5, 0.25, 0.25, 0.0]),  # tie + zero-probability response
    ],
)
@pytest.mark.parametrize("N", [1, 2, 4])
def test_bon_law_equals_brute_force(p, N):
    law = np.asarray(bon_policy(TabularPolicy.from_probs(p[None]), N).probs[0])
    np.testing.assert_allclose(law, brute_force_bon(p, N), atol=2e-6)


@pytest.mark.parametrize("p", [np.array([0.4, 0.25, 0.2, 0.1, 0.05]), np.array([0.3, 0.3, 0.1, 0.1, 0.1, 0.1])])
def test_bon_law_matches_monte_carlo(p):
    # best_of_n through the sampler; per-cell 5-sigma binomial tolerance (false-failure rate < 1e-5 in all).
    N, trials = 6, 100_000
    pi = TabularPolicy.from_probs(p[None])
    keys = jax.random.split(jax.random.key(7), trials)
    picks = np.asarray(jax.jit(jax.vmap(lambda k: sharpsim.best_of_n(k, pi, 0, N).response))(keys))
    freq = np.bincount(picks, minlength=len(p)) / trials
    law = np.asarray(bon_policy(pi, N).probs[0])
    tol = 5 * np.sqrt(law * (1 - law) / trials) + 1e-9
    assert np.all(np.abs(freq - law) <= tol), (freq, law)


def test_bon_law_is_accurate_in_float32_for_large_N_and_tiny_probs():
    with jax.enable_x64(True):
        p = np.array([0.5 - 1e-6, 0.25, 0.25 - 1e-6, 2e-6 - 1e-30, 1e-30])
        ref = np.asarray(bon_policy(TabularPolicy.from_probs(p[None]), 4096).probs[0])
    got = np.asarray(bon_policy(TabularPolicy.from_probs(p[None].astype(np.float32)), 4096).probs[0])
    assert np.all(np.isfinite(got)) and abs(got.sum() - 1) < 1e-5
    np.testing.assert_allclose(got, ref, atol=1e-5)


# Fixed length (zeros allowed) and N from a small set, so eager JAX compiles each shape once, not per example.
prob_rows = hnp.arrays(np.float64, 10, elements=st.floats(0.0, 1.0)).filter(lambda a: a.sum() > 1e-3)


@given(prob_rows, st.sampled_from([1, 2, 3, 7, 16, 64]), st.floats(0.0, 0.9), st.floats(1e-4, 0.5))
def test_proposition_c1(row, N, gamma, rho):
    """Proposition C.1: P[BoN ∈ y*_γ] = 1 − (1 − p)^N ≥ 1 − ρ whenever N ≥ log(1/ρ)/p."""
    with jax.enable_x64(True):
        pi = TabularPolicy.from_probs((row / row.sum())[None])
        mask = np.asarray(sharpsim.argmax_set(pi, gamma))[0]
        p = float(np.asarray(pi.probs)[0][mask].sum())
        # mass of the exact best-of-N law on y*_γ: an independent code path from the (1 − p)^N identity
        bon_mass = float(np.asarray(bon_policy(pi, N).probs)[0][mask].sum())
        identity = 1 - (1 - p) ** N
        assert abs(bon_mass - identity) < 1e-9
        assert abs(float(bon_success_probability(pi, N, gamma)[0]) - identity) < 1e-9
        if N >= np.log(1 / rho) / p:
            assert bon_mass >= 1 - rho - 1e-12


def kl_objective(q, p, beta):
    """E_q[log p] − β KL(q ‖ p) for one row, with 0·log 0 = 0."""
    s = q > 0
    return np.sum(q[s] * np.log(p[s])) - beta * np.sum(q[s] * (np.log(q[s]) - np.log(p[s])))


@given(hnp.arrays(np.float64, 6, elements=st.floats(0.01, 1.0)), st.floats(0.05, 5.0), st.integers(0, 2**31 - 1))
def test_kl_optimum_beats_perturbations(row, beta, seed):
    with jax.enable_x64(True):
        p = row / row.sum()
        q_star = np.asarray(kl_regularized_optimum(TabularPolicy.from_probs(p[None]), beta).probs[0])
        best = kl_objective(q_star, p, beta)
        rng = np.random.default_rng(seed)
        for _ in range(20):
            q = np.exp(np.log(q_star) + 0.3 * rng.normal(size=6))
            q /= q.sum()
            assert kl_objective(q, p, beta) <= best + 1e-12


def test_kl_optimum_matches_numerical_optimiser():
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.ones(7))
    for beta in [0.1, 0.5, 2.0]:
        res = optimize.minimize(
            lambda z: -kl_objective(np.exp(z - np.logaddexp.reduce(z)), p, beta), np.zeros(7), method="BFGS",
            options=dict(gtol=1e-10),
        )
        q_num = np.exp(res.x - np.logaddexp.reduce(res.x))
        with jax.enable_x64(True):
            q_star = np.asarray(kl_regularized_optimum(TabularPolicy.from_probs(p[None]), beta).probs[0])
        # The closed form is at least as good as the optimiser, and the two agree (BFGS stops early where
        # the objective is flat, hence the looser tolerance on the probabilities than on the objective).
        assert kl_objective(q_star, p, beta) >= kl_objective(q_num, p, beta) - 1e-10
        assert kl_objective(q_star, p, beta) - kl_objective(q_num, p, beta) < 1e-6
        np.testing.assert_allclose(q_star, q_num, atol=1e-3)


# Fixed shapes (3 prompts, 7 responses) for the same reason; values span three orders of magnitude.
tables = st.tuples(
    hnp.arrays(np.float64, (3, 7), elements=st.floats(1e-3, 1.0)),
    hnp.arrays(np.float64, 3, elements=st.floats(0.05, 1.0)),
)


@given(tables, st.floats(0.02, 10.0))
def test_lemma_4_1(table_mu, beta):
    """Lemma 4.1: 𝒞_{π*_β} ≤ C_cov and 𝒞_{π_base/π*_β;β} ≤ |Y|."""
    table, mu = table_mu
    with jax.enable_x64(True):
        pi = TabularPolicy.from_probs(table / table.sum(1, keepdims=True))
        mu = jnp.asarray(mu / mu.sum())
        star = kl_regularized_optimum(pi, beta)
        c_cov = float(sharpsim.coverage(pi, mu))
        assert float(sharpsim.concentrability(star, pi, mu)) <= c_cov * (1 + 1e-9)
        assert float(sharpsim.concentrability_beta(pi, star, mu, beta)) <= pi.num_responses * (1 + 1e-9)


def test_lemma_4_1_first_bound_is_attained_in_the_limit():
    # Sanity check that the property test can fail: as β → 0, 𝒞_{π*_β} → C_cov from below (unique argmax).
    pi = TabularPolicy.from_probs(np.array([[0.5, 0.3, 0.2]]))
    mu = jnp.ones(1)
    c = [float(sharpsim.concentrability(kl_regularized_optimum(pi, b), pi, mu)) for b in [1.0, 0.1, 0.01]]
    assert c[0] < c[1] < c[2] <= 2.0 and c[2] > 1.99


def test_bad_arguments():
    pi = TabularPolicy.from_probs(np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="beta must be > 0"):
        kl_regularized_optimum(pi, 0.0)
    with pytest.raises(ValueError, match="N must be >= 1"):
        bon_policy(pi, 0)


def test_bon_law_cpu_sort_path_equals_the_xla_path_with_ties_zeros_and_batches():
    """The CPU path (NumPy packed-key sort through a host callback, tie groups by running max/min over flattened
    rows) and the XLA path used on GPU/TPU give the same order, inverse, and tie bounds. Catches a tie group
    leaking across rows in the flattened scan, a wrong half of the packed key, or an inverse that is not one;
    the law at every row of a batch equals brute force (ties, zeros, several rows, a large batch that takes the
    threaded path)."""
    from sharpsim import exact

    rng = np.random.default_rng(3)
    tied = rng.integers(0, 4, size=(300, 1000)).astype(np.float32)  # many ties and zeros, 3e5 elements: threaded
    tied[:, 0] += 1.0
    cont = rng.dirichlet(np.full(50, 0.5), size=7).astype(np.float32)  # no ties: the fast path
    for P in (tied, cont, tied.astype(np.float64)):
        host = exact._host_order(P)
        xla = exact._xla_order(jnp.asarray(P))
        for h, x in zip(host, xla):
            np.testing.assert_array_equal(h, np.asarray(x))
        order, rank = host[0], host[1]
        identity = np.broadcast_to(np.arange(P.shape[1]), P.shape)
        np.testing.assert_array_equal(np.take_along_axis(order, rank, -1), identity)
    rows = np.array([[0.3, 0.3, 0.1, 0.1, 0.1, 0.1], [0.5, 0.25, 0.25, 0.0, 0.0, 0.0],
                     [0.4, 0.25, 0.2, 0.1, 0.05, 0.0]])
    law = np.asarray(bon_policy(TabularPolicy.from_probs(rows), 3).probs)
    for r, got in zip(rows, law):
        np.testing.assert_allclose(got, brute_force_bon(r, 3), atol=2e-6)


def test_bon_expectations_grid_is_the_expectation_under_the_bon_law():
    # Catches: values read where π = 0 (−inf log-probs would give NaN), the N axis misaligned, the law of the
    # wrong row. Reference: bon_log_probs per prompt and N, summed by hand.
    from sharpsim.exact import bon_expectations_grid

    lp = jnp.log(jnp.array([[0.5, 0.3, 0.2, 0.0], [0.1, 0.1, 0.4, 0.4]]))
    correct = jnp.array([[True, False, True, True], [False, True, True, False]])
    Ns = (1, 3, 7)
    acc, loglik = bon_expectations_grid(lp, Ns, correct, lp)
    for x in range(2):
        for g, N in enumerate(Ns):
            law = np.exp(np.asarray(sharpsim.exact.bon_log_probs(lp[x], N)))
            ok = np.isfinite(np.asarray(lp[x]))
            np.testing.assert_allclose(acc[x, g], np.sum(law * np.asarray(correct[x])), rtol=1e-6)
            np.testing.assert_allclose(loglik[x, g], np.sum(law[ok] * np.asarray(lp[x])[ok]), rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(loglik)))
