"""Choosing N from the theory (NumPy only: works for simulated policies and, via samples, for real models).

From a sample of a model's own responses per prompt, estimate the mass p(x) of the most likely response seen
(with a lower confidence bound) and turn it into recommendations:

* **best-of-N at inference time** — Proposition C.1: ``N ≥ log(1/ρ) / p(x)`` makes BoN with the log-prob
  self-reward return a response at least as likely as the pilot's mode with probability ≥ 1 − ρ (exactly the
  argmax when the mode seen is the argmax). Across prompts we report the (1 − ε)-quantile of the per-prompt N
  (Prop. C.1 then holds on all but an ε fraction of the prompts) and the maximum.
* **SFT-sharpening** — Theorem 4.1: ``N* = c · C_cov · log(2/δ) / ε`` with ``C_cov = E_x[1 / π_base(y*(x)|x)]``
  estimated by plugging in the lower bounds (conservative). The absolute constant ``c`` is not given by the paper;
  ``constant=1`` is a convention, so the SFT number is an order of magnitude, not a guarantee.

Lower bounds: when the pilot observed likelihoods (sample-and-evaluate, Definition 3.2) the mode's mass
exp(log π(ŷ|x)) is exact; when only responses are observed (e.g. extracted answers), the mode's frequency k/M
gets a one-sided Clopper–Pearson bound at the given confidence.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np
from scipy import stats

from sharpsim._validation import check_count, check_float

__all__ = ["ModeMassEstimate", "SharpeningPlan", "estimate_mode_mass", "expected_bon_by_n",
           "expected_majority_by_n", "pass_at_n_estimate", "pass_at_n", "plan_from_samples", "plan_from_table", "plan_n",
           "recommend_n_bon", "recommend_n_sft"]


@dataclasses.dataclass
class ModeMassEstimate:
    """Per prompt: the mode seen, its estimated mass ``p_hat``, a lower bound ``p_lower``, the pilot size."""

    mode: list
    p_hat: np.ndarray
    p_lower: np.ndarray
    num_samples: np.ndarray
    source: str  # "exact" (from a probability table), "likelihood" or "frequency"
    confidence: float


def estimate_mode_mass(samples: Sequence[Sequence[Hashable]], logps=None, *, confidence: float = 0.95
                       ) -> ModeMassEstimate:
    """Estimate, per prompt, the mass of the most likely response in a pilot sample.

    ``samples``: per prompt, the M responses (any hashables; ``None`` = no answer, never the mode).
    ``logps``: optional ``[X, M]`` log π(y|x) of each response: the mode is then the most likely one and its
    mass is known exactly (``p_lower = p_hat = exp(max log π)``). Otherwise the mode is the most frequent
    response, ``p_hat = k/M`` and ``p_lower`` a one-sided Clopper–Pearson bound at ``confidence``.
    """
    check_float("confidence", confidence, low=0.0, high=1.0, high_open=True)
    X = len(samples)
    if X == 0:
        raise ValueError("samples is empty: pass the pilot responses of at least one prompt")
    modes, p_hat, p_lower, m = [], np.zeros(X), np.zeros(X), np.zeros(X, dtype=int)
    if logps is not None:
        logps = np.asarray(logps, dtype=float)
        if logps.ndim != 2 or logps.shape[0] != X:
            raise ValueError(f"logps must be [X={X}, M] (one row per prompt), got shape {logps.shape}")
        if np.isnan(logps).any() or (logps > 1e-4).any():
            raise ValueError("logps must be log-probabilities: no NaN and <= 0 (-inf is allowed for mass 0)")
        for i, row in enumerate(samples):
            if len(row) != logps.shape[1]:
                raise ValueError(f"prompt {i}: {len(row)} responses but {logps.shape[1]} log-probs")
            j = int(np.argmax(logps[i]))
            modes.append(row[j])
            p_hat[i] = p_lower[i] = math.exp(logps[i, j])
            m[i] = len(row)
        return ModeMassEstimate(modes, p_hat, p_lower, m, "likelihood", confidence)
    ks = np.zeros(X)
    for i, row in enumerate(samples):
        if len(row) == 0:
            raise ValueError(f"prompt {i} has no samples")
        counts = Counter(r for r in row if r is not None)
        mode, k = (counts.most_common(1)[0] if counts else (None, 0))
        modes.append(mode)
        ks[i], m[i] = k, len(row)
    p_hat = ks / m
    from sharpsim.complexity import clopper_pearson  # the one home of the interval

    p_lower = clopper_pearson(ks, m, level=confidence, side="lower")[0]
    return ModeMassEstimate(modes, p_hat, p_lower, m, "frequency", confidence)


def recommend_n_bon(p, rho: float) -> np.ndarray:
    """Proposition C.1: the smallest integer N with N ≥ log(1/ρ)/p (``inf`` where p = 0)."""
    check_float("rho", rho, low=0.0, high=1.0, high_open=True)
    p = np.asarray(p, dtype=float)
    if not np.all((p >= 0) & (p <= 1)):  # also catches NaN
        raise ValueError(f"masses p must lie in [0, 1] (no NaN), got {p[~((p >= 0) & (p <= 1))][:3].tolist()}")
    with np.errstate(divide="ignore"):
        return np.where(p > 0, np.ceil(np.log(1.0 / rho) / np.maximum(p, 1e-300) - 1e-9), np.inf)


def recommend_n_sft(c_cov: float, epsilon: float, delta: float, *, constant: float = 1.0) -> float:
    """Theorem 4.1: N* = c · C_cov · log(2/δ) / ε (``constant`` = c, unspecified in the paper); the formula's
    one home is ``bounds.sft_responses_per_prompt`` (this keeps the planner's argument checks)."""
    import bounds

    for name, v in (("epsilon", epsilon), ("delta", delta)):
        check_float(name, v, low=0.0, high=1.0, high_open=True)
    check_float("c_cov", c_cov, low=1.0, low_open=False, hint="C_cov = E_x[1/π_base(y*(x)|x)] is at least 1")
    check_float("constant", constant, low=0.0)
    return float(bounds.sft_responses_per_prompt(epsilon, delta, c_cov, c=constant))


@dataclasses.dataclass
class SharpeningPlan:
    """Recommended N for inference-time BoN and SFT-sharpening, with the estimates they come from."""

    estimate: ModeMassEstimate
    rho: float
    epsilon: float
    delta: float
    n_bon_per_prompt: np.ndarray  # Prop. C.1 per prompt, from the lower bounds
    n_bon: float                   # (1 − ε)-quantile over prompts
    n_bon_max: float               # all prompts
    c_cov: float                   # plug-in E_x[1 / p_lower(x)]
    n_sft: float                   # Theorem 4.1 with constant c
    constant: float

    def summary(self) -> dict:
        return {"rho": self.rho, "epsilon": self.epsilon, "delta": self.delta, "n_bon": self.n_bon,
                "n_bon_max": self.n_bon_max, "c_cov": self.c_cov, "n_sft": self.n_sft, "constant": self.constant,
                "median_p_lower": float(np.median(self.estimate.p_lower)), "source": self.estimate.source}


def _plan(est: ModeMassEstimate, rho, epsilon, delta, constant, weights=None) -> SharpeningPlan:
    for name, v in (("epsilon", epsilon), ("delta", delta)):
        check_float(name, v, low=0.0, high=1.0, high_open=True)
    check_float("constant", constant, low=0.0)
    n_pp = recommend_n_bon(est.p_lower, rho)
    finite = np.isfinite(n_pp)
    n_bon = float(np.quantile(n_pp, 1.0 - epsilon, method="higher")) if len(n_pp) else float("nan")
    w = np.full(len(n_pp), 1.0 / max(len(n_pp), 1)) if weights is None else np.asarray(weights, float)
    with np.errstate(divide="ignore"):
        c_cov = float(np.sum(w / est.p_lower)) if np.all(est.p_lower > 0) else float("inf")
    n_sft = recommend_n_sft(c_cov, epsilon, delta, constant=constant) if np.isfinite(c_cov) else float("inf")
    return SharpeningPlan(est, rho, epsilon, delta, n_pp, n_bon, float(n_pp.max()) if finite.all() else float("inf"),
                          c_cov, n_sft, constant)


def plan_n(samples: Sequence[Sequence[Hashable]], logps=None, *, rho: float = 0.1, epsilon: float = 0.1,
           delta: float = 0.1, confidence: float = 0.95, constant: float = 1.0) -> SharpeningPlan:
    """Plan N from pilot samples (see the module docstring)."""
    return _plan(estimate_mode_mass(samples, logps, confidence=confidence), rho, epsilon, delta, constant)


def plan_from_samples(responses: np.ndarray, *, rho: float = 0.1, epsilon: float = 0.1, delta: float = 0.1,
                      confidence: float = 0.95, log_probs=None, constant: float = 1.0) -> SharpeningPlan:
    """Plan from an ``[X, M]`` integer array of sampled responses of a simulated policy (e.g.
    ``TabularPolicy.sample``); with ``log_probs`` (``[X, M]``, from ``sample_and_log_prob``) the likelihood-based
    estimate is used."""
    responses = np.asarray(responses)
    rows = [list(map(int, r)) for r in responses]
    return plan_n(rows, log_probs, rho=rho, epsilon=epsilon, delta=delta, confidence=confidence,
                  constant=constant)


def plan_from_table(probs, *, rho: float = 0.1, epsilon: float = 0.1, delta: float = 0.1, mu=None,
                    constant: float = 1.0) -> SharpeningPlan:
    """Exact plan for a simulated policy given as an ``[X, Y]`` probability table (e.g. ``TabularPolicy.probs``):
    p(x) = max_y π(y|x), C_cov = Σ_x μ(x) / p(x) (μ uniform by default).

    Every row must be a probability law: finite, non-negative entries summing to 1 within ``1e-4`` (a float32
    table of 10⁶ columns sums to 1 within ~1e-5). ``mu``, if given, must be finite, non-negative, of length X
    and not all zero (it is renormalised).
    """
    try:
        P = np.asarray(probs, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"probs must be a numeric [X, Y] array, got {type(probs).__name__}") from err
    if P.ndim != 2 or 0 in P.shape:
        raise ValueError(f"probs must be a non-empty [X, Y] table, got shape {P.shape}")
    if not np.isfinite(P).all():
        raise ValueError(f"probs has non-finite entries (first at row {int(np.argwhere(~np.isfinite(P))[0, 0])})")
    if (P < 0).any():
        raise ValueError(f"probs has negative entries (first at row {int(np.argwhere(P < 0)[0, 0])})")
    sums = P.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-4)
    if bad.size:
        raise ValueError(f"every row of probs must sum to 1 (within 1e-4): row {int(bad[0])} sums to "
                         f"{sums[bad[0]]:.6g}; normalise the table (or pass exp(log_probs) of a normalised policy)")
    p = P.max(axis=1)
    est = ModeMassEstimate(list(P.argmax(axis=1)), p, p, np.zeros(len(p), int), "exact", 1.0)
    w = None
    if mu is not None:
        w = np.asarray(mu, dtype=float)
        if w.shape != (P.shape[0],):
            raise ValueError(f"mu must have one weight per prompt, shape ({P.shape[0]},), got {w.shape}")
        if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError("mu must be finite, non-negative and not all zero")
        w = w / w.sum()
    return _plan(est, rho, epsilon, delta, constant, w)


