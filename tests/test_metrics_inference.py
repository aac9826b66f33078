"""Inference-time metrics of issue 15 item 4 (sharpsim.metrics): coverage profile, max@k, GV-gap.

References are brute force written independently (explicit loops over prompts, responses and k-tuples);
Monte Carlo comparisons state their tolerance.
"""

import itertools
import math

import jax.numpy as jnp
import numpy as np
import pytest

from sharpsim import inference_time as it
from sharpsim.metrics import (coverage, coverage_profile, coverage_profile_from_samples, generation_verification_gap,
                              max_at_k, max_at_k_estimate, pass_at_n)

RNG = np.random.default_rng(3)
X, Y = 3, 5
PI = RNG.dirichlet(np.ones(Y), size=X)
PI_STAR = RNG.dirichlet(np.ones(Y) * 0.5, size=X)
MU = np.array([0.5, 0.3, 0.2])
R = RNG.uniform(size=(X, Y))


def test_coverage_profile_equals_brute_force():
    # Catches: the ratio inverted (π/π* instead of π*/π), ">" for "≥", or μ / π*-weights dropped.
    Ns = np.array([1.0, 1.5, 2.0, 3.7, 10.0])
    got = np.asarray(coverage_profile(jnp.asarray(PI_STAR), jnp.asarray(PI), jnp.asarray(MU), Ns))
    want = [sum(MU[x] * PI_STAR[x, y] for x in range(X) for y in range(Y) if PI_STAR[x, y] / PI[x, y] >= n)
            for n in Ns]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_coverage_profile_of_the_argmax_policy_sums_to_floor_of_coverage():
    # Catches: a profile inconsistent with C_cov (Eq. 6): Σ_N P_cov[N] = E_μ[⌊1/π(y*)⌋] ∈ (C_cov − 1, C_cov].
    star = np.eye(Y)[np.argmax(PI, axis=1)]
    prof = np.asarray(coverage_profile(jnp.asarray(star), jnp.asarray(PI), jnp.asarray(MU), np.arange(1, 200.0)))
    c = float(coverage(jnp.asarray(PI), jnp.asarray(MU)))
    assert abs(prof.sum() - sum(MU[x] * math.floor(1 / PI[x].max()) for x in range(X))) < 1e-5
    assert c - 1 < prof.sum() <= c + 1e-5


def test_coverage_profile_from_samples_matches_exact():
    # Catches: a sample estimate biased away from the exact profile; tolerance: Hoeffding at δ = 1e-6 per N.
    n = 20_000
    x = RNG.choice(X, size=n, p=MU)
    y = np.array([RNG.choice(Y, p=PI_STAR[i]) for i in x])
    Ns = [1.0, 2.0, 4.0]
    est = coverage_profile_from_samples(np.log(PI_STAR[x, y]) - np.log(PI[x, y]), Ns)
    exact = np.asarray(coverage_profile(jnp.asarray(PI_STAR), jnp.asarray(PI), jnp.asarray(MU), Ns))
    assert np.all(np.abs(est - exact) <= math.sqrt(math.log(2 / 1e-6) / (2 * n)))


def test_max_at_k_exact_equals_brute_force_and_pass_at_k():
    # Catches: a wrong order-statistic weight F^k − F_prev^k; at 0/1 rewards max@k must be pass@k.
    for k in (1, 2, 3):
        want = sum(MU[x] * sum(np.prod(PI[x, list(t)]) * R[x, list(t)].max()
                               for t in itertools.product(range(Y), repeat=k)) for x in range(X))
        assert abs(float(max_at_k(jnp.asarray(PI), jnp.asarray(R), jnp.asarray(MU), k)) - want) < 1e-5
    correct = R > 0.5
    for k in (1, 4):
        assert abs(float(max_at_k(jnp.asarray(PI), jnp.asarray(correct, jnp.float32), jnp.asarray(MU), k))
                   - float(pass_at_n(jnp.asarray(PI), jnp.asarray(correct), jnp.asarray(MU), k))) < 1e-5


def test_max_at_k_estimate_is_unbiased_exactly():
    # Catches: a biased estimator (e.g. the plug-in max of the first k, or weights C(i, k) for C(i−1, k−1)):
    # its expectation over ALL n-tuples of a tabular law must equal the exact max@k.
    p, r = PI[0], R[0]
    n = 4
    for k in (1, 2, 4):
        expect = sum(np.prod(p[list(t)]) * max_at_k_estimate(r[list(t)], k)
                     for t in itertools.product(range(Y), repeat=n))
        exact = float(max_at_k(jnp.asarray(p[None]), jnp.asarray(r[None]), jnp.asarray([1.0]), k))
        assert abs(expect - exact) < 1e-5


def test_max_at_k_estimate_at_binary_rewards_is_the_unbiased_pass_at_k():
    # Catches: a disagreement with Chen et al. (2021)'s 1 − C(n−c, k)/C(n, k).
    rewards = np.array([0, 1, 0, 0, 1, 0, 0.0])
    for k in range(1, 8):
        assert abs(max_at_k_estimate(rewards, k) - (1 - math.comb(5, k) / math.comb(7, k))) < 1e-12
    with pytest.raises(ValueError, match="exceeds"):
        max_at_k_estimate(rewards, 8)


def test_generation_verification_gap():
    # Catches: a gap computed with the wrong law (must be best-of-N under the verifier, exact) or the wrong base.
    V = RNG.normal(size=(X, Y))
    for N in (1, 3, 8):
        want = sum(MU[x] * (it.bon_law(np.log(PI[x]), V[x], N) @ R[x] - PI[x] @ R[x]) for x in range(X))
        got = float(generation_verification_gap(jnp.asarray(PI), jnp.asarray(R), jnp.asarray(V), jnp.asarray(MU), N))
        assert abs(got - want) < 1e-5
    # Self-reward and argmax correctness: gap_N = E_μ[1 − (1 − p*)^N − p*] (Proposition C.1's identity).
    correct = (PI == PI.max(axis=1, keepdims=True)).astype(np.float32)
    pstar = PI.max(axis=1)
    got = float(generation_verification_gap(jnp.asarray(PI), jnp.asarray(correct), jnp.log(jnp.asarray(PI)),
                                            jnp.asarray(MU), 5))
    assert abs(got - MU @ (1 - (1 - pstar) ** 5 - pstar)) < 1e-5
    assert float(generation_verification_gap(jnp.asarray(PI), jnp.asarray(R), jnp.asarray(V), jnp.asarray(MU), 1)) == \
        pytest.approx(0.0, abs=1e-6)
