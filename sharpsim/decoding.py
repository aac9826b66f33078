"""Decoding autoregressive policies: token-level heuristics and the exact sequence-level argmax.

The sharpening target of an autoregressive π is the *sequence-level* argmax (Eq. 5)

    y*(x) = argmax_{y ∈ V^H} log π(y | x),

and its (1−γ)-approximate version y*_γ(x) = {y : π(y|x) ≥ (1−γ) max_{y'} π(y'|x)} (App. F.1). Greedy
decoding, beam search and low-temperature sampling are token-level *inference-time* sharpening heuristics
(theory.md §1); Proposition 3.1 says greedy finds y*(x) when π(y*(x)|x) > 1/2, and Propositions E.1/E.2
show that in general it does not (and that the exact argmax is NP-hard).

* :func:`greedy`, :func:`beam_search`, :func:`temperature_sample` — jit-able, one prompt per call.
* :func:`exact_argmax` — Viterbi for :class:`~sharpsim.MarkovPolicy`; an exact best-first search over
  prefixes for any autoregressive policy (prefix log-probabilities never increase along a path, so the
  first complete sequence popped from the priority queue is optimal), with a node budget; brute-force
  enumeration when V^H is small. A budget that runs out returns the best sequence found with
  ``optimal=False`` and an upper bound on the optimum's log-probability.
* :func:`argmax_mass` — π(y*_γ(x)|x), exact by enumeration or by best-first enumeration of the top
  sequences, else a Monte-Carlo estimate with a Clopper–Pearson interval; :func:`coverage_coefficient`
  — C_cov,γ = E_{x~μ}[1/π(y*_γ(x)|x)] (Eq. 6, App. F.1), exact when every prompt's mass is.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from sharpsim._validation import check_distribution, check_gamma, check_positive, check_positive_int
from sharpsim.policies._autoregressive import AutoregressivePolicy, index_to_sequences
from sharpsim.policies._markov import MarkovPolicy

__all__ = [
    "greedy",
    "beam_search",
    "temperature_sample",
    "viterbi",
    "enumerate_log_probs",
    "exact_argmax",
    "ArgmaxResult",
    "argmax_mass",
    "MassEstimate",
    "coverage_coefficient",
    "CoverageEstimate",
    "clopper_pearson",
    "BRUTE_FORCE_LIMIT",
]

#: ``method="auto"`` enumerates all V^H sequences when there are at most this many.
BRUTE_FORCE_LIMIT = 2**16


def _check_policy(policy) -> None:
    if not isinstance(policy, AutoregressivePolicy):
        raise ValueError(
            f"policy must be an AutoregressivePolicy (MarkovPolicy, LinearSoftmaxPolicy, TransformerPolicy), "
            f"got {type(policy).__name__}."
        )


# ==================================================================================================
# Token-level decoding (jit-able)
# ==================================================================================================
def greedy(policy: AutoregressivePolicy, x: Int[Array, ""]) -> tuple[Int[Array, " H"], Float[Array, ""]]:
    """Greedy decoding ŷ_h = argmax_v π_h(v | ŷ_{<h}, x) (Proposition 3.1), with log π(ŷ|x).

    Ties go to the lowest token id. Uses the policy's decoding cache (KV cache for the transformer).
    """
    _check_policy(policy)
    policy._check_prompt(x)
    return _greedy_jit(policy, jnp.asarray(x, jnp.int32))


@jax.jit
def _greedy_jit(policy, x):
    H = policy.horizon

    def step(carry, h):
        prefix, cache, total = carry
        logits, cache = policy._cached_logits(x, prefix, h, cache)
        lp = policy._eos_mask(jax.nn.log_softmax(logits), policy._done(prefix, h))
        tok = jnp.argmax(lp).astype(jnp.int32)
        return (prefix.at[h].set(tok), cache, total + lp[tok]), None

    carry0 = (jnp.zeros(H, jnp.int32), policy._init_cache(x), jnp.zeros((), jnp.result_type(float)))
    (y, _, total), _ = jax.lax.scan(step, carry0, jnp.arange(H))
    return y, total


def beam_search(
    policy: AutoregressivePolicy, x: Int[Array, ""], width: int
) -> tuple[Int[Array, "width H"], Float[Array, " width"]]:
    """Beam search of the given width; returns the final beams sorted by log π(y|x), best first.

    At each position every beam is extended by every token and the ``width`` highest-scoring prefixes
    are kept (ties to the lower flat index). Finished (EOS) beams carry on with forced EOS at log-prob 0.
    When ``width`` exceeds the number of positive-probability sequences the surplus beams have score
    ``-inf``. Width 1 is greedy decoding. Not exact in general (theory.md §4).
    """
    _check_policy(policy)
    policy._check_prompt(x)
    return _beam_jit(policy, jnp.asarray(x, jnp.int32), check_positive_int(width, "width"))


@partial(jax.jit, static_argnames="W")
def _beam_jit(policy, x, W):
    H, V = policy.horizon, policy.vocab_size
    ftype = jnp.result_type(float)

    def step(carry, h):
        beams, scores = carry
        lp = jax.vmap(lambda b: policy._next_log_probs_buffer(x, b, h))(beams)  # [W, V]
        cand = (scores[:, None] + lp).reshape(-1)
        top, idx = jax.lax.top_k(cand, W)  # W ≤ W·V candidates always
        parent, tok = idx // V, (idx % V).astype(jnp.int32)
        return (beams[parent].at[:, h].set(tok), top), None

    beams0 = jnp.zeros((W, H), jnp.int32)
    scores0 = jnp.full((W,), -jnp.inf, ftype).at[0].set(0.0)
    (beams, scores), _ = jax.lax.scan(step, (beams0, scores0), jnp.arange(H))
    return beams, scores


def temperature_sample(
    policy: AutoregressivePolicy, x: Int[Array, ""], num: int, *, key: PRNGKeyArray, temperature: float = 1.0
) -> tuple[Int[Array, "num H"], Float[Array, " num"]]:
    """Sample ``num`` responses with per-token temperature T: y_h ~ softmax(log π_h(·|y_{<h}, x) / T).

    Returns the responses and their log-probabilities under the policy itself (T = 1). T → 0 tends to
    greedy decoding (up to ties, which it splits evenly), T = 1 is plain sampling.
    """
    _check_policy(policy)
    check_positive(temperature, "temperature")
    return policy.sample_and_log_prob(key, x, num, temperature=temperature)


def viterbi(policy: MarkovPolicy, x: Int[Array, ""]) -> tuple[Int[Array, " H"], Float[Array, ""]]:
    """Exact sequence argmax of a Markov policy by dynamic programming (Eq. 5), jit-able.

    δ_h(v) = max_{y_{<h}} log π(y_{<h}, v | x); δ_{h}(v) = max_p δ_{h-1}(p) + log π_h(v|p, x). Ties go to the
    lowest token id (at the end) and the lowest predecessor (on the way back), i.e. to the lowest
    row-major index among co-optimal sequences reachable this way.
    """
    if not isinstance(policy, MarkovPolicy):
        raise ValueError(f"viterbi needs a MarkovPolicy, got {type(policy).__name__}; use exact_argmax for other policies.")
    policy._check_prompt(x)
    return _viterbi_jit(policy, jnp.asarray(x, jnp.int32))


@jax.jit
def _viterbi_jit(policy, x):
    T = policy.effective_log_probs()[x]  # [H, V+1, V]
    V = policy.vocab_size

    def forward(delta, Th):
        scores = delta[:, None] + Th[:V, :]  # [prev, next]
        return jnp.max(scores, axis=0), jnp.argmax(scores, axis=0).astype(jnp.int32)

    delta_last, back = jax.lax.scan(forward, T[0, V], T[1:])
    last = jnp.argmax(delta_last).astype(jnp.int32)

    def backward(tok, bp):
        prev = bp[tok]
        return prev, prev

    _, earlier = jax.lax.scan(backward, last, back, reverse=True)
    y = jnp.concatenate([earlier, last[None]])
    return y, delta_last[last]


# ==================================================================================================
# Exact search (host-side, calling jitted batched scorers)
# ==================================================================================================
@jax.jit
def _batched_next_log_probs(policy, x, prefixes, lengths):
    return jax.vmap(lambda p, h: policy._next_log_probs_buffer(x, p, h))(prefixes, lengths)


@jax.jit
def _batched_log_prob(policy, x, seqs):
    return jax.vmap(lambda y: jnp.sum(policy.token_log_probs(x, y)))(seqs)


def enumerate_log_probs(
    policy: AutoregressivePolicy, x: int, *, max_size: int = 2**22, chunk_size: int = 1024
) -> np.ndarray:
    """Brute force: log π(y|x) of all V^H sequences, in row-major order (float64 NumPy array ``[V^H]``).

    Scores ``chunk_size`` sequences per jitted call (the last chunk padded, so one compile).
    """
    _check_policy(policy)
    policy._check_prompt(x)
    V, H = policy.vocab_size, policy.horizon
    size = V**H
    if size > max_size:
        raise ValueError(f"V^H = {size} exceeds max_size={max_size}; brute force is for small instances.")
    chunk = min(check_positive_int(chunk_size, "chunk_size"), size)
    out = np.empty(size, np.float64)
    xj = jnp.asarray(x, jnp.int32)
    for start in range(0, size, chunk):
        idx = np.minimum(np.arange(start, start + chunk), size - 1)
        seqs = index_to_sequences(jnp.asarray(idx, jnp.int32), V, H)
        vals = np.asarray(_batched_log_prob(policy, xj, seqs), np.float64)
        n = min(chunk, size - start)
        out[start:start + n] = vals[:n]
    return out


@dataclasses.dataclass(frozen=True)
class ArgmaxResult:
    """Result of :func:`exact_argmax`.

    Attributes:
        sequence: ``[H]`` int array, the argmax (or, when ``optimal`` is False, the best sequence found).
        log_prob: log π(sequence | x).
        optimal: True when the sequence is proven to be a sequence-level argmax (Eq. 5). False only when a
            best-first search ran out of its node budget.
        method: "viterbi", "best_first" or "brute_force".
        nodes_expanded: prefixes expanded by best-first search (V^H scored sequences for brute force,
            H·V table rows for Viterbi).
        upper_bound: an upper bound on max_y log π(y|x); equals ``log_prob`` when ``optimal``.
    """

    sequence: np.ndarray
    log_prob: float
    optimal: bool
    method: str
    nodes_expanded: int
    upper_bound: float


class _BestFirst:
    """Best-first (uniform-cost) search over prefixes of an autoregressive policy.

    Nodes are prefixes keyed by log π(prefix|x), which can only decrease when a token is appended, so
    complete sequences leave the queue in non-increasing order of log π(y|x): the first one is a
    sequence-level argmax, and iterating gives the top sequences in order. Up to ``batch_size``
    incomplete prefixes are expanded per jitted call (expanding a lower node early never breaks the order).
    A prefix that contains EOS is complete (the rest is forced EOS at log-prob 0).
    """

    def __init__(self, policy, x, *, max_nodes, batch_size):
        self.policy, self.x = policy, jnp.asarray(x, jnp.int32)
        self.H, self.V, self.eos = policy.horizon, policy.vocab_size, policy.eos_id
        self.max_nodes = check_positive_int(max_nodes, "max_nodes")
        self.K = check_positive_int(batch_size, "batch_size")
        self.counter = itertools.count()
        self.heap = [(0.0, next(self.counter), ())]
        self.nodes = 0
        self.exhausted_budget = False

    def complete(self, prefix) -> bool:
        return len(prefix) == self.H or (self.eos is not None and len(prefix) > 0 and prefix[-1] == self.eos)

    def pad(self, prefix) -> np.ndarray:
        fill = self.eos if self.eos is not None else 0
        return np.array(list(prefix) + [fill] * (self.H - len(prefix)), np.int32)

    def upper_bound(self) -> float:
        return -self.heap[0][0] if self.heap else -math.inf

    def __iter__(self):
        """Yield ``(sequence [H], log_prob)`` in non-increasing order; stop when done or out of budget."""
        heap = self.heap
        while heap:
            if self.complete(heap[0][2]):
                neg, _, pref = heapq.heappop(heap)
                yield self.pad(pref), -neg
                continue
            batch = []
            while heap and len(batch) < self.K and not self.complete(heap[0][2]):
                batch.append(heapq.heappop(heap))
            room = self.max_nodes - self.nodes
            if room < len(batch):
                for item in batch[room:]:
                    heapq.heappush(heap, item)
                batch = batch[:room]
                if not batch:
                    self.exhausted_budget = True
                    return
            self._expand(batch)

    def _expand(self, batch):
        prefixes = np.zeros((self.K, self.H), np.int32)
        lengths = np.zeros(self.K, np.int32)
        for i, (_, _, pref) in enumerate(batch):
            prefixes[i, :len(pref)] = pref
            lengths[i] = len(pref)
        lp = np.asarray(_batched_next_log_probs(self.policy, self.x, jnp.asarray(prefixes), jnp.asarray(lengths)),
                        np.float64)
        self.nodes += len(batch)
        for i, (neg, _, pref) in enumerate(batch):
            for v in np.flatnonzero(np.isfinite(lp[i])):
                heapq.heappush(self.heap, (neg - lp[i, v], next(self.counter), pref + (int(v),)))

    def greedy_completion(self, prefix) -> tuple[np.ndarray, float]:
        """Complete a prefix greedily (for the best-effort answer when the budget runs out)."""
        pref, total = tuple(prefix), 0.0
        while not self.complete(pref):
            buf = np.zeros((1, self.H), np.int32)
            buf[0, :len(pref)] = pref
            lp = np.asarray(_batched_next_log_probs(self.policy, self.x, jnp.asarray(buf),
                                                    jnp.asarray([len(pref)], jnp.int32)), np.float64)[0]
            v = int(np.argmax(lp))
            pref, total = pref + (v,), total + lp[v]
        return self.pad(pref), total


def exact_argmax(
    policy: AutoregressivePolicy,
    x: int,
    *,
    method: str = "auto",
    max_nodes: int = 200_000,
    batch_size: int = 64,
) -> ArgmaxResult:
    """The sequence-level argmax y*(x) = argmax_y log π(y|x) (Eq. 5) and its log-probability.

    Args:
        policy: any :class:`~sharpsim.policies.AutoregressivePolicy`.
        x: the prompt id.
        method: ``"viterbi"`` (Markov tables only, O(H V²)), ``"best_first"`` (any policy; exact unless the
            node budget runs out), ``"brute_force"`` (all V^H sequences), or ``"auto"``: Viterbi for a
            :class:`~sharpsim.MarkovPolicy`, brute force when V^H ≤ ``BRUTE_FORCE_LIMIT``, best-first otherwise.
        max_nodes: best-first budget (prefix expansions). When it runs out the result holds the best
            complete sequence seen so far or the greedy completion of the most promising prefix, whichever
            is more likely, with ``optimal=False`` and ``upper_bound`` = the best open prefix's log-prob.
        batch_size: prefixes expanded per jitted call in best-first search.

    Finding the argmax is NP-hard in general (Proposition E.1): best-first search can expand
    exponentially many prefixes on flat distributions.
    """
    _check_policy(policy)
    policy._check_prompt(x)
    x = int(x)
    if method == "auto":
        if isinstance(policy, MarkovPolicy):
            method = "viterbi"
        elif policy.num_sequences <= BRUTE_FORCE_LIMIT:
            method = "brute_force"
        else:
            method = "best_first"
    if method == "viterbi":
        y, lp = viterbi(policy, x)
        return ArgmaxResult(np.asarray(y), float(lp), True, "viterbi",
                            policy.horizon * policy.vocab_size, float(lp))
    if method == "brute_force":
        lps = enumerate_log_probs(policy, x)
        i = int(np.argmax(lps))
        y = np.asarray(index_to_sequences(jnp.asarray(i), policy.vocab_size, policy.horizon))
        return ArgmaxResult(y, float(lps[i]), True, "brute_force", lps.size, float(lps[i]))
    if method == "best_first":
        search = _BestFirst(policy, x, max_nodes=max_nodes, batch_size=batch_size)
        for y, lp in search:
            return ArgmaxResult(y, float(lp), True, "best_first", search.nodes, float(lp))
        # Budget exhausted: best complete sequence in the queue vs greedy completion of the top prefix.
        bound = search.upper_bound()
        complete = [(neg, pref) for neg, _, pref in search.heap if search.complete(pref)]
        best_y, best_lp = None, -math.inf
        if complete:
            neg, pref = min(complete)
            best_y, best_lp = search.pad(pref), -neg
        top = min((item for item in search.heap if not search.complete(item[2])), default=None)
        if top is not None:
            y, lp_rest = search.greedy_completion(top[2])
            if -top[0] + lp_rest > best_lp:
                best_y, best_lp = y, -top[0] + lp_rest
        return ArgmaxResult(best_y, float(best_lp), False, "best_first", search.nodes, float(bound))
    raise ValueError(f"method must be 'auto', 'viterbi', 'best_first' or 'brute_force', got {method!r}.")


# ==================================================================================================
# Mass on y*_γ(x) and the coverage coefficient
# ==================================================================================================
def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) two-sided binomial confidence interval for a proportion
    (:func:`sharpsim.complexity.proportion_interval` for one count)."""
    from sharpsim.complexity import proportion_interval

    lo, hi = proportion_interval(successes, trials, method="clopper-pearson", level=confidence)
    return float(lo), float(hi)


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
        lo, hi = clopper_pearson(k, num_samples, confidence)
        return MassEstimate(k / num_samples, lo, hi, False, "monte_carlo", m, best.optimal, confidence)
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


def coverage_coefficient(
    policy: AutoregressivePolicy,
    mu: Float[Array, " X"] | None = None,
    gamma: float = 0.0,
    *,
    key: PRNGKeyArray | None = None,
    confidence: float = 0.95,
    **mass_kwargs,
) -> CoverageEstimate:
    """The coverage coefficient C_cov,γ = E_{x~μ}[1 / π(y*_γ(x)|x)] (Eq. 6; App. F.1), μ uniform by default.

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
