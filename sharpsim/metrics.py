"""Exact sharpness, coverage, concentrability and margin over a finite prompt space (theory.md §1, §3, §9).

Every function takes policies as :class:`~sharpsim.TabularPolicy` (or a ``[X, Y]`` probability table)
and the prompt distribution ``mu`` (``[X]``), and computes the paper's quantity *exactly* (no sampling).
Computations run in log space so probabilities down to 1e-30 (float32) or 1e-300 (float64) give finite
results, and zero-probability responses never produce NaN.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special as scipy_special
from jaxtyping import Array, Bool, Float

from sharpsim._validation import (
    as_numeric_array,
    check_distribution,
    check_gamma,
    check_normalized_policy,
    check_open_unit,
    check_positive,
    check_positive_int,
    is_concrete,
)
from sharpsim.policies import TabularPolicy

__all__ = [
    "as_policy",
    "argmax_set",
    "mass_on",
    "sharpness_error",
    "sharpness_error_from_mass",
    "SharpnessEvaluation",
    "is_sharpened",
    "coverage",
    "coverage_bar",
    "concentrability",
    "concentrability_beta",
    "margin",
    "pass_at_n",
]

PolicyLike = Union[TabularPolicy, Float[Array, "X Y"]]


def as_policy(pi: PolicyLike, name: str = "pi") -> TabularPolicy:
    """Accept a :class:`TabularPolicy` or a ``[X, Y]`` probability table (validated).

    A concrete :class:`TabularPolicy` must have normalised rows (no NaN): one built from an arbitrary array,
    e.g. ``TabularPolicy(log_probs=zeros((2, 3)))`` whose rows sum to 3, raises ``ValueError`` instead of
    giving a metric that is silently wrong. Each table is checked once (later calls are free).
    """
    if isinstance(pi, TabularPolicy):
        check_normalized_policy(pi, name)
        return pi
    if hasattr(pi, "to_tabular"):
        return pi.to_tabular()
    try:
        return TabularPolicy.from_probs(pi)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


def _check_shapes(mu, *pairs: tuple[str, TabularPolicy]) -> None:
    if not is_concrete(mu):
        return
    (name0, p0), *rest = pairs
    for name, p in rest:
        if p.log_probs.shape != p0.log_probs.shape:
            raise ValueError(
                f"{name} has shape {tuple(p.log_probs.shape)} but {name0} has shape {tuple(p0.log_probs.shape)}; "
                "both must be [X, Y] over the same prompts and responses."
            )
    check_distribution(mu, p0.num_prompts, "mu")


def _log_mu(mu) -> Float[Array, " X"]:
    m = jnp.asarray(mu, dtype=jnp.result_type(float))
    return jnp.log(m)


def argmax_set(pi: PolicyLike, gamma: float = 0.0) -> Bool[Array, "X Y"]:
    """Boolean mask of the (1−γ)-approximate maximisers y*_γ(x) = {y : π(y|x) ≥ (1−γ)·max_y' π(y'|x)}.

    Appendix F.1; γ = 0 is the argmax *set* y*(x) of Eq. (2), ties included.
    """
    check_gamma(gamma)
    pi = as_policy(pi)
    lp = pi.log_probs
    top = jnp.max(lp, axis=-1, keepdims=True)
    return lp >= top + jnp.log1p(-jnp.asarray(gamma, lp.dtype))


def mass_on(pi: PolicyLike, mask: Bool[Array, "X Y"]) -> Float[Array, " X"]:
    """π(S(x)|x) = Σ_{y ∈ S(x)} π(y|x) for a set given as a boolean ``[X, Y]`` mask."""
    pi = as_policy(pi)
    _check_mask(mask, pi, "mask")
    return jnp.sum(jnp.where(mask, pi.probs, 0.0), axis=-1)


def _check_mask(mask, pi: TabularPolicy, name: str) -> None:
    """A concrete mask must be boolean (or 0/1) with the policy's shape ``[X, Y]``."""
    if not is_concrete(mask) or not is_concrete(pi.log_probs):
        return
    m = as_numeric_array(mask, name)
    if m.shape != tuple(pi.log_probs.shape):
        raise ValueError(
            f"{name} has shape {m.shape} but pi has shape {tuple(pi.log_probs.shape)}; give a boolean [X, Y] mask."
        )
    if m.dtype != bool and not np.all((m == 0) | (m == 1)):
        raise ValueError(f"{name} must be boolean (or 0/1), got values other than 0 and 1 (dtype {m.dtype}).")


