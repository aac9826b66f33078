"""Shared benchmark machinery, the brax way (design.md §4): compile time apart, warm-up, repetitions,
``block_until_ready`` on every output, and the environment (device kind, JAX version, x64) on every row."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import jax
import numpy as np

__all__ = ["environment", "time_jax", "time_numpy"]


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
