"""Shared pieces of the hard-instance experiments (``sft_minimax``, ``adaptive_vs_fixed``).

* :func:`hard_setting_instance` — the Theorem 3.1′ instance (γ = 1/2) of a setting, with its constants;
* :func:`random_member_oracle` — π_base = π^I with I ~ Uniform([M]^d), drawn *per trial* (Lemma H.2 lower-bounds
  the Bayes risk under a uniform I, so the experiments average over I exactly as the proof does);
* :func:`adaptive_closure` — the exact law of Eq. (10)'s AdaBoN pick for every candidate of the hard class, the
  class in which Assumption D.1 holds (the fixed-N analogue is ``FiniteClass.bon_closure``);
* :func:`lattice` — absolute geometric grids (the same lattice for every setting, so the grid's discreteness
  cannot line up with the predicted scaling);
* :func:`grid_sample_complexity` — m̂(ρ) = the smallest n·N on an (n, N) grid whose success rate is ≥ 1 − ρ,
  with a paired bootstrap (the grid points of one trial share one draw).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from sharpsim.classes import FiniteClass
from sharpsim.instances import hard_instance
from sharpsim.oracle import SampleEvaluateOracle
from sharpsim.policies import TabularPolicy

GAMMA = 0.5  # Theorem 3.1′'s γ
DELTA = 0.5  # success: π̂(y*_γ(x)|x) > 1/2, i.e. sharpness_error at δ = 1/2 (Theorem 3.1's criterion)


def hard_setting_instance(epsilon: float, C: float, d: int):
    """The App. H instance with Δ = 16ε, M = ⌈1 + C/ε⌉ (p = 1, γ = 1/2) and its exact constants."""
    import bounds

    Delta, M = bounds.hard_instance_parameters(epsilon, C)
    inst = hard_instance(jax.random.key(0), d=d, M=int(M), Delta=float(Delta), gamma=GAMMA)
    consts = inst.constants(gamma=GAMMA)
    return inst, {
        "M": int(M), "Delta": float(Delta), "C_cov": consts["C_cov"], "C_cov_bar": consts["C_cov_bar"],
        "log_class_size": float(inst.log_class_size),
    }


def random_member_oracle(key, inst) -> SampleEvaluateOracle:
    """A sample-and-evaluate oracle for π^I, I ~ Uniform([M]^d) (x_0 keeps its single candidate P_0)."""
    lp = inst.class_log_probs  # [X, K, Y]
    X, K, _ = lp.shape
    index = jnp.concatenate([jnp.zeros((1,), jnp.int32), jax.random.randint(key, (X - 1,), 0, K, jnp.int32)])
    return SampleEvaluateOracle(TabularPolicy(log_probs=lp[jnp.arange(X), index]), inst.mu)


def adaptive_pick_mode_probability(M: int, mu_stop: float) -> float:
    """P[AdaBoN pick = y_j] at a rare prompt x_i of the hard instance (exact).

    P_j has two levels: 2/M on y_j and q = (M − 2)/(M(M − 1)) on the other M − 1 responses. Eq. (10) stops at
    the first k with k ≥ μ_stop / max_{j≤k} π_base(y_j|x); if y_j has not been drawn by K_q = min{k : log k ≥
    log μ_stop − log q} the rule fires with a wrong pick, otherwise the pick is y_j. So the pick is y_j with
    probability 1 − (1 − 2/M)^{K_q} (≥ 1 − δ/2 by Lemma I.1). K_q is computed in float64 logs like the rule.
    """
    q = (M - 2) / (M * (M - 1))
    K_q = math.ceil(math.exp(math.log(mu_stop) - math.log(q)) - 1e-9)
    while math.log(K_q) < math.log(mu_stop) - math.log(q):
        K_q += 1
    while K_q > 1 and math.log(K_q - 1) >= math.log(mu_stop) - math.log(q):
        K_q -= 1
    return 1.0 - (1.0 - 2.0 / M) ** K_q


def adaptive_closure(base: FiniteClass, M: int, mu_stop: float) -> FiniteClass:
    """{π^AdaBoN_{μ_stop} : π ∈ Π} for the hard class (Assumption D.1 holds for it when π_base ∈ Π).

    Every rare-prompt candidate P_j becomes a on y_j and (1 − a)/(M − 1) on each other y_l (l ≥ 1), with
    a = :func:`adaptive_pick_mode_probability`; x_0's candidate δ_{y_0} is its own AdaBoN law.
    """
    a = adaptive_pick_mode_probability(M, mu_stop)
    lp = np.asarray(base.log_probs, np.float64)
    X, K, Y = lp.shape
    rare = np.full((K, Y), (1.0 - a) / (M - 1))
    rare[:, 0] = 0.0
    rare[np.arange(K), np.arange(K) + 1] = a
    with np.errstate(divide="ignore"):
        new = np.concatenate([lp[:1], np.broadcast_to(np.log(rare), (X - 1, K, Y))], axis=0)
    return dataclasses.replace(base, log_probs=jnp.asarray(new, base.log_probs.dtype))


def lattice(lo: float, hi: float, per_octave: int) -> list[int]:
    """Distinct integers round(2^{k/per_octave}) in [lo, hi] (an absolute geometric lattice)."""
    k0 = math.floor(per_octave * math.log2(max(lo, 1.0)))
    k1 = math.ceil(per_octave * math.log2(max(hi, 1.0)))
    vals = sorted({int(round(2.0 ** (k / per_octave))) for k in range(k0, k1 + 1)})
    return [v for v in vals if v >= 1]


def _frontier(n_grid, N_grid, rates, target):
    """rates [..., G, H] -> (m̂ [...], n at the minimum [...]): per n, the smallest N reaching the target (rate
    interpolated linearly in log N between the bracketing grid points), then the minimum of n·N̂(n)."""
    n = np.asarray(n_grid, float)
    N = np.asarray(N_grid, float)
    ok = rates >= target
    hit = ok.any(-1)
    i = np.argmax(ok, axis=-1)
    j = np.maximum(i - 1, 0)
    r_hi = np.take_along_axis(rates, i[..., None], -1)[..., 0]
    r_lo = np.take_along_axis(rates, j[..., None], -1)[..., 0]
    gap = r_hi - r_lo
    frac = np.clip(np.where(gap > 0, (target - r_lo) / np.where(gap > 0, gap, 1.0), 1.0), 0.0, 1.0)
    logN = np.where(i > 0, np.log(N[j]) + frac * (np.log(N[i]) - np.log(N[j])), np.log(N[i]))
    m = np.where(hit, n * np.exp(logN), np.inf)
    g = np.argmin(m, axis=-1)
    return np.min(m, axis=-1), n[g]


@dataclasses.dataclass(frozen=True)
class GridComplexity:
    estimate: float
    lower: float
    upper: float
    n_at: float
    reached_fraction: float
    below_grid: bool


def grid_sample_complexity(n_grid, N_grid, success, rho: float, *, n_boot: int = 1000, seed: int = 0,
                           level: float = 0.95) -> GridComplexity:
    """m̂(ρ) = min over n of n·N̂(n), N̂(n) the smallest N with success rate ≥ 1 − ρ at (n, N) (log-interpolated).

    ``success`` is ``[G, H, K]`` (grid points × trials). Paired percentile bootstrap over trial columns (every
    grid point of a trial comes from one draw). ``below_grid``: the best n already succeeds at the smallest N.
    """
    s = np.asarray(success, bool)
    K = s.shape[-1]
    target = 1.0 - rho
    rates = s.mean(-1)
    est, n_at = _frontier(n_grid, N_grid, rates, target)
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for b0 in range(0, n_boot, 100):  # chunks keep the [G, H, chunk, K] gather small
        idx = rng.integers(0, K, size=(min(100, n_boot - b0), K))
        br = np.moveaxis(s[:, :, idx].mean(-1), -1, 0)  # [B, G, H]
        boot[b0:b0 + idx.shape[0]] = _frontier(n_grid, N_grid, br, target)[0]
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha], method="inverted_cdf")
    g = int(np.argmin(np.abs(np.asarray(n_grid, float) - n_at)))
    return GridComplexity(float(est), float(lo), float(hi), float(n_at), float(np.isfinite(boot).mean()),
                          bool(np.isfinite(est) and rates[g, 0] >= target))
