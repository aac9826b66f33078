"""Decoding autoregressive policies: token-level heuristics and the exact sequence-level argmax.

(The mass on the argmax and the coverage coefficient are in :mod:`sharpsim.ar_metrics`; their old names
``decoding.argmax_mass`` / ``coverage_coefficient`` / ``MassEstimate`` / ``CoverageEstimate`` still resolve.)

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

from sharpsim._validation import check_count, check_positive, check_positive_int
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
    "BRUTE_FORCE_LIMIT",
    "ONE_CALL_ENUMERATE_LIMIT",
]

#: ``method="auto"`` enumerates all V^H sequences when there are at most this many.
BRUTE_FORCE_LIMIT = 2**16

#: Trees of at most this many sequences are scored in ONE jitted call that also takes the argmax on the device
#: (``method="auto"`` for a non-Markov policy, and ``method="best_first"`` given ``enumerate_limit``): a
#: best-first search needs at least H sequential expansion calls, each a dispatch plus Python heap work, and
#: ``enumerate_log_probs`` a call per chunk of 1,024 plus a float64 copy of every log-probability; on such small
#: trees one program is cheaper than either (measured in docs/performance.md).
ONE_CALL_ENUMERATE_LIMIT = 4096


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


@jax.jit
def _enumerated_argmax(policy, x):
    """(sequence [H], log π) of the first most likely of all V^H sequences, in one program."""
    seqs = index_to_sequences(jnp.arange(policy.num_sequences, dtype=jnp.int32), policy.vocab_size, policy.horizon)
    lps = _batched_log_prob(policy, x, seqs)
    i = jnp.argmax(lps)
    return seqs[i], lps[i]


def _argmax_in_one_call(policy, x: int) -> "ArgmaxResult":
    """Brute force in one program: the same sequence and log-probability as ``method="brute_force"``."""
    y, lp = _enumerated_argmax(policy, jnp.asarray(x, jnp.int32))
    lp = float(lp)
    return ArgmaxResult(np.asarray(y), lp, True, "brute_force", policy.num_sequences, lp)


def _prefix_tree_size(V: int, H: int) -> int:
    """Internal nodes of the prefix tree (prefixes of length 0..H-1): what an exhaustive search expands."""
    return H if V == 1 else (V**H - 1) // (V - 1)


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
    enumerate_limit: int = 0,
) -> ArgmaxResult:
    """The sequence-level argmax y*(x) = argmax_y log π(y|x) (Eq. 5) and its log-probability.

    Args:
        policy: any :class:`~sharpsim.policies.AutoregressivePolicy`.
        x: the prompt id.
        method: ``"viterbi"`` (Markov tables only, O(H V²)), ``"best_first"`` (any policy; exact unless the
            node budget runs out), ``"brute_force"`` (all V^H sequences), or ``"auto"``: Viterbi for a
            :class:`~sharpsim.MarkovPolicy`, brute force when V^H ≤ ``BRUTE_FORCE_LIMIT`` (in one jitted call
            when V^H ≤ ``ONE_CALL_ENUMERATE_LIMIT``; same answer), best-first otherwise.
        max_nodes: best-first budget (prefix expansions). When it runs out the result holds the best
            complete sequence seen so far or the greedy completion of the most promising prefix, whichever
            is more likely, with ``optimal=False`` and ``upper_bound`` = the best open prefix's log-prob.
        batch_size: prefixes expanded per jitted call in best-first search.
        enumerate_limit: ``"best_first"`` only: score all V^H sequences in one jitted call instead of searching
            when V^H ≤ ``enumerate_limit`` and ``max_nodes`` covers every prefix of the tree (so the search could
            not have run out of budget); the result then says ``method="brute_force"`` and
            ``nodes_expanded = V^H``. The default 0 always searches (node counts are the search's own); e.g.
            :data:`ONE_CALL_ENUMERATE_LIMIT` takes the faster route on small trees.

    Finding the argmax is NP-hard in general (Proposition E.1): best-first search can expand
    exponentially many prefixes on flat distributions.
    """
    _check_policy(policy)
    policy._check_prompt(x)
    x = int(x)
    if method == "auto":
        if isinstance(policy, MarkovPolicy):
            method = "viterbi"
        elif policy.num_sequences <= ONE_CALL_ENUMERATE_LIMIT:
            return _argmax_in_one_call(policy, x)
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
        max_nodes = check_positive_int(max_nodes, "max_nodes")
        enumerate_limit = check_count("enumerate_limit", enumerate_limit, minimum=0, hint="0 always searches")
        V, H = policy.vocab_size, policy.horizon
        if policy.num_sequences <= enumerate_limit and max_nodes >= _prefix_tree_size(V, H):
            return _argmax_in_one_call(policy, x)
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
# Old names: the autoregressive metrics moved to sharpsim.ar_metrics
# ==================================================================================================
_MOVED = {"argmax_mass", "MassEstimate", "coverage_coefficient", "ar_coverage", "CoverageEstimate"}


def __getattr__(name):
    """``sharpsim.decoding.argmax_mass`` etc. still resolve: they live in :mod:`sharpsim.ar_metrics` now."""
    if name in _MOVED:
        from sharpsim import ar_metrics

        return getattr(ar_metrics, name)
    raise AttributeError(f"module 'sharpsim.decoding' has no attribute {name!r}")


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Deprecated: :func:`sharpsim.complexity.clopper_pearson` ``(k, n, level=confidence)`` as two floats."""
    from sharpsim.complexity import clopper_pearson as _cp

    lo, hi = _cp(successes, trials, level=confidence)
    return float(lo), float(hi)

