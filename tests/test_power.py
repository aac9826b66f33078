"""Exact power policies π^α and the approximate power samplers (issue 15, items 1–2).

Exact references: hand-derived fractions for the Karan & Du (2025) toy, and brute-force enumeration in NumPy
(product of the Markov table's conditionals over all V^H sequences, then normalise p^α) for everything else.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sharpsim
from sharpsim import (
    MarkovPolicy,
    TabularPolicy,
    TransformerPolicy,
    kl_regularized_optimum,
    power_mh_sample,
    power_policy,
    power_smc_sample,
)
from sharpsim.complexity import tv_concentration_bound
from sharpsim.decoding import beam_search, greedy
from sharpsim.policies import sequences_to_index

A, B = 0, 1


# ------------------------------------------------------------------------------------------ helpers
def brute_force_markov(table: np.ndarray, x: int = 0) -> np.ndarray:
    """π(y|x) for all V^H sequences (row-major) as a product of the conditionals P[x, h, prev, v]."""
    _, H, _, V = table.shape
    out = np.zeros(V**H)
    for i, y in enumerate(itertools.product(range(V), repeat=H)):
        prev, p = V, 1.0
        for h, v in enumerate(y):
            p *= table[x, h, prev, v]
            prev = v
        out[i] = p
    return out


def normalised_power(p: np.ndarray, alpha: float) -> np.ndarray:
    q = np.asarray(p, np.float64) ** alpha
    return q / q.sum(axis=-1, keepdims=True)


def toy_markov() -> MarkovPolicy:
    """p(aa, ab, ba, bb) = (0, 4/9, 5/18, 5/18) as a Markov table (V = 2, H = 2; unused rows uniform)."""
    P = np.full((1, 2, 3, 2), 0.5)
    P[0, 0, 2] = [4 / 9, 5 / 9]  # first token (prev = start)
    P[0, 1, A] = [0.0, 1.0]  # after a: always b
    P[0, 1, B] = [0.5, 0.5]  # after b: either
    return MarkovPolicy.from_probs(jnp.asarray(P))


# ------------------------------------------------------------------------------------------ the toy
def test_toy_low_temperature_prefers_b_but_power_prefers_ab():
    # Catches: a power policy that tempers each token (ignores the future mass Z_{h+1}) — it would put
    # 625/881 on first token b, like low-temperature sampling.
    pi, alpha = toy_markov(), 4.0
    # Low temperature T = 1/α: first token ∝ (4/9)^4 : (5/9)^4 = 256 : 625.
    lp0 = np.asarray(pi.next_log_probs(0, jnp.zeros((0,), jnp.int32)), np.float64)
    temp_first = np.exp(alpha * lp0) / np.exp(alpha * lp0).sum()
    np.testing.assert_allclose(temp_first, [256 / 881, 625 / 881], rtol=1e-5)
    assert temp_first[B] > temp_first[A]
    # Its sequence law: ab 256/881, ba = bb = 625/1762 each (the second token after b stays 1/2 : 1/2).
    # π^4: ab ∝ (4/9)^4 = 4096/104976, ba = bb ∝ (5/18)^4 = 625/104976 → ab = 4096/5346 = 2048/2673.
    want = np.array([0.0, 2048 / 2673, 625 / 5346, 625 / 5346])
    pw = power_policy(pi, alpha)
    assert isinstance(pw, MarkovPolicy)
    np.testing.assert_allclose(np.asarray(pw.to_tabular().probs[0]), want, atol=1e-6)
    first = np.exp(np.asarray(pw.next_log_probs(0, jnp.zeros((0,), jnp.int32)), np.float64))
    np.testing.assert_allclose(first, [2048 / 2673, 625 / 2673], rtol=1e-5)  # Z_1(a) = 1, Z_1(b) = 1/8
    assert first[A] > first[B]
    # The tabular path agrees, and greedy decoding goes the low-temperature way while beam search (width 2)
    # finds ab, the mode of π and of π^α.
    tab = power_policy(TabularPolicy.from_probs(jnp.array([[0.0, 4 / 9, 5 / 18, 5 / 18]])), alpha)
    np.testing.assert_allclose(np.asarray(tab.probs[0]), want, atol=1e-6)
    assert int(greedy(pi, 0)[0][0]) == B
    assert np.asarray(beam_search(pi, 0, 2)[0][0]).tolist() == [A, B]


# ------------------------------------------------------------------------------------------ exact laws vs brute force
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.5, 7.0])
@pytest.mark.parametrize("eos_id", [None, 1])
def test_markov_power_matches_brute_force(alpha, eos_id):
    # Catches: a wrong DP (missing Z_{h+1}, off-by-one position, normalising over the wrong axis), an EOS
    # state that is not forced before powering.
    key = jax.random.key(11)
    pi = MarkovPolicy.from_logits(1.3 * jax.random.normal(key, (2, 4, 4, 3)), eos_id=eos_id)
    table = np.exp(np.asarray(pi.effective_log_probs(), np.float64))
    pw = power_policy(pi, alpha)
    assert isinstance(pw, MarkovPolicy) and pw.eos_id == eos_id
    got = np.asarray(pw.to_tabular().probs, np.float64)
    for x in range(2):
        np.testing.assert_allclose(got[x], normalised_power(brute_force_markov(table, x), alpha), atol=2e-6)


def test_transformer_power_is_an_autoregressive_policy_with_the_power_law():
    # Catches: a prefix tree with wrong offsets or prefix indexing (children of the wrong node).
    tr = TransformerPolicy.init(jax.random.key(0), num_prompts=2, vocab_size=3, horizon=3, d_model=16)
    base = np.asarray(tr.to_tabular().probs, np.float64)
    pw = power_policy(tr, 3.0)
    assert isinstance(pw, sharpsim.SequenceTablePolicy)
    np.testing.assert_allclose(np.asarray(pw.to_tabular().probs), normalised_power(base, 3.0), atol=1e-6)
    # its samples and log-probs are those of an autoregressive policy
    ys, lps = pw.sample_and_log_prob(jax.random.key(1), 1, 8)
    np.testing.assert_allclose(np.asarray(lps), np.asarray(pw.log_prob(1, ys)), atol=1e-5)


def test_power_policy_refusals_name_the_argument():
    pi = toy_markov()
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="alpha"):
            power_policy(pi, bad)
    with pytest.raises(ValueError, match="alpha=1e\\+39 is too large"):  # old: a NaN table, silently
        power_policy(MarkovPolicy.from_logits(jax.random.normal(jax.random.key(0), (1, 2, 3, 2))), 1e39)
    tr = TransformerPolicy.init(jax.random.key(0), num_prompts=1, vocab_size=4, horizon=3, d_model=8)
    with pytest.raises(ValueError, match="max_size"):
        power_policy(tr, 2.0, max_size=16)
    with pytest.raises(ValueError, match="alpha"):
        power_mh_sample(jax.random.key(0), pi, 0, 0.0, 3)
    with pytest.raises(ValueError, match="num_particles"):
        power_smc_sample(jax.random.key(0), pi, 0, 2.0, 0)


def test_kl_regularized_optimum_is_the_power_at_one_plus_one_over_beta():
    # Catches: the two homes drifting apart (e.g. α = 1/β instead of 1 + 1/β). p = (1/2, 1/3, 1/6), β = 1
    # → α = 2: (9, 4, 1)/14.
    pi = TabularPolicy.from_probs(jnp.array([[1 / 2, 1 / 3, 1 / 6]]))
    np.testing.assert_allclose(np.asarray(kl_regularized_optimum(pi, 1.0).probs[0]), [9 / 14, 4 / 14, 1 / 14],
                               rtol=1e-5)


# ------------------------------------------------------------------------------------------ approximate samplers
# One V = 3, H = 4 Markov policy at α = 2: per-token temperature 1/2 is 0.2 away from π^α in TV here.
N_RUNS = 20_000
DELTA = 1e-6  # false-failure rate of the concentration part of each TV tolerance
BIAS = 0.02  # allowed sampler bias at the stated compute (measured TV: MH 0.009, SMC 0.012; tolerance 0.050)
ALPHA, H, V = 2.0, 4, 3


@pytest.fixture(scope="module")
def sampler_case():
    pi = MarkovPolicy.from_logits(jax.random.normal(jax.random.key(3), (1, H, V + 1, V)))
    table = np.exp(np.asarray(pi.log_probs, np.float64))
    exact = normalised_power(brute_force_markov(table), ALPHA)
    return pi, exact


def tv_tolerance(exact: np.ndarray, n: int) -> float:
    """The concentration bound of complexity.tv_concentration_bound at this file's false-failure rate δ."""
    return tv_concentration_bound(exact, n, DELTA)


