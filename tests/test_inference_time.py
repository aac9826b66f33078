"""Exact laws and samplers of sharpsim.inference_time (issue 15, item 3) against brute force and Monte Carlo.

Brute force: every N-tuple of draws (Y^N of them, with their probabilities) and the selection rule written
out independently in NumPy. Monte Carlo: n independent sampler calls; the empirical law must be within
TV ≤ tv_concentration_bound(law, n, δ = 1e-6) of the exact law (false-failure rate ≤ 1e-6 per check).
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sharpsim import inference_time as it
from sharpsim.complexity import tv_concentration_bound
from sharpsim.exact import bon_log_probs

Y = 4
RNG = np.random.default_rng(7)
P = RNG.dirichlet(np.ones(Y))
LP = np.log(P)
R = RNG.normal(size=Y)


def _brute(N, rule, p=P):
    out = np.zeros(len(p))
    for tup in itertools.product(range(len(p)), repeat=N):
        out += np.prod(p[list(tup)]) * rule(np.array(tup))
    return out


def _bon_rule(r):
    def rule(t):
        o = np.zeros(len(r))
        top = np.flatnonzero(r[t] == r[t].max())
        np.add.at(o, t[top], 1.0 / len(top))  # a uniformly random draw among the tied maxima
        return o
    return rule


def _soft_rule(t, tau=0.7):
    w = np.exp(R[t] / tau)
    o = np.zeros(Y)
    np.add.at(o, t, w / w.sum())
    return o


def _itp_rule(t, beta=0.5):
    # Sequential rejection written from the algorithm's statement: λ̂ by bisection (not the closed form).
    lo, hi = R.min() - beta - 1, R.max()
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.mean(np.maximum(R[t] - mid, 0)) > beta else (lo, mid)
    M = 1 + (R.max() - R.min()) / beta
    a = np.maximum(R[t] - lo, 0) / beta / M
    o, surv = np.zeros(Y), 1.0
    for i in range(len(t)):
        o[t[i]] += surv * a[i]
        surv *= 1 - a[i]
    o[t[-1]] += surv
    return o


def _bom_rule(alpha):
    def rule(t):
        c = np.bincount(t, minlength=Y)
        cand = np.flatnonzero(c >= max(1, math.ceil(alpha * len(t) - 1e-12)))
        o = np.zeros(Y)
        o[cand[np.argmax(R[cand])] if len(cand) else t[0]] = 1.0
        return o
    return rule


@pytest.mark.parametrize("N", [1, 2, 3, 5])
def test_laws_equal_brute_force_over_n_tuples(N):
    # Catches: a wrong group mass (U^N − L^N), a soft-BoN integral off by the N or N − 1 power, a wrong λ̂ or
    # acceptance order in the pessimism law, a wrong threshold or fallback in Best-of-Majority.
    np.testing.assert_allclose(it.bon_law(LP, R, N), _brute(N, _bon_rule(R)), atol=1e-12)
    np.testing.assert_allclose(it.soft_bon_law(LP, R, N, 0.7), _brute(N, _soft_rule), atol=1e-10)
    np.testing.assert_allclose(it.pessimism_law(LP, R, N, 0.5), _brute(N, _itp_rule), atol=1e-10)
    for alpha in (0.0, 0.4, 0.7):  # 0.7 at N = 5: t = 4, the fallback to the first draw is frequent
        np.testing.assert_allclose(it.bom_law(LP, R, N, alpha), _brute(N, _bom_rule(alpha)), atol=1e-12)


def test_bon_law_with_reward_ties_splits_in_proportion_to_pi():
    # Catches: ties split uniformly over responses (right only when tied responses have equal π).
    r = np.array([1.0, 1.0, 0.0, -1.0])
    for N in (1, 2, 4):
        np.testing.assert_allclose(it.bon_law(LP, r, N), _brute(N, _bon_rule(r)), atol=1e-12)


def test_bon_law_is_the_self_reward_law_at_log_pi():
    # Catches: a disagreement with sharpsim.exact.bon_log_probs, the paper's π^BoN_N (theory.md §6).
    for N in (1, 3, 17):
        np.testing.assert_allclose(it.bon_law(LP, LP, N), np.exp(np.asarray(bon_log_probs(jnp.asarray(LP), N))),
                                   atol=2e-6)


def test_best_of_poisson_is_the_poisson_mixture_of_best_of_n():
    # Catches: the closed form U e^{−μ(1−U)} with a wrong exponent or the 1 + K offset lost.
    mu = 2.3
    mix = sum(math.exp(-mu) * mu**k / math.factorial(k) * it.bon_law(LP, R, k + 1) for k in range(80))
    np.testing.assert_allclose(it.bop_law(LP, R, mu), mix, atol=1e-13)


def test_chi2_optimum_is_normalised_and_optimal():
    # Catches: a λ on the wrong segment (law not normalised) or a law that is not the χ²-regularised maximiser.
    beta = 0.5
    law, lam = it.chi2_optimum(LP, R, beta)
    assert abs(law.sum() - 1) < 1e-12 and abs(P @ np.maximum(R - lam, 0) - beta) < 1e-12

    def objective(q):
        return q @ R - beta / 2 * (np.sum(q**2 / P) - 1)

    rng = np.random.default_rng(0)
    assert all(objective(rng.dirichlet(np.ones(Y))) <= objective(law) + 1e-12 for _ in range(2000))
    for eps in (1e-3, -1e-3):  # every feasible direction on the support decreases the objective
        for i, j in itertools.permutations(np.flatnonzero(law > 1e-3), 2):
            q = law.copy()
            q[i] += eps
            q[j] -= eps
            assert objective(q) <= objective(law) + 1e-15


def test_pessimism_law_tends_to_the_chi2_optimum():
    # Catches: an envelope or λ̂ that makes the finite-N sampler target something other than π*_β.
    law, _ = it.chi2_optimum(LP, R, 0.5)
    tv = [0.5 * np.abs(it.pessimism_law(LP, R, N, 0.5) - law).sum() for N in (4, 16, 60)]
    assert tv[0] > tv[1] > tv[2] and tv[2] < 0.015, tv  # measured 0.354, 0.053, 0.0101


def test_soft_bon_limits():
    # Catches: soft BoN not tending to the tilted law π e^{r/τ}/Z (N → ∞) or to best-of-N (τ → 0).
    tilted = P * np.exp(R / 0.7)
    tilted /= tilted.sum()
    assert 0.5 * np.abs(it.soft_bon_law(LP, R, 400, 0.7) - tilted).sum() < 0.01
    np.testing.assert_allclose(it.soft_bon_law(LP, R, 5, 1e-3), it.bon_law(LP, R, 5), atol=1e-6)


def test_best_of_majority_at_zero_threshold_is_best_of_n():
    # Catches: a frequency filter that removes responses drawn once when α·N ≤ 1.
    np.testing.assert_allclose(it.bom_law(LP, R, 9, 0.0), it.bon_law(LP, R, 9), atol=1e-12)


def test_samplers_match_their_exact_laws():
    # Catches: a sampler whose law differs from its exact law (tie-breaks, masks, λ̂, acceptance, Poisson
    # offset); the wrong-law line shows the same tolerance rejects a law 0.05 away in TV.
    n = 20_000
    keys = jax.random.split(jax.random.key(1), n)
    lpj, rj = jnp.asarray(LP, jnp.float32), jnp.asarray(R, jnp.float32)
    cases = [
        (lambda k: it.bon_sample(lpj, rj, 6, key=k), it.bon_law(LP, R, 6)),
        (lambda k: it.soft_bon_sample(lpj, rj, 6, 0.5, key=k), it.soft_bon_law(LP, R, 6, 0.5)),
        (lambda k: it.bop_sample(lpj, rj, 4.0, key=k), it.bop_law(LP, R, 4.0)),
        (lambda k: it.bom_sample(lpj, rj, 6, 0.4, key=k), it.bom_law(LP, R, 6, 0.4)),
        (lambda k: it.pessimism_sample(lpj, rj, 6, 0.5, key=k), it.pessimism_law(LP, R, 6, 0.5)),
    ]
    for f, law in cases:
        emp = np.bincount(np.asarray(jax.jit(jax.vmap(f))(keys)), minlength=Y) / n
        tol = tv_concentration_bound(law, n, 1e-6)
        assert 0.5 * np.abs(emp - law).sum() <= tol
        wrong = np.abs(law + 0.1 * (np.eye(Y)[0] - np.eye(Y)[np.argmax(law)]))
        if np.argmax(law) != 0:
            assert 0.5 * np.abs(emp - wrong / wrong.sum()).sum() > tol


def test_argument_errors():
    with pytest.raises(ValueError, match="same length"):
        it.bon_law(LP, R[:3], 2)
    with pytest.raises(ValueError, match="N"):
        it.bon_law(LP, R, 0)
    with pytest.raises(ValueError, match="temperature"):
        it.soft_bon_law(LP, R, 2, 0.0)
    with pytest.raises(ValueError, match="distinct rewards"):
        it.bom_law(LP, np.array([1.0, 1.0, 0.0, 2.0]), 3, 0.5)
    with pytest.raises(ValueError, match="MAX_COUNT_VECTORS"):
        it.pessimism_law(np.zeros(30), np.arange(30.0), 40, 0.5)
    with pytest.raises(ValueError, match="key"):
        it.bon_sample(jnp.asarray(LP), jnp.asarray(R), 2, key=0)