def sharpness_error(
    pi_hat: PolicyLike, pi_base: PolicyLike, mu, delta: float, gamma: float = 0.0
) -> Float[Array, ""]:
    """P_{x~μ}[ π̂(y*_γ(x)|x) ≤ 1 − δ ], with y*_γ the approximate argmax set of ``pi_base``.

    The failure probability of Definition 3.1 (γ = 0) / Definition F.1; π̂ is (ε, δ, γ)-sharpened iff
    this is ≤ ε. The event uses "≤ 1 − δ" as in Theorem 4.1.
    """
    check_open_unit(delta, "delta")
    pi_hat, pi_base = as_policy(pi_hat, "pi_hat"), as_policy(pi_base, "pi_base")
    _check_shapes(mu, ("pi_base", pi_base), ("pi_hat", pi_hat))
    return sharpness_error_from_mass(mass_on(pi_hat, argmax_set(pi_base, gamma)), mu, delta)


def sharpness_error_from_mass(mass: Float[Array, " X"], mu, delta: float) -> Float[Array, ""]:
    """Σ_x μ(x)·1[mass(x) ≤ 1 − δ]: the μ-weighted sharpness test of Definition 3.1 / Theorem 4.1 given the
    per-prompt mass π̂(y*_γ(x)|x) (the one home of the "≤ 1 − δ" event; ``sharpness_error`` and the one-draw
    sweeps call it). ``delta`` may be a traced value."""
    mass = jnp.asarray(mass)
    return jnp.sum(jnp.where(mass <= 1.0 - delta, jnp.asarray(mu, mass.dtype), 0.0))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SharpnessEvaluation:
    """Exact scoring of fitted policies against π_base's (1−γ)-argmax set (Definition 3.1 / F.1).

    The evaluation step of the data path (instance → oracle → algorithm → **evaluation**): built by the
    caller, who knows π_base, and handed to the sweeps in :mod:`sharpsim.algorithms`, which see π_base only
    through the oracle's queries. ``reference`` is π_base itself (Algorithm 1's iterate π^(1), which XPO may
    return). A pytree; ``delta`` may be traced (a sweep over δ without recompiling) and is used as given.

    >>> import jax.numpy as jnp
    >>> from sharpsim import TabularPolicy
    >>> base = TabularPolicy.from_probs(jnp.array([[0.6, 0.4], [0.5, 0.5]]))
    >>> ev = SharpnessEvaluation.of(base, jnp.array([0.5, 0.5]), delta=0.2)
    >>> [round(float(v), 3) for v in ev(base)]  # prompt 0 fails (0.6 ≤ 0.8); prompt 1's y* is both responses
    [0.5, 0.8]
    """

    target: Bool[Array, "X Y"]
    mu: Float[Array, " X"]
    reference: Any = None
    delta: Any = 0.5

    @classmethod
    def of(cls, pi_base: PolicyLike, mu, delta: float, gamma: float = 0.0) -> "SharpnessEvaluation":
        """Score against y*_γ of ``pi_base`` under prompt distribution ``mu`` with threshold 1 − δ."""
        check_open_unit(delta, "delta")
        return cls(target=argmax_set(pi_base, gamma), mu=mu, reference=pi_base, delta=delta)

    def mass(self, policy: PolicyLike) -> Float[Array, " X"]:
        """π̂(y*_γ(x)|x) per prompt."""
        return mass_on(policy, self.target)

    def error(self, policy: PolicyLike) -> Float[Array, ""]:
        """P_{x~μ}[π̂(y*_γ(x)|x) ≤ 1 − δ] (equal to :func:`sharpness_error`)."""
        return sharpness_error_from_mass(self.mass(policy), self.mu, self.delta)

    def __call__(self, policy: PolicyLike):
        """``(sharpness error, μ-mean of π̂(y*_γ(x)|x))``."""
        mass = self.mass(policy)
        return sharpness_error_from_mass(mass, self.mu, self.delta), jnp.sum(self.mu * mass)

    def candidate_failures(self, log_probs: Float[Array, "X K Y"]) -> Float[Array, "X K"]:
        """1[π_k(y*_γ(x)|x) ≤ 1 − δ] for every candidate row of a finite class (worst-case tie-breaks)."""
        cand_mass = jnp.sum(jnp.where(self.target[:, None, :], jnp.exp(log_probs), 0.0), axis=-1)
        return (cand_mass <= 1.0 - self.delta).astype(jnp.result_type(float))