def empirical_tv(samples, exact) -> float:
    idx = np.asarray(sequences_to_index(samples, V))
    return 0.5 * float(np.abs(np.bincount(idx, minlength=V**H) / len(idx) - exact).sum())


@pytest.mark.parametrize("correct", [True, False])
def test_mh_law_within_tv_of_exact_power(sampler_case, correct):
    # 20,000 independent chains of 20 MH steps (final states are i.i.d.), ≈ 54 model calls per chain.
    # Catches: a wrong acceptance ratio — dropping the proposal correction q(y_t:)/q(y'_t:) (correct=False)
    # leaves a chain whose law is 0.27 from π^α in TV, far outside the ~0.05 tolerance.
    pi, exact = sampler_case
    steps = 20
    out = jax.vmap(lambda k: power_mh_sample(k, pi, 0, ALPHA, steps, _proposal_correction=correct))(
        jax.random.split(jax.random.key(1), N_RUNS))
    tv, tol = empirical_tv(out.samples, exact), tv_tolerance(exact, N_RUNS) + BIAS
    if correct:
        assert tv <= tol, (tv, tol)
        calls = np.asarray(out.model_calls)
        assert calls.min() >= H + steps and calls.max() <= H + steps * H  # each step costs H − t ∈ [1, H]
        # E = H + steps·(H+1)/2 = 54; per-chain sd √(steps·(H²−1)/12) = 5, so the mean's sd is 0.035.
        assert abs(calls.mean() - (H + steps * (H + 1) / 2)) < 0.25
    else:
        assert tv > tol, (tv, tol)