# --- expected best-of-N from a fixed pool of M samples (used by the miniature study) ---------------------


def expected_bon_by_n(rewards, values, n_values: Sequence[int]) -> np.ndarray:
    """E[value of the best-of-n pick] over uniformly random size-n subsets of the M pooled samples, exactly.

    Ties in reward are broken uniformly at random (so a tie group contributes its mean value). This is the
    paper's "simulate N < N_max by subsampling", without Monte Carlo noise. Returns one value per n.
    """
    r = np.asarray(rewards, float)
    v = np.asarray(values, float)
    if r.ndim != 1 or r.shape != v.shape or r.size == 0:
        raise ValueError(f"rewards and values must be 1-D of the same non-zero length, got {r.shape} and {v.shape}")
    if np.isnan(r).any() or np.isnan(v).any():
        raise ValueError("rewards and values must not contain NaN (a reward of -inf ranks last)")
    M = len(r)
    levels = np.unique(r)[::-1]
    out = []
    for n in n_values:
        if not 1 <= n <= M:
            raise ValueError(f"n must be in [1, {M}], got {n}")
        total, above, acc = math.comb(M, n), 0, 0.0
        for lv in levels:
            g = r == lv
            size = int(g.sum())
            prob = (math.comb(M - above, n) - math.comb(M - above - size, n)) / total
            acc += prob * float(v[g].mean())
            above += size
        out.append(acc)
    return np.asarray(out)