def is_sharpened(
    pi_hat: PolicyLike, pi_base: PolicyLike, mu, epsilon: float, delta: float, gamma: float = 0.0
) -> Bool[Array, ""]:
    """Whether π̂ is (ε, δ, γ)-sharpened relative to π_base (Definitions 3.1 and F.1)."""
    check_open_unit(epsilon, "epsilon")
    return sharpness_error(pi_hat, pi_base, mu, delta, gamma) <= epsilon


def coverage(pi: PolicyLike, mu, gamma: float = 0.0, p: int = 1) -> Float[Array, ""]:
    """Generalised coverage coefficient C_cov,γ,p(π) = (E_{x~μ}[π(y^π_γ(x)|x)^{−p}])^{1/p}.

    Eq. (6) at γ = 0, p = 1: C_cov = E_μ[1 / π(y*(x)|x)], the mass on the whole argmax set (App. F.1/H).
    EXACT for a tabular π; the autoregressive counterpart (exact by search, or an interval) is
    :func:`sharpsim.ar_metrics.ar_coverage`. Computed as a log-sum-exp, so tiny masses give a large finite value
    (or +inf past the dtype's range).
    """
    check_gamma(gamma)
    p = check_positive_int(p, "p")
    pi = as_policy(pi)
    _check_shapes(mu, ("pi", pi))
    log_mass = jnp.log(mass_on(pi, argmax_set(pi, gamma)))
    return jnp.exp(jax.nn.logsumexp(_log_mu(mu) - p * log_mass) / p)


def coverage_bar(pi: PolicyLike, mu) -> Float[Array, ""]:
    """C̄_cov = E_{x~μ}[1 / max_y π(y|x)] (Appendix D; ≥ C_cov, equal when the argmax is unique)."""
    pi = as_policy(pi)
    _check_shapes(mu, ("pi", pi))
    return jnp.exp(jax.nn.logsumexp(_log_mu(mu) - jnp.max(pi.log_probs, axis=-1)))


def _expect_log(pi: TabularPolicy, mu, log_f: Float[Array, "X Y"]) -> Float[Array, ""]:
    """log E_{x~μ, y~π}[exp(log_f)], skipping π(y|x) = 0 terms (so 0·∞ never becomes NaN)."""
    terms = jnp.where(pi.log_probs > -jnp.inf, pi.log_probs + log_f, -jnp.inf)
    return jax.nn.logsumexp(_log_mu(mu)[:, None] + terms)


def concentrability(pi: PolicyLike, pi_base: PolicyLike, mu) -> Float[Array, ""]:
    """𝒞_π = E_{x~μ, y~π}[π(y|x) / π_base(y|x)] (Eq. 9). +inf when π puts mass where π_base has none."""
    pi, pi_base = as_policy(pi), as_policy(pi_base, "pi_base")
    _check_shapes(mu, ("pi_base", pi_base), ("pi", pi))
    return jnp.exp(_expect_log(pi, mu, pi.log_probs - pi_base.log_probs))


