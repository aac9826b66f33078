"""Tabular sample-and-evaluate throughput and the exact best-of-N law: JAX vs vectorised NumPy.

Issue targets: ≥ 2× NumPy on 2 CPU cores at X=1024, Y=4096, N=256; ≥ 10 G samples/s on an H100 at
X=4096, Y=8192, N=4096 (the GPU configuration runs only when a GPU is present).

Two sampling rows, each timed against the same computation in NumPy:

* ``oracle``: the steady state of :class:`~sharpsim.SampleEvaluateOracle` on a tabular π_base, whose
  inverse-CDF table is built once per oracle; NumPy likewise builds its flattened CDF once. The one-off
  build is reported as ``prepare_s`` on both sides.
* ``one-shot``: :meth:`TabularPolicy.sample_and_log_prob` on every prompt, which recomputes each row's CDF
  per call (NumPy recomputes its cumulative sums too).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from sharpsim.benchmarks._timing import environment, time_jax, time_numpy
from sharpsim.exact import bon_policy
from sharpsim.oracle import SampleEvaluateOracle
from sharpsim.policies import TabularPolicy

__all__ = ["run", "numpy_sample_and_evaluate", "numpy_prepare", "numpy_sample_prepared", "numpy_bon_law"]


def numpy_prepare(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row totals ``[X, 1]`` and the flattened, row-shifted CDF ``[X·Y]`` that one ``searchsorted`` searches.

    Row x's CDF is shifted by x, so a uniform u for row x becomes x + u·total_x (the standard trick for a
    batched ``searchsorted`` in NumPy).
    """
    cdf = np.cumsum(P, axis=1)
    return cdf[:, -1:], (cdf + np.arange(P.shape[0])[:, None]).ravel()


def numpy_sample_prepared(
    rng: np.random.Generator, total: np.ndarray, flat: np.ndarray, log_P: np.ndarray, N: int
) -> tuple[np.ndarray, np.ndarray]:
    """N inverse-CDF draws per row plus their log-probs, from :func:`numpy_prepare`'s table."""
    X, Y = log_P.shape
    u = rng.random((X, N)) * total + np.arange(X)[:, None]
    idx = np.searchsorted(flat, u.ravel(), side="right").reshape(X, N) - np.arange(X)[:, None] * Y
    idx = np.minimum(idx, Y - 1)
    return idx, np.take_along_axis(log_P, idx, axis=1)


def numpy_sample_and_evaluate(rng: np.random.Generator, P: np.ndarray, log_P: np.ndarray, N: int):
    """N inverse-CDF draws per row of P plus their log-probs, cumulative sums included (one-shot)."""
    total, flat = numpy_prepare(P)
    return numpy_sample_prepared(rng, total, flat, log_P, N)


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


def _row(benchmark, X, Y, N, dtype, compile_s, jax_s, np_s, **extra) -> dict:
    return {
        "benchmark": benchmark,
        "shape": f"X={X} Y={Y} N={N}",
        "dtype": dtype,
        "compile_s": round(compile_s, 3),
        "jax_per_s": X * N / jax_s,
        "numpy_per_s": X * N / np_s,
        "unit": "samples",
        "ratio": np_s / jax_s,
        **extra,
    }


def _table(X: int, Y: int) -> np.ndarray:
    return np.random.default_rng(0).dirichlet(np.full(Y, 0.5), size=X).astype(np.float32)


def _bench_oracle(X: int, Y: int, N: int, reps: int) -> dict:
    """Steady-state ``oracle.respond`` on all X prompts (table built once) vs NumPy with a prepared CDF."""
    P = _table(X, Y)
    pi = TabularPolicy.from_probs(P)
    t0 = time.perf_counter()
    oracle = SampleEvaluateOracle(pi, jnp.full(X, 1.0 / X))
    jax.block_until_ready(oracle.sampler.cdf)
    prepare_jax = time.perf_counter() - t0  # includes the table builder's compilation
    prompts = jnp.arange(X)
    compile_s, jax_s = time_jax(lambda k: oracle.respond(k, prompts, N), jax.random.key(0), reps=reps)

    rng = np.random.default_rng(0)
    log_P = np.log(P)
    t0 = time.perf_counter()
    total, flat = numpy_prepare(P)
    prepare_np = time.perf_counter() - t0
    np_s = time_numpy(lambda: numpy_sample_prepared(rng, total, flat, log_P, N), reps=reps)
    return _row(
        "tabular sample-and-evaluate (oracle)", X, Y, N, str(pi.log_probs.dtype), compile_s, jax_s, np_s,
        prepare_s={"jax": round(prepare_jax, 3), "numpy": round(prepare_np, 3)},
    )


def _bench_one_shot(X: int, Y: int, N: int, reps: int) -> dict:
    """``TabularPolicy.sample_and_log_prob`` on every prompt (CDF per call) vs NumPy with its cumsum."""
    P = _table(X, Y)
    pi = TabularPolicy.from_probs(P)

    # The policy is an argument, not a closure: a closed-over table becomes an XLA constant and
    # constant folding then takes minutes at this size.
    @jax.jit
    def jax_sample(key, pi):
        keys = jax.random.split(key, X)
        return jax.vmap(lambda k, x: pi.sample_and_log_prob(k, x, N))(keys, jnp.arange(X))

    compile_s, jax_s = time_jax(jax_sample, jax.random.key(0), pi, reps=reps)
    rng = np.random.default_rng(0)
    log_P = np.log(P)
    np_s = time_numpy(lambda: numpy_sample_and_evaluate(rng, P, log_P, N), reps=reps)
    return _row("tabular sample-and-evaluate (one-shot)", X, Y, N, str(pi.log_probs.dtype), compile_s, jax_s, np_s)


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
    reps = 5 if quick else 15
    rows = [
        _bench_oracle(1024, 4096, 256, reps),
        _bench_one_shot(1024, 4096, 256, reps),
        _bench_bon(1024, 4096, 256, reps),
    ]
    if env["platform"] == "gpu":
        rows += [_bench_oracle(4096, 8192, 4096, reps), _bench_one_shot(4096, 8192, 4096, reps)]
    return [{**r, **env} for r in rows]
