"""Exact finite-size laws of SFT-sharpening on the hard instance (sharpsim.finite_size) against brute force and
against Monte Carlo of the library's own algorithms. Expected values never come from the code under test."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sharpsim import finite_size as fs


def _brute_win(B, k, r):
    # enumerate every placement of r picks over B other labels; the tied group wins 1/(T+1) (random label order)
    tot = 0.0
    for assign in itertools.product(range(B), repeat=r):
        c = np.bincount(assign, minlength=B)
        if c.max() > k:
            continue
        tot += 1.0 / (1 + int((c == k).sum()))
    return tot / B**r


@pytest.mark.parametrize("B", [1, 2, 3, 5])
def test_win_table_matches_enumeration(B):
    # catches: a wrong multinomial coefficient, a wrong tie weight or a wrong capped-occupancy probability
    W = fs.plurality_win_table(B, 6)
    for k in range(1, 6):
        for r in range(0, 7 - k):
            assert W[k, r] == pytest.approx(_brute_win(B, k, r), abs=1e-12), (B, k, r)
    assert W[0, 0] == pytest.approx(1.0 / (B + 1)) and W[0, 3] == 0.0


def test_rare_prompt_success_matches_labelled_enumeration():
    # catches: a law that ignores the first-index tie rule or the uniform planted index I of Lemma H.2
    M, p = 4, 0.37
    for v in range(0, 5):
        exact = 0.0
        for I in range(M):
            for seq in itertools.product(range(M), repeat=v):
                prob = np.prod([p if y == I else (1 - p) / (M - 1) for y in seq]) / M
                counts = np.bincount(np.array(seq, int), minlength=M) if v else np.zeros(M, int)
                exact += prob * (int(np.argmax(counts)) == I)
        assert fs.rare_prompt_success(v, p, M - 1)[v] == pytest.approx(exact, abs=1e-12), v


def test_visits_success_matches_multinomial_enumeration():
    # catches: a wrong split of the n prompts over x_0 and the d rare prompts, or a wrong failure count
    n, Delta, d = 6, 0.4, 3
    s = np.array([0.1, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99])
    probs = [1 - Delta] + [Delta / d] * d
    for K in (0, 1):
        exact = 0.0
        for cats in itertools.product(range(d + 1), repeat=n):
            c = np.bincount(np.array(cats), minlength=d + 1)
            pr = np.prod([probs[j] for j in cats])
            # failures are independent given the visit counts: P[#fail <= K]
            fail_p = [1 - s[c[i]] for i in range(1, d + 1)]
            dist = np.array([1.0])
            for f in fail_p:
                dist = np.convolve(dist, [1 - f, f])
            exact += pr * dist[: K + 1].sum()
        got, trunc = fs.visits_success_probability(n, Delta, d, lambda V: s[: V + 1], K)
        assert got == pytest.approx(exact, abs=1e-12) and trunc < 1e-12


def test_stopping_rule_expected_draws_matches_simulation():
    # catches: an off-by-one in Eq. (10)'s stopping time (k ≥ μ/max π) or a strict/non-strict mix-up
    rng = np.random.default_rng(0)
    p = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
    mu = math.log(4.0)
    lp = np.log(p)
    T = 40_000
    draws = rng.choice(p.size, size=(T, 64), p=p)
    best = np.maximum.accumulate(lp[draws], axis=1)
    k = np.arange(1, 65)
    stop = np.argmax(np.log(k)[None, :] >= math.log(mu) - best, axis=1) + 1
    se = stop.std() / math.sqrt(T)
    assert abs(stop.mean() - fs.stopping_rule_expected_draws(p, mu)) < 4 * se  # false-failure rate ~6e-5


@pytest.mark.slow
def test_fixed_success_matches_library_sft_sweep():
    # catches: an exact law that differs from what sft_sharpening_sweep (best-of-N + exact MLE over the best-of-N
    # closure) actually does on the hard instance. 4000 trials: |z| < 4.5 per grid point (false failure ~1e-4).
    from sharpsim_experiments._hard_instance import DELTA, bon_closure_stack, fixed_sweep_trial, hard_class_arrays
    from sharpsim.algorithms import map_trials

    M, d, Delta, eps = 11, 2, 0.32, 0.02
    n_grid, N_grid = (3, 6, 12), (3, 5, 8)
    lp, valid, mu = hard_class_arrays(M, d, M, Delta)
    stack = bon_closure_stack(M, d, M, N_grid)
    keys = jax.random.split(jax.random.key(3), 4000)
    first, _ = map_trials(fixed_sweep_trial, keys, jnp.asarray(lp, jnp.float32), jnp.asarray(valid),
                          jnp.asarray(stack, jnp.float32), jnp.asarray(mu, jnp.float32), jnp.int32(M), jnp.float32(eps),
                          DELTA, n_grid, N_grid)
    first = np.asarray(first)
    for g, n in enumerate(n_grid):
        for h, N in enumerate(N_grid):
            mc = float(np.mean(first[:, g] <= h))
            ex = fs.hard_fixed_success_probability(n, N, M, Delta, d, eps)[0]
            se = math.sqrt(max(ex * (1 - ex), 1e-4) / len(keys))
            assert abs(mc - ex) < 4.5 * se, (n, N, mc, ex)


@pytest.mark.slow
def test_adaptive_success_and_queries_match_library_adaptive_sweep():
    # catches: a wrong pick law a = 1 − (1 − 2/M)^{K_q} or a wrong expected cost of Eq. (10) against
    # adaptive_sft_sharpening_sweep itself. 3000 trials, |z| < 4.5 (false failure ~1e-4 per point).
    from sharpsim_experiments._hard_instance import adaptive_closure_log_probs, adaptive_sweep_trial, hard_class_arrays
    from sharpsim.algorithms import map_trials

    M, d, Delta, eps, mu_stop = 11, 2, 0.32, 0.02, math.log(4.0)
    n_grid = (3, 6, 12)
    lp, valid, mu = hard_class_arrays(M, d, M, Delta)
    ada = adaptive_closure_log_probs(M, d, M, mu_stop)
    keys = jax.random.split(jax.random.key(4), 3000)
    err, q, _ = (np.asarray(a) for a in map_trials(
        adaptive_sweep_trial, keys, jnp.asarray(lp, jnp.float32), jnp.asarray(valid), jnp.asarray(ada, jnp.float32),
        jnp.asarray(mu, jnp.float32), jnp.int32(M), n_grid, mu_stop))
    for g, n in enumerate(n_grid):
        mc = float(np.mean(err[:, g] <= eps))
        ex = fs.hard_adaptive_success_probability(n, M, Delta, d, eps, mu_stop)[0]
        assert abs(mc - ex) < 4.5 * math.sqrt(max(ex * (1 - ex), 1e-4) / len(keys)), (n, mc, ex)
        em = fs.hard_adaptive_expected_queries(n, M, Delta, mu_stop)
        assert abs(q[:, g].mean() - em) < 4.5 * q[:, g].std() / math.sqrt(len(keys)), (n, q[:, g].mean(), em)


def test_sufficient_statistics_simulator_matches_exact_law():
    # catches: the fast simulator (finite_size.sample_rare_visits + simulate_fixed/adaptive_success_grid)
    # drifting from the exact law it is compared with. 3000 trials, |z| < 4.5.
    from sharpsim.finite_size import sample_rare_visits
    from sharpsim.finite_size import simulate_adaptive_success_grid as adaptive_success_grid
    from sharpsim.finite_size import simulate_fixed_success_grid as fixed_success_grid

    M, d, Delta, eps, mu_stop = 21, 2, 0.32, 0.02, math.log(4.0)
    keys = jax.random.split(jax.random.key(5), 3000)
    v = sample_rare_visits(keys, 24, M, Delta, d)
    n_grid, N_grid = (6, 12, 24), (8, 12, 20)
    S = fixed_success_grid(v, n_grid, N_grid, Delta, eps)
    A, Q = adaptive_success_grid(v, n_grid, Delta, eps, mu_stop)
    for g, n in enumerate(n_grid):
        for h, N in enumerate(N_grid):
            ex = fs.hard_fixed_success_probability(n, N, M, Delta, d, eps)[0]
            assert abs(S[g, h].mean() - ex) < 4.5 * math.sqrt(max(ex * (1 - ex), 1e-4) / len(keys))
        ex = fs.hard_adaptive_success_probability(n, M, Delta, d, eps, mu_stop)[0]
        assert abs(A[g].mean() - ex) < 4.5 * math.sqrt(max(ex * (1 - ex), 1e-4) / len(keys))
        em = fs.hard_adaptive_expected_queries(n, M, Delta, mu_stop)
        assert abs(Q[g].mean() - em) < 4.5 * Q[g].std() / math.sqrt(len(keys))


def test_simulator_is_device_count_invariant_by_construction():
    # catches: a draw that depends on how keys are laid out (the old sharded path changed rows with 4 devices):
    # the simulator reads each key's data, so a permutation of the trials permutes the draws and nothing else.
    from sharpsim.finite_size import sample_rare_visits

    keys = jax.random.split(jax.random.key(6), 8)
    a = sample_rare_visits(keys, 50, 11, 0.3, 2)
    b = sample_rare_visits(keys[::-1], 50, 11, 0.3, 2)
    for t in range(8):
        sa, sb = a.trial == t, b.trial == 7 - t
        np.testing.assert_array_equal(a.first_planted[sa], b.first_planted[sb])
        np.testing.assert_array_equal(a.other[sa], b.other[sb])