def concentrability_beta(pi: PolicyLike, pi_prime: PolicyLike, mu, beta: float) -> Float[Array, ""]:
    """𝒞_{π/π′;β} = E_{x~μ, y~π}[(π(y|x) / π′(y|x))^β] (Eq. 9).

    The DPO analysis uses 𝒞_{π_base/π;β}: call ``concentrability_beta(pi_base, pi, mu, beta)``.
    """
    check_positive(beta, "beta")
    if is_concrete(beta):
        beta = float(beta)  # a huge Python int would overflow int32
    pi, pi_prime = as_policy(pi), as_policy(pi_prime, "pi_prime")
    _check_shapes(mu, ("pi", pi), ("pi_prime", pi_prime))
    diff = pi.log_probs - pi_prime.log_probs
    # β·0 = 0 even when β overflows the dtype (no inf·0 = NaN)
    return jnp.exp(_expect_log(pi, mu, jnp.where(diff == 0, 0.0, beta * diff)))


def margin(pi: PolicyLike, mu) -> Float[Array, ""]:
    """The largest γ_margin with max_y π(y|x) ≥ (1 + γ_margin)·π(y′|x) for all y′ ∉ y*(x), x ∈ supp(μ).

    Assumption 4.2. Equals min_x (max π / largest non-maximal π) − 1; +inf when no prompt in supp(μ) has
    a non-maximal response with positive mass.
    """
    pi = as_policy(pi)
    _check_shapes(mu, ("pi", pi))
    lp = pi.log_probs
    top = jnp.max(lp, axis=-1, keepdims=True)
    runner_up = jnp.max(jnp.where(lp < top, lp, -jnp.inf), axis=-1)  # -inf when nothing below the max
    log_ratio = top[:, 0] - runner_up  # +inf when no runner-up
    in_support = jnp.asarray(mu) > 0
    return jnp.expm1(jnp.min(jnp.where(in_support, log_ratio, jnp.inf)))


def pass_at_n(pi: PolicyLike, correct: Bool[Array, "X Y"], mu, N: int) -> Float[Array, ""]:
    """Pass@N = E_{x~μ}[1 − (1 − π(correct(x)|x))^N]: the chance that N i.i.d. samples contain a correct one.

    EXACT, from π's table (no sampling). Its estimator from M ≥ N drawn samples is
    :func:`sharpsim.bridge.pass_at_n_estimate` (unbiased, Chen et al. 2021). A skyline (it uses ground truth),
    not a self-reward (theory.md §1).
    """
    N = check_positive_int(N, "N")
    pi = as_policy(pi)
    _check_shapes(mu, ("pi", pi))
    _check_mask(correct, pi, "correct")
    p_correct = jnp.clip(mass_on(pi, jnp.asarray(correct, bool)), 0.0, 1.0)
    # 1 − (1 − p)^N as −expm1(N·log1p(−p)): exact to relative precision for tiny p (1 − exp would give 0
    # in float32 for p = 1e-9, N = 10), as in exact.bon_success_probability.
    success = -jnp.expm1(N * jnp.log1p(-p_correct))
    return jnp.sum(jnp.asarray(mu, success.dtype) * success)


# ----------------------------------------------------------------- inference-time metrics (issue 15, item 4)
__all__ += ["coverage_profile", "coverage_profile_from_samples", "max_at_k", "max_at_k_estimate",
            "generation_verification_gap"]


