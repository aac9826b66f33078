"""The compiled SFT-sharpening sweep programs shared by ``sft_delta`` and ``sft_gamma`` (issue 11).

One compiled program per instance family, shared by the experiments that use it (sft_delta's hard family and
sft_gamma's p = 2 part; sft_delta's random family and sft_gamma's γ part): same static grids, same padded
shapes, so ``sharpsim reproduce`` compiles each once. Every setting parameter is a traced argument. The rows they
return and the m̂ read off them are :mod:`sharpsim_experiments._scaling`'s.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sharpsim import metrics
from sharpsim.algorithms import map_trials, sft_sharpening_sweep
from sharpsim.classes import TabularClass
from sharpsim.complexity import first_stable_index, geometric_lattice
from sharpsim.instances import near_max_group
from sharpsim.oracle import SampleEvaluateOracle

from sharpsim_experiments._hard_instance import bon_closure_stack, fixed_sweep_trial, hard_class_arrays
from sharpsim_experiments._scaling import stable_rows

GROUP_SHAPE = {"X": 4, "Y": 96}  # near_max_group instances: prompts (uniform μ) and responses
HARD_D = 2  # rare prompts of the hard instances of sft_delta (ε = 0.04) and sft_gamma's p = 2 sweep


def hard_settings_M_max(mode: str) -> int:
    from sharpsim_experiments import sft_delta, sft_gamma

    return max(s["M"] for s in sft_delta.settings(mode) + sft_gamma.settings(mode) if "M" in s and s.get("d") == HARD_D
               and s.get("family", "hard") == "hard")


def hard_grids(mode: str) -> tuple:
    """The (n, N) lattice shared by every d = 2 hard-instance setting of sft_delta and sft_gamma."""
    from sharpsim_experiments import sft_delta, sft_gamma

    ss = [s for s in sft_delta.settings(mode) + sft_gamma.settings(mode) if s.get("family", "hard") == "hard" and "M" in s]
    dd = [s["d"] / s["Delta"] for s in ss]
    N_hi = max(max(0.9 * s["M"] for s in ss), max(1.4 * s.get("N_delta", 0) for s in ss))
    return (tuple(geometric_lattice(1.2 * min(dd), 20 * max(dd), 2)),
            tuple(geometric_lattice(0.22 * min(s["M"] for s in ss), N_hi, 4)))


def group_grids(mode: str) -> tuple:
    X = GROUP_SHAPE["X"]
    return tuple(geometric_lattice(X, 16 * X, 2)), tuple(geometric_lattice(1, 160, 4))


def run_hard(keys, setting: dict, mode: str, reward, delta: float) -> list:
    """One hard-instance setting (fields M, d, Delta, epsilon): :func:`sharpsim_experiments._hard_instance.fixed_sweep_trial`
    over the trial keys (δ and ε traced: one compile per experiment), as tidy rows."""
    n_grid, N_grid = hard_grids(mode)
    M, d, M_max = int(setting["M"]), int(setting["d"]), hard_settings_M_max(mode)
    lp, valid, mu = hard_class_arrays(M, d, M_max, float(setting["Delta"]))
    stack = bon_closure_stack(M, d, M_max, N_grid)
    dtype = jnp.result_type(float)
    first, viol = map_trials(
        fixed_sweep_trial, keys, jnp.asarray(lp, dtype), jnp.asarray(valid), jnp.asarray(stack, dtype),
        jnp.asarray(mu, dtype), jnp.int32(M), jnp.asarray(setting["epsilon"], dtype), jnp.asarray(delta, dtype),
        n_grid, N_grid, reward)
    return stable_rows(first, viol, n_grid, N_grid)


def group_trial(key, K, p, epsilon, delta, n_grid: tuple, N_grid: tuple, reward):
    """One trial of SFT with the tabular class on a :func:`sharpsim.instances.near_max_group` instance (K, mode
    mass p, ε, δ traced). One draw scored against y*_{1/2} and y* (γ = 0). Returns (first_γ, viol_γ, first_0,
    viol_0, exact C_cov,1/2, exact C_cov)."""
    X, Y = GROUP_SHAPE["X"], GROUP_SHAPE["Y"]
    k_inst, k_alg = jax.random.split(key)
    pi = near_max_group(k_inst, K, X, Y, p)
    mu = jnp.full((X,), 1.0 / X, pi.log_probs.dtype)
    oracle = SampleEvaluateOracle(pi, mu)

    def sweep_error(gamma):
        evaluate = metrics.SharpnessEvaluation.of(pi, mu, delta, gamma)
        return sft_sharpening_sweep(k_alg, oracle, TabularClass(X, Y), n_grid, N_grid, evaluate=evaluate,
                                    reward=reward).sharpness_error

    err = jax.vmap(sweep_error)(jnp.array([0.5, 0.0], mu.dtype))
    return (*first_stable_index(err[0] <= epsilon), *first_stable_index(err[1] <= epsilon),
            metrics.coverage(pi, mu, gamma=0.5), metrics.coverage(pi, mu))


def run_group(keys, K: int, p: float, epsilon: float, delta: float, mode: str, reward) -> tuple:
    n_grid, N_grid = group_grids(mode)
    dtype = jnp.result_type(float)
    out = map_trials(group_trial, keys, jnp.int32(K), jnp.asarray(p, dtype), jnp.asarray(epsilon, dtype),
                     jnp.asarray(delta, dtype), n_grid, N_grid, reward)
    return tuple(np.asarray(a) for a in out)