def pass_at_n_estimate(num_correct: int, M: int, n: int) -> float:
    """Unbiased estimate of Pass@n from M samples of which ``num_correct`` = c are correct (Chen et al. 2021, HumanEval):

    ``1 − C(M−c, n) / C(M, n)``, the probability that a uniformly random size-n subset of the M samples holds a
    correct one. Computed in the product form ``C(M−c, n)/C(M, n) = Π_{i=M−c+1}^{M} (1 − n/i)`` as
    ``−expm1(Σ log1p(−n/i))``: no binomial coefficient is formed (no overflow for large M) and there is no
    catastrophic cancellation when the result is tiny (the naive ``1 − ratio`` loses all digits of, e.g.,
    c = 1, M = 10⁹, n = 1, whose value is 10⁻⁹). Exactly 1.0 when M − c < n (every subset holds a correct one).

    Requires integers ``M >= 1``, ``0 <= num_correct <= M`` and ``1 <= n <= M`` (the estimator is undefined for
    n > M: draw more samples, or report Pass@M).
    """
    M = check_count("M (number of samples)", M)
    c = check_count("num_correct", num_correct, minimum=0)
    n = check_count("n", n)
    if c > M:
        raise ValueError(f"num_correct = {c} exceeds the number of samples M = {M}: need 0 <= num_correct <= M")
    if n > M:
        raise ValueError(f"n = {n} exceeds the number of samples M = {M}: the unbiased Pass@n estimator needs "
                         f"n <= M (draw at least n samples, or report Pass@{M})")
    if M - c < n:
        return 1.0
    if c == 0:
        return 0.0
    i = np.arange(M - c + 1, M + 1, dtype=np.float64)
    return float(-np.expm1(np.sum(np.log1p(-n / i))))


