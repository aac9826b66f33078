"""Shared pieces of the hard-instance experiments (``sft_minimax``, ``adaptive_vs_fixed``).

* :func:`hard_setting_instance` — the Theorem 3.1′ instance (γ = 1/2) of a setting, with its constants;
* :func:`hard_class_arrays`, :func:`bon_closure_stack`, :func:`adaptive_closure_log_probs` — the hard class [M]^d,
  its best-of-N closure (Assumption 4.1) and its AdaBoN closure (Assumption D.1), padded to a common size so
  every setting of a mode shares ONE compiled program;
* :func:`fixed_sweep_program`, :func:`adaptive_sweep_program` — jit(vmap) over trials; per trial π_base = π^I with
  I ~ Uniform([M]^d) (Lemma H.2 lower-bounds the Bayes risk under a uniform I, so the experiments average over I
  exactly as the proof does);
* :func:`lattice` — absolute geometric grids (the same lattice for every setting, so the grid's discreteness
  cannot line up with the predicted scaling);
* :func:`grid_sample_complexity` — m̂(ρ) = the smallest n·N on an (n, N) grid whose success rate is ≥ 1 − ρ,
  with a paired bootstrap (the grid points of one trial share one draw).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from sharpsim.classes import FiniteClass
from sharpsim.oracle import SampleEvaluateOracle
from sharpsim.policies import TabularPolicy

GAMMA = 0.5  # Theorem 3.1′'s γ
DELTA = 0.5  # success: π̂(y*_γ(x)|x) > 1/2, i.e. sharpness_error at δ = 1/2 (Theorem 3.1's criterion)


def adaptive_pick_mode_probability(M: int, mu_stop: float) -> float:
    """P[AdaBoN pick = y_j] at a rare prompt of the hard instance (exact): the law's one home is
    :func:`sharpsim.finite_size.adaptive_pick_planted_probability` (1 − (1 − 2/M)^{K_q}, ≥ 1 − δ/2 by Lemma I.1)."""
    from sharpsim.finite_size import adaptive_pick_planted_probability

    return adaptive_pick_planted_probability(M, mu_stop)


def adaptive_closure_log_probs(M: int, d: int, M_max: int, mu_stop: float) -> np.ndarray:
    """{π^AdaBoN_{μ_stop} : π ∈ Π} for the (padded) hard class, ``[X, M_max, M_max + 1]`` log-probs.

    Every rare-prompt candidate P_j becomes a on y_j and (1 − a)/(M − 1) on each other y_l (l ≥ 1), with
    a = :func:`adaptive_pick_mode_probability`; x_0's δ_{y_0} is its own AdaBoN law. It contains
    π_base^AdaBoN whenever π_base ∈ Π, i.e. Assumption D.1 holds.
    """
    a = adaptive_pick_mode_probability(M, mu_stop)
    X, Y = d + 1, M_max + 1
    rare = np.zeros((M, M + 1))
    rare[:, 1:] = (1.0 - a) / (M - 1)
    rare[np.arange(M), np.arange(M) + 1] = a
    probs = np.zeros((X, M_max, Y))
    probs[0, :, 0] = 1.0
    probs[1:, :M, :M + 1] = rare
    probs[1:, M:, :M + 1] = rare[0]
    with np.errstate(divide="ignore"):
        return np.log(probs)


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


# ------------------------------------------------------------------------------------------ padded classes
def hard_class_arrays(M: int, d: int, M_max: int, Delta: float):
    """The hard class [M]^d as arrays padded to M_max candidates and M_max + 1 responses.

    Padding responses have probability 0 (log −inf) and padding candidates repeat candidate 0 with
    ``valid = False`` (never selected), so every setting of a mode shares one compiled program. Returns
    ``(log_probs [X, M_max, M_max + 1], valid [X, M_max], mu [X])`` as NumPy arrays; the un-padded block is
    exactly :func:`sharpsim.instances.hard_instance`'s ``class_log_probs`` (γ = 1/2).
    """
    from sharpsim.instances import hard_instance  # the instance's one home: pad its class, do not rebuild it

    inst = hard_instance(jax.random.key(0), d=d, M=M, Delta=Delta, gamma=GAMMA)
    X, Y = d + 1, M_max + 1
    block = np.asarray(inst.class_log_probs, np.float64)  # [X, M, M + 1]
    lp = np.full((X, M_max, Y), -np.inf)
    lp[:, :M, :M + 1] = block
    lp[:, M:, :M + 1] = block[:, :1]  # padding candidates repeat candidate 0 (never valid)
    valid = np.arange(M_max)[None, :] < np.asarray(inst.num_candidates)[:, None]
    return lp, valid, np.asarray(inst.mu, np.float64)


def bon_closure_stack(M: int, d: int, M_max: int, N_grid) -> np.ndarray:
    """log π^BoN_N for every candidate of the (padded) hard class and every N of the grid: ``[H, X, K, Y]``.

    Closed form of theory.md §6 (equal to ``FiniteClass.bon_closure(N)``; tests check it): P_j's mode y_j has
    the mass 1 − (1 − 2/M)^N, and the M − 1 responses tied at the lower level share (1 − 2/M)^N; x_0's δ_{y_0}
    is its own best-of-N law.
    """
    X, Y = d + 1, M_max + 1
    out = np.zeros((len(N_grid), X, M_max, Y))
    out[:, 0, :, 0] = 1.0
    for h, N in enumerate(N_grid):
        miss = (1.0 - 2.0 / M) ** N
        rare = np.zeros((M, M + 1))
        rare[:, 1:] = miss / (M - 1)
        rare[np.arange(M), np.arange(M) + 1] = 1.0 - miss
        out[h, 1:, :M, :M + 1] = rare
        out[h, 1:, M:, :M + 1] = rare[0]
    with np.errstate(divide="ignore"):
        return np.log(out)


def _member_oracle(key, log_probs, mu, M):
    X = log_probs.shape[0]
    index = jnp.concatenate([jnp.zeros((1,), jnp.int32), jax.random.randint(key, (X - 1,), 0, M, jnp.int32)])
    return SampleEvaluateOracle(TabularPolicy(log_probs=log_probs[jnp.arange(X), index]), mu)


def _first_stable(success):
    """success [G, H] (monotone in H expected) -> (index of the first h from which every h' ≥ h succeeds
    (H if none) [G], number of grid points that succeed before a later failure)."""
    H = success.shape[-1]
    fail = ~success
    any_fail = jnp.any(fail, axis=-1)
    last_fail = H - 1 - jnp.argmax(fail[:, ::-1], axis=-1)
    first = jnp.where(any_fail, last_fail + 1, 0)
    h = jnp.arange(H)
    violations = jnp.sum(success & (h[None, :] < jnp.where(any_fail, last_fail, -1)[:, None]))
    return first.astype(jnp.int32), violations.astype(jnp.int32)


def _first_draw_reward(x, responses, log_probs):
    """A deliberately broken self-reward (every draw ties, so "best of N" is the first draw): the private hook of
    the end-to-end tests' negative control."""
    del x, responses
    return jnp.zeros_like(log_probs)