def test_smc_law_within_tv_of_exact_power(sampler_case):
    # 20,000 independent SMC runs of 32 particles (N·H = 128 model calls each); particle 0 of each run.
    # Catches: wrong weights (e.g. π^α instead of π^α/q, or none) — without the weights the particles follow
    # per-token temperature 1/α, which the same tolerance rejects (asserted below).
    pi, exact = sampler_case
    out = jax.vmap(lambda k: power_smc_sample(k, pi, 0, ALPHA, 32))(jax.random.split(jax.random.key(2), N_RUNS))
    assert np.all(np.asarray(out.model_calls) == 32 * H)
    tol = tv_tolerance(exact, N_RUNS) + BIAS
    assert empirical_tv(out.samples[:, 0], exact) <= tol
    # E[Ẑ] = Σ_y π(y)^α: the mean of 20,000 runs within 6 standard errors
    z = np.exp(np.asarray(out.stat, np.float64))
    target = float(np.sum(brute_force_markov(np.exp(np.asarray(pi.log_probs, np.float64))) ** ALPHA))
    assert abs(z.mean() - target) < 6 * z.std() / math.sqrt(N_RUNS) + 1e-6
    temp, _ = pi.sample_and_log_prob(jax.random.key(4), 0, N_RUNS, temperature=1 / ALPHA)
    assert empirical_tv(temp, exact) > tol  # the test can tell temperature sampling from π^α


@pytest.mark.slow
def test_samplers_run_on_a_transformer():
    # Smoke + law check on a tiny transformer (KV cache in the MH rollout and resampled in SMC).
    tr = TransformerPolicy.init(jax.random.key(5), num_prompts=1, vocab_size=2, horizon=3, d_model=8)
    exact = normalised_power(np.asarray(tr.to_tabular().probs[0], np.float64), 3.0)
    n = 4000
    keys = jax.random.split(jax.random.key(6), n)
    mh = jax.vmap(lambda k: power_mh_sample(k, tr, 0, 3.0, 10))(keys)
    smc = jax.vmap(lambda k: power_smc_sample(k, tr, 0, 3.0, 16))(keys)
    tol = 0.5 * float(np.sum(np.sqrt(exact * (1 - exact) / n))) + math.sqrt(math.log(1 / DELTA) / (2 * n)) + BIAS
    for samples in (mh.samples, smc.samples[:, 0]):
        idx = np.asarray(sequences_to_index(samples, 2))
        assert 0.5 * np.abs(np.bincount(idx, minlength=8) / n - exact).sum() <= tol
