"""Tabular sample-and-evaluate throughput and the exact best-of-N law: JAX vs vectorised NumPy.

Issue targets: ≥ 2× NumPy on 2 CPU cores at X=1024, Y=4096, N=256; ≥ 10 G samples/s on an H100 at
X=4096, Y=8192, N=4096 (the GPU configuration runs only when a GPU is present).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sharpsim.benchmarks._timing import environment, time_jax, time_numpy
from sharpsim.exact import bon_policy
from sharpsim.policies import TabularPolicy

__all__ = ["run", "numpy_sample_and_evaluate", "numpy_bon_law"]


def numpy_sample_and_evaluate(rng: np.random.Generator, P: np.ndarray, log_P: np.ndarray, N: int):
    """N inverse-CDF draws per row of P plus their log-probs, vectorised over rows.

    All rows are searched at once in one sorted array: row x's CDF is shifted by x, so a uniform u for
    row x becomes x + u·total_x (the standard trick for a batched ``searchsorted`` in NumPy).
    """
    X, Y = P.shape
    cdf = np.cumsum(P, axis=1)
    total = cdf[:, -1:]
    flat = (cdf + np.arange(X)[:, None]).ravel()
    u = rng.random((X, N)) * total + np.arange(X)[:, None]
    idx = np.searchsorted(flat, u.ravel(), side="right").reshape(X, N) - np.arange(X)[:, None] * Y
    idx = np.minimum(idx, Y - 1)
    return idx, np.take_along_axis(log_P, idx, axis=1)


def numpy_bon_law(P: np.ndarray, N: int) -> np.ndarray:
    """The exact best-of-N law (theory.md §6) for every row, vectorised: sort, cumulative sums, tie groups."""
    order = np.argsort(P, axis=1)
    p = np.take_along_axis(P, order, axis=1)
    below = np.concatenate([np.zeros((P.shape[0], 1)), np.cumsum(p, axis=1)], axis=1)
    rows = np.arange(P.shape[0])[:, None]
    first = np.stack([np.searchsorted(r, r, side="left") for r in p])
    last = np.stack([np.searchsorted(r, r, side="right") for r in p])
    U, L = below[rows, last], below[rows, first]
    law_sorted = (U**N - L**N) / (last - first)
    out = np.empty_like(P)
    np.put_along_axis(out, order, law_sorted, axis=1)
    return out


def _bench_sampling(X: int, Y: int, N: int, reps: int) -> dict:
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.full(Y, 0.5), size=X).astype(np.float32)
    pi = TabularPolicy.from_probs(P)

    # The policy is an argument, not a closure: a closed-over table becomes an XLA constant and
    # constant folding then takes minutes at this size.
    @jax.jit
    def jax_sample(key, pi):
        keys = jax.random.split(key, X)
        return jax.vmap(lambda k, x: pi.sample_and_log_prob(k, x, N))(keys, jnp.arange(X))

    compile_s, jax_s = time_jax(jax_sample, jax.random.key(0), pi, reps=reps)
    log_P = np.log(P)
    np_s = time_numpy(lambda: numpy_sample_and_evaluate(rng, P, log_P, N), reps=reps)
    samples = X * N
    return {
        "benchmark": "tabular sample-and-evaluate",
        "shape": f"X={X} Y={Y} N={N}",
        "dtype": str(pi.log_probs.dtype),
        "compile_s": round(compile_s, 3),
        "jax_per_s": samples / jax_s,
        "numpy_per_s": samples / np_s,
        "unit": "samples",
        "ratio": np_s / jax_s,
    }


def _bench_bon(X: int, Y: int, N: int, reps: int) -> dict:
    rng = np.random.default_rng(1)
    P = rng.dirichlet(np.full(Y, 0.5), size=X).astype(np.float32)
    pi = TabularPolicy.from_probs(P)
    f = jax.jit(lambda p: bon_policy(p, N).log_probs)
    compile_s, jax_s = time_jax(f, pi, reps=reps)
    P64 = P.astype(np.float64)
    np_s = time_numpy(lambda: numpy_bon_law(P64, N), reps=max(1, reps // 2))
    return {
        "benchmark": "exact best-of-N law",
        "shape": f"X={X} Y={Y} N={N}",
        "dtype": str(pi.log_probs.dtype),
        "compile_s": round(compile_s, 3),
        "jax_per_s": X / jax_s,
        "numpy_per_s": X / np_s,
        "unit": "prompts",
        "ratio": np_s / jax_s,
    }


def run(quick: bool = True) -> list[dict]:
    """Measure and return one row per configuration (environment fields included)."""
    env = environment()
    reps = 3 if quick else 10
    rows = [_bench_sampling(1024, 4096, 256, reps), _bench_bon(1024, 4096, 256, reps)]
    if env["platform"] == "gpu":
        rows.append(_bench_sampling(4096, 8192, 4096, reps))
    return [{**r, **env} for r in rows]
