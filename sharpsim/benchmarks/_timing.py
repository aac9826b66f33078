"""Shared benchmark machinery, the brax way (design.md §4): compile time apart, warm-up, repetitions,
``block_until_ready`` on every output, and the environment (device kind, JAX version, x64) on every row."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import jax
import numpy as np

__all__ = ["environment", "time_jax", "time_numpy", "time_torch", "torch_or_none", "with_peers", "moments_agree"]


def environment() -> dict[str, Any]:
    """Device kind, platform, device count, JAX/NumPy versions and the x64 flag."""
    dev = jax.devices()[0]
    return {
        "device": getattr(dev, "device_kind", dev.platform),
        "platform": dev.platform,
        "num_devices": jax.device_count(),
        "jax_version": jax.__version__,
        "numpy_version": np.__version__,
        "x64": bool(jax.config.jax_enable_x64),
        **({"torch_version": torch.__version__, "torch_threads": torch.get_num_threads()}
           if (torch := torch_or_none()) is not None else {}),
    }


def _block(out):
    return jax.tree_util.tree_map(lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a, out)


def time_jax(fn: Callable, *args, reps: int = 5) -> tuple[float, float]:
    """(compile seconds, median steady-state seconds) of a jitted ``fn(*args)``.

    Compile time is the first call's wall time minus one steady-state call; the steady state is the
    median of ``reps`` calls after one warm-up, each blocked until ready.
    """
    t0 = time.perf_counter()
    _block(fn(*args))
    first = time.perf_counter() - t0
    _block(fn(*args))  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        _block(fn(*args))
        times.append(time.perf_counter() - t0)
    steady = statistics.median(times)
    return max(first - steady, 0.0), steady


def time_numpy(fn: Callable, *args, reps: int = 5) -> float:
    """Median wall time of ``reps`` calls of a NumPy ``fn(*args)`` after one warm-up."""
    fn(*args)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_torch(fn: Callable, *args, reps: int = 5) -> float:
    """Median wall time of a PyTorch ``fn(*args)`` (CUDA synchronised when present) after one warm-up."""
    torch = torch_or_none()

    def call():
        out = fn(*args)
        if torch is not None and torch.cuda.is_available():
            torch.cuda.synchronize()
        return out

    return time_numpy(call, reps=reps)


def torch_or_none():
    """The ``torch`` module, or None when PyTorch is not installed (its rows are then left out)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def with_peers(row: dict, jax_per_s: float, peers: dict) -> dict:
    """Fill ``row`` with the JAX rate, each peer's rate (``numpy_per_s``, ``torch_per_s``, ...), the faster
    peer's name (``peer``) and ``ratio`` = JAX rate / the faster peer's rate (≥ 1 means JAX is at least as fast)."""
    peers = {k: v for k, v in peers.items() if v is not None}
    row["jax_per_s"] = jax_per_s
    for k, v in peers.items():
        row[f"{k}_per_s"] = v
    if peers:
        best = max(peers, key=peers.get)
        row["peer"] = best
        row["ratio"] = jax_per_s / peers[best]
        row["ratios"] = {k: jax_per_s / v for k, v in peers.items()}
    return row


def moments_agree(a, b, *, z: float = 6.0) -> bool:
    """Whether two samples of a statistic have means within ``z`` standard errors (same distribution check).

    At z = 6 a false disagreement has probability ~2e-9 per comparison.
    """
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    se = np.sqrt(a.var() / a.size + b.var() / b.size)
    return bool(abs(a.mean() - b.mean()) <= z * se + 1e-12)
