"""Problem instances: a base policy π_base, a prompt distribution μ, and (where the paper has one) a class Π.

* :func:`planted_mode` — random tabular policies whose coverage C_cov and margin γ_margin are set exactly;
* :func:`near_max_group` — random tabular policies (jittable) whose mode has mass p and whose
  y*_{1/2}(x) is a group of K near-maximal responses, so C_cov = 1/p while C_cov,1/2 ≈ 1/(0.875 K p);
* :func:`hard_instance` — the lower-bound instance of Theorem 3.1′ (App. H) with its finite class [M]^d;
* :func:`example_j1` — Example J.1: a 1/4-packing of the unit sphere, log-linear π_base, C_cov = exp(Ω(d));
* :func:`margin_confuser_class` — Theorem 4.2's finite class: π*_β and the confusers that swap y* and the
  runner-up on a set of prompts (the members for which the J-gap ≈ γ_margin·δ·μ(S) argument is tight).

Each returns an :class:`Instance` that computes its own theoretical constants (``instance.constants()``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from sharpsim import metrics
from sharpsim._validation import (
    check_distribution,
    check_finite,
    check_gamma,
    check_key,
    check_open_unit,
    check_positive,
    check_positive_int,
)
from sharpsim.policies import TabularPolicy

__all__ = ["Instance", "planted_mode", "near_max_group", "hard_instance", "hard_instance_coverage", "hard_instance_for",
           "example_j1", "margin_confuser_class", "argmax_confusers"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Instance:
    """A sharpening problem: π_base, μ and, optionally, a finite *product* class of candidates.

    ``class_log_probs[x, k, y]`` lists candidate conditionals per prompt; the class is every choice of one
    candidate per prompt, so log|Π| = Σ_x log(#candidates at x) (padding rows repeat a real candidate and
    are not counted: ``num_candidates[x]`` is the true count). ``true_index[x]`` is π_base's choice.
    ``features [Y, d]`` is set for log-linear instances (π_base(y) ∝ exp⟨φ(y), θ*⟩, ``theta_star``).
    """

    pi_base: TabularPolicy
    mu: Float[Array, " X"]
    class_log_probs: Optional[Float[Array, "X K Y"]] = None
    num_candidates: Optional[Int[Array, " X"]] = None
    true_index: Optional[Int[Array, " X"]] = None
    features: Optional[Float[Array, "Y d"]] = None
    theta_star: Optional[Float[Array, " d"]] = None
    name: str = dataclasses.field(default="instance", metadata=dict(static=True))
    params: tuple = dataclasses.field(default=(), metadata=dict(static=True))

    @property
    def log_class_size(self) -> Optional[float]:
        """log|Π| of the finite product class (None when the instance has no finite class)."""
        if self.num_candidates is None:
            return None
        return float(np.sum(np.log(np.asarray(self.num_candidates, dtype=np.float64))))

    def constants(self, gamma: float = 0.0, p: int = 1) -> dict[str, Any]:
        """The paper's constants of this instance, computed exactly: C_cov,γ,p, C̄_cov, γ_margin, log|Π|, |Y|."""
        pi, mu = self.pi_base, self.mu
        out = {
            "C_cov": float(metrics.coverage(pi, mu, gamma=gamma, p=p)),
            "C_cov_bar": float(metrics.coverage_bar(pi, mu)),
            "margin": float(metrics.margin(pi, mu)),
            "num_prompts": pi.num_prompts,
            "num_responses": pi.num_responses,
            "log_class_size": self.log_class_size,
        }
        out.update(dict(self.params))
        return out


