"""The exploration instance shared by ``xpo_exploration`` and the optimism-sign test.

One prompt. Responses: M "common" ones with π_base-logit 0, and k "rare" ones whose features e_1..e_k are the
only ones carrying the directions that decide the argmax: y* = rare response 0 with logit log(1+γ), the others
logit 0 (so the margin is exactly γ and C_cov = 1/π_base(y*) ≈ (M + k)/(1 + γ): the rarity grows with M).
Log-linear class (Definition J.3 with π_zero uniform, φ(common) = 0, φ(rare_j) = e_j): π_θ(y) ∝ exp⟨φ(y), θ⟩ ·
exp((1+1/β)·0) — all members agree on the commons. The finite class is the product grid θ ∈ V^k with
V = {−a, 0, a*, a* + h} (a* = (1+1/β) log(1+γ), π*_β = π_{(a*, 0, …, 0)} ∈ Π: realizable), an ε-net of the
ball for the directions that matter (Lemma J.4). Pairs of commons carry no information (every member fits
them exactly): offline Eq. 8 on π_base pairs learns θ_j only once a pair contains rare_j, which takes ≈ M/2
pairs per coordinate. XPO's optimism (minimise α Σ log π(ỹ) with ỹ mostly common) prefers members with the
largest mass off the commons, i.e. on the rare responses, whose own draws then pin θ_j in ≈ k rounds.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax.numpy as jnp
import numpy as np

from sharpsim import metrics

from sharpsim.classes import FiniteClass
from sharpsim.policies import TabularPolicy


@functools.lru_cache(maxsize=None)
def exploration_instance(M: int, k: int, gamma: float, beta: float, low: float, high: float, pad_to: int = 0):
    """(π_base, μ, FiniteClass stack, index of π*_β, θ grid [K, k]) for M commons and k rare responses.

    The class is the grid V^k plus π_base itself (so that its best-of-N laws, the closure SFT needs, are
    realizable). ``pad_to``: pad the response axis with zero-mass responses (one compile for every M).
    """
    Y = M + k
    base = np.zeros(Y)
    base[M] = math.log1p(gamma)  # y* = response M
    base_lp = base - np.logaddexp.reduce(base)
    a_star = (1.0 + 1.0 / beta) * math.log1p(gamma)
    values = (-low, 0.0, a_star, a_star + high)
    grid = np.array(list(itertools.product(values, repeat=k)))  # [K, k]
    logits = np.zeros((grid.shape[0], Y))
    logits[:, M:] = grid
    members = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    target = int(np.flatnonzero(np.all(grid == np.array([a_star] + [0.0] * (k - 1)), axis=1))[0])
    star = (1.0 + 1.0 / beta) * base_lp
    star = star - np.logaddexp.reduce(star)
    assert np.allclose(members[target], star, atol=1e-6), "π*_β must be a member (realizability)"
    members = np.concatenate([members, base_lp[None]])
    pad = max(pad_to - Y, 0)
    members = np.concatenate([members, np.full((members.shape[0], pad), -np.inf)], axis=1)
    base_lp = np.concatenate([base_lp, np.full(pad, -np.inf)])
    cls = FiniteClass.stack(jnp.asarray(members[:, None, :], jnp.result_type(float)))
    pi_base = TabularPolicy(log_probs=jnp.asarray(base_lp[None], jnp.result_type(float)))
    return pi_base, jnp.ones((1,)), cls, target, grid


def offline_prediction(pi_base, cls, grid, M, beta, ns, K_RARE, DELTA):  # noqa: N803
    """P[offline Eq. 8 sharpens] at n pairs: Σ_S P(rare responses seen = S) · (sharp fraction of the version space)."""
    lp = np.asarray(pi_base.log_probs[0], float)
    p = np.exp(lp[M:M + K_RARE])
    b = lp[M:M + K_RARE] - lp[0]  # rare logits relative to the commons (whose logit is 0)
    theta = np.concatenate([grid, b[None]])  # the last member is π_base (its θ_j = b_j)
    members = TabularPolicy(log_probs=cls.log_probs[0])  # [K, Y]: one row per member (prompt 0)
    argmax = jnp.broadcast_to(metrics.argmax_set(pi_base)[0], members.log_probs.shape)
    sharp = np.asarray(metrics.mass_on(members, argmax) > 1 - DELTA)
    true = (1 + 1 / beta) * b
    out = np.zeros(len(ns))
    for S in itertools.chain.from_iterable(itertools.combinations(range(K_RARE), r) for r in range(K_RARE + 1)):
        cons = np.all(np.isclose(theta[:, list(S)], true[list(S)], atol=1e-4), axis=1)
        frac = sharp[cons].mean()
        for sub in itertools.chain.from_iterable(itertools.combinations(S, r) for r in range(len(S) + 1)):
            miss = p.sum() - p[list(sub)].sum()
            out += (-1) ** (len(S) - len(sub)) * (1 - miss) ** (2 * np.asarray(ns, float)) * frac
    return out
