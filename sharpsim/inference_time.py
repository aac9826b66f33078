"""Inference-time alignment beyond best-of-N, with exact laws on tabular policies (issue 15, item 3).

One prompt at a time: a base row ``log_probs [Y]`` (π_ref, e.g. one row of a :class:`~sharpsim.TabularPolicy`)
and a proxy reward ``reward [Y]`` (r̂, e.g. ``log π_base`` — the paper's self-reward of Eq. 2 — or a noisy
reward model). Each method draws i.i.d. responses from π_ref and keeps one:

* **best-of-N** under r̂ (ties split in proportion to π_ref inside a tie group) — the paper's π^BoN_N
  (theory.md §6) when r̂ = log π;
* **soft best-of-N** (Verdun et al. 2025, "Soft Best-of-n Sampling for Model Alignment", arXiv:2505.03156):
  return draw i with probability softmax(r̂(y_i)/τ); as N → ∞ its law tends to the tilted law
  π_ref·exp(r̂/τ)/Z, the KL-regularised optimum of Eq. (3) at β = τ;
* **Best-of-Poisson** (Khalaf, Verdun, …, Calmon 2025, "Inference-Time Reward Hacking in Large Language
  Models", arXiv:2506.19248): best-of-n with n = 1 + Poisson(μ);
* **Best-of-Majority** at k = 1 (Di, Ji, Li, Zhao, Gu 2025, arXiv:2510.03199): keep the responses whose
  frequency among the N draws is ≥ α, return the one with the largest r̂;
* **InferenceTimePessimism** (Huang, Block, Liu, Jiang, Krishnamurthy, Foster 2025, "Is Best-of-N the Best of
  Them?", arXiv:2503.21878): rejection sampling towards the χ²-regularised optimum
  π*_β(y) = π_ref(y)·max(0, r̂(y) − λ)/β, λ normalising (:func:`chi2_optimum`).

Exact laws (``*_law``) are float64 NumPy reference computations (closed forms, one-dimensional quadrature,
or a dynamic programme over counts); samplers (``*_sample``) are unbatched JAX functions with the key
keyword-only (``vmap`` over keys outside). Tests check every law against brute force over N-tuples and every
sampler against its law (``tests/test_inference_time.py``).

**The finite-N pessimism sampler used here** (our reading of the paper's Algorithm, stated so it can be
checked): draw y_1..y_N ~ π_ref; solve (1/N)Σ_i max(0, r̂(y_i) − λ̂) = β for λ̂ (the empirical
normalisation); for i = 1..N accept y_i with probability ŵ_i/M, ŵ_i = max(0, r̂(y_i) − λ̂)/β; return the first
accepted draw, or y_N if none is. The envelope M defaults to 1 + (max r̂ − min r̂)/β over the support, a
bound on π*_β/π_ref (λ ≥ min r̂ − β), so ŵ_i/M ≤ 1. As N → ∞ the law tends to π*_β (a test checks it).
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.integrate
import scipy.special
from jaxtyping import Array, Float, Int

from sharpsim._validation import check_key, check_positive, check_positive_int, is_concrete

__all__ = ["bon_law", "bon_law_grid", "soft_bon_law", "soft_bon_law_grid", "bop_law", "bom_law", "chi2_optimum", "pessimism_law",
           "pessimism_envelope", "bon_sample", "soft_bon_sample", "bop_sample", "bom_sample", "pessimism_sample",
           "MAX_COUNT_VECTORS"]

#: Largest number of count vectors :func:`pessimism_law` enumerates (C(N + S − 1, S − 1), S = support size).
MAX_COUNT_VECTORS = 200_000


# ------------------------------------------------------------------------------------------ validation
def _row(log_probs, reward):
    lp = np.asarray(log_probs, np.float64)
    r = np.asarray(reward, np.float64)
    if lp.ndim != 1 or r.shape != lp.shape:
        raise ValueError(f"log_probs and reward must be 1-D of the same length [Y], got shapes {lp.shape} and {r.shape}.")
    p = np.exp(lp - scipy.special.logsumexp(lp))
    if not np.all(np.isfinite(r[p > 0])):
        raise ValueError("reward must be finite wherever log_probs has positive mass.")
    return p, np.where(p > 0, r, -np.inf)


# ------------------------------------------------------------------------------------ exact laws (NumPy)
def _group_masses(p, r):
    """Per response: U = π_ref(r̂ ≤ r̂(y)), L = π_ref(r̂ < r̂(y)) and the tie group's mass G, each also as the
    complementary mass above (1 − U, 1 − L), summed from the small end."""
    keys = np.unique(r[p > 0])
    by_key = np.array([p[r == k].sum() for k in keys])
    below = np.concatenate([[0.0], np.cumsum(by_key)])
    above = np.concatenate([np.cumsum(by_key[::-1])[::-1], [0.0]])
    j = np.searchsorted(keys, np.where(p > 0, r, keys[0]))
    return below[j + 1], below[j], above[j + 1], above[j], by_key[j]


def bon_law_grid(log_probs, reward, Ns) -> np.ndarray:
    """Exact law of best-of-N under the proxy ``reward`` for every N in ``Ns``: ``[G, Y]`` (float64).

    The tie group G of y (responses with r̂ = r̂(y)) is returned with probability U^N − L^N (U, L: π_ref-mass
    with r̂ ≤ / < r̂(y)), split in proportion to π_ref inside G (a uniformly random draw among the tied
    maxima). At r̂ = log π this is :func:`sharpsim.exact.bon_log_probs` (theory.md §6).
    """
    p, r = _row(log_probs, reward)
    U, L, aU, aL, G = _group_masses(p, r)
    n = np.asarray(Ns, np.float64)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_U = np.where(U < 0.5, np.log(np.maximum(U, 1e-300)), np.log1p(-aU))
        log_L = np.where(L < 0.5, np.log(np.maximum(L, 1e-300)), np.log1p(-aL))
    log_L = np.where(L > 0, log_L, -np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        group = np.exp(n * log_U) * -np.expm1(n * (log_L - log_U))
        return np.where(p > 0, group * p / G, 0.0)


def bon_law(log_probs, reward, N: int) -> np.ndarray:
    """Exact law of best-of-N under ``reward`` (:func:`bon_law_grid` at one N)."""
    return bon_law_grid(log_probs, reward, [check_positive_int(N, "N")])[0]


def bop_law(log_probs, reward, mu: float) -> np.ndarray:
    """Exact law of Best-of-Poisson: best-of-n with n = 1 + Poisson(μ) (Khalaf et al. 2025).

    E[U^{1+K}] = U·e^{−μ(1−U)} for K ~ Poisson(μ), so the tie group of y gets U e^{−μ(1−U)} − L e^{−μ(1−L)},
    split in proportion to π_ref. Expected number of draws 1 + μ.
    """
    check_positive(mu, "mu") if mu != 0 else None
    p, r = _row(log_probs, reward)
    U, L, aU, aL, G = _group_masses(p, r)
    with np.errstate(divide="ignore", invalid="ignore"):
        group = U * np.exp(-mu * aU) - L * np.exp(-mu * aL)
        return np.where(p > 0, group * p / G, 0.0)


def soft_bon_law_grid(log_probs, reward, Ns, temperature: float) -> np.ndarray:
    """Exact law of soft best-of-N for every N in ``Ns`` (``[G, Y]``, one quadrature): draw i of N is returned with probability softmax(r̂(y_i)/τ) (Verdun et al.).

    P(y) = N π(y) E[w_y / (w_y + S)], S the sum of the other N − 1 draws' weights w = e^{r̂/τ}; with
    1/a = ∫_0^∞ e^{−ta} dt this is N π(y) w_y ∫_0^∞ e^{−t w_y} φ(t)^{N−1} dt, φ(t) = Σ_z π(z) e^{−t w_z}, a
    one-dimensional integral. Substituting t = e^s/w_y leaves ∫ e^{s − e^s} φ(e^s/w_y)^{N−1} ds, whose features
    (a term e^{−t w_z} switching off at e^s = w_y/w_z) are spread evenly in s; adaptive quadrature over
    s ∈ [−60, ln 70] (the rest carries < e^{−60} of each integral) with those breakpoints, to ~1e-12; the law
    must sum to 1 within 1e-8 or a RuntimeError is raised.
    """
    Ns = np.array([check_positive_int(int(n), "N") for n in np.atleast_1d(Ns)])
    check_positive(temperature, "temperature")
    p, r = _row(log_probs, reward)
    supp = np.flatnonzero(p > 0)
    ratio_log = (r[supp][None, :] - r[supp][:, None]) / temperature  # log(w_z / w_y), row y

    def f(s):
        u = np.exp(s)
        with np.errstate(over="ignore"):
            phi = np.exp(-u * np.exp(ratio_log)) @ p[supp]
        return np.exp(s - u) * phi[None, :] ** (Ns[:, None] - 1)  # [G, S]; 0^0 = 1 at N = 1

    kinks = -ratio_log[(ratio_log > 0) & (ratio_log < 60)]
    pts = np.unique(np.round(np.clip(kinks, -59.0, 4.0) * 2) / 2) if kinks.size else None  # a 0.5 grid suffices
    val, _ = scipy.integrate.quad_vec(f, -60.0, math.log(70.0), epsabs=1e-14, epsrel=1e-11, limit=4000, points=pts)
    law = np.zeros((len(Ns), len(p)))
    law[:, supp] = Ns[:, None] * p[supp] * val
    if np.any(np.abs(law.sum(1) - 1.0) > 1e-8):
        raise RuntimeError(f"soft_bon_law: quadrature lost mass (totals {law.sum(1)}); please report the instance.")
    return law


def soft_bon_law(log_probs, reward, N: int, temperature: float) -> np.ndarray:
    """Exact law of soft best-of-N at one N (:func:`soft_bon_law_grid`)."""
    return soft_bon_law_grid(log_probs, reward, [check_positive_int(N, "N")], temperature)[0]


def chi2_optimum(log_probs, reward, beta: float) -> tuple[np.ndarray, float]:
    """The χ²-regularised optimum π*_β(y) = π_ref(y)·max(0, r̂(y) − λ)/β and its λ (Huang et al. 2025).

    π*_β maximises E_π[r̂] − (β/2)·χ²(π ‖ π_ref) (χ² = E_{π_ref}[(π/π_ref)²] − 1); λ solves
    Σ_y π_ref(y) max(0, r̂(y) − λ) = β, found exactly on the piecewise-linear segment that contains it
    (rewards sorted in decreasing order; λ ∈ [min r̂ − β, max r̂ − β)). Works for any weights ``log_probs``
    (the empirical law of N draws gives the finite-N λ̂ of :func:`pessimism_sample`).
    """
    check_positive(beta, "beta")
    p, r = _row(log_probs, reward)
    lam = _chi2_threshold_np(p, r, beta)
    return p * np.maximum(r - lam, 0.0) / beta, lam


def _chi2_threshold_rows(W, r, beta):
    """λ with Σ_y W[k, y] max(0, r_y − λ) = β for every row k of weights W (``[K, Y]``, rows summing to 1).

    With r sorted decreasingly, g(λ) = S_j − P_j λ on [r_(j+1), r_(j)] (P_j, S_j: cumulative weight and
    weighted reward of the j largest); the root lies on the first segment j with P_j > 0 and
    λ_j = (S_j − β)/P_j ≥ r_(j+1) (zero-weight entries add no slope, so they may stay in the list).
    """
    order = np.argsort(-r, kind="stable")
    rs = r[order]
    Ws = W[:, order]
    P = np.cumsum(Ws, axis=1)
    S = np.cumsum(np.where(Ws > 0, Ws * np.where(np.isfinite(rs), rs, 0.0), 0.0), axis=1)
    nxt = np.concatenate([rs[1:], [-np.inf]])
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = (S - beta) / P
    ok = (P > 0) & (lam >= nxt[None, :])
    return lam[np.arange(len(W)), np.argmax(ok, axis=1)]


def _chi2_threshold_np(p, r, beta):
    return float(_chi2_threshold_rows(p[None, :], r, beta)[0])


def pessimism_envelope(log_probs, reward, beta: float) -> float:
    """Default rejection envelope M = 1 + (max r̂ − min r̂)/β over the support: π*_β/π_ref ≤ M (λ ≥ min r̂ − β)."""
    p, r = _row(log_probs, reward)
    rs = r[p > 0]
    return 1.0 + float(rs.max() - rs.min()) / beta


def pessimism_law(log_probs, reward, N: int, beta: float, envelope: float | None = None) -> np.ndarray:
    """Exact law of the finite-N pessimism sampler (:func:`pessimism_sample`; module docstring).

    Sum over count vectors c of the N draws (multinomial weights) of P(output | c): with a_y = ŵ_y/M the
    acceptance probabilities (λ̂ from c), the first accepted draw in a uniformly random order is of type y
    with probability ∫_0^1 c_y a_y (1 − a_y s)^{c_y−1} Π_{z≠y} (1 − a_z s)^{c_z} ds (each draw gets a uniform
    time; a polynomial of degree N − 1 in s, integrated exactly by ⌈N/2⌉-point Gauss–Legendre), plus
    Π_z (1 − a_z)^{c_z}·c_y/N when none is accepted (the last draw is returned). Refused above
    :data:`MAX_COUNT_VECTORS` count vectors.
    """
    N = check_positive_int(N, "N")
    check_positive(beta, "beta")
    p, r = _row(log_probs, reward)
    M = pessimism_envelope(log_probs, reward, beta) if envelope is None else float(envelope)
    supp = np.flatnonzero(p > 0)
    S = len(supp)
    size = math.comb(N + S - 1, S - 1)
    if size > MAX_COUNT_VECTORS:
        raise ValueError(f"pessimism_law would enumerate {size} count vectors (N = {N}, support {S}); the limit is "
                         f"MAX_COUNT_VECTORS = {MAX_COUNT_VECTORS}. Use pessimism_sample by Monte Carlo instead.")
    counts = np.array([np.bincount(c, minlength=S) for c in itertools.combinations_with_replacement(range(S), N)])
    ps, rs = p[supp], r[supp]
    log_mult = (scipy.special.gammaln(N + 1) - scipy.special.gammaln(counts + 1).sum(1)
                + (counts * np.log(ps)).sum(1))
    lam = _chi2_threshold_rows(counts / N, rs, beta)
    a = np.clip(np.maximum(rs[None, :] - lam[:, None], 0.0) / beta / M, 0.0, 1.0) * (counts > 0)  # [K, S]
    nodes, weights = np.polynomial.legendre.leggauss(N // 2 + 1)  # exact for degree ≤ N + 1
    s = (nodes + 1) / 2
    log_om = np.log1p(-a[:, None, :] * s[None, :, None])  # [K, nodes, S], s < 1 so finite
    log_prod = np.einsum("ks,kns->kn", counts.astype(np.float64), log_om)
    per = counts[:, None, :] * a[:, None, :] * np.exp(log_prod[:, :, None] - log_om)
    first = np.einsum("n,kns->ks", weights / 2, per)
    none = np.prod((1.0 - a) ** counts, axis=1)  # 0^0 = 1: absent responses do not count
    out = np.exp(log_mult) @ (first + none[:, None] * counts / N)
    law = np.zeros_like(p)
    law[supp] = out
    return law


def bom_law(log_probs, reward, N: int, min_frequency: float) -> np.ndarray:
    """Exact law of Best-of-Majority at k = 1 (Di et al. 2025): among the responses drawn at least
    t = max(1, ⌈α·N⌉) times in N draws, return the one with the largest r̂; if none is, return the first draw.

    y is returned iff c_y ≥ t and every z with r̂(z) > r̂(y) has c_z < t: a dynamic programme over the
    responses in decreasing r̂, carrying the law of the number of draws not yet assigned (conditional
    binomials, banded: O(S·N·t)). The fallback needs P(no count ≥ t, y_1 = y) = π(y)·P(in the other N − 1
    draws c_y ≤ t − 2, c_z ≤ t − 1), one more programme per y, run only when P(no count ≥ t) > 0 (never when
    α ≤ 1/|support|, by pigeonhole). Rewards must be distinct on the support (the sampler breaks ties at random).
    """
    N = check_positive_int(N, "N")
    if not 0.0 <= float(min_frequency) <= 1.0:
        raise ValueError(f"min_frequency must be in [0, 1], got {min_frequency}.")
    p, r = _row(log_probs, reward)
    supp = np.flatnonzero(p > 0)
    if len(np.unique(r[supp])) != len(supp):
        raise ValueError("bom_law needs distinct rewards on the support of log_probs (ties are broken at random "
                         "by bom_sample, whose law then depends on the tie-break).")
    t = max(1, math.ceil(float(min_frequency) * N - 1e-12))
    order = supp[np.argsort(-r[supp])]
    law = np.zeros_like(p)
    state = np.zeros(N + 1)
    state[N] = 1.0
    suffix = np.cumsum(p[order][::-1])[::-1]
    for i, y in enumerate(order):
        q = min(1.0, p[y] / suffix[i]) if suffix[i] > 0 else 1.0
        pmf = _binom_pmf(t - 1, N, q)  # [t, N + 1]: P(c | r draws left) for c < t
        law[y] = float(state @ (1.0 - pmf.sum(0)))  # c ≥ t
        state = _capped_step(state, pmf)
    p_none = state[0]
    if p_none > 1e-300 and t >= 2:
        for y in order:
            caps = {z: t - 1 for z in order}
            caps[y] = t - 2
            st = np.zeros(N)
            st[N - 1] = 1.0
            for i, z in enumerate(order):
                q = min(1.0, p[z] / suffix[i]) if suffix[i] > 0 else 1.0
                st = _capped_step(st, _binom_pmf(caps[z], N - 1, q))
            law[y] += p[y] * st[0]
    return law


def _binom_pmf(cap, n_max, q):
    """P(Bin(r, q) = c) for c = 0..cap (rows) and r = 0..n_max (columns), zero where c > r."""
    c = np.arange(max(cap, -1) + 1)[:, None]
    r = np.arange(n_max + 1)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        log = (scipy.special.gammaln(r + 1) - scipy.special.gammaln(c + 1) - scipy.special.gammaln(np.maximum(r - c, 0) + 1)
               + scipy.special.xlogy(c, q) + scipy.special.xlog1py(r - c, -q))
    return np.where(c <= r, np.exp(log), 0.0)


def _capped_step(state, pmf):
    """Law of the draws left after one response takes c ~ Bin(left, q) of them, kept only where c < len(pmf)."""
    new = np.zeros_like(state)
    for c in range(min(len(pmf), len(state))):
        new[: len(state) - c] += (state * pmf[c])[c:]
    return new


# ------------------------------------------------------------------------------------------ samplers (JAX)
def _draws(key, log_probs, n):
    from sharpsim.policies._tabular import inverse_cdf_sample

    return inverse_cdf_sample(key, jax.nn.log_softmax(jnp.asarray(log_probs)), n)


def _select_bon(r_draws, valid) -> Int[Array, ""]:
    """Position of the first valid draw with the largest reward. The draws are i.i.d., hence exchangeable: given
    which positions hold the top tie group G, the responses there are i.i.d. from π_ref restricted to G, so the
    first of them is a draw from π_ref|G — the same law as a uniformly random draw among the tied maxima."""
    return jnp.argmax(jnp.where(valid, r_draws, -jnp.inf))


def _select_soft(key, r_draws, valid, temperature) -> Int[Array, ""]:
    return jax.random.categorical(key, jnp.where(valid, r_draws / temperature, -jnp.inf))


def _chi2_threshold(weights, r, beta):
    """JAX version of the exact λ of :func:`chi2_optimum` for weights on draws (zero weight: ignored)."""
    r = jnp.where(weights > 0, r, -jnp.inf)
    order = jnp.argsort(-r)
    ps, rs = weights[order], r[order]
    P = jnp.cumsum(ps)
    S = jnp.cumsum(jnp.where(ps > 0, ps * rs, 0.0))
    nxt = jnp.concatenate([rs[1:], jnp.full((1,), -jnp.inf, rs.dtype)])
    lam = (S - beta) / jnp.where(P > 0, P, 1.0)
    ok = (P > 0) & (lam >= nxt)
    return lam[jnp.argmax(ok)]


def _select_pessimism(uniforms, draws, valid, counts, reward, beta, envelope) -> Int[Array, ""]:
    """Position returned by the pessimism sampler, given one uniform per position and the valid draws' counts
    per response. λ̂ is solved on the response space with the empirical law counts/n (a sort of the Y rewards
    instead of the N draws); draw i is accepted iff uniforms[i] < ŵ(y_i)/M; none accepted: the last valid draw."""
    n = jnp.sum(valid)
    lam = _chi2_threshold(counts / n, reward, beta)
    accept = jnp.clip(jnp.maximum(reward[draws] - lam, 0.0) / beta / envelope, 0.0, 1.0)
    hit = valid & (uniforms < accept)
    return jnp.where(jnp.any(hit), jnp.argmax(hit), n - 1)


def _counts(draws, valid, Y, dtype=jnp.float32):
    return jnp.zeros((Y,), dtype).at[draws].add(valid.astype(dtype))


def _select_bom(key, first_draw, counts, n, reward, min_frequency):
    """Response chosen by Best-of-Majority at k = 1 from the counts of n draws; falls back to the first draw.
    Ties in r̂ among candidates: a uniformly random candidate (``bom_law`` needs distinct rewards)."""
    t = jnp.maximum(1, jnp.ceil(min_frequency * n - 1e-6))
    cand = counts >= t
    score = jnp.where(cand, reward, -jnp.inf)
    top = cand & (score == jnp.max(score))
    best = jnp.argmax(jnp.where(top, jax.random.gumbel(key, reward.shape), -jnp.inf))
    return jnp.where(jnp.any(cand), best, first_draw)


def _check(log_probs, reward, key):
    check_key(key)
    if jnp.ndim(log_probs) != 1 or jnp.shape(reward) != jnp.shape(log_probs):
        raise ValueError(f"log_probs and reward must be 1-D of the same length [Y], got shapes "
                         f"{jnp.shape(log_probs)} and {jnp.shape(reward)}.")


def bon_sample(log_probs: Float[Array, " Y"], reward: Float[Array, " Y"], N: int, *, key) -> Int[Array, ""]:
    """Best-of-N under ``reward``: N draws from π_ref, the largest r̂ (the first such draw, which is a uniformly
    random one among tied maxima in law; :func:`_select_bon`). Law: :func:`bon_law`."""
    _check(log_probs, reward, key)
    N = check_positive_int(N, "N")
    d = _draws(key, log_probs, N)
    return d[_select_bon(jnp.asarray(reward)[d], jnp.ones((N,), bool))]


def soft_bon_sample(log_probs, reward, N: int, temperature, *, key) -> Int[Array, ""]:
    """Soft best-of-N: draw i of N returned with probability softmax(r̂(y_i)/τ). Law: :func:`soft_bon_law`."""
    _check(log_probs, reward, key)
    N = check_positive_int(N, "N")
    if is_concrete(temperature):
        check_positive(temperature, "temperature")
    k1, k2 = jax.random.split(key)
    d = _draws(k1, log_probs, N)
    return d[_select_soft(k2, jnp.asarray(reward)[d], jnp.ones((N,), bool), temperature)]


def bop_sample(log_probs, reward, mu: float, *, key, max_draws: int | None = None) -> Int[Array, ""]:
    """Best-of-Poisson: best-of-n with n = 1 + Poisson(μ), truncated at ``max_draws`` (default
    ⌈1 + μ + 10√μ + 10⌉, truncation probability < 1e-15 for μ ≤ 1e6). Law: :func:`bop_law`."""
    _check(log_probs, reward, key)
    check_positive(mu, "mu") if mu != 0 else None
    m = check_positive_int(max_draws if max_draws is not None else int(math.ceil(1 + mu + 10 * math.sqrt(mu) + 10)),
                           "max_draws")
    k0, k1 = jax.random.split(key)
    n = jnp.minimum(1 + jax.random.poisson(k0, mu), m)
    d = _draws(k1, log_probs, m)
    return d[_select_bon(jnp.asarray(reward)[d], jnp.arange(m) < n)]


def bom_sample(log_probs, reward, N: int, min_frequency, *, key) -> Int[Array, ""]:
    """Best-of-Majority (k = 1): the largest-r̂ response among those drawn ≥ max(1, ⌈α N⌉) times; else the
    first draw. Law: :func:`bom_law`."""
    _check(log_probs, reward, key)
    N = check_positive_int(N, "N")
    k1, k2 = jax.random.split(key)
    d = _draws(k1, log_probs, N)
    r = jnp.asarray(reward)
    return _select_bom(k2, d[0], _counts(d, jnp.ones((N,), bool), r.shape[0], r.dtype), N, r, min_frequency)


def pessimism_sample(log_probs, reward, N: int, beta, *, key, envelope=None) -> Int[Array, ""]:
    """InferenceTimePessimism with N draws (module docstring; Huang et al. 2025). Law: :func:`pessimism_law`;
    as N → ∞ the law tends to :func:`chi2_optimum`'s π*_β."""
    _check(log_probs, reward, key)
    N = check_positive_int(N, "N")
    if is_concrete(beta):
        check_positive(beta, "beta")
    if envelope is None:
        envelope = pessimism_envelope(log_probs, reward, float(beta))
    k1, k2 = jax.random.split(key)
    d = _draws(k1, log_probs, N)
    r, valid = jnp.asarray(reward), jnp.ones((N,), bool)
    return d[_select_pessimism(jax.random.uniform(k2, (N,)), d, valid, _counts(d, valid, r.shape[0], r.dtype), r,
                               beta, envelope)]
