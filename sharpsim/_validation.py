"""Input checks that turn bad arguments into a ``ValueError`` naming the argument and the fix.

Checks run eagerly, on concrete values only: under ``jit``/``vmap`` tracing the values are unknown, so
every check here silently passes through tracers (the eager call of the same function did the check).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

__all__ = [
    "is_concrete",
    "check_probability_table",
    "check_distribution",
    "check_open_unit",
    "check_gamma",
    "check_positive",
    "check_nonnegative",
    "check_positive_int",
    "row_sum_tolerance",
]


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds actual values (not a JAX tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def row_sum_tolerance(dtype) -> float:
    """Tolerance on ``|sum(row) - 1|`` accepted by the probability checks: 1e-4 (float32) or 1e-9 (float64)."""
    return 1e-9 if np.dtype(dtype) == np.float64 else 1e-4


def check_probability_table(probs: Any, name: str = "probs", *, ndim: int | None = None) -> None:
    """Check that ``probs`` holds conditional distributions along its last axis.

    Raises ``ValueError`` for NaN/inf or negative entries and rows whose sum differs from 1 by more than
    :func:`row_sum_tolerance` of the dtype.
    """
    if not is_concrete(probs):
        return
    p = np.asarray(probs)
    if ndim is not None and p.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {p.shape}.")
    if p.size == 0:
        raise ValueError(f"{name} is empty (shape {p.shape}); give at least one prompt and one response.")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} contains NaN or inf entries; every probability must be a finite number in [0, 1].")
    if np.any(p < 0):
        raise ValueError(f"{name} has negative entries (min {p.min():.3g}); probabilities must be >= 0.")
    tol = row_sum_tolerance(p.dtype if p.dtype in (np.float32, np.float64) else np.float64)
    sums = p.sum(axis=-1, dtype=np.float64)
    bad = np.abs(sums - 1.0) > tol
    if np.any(bad):
        idx = np.argwhere(bad)[0]
        raise ValueError(
            f"{name}: each row must sum to 1 within {tol:g} (dtype {p.dtype}); row {tuple(idx)} sums to "
            f"{sums[tuple(idx)]:.10g}. Normalise the rows (P / P.sum(-1, keepdims=True)) or use from_logits."
        )


def check_distribution(mu: Any, size: int | None = None, name: str = "mu") -> None:
    """Check a 1-D probability vector (e.g. the prompt distribution μ), optionally of a given size."""
    if not is_concrete(mu):
        return
    m = np.asarray(mu)
    if m.ndim != 1:
        raise ValueError(f"{name} must be a 1-D probability vector, got shape {m.shape}.")
    if size is not None and m.shape[0] != size:
        raise ValueError(
            f"{name} has {m.shape[0]} entries but the policy has {size} prompts; give one probability per prompt."
        )
    check_probability_table(m, name)


def check_open_unit(value: Any, name: str) -> None:
    """Check ``0 < value < 1`` (ε, δ, ρ)."""
    if not is_concrete(value):
        return
    v = float(np.asarray(value))
    if not (0.0 < v < 1.0) or math.isnan(v):
        raise ValueError(f"{name} must lie in the open interval (0, 1), got {v!r}.")


def check_gamma(value: Any, name: str = "gamma") -> None:
    """Check ``0 <= gamma < 1`` (approximate-maximiser slack of Appendix F.1)."""
    if not is_concrete(value):
        return
    v = float(np.asarray(value))
    if not (0.0 <= v < 1.0) or math.isnan(v):
        raise ValueError(f"{name} must lie in [0, 1), got {v!r}; gamma = 0 is the exact argmax.")


def check_positive(value: Any, name: str) -> None:
    """Check ``value > 0`` (e.g. the KL coefficient β)."""
    if not is_concrete(value):
        return
    v = float(np.asarray(value))
    if not v > 0.0:
        raise ValueError(f"{name} must be > 0, got {v!r}.")


def check_nonnegative(value: Any, name: str) -> None:
    """Check ``value >= 0`` (e.g. the optimism coefficient α)."""
    if not is_concrete(value):
        return
    v = float(np.asarray(value))
    if not v >= 0.0:
        raise ValueError(f"{name} must be >= 0, got {v!r}.")


def check_positive_int(value: Any, name: str) -> int:
    """Check that ``value`` is a Python/NumPy integer >= 1 and return it as ``int`` (shapes must be static)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a positive integer (a static shape), got {value!r} of type {type(value).__name__}.")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}.")
    return int(value)