#: Deprecated name of :func:`pass_at_n_estimate` (it clashed with :func:`sharpsim.metrics.pass_at_n`, the exact
#: Pass@N of a tabular policy).
pass_at_n = pass_at_n_estimate


def expected_majority_by_n(answers: Sequence[Hashable | None], correct: Sequence[bool], n_values: Sequence[int],
                           *, rng: np.random.Generator, num_subsets: int = 400) -> np.ndarray:
    """Monte Carlo E[correctness of the majority-vote pick] over random size-n subsets (ties uniformly)."""
    M = len(answers)
    if len(correct) != M or M == 0:
        raise ValueError(f"answers and correct must have the same non-zero length, got {M} and {len(correct)}")
    check_count("num_subsets", num_subsets)
    out = []
    for n in n_values:
        if not 1 <= n <= M:
            raise ValueError(f"n must be in [1, {M}] (the pool size), got {n}")
        hits = 0.0
        for _ in range(num_subsets):
            idx = rng.choice(M, size=n, replace=False)
            counts = Counter(answers[i] for i in idx if answers[i] is not None)
            if not counts:
                continue
            top = max(counts.values())
            winners = [a for a, c in counts.items() if c == top]
            a = winners[rng.integers(len(winners))]
            hits += float(next(correct[i] for i in idx if answers[i] == a))
        out.append(hits / num_subsets)
    return np.asarray(out)