def coverage_profile(pi_star: PolicyLike, pi: PolicyLike, mu, Ns) -> Float[Array, " G"]:
    """P_cov[N](π) = P_{x~μ, y~π*(·|x)}[π*(y|x)/π(y|x) ≥ N] for every N in ``Ns`` (exact, tabular).

    The coverage profile of Chen, Huang, …, Foster (2025, "The Coverage Principle", arXiv:2510.15020): the
    π*-mass that π covers only at a ratio ≥ N, i.e. that best-of-N from π can miss. At π* = the paper's argmax
    policy (all mass on y*(x)), P_cov[N] = P_μ[π(y*(x)|x) ≤ 1/N], and Σ_{N≥1} P_cov[N] = E_μ[⌊1/π(y*|x)⌋]
    ∈ (C_cov − 1, C_cov] with C_cov = E_μ[1/π(y*|x)] (Eq. 6). Computed in log space
    (log π* − log π ≥ log N, no slack: a ratio equal to N up to rounding may fall either side); y with
    π(y|x) = 0 < π*(y|x) counts as uncovered at every N.
    """
    pi_star, pi = as_policy(pi_star, "pi_star"), as_policy(pi, "pi")
    _check_shapes(mu, ("pi_star", pi_star), ("pi", pi))
    log_n = jnp.log(jnp.atleast_1d(jnp.asarray(Ns, pi.log_probs.dtype)))
    log_ratio = pi_star.log_probs - pi.log_probs  # +inf where π = 0 < π*
    mass = jnp.where(pi_star.log_probs > -jnp.inf, pi_star.probs, 0.0)  # [X, Y]
    hit = log_ratio[None] >= log_n[:, None, None]  # [G, X, Y]
    return jnp.einsum("x,gxy->g", jnp.asarray(mu, mass.dtype), jnp.where(hit, mass[None], 0.0))


def coverage_profile_from_samples(log_ratios, Ns) -> np.ndarray:
    """Unbiased estimate of P_cov[N] from log π*(y_i|x_i) − log π(y_i|x_i) at samples (x_i, y_i) ~ μ × π*:
    the fraction with log-ratio ≥ log N, for every N in ``Ns`` (NumPy; each entry is a binomial proportion, so
    :func:`sharpsim.complexity.proportion_interval` gives its interval)."""
    lr = np.asarray(log_ratios, np.float64).ravel()
    if lr.size == 0:
        raise ValueError("log_ratios is empty: give at least one sample.")
    if np.any(np.isnan(lr)):
        raise ValueError("log_ratios contains NaN.")
    return np.mean(lr[None, :] >= np.log(np.asarray(Ns, np.float64))[:, None], axis=1)


def _bon_law_under(log_probs: Float[Array, " Y"], proxy: Float[Array, " Y"], N) -> Float[Array, " Y"]:
    """Law of the best of N draws from exp(log_probs) under ``proxy`` (ties split ∝ π; as
    :func:`sharpsim.inference_time.bon_law_grid`, in JAX)."""
    p = jnp.exp(log_probs - jax.nn.logsumexp(log_probs))
    order = jnp.argsort(proxy)
    keys, cum = proxy[order], jnp.concatenate([jnp.zeros((1,), p.dtype), jnp.cumsum(p[order])])
    U = jnp.clip(cum[jnp.searchsorted(keys, proxy, side="right")], 0.0, 1.0)
    L = jnp.clip(cum[jnp.searchsorted(keys, proxy, side="left")], 0.0, 1.0)
    G = U - L
    return jnp.where((p > 0) & (G > 0), (U**N - L**N) * p / jnp.where(G > 0, G, 1.0), 0.0)