# ---------------------------------------------------------------------------------------- planted mode
def planted_mode(
    key, num_prompts: int, num_responses: int, coverage: float, margin: float, *, mu=None
) -> Instance:
    """Random tabular π_base with a planted mode: C_cov = ``coverage`` and γ_margin = ``margin`` exactly.

    Every prompt puts mass p* = 1/coverage on one response (a random label) and exactly p*/(1+margin) on a
    runner-up; the rest, 1 − p* − p*/(1+margin), is spread at random over the remaining responses with every
    share ≤ p*/(1+margin) (so no other response threatens the margin). With uniform μ (the default) the
    coverage coefficient of Eq. (6) is E_μ[1/p*] = ``coverage`` and Assumption 4.2 holds with equality.
    """
    check_key(key)
    X = check_positive_int(num_prompts, "num_prompts")
    Y = check_positive_int(num_responses, "num_responses")
    check_positive(margin, "margin")
    coverage = check_finite(coverage, "coverage")
    if mu is not None:
        check_distribution(mu, X, "mu")
    if not coverage >= 1.0:
        raise ValueError(f"coverage must be >= 1 (C_cov = 1/π(y*) with π(y*) <= 1), got {coverage!r}.")
    p_star = 1.0 / coverage
    q = p_star / (1.0 + margin)
    rest = 1.0 - p_star - q
    if Y < 2 or rest < -1e-12 or rest > (Y - 2) * q * (1 + 1e-12):
        lo = 1.0 / (1.0 + 1.0 / (1.0 + margin) * (Y - 1))
        raise ValueError(
            f"no policy over {Y} responses has coverage {coverage} and margin {margin}: the mode's mass 1/coverage "
            f"must lie in [{lo:.4g}, {1 / (1 + 1 / (1 + margin)):.4g}]; change coverage, margin or num_responses."
        )
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    probs = np.zeros((X, Y))
    for x in range(X):
        shares = _capped_random_split(rng, max(rest, 0.0), Y - 2, q)
        row = np.concatenate([[p_star, q], shares])
        probs[x] = row[rng.permutation(Y)]
    mu = np.full(X, 1.0 / X) if mu is None else np.asarray(mu, dtype=np.float64)
    return Instance(
        pi_base=TabularPolicy.from_probs(probs),
        mu=jnp.asarray(mu, jnp.result_type(float)),
        name="planted_mode",
        params=(("target_coverage", float(coverage)), ("target_margin", float(margin))),
    )


def _capped_random_split(rng, total: float, k: int, cap: float) -> np.ndarray:
    """Split ``total`` into k random non-negative shares, each ≤ ``cap`` (water-filling of random weights)."""
    if k == 0:
        return np.zeros(0)
    w = rng.uniform(0.5, 1.5, size=k)
    shares = total * w / w.sum()
    for _ in range(k):
        over = shares > cap
        if not over.any():
            break
        excess = np.sum(shares[over] - cap)
        shares[over] = cap
        free = ~over & (shares < cap)
        shares[free] += excess * shares[free] / shares[free].sum()
    return np.minimum(shares, cap)


def near_max_group(key, K, num_prompts: int, num_responses: int, mode_mass) -> TabularPolicy:
    """Random π_base whose (1/2)-approximate argmax set is a group of K near-maximal responses (App. F.1).

    At every prompt: one response (the mode) has mass ``mode_mass`` = p, K − 1 more have p·(1 − U/4) with
    U ~ U[0, 1) (so they lie in (0.75p, p]), and the remaining mass is shared by the other responses with
    factors in [0.9, 1.1]; positions are a random permutation per prompt, so no index is favoured. Hence
    C_cov = E_μ[1/p] = 1/p whatever K, while y*_{1/2}(x) is exactly the K-group (mass ∈ (0.75Kp, Kp]) as long
    as every other share stays below p/2, which holds when (1 − 0.75Kp)·1.1/(0.9(Y − K)) < p/2 (a ValueError
    says so for concrete arguments). Jittable and vmappable: ``K`` and ``mode_mass`` may be traced; the
    sizes are static. Used by the ``sft_gamma`` (Theorem 4.1′) and ``sft_delta`` experiments.
    """
    X = check_positive_int(num_prompts, "num_prompts")
    Y = check_positive_int(num_responses, "num_responses")
    if not isinstance(K, jax.core.Tracer) and not isinstance(mode_mass, jax.core.Tracer):
        k, p = int(K), float(mode_mass)
        if not 1 <= k < Y or not 0 < p * k <= 1:
            raise ValueError(f"need 1 <= K < num_responses and 0 < K·mode_mass <= 1, got K={K}, mode_mass={mode_mass}.")
        if (1 - 0.75 * k * p) * 1.1 / (0.9 * (Y - k)) >= p / 2:
            raise ValueError(f"num_responses={Y} is too small for K={k}, mode_mass={p}: the other responses could "
                             "reach mode_mass/2 and join y*_(1/2); raise num_responses or mode_mass.")
    k1, k2, k3 = jax.random.split(key, 3)
    dtype = jnp.result_type(float)
    idx = jnp.arange(Y)
    in_group = idx[None, :] < K
    group = jnp.where(idx[None, :] == 0, mode_mass, mode_mass * (1.0 - 0.25 * jax.random.uniform(k1, (X, Y), dtype)))
    f = jnp.where(in_group, 0.0, 0.9 + 0.2 * jax.random.uniform(k2, (X, Y), dtype))
    rest = (1.0 - jnp.sum(jnp.where(in_group, group, 0.0), -1, keepdims=True)) * f / jnp.sum(f, -1, keepdims=True)
    probs = jnp.where(in_group, group, rest)
    perm = jax.vmap(lambda k: jax.random.permutation(k, Y))(jax.random.split(k3, X))
    return TabularPolicy(log_probs=jnp.log(jnp.take_along_axis(probs, perm, axis=1)))


