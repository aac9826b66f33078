"""Exact finite-size laws of SFT-sharpening on the Theorem 3.1′ hard instance (App. H, γ = 1/2).

The asymptotic exponents of Theorems 3.1/4.1 (m ≍ 1/ε²) and D.1/D.2 (E[m] ≍ 1/ε) say nothing about the sizes
an experiment can reach. On the hard instance both algorithms reduce to one exactly solvable problem, so the
finite-size behaviour can be computed instead of guessed:

* prompts: x_0 with mass 1 − Δ (π_base(y_0|x_0) = 1: always sharpened) and d rare prompts of mass Δ/d each; at
  a rare prompt the planted response has mass 2/M and the other B = M − 1 responses q = (M − 2)/(M(M − 1));
* every visit to a rare prompt yields ONE pick: the planted response with probability p, otherwise a uniformly
  random other response — fixed-N best-of-N: p = 1 − (1 − 2/M)^N (the first drawn response when the planted one
  is missed: all others tie); adaptive (Eq. 10): p = a = 1 − (1 − 2/M)^{K_q}
  (:func:`adaptive_pick_planted_probability`);
* the MLE over the best-of-N (resp. AdaBoN) closure of [M]^d picks, per prompt, the candidate whose planted
  response was picked most often (ties: the first index; with I ~ Uniform([M]^d) a tie of the planted label
  with T others is won with probability 1/(T + 1); no visit: probability 1/M), and the prompt is sharpened iff
  that candidate is the true one and its mode mass (1 − (1 − 2/M)^N, resp. a) exceeds 1 − δ;
* success: the μ-mass of unsharpened rare prompts is ≤ ε, i.e. at most ⌊εd/Δ⌋ failures.

:func:`plurality_win_table` is the exact probability that a label with k picks wins against r picks spread
uniformly over B other labels (a finite sum with no cancellation, see its docstring);
:func:`rare_prompt_success` mixes it over Binomial(v, p); :func:`visits_success_probability` mixes over the
multinomial visit counts. The only approximation is a truncation of the number of rare visits whose neglected
mass is returned (≤ 1e-15 by default). The expected cost of Eq. (10) is exact for any tabular prompt law
(:func:`stopping_rule_expected_draws`). Tests compare every law with brute-force enumeration and Monte Carlo.

Theorem 4.2 (exact rewards): :func:`confuser_touch_probabilities` and :func:`version_space_failure_probabilities`
give the exact failure probability of Eq. (8) over :func:`sharpsim.instances.margin_confuser_class` — a confuser
survives (has zero empirical loss, like π*_β) iff no observed pair at a prompt of its set separates y* or y₂
from the other responses.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import scipy.special
import scipy.stats

from sharpsim._validation import check_open_unit, check_positive, check_positive_int

__all__ = [
    "plurality_win_table",
    "rare_prompt_success",
    "visits_success_probability",
    "allowed_failures",
    "bon_pick_planted_probability",
    "adaptive_pick_planted_probability",
    "stopping_rule_expected_draws",
    "hard_fixed_success_probability",
    "hard_adaptive_success_probability",
    "hard_adaptive_expected_queries",
    "confuser_touch_probabilities",
    "version_space_failure_probabilities",
    "argmax_confuser_success",
    "min_sharpening_N",
    "hard_fixed_grid_budget",
    "hard_exact_budgets",
    "RareVisits",
    "sample_rare_visits",
    "simulate_fixed_success_grid",
    "simulate_adaptive_success_grid",
]

_TAIL = 1e-15


def _lgamma(x):
    return scipy.special.gammaln(x)


def _binom_pmf(k, n, p):
    """Binomial(n, p) pmf at k (elementwise, 0 outside 0 ≤ k ≤ n), from log-gamma (no scipy.stats overhead)."""
    k, n = np.broadcast_arrays(np.asarray(k, float), np.asarray(n, float))
    ok = (k >= 0) & (k <= n)
    kk, nn = np.where(ok, k, 0.0), np.where(ok, n, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = (_lgamma(nn + 1.0) - _lgamma(kk + 1.0) - _lgamma(nn - kk + 1.0)
              + scipy.special.xlogy(kk, p) + scipy.special.xlog1py(nn - kk, -p))
    return np.where(ok, np.exp(lp), 0.0)


@functools.lru_cache(maxsize=256)
def _split_pmf(R: int, j: int) -> np.ndarray:
    r = np.arange(R + 1)
    out = _binom_pmf(r[None, :], r[:, None], 1.0 / j)
    out.setflags(write=False)
    return out


def _capped_below_probs(J: int, b: int, k: int) -> np.ndarray:
    """Q[j] = P[every one of b bins holds < k balls] for j = 0..J balls thrown uniformly (exact).

    Q[j] = j!/b^j [z^j] (Σ_{c<k} z^c/c!)^b. The power is taken by binary exponentiation of the truncated series
    in the scaled variable z = s·w, s = J/b, so every coefficient stays within float range and is a sum of
    positive terms (no cancellation).
    """
    if b <= 0:
        return np.array([1.0] + [0.0] * J)
    s = max(J, 1) / b
    c = np.arange(min(k, J + 1))
    base = np.exp(c * math.log(s) - _lgamma(c + 1.0)) if s > 0 else (c == 0).astype(float)
    base = np.concatenate([base, np.zeros(J + 1 - base.size)])
    out = np.zeros(J + 1)
    out[0] = 1.0
    e = b
    while e:
        if e & 1:
            out = np.convolve(out, base)[: J + 1]
        e >>= 1
        if e:
            base = np.convolve(base, base)[: J + 1]
    j = np.arange(J + 1)
    with np.errstate(divide="ignore"):
        return np.clip(out * np.exp(_lgamma(j + 1.0) - j * math.log(b * s)), 0.0, 1.0)


@functools.lru_cache(maxsize=64)
def plurality_win_table(B: int, V: int) -> np.ndarray:
    """W[k, r] (k + r ≤ V): P[a label with k picks is the first-index plurality winner] against r picks thrown
    uniformly over B other labels, all labels in uniformly random order (exact).

    With T the number of other labels that also reach k (and none above), the label wins with probability
    1/(T + 1). Conditioning on the t labels that tie:

        W[k, r] = Σ_t C(B, t)/(t + 1) · r!/((k!)^t (r − tk)!) · (B − t)^{r − tk}/B^r · Q(r − tk; B − t, < k),

    Q(j; b, < k) = P[j uniform balls leave each of b bins below k] (:func:`_capped_below_probs`). k = 0:
    W[0, 0] = 1/(B + 1) (no picks at all: uniform winner), W[0, r > 0] = 0. Cached per (B, V).
    """
    B = check_positive_int(B, "B")
    V = int(V)
    if V < 0:
        raise ValueError(f"V must be >= 0, got {V}.")
    W = np.zeros((V + 1, V + 1))
    W[0, 0] = 1.0 / (B + 1)
    logB = math.log(B)
    for k in range(1, V + 1):
        rmax = V - k
        tmax = min(B, rmax // k)
        for t in range(tmax + 1):
            Q = _capped_below_probs(rmax - t * k, B - t, k)  # Q[j], j = r − tk = 0..rmax − tk
            r = np.arange(t * k, rmax + 1)
            j = r - t * k
            logterm = (_lgamma(B + 1.0) - _lgamma(t + 1.0) - _lgamma(B - t + 1.0) - math.log(t + 1.0)
                       + _lgamma(r + 1.0) - t * _lgamma(k + 1.0) - _lgamma(j + 1.0)
                       + (j * math.log(B - t) if B > t else np.where(j > 0, -np.inf, 0.0)) - r * logB)
            with np.errstate(divide="ignore"):
                W[k, r] += np.exp(logterm + np.log(Q[j]))
        W[k, : rmax + 1] = np.minimum(W[k, : rmax + 1], 1.0)
    W.setflags(write=False)
    return W


_LARGEST_TABLE: dict = {}


def _win_table_at_least(B: int, V: int) -> np.ndarray:
    """A win table with at least V + 1 rows: the largest one built for this B, or a new one at a power of 2
    (W[k, r] does not depend on the table's size)."""
    W = _LARGEST_TABLE.get(B)
    if W is None or W.shape[0] <= V:
        W = plurality_win_table(B, max(64, 1 << max(V, 1).bit_length()))
        _LARGEST_TABLE[B] = W
    return W


def rare_prompt_success(V: int, p: float, B: int) -> np.ndarray:
    """s[v] (v = 0..V): P[the MLE's candidate at a rare prompt is the true one | v visits], each visit picking
    the planted response with probability ``p`` and otherwise a uniform one of the B others (exact)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p!r}.")
    W = _win_table_at_least(B, V)
    v = np.arange(V + 1)[:, None]
    k = np.arange(V + 1)[None, :]
    ok = k <= v
    Wvk = np.where(ok, W[k, np.clip(v - k, 0, V)], 0.0)
    s = np.sum(_binom_pmf(k, v, p) * Wvk, axis=1)
    return np.clip(s, 0.0, 1.0)


def allowed_failures(epsilon: float, Delta: float, d: int) -> int:
    """⌊εd/Δ⌋: how many rare prompts (mass Δ/d each) may stay unsharpened with error ≤ ε."""
    return int(math.floor(epsilon * d / Delta + 1e-9))


def _visit_cap(n: int, Delta: float) -> int:
    return int(scipy.stats.binom.isf(_TAIL, n, Delta)) + 1


def visits_success_probability(n: int, Delta: float, d: int, success_by_visits, max_failures: int = 0):
    """P[at most ``max_failures`` of the d rare prompts fail] after n prompts drawn from μ (exact up to the
    returned truncation mass).

    The total rare visits R ~ Binomial(n, Δ) are split uniformly over the d rare prompts; prompt i fails with
    probability 1 − s[v_i] given its v_i visits (``success_by_visits(V)`` returns s[0..V]). A DP over prompts
    (binomial splitting) carries the failure count. Returns ``(probability, truncated_mass)``.
    """
    n = check_positive_int(n, "n")
    d = check_positive_int(d, "d")
    R = min(n, _visit_cap(n, Delta))
    s = np.asarray(success_by_visits(R), float)[: R + 1]
    K = int(max_failures)
    if K >= d:
        return 1.0, 0.0
    r = np.arange(R + 1)
    # G[f, r] = P[f failures among the prompts still to place | r balls spread uniformly over them]
    G = np.zeros((K + 1, R + 1))
    G[0] = s  # the last prompt takes every remaining ball
    if K >= 1:
        G[1] = 1.0 - s
    idx = r[:, None] - r[None, :]
    valid = idx >= 0
    for j in range(2, d + 1):  # prompts left: j; the next one gets Binomial(r, 1/j)
        pm = _split_pmf(R, j)  # [r, v]: Binomial(r, 1/j) at v
        w_s, w_f = pm * s[None, :], pm * (1.0 - s)[None, :]
        shifted = G[:, np.clip(idx, 0, R)] * valid  # [f, r, v] = G[f, r − v]
        newG = np.einsum("rv,frv->fr", w_s, shifted)
        if K >= 1:
            newG[1:] += np.einsum("rv,frv->fr", w_f, shifted[:-1])
        G = newG
    weights = _binom_pmf(r, n, Delta)
    prob = float(np.sum(weights * G.sum(0)))
    return min(max(prob, 0.0), 1.0), float(max(0.0, 1.0 - weights.sum()))


def bon_pick_planted_probability(M: int, N: int) -> float:
    """P[best-of-N under log π_base picks the planted response at a rare prompt] = 1 − (1 − 2/M)^N."""
    return float(-math.expm1(N * math.log1p(-2.0 / M)))


def adaptive_pick_planted_probability(M: int, mu_stop: float) -> float:
    """P[Eq. (10)'s pick = the planted response] at a rare prompt (exact): 1 − (1 − 2/M)^{K_q}.

    P_j has two levels: 2/M on y_j and q = (M − 2)/(M(M − 1)) on the others. Eq. (10) stops at the first k with
    k ≥ μ_stop / max_{j≤k} π_base(y_j|x); if y_j has not been drawn by K_q = min{k : log k ≥ log μ_stop − log q}
    the rule fires with a wrong pick, otherwise the pick is y_j (≥ 1 − δ/2 by Lemma I.1). K_q is computed in
    float64 logs like the rule.
    """
    return bon_pick_planted_probability(M, _first_k_at_least(mu_stop, (M - 2) / (M * (M - 1))))


def _first_k_at_least(mu_stop: float, prob: float) -> int:
    """min{k ≥ 1 : log k ≥ log μ_stop − log prob} (Eq. 10's threshold for a response of probability prob)."""
    target = math.log(mu_stop) - math.log(prob)
    K = max(1, math.ceil(math.exp(target) - 1e-9))
    while math.log(K) < target:
        K += 1
    while K > 1 and math.log(K - 1) >= target:
        K -= 1
    return K


def stopping_rule_expected_draws(probs, mu_stop: float) -> float:
    """E[N_{μ_stop}(x)] for Eq. (10) at a prompt with response law ``probs`` (exact, any finite law).

    N > k ⇔ all k draws have π_base < μ_stop/k, so E[N] = Σ_{k≥0} (Σ_{y: π(y) < μ/k} π(y))^k; the terms vanish
    once μ/k ≤ min π, so the sum is finite.
    """
    p = np.asarray(probs, float)
    p = p[p > 0]
    check_positive(mu_stop, "mu_stop")
    levels = np.unique(p)
    mass_at = np.array([p[p == lv].sum() for lv in levels])
    below = np.concatenate([[0.0], np.cumsum(mass_at)])  # mass strictly below levels[i] = below[i]
    total = 1.0
    k_end = _first_k_at_least(mu_stop, levels[0])
    for k in range(1, k_end):
        # mass of {π(y) < μ/k} ⇔ log π(y) < log μ − log k, as the rule compares in logs
        i = int(np.searchsorted(np.log(levels), math.log(mu_stop) - math.log(k), side="left"))
        total += below[i] ** k
    return float(total)


def _hard_probs(M: int) -> np.ndarray:
    q = (M - 2) / (M * (M - 1))
    return np.concatenate([[2.0 / M], np.full(M - 1, q)])


def hard_fixed_success_probability(n: int, N: int, M: int, Delta: float, d: int, epsilon: float,
                                   delta: float = 0.5):
    """P[fixed-N SFT-sharpening (MLE over the best-of-N closure) reaches sharpness error ≤ ε] at (n, N) on the
    hard instance (exact). Returns ``(probability, truncated_mass)``."""
    M = check_positive_int(M, "M")
    N = check_positive_int(N, "N")
    check_open_unit(delta, "delta")
    p = bon_pick_planted_probability(M, N)
    sharp = p > 1.0 - delta  # the closure member's mode mass must exceed 1 − δ
    fn = (lambda V: rare_prompt_success(V, p, M - 1)) if sharp else (lambda V: np.zeros(V + 1))
    return visits_success_probability(n, Delta, d, fn, allowed_failures(epsilon, Delta, d))


def hard_adaptive_success_probability(n: int, M: int, Delta: float, d: int, epsilon: float, mu_stop: float,
                                      delta: float = 0.5):
    """P[adaptive SFT-sharpening (Eq. 10, MLE over the AdaBoN closure) reaches error ≤ ε] with n prompts (exact).
    Returns ``(probability, truncated_mass)``."""
    M = check_positive_int(M, "M")
    a = adaptive_pick_planted_probability(M, mu_stop)
    sharp = a > 1.0 - delta
    fn = (lambda V: rare_prompt_success(V, a, M - 1)) if sharp else (lambda V: np.zeros(V + 1))
    return visits_success_probability(n, Delta, d, fn, allowed_failures(epsilon, Delta, d))


def hard_adaptive_expected_queries(n: int, M: int, Delta: float, mu_stop: float) -> float:
    """E[m] = n·[(1 − Δ)·E N(x_0) + Δ·E N(x_rare)] for adaptive SFT-sharpening with n prompts (exact)."""
    n = check_positive_int(n, "n")
    return n * _hard_cost_per_prompt(int(M), float(Delta), float(mu_stop))


@functools.lru_cache(maxsize=256)
def _hard_cost_per_prompt(M: int, Delta: float, mu_stop: float) -> float:
    return ((1.0 - Delta) * stopping_rule_expected_draws([1.0], mu_stop)
            + Delta * stopping_rule_expected_draws(_hard_probs(M), mu_stop))


def confuser_touch_probabilities(probs) -> np.ndarray:
    """q_x = P[a pair (y, y') ~ π_base(·|x)² i.i.d. separates the classes {y*}, {y₂}, rest] (Theorem 4.2 instance).

    A confuser of :func:`sharpsim.instances.margin_confuser_class` changes log π/π_base by Δ(y*) = −Δ(y₂) ≠ 0
    and by 0 elsewhere, so its Eq. (8) residual on a pair is nonzero iff Δ(y) ≠ Δ(y'), i.e. iff y and y' fall
    in different classes: q_x = 1 − p*² − p₂² − (1 − p* − p₂)² with p*, p₂ the two largest masses at x.
    """
    p = np.sort(np.asarray(probs, np.float64), axis=-1)[..., ::-1]
    p1, p2 = p[..., 0], p[..., 1]
    return 1.0 - p1**2 - p2**2 - np.clip(1.0 - p1 - p2, 0.0, 1.0) ** 2


def version_space_failure_probabilities(n: int, rates, set_size: int) -> tuple[float, float]:
    """Exact failure probabilities of Eq. (8) with exact rewards over the all-sets confuser class.

    ``rates[x]`` = μ(x)·q_x, the probability that one pair lands at x and touches (separates y* or y₂); after
    n i.i.d. pairs the untouched prompts U form a random set with P[U ⊇ A] = (1 − Σ_{x∈A} rates[x])^n.
    The confuser of set S survives iff S ⊆ U, so, with s = ``set_size`` and every s-set in the class:

    * worst-case tie-break fails iff |U| ≥ s:  P = Σ_{|A| ≥ s} (−1)^{|A|−s} C(|A|−1, s−1) (1 − rate(A))^n
      (inclusion–exclusion for "at least s events");
    * uniform tie-break fails w.p. E[C(|U|, s) / (C(|U|, s) + 1)] (π*_β and the C(|U|, s) survivors tie).

    Returns ``(worst, uniform)``. Exact; enumerates the 2^X subsets (X ≤ 20).
    """
    import itertools

    r = np.asarray(rates, np.float64)
    X = r.size
    if X > 20 or np.any(r < 0) or r.sum() > 1 + 1e-9:
        raise ValueError(f"rates must be >= 0, sum to <= 1, with at most 20 prompts; got {r.tolist()}.")
    n = int(n)
    s = check_positive_int(set_size, "set_size")
    # P[U ⊇ A] summed by size: S_k = Σ_{|A|=k} (1 − rate(A))^n
    S = np.zeros(X + 1)
    for k in range(X + 1):
        S[k] = sum(max(1.0 - r[list(A)].sum(), 0.0) ** n for A in itertools.combinations(range(X), k))
    # P[|U| >= j] and P[|U| = u]
    at_least = np.array([sum((-1) ** (k - j) * math.comb(k - 1, j - 1) * S[k] for k in range(j, X + 1))
                         if j > 0 else 1.0 for j in range(X + 2)])
    exactly = np.clip(at_least[:-1] - at_least[1:], 0.0, 1.0)
    worst = float(np.clip(at_least[s], 0.0, 1.0))
    uniform = float(sum(exactly[u] * math.comb(u, s) / (math.comb(u, s) + 1) for u in range(X + 1)))
    return worst, uniform


def argmax_confuser_success(p, m: int) -> float:
    """Exact P[Eq. 8 / a version-space learner returns π*_β] after m draws from π_base, over the class
    {π*_β} ∪ one argmax confuser per response k (:func:`sharpsim.instances.argmax_confusers`), with exact rewards
    and a uniformly random tie-break.

    Confuser k leaves the version space once response k is drawn (its residual is nonzero only on pairs through
    k; pairs y = ỹ = k are ignored). With U the unseen responses the random tie-break picks π*_β w.p.
    1/(1 + |U|); P[exactly U unseen] by inclusion–exclusion over P[no draw in V] = (1 − Σ_{k∈V} p_k)^m.
    ``p``: π_base of the K confusers' responses (K ≤ 16). Used by ``xpo_vs_sft_j1`` (offline_eq8's prediction).
    """
    p = np.asarray(p, float).ravel()
    if p.size == 0 or p.size > 16 or np.any(p < 0) or p.sum() > 1 + 1e-12:
        raise ValueError(f"p must hold 1..16 probabilities summing to at most 1, got {p.tolist()}.")
    m = check_positive_int(m, "m")
    sub = np.array(np.meshgrid(*[[0, 1]] * p.size)).reshape(p.size, -1).T.astype(bool)  # [2^K, K] subsets
    none_in = np.clip(1 - sub @ p, 0.0, 1.0) ** m  # P[no draw in V]
    sup = np.all(sub[None] >= sub[:, None], -1)  # sup[U, V]: V ⊇ U
    sign = (-1.0) ** (sub.sum(1)[None] - sub.sum(1)[:, None])
    return float(np.sum((sup * sign * none_in[None]).sum(1) / (1 + sub.sum(1))))


# ------------------------------------------------------------------------------------------ exact budgets m(ρ)
def min_sharpening_N(M: int, delta: float = 0.5) -> int:
    """The smallest N whose best-of-N closure member is sharpened at all: 1 − (1 − 2/M)^N > 1 − δ."""
    N = 1
    while bon_pick_planted_probability(M, N) <= 1.0 - delta:
        N += 1
    return N


def hard_fixed_grid_budget(n_grid, N_grid, M: int, d: int, Delta: float, epsilon: float, rho: float) -> float:
    """The grid estimator's functional (:func:`sharpsim.complexity.grid_frontier`: per n the first grid N reaching
    1 − ρ, log-interpolated; min over n of n·N) applied to the EXACT success probabilities of fixed-N
    SFT-sharpening on the same (n, N) grid. Success is monotone in N, so per n a bisection finds the crossing."""
    from sharpsim.complexity import grid_frontier

    target = 1.0 - rho
    H = len(N_grid)
    rates = np.zeros((len(n_grid), H))
    for g, n in enumerate(n_grid):
        def prob(h, n=n):
            return hard_fixed_success_probability(n, int(N_grid[h]), M, Delta, d, epsilon)[0]

        if prob(H - 1) < target:
            continue
        lo, hi = -1, H - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if prob(mid) >= target:
                hi = mid
            else:
                lo = mid
        rates[g, hi:] = 1.0  # only the crossing matters to the functional: keep the two bracketing rates exact
        rates[g, hi] = prob(hi)
        if hi > 0:
            rates[g, hi - 1] = prob(hi - 1)
    return float(grid_frontier(n_grid, N_grid, rates, target)[0])


def hard_exact_budgets(n_adaptive, n_fixed, N_max: int, M: int, d: int, Delta: float, epsilon: float,
                       mu_stop: float, rho: float, delta: float = 0.5) -> dict:
    """Exact references for adaptive vs fixed-N SFT-sharpening on the hard instance (the estimators' functionals
    on the exact laws): adaptive — P[success] and E[m] at every n of ``n_adaptive`` and the first E[m] with
    probability ≥ 1 − ρ (log-interpolated, :func:`sharpsim.complexity.budget_at_rate`); fixed N — per n of
    ``n_fixed`` the smallest integer N ≤ ``N_max`` with P ≥ 1 − ρ (bisection: monotone in N, and N(n) is
    non-increasing in n), then the minimum of n·N."""
    from sharpsim.complexity import budget_at_rate

    target = 1.0 - rho
    p_ada = np.array([hard_adaptive_success_probability(n, M, Delta, d, epsilon, mu_stop)[0]
                      for n in n_adaptive[::-1]])[::-1]  # largest n first: one win table per setting
    em = np.array([hard_adaptive_expected_queries(n, M, Delta, mu_stop) for n in n_adaptive])
    ada = budget_at_rate(em, p_ada, rho)

    def ok(n, N):
        return hard_fixed_success_probability(n, N, M, Delta, d, epsilon)[0] >= target

    best, n_at = math.inf, math.nan
    N_min = min_sharpening_N(M, delta)
    hi_prev = int(N_max)
    for n in n_fixed:
        if n * N_min >= best or not ok(n, hi_prev):
            continue
        lo, hi = N_min - 1, hi_prev  # invariant: ok(hi)
        if ok(n, N_min):
            hi = N_min
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if ok(n, mid):
                hi = mid
            else:
                lo = mid
        hi_prev = hi
        if n * hi < best:
            best, n_at = float(n * hi), float(n)
    return {"adaptive_m": float(ada), "fixed_m": best, "fixed_n_at": n_at,
            "adaptive_success": p_ada.tolist(), "adaptive_expected_queries": em.tolist()}


# ------------------------------------------------------------------------------------------ Monte Carlo through
# the sufficient statistics (the same laws, simulated: tests compare them with the sweeps and the exact laws)
@dataclasses.dataclass(frozen=True)
class RareVisits:
    """The sufficient statistics of SFT-sharpening runs on the hard instance, one draw per trial.

    Only the visits to the rare prompts matter (x_0 is always sharpened and costs a known ⌈μ_stop⌉ draws under
    Eq. 10). Flat arrays over all rare visits of all trials, in prompt order within a trial: ``trial``, ``pos``
    (index of the prompt in the trial's sequence of ``n_max`` prompts), ``prompt`` (0..d−1), ``first_planted``
    (k_0 ~ Geometric(2/M): the draw at which the planted response first appears), ``other`` (the absolute label
    of the first drawn response, uniform over the M − 1 non-planted labels: best-of-N's pick when k_0 > N and
    Eq. 10's pick when k_0 > K_q); ``planted [K, d]`` the true index I (uniform over [M]).
    """

    trial: np.ndarray
    pos: np.ndarray
    prompt: np.ndarray
    first_planted: np.ndarray
    other: np.ndarray
    planted: np.ndarray
    num_trials: int
    M: int
    d: int


def sample_rare_visits(keys, n_max: int, M: int, Delta: float, d: int) -> RareVisits:
    """Draw :class:`RareVisits` for every trial key (NumPy generator seeded from the key's data, so the draw does
    not depend on how the keys are sharded over devices)."""
    import jax

    kd = np.asarray(jax.random.key_data(keys)).reshape(len(keys), -1)
    out = {k: [] for k in ("trial", "pos", "prompt", "first_planted", "other")}
    planted = np.zeros((len(keys), d), np.int64)
    p2 = 2.0 / M
    for t in range(len(keys)):
        rng = np.random.default_rng([int(v) for v in kd[t]])
        planted[t] = rng.integers(0, M, d)
        pos = np.flatnonzero(rng.random(n_max) < Delta)
        prompt = rng.integers(0, d, pos.size)
        other = rng.integers(0, M - 1, pos.size)
        other = other + (other >= planted[t, prompt])  # skip the planted label
        out["trial"].append(np.full(pos.size, t))
        out["pos"].append(pos)
        out["prompt"].append(prompt)
        out["first_planted"].append(rng.geometric(p2, pos.size))
        out["other"].append(other)
    arrs = {k: np.concatenate(v).astype(np.int64) for k, v in out.items()}
    return RareVisits(**arrs, planted=planted, num_trials=len(keys), M=M, d=d)


def _plurality_correct(v: RareVisits, active: np.ndarray, picked_planted: np.ndarray) -> np.ndarray:
    """[K, d] bool: per trial and rare prompt, is the first-index plurality label of the active picks the planted
    one (the MLE over the closure of [M]^d; with no active pick the argmax is label 0)."""
    K, d, M = v.num_trials, v.d, v.M
    label = np.where(picked_planted, v.planted[v.trial, v.prompt], v.other)
    cell = v.trial * d + v.prompt
    counts = np.bincount((cell * M + label)[active], minlength=K * d * M).reshape(K * d, M)
    return (np.argmax(counts, axis=1) == v.planted.ravel()).reshape(K, d)


def simulate_fixed_success_grid(v: RareVisits, n_grid, N_grid, Delta: float, epsilon: float, delta: float = 0.5):
    """success [G, H, K] of fixed-N SFT-sharpening (MLE over the best-of-N closure) at every (n, N), prefix-coupled
    (the run at (n, N) uses the first n prompts and the first N draws of each)."""
    allowed = allowed_failures(epsilon, Delta, v.d)
    N_arr = np.asarray(N_grid)
    sharp_N = np.array([bon_pick_planted_probability(v.M, int(N)) > 1.0 - delta for N in N_arr])
    K = v.num_trials
    out = np.zeros((len(n_grid), len(N_grid), K), bool)
    H = len(N_grid)
    for g, n in enumerate(n_grid):
        act = v.pos < n

        def succeeds(h_idx):  # per-trial grid index -> success at (n, N_grid[h]) for every trial
            N_t = N_arr[np.minimum(h_idx, H - 1)]
            ok = _plurality_correct(v, act, v.first_planted <= N_t[v.trial])
            return ((~ok).sum(1) <= allowed) & sharp_N[np.minimum(h_idx, H - 1)] & (h_idx < H)

        # success is monotone in N (a pick only switches to the planted label as N grows, and the closure's mode
        # mass grows with N): per-trial bisection for the first successful grid index (H if none)
        lo = np.full(K, -1)
        hi = np.full(K, H)
        while np.any(hi - lo > 1):
            mid = (lo + hi) // 2
            live = hi - lo > 1
            s = succeeds(np.where(live, mid, H))
            hi = np.where(live & s, mid, hi)
            lo = np.where(live & ~s, mid, lo)
        out[g] = np.arange(H)[:, None] >= hi[None, :]
    return out


def simulate_adaptive_success_grid(v: RareVisits, n_grid, Delta: float, epsilon: float, mu_stop: float,
                                   delta: float = 0.5):
    """(success [G, K], queries [G, K]) of adaptive SFT-sharpening (Eq. 10, MLE over the AdaBoN closure) for every
    n of the grid (prefixes of one draw). A rare visit costs max(k_0, K_2) draws with the planted pick if
    k_0 ≤ K_q, else K_q draws with the other pick (K_y = Eq. 10's threshold for a response of probability y);
    a visit to x_0 costs ⌈μ_stop⌉ = K_1."""
    M = v.M
    K_q = _first_k_at_least(mu_stop, (M - 2) / (M * (M - 1)))
    K_2 = _first_k_at_least(mu_stop, 2.0 / M)
    K_1 = _first_k_at_least(mu_stop, 1.0)
    picked = v.first_planted <= K_q
    cost = np.where(picked, np.maximum(v.first_planted, K_2), K_q)
    sharp = adaptive_pick_planted_probability(M, mu_stop) > 1.0 - delta
    allowed = allowed_failures(epsilon, Delta, v.d)
    G, K = len(n_grid), v.num_trials
    success = np.zeros((G, K), bool)
    queries = np.zeros((G, K), np.int64)
    for g, n in enumerate(n_grid):
        act = v.pos < n
        ok = _plurality_correct(v, act, picked) if sharp else np.zeros((K, v.d), bool)
        success[g] = (~ok).sum(1) <= allowed
        rare_n = np.bincount(v.trial[act], minlength=K)
        queries[g] = K_1 * (n - rare_n) + np.bincount(v.trial[act], weights=cost[act], minlength=K).astype(np.int64)
    return success, queries