def max_at_k(pi: PolicyLike, reward: Float[Array, "X Y"], mu, k: int) -> Float[Array, ""]:
    """max@k = E_{x~μ}[E[max_{i ≤ k} r(x, y_i)]], y_1..y_k i.i.d. ~ π(·|x) (exact, tabular).

    The continuous-reward generalisation of pass@k (at a 0/1 reward it is :func:`pass_at_n`); Σ_j r_(j)
    (F_j^k − F_{j−1}^k) over responses sorted by reward, F the cumulative π-mass. Its estimator from n ≥ k
    sampled rewards is :func:`max_at_k_estimate`.
    """
    k = check_positive_int(k, "k")
    pi = as_policy(pi)
    _check_shapes(mu, ("pi", pi))
    r = jnp.asarray(reward, pi.log_probs.dtype)
    law = jax.vmap(lambda lp, rr: _bon_law_under(lp, rr, k))(pi.log_probs, r)
    per_prompt = jnp.sum(jnp.where(law > 0, law * r, 0.0), axis=-1)
    return jnp.sum(jnp.asarray(mu, per_prompt.dtype) * per_prompt)


def max_at_k_estimate(rewards, k: int) -> float:
    """Unbiased estimate of E[max of k i.i.d. rewards] from n ≥ k i.i.d. sampled rewards of one prompt.

    With r_(1) ≤ … ≤ r_(n) sorted, Σ_i r_(i) C(i−1, k−1)/C(n, k): the average of max over all C(n, k) subsets
    of size k (each r_(i) is the maximum of the C(i−1, k−1) subsets whose other members sit below it). At
    0/1 rewards it equals the unbiased pass@k 1 − C(n−c, k)/C(n, k) of Chen et al. (2021); for continuous
    rewards see arXiv:2505.15201 (max@k). Raises ValueError when k > n.
    """
    k = check_positive_int(k, "k")
    r = np.sort(np.asarray(rewards, np.float64).ravel())
    n = r.size
    if k > n:
        raise ValueError(f"k = {k} exceeds the number of samples n = {n}; max@k needs n ≥ k.")
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards must be finite.")
    i = np.arange(1, n + 1)
    log_w = (scipy_special.gammaln(i) - scipy_special.gammaln(k) - scipy_special.gammaln(np.maximum(i - k, 0) + 1)
             - (scipy_special.gammaln(n + 1) - scipy_special.gammaln(k + 1) - scipy_special.gammaln(n - k + 1)))
    return float(np.sum(np.where(i >= k, np.exp(log_w), 0.0) * r))


def generation_verification_gap(pi: PolicyLike, true_reward: Float[Array, "X Y"], verifier: Float[Array, "X Y"], mu,
                                N: int, *, relative: bool = False) -> Float[Array, ""]:
    """Generation–verification gap of a task family (μ over prompts, π the generator, ``verifier`` its score):

        gap_N = E_{x~μ}[ E_{y ~ BoN_N(π, verifier)}[r*(x, y)] − E_{y~π}[r*(x, y)] ],

    the true-reward gain from re-weighting the generator's own samples by the verification score, here by
    best-of-N under that score (exact law, ties split ∝ π). Song et al. (2024, "Mind the Gap: Examining the
    Self-Improvement Capabilities of LLMs", arXiv:2412.02674) define the GV-gap as J(π[verifier]) − J(π) (and
    a relative version divided by J(π), ``relative=True``); best-of-N is one choice of π[·], fixed here so the
    number is exact and comparable across N. With the paper's self-reward (verifier = log π, Eq. 2) and
    r* = 1[y ∈ y*(x)], gap_N = E_μ[1 − (1 − π(y*|x))^N − π(y*|x)] by Proposition C.1's identity.
    """
    N = check_positive_int(N, "N")
    pi = as_policy(pi)
    _check_shapes(mu, ("pi", pi))
    r = jnp.asarray(true_reward, pi.log_probs.dtype)
    v = jnp.asarray(verifier, pi.log_probs.dtype)
    law = jax.vmap(lambda lp, vv: _bon_law_under(lp, vv, N))(pi.log_probs, v)
    m = jnp.asarray(mu, r.dtype)
    selected = jnp.sum(m * jnp.sum(jnp.where(law > 0, law * r, 0.0), axis=-1))
    base = jnp.sum(m * jnp.sum(jnp.where(pi.probs > 0, pi.probs * r, 0.0), axis=-1))
    return (selected - base) / base if relative else selected - base