# ---------------------------------------------------------------------------------------- Theorem 3.1'
def hard_instance_coverage(M, Delta, gamma: float = 0.5, p: int = 1):
    """C_cov,γ,p = ((1 − Δ) + (M(1 − γ))^p Δ)^{1/p} of :func:`hard_instance` (App. H): x_0 (mass 1 − Δ) puts mass 1
    on y_0, a rare prompt 1/((1 − γ)M) on its planted response, the unique approximate maximiser. At γ = 1/2, p = 1
    it is (1 − Δ) + ΔM/2, also C̄_cov (unique argmax). The one home of this formula; NumPy-broadcast."""
    return ((1 - Delta) + (M * (1 - gamma)) ** p * Delta) ** (1 / p)


def hard_instance(key, d: int, M: int, Delta: float, p: int = 1, gamma: float = 0.5) -> Instance:
    """The lower-bound instance of Theorem 3.1′ (App. H), with π_base drawn uniformly from its class [M]^d.

    X = {x_0, …, x_d}, Y = {y_0, …, y_M}; μ = (1 − Δ)δ_{x_0} + (Δ/d)Σ_i δ_{x_i}. P_0 = δ_{y_0} and, for
    i ≥ 1, P_i(y_i) = 1/((1−γ)M), P_i(y_j) = (1/M)(1 − γ/((M−1)(1−γ))) for j ∈ [M]∖{i}. The class is
    Π = {π^I : I ∈ [M]^d} with π^I(·|x_0) = P_0 and π^I(·|x_i) = P_{j_i}, so log|Π| = d log M; the
    approximate argmax set is y^I_γ(x_i) = {y_{j_i}} (Lemma H.1) and C_cov,γ,p = ((1−Δ) + (M(1−γ))^p Δ)^{1/p}.
    """
    check_key(key)
    d = check_positive_int(d, "d")
    M = check_positive_int(M, "M")
    p = check_positive_int(p, "p")
    check_open_unit(Delta, "Delta")
    check_gamma(gamma)
    if M < 3:
        raise ValueError(f"M must be >= 3 so the planted response is the unique approximate maximiser, got {M}.")
    off = (1.0 / M) * (1.0 - gamma / ((M - 1) * (1.0 - gamma)))
    if off < 0:
        raise ValueError(f"M = {M} is too small for gamma = {gamma}: need gamma/((M-1)(1-gamma)) <= 1.")
    # candidates[j, y] = P_{j+1}(y) over Y = {y_0..y_M}
    cand = np.full((M, M + 1), off)
    cand[:, 0] = 0.0
    cand[np.arange(M), np.arange(M) + 1] = 1.0 / ((1.0 - gamma) * M)
    p0 = np.zeros(M + 1)
    p0[0] = 1.0
    cls = np.concatenate([np.broadcast_to(p0, (1, M, M + 1)), np.broadcast_to(cand, (d, M, M + 1))], axis=0)
    index = np.concatenate([[0], np.asarray(jax.random.randint(key, (d,), 0, M))])
    probs = cls[np.arange(d + 1), index]
    mu = np.concatenate([[1.0 - Delta], np.full(d, Delta / d)])
    with np.errstate(divide="ignore"):
        log_cls = np.log(cls)
    dtype = jnp.result_type(float)
    return Instance(
        pi_base=TabularPolicy.from_probs(probs),
        mu=jnp.asarray(mu, dtype),
        class_log_probs=jnp.asarray(log_cls, dtype),
        num_candidates=jnp.asarray(np.concatenate([[1], np.full(d, M)]), jnp.int32),
        true_index=jnp.asarray(index, jnp.int32),
        name="hard_instance",
        params=(
            ("d", d), ("M", M), ("Delta", float(Delta)), ("p", p), ("gamma", float(gamma)),
            ("C_cov_gamma_p_formula", hard_instance_coverage(M, Delta, gamma, p)),
        ),
    )