@functools.lru_cache(maxsize=None)
def fixed_sweep_program(n_grid: tuple, N_grid: tuple, broken: bool = False):
    """jit(vmap over trial keys) of SFT-sharpening on the hard class over an (n, N) grid (one draw per trial).

    Arguments ``(keys, class_log_probs, valid, bon_stack, mu, M, epsilon)``; per trial π_base = π^I with
    I ~ Uniform([M]^d), then :func:`sharpsim.algorithms.sft_sharpening_sweep` with the class N ↦ bon_closure(N)
    (rows ``bon_stack[h]``), δ = γ = 1/2. Returns ``(first_stable [K, G], violations [K])``: per n, the index of
    the smallest grid N from which every larger grid N is sharpened (sharpness_error ≤ ε).
    """
    from sharpsim.algorithms import sft_sharpening_sweep

    def one(key, log_probs, valid, stack, mu, M, epsilon):
        k_inst, k_alg = jax.random.split(key)
        oracle = _member_oracle(k_inst, log_probs, mu, M)
        classes = {N: FiniteClass(log_probs=stack[h], valid=valid, product=True) for h, N in enumerate(N_grid)}
        kw = {"reward": _first_draw_reward} if broken else {}
        sweep = sft_sharpening_sweep(k_alg, oracle, lambda N: classes[N], n_grid, N_grid, delta=DELTA, gamma=GAMMA,
                                     **kw)
        return _first_stable(sweep.sharpness_error <= epsilon)

    return jax.jit(jax.vmap(one, in_axes=(0,) + (None,) * 6))


@functools.lru_cache(maxsize=None)
def adaptive_sweep_program(n_grid: tuple, mu_stop: float, chunk: int = 32):
    """jit(vmap over trial keys) of adaptive SFT-sharpening (Eq. 10) on the hard class over an n grid.

    Arguments ``(keys, class_log_probs, valid, ada_log_probs, mu, M)``; the class is the AdaBoN closure
    (``ada_log_probs``), δ = γ = 1/2. Returns ``(sharpness_error [K, G], num_queries [K, G], truncated [K])``.
    """
    from sharpsim.algorithms import adaptive_sft_sharpening_sweep

    def one(key, log_probs, valid, ada, mu, M):
        k_inst, k_alg = jax.random.split(key)
        oracle = _member_oracle(k_inst, log_probs, mu, M)
        cls = FiniteClass(log_probs=ada, valid=valid, product=True)
        sweep = adaptive_sft_sharpening_sweep(k_alg, oracle, cls, n_grid, delta=DELTA, mu_stop=mu_stop,
                                              gamma=GAMMA, chunk=chunk)
        return sweep.sharpness_error, sweep.num_queries, jnp.any(sweep.truncated)

    return jax.jit(jax.vmap(one, in_axes=(0,) + (None,) * 5))


# ------------------------------------------------------------------------------------------ sufficient statistics
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


def fixed_success_grid(v: RareVisits, n_grid, N_grid, Delta: float, epsilon: float, delta: float = DELTA):
    """success [G, H, K] of fixed-N SFT-sharpening (MLE over the best-of-N closure) at every (n, N), prefix-coupled
    (the run at (n, N) uses the first n prompts and the first N draws of each)."""
    from sharpsim.finite_size import allowed_failures, bon_pick_planted_probability

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


def adaptive_success_grid(v: RareVisits, n_grid, Delta: float, epsilon: float, mu_stop: float,
                          delta: float = DELTA):
    """(success [G, K], queries [G, K]) of adaptive SFT-sharpening (Eq. 10, MLE over the AdaBoN closure) for every
    n of the grid (prefixes of one draw). A rare visit costs max(k_0, K_2) draws with the planted pick if
    k_0 ≤ K_q, else K_q draws with the other pick (K_y = Eq. 10's threshold for a response of probability y);
    a visit to x_0 costs ⌈μ_stop⌉ = K_1."""
    from sharpsim.finite_size import _first_k_at_least, adaptive_pick_planted_probability, allowed_failures

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
