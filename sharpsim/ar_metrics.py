"""Autoregressive metrics: the mass on the sequence-level argmax and the coverage coefficient.

For an autoregressive π over Y = V^H (Eq. 5; App. F.1):

* :func:`argmax_mass` — π(y*_γ(x)|x), the mass on the (1−γ)-approximate maximisers, exact by enumeration or by
  best-first enumeration of the top sequences (:mod:`sharpsim.decoding`), else a Monte-Carlo estimate with a
  Clopper–Pearson interval (:func:`sharpsim.complexity.clopper_pearson`, the one home of that interval);
* :func:`ar_coverage` — C_cov,γ = E_{x~μ}[1/π(y*_γ(x)|x)] (Eq. 6, App. F.1), exact when every prompt's mass
  is, else a simultaneous (Bonferroni) interval. The tabular counterpart is :func:`sharpsim.metrics.coverage`.
  ``coverage_coefficient`` is the deprecated old name of :func:`ar_coverage`.

These were in :mod:`sharpsim.decoding` (which keeps the old names importable); decoding now holds only the
decoders and the exact argmax search.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from sharpsim._validation import check_distribution, check_gamma, check_positive_int
from sharpsim.complexity import clopper_pearson
from sharpsim.decoding import (BRUTE_FORCE_LIMIT, _BestFirst, _check_policy, beam_search, enumerate_log_probs,
                               exact_argmax, greedy)
from sharpsim.policies import sequences_to_index
from sharpsim.policies._autoregressive import AutoregressivePolicy
from sharpsim.policies._markov import MarkovPolicy

__all__ = ["argmax_mass", "MassEstimate", "ar_coverage", "CoverageEstimate", "coverage_coefficient"]


@dataclasses.dataclass(frozen=True)
class MassEstimate:
    """π(y*_γ(x)|x) with an interval: ``lower ≤ value ≤ upper`` (equal when ``exact``).

    ``method`` is "enumerate", "search" or "monte_carlo"; ``log_max`` is the log-probability of the argmax
    used for the threshold and ``argmax_proven`` whether it is proven maximal. For "search" stopped by its
    budget the interval is a hard bound (``value`` = ``lower``, the mass found; ``upper`` adds the mass of the
    open prefixes above the threshold); for "monte_carlo" it is a Clopper–Pearson
    interval at ``confidence`` (and conditional on the threshold when ``argmax_proven`` is False).
    """

    value: float
    lower: float
    upper: float
    exact: bool
    method: str
    log_max: float
    argmax_proven: bool
    confidence: float = 1.0


def _tolerance(log_max: float) -> float:
    """Slack for ties in log space: rounding in a sum of H log-probabilities (float32 vs float64)."""
    eps = 1e-12 if jnp.result_type(float) == jnp.float64 else 1e-5
    return eps * (1.0 + abs(log_max))


def argmax_mass(
    policy: AutoregressivePolicy,
    x: int,
    gamma: float = 0.0,
    *,
    method: str = "auto",
    key: PRNGKeyArray | None = None,
    num_samples: int = 4096,
    confidence: float = 0.95,
    max_nodes: int = 200_000,
    tol: float | None = None,
) -> MassEstimate:
    """π(y*_γ(x)|x), the mass on the (1−γ)-approximate maximisers (App. F.1; γ = 0: the argmax set).

    Membership uses log π(y|x) ≥ log max_y π(y|x) + log(1−γ) − tol, where ``tol`` (default ~1e-5·(1+|log max|)
    in float32, 1e-12·(…) in float64) absorbs rounding so that exact ties count as ties.

    Methods: ``"enumerate"`` (all V^H sequences); ``"search"`` (best-first enumeration of the top sequences
    in decreasing order until they drop below the threshold: exact, or hard bounds if ``max_nodes`` runs
    out); ``"monte_carlo"`` (the fraction of ``num_samples`` draws y ~ π(·|x) inside y*_γ, with a
    Clopper–Pearson interval; needs ``key``); ``"auto"``: enumerate when V^H ≤ ``BRUTE_FORCE_LIMIT``, else
    search, falling back to Monte Carlo (when ``key`` is given) if the budget runs out.
    """
    _check_policy(policy)
    check_gamma(gamma)
    policy._check_prompt(x)
    x = int(x)
    log_slack = math.log1p(-float(gamma))
    if method == "auto":
        method = "enumerate" if policy.num_sequences <= BRUTE_FORCE_LIMIT else "search"
        fallback = key is not None
    else:
        fallback = False
    if method == "enumerate":
        lps = enumerate_log_probs(policy, x)
        m = float(lps.max())
        thr = m + log_slack - (_tolerance(m) if tol is None else tol)
        val = float(np.sum(np.exp(lps[lps >= thr])))
        return MassEstimate(val, val, val, True, "enumerate", m, True)
    if method == "search":
        search = _BestFirst(policy, x, max_nodes=max_nodes, batch_size=64)
        found, m, thr = 0.0, None, None
        for _, lp in search:
            if m is None:
                m = float(lp)
                thr = m + log_slack - (_tolerance(m) if tol is None else tol)
            if lp < thr:
                return MassEstimate(found, found, found, True, "search", m, True)
            found += math.exp(lp)
        if not search.exhausted_budget:  # the whole tree was enumerated
            return MassEstimate(found, found, found, True, "search", m, True)
        if m is not None:
            # Unexplored sequences with mass ≥ threshold lie below open prefixes of log-prob ≥ threshold.
            rest = sum(math.exp(-neg) for neg, _, _ in search.heap if -neg >= thr)
            if not fallback or rest == 0.0:
                return MassEstimate(found, found, min(1.0, found + rest), rest == 0.0, "search", m, True)
        elif not fallback:
            raise ValueError(
                f"best-first search found no complete sequence within max_nodes={max_nodes}; raise max_nodes "
                "or use method='monte_carlo' with a key."
            )
        method = "monte_carlo"
    if method == "monte_carlo":
        if key is None:
            raise ValueError("method='monte_carlo' needs a PRNG key: pass key=jax.random.key(seed).")
        num_samples = check_positive_int(num_samples, "num_samples")
        best = exact_argmax(policy, x, method="best_first" if not isinstance(policy, MarkovPolicy) else "viterbi",
                            max_nodes=max_nodes)
        m = best.log_prob
        thr = m + log_slack - (_tolerance(m) if tol is None else tol)
        _, lps = policy.sample_and_log_prob(key, x, num_samples)
        k = int(np.sum(np.asarray(lps, np.float64) >= thr))
        lo, hi = clopper_pearson(k, num_samples, level=confidence)
        return MassEstimate(k / num_samples, float(lo), float(hi), False, "monte_carlo", m, best.optimal, confidence)
    raise ValueError(f"method must be 'auto', 'enumerate', 'search' or 'monte_carlo', got {method!r}.")


@dataclasses.dataclass(frozen=True)
class CoverageEstimate:
    """C_cov,γ = Σ_x μ(x) / π(y*_γ(x)|x) with bounds; ``per_prompt`` holds each prompt's :class:`MassEstimate`.

    When some masses are Monte-Carlo estimates, each prompt's interval is taken at level
    1 − (1 − confidence)/X (Bonferroni), so [lower, upper] holds with probability ≥ ``confidence``.
    """

    value: float
    lower: float
    upper: float
    exact: bool
    per_prompt: tuple


def ar_coverage(
    policy: AutoregressivePolicy,
    mu: Float[Array, " X"] | None = None,
    gamma: float = 0.0,
    *,
    key: PRNGKeyArray | None = None,
    confidence: float = 0.95,
    **mass_kwargs,
) -> CoverageEstimate:
    """The coverage coefficient C_cov,γ = E_{x~μ}[1 / π(y*_γ(x)|x)] (Eq. 6; App. F.1) of an autoregressive π,
    μ uniform by default (the tabular counterpart is :func:`sharpsim.metrics.coverage`, exact by construction).

    Exact when every prompt's :func:`argmax_mass` is exact; otherwise a simultaneous interval.
    ``mass_kwargs`` go to :func:`argmax_mass` (``method``, ``num_samples``, ``max_nodes``, ``tol``).
    """
    _check_policy(policy)
    X = policy.num_prompts
    if mu is None:
        mu = np.full(X, 1.0 / X)
    check_distribution(mu, X)
    mu = np.asarray(mu, np.float64)
    level = 1.0 - (1.0 - confidence) / X
    masses = []
    for x in range(X):
        k = None if key is None else jax.random.fold_in(key, x)
        masses.append(argmax_mass(policy, x, gamma, key=k, confidence=level, **mass_kwargs))

    def total(vals):
        with np.errstate(divide="ignore"):
            return float(np.sum(np.where(mu > 0, mu / np.asarray(vals), 0.0)))

    value = total([m.value for m in masses])
    return CoverageEstimate(value, total([m.upper for m in masses]), total([m.lower for m in masses]),
                            all(m.exact for m in masses), tuple(masses))


#: Deprecated name of :func:`ar_coverage` (kept so old code runs; it clashed with :func:`sharpsim.metrics.coverage`).
coverage_coefficient = ar_coverage


def decoder_hits(policy: AutoregressivePolicy, x: int = 0, beam_widths=(2, 4)):
    """Does each decoder return the sequence-level argmax y*(x)? (Proposition 3.1: greedy does when π(y*) > 1/2.)

    Exact by enumeration of all V^H sequences (``to_tabular``; small V^H only). Returns ``(π(y*|x), the log-prob
    gap from y* to the runner-up, hits [1 + len(beam_widths)])``: greedy's hit, then beam search's at each width
    (its top beam). Pure JAX: ``vmap`` over a batch of policies (e.g. random Markov tables).
    """
    table = policy.to_tabular().log_probs[x]  # [V^H], row-major sequence index
    top, idx = jax.lax.top_k(table, 2)
    V = policy.vocab_size
    y_greedy, _ = greedy(policy, x)
    hits = [sequences_to_index(y_greedy, V) == idx[0]]
    for w in beam_widths:
        beams, _ = beam_search(policy, x, w)
        hits.append(sequences_to_index(beams[0], V) == idx[0])
    return jnp.exp(top[0]), top[0] - top[1], jnp.stack(hits)
