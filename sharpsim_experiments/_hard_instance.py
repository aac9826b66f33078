"""The Theorem 3.1′ hard instance (App. H, γ = 1/2) padded for one compile, and the SFT trial programs on it.

Used by ``sft_minimax``, ``sft_delta``, ``sft_gamma``, ``sft_class_size`` and the tests of
:mod:`sharpsim.finite_size` (``adaptive_vs_fixed`` simulates the same laws through their sufficient statistics,
:func:`sharpsim.finite_size.sample_rare_visits`):

* :func:`hard_class_arrays`, :func:`bon_closure_stack`, :func:`adaptive_closure_log_probs` — the hard class [M]^d,
  its best-of-N closure (Assumption 4.1) and its AdaBoN closure (Assumption D.1), padded to a common size so
  every setting of a mode shares ONE compiled program;
* :func:`hard_member` — per trial π_base = π^I with I ~ Uniform([M]^d) (Lemma H.2 lower-bounds the Bayes risk
  under a uniform I, so the experiments average over I exactly as the proof does): its oracle and the
  experiment's evaluation of the fits (:class:`sharpsim.metrics.SharpnessEvaluation`);
* :func:`fixed_sweep_trial`, :func:`adaptive_sweep_trial` — one trial of the library's sweeps on the padded class,
  run over the trial keys by :func:`sharpsim.algorithms.map_trials`.

Grids (:func:`sharpsim.complexity.geometric_lattice`) and m̂(ρ) on an (n, N) grid
(:func:`sharpsim.complexity.grid_sample_complexity`) live in :mod:`sharpsim.complexity`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sharpsim import rewards
from sharpsim.algorithms import adaptive_sft_sharpening_sweep, sft_sharpening_sweep
from sharpsim.classes import FiniteClass
from sharpsim.complexity import first_stable_index
from sharpsim.finite_size import adaptive_pick_planted_probability
from sharpsim.metrics import SharpnessEvaluation
from sharpsim.oracle import SampleEvaluateOracle
from sharpsim.policies import TabularPolicy

GAMMA = 0.5  # Theorem 3.1′'s γ
DELTA = 0.5  # success: π̂(y*_γ(x)|x) > 1/2, i.e. sharpness_error at δ = 1/2 (Theorem 3.1's criterion)


def adaptive_closure_log_probs(M: int, d: int, M_max: int, mu_stop: float) -> np.ndarray:
    """{π^AdaBoN_{μ_stop} : π ∈ Π} for the (padded) hard class, ``[X, M_max, M_max + 1]`` log-probs.

    Every rare-prompt candidate P_j becomes a on y_j and (1 − a)/(M − 1) on each other y_l (l ≥ 1), with
    a = :func:`sharpsim.finite_size.adaptive_pick_planted_probability`; x_0's δ_{y_0} is its own AdaBoN law. It
    contains π_base^AdaBoN whenever π_base ∈ Π, i.e. Assumption D.1 holds.
    """
    a = adaptive_pick_planted_probability(M, mu_stop)
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


def hard_member(key, log_probs, mu, M, delta=DELTA, index=None):
    """π_base = π^I of the padded class (I ~ Uniform([M]^d) from ``key`` unless ``index`` [d] is given; x_0 keeps
    candidate 0): ``(oracle, evaluation)``, the evaluation scoring fits against y*_{1/2}(π^I) at threshold δ."""
    X = log_probs.shape[0]
    if index is None:
        index = jax.random.randint(key, (X - 1,), 0, M, jnp.int32)
    index = jnp.concatenate([jnp.zeros((1,), jnp.int32), index])
    pi = TabularPolicy(log_probs=log_probs[jnp.arange(X), index])
    return SampleEvaluateOracle(pi, mu), SharpnessEvaluation.of(pi, mu, delta, GAMMA)


def first_draw_reward(x, responses, log_probs):
    """A deliberately broken self-reward (every draw ties, so "best of N" is the first draw): the hook of the
    end-to-end tests' negative controls."""
    del x, responses
    return jnp.zeros_like(log_probs)


def fixed_sweep_trial(key, log_probs, valid, stack, mu, M, epsilon, delta, n_grid: tuple, N_grid: tuple,
                      reward=rewards.logprob_reward):
    """One trial of SFT-sharpening on the padded hard class over an (n, N) grid (one draw).

    π_base = π^I (:func:`hard_member`), then :func:`sharpsim.algorithms.sft_sharpening_sweep` with the class
    N ↦ bon_closure(N) (rows ``stack[h]``), scored at threshold ``delta`` (γ = 1/2). Returns
    :func:`sharpsim.complexity.first_stable_index` of "sharpness error ≤ ε": per n, the index of the smallest grid
    N from which every larger grid N is sharpened, and the isolated successes.
    """
    k_inst, k_alg = jax.random.split(key)
    oracle, evaluate = hard_member(k_inst, log_probs, mu, M, delta)
    classes = {N: FiniteClass(log_probs=stack[h], valid=valid, product=True) for h, N in enumerate(N_grid)}
    sweep = sft_sharpening_sweep(k_alg, oracle, lambda N: classes[N], n_grid, N_grid, evaluate=evaluate,
                                 reward=reward)
    return first_stable_index(sweep.sharpness_error <= epsilon)


def adaptive_sweep_trial(key, log_probs, valid, ada_log_probs, mu, M, n_grid: tuple, mu_stop: float, chunk: int = 32):
    """One trial of adaptive SFT-sharpening (Eq. 10) on the hard class over an n grid: the class is the AdaBoN
    closure (``ada_log_probs``), δ = γ = 1/2. Returns ``(sharpness_error [G], num_queries [G], truncated)``."""
    k_inst, k_alg = jax.random.split(key)
    oracle, evaluate = hard_member(k_inst, log_probs, mu, M)
    cls = FiniteClass(log_probs=ada_log_probs, valid=valid, product=True)
    sweep = adaptive_sft_sharpening_sweep(k_alg, oracle, cls, n_grid, evaluate=evaluate, mu_stop=mu_stop, chunk=chunk)
    return sweep.sharpness_error, sweep.num_queries, jnp.any(sweep.truncated)
