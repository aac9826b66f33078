"""Iterated self-sharpening (sharpsim.iterated, issue 16 items 1–2): exact trajectories, sampled rounds
converging to them, the exact N = 1 collapse laws, and the exact one-shot mode probability.

Expected values come from numpy formulas or brute force written here, never from the code under test.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sharpsim import iterated as it
from sharpsim.classes import tabular_eq8_minimizer
from sharpsim.oracle import SampleEvaluateOracle
from sharpsim.policies import TabularPolicy

P = np.array([[0.4, 0.3, 0.2, 0.1], [0.05, 0.15, 0.3, 0.5]])  # well-separated masses, unique modes


def _bon_numpy(p, N):
    """Best-of-N law for distinct masses: (L + p)^N − L^N with L the mass strictly below (theory.md §6)."""
    out = np.zeros_like(p)
    for y in range(len(p)):
        L = p[p < p[y]].sum()
        out[y] = (L + p[y]) ** N - L**N
    return out


def test_exact_sft_rounds_are_best_of_n_power_k():
    # Catches: a loop that applies BoN to π_base every round (π_k = BoN_N(π_0)) instead of to π_k.
    traj = np.exp(np.asarray(it.exact_iterated_sft(P, 3, 2), np.float64))
    for k in range(4):
        want = np.stack([_bon_numpy(row, 2**k) for row in P])  # BoN_2 applied k times = BoN_{2^k}
        np.testing.assert_allclose(traj[k], want, atol=2e-6)


def test_exact_rlhf_rounds_are_powers():
    # Catches: exponent (1+1/β)·k instead of (1+1/β)^k.
    beta = 2.0
    traj = np.exp(np.asarray(it.exact_iterated_rlhf(P, 3, beta), np.float64))
    for k in range(4):
        w = P ** ((1 + 1 / beta) ** k)
        np.testing.assert_allclose(traj[k], w / w.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_exact_accumulated_is_the_average_of_the_rounds_laws():
    # Catches: accumulate's limit computed as replace's (π_k = BoN(π_{k-1})) or without the 1/k weights.
    traj = np.exp(np.asarray(it.exact_accumulated_sft(P[:1], 3, 2), np.float64))[:, 0]
    p, laws = P[0], []
    for k in range(1, 4):
        laws.append(_bon_numpy(p, 2))
        p = np.mean(laws, axis=0)
        np.testing.assert_allclose(traj[k], p, atol=2e-6)


def _weissman_tv(Y, n, fail):
    """TV radius of an empirical law of n draws: P(‖p̂ − p‖₁ ≥ ε) ≤ (2^Y − 2)e^{−nε²/2} (Weissman et al. 2003)."""
    return 0.5 * math.sqrt(2 * math.log((2**Y - 2) / fail) / n)


def test_sampled_sft_rounds_converge_to_the_exact_trajectory():
    # Catches: fitting on all N draws instead of the best-of-N pick (π_1 = π_0, off by ≥ 0.24 in TV), a
    # self-reward from π_base's samples only, or rounds that do not feed π_k to the next oracle.
    # Tolerance: TV(π̂_{k+1}, π_{k+1}) ≤ ε + N·TV(π̂_k, π_k) (the pick is Lipschitz with constant N in TV:
    # couple the N draws; orderings agree on these separated masses), ε from Weissman with a union over
    # prompts, rounds and trials at total false-failure rate 1e-6. So tol_k = ε·(1 + N + … + N^{k−1}).
    K, N, n, T = 3, 2, 8192, 4
    runs = jax.jit(jax.vmap(lambda k: it.iterated_sft(k, P, K=K, n=n, N=N)))(jax.random.split(jax.random.key(0), T))
    exact = np.exp(np.asarray(it.exact_iterated_sft(P, K, N), np.float64))
    eps = _weissman_tv(P.shape[1], n, 1e-6 / (P.shape[0] * K * T))
    got = np.exp(np.asarray(runs.log_probs, np.float64))
    for k in range(1, K + 1):
        tv = 0.5 * np.abs(got[:, k] - exact[k]).sum(-1)
        assert tv.max() <= eps * sum(N**j for j in range(k)), (k, tv.max())
    assert np.all(np.asarray(runs.num_queries) == P.shape[0] * n * N)  # X·n·N per round


def test_sampled_rlhf_rounds_equal_the_exact_powers_when_every_response_is_seen():
    # Catches: logits (1+1/β)·log π_base instead of log π_k (the reference must be the current policy).
    # With every response observed, Eq. 8's tabular minimiser is exactly π_k^{1+1/β}: equality up to float32
    # rounding. False failure: some response unseen in a round, ≤ X·K·Y·(1 − min π_k)^{2n} < 1e-30 here.
    K, beta, n = 3, 4.0, 4096
    for memory in it.MEMORIES:
        run = it.iterated_rlhf(jax.random.key(1), P, K=K, n=n, beta=beta, memory=memory)
        exact = np.exp(np.asarray(it.exact_iterated_rlhf(P, K, beta)))
        np.testing.assert_allclose(np.exp(np.asarray(run.log_probs)), exact, rtol=2e-4, atol=1e-6)
        want = [2 * 2 * n * (k if memory == "accumulate" else 1) for k in range(1, K + 1)]
        assert list(np.asarray(run.num_queries)) == want  # re-scored pairs count under accumulate


def test_one_rlhf_round_is_the_library_eq8_minimiser_on_the_same_draws():
    # Catches: a private Eq. 8 fit that disagrees with classes.tabular_eq8_minimizer (e.g. unseen responses
    # kept at positive mass under replace).
    n, beta = 3, 0.5
    run = it.iterated_rlhf(jax.random.key(2), P, K=1, n=n, beta=beta)
    prompts = jnp.repeat(jnp.arange(2, dtype=jnp.int32), n)
    pol = TabularPolicy.from_probs(jnp.asarray(P, jnp.float32))
    b = SampleEvaluateOracle(pol, jnp.array([0.5, 0.5])).respond(jax.random.split(jax.random.key(2), 1)[0],
                                                                 jnp.arange(2, dtype=jnp.int32), 2 * n)
    ys, lps = b.responses.reshape(2 * n, 2), b.log_probs.reshape(2 * n, 2)  # n pairs per prompt, in prompt order
    want = tabular_eq8_minimizer(2, 4, prompts, ys[:, 0], ys[:, 1], lps[:, 0], lps[:, 1], beta)
    np.testing.assert_allclose(np.asarray(run.log_probs[1]), np.asarray(want), rtol=1e-5)


def test_one_shot_rlhf_sweep_is_round_one_of_the_loop_and_the_exact_power_when_all_is_seen():
    # Catches: a sweep whose n-prefix or seen set differs from iterated_rlhf's design (round 1 of the loop is one
    # Eq. 8 round at β on the same draws), or an exponent applied to the wrong table. With every response seen
    # (n = 4096 pairs: an unseen response has probability ≤ X·Y·(1 − 0.05)^8192 < 1e-30) the sweep at exponent
    # (1 + 1/β)^k must equal the numpy power p^{(1+1/β)^k}: the exact target of k rounds, from ONE round.
    beta, key = 1.0, jax.random.key(5)
    for n in (1, 3):
        loop = it.iterated_rlhf(key, P, K=1, n=n, beta=beta)
        sweep = it.one_shot_rlhf_sweep(jax.random.split(key, 1)[0], P, (n,), (1 + 1 / beta,))
        np.testing.assert_allclose(np.exp(np.asarray(sweep[0, 0])), np.exp(np.asarray(loop.log_probs[1])), atol=1e-6)
    sweep = np.exp(np.asarray(it.one_shot_rlhf_sweep(key, P, (1, 4096), (2.0, 8.0)), np.float64))
    for h, e in enumerate((2.0, 8.0)):
        w = P**e
        np.testing.assert_allclose(sweep[1, h], w / w.sum(1, keepdims=True), rtol=2e-4, atol=1e-6)
    assert np.all(np.sum(sweep[0, 0] > 0, axis=1) <= 2)  # n = 1: one pair, at most two responses kept


def test_exact_rlhf_rounds_by_hand():
    # p = (0.5, 0.3, 0.2), β = 1: p^2 -> 0.25/0.38 = 0.658; p^4 -> 0.0625/0.0722 = 0.866; p^8 -> 0.9834.
    p = np.array([[0.5, 0.3, 0.2]])
    assert it.exact_rlhf_rounds(p, 1.0, 0.5) == 1
    assert it.exact_rlhf_rounds(p, 1.0, 0.2) == 2
    assert it.exact_rlhf_rounds(p, 1.0, 0.1) == 3
    assert it.exact_rlhf_rounds(np.vstack([p, [[0.2, 0.3, 0.5]]]), 1.0, 0.1) == 3  # every prompt must be sharp
    with pytest.raises(ValueError, match="rounds"):
        it.exact_rlhf_rounds(np.array([[0.5, 0.5 - 1e-7, 1e-7]]), 1.0, 0.1, max_rounds=4)


@pytest.mark.parametrize("memory", it.MEMORIES)
def test_plain_self_training_matches_the_exact_collapse_laws(memory):
    # Catches: accumulate implemented as replace (E[H_K] would follow (1 − 1/n)^K, 0.42 here, not 0.85 of
    # the accumulate law), or a biased resampler (E[π_K(y)] = π_0(y) is a martingale identity for N = 1).
    # Tolerance 4 standard errors of the trial mean: false-failure rate ≈ 6e-5 per comparison (CLT, 2000 trials).
    K, n, T = 12, 8, 2000
    p0 = P[:1]
    runs = jax.jit(jax.vmap(lambda k: it.iterated_sft(k, p0, K=K, n=n, N=1, memory=memory)))(
        jax.random.split(jax.random.key(3), T))
    stats = jax.vmap(lambda lp: it.trajectory_stats(lp, p0, jnp.ones(1)))(runs.log_probs)
    h = np.asarray(stats["heterozygosity"], np.float64)  # [T, K+1]
    want = it.expected_heterozygosity(1 - (P[0] ** 2).sum(), n, K, memory)
    h0 = 1 - (P[0] ** 2).sum()
    by_hand = h0 * ((1 - 1 / n) ** K if memory == "replace" else np.prod([1 - 1 / (n * j * j) for j in range(1, K + 1)]))
    assert want[-1] == pytest.approx(by_hand)
    se = h.std(0, ddof=1) / math.sqrt(T)
    assert np.all(np.abs(h.mean(0) - want) <= 4 * se + 1e-6), (h.mean(0), want)
    m = np.asarray(stats["mass_on_target"], np.float64)[:, -1]
    assert abs(m.mean() - P[0, 0]) <= 4 * m.std(ddof=1) / math.sqrt(T)
    lost = np.asarray(stats["support_lost"])
    if memory == "replace":  # a response driven to zero never comes back (absorbing)
        assert np.all(np.diff(lost, axis=1) >= 0) and lost[:, -1].mean() > 0.2
    else:  # every response seen once keeps positive mass: the lost set only shrinks after round 1
        assert np.all(np.diff(lost[:, 1:], axis=1) <= 0)


def test_mode_probability_matches_enumeration():
    # Catches: ties counted as the target's win, or a wrong conditional law of the other counts.
    for p, n in ((np.array([0.3, 0.28, 0.22, 0.2]), 9), (np.array([0.5, 0.3, 0.2]), 7), (np.array([0.2, 0.5, 0.3]), 6)):
        want = 0.0
        for c in itertools.product(range(n + 1), repeat=len(p)):
            if sum(c) != n:
                continue
            pr = math.factorial(n) * np.prod([p[i] ** c[i] / math.factorial(c[i]) for i in range(len(p))])
            if c[0] > max(c[1:]):
                want += pr
        assert it.mode_probability(p, n, 0) == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_trajectory_stats_by_hand():
    # Catches: support loss counted over responses π_base never had, or ties not counted as a wrong mode.
    base = np.array([[0.5, 0.3, 0.2, 0.0]])
    traj = jnp.log(jnp.array([[[0.5, 0.3, 0.2, 0.0]], [[0.5, 0.5, 0.0, 0.0]]]))
    s = it.trajectory_stats(traj, base, jnp.ones(1))
    np.testing.assert_allclose(np.asarray(s["support_lost"]), [0.0, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(s["mode_wrong"]), [0.0, 1.0])
    np.testing.assert_allclose(np.asarray(s["entropy"])[1], math.log(2), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(s["heterozygosity"]), [1 - 0.38, 0.5], rtol=1e-6)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="memory"):
        it.iterated_sft(jax.random.key(0), P, K=2, n=2, N=2, memory="keep")
    with pytest.raises(ValueError, match="K"):
        it.exact_iterated_sft(P, 0, 2)
    with pytest.raises(ValueError, match="beta"):
        it.iterated_rlhf(jax.random.key(0), P, K=2, n=2, beta=0.0)
