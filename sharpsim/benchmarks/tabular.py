"""Tabular sample-and-evaluate throughput and the exact best-of-N law: JAX vs vectorised NumPy and PyTorch.

Every row times the same computation in JAX, NumPy and (when installed) PyTorch (CPU, and CUDA where present)
in the same run; ``ratio`` is JAX's rate over the faster peer's (see ``_timing.with_peers``), and ``agree``
checks that the outputs match (sampling: the mean drawn log-probability within 6 standard errors; best-of-N:
the laws within 1e-4 in total variation per prompt).

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

from sharpsim.benchmarks._timing import (environment, moments_agree, time_jax, time_numpy, time_torch,
                                         torch_or_none, with_peers)
from sharpsim.exact import bon_policy
from sharpsim.oracle import SampleEvaluateOracle
from sharpsim.policies import TabularPolicy

__all__ = ["run", "numpy_sample_and_evaluate", "numpy_prepare", "numpy_sample_prepared", "numpy_bon_law",
           "torch_sample_prepared", "torch_bon_law"]


def torch_sample_prepared(torch, gen, cdf, log_P, N: int):
    """N inverse-CDF draws per row of a prepared ``cdf`` [X, Y] plus their log-probs (``torch.searchsorted``)."""
    X, Y = log_P.shape
    u = torch.rand((X, N), generator=gen, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
    idx = torch.searchsorted(cdf, u, right=True).clamp_(max=Y - 1)
    return idx, torch.gather(log_P, 1, idx)


def torch_bon_law(torch, P, N: int):
    """The exact best-of-N law of every row in PyTorch: sort, cumulative sums, tie groups by searchsorted."""
    p, order = torch.sort(P, dim=1, stable=True)
    zero = torch.zeros((P.shape[0], 1), dtype=P.dtype, device=P.device)
    below = torch.cat([zero, torch.cumsum(p, 1)], 1)
    first = torch.searchsorted(p, p, right=False)
    last = torch.searchsorted(p, p, right=True)
    law_sorted = (torch.gather(below, 1, last) ** N - torch.gather(below, 1, first) ** N) / (last - first)
    return torch.empty_like(P).scatter_(1, order, law_sorted)


def _torch_devices(torch) -> list:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


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


def _row(benchmark, X, Y, N, dtype, compile_s, unit="samples", **extra) -> dict:
    return {"benchmark": benchmark, "shape": f"X={X} Y={Y} N={N}", "dtype": dtype, "compile_s": round(compile_s, 3),
            "unit": unit, **extra}


def _table(X: int, Y: int) -> np.ndarray:
    return np.random.default_rng(0).dirichlet(np.full(Y, 0.5), size=X).astype(np.float32)


def _bench_oracle(X: int, Y: int, N: int, reps: int) -> dict:
    """Steady-state ``oracle.respond`` on all X prompts (table built once) vs NumPy and PyTorch with a prepared CDF."""
    P = _table(X, Y)
    pi = TabularPolicy.from_probs(P)
    t0 = time.perf_counter()
    oracle = SampleEvaluateOracle(pi, jnp.full(X, 1.0 / X))
    jax.block_until_ready(oracle.sampler.cdf)
    prepare_jax = time.perf_counter() - t0  # includes the table builder's compilation
    prompts = jnp.arange(X)
    fn = lambda k: oracle.respond(k, prompts, N)  # noqa: E731
    compile_s, jax_s = time_jax(fn, jax.random.key(0), reps=reps)
    jax_lp = np.asarray(fn(jax.random.key(1)).log_probs)

    rng = np.random.default_rng(0)
    log_P = np.log(P)
    t0 = time.perf_counter()
    total, flat = numpy_prepare(P)
    prepare_np = time.perf_counter() - t0
    np_s = time_numpy(lambda: numpy_sample_prepared(rng, total, flat, log_P, N), reps=reps)
    agree = moments_agree(jax_lp, numpy_sample_prepared(rng, total, flat, log_P, N)[1])
    peers, prepare = {"numpy": X * N / np_s}, {"jax": round(prepare_jax, 3), "numpy": round(prepare_np, 3)}
    torch = torch_or_none()
    if torch is not None:
        for dev in _torch_devices(torch):
            gen = torch.Generator(device=dev).manual_seed(0)
            tP = torch.as_tensor(P, device=dev)
            t0 = time.perf_counter()
            cdf = torch.cumsum(tP, 1)
            prepare[f"torch_{dev}"] = round(time.perf_counter() - t0, 3)
            tlp = torch.log(tP)
            t_s = time_torch(lambda: torch_sample_prepared(torch, gen, cdf, tlp, N), reps=reps)
            peers["torch" if dev == "cpu" else "torch_cuda"] = X * N / t_s
            agree &= moments_agree(jax_lp, torch_sample_prepared(torch, gen, cdf, tlp, N)[1].cpu().numpy())
    row = _row("tabular sample-and-evaluate (oracle)", X, Y, N, str(pi.log_probs.dtype), compile_s,
               prepare_s=prepare, agree=agree)
    return with_peers(row, X * N / jax_s, peers)


def _bench_one_shot(X: int, Y: int, N: int, reps: int) -> dict:
    """``TabularPolicy.sample_and_log_prob`` on every prompt (CDF per call) vs NumPy/PyTorch with their cumsum."""
    P = _table(X, Y)
    pi = TabularPolicy.from_probs(P)

    # The policy is an argument, not a closure: a closed-over table becomes an XLA constant and
    # constant folding then takes minutes at this size.
    @jax.jit
    def jax_sample(key, pi):
        keys = jax.random.split(key, X)
        return jax.vmap(lambda k, x: pi.sample_and_log_prob(k, x, N))(keys, jnp.arange(X))

    compile_s, jax_s = time_jax(jax_sample, jax.random.key(0), pi, reps=reps)
    jax_lp = np.asarray(jax_sample(jax.random.key(1), pi)[1])
    rng = np.random.default_rng(0)
    log_P = np.log(P)
    np_s = time_numpy(lambda: numpy_sample_and_evaluate(rng, P, log_P, N), reps=reps)
    agree = moments_agree(jax_lp, numpy_sample_and_evaluate(rng, P, log_P, N)[1])
    peers = {"numpy": X * N / np_s}
    torch = torch_or_none()
    if torch is not None:
        for dev in _torch_devices(torch):
            gen = torch.Generator(device=dev).manual_seed(0)
            tP = torch.as_tensor(P, device=dev)
            tlp = torch.log(tP)
            one = lambda: torch_sample_prepared(torch, gen, torch.cumsum(tP, 1), tlp, N)  # noqa: E731
            peers["torch" if dev == "cpu" else "torch_cuda"] = X * N / time_torch(one, reps=reps)
            agree &= moments_agree(jax_lp, one()[1].cpu().numpy())
    row = _row("tabular sample-and-evaluate (one-shot)", X, Y, N, str(pi.log_probs.dtype), compile_s, agree=agree)
    return with_peers(row, X * N / jax_s, peers)


def _bench_bon(X: int, Y: int, N: int, reps: int) -> dict:
    """The exact best-of-N law of every prompt: JAX (float32) vs NumPy and PyTorch (float64, the same algorithm)."""
    rng = np.random.default_rng(1)
    P = rng.dirichlet(np.full(Y, 0.5), size=X).astype(np.float32)
    pi = TabularPolicy.from_probs(P)
    f = jax.jit(lambda p: bon_policy(p, N).log_probs)
    compile_s, jax_s = time_jax(f, pi, reps=reps)
    law = np.exp(np.asarray(f(pi), np.float64))
    P64 = P.astype(np.float64)
    np_s = time_numpy(lambda: numpy_bon_law(P64, N), reps=max(1, reps // 2))
    tv = [float(np.abs(law - numpy_bon_law(P64, N)).sum(1).max() / 2)]
    peers = {"numpy": X / np_s}
    torch = torch_or_none()
    if torch is not None:
        for dev in _torch_devices(torch):
            tP = torch.as_tensor(P64, device=dev)
            t_s = time_torch(lambda: torch_bon_law(torch, tP, N), reps=max(1, reps // 2))
            peers["torch" if dev == "cpu" else "torch_cuda"] = X / t_s
            tv.append(float(np.abs(law - torch_bon_law(torch, tP, N).cpu().numpy()).sum(1).max() / 2))
    row = _row("exact best-of-N law", X, Y, N, str(pi.log_probs.dtype), compile_s, unit="prompts",
               max_tv_to_peers=max(tv), agree=max(tv) < 1e-4)
    return with_peers(row, X / jax_s, peers)


def run(quick: bool = True) -> list[dict]:
    """Measure and return one row per configuration (environment fields included)."""
    env = environment()
    reps = 3 if quick else 15
    rows = [
        _bench_oracle(1024, 4096, 256, reps),
        _bench_one_shot(1024, 4096, 256, reps),
        _bench_bon(1024, 4096, 256, reps),
    ]
    if env["platform"] == "gpu":
        rows += [_bench_oracle(4096, 8192, 4096, reps), _bench_one_shot(4096, 8192, 4096, reps)]
    return [{**r, **env} for r in rows]
