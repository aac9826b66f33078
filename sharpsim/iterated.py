"""Iterated self-sharpening: rounds k = 1…K with the self-reward of the *current* policy, r_self = log π_k.

The paper analyses one round: SFT-sharpening toward π^BoN_N (Theorem 4.1) and RLHF-sharpening toward
π*_β ∝ π_base^{1+1/β} (Eq. 8, Theorem 4.2), both against a fixed π_base. Here round k treats π_k as the base
(its oracle wraps π_k, the queries of every round are counted) and fits π_{k+1}; π_0 = π_base.

Exact per-round targets on tabular policies (the n → ∞ limits):

* SFT: π_{k+1} = BoN_N(π_k) (:func:`sharpsim.exact.bon_policy`). Since the best of N draws from BoN_N(π) is
  the best of N² draws from π, **BoN_N applied k times is BoN_{N^k}** (ties split uniformly in both):
  k rounds at N responses per pick reach the one-shot target of N^k responses per pick (Prop. C.1 / Thm 4.1).
* Eq. 8: π_{k+1} ∝ π_k^{1+1/β}, so π_k = π_base^{(1+1/β)^k} (:func:`sharpsim.power.power_policy`), the
  one-shot optimum π*_{β_k} with 1 + 1/β_k = (1 + 1/β)^k.

Finite-sample rounds (:func:`iterated_sft`, :func:`iterated_rlhf`) use a stratified design: each prompt gets
n picks (SFT: n·N queries; Eq. 8: n pairs, 2n queries) per round from the round's
:class:`~sharpsim.oracle.SampleEvaluateOracle`, and the fit is the exact tabular one (normalised pick counts;
Eq. 8's closed form, :func:`sharpsim.classes.tabular_eq8_minimizer`). ``memory`` decides the training set:
``"replace"`` uses only the round's own samples (Shumailov et al. 2024's recursive training), ``"accumulate"``
every sample so far (Gerstgrasser et al. 2024). N = 1 is plain self-training (no selection): each π_k(y) is
then a martingale and :func:`expected_heterozygosity` gives E[1 − Σ_y π_k(y|x)²] exactly for both memories.

Rounds run in one ``lax.scan``; vmap over trial keys outside. ``n_used`` (traced) uses the first n_used of
``n`` draws per prompt, so a sweep over n is a ``vmap`` with one compile.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray
from scipy.special import gammaln

from sharpsim import rewards as _rewards
from sharpsim._validation import check_positive, check_positive_int
from sharpsim.algorithms._best_of_n import running_best
from sharpsim.classes import TabularClass, count_table
from sharpsim.exact import bon_log_probs
from sharpsim.metrics import PolicyLike, as_policy
from sharpsim.oracle import SampleEvaluateOracle
from sharpsim.policies import TabularPolicy
from sharpsim.power import power_policy

__all__ = ["MEMORIES", "IteratedRun", "exact_iterated_sft", "exact_iterated_rlhf", "exact_accumulated_sft", "exact_rlhf_rounds",
           "iterated_sft", "iterated_rlhf", "one_shot_rlhf_sweep", "trajectory_stats", "expected_heterozygosity",
           "mode_probability", "one_shot_sft_sweep", "target_mass"]

#: Training-set rules: a round's own samples only, or every sample so far.
MEMORIES = ("replace", "accumulate")


def _check_memory(memory: str) -> str:
    if memory not in MEMORIES:
        raise ValueError(f"memory must be one of {MEMORIES}, got {memory!r}.")
    return memory


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class IteratedRun:
    """A K-round trajectory: ``log_probs[k]`` = log π_k (k = 0 is π_base), ``num_queries[k-1]`` = queries of
    round k (sample-and-evaluate queries to π_{k-1}'s oracle, plus Eq. 8's re-evaluations under accumulate)."""

    log_probs: Float[Array, "K1 X Y"]
    num_queries: Int[Array, " K"]


# ------------------------------------------------------------------------------------------ exact targets
def exact_iterated_sft(pi: PolicyLike, K: int, N: int) -> Float[Array, "K1 X Y"]:
    """log π_k for k = 0…K with π_{k+1} = BoN_N(π_k) (equal to BoN_{N^k}(π_0); module docstring)."""
    K, N = check_positive_int(K, "K"), check_positive_int(N, "N")
    lp0 = as_policy(pi).log_probs

    def step(lp, _):
        nxt = jax.vmap(lambda row: bon_log_probs(row, N))(lp)
        return nxt, nxt

    _, traj = jax.lax.scan(step, lp0, None, length=K)
    return jnp.concatenate([lp0[None], traj])


def exact_iterated_rlhf(pi: PolicyLike, K: int, beta: float) -> Float[Array, "K1 X Y"]:
    """log π_k for k = 0…K with π_{k+1} ∝ π_k^{1+1/β}, i.e. π_k = π_0^{(1+1/β)^k} (Eq. 3's optimum iterated)."""
    K = check_positive_int(K, "K")
    check_positive(beta, "beta")
    pi = as_policy(pi)
    a = 1.0 + 1.0 / float(beta)
    return jnp.stack([pi.log_probs] + [power_policy(pi, math.exp(min(k * math.log(a), 69.0))).log_probs for k in range(1, K + 1)])


def exact_accumulated_sft(pi: PolicyLike, K: int, N: int) -> Float[Array, "K1 X Y"]:
    """The n → ∞ limit of SFT rounds under ``memory="accumulate"``: π_k = (1/k) Σ_{j=1}^{k} BoN_N(π_{j−1})
    (each round adds as many picks as the last, so the MLE on all picks is the average of the rounds' laws)."""
    K, N = check_positive_int(K, "K"), check_positive_int(N, "N")
    p0 = as_policy(pi).probs

    def step(carry, k):
        p, total = carry
        b = jnp.exp(jax.vmap(lambda row: bon_log_probs(jnp.log(row), N))(p))
        total = total + b
        nxt = total / k
        return (nxt, total), nxt

    _, traj = jax.lax.scan(step, (p0, jnp.zeros_like(p0)), jnp.arange(1, K + 1, dtype=p0.dtype))
    return jnp.log(jnp.concatenate([p0[None], traj]))


def exact_rlhf_rounds(pi: PolicyLike, beta: float, delta: float, max_rounds: int = 64) -> int:
    """The fewest rounds k of :func:`exact_iterated_rlhf` after which π_base^{(1+1/β)^k} puts more than 1 − δ on
    y*(x) (the argmax set of π_base) at every prompt; computed in float64 with NumPy. ``ValueError`` if more than
    ``max_rounds`` would be needed."""
    check_positive(beta, "beta")
    check_positive(delta, "delta")
    lp = np.log(np.asarray(as_policy(pi).probs, np.float64))
    top = lp >= lp.max(-1, keepdims=True)
    for k in range(1, int(max_rounds) + 1):
        e = np.where(lp > -np.inf, (1.0 + 1.0 / beta) ** k * lp, -np.inf)
        mass = np.exp(np.logaddexp.reduce(np.where(top, e, -np.inf), -1) - np.logaddexp.reduce(e, -1))
        if np.all(mass > 1 - delta):
            return k
    raise ValueError(f"more than {max_rounds} rounds are needed to put 1 - delta = {1 - delta} on the argmax.")


# ------------------------------------------------------------------------------------------ sampled rounds
def _round_prompts(X: int, n: int) -> Int[Array, " Xn"]:
    return jnp.repeat(jnp.arange(X, dtype=jnp.int32), n)


def _draw(key, log_probs, mu, n: int, N: int):
    """n groups of N evaluated responses per prompt from the oracle wrapping the table ``log_probs``: one
    ``respond`` call of n·N draws per prompt (the CDF is built once per prompt), reshaped to ``[X·n, N]`` in the
    order of ``_round_prompts`` (X·n·N queries)."""
    X = log_probs.shape[0]
    batch = SampleEvaluateOracle(TabularPolicy(log_probs=log_probs), mu).respond(key, jnp.arange(X, dtype=jnp.int32),
                                                                                n * N)
    return batch.responses.reshape(X * n, N), batch.log_probs.reshape(X * n, N)


def iterated_sft(key: PRNGKeyArray, pi_base: PolicyLike, *, K: int, n: int, N: int, memory="replace",
                 n_used=None, N_used=None, reward: Callable = _rewards.logprob_reward) -> IteratedRun:
    """K rounds of SFT-sharpening with r_self = log π_k: per round and prompt, n best-of-N picks from π_k
    (its oracle, n·N queries per prompt), then the exact tabular MLE on the round's picks (``replace``) or on
    all picks so far (``accumulate``). ``n_used`` (≤ n) and ``N_used`` (≤ N), both may be traced: keep the first
    n_used picks per prompt, each the best of its first N_used draws (sweeps in one compile; the queries count
    X·n_used·N_used). ``memory`` may also be a traced boolean (True: accumulate). ``reward`` is the
    self-reward applied to π_k's log-probs (a test hook)."""
    K, n, N = check_positive_int(K, "K"), check_positive_int(n, "n"), check_positive_int(N, "N")
    keep = jnp.asarray(_check_memory(memory) == "accumulate" if isinstance(memory, str) else memory)
    pi_base = as_policy(pi_base, "pi_base")
    X, Y = pi_base.log_probs.shape
    mu = jnp.full((X,), 1.0 / X, pi_base.log_probs.dtype)
    prompts = _round_prompts(X, n)
    used = jnp.asarray(n if n_used is None else n_used, jnp.int32)
    used_N = jnp.asarray(N if N_used is None else N_used, jnp.int32)
    w = (jnp.tile(jnp.arange(n), X) < used).astype(pi_base.log_probs.dtype)
    cls = TabularClass(X, Y)

    def step(carry, k):
        lp, total = carry
        ys, lps = _draw(k, lp, mu, n, N)
        score = jax.vmap(reward)(prompts, ys, lps)
        j = jnp.argmax(jnp.where(jnp.arange(N) < used_N, score, -jnp.inf), axis=1)  # select_best on the prefix
        picks = jnp.take_along_axis(ys, j[:, None], 1)[:, 0]
        counts = count_table(X, Y, prompts, picks, w)
        total = jnp.where(keep, total, 0.0) + counts
        nxt = cls.mle(total).log_probs
        return (nxt, total), (nxt, X * used * used_N)

    init = (pi_base.log_probs, jnp.zeros((X, Y), pi_base.log_probs.dtype))
    _, (traj, nq) = jax.lax.scan(step, init, jax.random.split(key, K))
    return IteratedRun(jnp.concatenate([pi_base.log_probs[None], traj]), nq.astype(jnp.int32))


def iterated_rlhf(key: PRNGKeyArray, pi_base: PolicyLike, *, K: int, n: int, beta: float, memory: str = "replace",
                  n_used=None) -> IteratedRun:
    """K rounds of Eq. 8 with π_k as reference and r_self = log π_k: per round and prompt, n pairs from π_k
    (2n queries), then Eq. 8's exact tabular minimiser — logits (1 + 1/β)·log π_k on the responses in the
    training set, probability 0 elsewhere (:func:`sharpsim.classes.tabular_eq8_minimizer`). ``accumulate``
    keeps every pair so far and re-scores it under π_k (2n·(k−1) evaluate queries per prompt in round k)."""
    K, n = check_positive_int(K, "K"), check_positive_int(n, "n")
    check_positive(beta, "beta")
    _check_memory(memory)
    pi_base = as_policy(pi_base, "pi_base")
    X, Y = pi_base.log_probs.shape
    mu = jnp.full((X,), 1.0 / X, pi_base.log_probs.dtype)
    prompts = _round_prompts(X, n)
    used = jnp.asarray(n if n_used is None else n_used, jnp.int32)
    w = jnp.tile(jnp.arange(n), X) < used
    scale = 1.0 + 1.0 / beta

    def step(carry, inp):
        lp, seen = carry
        k, r = inp
        ys, _ = _draw(k, lp, mu, n, 2)
        now = jnp.zeros((X, Y), bool)
        for c in (0, 1):
            now = now.at[prompts, ys[:, c]].max(w)
        seen = seen | now if memory == "accumulate" else now
        nxt = jax.nn.log_softmax(jnp.where(seen, scale * lp, -jnp.inf), axis=-1)
        nq = 2 * X * used * (r if memory == "accumulate" else 1)
        return (nxt, seen), (nxt, nq)

    rounds = jnp.arange(1, K + 1, dtype=jnp.int32)
    _, (traj, nq) = jax.lax.scan(step, (pi_base.log_probs, jnp.zeros((X, Y), bool)),
                                 (jax.random.split(key, K), rounds))
    return IteratedRun(jnp.concatenate([pi_base.log_probs[None], traj]), nq.astype(jnp.int32))


def one_shot_sft_sweep(key: PRNGKeyArray, pi_base: PolicyLike, n_grid, N_grid,
                       reward: Callable = _rewards.logprob_reward) -> Float[Array, "G H X Y"]:
    """One-shot SFT-sharpening (Theorem 4.1's algorithm) in the stratified design of :func:`iterated_sft`, at
    every (n, N) of a grid from ONE draw of [n_max, N_max] per prompt: log π̂ of the tabular MLE on the first
    n picks per prompt, each the best of its first N draws (prefix-coupled, as ``sft_sharpening_sweep``)."""
    n_grid = tuple(check_positive_int(v, "n_grid entry") for v in n_grid)
    N_grid = tuple(check_positive_int(v, "N_grid entry") for v in N_grid)
    pi_base = as_policy(pi_base, "pi_base")
    X, Y = pi_base.log_probs.shape
    n_max, N_max = max(n_grid), max(N_grid)
    prompts = _round_prompts(X, n_max)
    ys, lps = _draw(key, pi_base.log_probs, jnp.full((X,), 1.0 / X, pi_base.log_probs.dtype), n_max, N_max)
    scores = jax.vmap(reward)(prompts, ys, lps)
    idx = running_best(scores)[1][:, jnp.asarray(N_grid, jnp.int32) - 1]  # [X·n_max, H]
    picks = jnp.take_along_axis(ys, idx, 1)
    rep = jnp.tile(jnp.arange(n_max), X)
    cls = TabularClass(X, Y)

    def at(n, h):
        return cls.mle(count_table(X, Y, prompts, picks[:, h], (rep < n).astype(pi_base.log_probs.dtype))).log_probs

    return jax.vmap(lambda n: jax.vmap(lambda h: at(n, h))(jnp.arange(len(N_grid))))(jnp.asarray(n_grid, jnp.int32))


def one_shot_rlhf_sweep(key: PRNGKeyArray, pi_base: PolicyLike, n_grid, exponents) -> Float[Array, "G H X Y"]:
    """One-shot Eq. 8 (Theorem 4.2's algorithm, exact tabular minimiser) in the stratified design of
    :func:`iterated_rlhf`, at every n of ``n_grid`` and every 1 + 1/β of ``exponents`` from ONE draw of n_max pairs
    per prompt (prefix-coupled): log π̂ ∝ (1 + 1/β)·log π_base on the responses seen in the first n pairs, 0 elsewhere.
    With exponent (1 + 1/β)^k it has the exact target of k rounds of :func:`iterated_rlhf` at β, for 2n queries."""
    n_grid = tuple(check_positive_int(v, "n_grid entry") for v in n_grid)
    for v in exponents:
        check_positive(v, "exponent")
    pi_base = as_policy(pi_base, "pi_base")
    exps = jnp.asarray(exponents, pi_base.log_probs.dtype)
    X, Y = pi_base.log_probs.shape
    n_max = max(n_grid)
    ys, _ = _draw(key, pi_base.log_probs, jnp.full((X,), 1.0 / X, pi_base.log_probs.dtype), n_max, 2)
    prompts, rep = _round_prompts(X, n_max), jnp.tile(jnp.arange(n_max), X)

    def at(n):
        seen = jnp.zeros((X, Y), bool).at[prompts, ys[:, 0]].max(rep < n).at[prompts, ys[:, 1]].max(rep < n)
        return jax.vmap(lambda a: jax.nn.log_softmax(jnp.where(seen, a * pi_base.log_probs, -jnp.inf), -1))(exps)

    return jax.vmap(at)(jnp.asarray(n_grid, jnp.int32))


# ------------------------------------------------------------------------------------------ statistics
def target_mass(log_probs: Float[Array, "... X Y"], pi_base: PolicyLike) -> Float[Array, "... X"]:
    """π(y*(x)|x) per prompt for any stack of tables, y* the argmax set of π_base."""
    base = as_policy(pi_base, "pi_base").log_probs
    target = base >= jnp.max(base, axis=-1, keepdims=True)
    return jnp.sum(jnp.where(target, jnp.exp(log_probs), 0.0), -1)


def trajectory_stats(log_probs: Float[Array, "K1 X Y"], pi_base: PolicyLike, mu) -> dict:
    """Per round (μ-weighted means over prompts): ``entropy`` (nats), ``heterozygosity`` 1 − Σ_y π_k(y|x)²,
    ``mass_on_target`` π_k(y*(x)|x) with y* the argmax set of π_base, ``support_lost`` the fraction of
    π_base's support with π_k(y|x) = 0, and ``mode_wrong`` 1[π_k(y*) ≤ max_{y∉y*} π_k(y)] (ties count as
    wrong: the fitted mode is not uniquely the target)."""
    base = as_policy(pi_base, "pi_base").log_probs
    mu = jnp.asarray(mu, base.dtype)
    p = jnp.exp(log_probs)
    target = base >= jnp.max(base, axis=-1, keepdims=True)
    plogp = jnp.where(p > 0, p * log_probs, 0.0)
    on_t = jnp.sum(jnp.where(target, p, 0.0), -1)
    off_t = jnp.max(jnp.where(target, -1.0, p), -1)
    support = base > -jnp.inf
    lost = jnp.sum(support & (p <= 0), -1) / jnp.sum(support, -1)
    per = {"entropy": -jnp.sum(plogp, -1), "heterozygosity": 1.0 - jnp.sum(p * p, -1), "mass_on_target": on_t,
           "support_lost": lost, "mode_wrong": (on_t <= off_t).astype(p.dtype)}
    return {k: jnp.sum(v * mu, -1) for k, v in per.items()}


def expected_heterozygosity(h0: float, n: int, K: int, memory: str) -> np.ndarray:
    """E[H_k] for k = 0…K, H = 1 − Σ_y π(y|x)², for plain self-training (N = 1) with n draws per round (exact).

    replace: π_k is the empirical law of n draws from π_{k−1}, E[H_k | π_{k−1}] = (1 − 1/n)·H_{k−1}, so
    E[H_k] = (1 − 1/n)^k H_0 → 0 (the Wright–Fisher loss of diversity; Shumailov et al. 2024).
    accumulate: π_k = ((k−1)π_{k−1} + e_k)/k with e_k that empirical law; Var adds (1/k²)·H_{k−1}/n, so
    E[H_k] = H_0 ∏_{j≤k}(1 − 1/(n j²)) ≥ H_0 (1 − π²/(6n)) — bounded away from 0 (Gerstgrasser et al. 2024).
    """
    n, K = check_positive_int(n, "n"), check_positive_int(K, "K")
    _check_memory(memory)
    k = np.arange(1, K + 1, dtype=np.float64)
    f = np.full(K, 1.0 - 1.0 / n) if memory == "replace" else 1.0 - 1.0 / (n * k**2)
    return float(h0) * np.concatenate([[1.0], np.cumprod(f)])


def mode_probability(probs, n: int, target: int) -> float:
    """P[C_target > max_{y≠target} C_y] for C ~ Multinomial(n, probs), exactly (float64).

    The chance that the MLE of n i.i.d. picks has ``target`` as its unique mode (one-shot SFT's fitted mode).
    Conditioning on C_target = c, the others are Multinomial(n − c, q) with q the renormalised rest, and
    P[all ≤ c − 1] is a truncated convolution of Poisson laws (Poissonisation), normalised by P[Poisson(m) = m].
    """
    n = check_positive_int(n, "n")
    p = np.asarray(probs, np.float64)
    p = p / p.sum()
    pt, rest = p[target], np.delete(p, target)
    rest = rest[rest > 0]
    if pt <= 0:
        return 0.0
    if rest.size == 0 or pt >= 1:
        return 1.0
    q = rest / rest.sum()
    total = 0.0
    lf = gammaln(np.arange(n + 2) + 1.0)
    for c in range(1, n + 1):
        m = n - c
        log_pc = lf[n] - lf[c] - lf[m] + c * math.log(pt) + (m * math.log1p(-pt) if m else 0.0)
        if log_pc < -60.0:  # P[C_target = c] < 1e-26: below float64 resolution of the sum
            continue
        if m == 0:
            total += math.exp(log_pc)
            continue
        if c * rest.size < m:  # not enough room: some other count must reach c
            continue
        # Poissonisation: the others are independent Poisson(m q_y) conditioned on their sum being m, so
        # P[all ≤ c − 1] = P[Σ X_y = m, all X_y ≤ c − 1] / P[Poisson(m) = m] (well scaled for any m).
        j = np.arange(min(c - 1, m) + 1)
        poly = np.ones(1)
        for qy in q:
            poly = np.convolve(poly, np.exp(j * math.log(m * qy) - m * qy - lf[j]))[: m + 1]
        if poly.size > m and poly[m] > 0:
            total += math.exp(log_pc + math.log(poly[m]) - (m * math.log(m) - m - lf[m]))
    return float(min(max(total, 0.0), 1.0))