def hard_instance_for(key, epsilon: float, C: float, d: int, p: int = 1, adaptive: bool = False,
                      c1: float | None = None):
    """Theorem 3.1′'s parameter choice from ``bounds.hard_instance_parameters`` (its one home): Δ = 16ε
    (Δ = c_1 ε adaptive, c_1 = ``bounds.HARD_INSTANCE_C1`` = 16 unless given) and M = ⌈1 + C ε^{-1/p}⌉
    (at least 3)."""
    import bounds

    check_open_unit(epsilon, "epsilon")
    check_positive(C, "C")
    p = check_positive_int(p, "p")
    if c1 is not None:
        check_positive(c1, "c1")
    c1 = bounds.HARD_INSTANCE_C1 if c1 is None else float(c1)
    Delta = (c1 if adaptive else 16.0) * epsilon
    if not 0 < Delta < 1:
        raise ValueError(f"Delta = {'c1' if adaptive else '16'}·epsilon = {Delta:g} must lie in (0, 1); lower epsilon.")
    M_real = 1.0 + max(C, 1.0) * epsilon ** (-1.0 / p)
    if not math.isfinite(M_real) or M_real > 2**31 - 1:
        raise ValueError(f"M = 1 + C·epsilon^(-1/p) = {M_real:g} is too large; lower C or raise epsilon.")
    Delta, M = bounds.hard_instance_parameters(epsilon, max(C, 1.0), p=p, adaptive=adaptive, c1=c1)
    return hard_instance(key, d=d, M=max(3, int(M)), Delta=float(Delta), p=p)


# ---------------------------------------------------------------------------------------- Example J.1
def example_j1(key, d: int, num_responses: int, *, min_distance: float = 0.25, max_tries: int = 200_000) -> Instance:
    """Example J.1: Y ⊂ S^{d−1} a ``min_distance``-packing (default 1/4), φ(x, y) = y, θ* = y*, one prompt.

    π_base(y) ∝ exp⟨y, θ*⟩, so π_base(y*)/π_base(y) = exp(1 − ⟨y, y*⟩) ≥ exp(min_distance²/2): a margin
    γ_margin = Ω(1), while π_base(y*) ≤ e²·π_base(y) makes C_cov = 1/π_base(y*) ≥ |Y|/e². Points are drawn
    uniformly on the sphere and kept when at distance ≥ ``min_distance`` from all kept points (the packing
    is checked; a ``ValueError`` says when ``num_responses`` points could not be packed in ``max_tries``).
    """
    check_key(key)
    d = check_positive_int(d, "d")
    Y = check_positive_int(num_responses, "num_responses")
    check_positive(min_distance, "min_distance")
    max_tries = check_positive_int(max_tries, "max_tries")
    if Y < 2:
        raise ValueError("num_responses must be >= 2.")
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    pts = np.zeros((0, d))
    tries = 0
    while pts.shape[0] < Y:
        batch = rng.standard_normal((4096, d))
        batch /= np.linalg.norm(batch, axis=1, keepdims=True)
        for v in batch:
            tries += 1
            if pts.shape[0] == 0 or np.min(np.linalg.norm(pts - v, axis=1)) >= min_distance:
                pts = np.vstack([pts, v])
                if pts.shape[0] == Y:
                    break
        if tries >= max_tries and pts.shape[0] < Y:
            raise ValueError(
                f"could only pack {pts.shape[0]} of {Y} points at distance >= {min_distance} on S^{d - 1} in "
                f"{max_tries} tries; lower num_responses or raise d."
            )
    gram = pts @ pts.T
    dist = np.sqrt(np.maximum(2.0 - 2.0 * gram[np.triu_indices(Y, 1)], 0.0))
    assert dist.min() >= min_distance - 1e-9
    theta = pts[0]
    logits = pts @ theta
    dtype = jnp.result_type(float)
    return Instance(
        pi_base=TabularPolicy.from_logits(jnp.asarray(logits[None, :], dtype)),
        mu=jnp.ones((1,), dtype),
        features=jnp.asarray(pts, dtype),
        theta_star=jnp.asarray(theta, dtype),
        name="example_j1",
        params=(("d", d), ("packing_distance", float(dist.min())), ("B", float(d * math.log(max(d, 2))))),
    )


def margin_confuser_class(pi_base, beta: float, set_size: int):
    """Theorem 4.2's finite class over a tabular π_base: π*_β ∝ π_base^{1+1/β} and one confuser per set S.

    For every set S of ``set_size`` prompts, the confuser π_S equals π*_β except that at x ∈ S the masses of
    y*(x) = argmax π_base and of the runner-up y₂(x) are swapped (it moves the mass of y* to the runner-up, so
    π_S is unsharpened on S; with μ(S) > ε it is not (ε, δ)-sharpened). The class is realizable (Assumption
    4.3), finite with bounded log-ratios (Assumption 4.4 with C_loss < ∞), and π_S differs from π*_β in
    log-ratio log π/π_base only at (x, y*) and (x, y₂), x ∈ S, by ∓(1 + 1/β)·log(π_base(y*)/π_base(y₂)).
    Returns ``(cls, sets)``: a stack :class:`~sharpsim.classes.FiniteClass` with π*_β at index 0 and the
    confusers after it, and ``sets`` ``[K − 1, set_size]`` the prompt sets (lexicographic order).
    """
    import itertools

    from sharpsim.classes import FiniteClass
    from sharpsim.exact import kl_regularized_optimum

    check_positive(beta, "beta")
    lp = np.asarray(kl_regularized_optimum(pi_base, beta).log_probs)
    X = lp.shape[0]
    s = check_positive_int(set_size, "set_size")
    if s > X:
        raise ValueError(f"set_size must be <= the number of prompts {X}, got {set_size}.")
    order = np.argsort(-np.asarray(pi_base.log_probs), axis=1, kind="stable")
    y1, y2 = order[:, 0], order[:, 1]
    sets = np.array(list(itertools.combinations(range(X), s)), dtype=np.int32)
    members = [lp]
    for S in sets:
        m = lp.copy()
        m[S, y1[S]], m[S, y2[S]] = lp[S, y2[S]], lp[S, y1[S]]
        members.append(m)
    return FiniteClass.stack(jnp.asarray(np.stack(members), jnp.result_type(float))), sets


def argmax_confusers(target: TabularPolicy, responses) -> Array:
    """Confusers of ``target`` that agree with it on every response pair except those through one response.

    Member k (one per entry of ``responses``) is ``target`` with the logit of response ``responses[k]`` raised
    to max_y log target(y|x) + log 2 at every prompt, then renormalised, so its mode is ``responses[k]`` (with
    mass 2M/(2M + 1 − p_k) ≥ 2M/(2M + 1), M = max_y target(y|x), p_k = target(responses[k]|x)). log π(y) − log π(ỹ) is unchanged for every pair avoiding ``responses[k]``, so
    with exact rewards a pair (y, ỹ) rules member k out of the Eq. 8 / Algorithm 1 version space only when it
    contains ``responses[k]``: on rarely drawn responses one pair does not identify the target (the finite
    class of ``xpo_vs_sft_j1``). Returns log-probabilities ``[K, X, Y]`` (for :meth:`FiniteClass.stack`).
    """
    lp = jnp.asarray(target.log_probs)
    r = np.asarray(responses, int).ravel()
    if r.size == 0 or np.any(r < 0) or np.any(r >= lp.shape[-1]):
        raise ValueError(f"responses must be a non-empty list of indices in [0, {lp.shape[-1]}), got {r.tolist()}.")
    top = jnp.max(lp, axis=-1) + math.log(2.0)  # [X]
    raised = jax.vmap(lambda k: lp.at[:, k].set(top))(jnp.asarray(r))  # [K, X, Y]
    return jax.nn.log_softmax(raised, axis=-1)
